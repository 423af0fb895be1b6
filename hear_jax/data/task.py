"""Reading a prepared HEAR task (any builder using `hear_features`).

  task = load_task(builder)             # a prepared tfds builder
  split = task.read_split("train")      # ids sorted, int16 audio, labels/events
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """A task's HEAR metadata (task_metadata.json), vocabulary and audio rate."""

  name: str
  metadata: dict[str, Any]
  label_vocabulary: tuple[str, ...]
  sample_rate: int

  @property
  def embedding_type(self) -> str:
    return self.metadata["embedding_type"]

  @property
  def prediction_type(self) -> str:
    return self.metadata["prediction_type"]

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(self.metadata["splits"])

  @property
  def evaluation(self) -> tuple[str, ...]:
    return tuple(self.metadata["evaluation"])

  @property
  def primary_metric(self) -> str:
    return self.metadata["evaluation"][0]


@dataclasses.dataclass(frozen=True)
class SplitAudio:
  """One split's clips in id order."""

  ids: tuple[str, ...]
  audio: tuple[np.ndarray, ...]  # int16 PCM at the task's rate
  labels: tuple[tuple[str, ...], ...]  # scene tasks
  events: tuple[tuple[dict[str, Any], ...], ...]  # event tasks, ms

  def __len__(self) -> int:
    return len(self.ids)


@dataclasses.dataclass(frozen=True)
class Task:
  info: TaskInfo
  source: Any  # {split: tfds data source}

  def read_split(self, split: str) -> SplitAudio:
    return read_split(self.source[split])


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_split(data_source) -> SplitAudio:
  """Reads every example of a data source, sorted by HEAR file name."""
  records = [data_source[i] for i in range(len(data_source))]
  records.sort(key=lambda r: _text(r["id"]))
  events = []
  for r in records:
    e = r["events"]
    events.append(tuple(
        {"label": _text(label), "start": float(start), "end": float(end)}
        for label, start, end in zip(e["label"], e["start"], e["end"])))
  return SplitAudio(
      ids=tuple(_text(r["id"]) for r in records),
      audio=tuple(np.asarray(r["audio"], dtype=np.int16) for r in records),
      labels=tuple(tuple(_text(x) for x in r["labels"]) for r in records),
      events=tuple(events),
  )


def load_task(builder: tfds.core.DatasetBuilder) -> Task:
  """A prepared builder -> its `TaskInfo` and per-split data sources."""
  meta = builder.info.metadata
  hear = dict(meta["hear_task"])
  info = TaskInfo(
      name=hear["task_name"],
      metadata=hear,
      label_vocabulary=tuple(meta["label_vocabulary"]),
      sample_rate=int(meta["sample_rate"]),
  )
  return Task(info=info, source=builder.as_data_source())
