"""Demo tasks generated offline, stored as HEAR-format TFDS datasets.

Three small tasks modelled on HEAR's open tasks, synthesised from a fixed
seed with pip-only sound sources (see `tasks.demo.sources`):

  pitch            like nsynth_pitch: GM instrument notes, label = MIDI pitch
  spoken_commands  like speech_commands: espeak-ng words, _unknown_, _silence_
  sound_events     like dcase2016_task2: 10 s scenes with timed events

  import tensorflow_datasets as tfds
  from tasks.demo.pitch import pitch_dataset_builder
  builder = pitch_dataset_builder.Builder(config="tiny", data_dir="/tmp/tfds",
                                          file_format="array_record")
  builder.download_and_prepare()

This module holds the conventions the three builders share: split names,
HEAR-style file names, per-example seeding and class-balanced label plans.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

SPLITS = ("train", "valid", "test")

_T = TypeVar("_T")


def clip_id(index: int) -> str:
  """HEAR-style unique file name of the `index`-th clip of a task."""
  return f"{index:06d}.wav"


def split_offsets(sizes: dict[str, int]) -> dict[str, int]:
  """First clip index of each split, so ids are unique across the task."""
  offsets, total = {}, 0
  for split in SPLITS:
    offsets[split] = total
    total += sizes[split]
  return offsets


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """An independent generator per example: any example can be regenerated
  alone, and changing one never shifts another."""
  return np.random.default_rng([seed, SPLITS.index(split), index])


def split_rng(seed: int, split: str, purpose: int) -> np.random.Generator:
  """A generator for split-level plans (which labels, which sources)."""
  return np.random.default_rng([seed, SPLITS.index(split), 1_000_000 + purpose])


def balanced_labels(rng: np.random.Generator, labels: Sequence[_T],
                    n: int) -> list[_T]:
  """`n` items made of shuffled passes over `labels`: counts differ by at
  most one, and every item appears once `n >= len(labels)`."""
  out: list[_T] = []
  while len(out) < n:
    out.extend(labels[i] for i in rng.permutation(len(labels)))
  return out[:n]


def split_by_key(seed: int, keys: Sequence, fractions: Sequence[float]
                 ) -> dict[str, tuple]:
  """Disjoint train/valid/test subsets of `keys` (instruments, voices...),
  shuffled with `seed`, sized by `fractions` (each subset non-empty)."""
  if len(keys) < len(SPLITS):
    raise ValueError(f"need at least {len(SPLITS)} keys to split, got "
                     f"{len(keys)}")
  order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
  total = float(sum(fractions))
  counts = [max(1, int(round(len(keys) * f / total))) for f in fractions[1:]]
  n_train = len(keys) - sum(counts)
  if n_train < 1:
    raise ValueError(f"fractions {fractions} leave no train keys out of "
                     f"{len(keys)}")
  bounds = np.cumsum([n_train] + counts)
  starts = [0] + list(bounds[:-1])
  return {split: tuple(order[s:e])
          for split, s, e in zip(SPLITS, starts, bounds)}
