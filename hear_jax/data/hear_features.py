"""How a HEAR task is stored as a TFDS dataset.

Every task builder (generated demo tasks and hearpreprocess output alike)
writes the same features, so one reader serves all of them:

  id      Text                 the HEAR file name, e.g. "00012.wav" (sort key:
                               TFDS stores examples shuffled by key)
  audio   Tensor[int16, (T,)]  16-bit PCM mono at the task's sample rate, as
                               hearpreprocess writes its wavs
  labels  Sequence(Text)       scene tasks: the clip's labels (empty for events)
  events  Sequence({label, start, end})
                               event tasks: start/end in ms, as in HEAR's files

and the task's HEAR metadata (task_metadata.json fields plus the label
vocabulary and sample rate) as the dataset's `MetadataDict`, so a prepared
dataset directory is self-describing.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds

# task_metadata.json fields every task must carry (hear-reference §2.2).
REQUIRED_METADATA = (
    "task_name",
    "version",
    "embedding_type",
    "prediction_type",
    "split_mode",
    "sample_duration",
    "evaluation",
    "splits",
)


def _milliseconds() -> tfds.features.Tensor:
  # A plain float64 feature is stored as float32 (1999.999 ms would read
  # back as 1999.9990234375); raw bytes keep HEAR's times exact.
  return tfds.features.Tensor(shape=(), dtype=np.float64,
                              encoding=tfds.features.Encoding.BYTES)


def task_features() -> tfds.features.FeaturesDict:
  """The TFDS features of a HEAR task (same for scene and event tasks)."""
  return tfds.features.FeaturesDict({
      "id": tfds.features.Text(),
      "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
      "labels": tfds.features.Sequence(tfds.features.Text()),
      "events": tfds.features.Sequence({
          "label": tfds.features.Text(),
          "start": _milliseconds(),
          "end": _milliseconds(),
      }),
  })


def task_metadata(
    metadata: dict[str, Any],
    label_vocabulary: Sequence[str],
    sample_rate: int,
) -> tfds.core.MetadataDict:
  """Packs HEAR task metadata for `dataset_info_from_configs(metadata=...)`."""
  missing = [k for k in REQUIRED_METADATA if k not in metadata]
  if missing:
    raise ValueError(f"task metadata lacks {', '.join(missing)}")
  return tfds.core.MetadataDict(
      hear_task=dict(metadata),
      label_vocabulary=[str(label) for label in label_vocabulary],
      sample_rate=int(sample_rate),
  )


def pcm16(audio: np.ndarray) -> np.ndarray:
  """float audio in [-1, 1] -> int16 PCM (clipped, rounded)."""
  return np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def scene_example(file_id: str, audio: np.ndarray, labels: Sequence[Any]):
  """One scene-task example in the features above."""
  return {
      "id": file_id,
      "audio": audio if audio.dtype == np.int16 else pcm16(audio),
      "labels": [str(label) for label in labels],
      "events": [],
  }


def event_example(file_id: str, audio: np.ndarray, events: Sequence[dict]):
  """One event-task example; `events` are {label, start, end} with ms times."""
  return {
      "id": file_id,
      "audio": audio if audio.dtype == np.int16 else pcm16(audio),
      "labels": [],
      "events": [
          {"label": str(e["label"]), "start": float(e["start"]),
           "end": float(e["end"])} for e in events
      ],
  }
