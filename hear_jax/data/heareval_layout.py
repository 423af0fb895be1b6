"""hear-eval-kit's embeddings layout, read and written.

  info, splits = read_embeddings("embeddings/hearbaseline.naive/"
                                 "spoken_digit-1.0.9-small")
  model_name(path)                    # "hearbaseline.naive": the parent dir
  export_task("W/heareval/melstats/spoken_digit-1.0.9-small", info, splits)
  # -> python -m heareval.predictions.runner W/heareval/melstats/...

The layout (hear-reference §4.4) is what `heareval.embeddings.runner` writes
per task: copies of `task_metadata.json`, `labelvocabulary.csv` and every
`<split>.json`; per clip `<split>/<wav>.embedding.npy` ((D,) scene, (T, D)
event), `.target-labels.json` and, for events, `.timestamps.json` (ms); per
split `<split>.embeddings.npy`, a raw float32 memmap WITHOUT an .npy header,
shaped by `<split>.embedding-dimensions.json` ([N, D], N = clips or frames),
`<split>.target-labels.pkl` and, for events, `<split>.filename-timestamps.json`
([[<split dir>/<wav>, t_ms], ...], one per frame).

Reading never unpickles anything. Event rows are named by the
filename-timestamps file and labelled from the split json. Scene rows carry
no names, so each row is matched to its clip's per-file embedding (identical
bytes); without the per-file files, heareval 2021.1.x's row order is replayed
(one `random.Random(0)` per task shuffling each split's json keys, splits in
`task_metadata.json` order), which older runners (glob order) did not use.
The memmap's rows are what heareval trains on, in its order, so hear_jax
keeps that order.

Writing produces every file above (the .pkl included: the predictions runner
reads labels from it), rows shuffled the way heareval 2021.1.x shuffles them,
into a staging directory renamed into place when complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import pickle
import random
import shutil
import tempfile
import zlib
from typing import Any, Mapping, Sequence

import numpy as np

from hear_jax import embed
from hear_jax.data import hearpreprocess
from hear_jax.data.task import TaskInfo
from hear_jax.embed import SplitEmbeddings

# heareval's frame labels: an event covers [start, end + 0.0001) ms
# (an IntervalTree per clip, hear-reference §4.3).
_END_EPSILON_MS = 0.0001
_EXPORT_MARKER = ".hear_jax-export.json"


def looks_like_embeddings_dir(path: str | os.PathLike) -> bool:
  """True for a directory holding `<split>.embedding-dimensions.json`."""
  path = pathlib.Path(path)
  return path.is_dir() and any(path.glob("*.embedding-dimensions.json"))


def model_name(path: str | os.PathLike) -> str:
  """The embeddings' model: the task directory's parent, as the runner
  names it (`embeddings/<module>[-options]/<task dir>`)."""
  return pathlib.Path(os.path.abspath(path)).parent.name


def task_dir_name(metadata: Mapping[str, Any]) -> str:
  """hearpreprocess's task directory name, `<task_name>-<version>-<mode>`
  (just the task name for tasks without version or mode)."""
  if all(metadata.get(k) for k in ("task_name", "version", "mode")):
    return f"{metadata['task_name']}-{metadata['version']}-{metadata['mode']}"
  return str(metadata["task_name"])


# --- reading ------------------------------------------------------------------


def _read_json(path: pathlib.Path) -> Any:
  if not path.is_file():
    raise ValueError(f"{path}: file not found")
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None


def _dimensions(path: pathlib.Path) -> tuple[int, int]:
  dims = _read_json(path)
  if (not isinstance(dims, list) or len(dims) != 2
      or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                 for d in dims)):
    raise ValueError(f"{path}: expected [rows, dimensions] (two positive"
                     f" integers), got {dims!r}")
  return dims[0], dims[1]


def _read_memmap(task_dir: pathlib.Path, split: str) -> np.ndarray:
  dims_path = task_dir / f"{split}.embedding-dimensions.json"
  rows, dim = _dimensions(dims_path)
  path = task_dir / f"{split}.embeddings.npy"
  if not path.is_file():
    raise ValueError(f"{path}: file not found")
  expected = rows * dim * 4
  size = path.stat().st_size
  if size != expected:
    raise ValueError(f"{path}: {size} bytes, but {dims_path.name} says"
                     f" [{rows}, {dim}] float32 = {expected} bytes")
  # Read in place; `read_embeddings` copies every split into one buffer.
  x = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, dim))
  bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
  if len(bad):
    raise ValueError(f"{path}: {len(bad)} row(s) contain NaN or Inf (first:"
                     f" row {bad[0]})")
  return x


def _label_text(value: Any, vocabulary: set[str], where: str) -> str:
  if isinstance(value, bool) or not isinstance(value, (str, int)):
    raise ValueError(f"{where}: label {value!r} is not a string or integer")
  if str(value) not in vocabulary:
    raise ValueError(f"{where}: label {value!r} is not in"
                     f" {hearpreprocess.VOCABULARY_FILE}")
  return str(value)


def _scene_labels(value: Any, info: TaskInfo, where: str) -> tuple[str, ...]:
  if not isinstance(value, list):
    raise ValueError(f"{where}: expected a list of labels, got {value!r}")
  labels = tuple(_label_text(v, set(info.label_vocabulary), where)
                 for v in value)
  if info.prediction_type == "multiclass" and len(labels) != 1:
    raise ValueError(f"{where}: {len(labels)} labels, a multiclass task"
                     " needs exactly one")
  return labels


def _events(value: Any, info: TaskInfo, where: str) -> tuple[dict, ...]:
  if not isinstance(value, list):
    raise ValueError(f"{where}: expected a list of events, got {value!r}")
  out = []
  for event in value:
    if not isinstance(event, dict) or not {"label", "start", "end"} <= set(
        event):
      raise ValueError(f"{where}: expected events {{label, start, end}}, got"
                       f" {event!r}")
    start, end = event["start"], event["end"]
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool)
               and np.isfinite(t) for t in (start, end)) or start > end:
      raise ValueError(f"{where}: event times must be numbers with start <="
                       f" end (ms), got start={start!r} end={end!r}")
    out.append({"label": _label_text(event["label"],
                                     set(info.label_vocabulary), where),
                "start": float(start), "end": float(end)})
  return tuple(out)


def _split_entries(task_dir: pathlib.Path, split: str) -> dict | None:
  path = task_dir / f"{split}.json"
  if not path.exists():
    return None
  entries = _read_json(path)
  if not isinstance(entries, dict):
    raise ValueError(f"{path}: expected an object mapping wav names to"
                     " labels")
  return entries


def _replayed_orders(task_dir: pathlib.Path, info: TaskInfo
                     ) -> dict[str, list[str]] | None:
  """heareval 2021.1.x's memmap row order per split, or None when a split
  json is missing (one shared PRNG: every split's order depends on all
  splits before it)."""
  prng = random.Random(0)
  orders = {}
  for split in info.splits:
    entries = _split_entries(task_dir, split)
    if entries is None:
      return None
    names = list(entries)
    prng.shuffle(names)
    orders[split] = names
  return orders


def _scene_split(task_dir: pathlib.Path, split: str, info: TaskInfo,
                 x: np.ndarray, replayed: list[str] | None) -> SplitEmbeddings:
  entries = _split_entries(task_dir, split)
  per_file_dir = task_dir / split
  if entries is not None:
    names = list(entries)
  else:
    names = sorted(p.name[:-len(".embedding.npy")]
                   for p in per_file_dir.glob("*.embedding.npy"))
  memmap_name = f"{task_dir}/{split}.embeddings.npy"
  if len(names) != len(x):
    raise ValueError(f"{memmap_name}: {len(x)} rows, but {split}.json lists"
                     f" {len(names)} files")
  labels = {}
  for name in names:
    labels_path = per_file_dir / f"{name}.target-labels.json"
    if labels_path.is_file():
      value, where = _read_json(labels_path), str(labels_path)
    elif entries is not None:
      value, where = entries[name], f"{task_dir}/{split}.json: {name!r}"
    else:
      raise ValueError(f"{labels_path}: file not found (and no {split}.json"
                       " to take labels from)")
    labels[name] = _scene_labels(value, info, where)

  per_file = [per_file_dir / f"{name}.embedding.npy" for name in names]
  if all(p.is_file() for p in per_file):
    # Identical rows are interchangeable (same x, same label multiset), so
    # matching by bytes recovers the order whatever runner wrote it.
    by_bytes: dict[bytes, list[str]] = {}
    for name, path in zip(names, per_file):
      emb = np.load(path, allow_pickle=False)
      if emb.shape != (x.shape[1],):
        raise ValueError(f"{path}: shape {emb.shape}, expected"
                         f" ({x.shape[1]},) like {split}.embeddings.npy")
      by_bytes.setdefault(emb.astype(np.float32).tobytes(), []).append(name)
    order = []
    for i, row in enumerate(x):
      matches = by_bytes.get(row.tobytes())
      if not matches:
        raise ValueError(f"{memmap_name}: row {i} matches none of the"
                         f" per-file embeddings in {per_file_dir}")
      order.append(matches.pop())
  elif replayed is not None:
    order = replayed
  else:
    missing = next(p for p in per_file if not p.is_file())
    raise ValueError(f"{missing}: file not found, and without every split"
                     " json the rows of the memmap cannot be named (the .pkl"
                     " labels are never unpickled)")
  return SplitEmbeddings(ids=tuple(order), x=x,
                         labels=tuple(labels[n] for n in order),
                         events=tuple(() for _ in order))


def _event_split(task_dir: pathlib.Path, split: str, info: TaskInfo,
                 x: np.ndarray) -> SplitEmbeddings:
  entries = _split_entries(task_dir, split)
  json_path = task_dir / f"{split}.json"
  if entries is None:
    raise ValueError(f"{json_path}: file not found (event tasks take their"
                     " reference events from it)")
  path = task_dir / f"{split}.filename-timestamps.json"
  rows = _read_json(path)
  if not isinstance(rows, list) or len(rows) != len(x):
    count = len(rows) if isinstance(rows, list) else "no"
    raise ValueError(f"{path}: {count} frames, but {split}.embeddings.npy has"
                     f" {len(x)} rows")
  ids: list[str] = []
  index_of: dict[str, int] = {}
  file_index = np.empty(len(rows), np.int32)
  timestamps = np.empty(len(rows), np.float64)
  for i, row in enumerate(rows):
    if (not isinstance(row, list) or len(row) != 2
        or not isinstance(row[0], str)
        or not isinstance(row[1], (int, float))):
      raise ValueError(f"{path}: entry {i} is {row!r}, expected [<file>,"
                       " <time ms>]")
    name = pathlib.PurePath(row[0]).name
    if name not in index_of:
      if name not in entries:
        raise ValueError(f"{path}: file {name!r} is not in {split}.json")
      index_of[name] = len(ids)
      ids.append(name)
    elif index_of[name] != len(ids) - 1:
      raise ValueError(f"{path}: the frames of {name!r} are not contiguous")
    file_index[i] = index_of[name]
    timestamps[i] = float(row[1])
  missing = [n for n in entries if n not in index_of]
  if missing:
    raise ValueError(f"{path}: no frames for {missing[0]!r} (and"
                     f" {len(missing) - 1} more files of {split}.json)")
  events = tuple(_events(entries[n], info, f"{json_path}: {n!r}")
                 for n in ids)
  return SplitEmbeddings(ids=tuple(ids), x=x, labels=tuple(() for _ in ids),
                         events=events, file_index=file_index,
                         timestamps_ms=timestamps)


def read_embeddings(path: str | os.PathLike
                    ) -> tuple[TaskInfo, dict[str, SplitEmbeddings]]:
  """A heareval embeddings task directory -> (task info, {split: rows}).

  `TaskInfo.sample_rate` is 0: the audio is not there, only its embeddings.
  """
  task_dir = pathlib.Path(path)
  if not task_dir.is_dir():
    raise ValueError(f"{task_dir}: no such embeddings directory")
  meta_path = task_dir / hearpreprocess.METADATA_FILE
  vocab_path = task_dir / hearpreprocess.VOCABULARY_FILE
  for required in (meta_path, vocab_path):
    if not required.is_file():
      raise ValueError(f"{required}: file not found (not a heareval"
                       " embeddings task directory)")
  metadata = hearpreprocess.parse_task_metadata(meta_path.read_bytes(),
                                                str(meta_path))
  vocabulary = hearpreprocess.parse_label_vocabulary(vocab_path.read_bytes(),
                                                     str(vocab_path))
  info = TaskInfo(name=metadata["task_name"], metadata=metadata,
                  label_vocabulary=vocabulary, sample_rate=0)
  event = info.embedding_type == "event"
  replayed = None if event else _replayed_orders(task_dir, info)
  splits, width = {}, None
  for split in info.splits:
    x = _read_memmap(task_dir, split)
    if width is not None and x.shape[1] != width[1]:
      raise ValueError(f"{task_dir}/{split}.embedding-dimensions.json:"
                       f" {x.shape[1]} dimensions, but {width[0]} has"
                       f" {width[1]}")
    width = width or (split, x.shape[1])
    splits[split] = (_event_split(task_dir, split, info, x) if event else
                     _scene_split(task_dir, split, info, x,
                                  replayed and replayed[split]))
  return info, embed.packed_splits(splits)


def fingerprint(path: str | os.PathLike,
                splits: Mapping[str, SplitEmbeddings]) -> str:
  """What a probe result on these embeddings depends on (content, not
  modification times)."""
  doc = {"heareval": os.path.abspath(path), "splits": {
      name: [list(s.x.shape), zlib.crc32(s.x.tobytes()),
             zlib.crc32(json.dumps([s.ids, s.labels, s.events]).encode())]
      for name, s in sorted(splits.items())}}
  return json.dumps(doc, sort_keys=True)


# --- writing ------------------------------------------------------------------


def _frame_labels(events: Sequence[Mapping[str, Any]],
                  timestamps: np.ndarray) -> list[list[str]]:
  return [[e["label"] for e in events
           if e["start"] <= t < e["end"] + _END_EPSILON_MS]
          for t in timestamps]


def _write_json(path: pathlib.Path, doc: Any) -> None:
  path.write_text(json.dumps(doc, indent=1))


def _vocabulary_csv(labels: Sequence[str]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["idx", "label"])
  writer.writerows(enumerate(labels))
  return out.getvalue()


def _write_split(root: pathlib.Path, final: pathlib.Path, split: str,
                 info: TaskInfo, emb: SplitEmbeddings,
                 prng: random.Random) -> None:
  event = info.embedding_type == "event"
  per_file_dir = root / split
  per_file_dir.mkdir()
  rows_of, row_labels_of, times_of = {}, {}, {}
  for i, name in enumerate(emb.ids):
    if event:
      sel = emb.file_index == i
      rows_of[name] = emb.x[sel]
      times_of[name] = np.asarray(emb.timestamps_ms[sel], np.float64)
      row_labels_of[name] = _frame_labels(emb.events[i], times_of[name])
    else:
      rows_of[name] = emb.x[i]
      row_labels_of[name] = list(emb.labels[i])
    base = per_file_dir / name
    np.save(f"{base}.embedding.npy", rows_of[name].astype(np.float32))
    _write_json(pathlib.Path(f"{base}.target-labels.json"),
                row_labels_of[name])
    if event:
      _write_json(pathlib.Path(f"{base}.timestamps.json"),
                  times_of[name].tolist())
  _write_json(root / f"{split}.json", {
      name: ([dict(e) for e in emb.events[i]] if event
             else list(emb.labels[i]))
      for i, name in enumerate(emb.ids)})

  order = list(emb.ids)
  prng.shuffle(order)
  x = (np.concatenate([rows_of[n] for n in order]) if event
       else np.stack([rows_of[n] for n in order])).astype(np.float32)
  _write_json(root / f"{split}.embedding-dimensions.json", list(x.shape))
  x.tofile(root / f"{split}.embeddings.npy")  # raw, as np.memmap writes it
  labels = []
  for name in order:
    labels.extend(row_labels_of[name] if event else [row_labels_of[name]])
  with open(root / f"{split}.target-labels.pkl", "wb") as f:
    pickle.dump(labels, f)
  if event:
    _write_json(root / f"{split}.filename-timestamps.json", [
        [str(final / split / name), float(t)]
        for name in order for t in times_of[name]])


def export_task(out_dir: str | os.PathLike, info: TaskInfo,
                splits: Mapping[str, SplitEmbeddings], *,
                fingerprint: str | None = None) -> pathlib.Path:
  """Writes a task's embeddings in heareval's layout under `out_dir`.

  `out_dir` is replaced as a whole once the new one is complete; with a
  `fingerprint` equal to the last export's, nothing is rewritten.
  """
  final = pathlib.Path(os.path.abspath(out_dir))
  marker = final / _EXPORT_MARKER
  if fingerprint is not None and marker.is_file():
    if json.loads(marker.read_text()).get("fingerprint") == fingerprint:
      return final
  missing = [s for s in info.splits if s not in splits]
  if missing:
    raise ValueError(f"task {info.name}: no embeddings for split(s)"
                     f" {', '.join(missing)}")
  final.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.incomplete-",
                                          dir=final.parent))
  try:
    _write_json(staging / hearpreprocess.METADATA_FILE, dict(info.metadata))
    (staging / hearpreprocess.VOCABULARY_FILE).write_text(
        _vocabulary_csv(info.label_vocabulary))
    prng = random.Random(0)  # one per task, as heareval's runner
    for split in info.splits:
      _write_split(staging, final, split, info, splits[split], prng)
    _write_json(staging / _EXPORT_MARKER, {"fingerprint": fingerprint})
    if final.exists():
      shutil.rmtree(final)
    os.replace(staging, final)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return final
