"""hearpreprocess output (a task directory or its tarball): parse and check it.

  task = open_task("tasks/spoken_digit-1.0.9-small")  # metadata, vocab, rate
  clips = check_task(task)  # {split: clips}; every json entry and wav header
  for key, example in split_examples(task, "fold00", clips["fold00"]): ...

  task_dir, rate = find_task(
      "hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz",
      extract_dir="/tmp/hear")                 # a directory or a tarball
  sources = rate_sources("data/spoken_digit")  # {16000: ..., 44100: ...}
  rate = rate_for_model(sources, 44100)        # what hear-eval-kit feeds it
  builder = prepare_hearpreprocess_task(path, data_dir, sample_rate=rate)

The layout (hear-reference.md §2):

  <task dir>/task_metadata.json, labelvocabulary.csv, <split>.json,
             <sample_rate>/<split>/<file>.wav     mono; 16-bit PCM, or float32
                                                  at the task's native rate

A task may hold several `<sample_rate>/` folders, or come as several
tarballs, one per rate (`hear2021-<task dir>-<rate>.tar.gz`), kept in one
folder; `rate_sources` says where each rate is, and each rate is prepared as
its own TFDS dataset.

Every problem is a one-line `ValueError` naming the file and what is wrong.
Tarballs are read member by member: links, devices and names that are
absolute or contain '..' are refused, and an extraction becomes visible
(renamed into place) only once every member is written.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import io
import json
import logging
import lzma
import math
import os
import pathlib
import re
import shutil
import tarfile
import tempfile
import zlib
from typing import Any, Iterable, Iterator

import tensorflow_datasets as tfds

from hear_jax.data import audio_io
from hear_jax.data import hear_features

METADATA_FILE = "task_metadata.json"
VOCABULARY_FILE = "labelvocabulary.csv"
EMBEDDING_TYPES = ("scene", "event")
PREDICTION_TYPES = ("multiclass", "multilabel")
# TFDS split names: word characters and '-'; "all" is reserved by TFDS.
_SPLIT_NAME = re.compile(r"^[\w-]+$")
# Small files we read out of a tarball while scanning it.
_MAX_SMALL_FILE_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class HearTask:
  """One hearpreprocess task at one sample rate."""

  name: str  # the task directory's name, e.g. "spoken_digit-1.0.9-small"
  sample_rate: int
  metadata: dict[str, Any]  # task_metadata.json as written
  label_vocabulary: tuple[str, ...]  # labelvocabulary.csv, in idx order
  source: str  # how error messages name the task directory
  path: pathlib.Path | None  # the directory; None for an unextracted tarball

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(self.metadata["splits"])

  @property
  def is_event_task(self) -> bool:
    return self.metadata["embedding_type"] == "event"

  @property
  def config_name(self) -> str:
    return config_name(self.name, self.sample_rate)

  @property
  def expected_num_samples(self) -> float | None:
    duration = self.metadata["sample_duration"]
    return None if duration is None else duration * self.sample_rate


@dataclasses.dataclass(frozen=True)
class Clip:
  """One entry of a `<split>.json`."""

  name: str  # the wav file name, e.g. "00012.wav"
  labels: tuple[str, ...] = ()  # scene tasks
  events: tuple[dict[str, Any], ...] = ()  # event tasks: {label, start, end} ms


def config_name(task_dir_name: str, sample_rate: int) -> str:
  """"spoken_digit-1.0.9-small", 44100 -> a TFDS config name (its rules)."""
  name = re.sub(r"[^\w+\-.]", "_", f"{task_dir_name}-{sample_rate}")
  return name.lstrip(".") or f"task-{sample_rate}"


# --- task_metadata.json and labelvocabulary.csv -----------------------------


def parse_task_metadata(text: str | bytes, name: str) -> dict[str, Any]:
  """task_metadata.json content -> dict, after checking the fields we use."""
  metadata = _parse_json(text, name)
  if not isinstance(metadata, dict):
    raise ValueError(f"{name}: expected a JSON object")
  missing = [k for k in hear_features.REQUIRED_METADATA if k not in metadata]
  if missing:
    raise ValueError(f"{name}: missing field(s) {', '.join(missing)}")
  for field, allowed in (("embedding_type", EMBEDDING_TYPES),
                         ("prediction_type", PREDICTION_TYPES)):
    if metadata[field] not in allowed:
      raise ValueError(f"{name}: {field} is {metadata[field]!r}, expected one"
                       f" of {', '.join(allowed)}")
  splits = metadata["splits"]
  if (not isinstance(splits, list) or not splits
      or len(set(map(str, splits))) != len(splits)):
    raise ValueError(f"{name}: splits must be a non-empty list of distinct"
                     f" names, got {splits!r}")
  for split in splits:
    if (not isinstance(split, str) or not _SPLIT_NAME.match(split)
        or split.lower() == "all"):
      raise ValueError(f"{name}: split name {split!r} is not usable (letters,"
                       " digits, '_' and '-' only; not 'all')")
  duration = metadata["sample_duration"]
  if duration is not None and (not _is_number(duration) or duration <= 0):
    raise ValueError(f"{name}: sample_duration must be null or a positive"
                     f" number of seconds, got {duration!r}")
  evaluation = metadata["evaluation"]
  if (not isinstance(evaluation, list) or not evaluation
      or not all(isinstance(e, str) for e in evaluation)):
    raise ValueError(f"{name}: evaluation must be a non-empty list of metric"
                     f" names, got {evaluation!r}")
  return metadata


def parse_label_vocabulary(text: str | bytes, name: str) -> tuple[str, ...]:
  """labelvocabulary.csv ("idx,label" rows) -> labels in idx order 0..K-1."""
  if isinstance(text, bytes):
    text = _decode(text, name)
  rows = list(csv.reader(io.StringIO(text)))
  if not rows or [c.strip() for c in rows[0]] != ["idx", "label"]:
    raise ValueError(f"{name}: expected the header 'idx,label'")
  by_idx = {}
  for line, row in enumerate(rows[1:], start=2):
    if not row:
      continue
    if len(row) != 2:
      raise ValueError(f"{name}: line {line} has {len(row)} fields, expected 2")
    try:
      idx = int(row[0])
    except ValueError:
      raise ValueError(f"{name}: line {line}: idx {row[0]!r} is not an"
                       " integer") from None
    if idx in by_idx:
      raise ValueError(f"{name}: idx {idx} appears twice")
    by_idx[idx] = row[1]
  if not by_idx:
    raise ValueError(f"{name}: no labels")
  if sorted(by_idx) != list(range(len(by_idx))):
    raise ValueError(f"{name}: idx must be 0..{len(by_idx) - 1}, got"
                     f" {sorted(by_idx)[:5]}...")
  labels = tuple(by_idx[i] for i in range(len(by_idx)))
  if len(set(labels)) != len(labels):
    raise ValueError(f"{name}: a label appears twice")
  return labels


def _read_small_file(path: pathlib.Path, name: str) -> bytes:
  if not path.is_file():
    raise ValueError(f"{name}: file not found")
  return path.read_bytes()


def _parse_json(text: str | bytes, name: str) -> Any:
  if isinstance(text, bytes):
    text = _decode(text, name)
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{name}: not valid JSON ({e.msg} at line"
                     f" {e.lineno})") from None


def _decode(data: bytes, name: str) -> str:
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError:
    raise ValueError(f"{name}: not UTF-8 text") from None


def _is_number(x: Any) -> bool:
  return (isinstance(x, (int, float)) and not isinstance(x, bool)
          and math.isfinite(x))


def _pick_rate(rates: set[int], sample_rate: int | None, name: str) -> int:
  """The rate to read: the one asked for, or the only one present."""
  present = ", ".join(map(str, sorted(rates))) or "none"
  if sample_rate is not None:
    if int(sample_rate) not in rates:
      raise ValueError(f"{name}: no {sample_rate}/ audio directory (rates"
                       f" present: {present})")
    return int(sample_rate)
  if len(rates) != 1:
    raise ValueError(f"{name}: expected one <sample_rate>/ audio directory,"
                     f" found {present}; pass sample_rate=")
  return next(iter(rates))


def rate_for_model(rates: Iterable[int], model_rate: int) -> int:
  """The audio rate a model reads: its own, as hear-eval-kit's runner feeds
  it; if the task lacks it, the rate to resample from: the lowest above it
  (nothing the model can hear is lost), else the highest."""
  rates = sorted(set(rates))
  if not rates:
    raise ValueError("rate_for_model: the task has no audio rate")
  if model_rate in rates:
    return model_rate
  above = [r for r in rates if r > model_rate]
  return above[0] if above else rates[-1]


# --- task directories --------------------------------------------------------


def _task_dirs_below(path: pathlib.Path) -> list[pathlib.Path]:
  """`path` itself if it is a task directory, else every task directory up
  to three levels below it."""
  if (path / METADATA_FILE).is_file():
    return [path]
  found = []
  for depth in (1, 2, 3):
    pattern = "/".join(["*"] * depth + [METADATA_FILE])
    found += [p.parent for p in path.glob(pattern)]
  return found


def _locate_task_dir(path: pathlib.Path) -> pathlib.Path:
  """`path` itself or the one task directory up to three levels below it."""
  found = _task_dirs_below(path)
  if not found:
    raise ValueError(f"{path / METADATA_FILE}: file not found (not a"
                     " hearpreprocess task directory)")
  if len(found) > 1:
    names = ", ".join(sorted(p.name for p in found)[:5])
    raise ValueError(f"{path}: holds {len(found)} tasks ({names}); pass one"
                     " task directory")
  return found[0]


def open_task(
    task_dir: str | os.PathLike,
    sample_rate: int | None = None,
    source: str | None = None,
) -> HearTask:
  """Reads a task directory's metadata and vocabulary and picks its rate.

  `task_dir` may also be a folder holding exactly one task (e.g. the
  `hear-2021.0.6/` top of an unpacked tarball). Cheap: reads no audio.
  """
  path = _locate_task_dir(pathlib.Path(task_dir))
  source = source or os.fspath(path)
  metadata = parse_task_metadata(
      _read_small_file(path / METADATA_FILE, f"{source}/{METADATA_FILE}"),
      f"{source}/{METADATA_FILE}")
  vocabulary = parse_label_vocabulary(
      _read_small_file(path / VOCABULARY_FILE, f"{source}/{VOCABULARY_FILE}"),
      f"{source}/{VOCABULARY_FILE}")
  rates = {int(p.name) for p in path.iterdir()
           if p.is_dir() and p.name.isdigit()}
  rate = _pick_rate(rates, sample_rate, source)
  return HearTask(name=path.name, sample_rate=rate, metadata=metadata,
                  label_vocabulary=vocabulary, source=source, path=path)


def _label(value: Any, where: str) -> str:
  # HEAR labels are strings, or ints for nsynth and spoken_digit; the
  # vocabulary file holds their text.
  if isinstance(value, str) or (isinstance(value, int)
                                and not isinstance(value, bool)):
    return str(value)
  raise ValueError(f"{where}: label {value!r} is not a string or integer")


def _parse_event(event: Any, where: str) -> dict[str, Any]:
  if not isinstance(event, dict) or not {"label", "start", "end"} <= set(event):
    raise ValueError(f"{where}: expected events {{label, start, end}}, got"
                     f" {event!r}")
  start, end = event["start"], event["end"]
  if not (_is_number(start) and _is_number(end)) or not 0 <= start <= end:
    raise ValueError(f"{where}: event times must be numbers with 0 <= start"
                     f" <= end (ms), got start={start!r} end={end!r}")
  return {"label": _label(event["label"], where), "start": float(start),
          "end": float(end)}


def read_split_clips(task: HearTask, split: str) -> tuple[Clip, ...]:
  """Parses `<split>.json`: names, labels (or events), vocabulary membership."""
  json_name = f"{task.source}/{split}.json"
  entries = _parse_json(
      _read_small_file(task.path / f"{split}.json", json_name), json_name)
  if not isinstance(entries, dict):
    raise ValueError(f"{json_name}: expected an object mapping wav names to"
                     " labels")
  if not entries:
    raise ValueError(f"{json_name}: split {split} is empty")
  vocabulary = set(task.label_vocabulary)
  audio_dir = f"{task.sample_rate}/{split}/"
  multiclass = (task.metadata["prediction_type"] == "multiclass"
                and not task.is_event_task)
  clips = []
  for name, value in entries.items():
    where = f"{json_name}: {name!r}"
    if not name or name in (".", "..") or "/" in name or "\\" in name:
      raise ValueError(f"{json_name}: file name {name!r} is not a plain file"
                       f" name inside {audio_dir} ('..', '/', absolute paths"
                       " refused)")
    if not isinstance(value, list):
      raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
    if task.is_event_task:
      clip = Clip(name, events=tuple(_parse_event(e, where) for e in value))
      labels = [e["label"] for e in clip.events]
    else:
      clip = Clip(name, labels=tuple(_label(x, where) for x in value))
      labels = list(clip.labels)
      if multiclass and len(labels) != 1:
        raise ValueError(f"{where}: {len(labels)} labels, a multiclass task"
                         " needs exactly one")
    unknown = sorted(set(labels) - vocabulary)
    if unknown:
      raise ValueError(f"{where}: label(s) {', '.join(map(repr, unknown[:3]))}"
                       f" not in {VOCABULARY_FILE}")
    clips.append(clip)
  return tuple(clips)


def wav_path(task: HearTask, split: str, clip: Clip) -> pathlib.Path:
  return task.path / str(task.sample_rate) / split / clip.name


def check_task(task: HearTask) -> dict[str, tuple[Clip, ...]]:
  """Checks every split json and every wav header; returns {split: clips}.

  Run before writing anything, so a bad file stops a build at once.
  """
  if task.path is None:
    raise ValueError(f"{task.source}: extract the tarball first (find_task)")
  splits, rounded = {}, 0
  for split in task.splits:
    clips = read_split_clips(task, split)
    for clip in clips:
      info = audio_io.check_wav(
          wav_path(task, split, clip), sample_rate=task.sample_rate,
          num_samples=task.expected_num_samples,
          name=f"{task.source}/{task.sample_rate}/{split}/{clip.name}")
      rounded += info.subtype != audio_io.PCM_16
    splits[split] = clips
  if rounded:
    logging.warning("%s: %d wavs are not 16-bit PCM (hearpreprocess keeps"
                    " float32 at a task's native rate); they are rounded to"
                    " 16 bits", task.source, rounded)
  return splits


def split_examples(task: HearTask, split: str, clips: tuple[Clip, ...]
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
  """(key, example) in the `hear_features` format; key = id = wav name."""
  for clip in clips:
    path = wav_path(task, split, clip)
    audio = audio_io.read_pcm16(
        path, name=f"{task.source}/{task.sample_rate}/{split}/{clip.name}")
    if task.is_event_task:
      example = hear_features.event_example(clip.name, audio, clip.events)
    else:
      example = hear_features.scene_example(clip.name, audio, clip.labels)
    yield clip.name, example


# --- tarballs ----------------------------------------------------------------


# What reading a damaged archive raises (gzip/xz/tar layers).
_CORRUPT_ARCHIVE = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile,
                    lzma.LZMAError)


@contextlib.contextmanager
def _reading_tar(path: str) -> Iterator[tarfile.TarFile]:
  """Opens a tarball; a damaged one becomes a one-line ValueError."""
  try:
    tar = tarfile.open(path, mode="r:*")
  except tarfile.ReadError:
    raise ValueError(f"{path}: not a tar archive (plain, gzip, bzip2 or"
                     " xz)") from None
  except (*_CORRUPT_ARCHIVE, OSError) as e:
    raise ValueError(f"{path}: unreadable tar archive ({e})") from None
  try:
    with tar:
      yield tar
  except _CORRUPT_ARCHIVE as e:
    raise ValueError(
        f"{path}: truncated or corrupt tar archive ({e})") from None


def _safe_members(tar: tarfile.TarFile, path: str) -> Iterator[tarfile.TarInfo]:
  """Streams members, refusing any that could write outside the target."""
  for member in tar:
    name = member.name
    if member.issym() or member.islnk():
      raise ValueError(f"{path}: member {name!r} is a link; refusing to"
                       " extract")
    if not (member.isfile() or member.isdir()):
      raise ValueError(f"{path}: member {name!r} is a device or special"
                       " file; refusing to extract")
    if (name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name)
        or ".." in re.split(r"[/\\]", name)):
      raise ValueError(f"{path}: member {name!r} has an absolute path or"
                       " '..'; refusing to extract")
    yield member


def _check_archive_end(tar: tarfile.TarFile, path: str) -> None:
  """Refuses a plain tar that stops without its end-of-archive zero block.

  tarfile ends iteration quietly at EOF or at a garbled header, so a tar cut
  at a member boundary would look complete. Compressed archives carry their
  own end check (gzip/xz/bzip2 raise EOFError when cut), and peeking back in
  them would mean decompressing everything again.
  """
  if not isinstance(tar.fileobj, (io.BufferedReader, io.FileIO)):
    return
  tar.fileobj.seek(tar.offset)
  if tar.fileobj.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
    raise ValueError(f"{path}: truncated or corrupt tar archive (no"
                     f" end-of-archive marker at byte {tar.offset})")


def _member_parts(member: tarfile.TarInfo) -> tuple[str, ...]:
  return tuple(p for p in member.name.split("/") if p not in ("", "."))


def scan_tarball(path: str | os.PathLike, sample_rate: int | None = None
                 ) -> HearTask:
  """A task tarball's metadata, vocabulary and rate, without extracting it.

  Reads the archive once (gzip cannot seek): checks every member is safe and
  that each split json is present.
  """
  task, rates = _scan_tarball(os.fspath(path))
  return dataclasses.replace(
      task, sample_rate=_pick_rate(rates, sample_rate, task.source))


def _scan_tarball(path: str) -> tuple[HearTask, set[int]]:
  """`scan_tarball`, with every rate the archive holds (the task's
  `sample_rate` is 0: not picked)."""
  small = {}  # member parts -> bytes of the metadata and vocabulary files
  files = set()
  with _reading_tar(path) as tar:
    for member in _safe_members(tar, path):
      parts = _member_parts(member)
      if not member.isfile() or not parts:
        continue
      files.add(parts)
      if parts[-1] in (METADATA_FILE, VOCABULARY_FILE):
        if member.size > _MAX_SMALL_FILE_BYTES:
          raise ValueError(f"{path}: {member.name} is implausibly large")
        small[parts] = tar.extractfile(member).read()
    _check_archive_end(tar, path)
  task_dirs = [parts[:-1] for parts in small if parts[-1] == METADATA_FILE]
  if not task_dirs:
    raise ValueError(f"{path}: no {METADATA_FILE} in the archive")
  if len(task_dirs) > 1:
    raise ValueError(f"{path}: holds {len(task_dirs)} tasks; expected one")
  prefix = task_dirs[0]
  name = prefix[-1] if prefix else _tarball_stem(path)
  source = f"{path}:{name}"
  metadata = parse_task_metadata(small[prefix + (METADATA_FILE,)],
                                 f"{source}/{METADATA_FILE}")
  if prefix + (VOCABULARY_FILE,) not in small:
    raise ValueError(f"{source}/{VOCABULARY_FILE}: file not found")
  vocabulary = parse_label_vocabulary(small[prefix + (VOCABULARY_FILE,)],
                                      f"{source}/{VOCABULARY_FILE}")
  for split in metadata["splits"]:
    if prefix + (f"{split}.json",) not in files:
      raise ValueError(f"{source}/{split}.json: file not found")
  rates = {int(p[len(prefix)]) for p in files
           if p[:len(prefix)] == prefix and len(p) > len(prefix) + 2
           and p[len(prefix)].isdigit()}
  return HearTask(name=name, sample_rate=0, metadata=metadata,
                  label_vocabulary=vocabulary, source=source,
                  path=None), rates


def extract_task_tarball(path: str | os.PathLike,
                         extract_dir: str | os.PathLike) -> pathlib.Path:
  """Extracts a task tarball; returns `<extract_dir>/<task dir name>`.

  Members go to a hidden staging folder first; the task directory is renamed
  into place only after the last member is written, so a directory that
  exists is always a complete extraction.
  """
  path = os.fspath(path)
  extract_dir = pathlib.Path(extract_dir)
  extract_dir.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(
      tempfile.mkdtemp(prefix=".incomplete-", dir=extract_dir))
  try:
    task_dirs = []
    with _reading_tar(path) as tar:
      for member in _safe_members(tar, path):
        parts = _member_parts(member)
        target = staging.joinpath(*parts)
        if member.isdir():
          target.mkdir(parents=True, exist_ok=True)
        elif parts:
          target.parent.mkdir(parents=True, exist_ok=True)
          with tar.extractfile(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
          if parts[-1] == METADATA_FILE:
            task_dirs.append(parts[:-1])
      _check_archive_end(tar, path)
    if len(task_dirs) != 1:
      raise ValueError(f"{path}: holds {len(task_dirs)} {METADATA_FILE} files;"
                       " expected one task")
    task_dir = staging.joinpath(*task_dirs[0])
    name = task_dirs[0][-1] if task_dirs[0] else _tarball_stem(path)
    final = extract_dir / name
    if final.exists():
      raise ValueError(f"{final}: already exists; remove it or extract"
                       " elsewhere")
    task_dir.rename(final)
    return final
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def _tarball_stem(path: str) -> str:
  """Task name for a tarball whose files sit at its top level."""
  return re.sub(r"\.tar(\.\w+)?$|\.tgz$", "", pathlib.Path(path).name)


# --- where each rate is ------------------------------------------------------

TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2")
# hearpreprocess and the HEAR 2021 release end a tarball's name with its rate.
_TARBALL_RATE = re.compile(r"-(\d+)(\.tar(\.\w+)?|\.tgz)$")


def is_tarball(path: pathlib.Path) -> bool:
  return path.is_file() and path.name.endswith(TARBALL_SUFFIXES)


def tarball_rate(path: str | os.PathLike) -> int | None:
  """The rate a tarball's name shows (`...-44100.tar.gz`), None if none."""
  match = _TARBALL_RATE.search(os.path.basename(os.fspath(path)))
  return int(match[1]) if match else None


def _rate_folders(task_dir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in task_dir.iterdir()
                if p.is_dir() and p.name.isdigit())


def rate_sources(path: str | os.PathLike, task_dir: str | None = None
                 ) -> dict[int, pathlib.Path]:
  """Where a task's audio is at each rate: {rate: task directory or tarball}.

  `path` is one of
    * a task directory, or a folder holding one (a few levels down): each of
      its `<rate>/` folders;
    * a tarball: the rate its name shows, else those it holds (read through);
    * a folder of one task's tarballs, `<anything>-<rate>.tar.gz` each (as
      hearpreprocess and the HEAR 2021 release name them);
    * with `task_dir` (a catalogue task's directory name), a folder of many
      tasks' data: the unpacked `<task_dir>/` (up to three levels down) and
      the `*<task_dir>-<rate>.tar.gz` tarballs in it.
  An unpacked directory wins over a tarball of the same rate (nothing to
  extract). One-line ValueErrors: nothing found, tarballs of several tasks.
  """
  path = pathlib.Path(path).expanduser()
  if path.is_file():
    rate = tarball_rate(path)
    if rate is not None:
      return {rate: path}
    _, rates = _scan_tarball(os.fspath(path))
    if not rates:
      raise ValueError(f"{path}: no <sample_rate>/ audio directory in the"
                       " archive")
    return {r: path for r in sorted(rates)}
  if not path.is_dir():
    raise ValueError(f"{path}: no such task directory or tarball")
  task_dirs = _task_dirs_below(path)
  if task_dirs == [path]:  # the task directory itself
    return _folder_sources(path)
  tarballs = sorted(p for p in path.iterdir() if is_tarball(p))
  if task_dir is not None:
    task_dirs = [d for d in task_dirs if d.name == task_dir]
    tarballs = [t for t in tarballs if _task_stem(t).endswith(task_dir)]
  if len(task_dirs) > 1:
    if task_dir is None:
      _locate_task_dir(path)  # raises its "holds N tasks" line
    raise ValueError(f"{path}: holds {len(task_dirs)} {task_dir}/"
                     " directories; pass one")
  stems = sorted({_task_stem(t) for t in tarballs})
  if task_dir is None and (len(stems) > 1 or (task_dirs and stems and not
                                              stems[0].endswith(
                                                  task_dirs[0].name))):
    names = stems + [d.name + "/" for d in task_dirs]
    raise ValueError(f"{path}: holds {len(names)} tasks' data"
                     f" ({', '.join(names[:3])}); pass one task's folder")
  sources = {}
  for tarball in tarballs:
    rate = tarball_rate(tarball)
    if rate is None:
      raise ValueError(f"{tarball}: its name does not end in -<sample"
                       " rate>.tar.gz; next to a task's other tarballs, name"
                       " each by its rate (as hearpreprocess does)")
    if rate in sources:
      raise ValueError(f"{path}: two tarballs at {rate} Hz"
                       f" ({sources[rate].name}, {tarball.name}); keep one")
    sources[rate] = tarball
  if task_dirs:
    sources.update(_folder_sources(task_dirs[0], allow_none=bool(sources)))
  if not sources:
    what = f"{task_dir}/ or its tarballs" if task_dir else (
        f"{METADATA_FILE} or task tarballs")
    raise ValueError(f"{path}: no {what} found (not a hearpreprocess task"
                     " directory)")
  return dict(sorted(sources.items()))


def _task_stem(tarball: pathlib.Path) -> str:
  """A tarball's name without its rate, suffix and release prefix
  (`hear2021-`, hearpreprocess's `hear-<version>-`): the task it holds."""
  name = _TARBALL_RATE.sub("", tarball.name)
  name = re.sub(r"(\.tar(\.\w+)?|\.tgz)$", "", name)
  return re.sub(r"^(hear2021-|hear-[\d.]+-)", "", name)


def _folder_sources(task_dir: pathlib.Path, allow_none: bool = False
                    ) -> dict[int, pathlib.Path]:
  rates = _rate_folders(task_dir)
  if not rates and not allow_none:
    raise ValueError(f"{task_dir}: no <sample_rate>/ audio directory")
  return {r: task_dir for r in rates}


def find_task(
    path: str | os.PathLike,
    *,
    sample_rate: int | None = None,
    extract_dir: str | os.PathLike | None = None,
) -> tuple[pathlib.Path, int]:
  """A task directory or tarball -> (task directory, sample rate).

  A tarball is extracted into `extract_dir` (default: a new temporary
  directory the caller owns). `sample_rate` None means the only rate present.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    task = open_task(path, sample_rate)
    return task.path, task.sample_rate
  if not path.is_file():
    raise ValueError(f"{path}: no such task directory or tarball")
  if extract_dir is None:
    extract_dir = tempfile.mkdtemp(prefix="hearpreprocess-")
  task_dir = extract_task_tarball(path, extract_dir)
  task = open_task(task_dir, sample_rate, source=f"{path}:{task_dir.name}")
  return task.path, task.sample_rate


def describe_task(path: str | os.PathLike, sample_rate: int | None = None
                  ) -> HearTask:
  """`open_task` for a directory, `scan_tarball` for a tarball."""
  if pathlib.Path(path).is_dir():
    return open_task(path, sample_rate)
  if not pathlib.Path(path).is_file():
    raise ValueError(f"{path}: no such task directory or tarball")
  return scan_tarball(path, sample_rate)


def prepare_hearpreprocess_task(
    path: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    sample_rate: int | None = None,
    file_format: str = "array_record",
) -> tfds.core.DatasetBuilder:
  """Builds (once) the TFDS dataset of a task at one rate.

  `path`: a task directory, a tarball or a folder of the task's tarballs
  (`rate_sources`); `sample_rate` None: the only rate there. Returns the
  prepared `tasks.hear2021.hearpreprocess_task` builder; its config is
  `<task dir name>-<rate>`, so tasks and rates never share a data directory.
  """
  sources = rate_sources(path)
  rate = _pick_rate(set(sources), sample_rate, os.fspath(path))
  # The builder imports this module; import it late to keep data code free
  # of the tasks package at import time.
  # pylint: disable-next=g-import-not-at-top
  from tasks.hear2021.hearpreprocess_task import (
      hearpreprocess_task_dataset_builder as builder_module)
  builder = builder_module.Builder(
      source=sources[rate], sample_rate=rate, data_dir=os.fspath(data_dir),
      file_format=file_format)
  builder.download_and_prepare()
  return builder
