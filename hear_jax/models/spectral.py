"""Short-time spectral front end: HEAR framing, windows, power spectra, mel.

Everything that depends only on the clip length (frame start indices,
timestamps) is computed in numpy at trace time, so the jitted part is a gather
plus an FFT with static shapes. Framing follows `hearbaseline.util.frame_audio`
(2021.1.1): pad half a frame of zeros at both ends, keep the hop as a float and
round every frame start separately (no drift), stop before a frame would run
past the padded end, timestamps are `k * hop` ms.

  starts, t_ms = frame_layout(n_samples=44100, frame_size=4096,
                              hop_ms=50.0, sample_rate=44100)
  frames = frame_audio(audio, starts, frame_size=4096)   # [B, F, 4096]
  power = power_spectrum(frames, hann_window(4096))      # [B, F, 2049]
  mel = power @ mel_filterbank(44100, 4096, 256).T       # librosa's default

The mel filterbank reproduces `librosa.filters.mel` defaults (Slaney mel
scale, `norm="slaney"` area normalisation) bit for bit, without depending on
librosa.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Slaney's mel scale: linear below 1 kHz (3 bands per 200 Hz), logarithmic
# above (27 bands per factor 6.4), as in the Auditory Toolbox and librosa.
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
  """Frequency in Hz -> Slaney mel (librosa's `htk=False` scale)."""
  hz = np.asarray(hz, dtype=np.float64)
  linear = hz / _LINEAR_HZ_PER_MEL
  # The maximum keeps log() away from 0 Hz; those entries take the linear branch.
  logarithmic = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
  return np.where(hz >= _BREAK_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
  """Slaney mel -> frequency in Hz (inverse of `hz_to_mel`)."""
  mel = np.asarray(mel, dtype=np.float64)
  linear = mel * _LINEAR_HZ_PER_MEL
  logarithmic = _BREAK_HZ * np.exp(_LOG_STEP * (mel - _BREAK_MEL))
  return np.where(mel >= _BREAK_MEL, logarithmic, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
  """Triangular mel filters, float32 [n_mels, n_fft // 2 + 1].

  Same as `librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels,
  fmin=fmin, fmax=fmax)` with its defaults (`htk=False`, `norm="slaney"`):
  band edges equally spaced in Slaney mel, each triangle scaled by
  2 / (upper edge - lower edge) in Hz so every band has the same area.
  """
  fmax = sample_rate / 2.0 if fmax is None else float(fmax)
  if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
    raise ValueError(
        f"mel_filterbank: need 0 <= fmin < fmax <= sample_rate/2, got "
        f"fmin={fmin}, fmax={fmax}, sample_rate={sample_rate}")
  bin_hz = np.arange(n_fft // 2 + 1, dtype=np.float64) * sample_rate / n_fft
  edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
  lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
  rising = (bin_hz[None, :] - lower) / (centre - lower)
  falling = (upper - bin_hz[None, :]) / (upper - centre)
  # librosa rounds the triangles to float32 before scaling them (its weights
  # array is float32), then rounds again: doing the same gives its exact bits.
  weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
  return (weights * (2.0 / (upper - lower))).astype(np.float32)


def hann_window(size: int) -> np.ndarray:
  """Periodic Hann window, float32: `torch.hann_window(size)`'s default.

  Periodic (denominator `size`, not `size - 1`) is what hearbaseline gets from
  `torch.hann_window(n_fft)` and what spectral analysis wants: the window
  tiles exactly at hops of size/2.
  """
  n = np.arange(size, dtype=np.float64)
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / size)).astype(np.float32)


def frame_layout(
    n_samples: int, frame_size: int, hop_ms: float, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
  """Frame starts (in the padded signal) and centre timestamps of HEAR framing.

  Returns `(starts int32 [F], timestamps_ms float32 [F])`. Frame k starts at
  `round(k * step)` in the signal padded by `frame_size // 2` zeros in front
  and `frame_size - frame_size // 2` behind, with the float
  `step = hop_ms / 1000 * sample_rate`, so its centre is at `k * step` in the
  original signal. Frame 0 always exists; frame k >= 1 exists while it ends
  inside the padded signal, i.e. while `round(k * step) <= n_samples`.
  Rounding is half-to-even like Python's `round` in hearbaseline.
  """
  if hop_ms <= 0 or frame_size <= 0 or n_samples < 0:
    raise ValueError(
        f"frame_layout: need hop_ms > 0, frame_size > 0, n_samples >= 0; got "
        f"hop_ms={hop_ms}, frame_size={frame_size}, n_samples={n_samples}")
  # Same expression order as hearbaseline so timestamps match bit for bit.
  step = hop_ms / 1000.0 * sample_rate
  k = np.arange(int(n_samples // step) + 2, dtype=np.float64)
  starts = np.round(k * step)
  n_frames = max(1, int(np.count_nonzero(starts <= n_samples)))
  k = k[:n_frames]
  timestamps_ms = k * step / sample_rate * 1000.0
  return starts[:n_frames].astype(np.int32), timestamps_ms.astype(np.float32)


def as_audio_batch(audio: jax.Array, model_name: str) -> jax.Array:
  """Checks for [n_sounds, n_samples] audio and casts it to float32."""
  if audio.ndim != 2:
    raise ValueError(
        f"{model_name}: audio must be [n_sounds, n_samples], got shape {audio.shape}")
  return jnp.asarray(audio, dtype=jnp.float32)


def frame_audio(audio: jax.Array, starts: np.ndarray, frame_size: int) -> jax.Array:
  """Cuts [B, T] audio into centred frames [B, F, frame_size] by one gather.

  `starts` comes from `frame_layout` for the same T and frame_size.
  """
  pad = (frame_size // 2, frame_size - frame_size // 2)
  padded = jnp.pad(audio, ((0, 0), pad))
  indices = starts[:, None] + np.arange(frame_size, dtype=np.int32)[None, :]
  return padded[:, indices]


def power_spectrum(
    frames: jax.Array, window: jax.Array, n_fft: int | None = None
) -> jax.Array:
  """|rFFT(frames * window)|^2 over the last axis, zero-padded to n_fft."""
  spectrum = jnp.fft.rfft(frames * window, n=n_fft, axis=-1)
  return jnp.square(spectrum.real) + jnp.square(spectrum.imag)
