"""Levels, placement and the audible extent of generated sounds.

  word = set_rms_dbfs(word, -20.0)            # loudness in dB full scale
  start, end = active_span(note, 16000)        # samples where it is audible
  clip = add_at(np.zeros(16000, np.float32), word[start:end], offset=1200)

`active_span` is how event boundaries are measured for the sound-event task:
the event ends when the rendered sound has really decayed, not when its
nominal note length says so.
"""

from __future__ import annotations

import numpy as np

_TINY = 1e-12


def rms_dbfs(audio: np.ndarray) -> float:
  """RMS level in dB relative to a full-scale square wave (silence -> -inf)."""
  if not audio.size:
    return -np.inf
  power = float(np.mean(np.square(audio, dtype=np.float64)))
  return 10.0 * np.log10(power) if power > 0 else -np.inf


def set_rms_dbfs(audio: np.ndarray, dbfs: float) -> np.ndarray:
  """`audio` scaled so its RMS level is `dbfs` (silence stays silence)."""
  level = rms_dbfs(audio)
  if not np.isfinite(level):
    return audio.astype(np.float32)
  return (audio * 10.0 ** ((dbfs - level) / 20.0)).astype(np.float32)


def set_peak(audio: np.ndarray, peak: float) -> np.ndarray:
  """`audio` scaled so max |sample| == `peak` (silence stays silence)."""
  current = float(np.max(np.abs(audio))) if audio.size else 0.0
  if current <= 0:
    return audio.astype(np.float32)
  return (audio * (peak / current)).astype(np.float32)


def frame_rms(audio: np.ndarray, frame: int) -> np.ndarray:
  """RMS of consecutive non-overlapping frames (the last one may be short)."""
  if frame <= 0:
    raise ValueError(f"frame length must be positive, got {frame}")
  n_frames = -(-len(audio) // frame)
  padded = np.zeros(n_frames * frame, np.float64)
  padded[:len(audio)] = audio
  squares = np.square(padded).reshape(n_frames, frame)
  lengths = np.full(n_frames, frame, np.float64)
  if n_frames:
    lengths[-1] = len(audio) - (n_frames - 1) * frame
  return np.sqrt(squares.sum(axis=1) / lengths)


def active_span(
    audio: np.ndarray,
    sample_rate: int,
    threshold_db: float = -30.0,
    frame_s: float = 0.01,
) -> tuple[int, int]:
  """First and one-past-last sample of the frames within `threshold_db` of
  the loudest frame.

  With 10 ms frames the span is accurate to a frame. Returns (0, 0) for
  silence.
  """
  frame = max(1, int(round(frame_s * sample_rate)))
  levels = frame_rms(audio, frame)
  if levels.size == 0 or levels.max() <= _TINY:
    return 0, 0
  loud = np.nonzero(levels >= levels.max() * 10.0 ** (threshold_db / 20.0))[0]
  return int(loud[0] * frame), int(min(len(audio), (loud[-1] + 1) * frame))


def add_at(buffer: np.ndarray, sound: np.ndarray, offset: int) -> np.ndarray:
  """A copy of `buffer` with `sound` added from sample `offset` (cut at the
  end of the buffer)."""
  if offset < 0:
    raise ValueError(f"offset must be >= 0, got {offset}")
  out = np.array(buffer, dtype=np.float32, copy=True)
  n = max(0, min(len(sound), len(out) - offset))
  out[offset:offset + n] += sound[:n]
  return out


def fit_length(audio: np.ndarray, n_samples: int) -> np.ndarray:
  """Zero-pad or cut to exactly `n_samples` (HEAR's trim/pad)."""
  out = np.zeros(n_samples, np.float32)
  n = min(n_samples, len(audio))
  out[:n] = audio[:n]
  return out
