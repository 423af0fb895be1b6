"""demo pitch: single notes of General MIDI instruments, label = MIDI pitch.

Modelled on HEAR's nsynth_pitch: a scene task, multiclass, scored by
`pitch_acc` then `chroma_acc`, split by instrument so that valid and test
instruments are never heard in training.

  builder = Builder(config="tiny", data_dir=tmp, file_format="array_record")
  builder.download_and_prepare()
  task = hear_jax.data.task.load_task(builder)

Each clip is 1.0 s at 16 kHz: one note of a GM program (see
`instruments.MELODIC_PROGRAMS`) held 0.6-0.8 s at a random velocity, then
released, peak-normalised to -9..-3 dBFS.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from hear_jax.data import hear_features
from tasks import demo
from tasks.demo.sources import instruments
from tasks.demo.sources import mixing

SAMPLE_RATE = 16000
CLIP_S = 1.0
# C3..B5: every instrument in `MELODIC_PROGRAMS` sounds in tune here, so every
# split's instruments cover every label.
PITCH_MIN, PITCH_MAX = 48, 83
PITCHES = tuple(range(PITCH_MIN, PITCH_MAX + 1))
# nsynth writes int labels as strings; two-digit strings sort numerically.
LABELS = tuple(str(p) for p in PITCHES)
SPLIT_PERCENTAGE = {"train": 60, "valid": 20, "test": 20}  # of instruments


@dataclasses.dataclass(eq=False)
class PitchConfig(tfds.core.BuilderConfig):
  """Clip counts per split and the generation seed."""

  train: int = 1008  # 28 per pitch
  valid: int = 324  # 9 per pitch
  test: int = 324
  seed: int = 4069

  def sizes(self) -> dict[str, int]:
    return {"train": self.train, "valid": self.valid, "test": self.test}


@dataclasses.dataclass(frozen=True)
class Note:
  """One planned clip."""

  clip_id: str
  program: int  # GM program, 0-based
  pitch: int  # MIDI


def instrument_splits(seed: int) -> dict[str, tuple[int, ...]]:
  """Disjoint sets of GM programs for train/valid/test (60/20/20)."""
  return demo.split_by_key(seed, instruments.MELODIC_PROGRAMS,
                           [SPLIT_PERCENTAGE[s] for s in demo.SPLITS])


def note_plan(config: PitchConfig, split: str) -> list[Note]:
  """The notes of one split: pitches balanced over the 36 classes, programs
  balanced over the split's instruments, paired at random."""
  n = config.sizes()[split]
  if n < len(PITCHES):
    raise ValueError(f"config {config.name!r}: split {split} has {n} clips, "
                     f"fewer than the {len(PITCHES)} pitch classes")
  rng = demo.split_rng(config.seed, split, 0)
  pitches = demo.balanced_labels(rng, PITCHES, n)
  programs = demo.balanced_labels(rng, instrument_splits(config.seed)[split], n)
  first = demo.split_offsets(config.sizes())[split]
  return [Note(demo.clip_id(first + i), int(program), int(pitch))
          for i, (program, pitch) in enumerate(zip(programs, pitches))]


def render_clip(config: PitchConfig, split: str, index: int, note: Note):
  """The float32 audio of the `index`-th note of `split`."""
  rng = demo.example_rng(config.seed, split, index)
  audio = instruments.render_note(
      note.program, note.pitch,
      velocity=int(rng.integers(40, 128)),
      hold_s=float(rng.uniform(0.6, 0.8)),
      total_s=CLIP_S,
      sample_rate=SAMPLE_RATE)
  peak_db = float(rng.uniform(-9.0, -3.0))
  return mixing.fit_length(mixing.set_peak(audio, 10.0**(peak_db / 20.0)),
                           int(CLIP_S * SAMPLE_RATE))


def task_metadata(config: PitchConfig) -> dict:
  """The task_metadata.json fields of this task."""
  return {
      "task_name": "demo_pitch",
      "version": "1.0.0",
      "embedding_type": "scene",
      "prediction_type": "multiclass",
      "split_mode": "trainvaltest",
      "sample_duration": CLIP_S,
      "evaluation": ["pitch_acc", "chroma_acc"],
      "splits": list(demo.SPLITS),
      "default_mode": "demo",
      "mode": config.name,
      "pitch_range_min": PITCH_MIN,
      "pitch_range_max": PITCH_MAX,
      "split_key": "instrument",
  }


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the demo pitch task."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      PitchConfig(name="demo", description="1008/324/324 clips of 1 s."),
      PitchConfig(name="tiny", train=72, valid=36, test=36,
                  description="2/1/1 clips per pitch, for tests."),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=hear_features.task_features(),
        metadata=hear_features.task_metadata(
            task_metadata(self.builder_config), LABELS, SAMPLE_RATE),
        homepage="https://magenta.tensorflow.org/datasets/nsynth",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is synthesised
    return {split: self._generate_examples(split) for split in demo.SPLITS}

  def _generate_examples(self, split: str):
    config = self.builder_config
    for index, note in enumerate(note_plan(config, split)):
      audio = render_clip(config, split, index, note)
      yield note.clip_id, hear_features.scene_example(
          note.clip_id, audio, [note.pitch])
