"""Spoken words synthesised offline with espeak-ng (through espeakng-loader).

espeakng-loader ships libespeak-ng and its voice data in a wheel; we drive the
library with ctypes in synchronous mode, collect the samples from the synth
callback and resample 22050 Hz -> 16 kHz with soxr.

  audio = speak("left", "en-us+f3", rate=160, pitch=60)   # float32, 16 kHz
  voices = [f"{accent}+{v}" for accent in ENGLISH_ACCENTS
            for v in voice_variants()]

Voice names are "<language>[+<variant>]": a language file name from
espeak-ng-data/lang (e.g. "en" for British, "en-us"; "en-gb" is *rejected*)
and an optional variant from espeak-ng-data/voices/!v ("f3", "m7", "whisper",
"klatt", ...).

Determinism: espeak-ng keeps synthesis state in C statics that no API call
resets (e.g. the pitch-flutter phase in wavegen.c), so the same word spoken
twice in one process differs slightly. `speak` therefore loads a fresh copy of
the library for every call (dlopen, initialise, speak, dlclose; ~7 ms), which
makes its output a pure function of its arguments. The klatt variants also
draw from libc's rand(), so `speak` reseeds it (srand(0)) before each call.
This holds as long as no other code in the process keeps libespeak-ng
loaded (dlclose would then not unload it).
"""

from __future__ import annotations

import _ctypes
import ctypes
import functools
import os
import threading

import numpy as np

DEFAULT_SAMPLE_RATE = 16000

# English language files of espeak-ng 1.52 that SetVoiceByName accepts.
ENGLISH_ACCENTS = (
    "en",  # British
    "en-us",
    "en-029",  # Caribbean
    "en-gb-scotland",
    "en-gb-x-rp",  # received pronunciation
    "en-us-nyc",
    "en-gb-x-gbclan",  # Lancaster
    "en-gb-x-gbcwmd",  # West Midlands
)

# espeak_PARAMETER values (speak_lib.h).
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 22050

_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
    ctypes.c_void_p)

_lock = threading.Lock()
_chunks: list[np.ndarray] = []


def _collect(wav, n_samples, _events) -> int:
  if n_samples > 0 and wav:
    _chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
  return 0  # 0 = keep synthesising


# The C library holds a raw pointer to this thunk: it must outlive every call,
# so it lives at module level rather than in `speak`.
_SYNTH_CALLBACK = _CALLBACK_TYPE(_collect)


def _paths() -> tuple[str, str]:
  import espeakng_loader  # pylint: disable=g-import-not-at-top

  return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


@functools.lru_cache(maxsize=None)
def voice_variants() -> tuple[str, ...]:
  """Names of the voice variants espeak-ng ships (voices/!v), sorted."""
  variants_dir = os.path.join(_paths()[1], "voices", "!v")
  return tuple(sorted(os.listdir(variants_dir)))


@functools.lru_cache(maxsize=None)
def _libc():
  return ctypes.CDLL(None)  # the process's own symbols, libc's among them


def _load_library(library_path: str, data_path: str):
  lib = ctypes.CDLL(library_path)
  lib.espeak_Initialize.argtypes = [
      ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
  lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
  lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
  lib.espeak_Synth.argtypes = [
      ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
      ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
  lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
  rate = lib.espeak_Initialize(
      _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
  if rate != _ESPEAK_RATE:
    _ctypes.dlclose(lib._handle)  # pylint: disable=protected-access
    raise ValueError(f"{library_path}: espeak_Initialize returned {rate}, "
                     f"expected sample rate {_ESPEAK_RATE}")
  lib.espeak_SetSynthCallback(_SYNTH_CALLBACK)
  return lib


def _synthesise(text: str, voice: str, rate: int, pitch: int,
                pitch_range: int, volume: int) -> np.ndarray:
  library_path, data_path = _paths()
  lib = _load_library(library_path, data_path)
  try:
    # Breath noise and whisper use espeak's own generator, the klatt voices
    # libc's rand(): seed both.
    lib.espeak_ng_SetRandSeed(0)
    _libc().srand(0)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
      raise ValueError(
          f"espeak-ng rejected voice {voice!r} (use a language file name such "
          f"as 'en' or 'en-us', optionally '+<variant>' from voices/!v)")
    for parameter, value in ((_RATE, rate), (_PITCH, pitch),
                             (_RANGE, pitch_range), (_VOLUME, volume)):
      lib.espeak_SetParameter(parameter, int(value), 0)
    _chunks.clear()
    encoded = text.encode("utf-8")
    status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 0, None,
                              None)
    lib.espeak_Synchronize()
    if status != 0:
      raise ValueError(f"espeak_Synth failed with status {status} for "
                       f"{text!r} in voice {voice!r}")
    pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
    _chunks.clear()
    return pcm
  finally:
    lib.espeak_Terminate()
    _ctypes.dlclose(lib._handle)  # pylint: disable=protected-access


def speak(
    text: str,
    voice: str = "en-us",
    *,
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    volume: int = 60,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> np.ndarray:
  """`text` spoken by espeak-ng, as mono float32 in [-1, 1] at `sample_rate`.

  Args:
    text: what to say (plain text).
    voice: "<language>[+<variant>]", e.g. "en-us+f3", "en+m7".
    rate: words per minute (espeak accepts 80..450).
    pitch: base pitch 0..99 (50 = the voice's normal pitch).
    pitch_range: intonation range 0..99 (0 = monotone).
    volume: 0..200; the default 60 keeps loud variants from clipping.
    sample_rate: output rate; espeak renders at 22050 Hz and soxr resamples.

  The result keeps espeak's own short leading and trailing silences.
  """
  if not text.strip():
    raise ValueError("speak() needs non-empty text")
  if not 80 <= rate <= 450:
    raise ValueError(f"rate {rate} is outside espeak's 80..450 words/min")
  for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
    if not 0 <= value <= 99:
      raise ValueError(f"{name} {value} is outside 0..99")
  with _lock:
    pcm = _synthesise(text, voice, rate, pitch, pitch_range, volume)
  audio = pcm.astype(np.float32) / 32768.0
  if sample_rate != _ESPEAK_RATE:
    import soxr  # pylint: disable=g-import-not-at-top

    audio = soxr.resample(audio, _ESPEAK_RATE, sample_rate).astype(np.float32)
  return audio
