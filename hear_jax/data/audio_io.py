"""Reading and checking the mono wavs that hearpreprocess writes.

  info = check_wav(path, sample_rate=16000, num_samples=16000.0)
  pcm = read_pcm16(path)        # int16 [T]; a 16-bit file's samples exactly

hearpreprocess writes 16-bit PCM when it resamples, but at a task's original
rate it symlinks its float32 intermediate (hear-preprocess
`util/audio.py::resample_wav`), so native-rate tasks hold 32-bit float wavs.
Those, and other linear PCM widths, are rounded to 16 bits (`pcm16`), the
format every task is stored in: an error of at most 2**-16, far below what
any embedding can see. Every problem is a one-line `ValueError` naming the
file (`name=` lets the caller name it as the user knows it, e.g. inside a
tarball).
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np
import soundfile as sf

from hear_jax.data.hear_features import pcm16

PCM_16 = "PCM_16"
# Linear sample formats we can turn into 16-bit PCM: the rest (u-law, ADPCM,
# ...) is not something hearpreprocess writes.
LINEAR_SUBTYPES = frozenset(
    {"PCM_S8", "PCM_U8", PCM_16, "PCM_24", "PCM_32", "FLOAT", "DOUBLE"})

# Resampling a trimmed clip with ffmpeg/soxr can round its length either way
# by one sample (e.g. 4.77 s at 22050 Hz is 105178.5 samples), so lengths are
# checked to within this many samples of `sample_duration * rate`.
LENGTH_TOLERANCE_SAMPLES = 1.0


@dataclasses.dataclass(frozen=True)
class WavInfo:
  """What a wav header says, after checking the data is all there."""

  sample_rate: int
  channels: int
  num_samples: int
  subtype: str


def _data_chunk_sizes(path: str, name: str) -> tuple[int, int]:
  """(bytes the RIFF `data` chunk declares, bytes actually in the file).

  libsndfile silently clamps a truncated file to what is there, so a cut-off
  download would otherwise pass as a shorter clip.
  """
  file_size = os.path.getsize(path)
  with open(path, "rb") as f:
    header = f.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
      raise ValueError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    offset = 12
    while True:
      chunk = f.read(8)
      if len(chunk) < 8:
        raise ValueError(f"{name}: WAV file has no data chunk (truncated?)")
      chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
      offset += 8
      if chunk_id == b"data":
        return size, file_size - offset
      # RIFF chunks are padded to an even number of bytes.
      offset += size + (size & 1)
      f.seek(offset)


def wav_info(path: str | os.PathLike, name: str | None = None) -> WavInfo:
  """Header facts of a complete WAV file; ValueError if not a whole WAV."""
  path = os.fspath(path)
  name = name or path
  if not os.path.isfile(path):
    raise ValueError(f"{name}: file not found")
  declared, available = _data_chunk_sizes(path, name)
  if declared > available:
    raise ValueError(f"{name}: truncated WAV (data chunk declares {declared}"
                     f" bytes, {available} present)")
  try:
    info = sf.info(path)
  except (sf.LibsndfileError, RuntimeError) as e:
    message = str(e).replace("\n", " ")
    raise ValueError(f"{name}: unreadable WAV ({message})") from None
  return WavInfo(sample_rate=int(info.samplerate), channels=int(info.channels),
                 num_samples=int(info.frames), subtype=str(info.subtype))


def check_wav(
    path: str | os.PathLike,
    *,
    sample_rate: int,
    num_samples: float | None = None,
    name: str | None = None,
) -> WavInfo:
  """Checks a clip is complete 16-bit mono PCM at `sample_rate`.

  `num_samples` (e.g. `sample_duration * rate`, possibly fractional) is the
  expected length, within `LENGTH_TOLERANCE_SAMPLES`; None skips the check
  (tasks with `sample_duration: null`).
  """
  name = name or os.fspath(path)
  info = wav_info(path, name)
  if info.sample_rate != sample_rate:
    raise ValueError(f"{name}: sample rate {info.sample_rate} Hz, expected"
                     f" {sample_rate} Hz")
  if info.channels != 1:
    raise ValueError(f"{name}: {info.channels} channels, expected mono")
  if info.subtype not in LINEAR_SUBTYPES:
    raise ValueError(f"{name}: sample format {info.subtype}, expected linear"
                     " PCM or float")
  if (num_samples is not None
      and abs(info.num_samples - num_samples) > LENGTH_TOLERANCE_SAMPLES):
    raise ValueError(f"{name}: {info.num_samples} samples, expected"
                     f" {num_samples:g} (sample_duration x sample rate)")
  return info


def read_pcm16(path: str | os.PathLike, name: str | None = None) -> np.ndarray:
  """A mono wav's samples as int16 [T].

  16-bit files come back exactly as stored; wider PCM and float files are
  rounded to 16 bits (clipped to [-1, 1)), see the module docstring.
  """
  name = name or os.fspath(path)
  try:
    with sf.SoundFile(os.fspath(path)) as f:
      exact = f.subtype == PCM_16
      audio = f.read(dtype="int16" if exact else "float64", always_2d=True)
  except (sf.LibsndfileError, RuntimeError) as e:
    message = str(e).replace("\n", " ")
    raise ValueError(f"{name}: unreadable WAV ({message})") from None
  if audio.shape[1] != 1:
    raise ValueError(f"{name}: {audio.shape[1]} channels, expected mono")
  return audio[:, 0] if exact else pcm16(audio[:, 0])
