"""Embedding extraction: batched, jitted, cached in the workdir.

  embeddings = embed_split(model, task_info, split_audio)     # in memory
  embeddings = cached_split_embeddings(path, fingerprint, lambda: ...)

Scene tasks give one row per clip; event tasks give one row per frame, with
the frame's clip (`file_index`) and centre time (`timestamps_ms`), frames of a
clip contiguous and in time order, as hear-eval-kit lays them out.

Audio is handed to the model at the model's own rate: clips are resampled
with soxr (the resampler family hearpreprocess uses through ffmpeg) when the
task's rate differs. Clips are grouped by length and batched by a sample
budget, the last batch padded, so each length compiles once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable

import jax
import numpy as np
import soxr

from hear_jax.data.task import SplitAudio, TaskInfo
from hear_jax.models.interface import EmbeddingModel


@dataclasses.dataclass(frozen=True)
class SplitEmbeddings:
  """One split's embeddings and what the probe needs to build its targets."""

  ids: tuple[str, ...]
  x: np.ndarray  # float32 [clips, D] (scene) or [frames, D] (event)
  labels: tuple[tuple[str, ...], ...]  # per clip (scene tasks)
  events: tuple[tuple[dict[str, Any], ...], ...]  # per clip, ms (event tasks)
  file_index: np.ndarray | None = None  # int32 [frames]: row -> clip
  timestamps_ms: np.ndarray | None = None  # float64 [frames]
  audio_seconds: float = 0.0  # at the model's rate, for throughput reports


def to_model_rate(pcm: np.ndarray, rate: int, model_rate: int) -> np.ndarray:
  """int16 PCM at `rate` -> float32 in [-1, 1) at `model_rate`."""
  audio = pcm.astype(np.float32) / 32768.0
  if rate == model_rate:
    return audio
  out_len = int(round(len(audio) * model_rate / rate))
  resampled = soxr.resample(audio, rate, model_rate, quality="HQ")
  # soxr may be off by a sample; keep the length hearpreprocess would have.
  if len(resampled) >= out_len:
    return resampled[:out_len]
  return np.pad(resampled, (0, out_len - len(resampled)))


def _batch_size(length: int, batch_samples: int) -> int:
  return max(1, batch_samples // max(1, length))


def _check_output(model: EmbeddingModel, task: str, what: str, emb: np.ndarray,
                  width: int, batch: int) -> None:
  """Stops a model that breaks its own contract, naming model/task/batch."""
  where = f"model {model.name!r} on task {task!r}, batch {batch}"
  if emb.dtype != np.float32:
    raise ValueError(f"{where}: {what} embeddings are {emb.dtype}, not float32")
  if emb.shape[-1] != width:
    raise ValueError(f"{where}: {what} embeddings have size {emb.shape[-1]},"
                     f" but the model declares {width}")
  if not np.all(np.isfinite(emb)):
    raise ValueError(f"{where}: {what} embeddings contain NaN or Inf")


def embed_split(
    model: EmbeddingModel,
    task: TaskInfo,
    split: SplitAudio,
    *,
    batch_samples: int = 16000 * 64,
    on_progress: Callable[[float], None] | None = None,
) -> SplitEmbeddings:
  """Embeds every clip of a split (scene or timestamp embeddings by task)."""
  event = task.embedding_type == "event"
  fn = model.timestamp_embeddings if event else model.scene_embeddings
  if model.jittable:
    fn = jax.jit(fn)
  clips = [to_model_rate(a, task.sample_rate, model.sample_rate)
           for a in split.audio]
  by_length: dict[int, list[int]] = {}
  for i, clip in enumerate(clips):
    by_length.setdefault(len(clip), []).append(i)

  outputs: list[Any] = [None] * len(clips)
  batch_no = 0
  for length, members in sorted(by_length.items()):
    size = _batch_size(length, batch_samples)
    for start in range(0, len(members), size):
      chunk = members[start:start + size]
      audio = np.zeros((size, length), np.float32)
      for row, i in enumerate(chunk):
        audio[row] = clips[i]
      if event:
        emb, ts = fn(model.params, audio)
        emb, ts = np.asarray(emb), np.asarray(ts, np.float64)
        _check_output(model, task.name, "timestamp", emb,
                      model.timestamp_embedding_size, batch_no)
        for row, i in enumerate(chunk):
          outputs[i] = (emb[row], ts[row])
      else:
        emb = np.asarray(fn(model.params, audio))
        _check_output(model, task.name, "scene", emb,
                      model.scene_embedding_size, batch_no)
        for row, i in enumerate(chunk):
          outputs[i] = emb[row]
      batch_no += 1
      if on_progress is not None:
        on_progress(len(chunk) * length / model.sample_rate)

  seconds = sum(len(c) for c in clips) / model.sample_rate
  if not event:
    x = np.stack(outputs).astype(np.float32) if outputs else np.zeros(
        (0, model.scene_embedding_size), np.float32)
    return SplitEmbeddings(split.ids, x, split.labels, split.events,
                           audio_seconds=seconds)
  x = np.concatenate([e for e, _ in outputs]).astype(np.float32)
  file_index = np.concatenate([np.full(len(t), i, np.int32)
                               for i, (_, t) in enumerate(outputs)])
  timestamps = np.concatenate([t for _, t in outputs])
  return SplitEmbeddings(split.ids, x, split.labels, split.events, file_index,
                         timestamps, audio_seconds=seconds)


def save_embeddings(path: str, emb: SplitEmbeddings, fingerprint: str) -> None:
  """Writes a split's embeddings atomically (temporary file, then rename)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  arrays = {
      "x": emb.x,
      "ids": np.array(emb.ids, dtype=str),
      "targets_json": np.array(json.dumps(
          {"labels": emb.labels, "events": emb.events})),
      "fingerprint": np.array(fingerprint),
      "audio_seconds": np.array(emb.audio_seconds),
  }
  if emb.file_index is not None:
    arrays["file_index"] = emb.file_index
    arrays["timestamps_ms"] = emb.timestamps_ms
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def load_embeddings(path: str, fingerprint: str) -> SplitEmbeddings | None:
  """The cached split if it exists and was made for `fingerprint`."""
  if not os.path.exists(path):
    return None
  with np.load(path, allow_pickle=False) as f:
    if str(f["fingerprint"]) != fingerprint:
      return None
    targets = json.loads(str(f["targets_json"]))
    return SplitEmbeddings(
        ids=tuple(str(i) for i in f["ids"]),
        x=f["x"],
        labels=tuple(tuple(l) for l in targets["labels"]),
        events=tuple(tuple(e) for e in targets["events"]),
        file_index=f["file_index"] if "file_index" in f else None,
        timestamps_ms=f["timestamps_ms"] if "timestamps_ms" in f else None,
        audio_seconds=float(f["audio_seconds"]),
    )


def cached_split_embeddings(
    path: str, fingerprint: str, compute: Callable[[], SplitEmbeddings]
) -> tuple[SplitEmbeddings, bool]:
  """Loads the cache or computes and stores it; says whether it was cached."""
  cached = load_embeddings(path, fingerprint)
  if cached is not None:
    return cached, True
  emb = compute()
  save_embeddings(path, emb, fingerprint)
  return emb, False
