"""The HEAR 2021 task catalogue: what each task's hearpreprocess output holds.

  entry = TASKS["esc50-v2.0.0-full"]          # one task in one mode
  entry.nfolds, entry.evaluation, entry.num_labels   # 5, ("top1_acc", ...), 50
  check_task(hear_task, "esc50-v2.0.0-full")  # ValueError naming task + field
  find_entry(hear_task)                       # the entry a task dir belongs to

Keys are hearpreprocess task directory names, `<task_name>-<version>-<mode>`
(hear-reference §2.1, §3): the 19 HEAR 2021 tasks (`HEAR2021_TASKS`, one per
row of the HEAR results table), the development tasks spoken_digit and
nsynth_pitch_kfold, the other modes hearpreprocess builds for them ("5h",
"full", "50h", and "small", the downsampled CI version), and beehive's second
variant (fold1). Every field was read from the task's hearpreprocess config
(hearpreprocess/secrettasks/hearsecrettasks/*.py and the open tasks' modules)
except the class counts that upstream never writes down: DCASE 2016's 11
office classes and Beijing Opera's 4 instruments come from the datasets'
descriptions. "small" mode subsamples, so its vocabulary may be smaller; its
label count is only bounded above.

A mismatch between a task's `task_metadata.json`/`labelvocabulary.csv` and
its entry is a one-line ValueError naming the task and the field, so a
tarball of the wrong task, mode or release is refused before anything is
extracted.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

# Rates hearpreprocess builds (hear-reference §1.2); the Zenodo release holds
# 48000 only, the others are built locally or fetched from the archive.
SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)

_STD4 = ("top1_acc", "mAP", "d_prime", "aucroc")
_ZENODO = "https://zenodo.org/record/5887964"


@dataclasses.dataclass(frozen=True)
class CatalogueEntry:
  """What hearpreprocess writes for one task in one mode."""

  task_name: str
  version: str
  mode: str
  title: str  # what the task is, for docs and config docstrings
  embedding_type: str  # "scene" | "event"
  prediction_type: str  # "multiclass" | "multilabel"
  split_mode: str  # "trainvaltest" | "new_split_kfold" | "presplit_kfold"
  nfolds: int | None  # k-fold tasks only
  # Accepted `sample_duration` values (seconds; None = variable length).
  # spoken_digit changed 1.0 -> 0.56 s in Nov 2021, so both are accepted.
  sample_durations: tuple[float | None, ...]
  evaluation: tuple[str, ...]  # primary metric first
  num_labels: int  # size of labelvocabulary.csv
  default_mode: str
  hear2021: bool = False  # one of the 19 HEAR 2021 tasks
  # False where the vocabulary holds only the labels that occur, so
  # `num_labels` is an upper bound ("small" modes, MAESTRO's pitches).
  labels_exact: bool = True

  @property
  def task_dir(self) -> str:
    """The hearpreprocess task directory name (also the catalogue key)."""
    return f"{self.task_name}-{self.version}-{self.mode}"

  @property
  def splits(self) -> tuple[str, ...]:
    if self.nfolds is None:
      return ("train", "valid", "test")
    return tuple(f"fold{i:02d}" for i in range(self.nfolds))

  def tarball_name(self, sample_rate: int = 48000) -> str:
    """The HEAR 2021 Zenodo release's file name for this task."""
    return f"hear2021-{self.task_dir}-{sample_rate}.tar.gz"

  def config_name(self, sample_rate: int) -> str:
    """The TFDS builder config (tasks/hear2021/hear2021) for one rate."""
    return f"{self.task_dir}-{sample_rate}"


def _task(task_name: str, version: str, title: str, embedding_type: str,
          prediction_type: str, split_mode: str, nfolds: int | None,
          evaluation: Sequence[str], num_labels: int, default_mode: str,
          modes: Mapping[str, Mapping[str, Any]],
          hear2021_modes: Sequence[str] = (),
          labels_exact: bool = True) -> list[CatalogueEntry]:
  """One entry per mode; `modes[m]` overrides sample_durations / nfolds."""
  entries = []
  for mode, overrides in modes.items():
    fields = dict(
        task_name=task_name, version=version, mode=mode, title=title,
        embedding_type=embedding_type, prediction_type=prediction_type,
        split_mode=split_mode, nfolds=nfolds, evaluation=tuple(evaluation),
        num_labels=num_labels, default_mode=default_mode,
        hear2021=mode in hear2021_modes,
        labels_exact=labels_exact and mode != "small")
    fields.update(overrides)
    entries.append(CatalogueEntry(**fields))
  return entries


def _d(*durations: float | None) -> dict[str, Any]:
  return {"sample_durations": tuple(durations)}


_ENTRIES = [
    *_task("dcase2016_task2", "hear2021",
           "DCASE 2016 task 2: office sound event detection", "event",
           "multilabel", "trainvaltest", None,
           ("event_onset_200ms_fms", "segment_1s_er"), 11, "full",
           {"full": _d(120.0)}, hear2021_modes=("full",)),
    *_task("nsynth_pitch", "v2.2.3", "NSynth pitch (MIDI 21-108)", "scene",
           "multiclass", "trainvaltest", None, ("pitch_acc", "chroma_acc"),
           88, "5h", {"5h": _d(4.0), "50h": _d(4.0), "small": _d(4.0)},
           hear2021_modes=("5h", "50h")),
    *_task("speech_commands", "v0.0.2",
           "Speech Commands v2: 10 words, _silence_, _unknown_", "scene",
           "multiclass", "trainvaltest", None, ("top1_acc",), 12, "5h",
           {"5h": _d(1.0), "full": _d(1.0), "small": _d(1.0)},
           hear2021_modes=("5h", "full")),
    # The results table has one beehive column; which variant and mode fed
    # it is unverified (hear-reference §10). The full 600 s clips are the
    # likelier: models that ran out of memory there have no beehive score.
    *_task("beehive_states_fold0", "v2",
           "Beehive states (queen / no queen), train hive 1, test hive 3",
           "scene", "multiclass", "trainvaltest", None,
           ("aucroc", "mAP", "d_prime", "top1_acc"), 2, "5h",
           {"5h": _d(30.0), "full": _d(600.0), "small": _d(2.0)},
           hear2021_modes=("full",)),
    *_task("beehive_states_fold1", "v2",
           "Beehive states (queen / no queen), train hive 3, test hive 1",
           "scene", "multiclass", "trainvaltest", None,
           ("aucroc", "mAP", "d_prime", "top1_acc"), 2, "5h",
           {"5h": _d(30.0), "full": _d(600.0), "small": _d(2.0)}),
    *_task("beijing_opera", "v1.0-hear2021",
           "Beijing Opera percussion instruments", "scene", "multiclass",
           "new_split_kfold", 5, _STD4, 4, "full",
           {"full": _d(4.77), "small": _d(2.0)}, hear2021_modes=("full",)),
    *_task("tfds_crema_d", "1.0.0", "CREMA-D emotion", "scene", "multiclass",
           "new_split_kfold", 5, _STD4, 6, "full",
           {"full": _d(5.0), "small": _d(2.0)}, hear2021_modes=("full",)),
    *_task("esc50", "v2.0.0", "ESC-50 environmental sounds", "scene",
           "multiclass", "presplit_kfold", 5, _STD4, 50, "full",
           {"full": _d(5.0), "small": _d(2.0)}, hear2021_modes=("full",)),
    *_task("fsd50k", "v1.0", "FSD50K sound events (clip-level, multilabel)",
           "scene", "multilabel", "trainvaltest", None,
           ("mAP", "d_prime", "aucroc", "top1_acc"), 200, "full",
           {"full": _d(None), "small": _d(None)}, hear2021_modes=("full",)),
    *_task("gunshot_triangulation", "v1.0",
           "Gunshot triangulation (which microphone)", "scene", "multiclass",
           "new_split_kfold", 7, _STD4, 4, "full",
           {"full": _d(1.5), "small": _d(1.5)}, hear2021_modes=("full",)),
    *_task("tfds_gtzan", "1.0.0", "GTZAN music genre", "scene", "multiclass",
           "new_split_kfold", 10, _STD4, 10, "full",
           {"full": _d(30.0), "small": _d(2.0)}, hear2021_modes=("full",)),
    *_task("tfds_gtzan_music_speech", "1.0.0", "GTZAN music / speech",
           "scene", "multiclass", "new_split_kfold", 10, _STD4, 2, "full",
           {"full": _d(30.0), "small": _d(2.0)}, hear2021_modes=("full",)),
    *_task("libricount", "v1.0.0-hear2021", "LibriCount speaker count (0-10)",
           "scene", "multiclass", "new_split_kfold", 5, _STD4, 11, "full",
           {"full": _d(5.0), "small": _d(2.0)}, hear2021_modes=("full",)),
    # MAESTRO keeps the pitches 21-108 that occur: up to 88 labels.
    *_task("maestro", "v3.0.0", "MAESTRO piano note onsets", "event",
           "multilabel", "new_split_kfold", 5,
           ("event_onset_50ms_fms", "event_onset_offset_50ms_20perc_fms"), 88,
           "5h", {"5h": _d(120.0), "small": {**_d(5.0), "nfolds": 4}},
           hear2021_modes=("5h",), labels_exact=False),
    *_task("mridangam_stroke", "v1.5", "Mridangam strokes", "scene",
           "multiclass", "new_split_kfold", 5, _STD4, 10, "full",
           {"full": _d(0.81), "small": _d(1.0)}, hear2021_modes=("full",)),
    *_task("mridangam_tonic", "v1.5", "Mridangam tonic", "scene",
           "multiclass", "new_split_kfold", 5, _STD4, 6, "full",
           {"full": _d(0.81), "small": _d(1.0)}, hear2021_modes=("full",)),
    *_task("vocal_imitation", "v1.1.3",
           "Vocal imitations: which of 302 reference sounds", "scene",
           "multiclass", "new_split_kfold", 3,
           ("mAP", "d_prime", "aucroc", "top1_acc"), 302, "full",
           {"full": _d(11.26), "small": _d(2.0)}, hear2021_modes=("full",)),
    *_task("vox_lingua_top10", "hear2021",
           "VoxLingua107, the 10 most frequent languages", "scene",
           "multiclass", "new_split_kfold", 5, _STD4, 10, "full",
           {"full": _d(18.64), "small": _d(2.0)}, hear2021_modes=("full",)),
    # Development tasks (not among the 19).
    *_task("spoken_digit", "1.0.9", "Free Spoken Digit Dataset (digits 0-9)",
           "scene", "multiclass", "new_split_kfold", 5, ("top1_acc",), 10,
           "full", {"full": _d(0.56, 1.0), "small": _d(0.56, 1.0)}),
    *_task("nsynth_pitch_kfold", "v2.2.3", "NSynth pitch, 10-fold", "scene",
           "multiclass", "new_split_kfold", 10, ("pitch_acc", "chroma_acc"),
           88, "5h", {"5h": _d(4.0), "50h": _d(4.0), "small": _d(4.0)}),
]

# Every known task directory -> its entry.
TASKS: dict[str, CatalogueEntry] = {e.task_dir: e for e in _ENTRIES}

# The 19 HEAR 2021 tasks, in the order of the HEAR task table.
HEAR2021_TASKS: tuple[str, ...] = tuple(
    e.task_dir for e in _ENTRIES if e.hear2021)
# hearpreprocess's development tasks, in their default modes.
DEVELOPMENT_TASKS = ("spoken_digit-1.0.9-full", "nsynth_pitch_kfold-v2.2.3-5h")


def entry(task_dir: str) -> CatalogueEntry:
  """The catalogue entry of a task directory name; ValueError if unknown."""
  if task_dir not in TASKS:
    raise ValueError(f"{task_dir!r} is not a HEAR 2021 task directory (known:"
                     f" {', '.join(HEAR2021_TASKS + DEVELOPMENT_TASKS)}, and"
                     " their other modes)")
  return TASKS[task_dir]


def download_hint(task_dir: str) -> str:
  """Where a task's data comes from, for 'not found' messages."""
  if task_dir in TASKS:
    return (f"download {TASKS[task_dir].tarball_name()} from the HEAR 2021"
            f" release ({_ZENODO})")
  return (f"download the hearpreprocess output for {task_dir} (HEAR 2021:"
          f" {_ZENODO})")


def _metadata_key(metadata: Mapping[str, Any]) -> str:
  return "-".join(str(metadata.get(k)) for k in ("task_name", "version",
                                                 "mode"))


def find_entry(task: Any) -> CatalogueEntry | None:
  """The entry a `hearpreprocess.HearTask` belongs to (by task_name, version
  and mode in its task_metadata.json), or None for a task we don't know."""
  return TASKS.get(_metadata_key(task.metadata))


def _same_duration(a: Any, b: float | None) -> bool:
  if a is None or b is None:
    return a is None and b is None
  return (isinstance(a, (int, float)) and not isinstance(a, bool)
          and math.isclose(a, b, rel_tol=0, abs_tol=1e-6))


def _fmt(values: Sequence[Any]) -> str:
  return " or ".join(repr(v) for v in values)


def check_task(task: Any, task_dir: str | None = None) -> CatalogueEntry:
  """Checks a `hearpreprocess.HearTask` against its catalogue entry.

  `task_dir` names the entry the task must be (e.g. the one a config or
  builder config asks for); None means whichever entry the task's metadata
  names, and a task outside the catalogue is an error. Reads metadata only.
  """
  meta = task.metadata
  where = f"{task.source}/task_metadata.json"
  found = _metadata_key(meta)
  expected = entry(task_dir) if task_dir is not None else TASKS.get(found)
  if expected is None:
    raise ValueError(f"{where}: task {found} is not in the HEAR 2021"
                     " catalogue (use a hearpreprocess: task spec or"
                     " configs/hear.py for other tasks)")
  name = expected.task_dir
  for field in ("task_name", "version", "mode"):
    if meta.get(field) != getattr(expected, field):
      raise ValueError(f"{where}: {field} is {meta.get(field)!r}, but task"
                       f" {name} has {field} {getattr(expected, field)!r}"
                       f" (this is {found}, not {name})")

  def mismatch(field: str, actual: Any, wanted: str) -> ValueError:
    return ValueError(f"{where}: task {name}: {field} is {actual!r}, the"
                      f" HEAR 2021 catalogue expects {wanted}")

  for field in ("embedding_type", "prediction_type", "split_mode"):
    if meta[field] != getattr(expected, field):
      raise mismatch(field, meta[field], repr(getattr(expected, field)))
  if expected.nfolds is not None and meta.get("nfolds") != expected.nfolds:
    raise mismatch("nfolds", meta.get("nfolds"), repr(expected.nfolds))
  if sorted(meta["splits"]) != sorted(expected.splits):
    raise mismatch("splits", meta["splits"], repr(list(expected.splits)))
  if not any(_same_duration(meta["sample_duration"], d)
             for d in expected.sample_durations):
    raise mismatch("sample_duration", meta["sample_duration"],
                   _fmt(expected.sample_durations))
  if tuple(meta["evaluation"]) != expected.evaluation:
    raise mismatch("evaluation", meta["evaluation"],
                   repr(list(expected.evaluation)))
  count = len(task.label_vocabulary)
  if expected.labels_exact and count != expected.num_labels:
    raise ValueError(f"{task.source}/labelvocabulary.csv: task {name}:"
                     f" {count} labels, the HEAR 2021 catalogue expects"
                     f" {expected.num_labels}")
  if not expected.labels_exact and not 1 <= count <= expected.num_labels:
    raise ValueError(f"{task.source}/labelvocabulary.csv: task {name}:"
                     f" {count} labels, the HEAR 2021 catalogue expects at"
                     f" most {expected.num_labels}")
  if task.sample_rate not in SAMPLE_RATES:
    raise ValueError(f"{task.source}: task {name}: sample rate"
                     f" {task.sample_rate} Hz is not a HEAR 2021 rate"
                     f" ({', '.join(map(str, SAMPLE_RATES))})")
  return expected


def prepare_catalogue_task(task_dir: str, path: str, data_dir: str,
                           sample_rate: int | None = None) -> Any:
  """Builds (once) a catalogue task's TFDS dataset at `sample_rate` (None:
  the highest rate its data holds) from a task dir, tarball or folder of its
  tarballs; returns the prepared `tasks.hear2021.hear2021` builder."""
  # The builder imports this module; import it late to keep data code free
  # of the tasks package at import time.
  # pylint: disable-next=g-import-not-at-top
  from tasks.hear2021.hear2021 import hear2021_dataset_builder as builder_module
  return builder_module.prepare(task_dir, path, data_dir,
                                sample_rate=sample_rate)
