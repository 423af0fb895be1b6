"""demo spoken_commands: one-second keyword clips spoken by espeak-ng.

Modelled on HEAR's speech_commands: a scene task, multiclass over ten command
words plus `_unknown_` (other words) and `_silence_` (background noise only),
scored by `top1_acc`, split by speaker so no voice is shared between splits.

  builder = Builder(config="tiny", data_dir=tmp, file_format="array_record")
  builder.download_and_prepare()
  task = hear_jax.data.task.load_task(builder)

A speaker is one espeak-ng voice variant (voices/!v: f1..f5, m1..m8,
whisper, klatt, croak, ...) with its own accent, base pitch, intonation
range and speaking rate; each utterance jitters pitch and rate a little.
The word is trimmed to its audible part and placed at a random offset in
1.0 s of background noise (coloured noise, sometimes hum) at 5-30 dB SNR.
`_silence_` clips are the same backgrounds at the same levels, without
speech, so loudness alone does not give the class away.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from hear_jax.data import hear_features
from tasks import demo
from tasks.demo.sources import mixing
from tasks.demo.sources import noise
from tasks.demo.sources import speech

SAMPLE_RATE = 16000
CLIP_S = 1.0
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop",
            "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
# Speech Commands' auxiliary words: all become `_unknown_`.
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin",
                 "sheila", "tree", "wow", "zero", "one", "two", "three",
                 "four", "five", "six", "seven", "eight", "nine", "backward",
                 "forward", "follow", "learn", "visual")
LABELS = tuple(sorted(COMMANDS + (UNKNOWN, SILENCE)))
SPLIT_PERCENTAGE = {"train": 60, "valid": 20, "test": 20}  # of speakers
# Longest word kept whole; longer renders (very slow voices) are cut.
_MAX_WORD_S = 0.95


@dataclasses.dataclass(eq=False)
class SpokenCommandsConfig(tfds.core.BuilderConfig):
  """Clip counts per split and the generation seed."""

  train: int = 1200  # 100 per class
  valid: int = 300  # 25 per class
  test: int = 300
  seed: int = 1804

  def sizes(self) -> dict[str, int]:
    return {"train": self.train, "valid": self.valid, "test": self.test}


@dataclasses.dataclass(frozen=True)
class Speaker:
  """A synthetic speaker: an espeak-ng variant with fixed characteristics."""

  variant: str
  accent: str
  pitch: int
  pitch_range: int
  rate: int

  @property
  def voice(self) -> str:
    return f"{self.accent}+{self.variant}"


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One planned clip; `word` and `speaker` are None for `_silence_`."""

  clip_id: str
  label: str
  word: str | None
  speaker: Speaker | None


def speaker_splits(seed: int) -> dict[str, tuple[Speaker, ...]]:
  """Disjoint speakers (one per espeak-ng voice variant) per split."""
  variants = speech.voice_variants()
  speakers = []
  for i, variant in enumerate(variants):
    rng = np.random.default_rng([seed, 2_000_000 + i])
    speakers.append(Speaker(
        variant=variant,
        accent=str(rng.choice(speech.ENGLISH_ACCENTS)),
        pitch=int(rng.integers(20, 81)),
        pitch_range=int(rng.integers(20, 81)),
        rate=int(rng.integers(140, 211))))
  return demo.split_by_key(seed, speakers,
                           [SPLIT_PERCENTAGE[s] for s in demo.SPLITS])


def utterance_plan(config: SpokenCommandsConfig, split: str
                   ) -> list[Utterance]:
  """The clips of one split: classes balanced, speakers balanced over the
  spoken clips, `_unknown_` words drawn uniformly."""
  n = config.sizes()[split]
  if n < len(LABELS):
    raise ValueError(f"config {config.name!r}: split {split} has {n} clips, "
                     f"fewer than the {len(LABELS)} classes")
  rng = demo.split_rng(config.seed, split, 0)
  labels = demo.balanced_labels(rng, LABELS, n)
  n_spoken = sum(label != SILENCE for label in labels)
  speakers = iter(demo.balanced_labels(
      rng, speaker_splits(config.seed)[split], n_spoken))
  first = demo.split_offsets(config.sizes())[split]
  plan = []
  for i, label in enumerate(labels):
    if label == SILENCE:
      word, speaker = None, None
    else:
      word = (str(rng.choice(UNKNOWN_WORDS)) if label == UNKNOWN else label)
      speaker = next(speakers)
    plan.append(Utterance(demo.clip_id(first + i), label, word, speaker))
  return plan


def _spoken_word(rng: np.random.Generator, word: str,
                 speaker: Speaker) -> np.ndarray:
  """The word in the speaker's voice, with per-utterance jitter, trimmed to
  its audible part."""
  audio = speech.speak(
      word, speaker.voice,
      rate=int(np.clip(speaker.rate + rng.integers(-15, 16), 120, 240)),
      pitch=int(np.clip(speaker.pitch + rng.integers(-6, 7), 0, 99)),
      pitch_range=speaker.pitch_range,
      sample_rate=SAMPLE_RATE)
  start, end = mixing.active_span(audio, SAMPLE_RATE, threshold_db=-40.0)
  audio = audio[start:end]
  max_len = int(_MAX_WORD_S * SAMPLE_RATE)
  if len(audio) > max_len:
    fade = int(0.01 * SAMPLE_RATE)
    audio = audio[:max_len].copy()
    audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
  return audio


def render_clip(config: SpokenCommandsConfig, split: str, index: int,
                utterance: Utterance) -> np.ndarray:
  """The float32 audio of the `index`-th clip of `split`."""
  rng = demo.example_rng(config.seed, split, index)
  n = int(CLIP_S * SAMPLE_RATE)
  speech_db = float(rng.uniform(-30.0, -18.0))
  snr_db = float(rng.uniform(5.0, 30.0))
  background = noise.background_noise(rng, n, SAMPLE_RATE) * np.float32(
      10.0**((speech_db - snr_db) / 20.0))
  if utterance.word is None:
    return background
  word = mixing.set_rms_dbfs(
      _spoken_word(rng, utterance.word, utterance.speaker), speech_db)
  offset = int(rng.integers(0, n - len(word) + 1))
  return mixing.add_at(background, word, offset)


def task_metadata(config: SpokenCommandsConfig) -> dict:
  """The task_metadata.json fields of this task."""
  return {
      "task_name": "demo_spoken_commands",
      "version": "1.0.0",
      "embedding_type": "scene",
      "prediction_type": "multiclass",
      "split_mode": "trainvaltest",
      "sample_duration": CLIP_S,
      "evaluation": ["top1_acc"],
      "splits": list(demo.SPLITS),
      "default_mode": "demo",
      "mode": config.name,
      "split_key": "speaker",
  }


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the demo spoken_commands task."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      SpokenCommandsConfig(name="demo",
                           description="1200/300/300 clips of 1 s."),
      SpokenCommandsConfig(name="tiny", train=24, valid=12, test=12,
                           description="2/1/1 clips per class, for tests."),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=hear_features.task_features(),
        metadata=hear_features.task_metadata(
            task_metadata(self.builder_config), LABELS, SAMPLE_RATE),
        homepage="https://github.com/espeak-ng/espeak-ng",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is synthesised
    return {split: self._generate_examples(split) for split in demo.SPLITS}

  def _generate_examples(self, split: str):
    config = self.builder_config
    for index, utterance in enumerate(utterance_plan(config, split)):
      audio = render_clip(config, split, index, utterance)
      yield utterance.clip_id, hear_features.scene_example(
          utterance.clip_id, audio, [utterance.label])
