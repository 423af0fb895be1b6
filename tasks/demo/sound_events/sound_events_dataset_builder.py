"""demo sound_events: 10 s scenes with timed events over a quiet background.

Modelled on HEAR's dcase2016_task2: an event (timestamp) task, multilabel,
scored by `event_onset_200ms_fms` then `segment_1s_er`, 60/20/20 split by
scene.

  builder = Builder(config="tiny", data_dir=tmp, file_format="array_record")
  builder.download_and_prepare()
  task = hear_jax.data.task.load_task(builder)

Each scene is 10 s at 16 kHz of background noise (-62..-52 dBFS RMS) with
4-8 events from 11 classes: instrument notes (piano, guitar, strings, brass,
flute, bell), GM drum hits (kick, snare, hi-hat), a spoken word (espeak-ng)
and a band-limited noise burst. An event's `start`/`end` (ms) are where its
rendered sound is within 25 dB of its own loudest 10 ms frame, so `end` is
where the sound has really decayed, not a nominal note length. Events are
laid out one after another with random gaps; about one in five overlaps the
one before it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds

from hear_jax.data import hear_features
from tasks import demo
from tasks.demo.sources import instruments
from tasks.demo.sources import mixing
from tasks.demo.sources import noise
from tasks.demo.sources import speech

SAMPLE_RATE = 16000
SCENE_S = 10.0
# Event extent: frames within this many dB of the event's loudest frame.
ACTIVE_THRESHOLD_DB = -25.0
OVERLAP_PROBABILITY = 0.2
_EDGE_S = 0.1  # no event starts or ends closer than this to the clip edges
_FILL = 0.85  # events take at most this share of the scene
_FADE_S = 0.03  # fade applied where an event has to be cut short
SPLIT_PERCENTAGE = {"train": 60, "valid": 20, "test": 20}  # of scenes

_WORDS = ("hello", "okay", "thanks", "coffee", "meeting", "yes", "no",
          "seven", "later", "office", "phone", "lunch")

# (GM programs, MIDI pitch range, hold range in s) of the instrument classes.
_NOTE_CLASSES = {
    "piano": ((0, 1, 2, 3), (45, 84), (0.3, 1.0)),
    "guitar": ((24, 25, 26, 27), (40, 76), (0.3, 1.0)),
    "strings": ((40, 41, 42, 48, 49), (48, 84), (0.5, 1.5)),
    "brass": ((56, 57, 60, 61), (45, 75), (0.4, 1.2)),
    "flute": ((72, 73, 75), (60, 90), (0.4, 1.2)),
    "bell": ((8, 9, 14, 112), (60, 90), (0.2, 0.5)),
}
_DRUM_CLASSES = {
    "kick_drum": (35, 36),
    "snare_drum": (38, 40),
    "hi_hat": (42, 44, 46),
}
LABELS = tuple(sorted(
    list(_NOTE_CLASSES) + list(_DRUM_CLASSES) + ["speech", "noise_burst"]))


@dataclasses.dataclass(eq=False)
class SoundEventsConfig(tfds.core.BuilderConfig):
  """Scene counts per split, events per scene and the generation seed."""

  train: int = 60
  valid: int = 20
  test: int = 20
  min_events: int = 4
  max_events: int = 8
  seed: int = 2016

  def sizes(self) -> dict[str, int]:
    return {"train": self.train, "valid": self.valid, "test": self.test}


@dataclasses.dataclass(frozen=True)
class Scene:
  """One planned clip: the classes of its events, in time order."""

  clip_id: str
  labels: tuple[str, ...]


def scene_plan(config: SoundEventsConfig, split: str) -> list[Scene]:
  """The scenes of one split. Event classes are dealt from shuffled passes
  over all classes, so each split holds every class once it has at least
  as many events as there are classes (guaranteed by the config check)."""
  n_scenes = config.sizes()[split]
  if not 1 <= config.min_events <= config.max_events:
    raise ValueError(f"config {config.name!r}: need 1 <= min_events <= "
                     f"max_events, got {config.min_events}, "
                     f"{config.max_events}")
  if n_scenes * config.min_events < len(LABELS):
    raise ValueError(
        f"config {config.name!r}: split {split} has {n_scenes} scenes of >= "
        f"{config.min_events} events, too few for all {len(LABELS)} classes")
  rng = demo.split_rng(config.seed, split, 0)
  counts = rng.integers(config.min_events, config.max_events + 1, n_scenes)
  labels = demo.balanced_labels(rng, LABELS, int(counts.sum()))
  first = demo.split_offsets(config.sizes())[split]
  bounds = np.concatenate([[0], np.cumsum(counts)])
  return [Scene(demo.clip_id(first + i), tuple(labels[bounds[i]:bounds[i + 1]]))
          for i in range(n_scenes)]


def _note(label: str) -> Callable[[np.random.Generator], np.ndarray]:
  programs, (low, high), (hold_low, hold_high) = _NOTE_CLASSES[label]

  def render(rng: np.random.Generator) -> np.ndarray:
    hold = float(rng.uniform(hold_low, hold_high))
    return instruments.render_note(
        int(rng.choice(programs)), int(rng.integers(low, high + 1)),
        velocity=int(rng.integers(60, 128)), hold_s=hold, total_s=hold + 1.5,
        sample_rate=SAMPLE_RATE)
  return render


def _drum(label: str) -> Callable[[np.random.Generator], np.ndarray]:
  notes = _DRUM_CLASSES[label]

  def render(rng: np.random.Generator) -> np.ndarray:
    return instruments.render_drum(
        int(rng.choice(notes)), velocity=int(rng.integers(60, 128)),
        total_s=1.5, sample_rate=SAMPLE_RATE)
  return render


def _speech(rng: np.random.Generator) -> np.ndarray:
  voice = (f"{rng.choice(speech.ENGLISH_ACCENTS)}+"
           f"{rng.choice(speech.voice_variants())}")
  return speech.speak(str(rng.choice(_WORDS)), voice,
                      rate=int(rng.integers(130, 211)),
                      pitch=int(rng.integers(20, 81)),
                      sample_rate=SAMPLE_RATE)


def _noise_burst(rng: np.random.Generator) -> np.ndarray:
  n = int(rng.uniform(0.15, 0.8) * SAMPLE_RATE)
  return noise.noise_burst(rng, n, SAMPLE_RATE)


_RENDERERS = {
    **{label: _note(label) for label in _NOTE_CLASSES},
    **{label: _drum(label) for label in _DRUM_CLASSES},
    "speech": _speech,
    "noise_burst": _noise_burst,
}


def _fade_out(audio: np.ndarray) -> np.ndarray:
  fade = min(len(audio), int(_FADE_S * SAMPLE_RATE))
  out = audio.copy()
  out[len(out) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
  return out


def render_event(rng: np.random.Generator, label: str) -> np.ndarray:
  """One event of class `label`, trimmed to its audible extent, at a random
  peak level of -16..-6 dBFS."""
  rendered = _RENDERERS[label](rng)
  start, end = mixing.active_span(rendered, SAMPLE_RATE, ACTIVE_THRESHOLD_DB)
  if end <= start:
    raise ValueError(f"rendered {label!r} event is silent")
  audio = rendered[start:end]
  if end == len(rendered):
    # Still ringing when the render stopped: fade so it really ends at `end`.
    audio = _fade_out(audio)
  return mixing.set_peak(audio, 10.0**(float(rng.uniform(-16.0, -6.0)) / 20.0))


def _shorten(events: list[np.ndarray], budget: int) -> list[np.ndarray]:
  """Cut the longest events (with a fade) until they fit in `budget`
  samples, keeping every event."""
  lengths = np.array([len(e) for e in events])
  if lengths.sum() <= budget:
    return events
  # The largest per-event cap c with sum(min(length, c)) <= budget.
  cap = budget // len(events)
  for candidate in sorted(set(lengths)):
    if np.minimum(lengths, candidate).sum() <= budget:
      cap = max(cap, candidate)
  return [_fade_out(e[:cap]) if len(e) > cap else e for e in events]


def layout(rng: np.random.Generator, lengths: list[int]) -> list[int]:
  """Onsets (samples) for events of `lengths`, in order, inside the scene:
  random gaps share the free time, then some events are pulled back to
  overlap the previous one."""
  n_scene = int(SCENE_S * SAMPLE_RATE)
  edge = int(_EDGE_S * SAMPLE_RATE)
  free = n_scene - 2 * edge - sum(lengths)
  if free < 0:
    raise ValueError(f"events of {sum(lengths)} samples do not fit a "
                     f"{SCENE_S} s scene")
  gaps = np.floor(rng.dirichlet(np.ones(len(lengths) + 1)) * free).astype(int)
  onsets, t = [], edge
  for length, gap in zip(lengths, gaps):
    t += gap
    onsets.append(int(t))
    t += length
  for i in range(1, len(onsets)):
    if rng.random() < OVERLAP_PROBABILITY:
      # Only ever moves an event earlier: it cannot reach the next one.
      onsets[i] = onsets[i - 1] + int(rng.uniform(0.3, 0.8) * lengths[i - 1])
  return onsets


def render_scene(config: SoundEventsConfig, split: str, index: int,
                 scene: Scene) -> tuple[np.ndarray, list[dict]]:
  """The float32 audio of a scene and its events ({label, start, end} ms)."""
  rng = demo.example_rng(config.seed, split, index)
  n_scene = int(SCENE_S * SAMPLE_RATE)
  background = noise.background_noise(rng, n_scene, SAMPLE_RATE)
  audio = mixing.set_rms_dbfs(background, float(rng.uniform(-62.0, -52.0)))
  sounds = [render_event(rng, label) for label in scene.labels]
  budget = int(_FILL * (n_scene - 2 * int(_EDGE_S * SAMPLE_RATE)))
  sounds = _shorten(sounds, budget)
  onsets = layout(rng, [len(s) for s in sounds])
  events = []
  for label, sound, onset in zip(scene.labels, sounds, onsets):
    audio = mixing.add_at(audio, sound, onset)
    events.append({"label": label,
                   "start": 1000.0 * onset / SAMPLE_RATE,
                   "end": 1000.0 * (onset + len(sound)) / SAMPLE_RATE})
  events.sort(key=lambda e: (e["start"], e["end"], e["label"]))
  return audio, events


def task_metadata(config: SoundEventsConfig) -> dict:
  """The task_metadata.json fields of this task."""
  return {
      "task_name": "demo_sound_events",
      "version": "1.0.0",
      "embedding_type": "event",
      "prediction_type": "multilabel",
      "split_mode": "trainvaltest",
      "sample_duration": SCENE_S,
      "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
      "splits": list(demo.SPLITS),
      "default_mode": "demo",
      "mode": config.name,
      "split_percentage": dict(SPLIT_PERCENTAGE),
      "split_key": "scene",
  }


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the demo sound_events task."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      SoundEventsConfig(name="demo",
                        description="60/20/20 scenes of 10 s, 4-8 events."),
      SoundEventsConfig(name="tiny", train=3, valid=2, test=2, min_events=6,
                        description="3/2/2 scenes of 10 s, for tests."),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=hear_features.task_features(),
        metadata=hear_features.task_metadata(
            task_metadata(self.builder_config), LABELS, SAMPLE_RATE),
        homepage=("https://dcase.community/challenge2016/"
                  "task-sound-event-detection-in-synthetic-audio"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is synthesised
    return {split: self._generate_examples(split) for split in demo.SPLITS}

  def _generate_examples(self, split: str):
    config = self.builder_config
    for index, scene in enumerate(scene_plan(config, split)):
      audio, events = render_scene(config, split, index, scene)
      yield scene.clip_id, hear_features.event_example(
          scene.clip_id, audio, events)
