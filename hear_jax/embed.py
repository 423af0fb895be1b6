"""Embedding extraction: batched, jitted, cached in the workdir.

  embeddings = embed_split(model, task_info, split_audio)     # in memory
  embeddings = cached_split_embeddings(path, fingerprint, lambda: ...)
  embeddings = sharded_split_embeddings(path, fingerprint, embed_rows, n,
                                        label=..., timeout_seconds=...)
                                           # several processes, one cache

Scene tasks give one row per clip; event tasks give one row per frame, with
the frame's clip (`file_index`) and centre time (`timestamps_ms`), frames of a
clip contiguous and in time order, as hear-eval-kit lays them out.

Audio is handed to the model at the model's own rate: clips are resampled
with soxr (the resampler family hearpreprocess uses through ffmpeg) when the
task's rate differs. Clips are grouped by length and batched by a sample
budget, the last batch padded, so each length compiles once. A jittable model's batches are split over the
process's devices. In a job of several processes each embeds a contiguous
share of every split into a shard file and process 0 merges the shards into
the same cache file one process writes (`sharded_split_embeddings`).

Model output is checked batch by batch (layout, rows, dtype, declared size,
finite values, timestamps that increase and lie within the clip); a model
that breaks its contract stops the run with a ValueError naming the model,
task, batch and clip. A cached split is used only if it is intact and its
fingerprint (`cache_fingerprint`: hear_jax version, model spec, weights
digest, batching, the data's content digest) matches; a damaged cache file
is logged and recomputed. Nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import zipfile
import zlib
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import soxr

import hear_jax
from hear_jax import aligned_rows
from hear_jax.data.task import SplitAudio, TaskInfo
from hear_jax.models.interface import EmbeddingModel


@dataclasses.dataclass(frozen=True)
class SplitEmbeddings:
  """One split's embeddings and what the probe needs to build its targets."""

  ids: tuple[str, ...]
  # float32 [clips, D] (scene) or [frames, D] (event); [L, rows, D] for a
  # model with L layers (`EmbeddingModel.layer_names`).
  x: np.ndarray
  labels: tuple[tuple[str, ...], ...]  # per clip (scene tasks)
  events: tuple[tuple[dict[str, Any], ...], ...]  # per clip, ms (event tasks)
  file_index: np.ndarray | None = None  # int32 [frames]: row -> clip
  timestamps_ms: np.ndarray | None = None  # float64 [frames]
  audio_seconds: float = 0.0  # at the model's rate, for throughput reports


def packed_splits(splits: Mapping[str, SplitEmbeddings]
                  ) -> dict[str, SplitEmbeddings]:
  """The splits with their rows moved into one aligned buffer, in order
  (`aligned_rows.packed_rows`): a probe on one CPU device then uses the
  embeddings where they are, without a second copy. The caller drops the
  old splits, so the embeddings stay in memory once."""
  if not splits or any(s.x.ndim != 2 for s in splits.values()):
    return dict(splits)  # layered [L, N, D] rows: packed per layer later
  views = aligned_rows.packed_rows([s.x for s in splits.values()])
  return {name: dataclasses.replace(s, x=view)
          for (name, s), view in zip(splits.items(), views)}


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
                  width: int, batch: int, rows: int) -> None:
  """Stops a model whose output breaks its own contract (layout, rows,
  dtype, declared size), naming model/task/batch; `rows` is the batch's row
  count, padding included."""
  where = f"model {model.name!r} on task {task!r}, batch {batch}"
  ndim = 3 if what == "timestamp" else 2
  layout = "[B, F, D]" if what == "timestamp" else "[B, D]"
  if emb.ndim != ndim:
    raise ValueError(f"{where}: {what} embeddings have shape {emb.shape},"
                     f" expected {layout}")
  if emb.shape[0] != rows:
    raise ValueError(f"{where}: {what} embeddings have {emb.shape[0]} rows"
                     f" for a batch of {rows} clips")
  if emb.dtype != np.float32:
    raise ValueError(f"{where}: {what} embeddings are {emb.dtype}, not float32")
  if emb.shape[-1] != width:
    raise ValueError(f"{where}: {what} embeddings have size {emb.shape[-1]},"
                     f" but the model declares {width}")


def _check_values(model: EmbeddingModel, task: str, what: str,
                  emb: np.ndarray, batch: int, ids: Sequence[str]) -> None:
  """NaN/Inf in the rows of real clips (padding rows are dropped unseen)."""
  bad = ~np.isfinite(emb.reshape(len(emb), -1)).all(axis=1)
  if bad.any():
    raise ValueError(f"model {model.name!r} on task {task!r}, batch {batch}:"
                     f" {what} embeddings contain NaN or Inf (clip"
                     f" {ids[int(np.argmax(bad))]!r})")


def _check_timestamps(model: EmbeddingModel, task: str, emb: np.ndarray,
                      ts: np.ndarray, batch: int, clip_ms: float,
                      ids: Sequence[str]) -> None:
  """Timestamps [B, F] match the embeddings, increase, and lie in the clip.

  Values are checked for the real clips, the first `len(ids)` rows. A
  clip's frame centres must lie in [0, clip_ms] (hear-validator's rule: none
  past the end), with 1e-3 ms of slack for float32 rounding.
  """
  where = f"model {model.name!r} on task {task!r}, batch {batch}"
  if ts.shape != emb.shape[:2]:
    raise ValueError(f"{where}: timestamps have shape {ts.shape}, expected"
                     f" [B, F] = {emb.shape[:2]} like the embeddings")
  if ts.shape[1] < 1:
    raise ValueError(f"{where}: no frames (F = 0) for a {clip_ms:g} ms clip")
  if not np.issubdtype(ts.dtype, np.floating):
    raise ValueError(f"{where}: timestamps are {ts.dtype}, not float")
  for row, clip in zip(ts[:len(ids)], ids):
    if not np.all(np.isfinite(row)):
      raise ValueError(f"{where}: timestamps of clip {clip!r} contain NaN or"
                       " Inf")
    steps = np.diff(row)
    if np.any(steps <= 0):
      i = int(np.argmax(steps <= 0))
      raise ValueError(f"{where}: timestamps of clip {clip!r} do not increase"
                       f" ({row[i]:g} ms then {row[i + 1]:g} ms at frame"
                       f" {i + 1})")
    if row[0] < -1e-3 or row[-1] > clip_ms + 1e-3:
      raise ValueError(f"{where}: timestamps of clip {clip!r} run from"
                       f" {row[0]:g} to {row[-1]:g} ms, outside the"
                       f" {clip_ms:g} ms clip")


def embed_split(
    model: EmbeddingModel,
    task: TaskInfo,
    split: SplitAudio,
    *,
    batch_samples: int = 16000 * 64,
    on_progress: Callable[[float], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> SplitEmbeddings:
  """Embeds every clip of a split (scene or timestamp embeddings by task).

  A jittable model's batches are split over `devices` (default: this
  process's devices), each batch rounded up to a multiple of their number;
  a clip's embedding does not depend on which device or batch it is in.
  """
  event = task.embedding_type == "event"
  fn = model.timestamp_embeddings if event else model.scene_embeddings
  devices = list(jax.local_devices() if devices is None else devices)
  params = model.params
  if model.jittable and len(devices) > 1:
    # Placed explicitly: the devices are this process's own, so the program
    # stays local to it in a multi-process job too.
    mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    jitted = jax.jit(fn)
    fn = lambda p, audio: jitted(p, jax.device_put(audio, rows))
  elif model.jittable:
    fn = jax.jit(fn)
  # A host model (torch bridge) runs where it runs: one batch at a time.
  per_batch = len(devices) if model.jittable else 1
  layers = len(model.layer_names)
  clips = [to_model_rate(a, task.sample_rate, model.sample_rate)
           for a in split.audio]
  by_length: dict[int, list[int]] = {}
  for i, clip in enumerate(clips):
    by_length.setdefault(len(clip), []).append(i)

  outputs: list[Any] = [None] * len(clips)
  batch_no = 0
  for length, members in sorted(by_length.items()):
    size = _batch_size(length, batch_samples)
    size = -(-size // per_batch) * per_batch
    for start in range(0, len(members), size):
      chunk = members[start:start + size]
      audio = np.zeros((size, length), np.float32)
      for row, i in enumerate(chunk):
        audio[row] = clips[i]
      ids = [split.ids[i] for i in chunk]
      if event:
        emb, ts = fn(params, audio)
        emb, ts = _batch_first(model, np.asarray(emb), layers), np.asarray(ts)
        one = emb[:, 0] if layers else emb  # layer 0 shows the layout
        _check_output(model, task.name, "timestamp", one,
                      model.timestamp_embedding_size, batch_no, size)
        _check_values(model, task.name, "timestamp", emb[:len(chunk)],
                      batch_no, ids)
        _check_timestamps(model, task.name, one, ts, batch_no,
                          1000.0 * length / model.sample_rate, ids)
        ts = ts.astype(np.float64)
        for row, i in enumerate(chunk):
          outputs[i] = (emb[row], ts[row])
      else:
        emb = _batch_first(model, np.asarray(fn(params, audio)), layers)
        _check_output(model, task.name, "scene",
                      emb[:, 0] if layers else emb,
                      model.scene_embedding_size, batch_no, size)
        _check_values(model, task.name, "scene", emb[:len(chunk)], batch_no,
                      ids)
        for row, i in enumerate(chunk):
          outputs[i] = emb[row]
      batch_no += 1
      if on_progress is not None:
        on_progress(len(chunk) * length / model.sample_rate)

  seconds = sum(len(c) for c in clips) / model.sample_rate
  if not event:
    x = np.stack(outputs).astype(np.float32) if outputs else np.zeros(
        (0, *([layers] if layers else []), model.scene_embedding_size),
        np.float32)
    x = np.moveaxis(x, 0, 1) if layers else x  # [L, clips, D]
    return SplitEmbeddings(split.ids, x, split.labels, split.events,
                           audio_seconds=seconds)
  if not outputs:  # an empty share of a split (more processes than clips)
    return SplitEmbeddings(split.ids, np.zeros(
        (0, model.timestamp_embedding_size), np.float32), split.labels,
                           split.events, np.zeros(0, np.int32),
                           np.zeros(0, np.float64), audio_seconds=0.0)
  # Frames are the second-to-last axis, also of layered [L, F, D] clips.
  x = np.concatenate([e for e, _ in outputs], axis=-2).astype(np.float32)
  file_index = np.concatenate([np.full(len(t), i, np.int32)
                               for i, (_, t) in enumerate(outputs)])
  timestamps = np.concatenate([t for _, t in outputs])
  return SplitEmbeddings(split.ids, x, split.labels, split.events, file_index,
                         timestamps, audio_seconds=seconds)


def _batch_first(model: EmbeddingModel, emb: np.ndarray,
                 layers: int) -> np.ndarray:
  """A layered model's [L, B, ...] output as [B, L, ...] (rows first, like
  a one-layer model's); a one-layer model's output as it is."""
  if not layers:
    return emb
  if emb.ndim < 1 or emb.shape[0] != layers:
    raise ValueError(f"model {model.name!r}: output {emb.shape} lacks its"
                     f" leading axis of {layers} layers"
                     f" ({', '.join(model.layer_names)})")
  return np.moveaxis(emb, 0, 1)


_PARAMS_DIGESTS: dict[int, tuple[Any, str]] = {}


def params_digest(params: Any) -> str:
  """sha256 of a params pytree (paths, dtypes, shapes, bytes); remembered
  per params object, so a run hashes each model's weights once."""
  seen = _PARAMS_DIGESTS.get(id(params))
  if seen is not None and seen[0] is params:
    return seen[1]
  digest = hashlib.sha256()
  leaves, _ = jax.tree_util.tree_flatten_with_path(params)
  for path, leaf in leaves:
    array = np.ascontiguousarray(np.asarray(leaf))
    if array.dtype.hasobject:  # not an array: its repr is what is known
      digest.update(f"{jax.tree_util.keystr(path)}:{leaf!r}".encode())
      continue
    digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype.str}"
                  f"{array.shape}".encode())
    digest.update(array.tobytes())
  _PARAMS_DIGESTS[id(params)] = (params, digest.hexdigest())
  return digest.hexdigest()


def files_digest(paths: Sequence[str], memo_path: str) -> str:
  """sha256 over the files' contents, in order; each file's own sha256 is
  kept in `memo_path` (JSON) with its size and mtime, so an unchanged
  dataset is read once, not on every run."""
  try:
    with open(memo_path) as f:
      memo = json.load(f)
  except (OSError, ValueError):
    memo = {}
  memo = memo if isinstance(memo, dict) else {}
  total, changed = hashlib.sha256(), False
  for path in paths:
    stat = os.stat(path)
    key = os.path.abspath(path)
    entry = memo.get(key)
    if not (isinstance(entry, dict) and entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns):
      with open(path, "rb") as f:
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                 "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
      memo[key], changed = entry, True
    total.update(f"{os.path.basename(path)}:{entry['sha256']}\n".encode())
  if changed:
    os.makedirs(os.path.dirname(memo_path) or ".", exist_ok=True)
    tmp = f"{memo_path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
      json.dump(memo, f, indent=1, sort_keys=True)
    os.replace(tmp, memo_path)
  return total.hexdigest()


def cache_fingerprint(model: EmbeddingModel, data: dict[str, Any], *,
                      batch_samples: int) -> str:
  """What a split's cached embeddings depend on, as a string: hear_jax's
  version, the model (canonical spec with options, weights digest, rate,
  sizes), the batching, and `data` (the caller's description of the split:
  dataset, split name, example count, content digest...)."""
  return json.dumps({
      "hear_jax": hear_jax.__version__,
      "model": model.name, "model_params": params_digest(model.params),
      "model_rate": model.sample_rate,
      "sizes": [model.scene_embedding_size, model.timestamp_embedding_size],
      "batch_samples": batch_samples, "data": data,
  }, sort_keys=True)


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
  # A per-process name: a killed writer's leftover is never the file read
  # (only `path` is) and never clashes with the next writer's.
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  try:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())  # the rename must not land before the data
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


# What reading a damaged .npz raises: a cut or overwritten zip, a bad CRC,
# a missing or malformed member.
_DAMAGED_NPZ = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile,
                zlib.error, json.JSONDecodeError)


def load_embeddings(path: str, fingerprint: str) -> SplitEmbeddings | None:
  """The cached split if it exists, is intact and was made for `fingerprint`.

  A damaged file (truncated, corrupt, incomplete) is logged and treated as
  missing, so it is recomputed and replaced, never trusted or fatal.
  """
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      if str(f["fingerprint"]) != fingerprint:
        logging.info("%s: made from other inputs; recomputing", path)
        return None
      targets = json.loads(str(f["targets_json"]))
      emb = SplitEmbeddings(
          ids=tuple(str(i) for i in f["ids"]),
          x=f["x"],
          labels=tuple(tuple(l) for l in targets["labels"]),
          events=tuple(tuple(e) for e in targets["events"]),
          file_index=f["file_index"] if "file_index" in f else None,
          timestamps_ms=f["timestamps_ms"] if "timestamps_ms" in f else None,
          audio_seconds=float(f["audio_seconds"]),
      )
    _check_consistent(emb)
  except _DAMAGED_NPZ as e:
    logging.warning("%s: damaged embeddings cache (%s: %s); recomputing",
                    path, type(e).__name__, e)
    return None
  return emb


def _check_consistent(emb: SplitEmbeddings) -> None:
  """Rows, clips and frame indices agree (a file can be whole but wrong)."""
  n = len(emb.ids)
  if emb.x.ndim not in (2, 3) or emb.x.dtype != np.float32:
    raise ValueError(f"x is {emb.x.dtype} {emb.x.shape}, not float32 [N, D]"
                     " or [layers, N, D]")
  rows = emb.x.shape[-2]
  if len(emb.labels) != n or len(emb.events) != n:
    raise ValueError(f"{n} ids but {len(emb.labels)} labels and"
                     f" {len(emb.events)} event lists")
  if emb.file_index is None:
    if rows != n:
      raise ValueError(f"{rows} rows for {n} clips")
    return
  if not (len(emb.file_index) == len(emb.timestamps_ms) == rows):
    raise ValueError(f"{rows} rows, {len(emb.file_index)} file indices,"
                     f" {len(emb.timestamps_ms)} timestamps")
  if rows and not (0 <= emb.file_index.min()
                         and emb.file_index.max() < n):
    raise ValueError(f"file_index outside [0, {n})")


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


def shard_path(path: str, index: int, count: int) -> str:
  """Where process `index` of `count` keeps its part of split cache `path`:
  `<dir>/<split>.shard-<i>-of-<n>.npz`."""
  root = path[:-len(".npz")] if path.endswith(".npz") else path
  return f"{root}.shard-{index}-of-{count}.npz"


def shard_fingerprint(fingerprint: str, index: int, count: int) -> str:
  return json.dumps({"split": fingerprint, "shard": index, "of": count})


def merge_embeddings(parts: Sequence[SplitEmbeddings]) -> SplitEmbeddings:
  """One split from parts holding disjoint clips: clips in id order (as
  `embed_split` of the whole split gives them), each clip's rows intact."""
  if not parts:
    raise ValueError("merge_embeddings: no parts")
  event = parts[0].file_index is not None
  if any((p.file_index is not None) != event for p in parts):
    raise ValueError("merge_embeddings: scene and event parts mixed")
  clips = sorted((clip, p, c) for p, part in enumerate(parts)
                 for c, clip in enumerate(part.ids))
  ids = tuple(clip for clip, _, _ in clips)
  if len(set(ids)) != len(ids):
    dup = next(a for a, b in zip(ids, ids[1:]) if a == b)
    raise ValueError(f"merge_embeddings: clip {dup!r} is in two parts")
  labels = tuple(parts[p].labels[c] for _, p, c in clips)
  events = tuple(parts[p].events[c] for _, p, c in clips)
  seconds = sum(p.audio_seconds for p in parts)
  x_all = np.concatenate([p.x for p in parts]).astype(np.float32)
  offsets = np.cumsum([0] + [len(p.x) for p in parts])
  if not event:
    rows = np.array([offsets[p] + c for _, p, c in clips], np.int64)
    return SplitEmbeddings(ids, x_all[rows], labels, events,
                           audio_seconds=seconds)
  # Frames of a clip are contiguous in its part: clip c's rows are
  # [starts[c], starts[c + 1]) of that part's file_index.
  starts = [np.searchsorted(p.file_index, np.arange(len(p.ids) + 1))
            for p in parts]
  spans = [(offsets[p] + starts[p][c], offsets[p] + starts[p][c + 1])
           for _, p, c in clips]
  rows = np.concatenate([np.arange(a, b) for a, b in spans] or
                        [np.zeros(0, np.int64)])
  file_index = np.repeat(np.arange(len(ids), dtype=np.int32),
                         [b - a for a, b in spans])
  timestamps = np.concatenate([p.timestamps_ms for p in parts])[rows]
  return SplitEmbeddings(ids, x_all[rows], labels, events, file_index,
                         timestamps.astype(np.float64), audio_seconds=seconds)


def sharded_split_embeddings(
    path: str, fingerprint: str,
    compute_share: Callable[[range], SplitEmbeddings], n_examples: int, *,
    label: str, timeout_seconds: float) -> tuple[SplitEmbeddings, bool]:
  """`cached_split_embeddings` for a job of several processes.

  A complete cache at `path` is used by any number of processes. Otherwise
  process i embeds its contiguous share of the split's `n_examples` data
  source rows (`compute_share(range)`, clips in id order) into its shard
  file (`shard_path`, reused on a rerun with the same process count), all
  processes meet, process 0 merges the shards into `path` (the one-process
  cache format, fingerprint `fingerprint`) and deletes them, and every
  process reads the merged split. Only process 0 writes `path`; every
  process writes only its shard. `path` must be on a disk every process
  sees. Returns the split and whether it was cached.
  """
  from hear_jax import distributed  # pylint: disable=g-import-not-at-top
  index, count = distributed.process_index(), distributed.process_count()
  merged = load_embeddings(path, fingerprint)
  if merged is not None:
    return merged, True
  mine = distributed.share(n_examples, index, count)
  own = shard_path(path, index, count)
  part = load_embeddings(own, shard_fingerprint(fingerprint, index, count))
  if part is None:
    logging.info("process %d/%d: embedding %d of %d examples of %s", index,
                 count, len(mine), n_examples, label)
    part = compute_share(mine)
    if len(part.ids) != len(mine):
      raise ValueError(f"{label}: process {index}/{count} embedded"
                       f" {len(part.ids)} clips for a share of {len(mine)}")
    save_embeddings(own, part, shard_fingerprint(fingerprint, index, count))
  else:
    logging.info("process %d/%d: reusing its shard, %d of %d examples of %s",
                 index, count, len(part.ids), n_examples, label)
  distributed.barrier(f"embedded {label}", timeout_seconds=timeout_seconds)

  def merge() -> str:
    parts = [part]
    for i in range(1, count):
      shard = load_embeddings(shard_path(path, i, count),
                              shard_fingerprint(fingerprint, i, count))
      if shard is None:
        raise ValueError(
            f"{shard_path(path, i, count)}: process {i} wrote it, but process"
            " 0 cannot read it; the workdir must be one directory shared by"
            " every host (NFS, Filestore, a gcsfuse bucket)")
      parts.append(shard)
    split = merge_embeddings(parts)
    if len(split.ids) != n_examples:
      raise ValueError(f"{label}: the shards hold {len(split.ids)} clips, the"
                       f" split {n_examples}")
    save_embeddings(path, split, fingerprint)
    for i in range(count):
      os.remove(shard_path(path, i, count))
    parts.clear()
    merged_here.append(split)
    return ""

  merged_here: list[SplitEmbeddings] = []
  distributed.from_main(f"merged {label}", merge,
                        timeout_seconds=timeout_seconds)
  if merged_here:
    return merged_here[0], False
  merged = load_embeddings(path, fingerprint)
  if merged is None:
    raise ValueError(f"{path}: process 0 wrote it, but process {index} cannot"
                     " read it; the workdir must be one directory shared by"
                     " every host (NFS, Filestore, a gcsfuse bucket)")
  return merged, False
