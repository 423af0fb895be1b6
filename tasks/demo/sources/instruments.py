"""Instrument notes rendered offline from a General MIDI soundfont.

The soundfont is TimGM6mb.sf2, which ships inside the pretty_midi wheel, and
the synthesiser is tinysoundfont (a self-contained wheel), so nothing is
downloaded and no system package is needed.

  piano_a4 = render_note(0, 69, velocity=100, hold_s=0.75, total_s=1.0)
  snare = render_drum(38, velocity=110, total_s=0.5)

Both return mono float32 at `sample_rate` (default 16 kHz), unnormalised:
soundfont presets differ in loudness by more than 20 dB, so callers set the
level they want (see `sources.mixing`).
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

DEFAULT_SAMPLE_RATE = 16000
DRUM_CHANNEL = 9  # General MIDI percussion channel
_MELODIC_CHANNEL = 0
_DRUM_BANK = 128  # soundfonts keep the GM drum kits in bank 128

# GM programs (0-based) with a clear, correctly tuned pitch over MIDI 48-83 in
# TimGM6mb. Chosen by estimating f0 (YIN) of every program at every pitch in
# that range: these are the programs whose estimate is within 50 cents of the
# nominal pitch for >= 95% of notes and that sound at every pitch. Left out:
# celesta/glockenspiel/tubular bells (octave-shifted or inharmonic), the
# drawbar/church organs (16' stops make the octave ambiguous), accordion,
# bandoneon, guitar harmonics, timpani, orchestra hit, alto/baritone sax
# (silent on some keys), shakuhachi, whistle, charang, 5th saw (two pitches),
# halo pad (clips), the sound-effect pads 96-103, sitar, and the percussive
# and sound-effect families 112-127.
MELODIC_PROGRAMS = (
    0, 1, 2, 3, 4, 5, 6, 7,  # pianos, harpsichord, clavinet
    10, 11, 12,  # music box, vibraphone, marimba
    20, 22,  # reed organ, harmonica
    24, 25, 26, 27, 28, 29, 30,  # guitars
    32, 33, 34, 35, 36, 37, 38, 39,  # basses
    40, 41, 42, 43, 44, 45, 46,  # strings, pizzicato, harp
    48, 49, 50, 51, 52, 53, 54,  # ensembles, choir
    56, 57, 58, 59, 60, 61, 62, 63,  # brass
    64, 66,  # soprano, tenor sax
    69, 70, 71, 72, 73, 75, 76,  # reeds and pipes
    79, 80, 81, 82, 83, 85, 87,  # ocarina, synth leads
    88, 89, 90, 91, 92, 93, 95,  # synth pads
    105, 106, 107, 108, 109, 110, 111,  # ethnic
)

_lock = threading.Lock()


def soundfont_path() -> str:
  """Path of the TimGM6mb.sf2 General MIDI soundfont inside pretty_midi."""
  import pretty_midi  # pylint: disable=g-import-not-at-top

  path = os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
  if not os.path.exists(path):
    raise ValueError(f"{path}: pretty_midi no longer ships TimGM6mb.sf2")
  return path


@functools.lru_cache(maxsize=None)
def _synth(sample_rate: int):
  """One loaded synthesiser per process and output rate (loading: ~20 ms)."""
  import tinysoundfont  # pylint: disable=g-import-not-at-top

  synth = tinysoundfont.Synth(samplerate=sample_rate)
  sfid = synth.sfload(soundfont_path())
  return synth, sfid


def program_name(program: int) -> str:
  """The soundfont's preset name for a GM program, e.g. 0 -> 'Piano 1'."""
  synth, sfid = _synth(DEFAULT_SAMPLE_RATE)
  return synth.sfpreset_name(sfid, 0, program) or f"program {program}"


def _frames(synth, n: int) -> np.ndarray:
  """The next `n` output samples, mixed down to mono."""
  if n <= 0:
    return np.zeros(0, np.float32)
  stereo = np.frombuffer(synth.generate(n), dtype=np.float32)
  return stereo.reshape(-1, 2).mean(axis=1)


def _silence_voices(synth, sample_rate: int) -> None:
  # `sounds_off` starts a 10 ms fade rather than freeing voices at once;
  # rendering past the fade frees them, so the next note starts from the same
  # state whatever was played before (renders are pure functions of their
  # arguments).
  synth.sounds_off()
  _frames(synth, int(0.05 * sample_rate))


def _render(channel: int, bank: int, program: int, key: int, velocity: int,
            hold_s: float, total_s: float, sample_rate: int,
            drums: bool) -> np.ndarray:
  if not 0 <= key <= 127:
    raise ValueError(f"MIDI key {key} is outside 0..127")
  if not 1 <= velocity <= 127:
    raise ValueError(f"velocity {velocity} is outside 1..127")
  if not 0 <= program <= 127:
    raise ValueError(f"GM program {program} is outside 0..127")
  if total_s <= 0 or hold_s < 0:
    raise ValueError(f"durations must be positive, got hold_s={hold_s}, "
                     f"total_s={total_s}")
  n_total = int(round(total_s * sample_rate))
  n_held = min(n_total, int(round(hold_s * sample_rate)))
  with _lock:
    synth, sfid = _synth(int(sample_rate))
    _silence_voices(synth, sample_rate)
    synth.program_select(channel, sfid, bank, program, is_drums=drums)
    synth.noteon(channel, key, velocity)
    held = _frames(synth, n_held)
    synth.noteoff(channel, key)
    released = _frames(synth, n_total - n_held)
    _silence_voices(synth, sample_rate)
  return np.concatenate([held, released]).astype(np.float32)


def render_note(
    program: int,
    pitch: int,
    *,
    velocity: int = 100,
    hold_s: float = 0.75,
    total_s: float = 1.0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> np.ndarray:
  """A GM program playing MIDI `pitch`, held `hold_s`, then released.

  Returns `total_s` seconds of mono float32; the release tail after note-off
  is whatever fits in the remaining time.
  """
  return _render(_MELODIC_CHANNEL, 0, program, pitch, velocity, hold_s,
                 total_s, sample_rate, drums=False)


def render_drum(
    note: int,
    *,
    velocity: int = 100,
    total_s: float = 1.0,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> np.ndarray:
  """A GM percussion note (e.g. 36 kick, 38 snare, 42 closed hi-hat).

  Drums ignore note-off in General MIDI, so the hit rings for its natural
  decay, cut at `total_s`.
  """
  return _render(DRUM_CHANNEL, _DRUM_BANK, 0, note, velocity, 0.05, total_s,
                 sample_rate, drums=True)
