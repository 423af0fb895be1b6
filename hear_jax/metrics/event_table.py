"""HEAR event lists as flat arrays, shared by the event and segment metrics.

HEAR hands event metrics `{filename: [{"label", "start", "end"}, ...]}` with
times in milliseconds. `EventTable.from_hear` validates and flattens that
once (times become seconds as `ms / 1000.0`, like HEAR); the metrics accept
either form, so a caller scoring several metrics can parse once.

  table = EventTable.from_hear({"a.wav": [{"label": "dog", "start": 100.0,
                                           "end": 900.0}], "b.wav": []})
  table.files, table.labels, table.onset    # ('a.wav', 'b.wav') ('dog',) [0.1]

Times are read as float64 before dividing, as in HEAR 2021: its numpy 1.x
promoted float32 times to float64 in `start / 1000.0` (numpy 2 would not).
Labels are compared as strings, as given (`str(label)`, like HEAR; unlike
dcase_util, whitespace is not stripped and "none" is not turned into None).
Negative or non-finite times and events that end before they start raise
ValueError naming the file and event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class EventTable:
  """Events of many files as flat arrays; times in seconds.

  `files` lists every file (also those without events); `file_index[i]` and
  `label_index[i]` index into `files` and `labels` for event i.
  """

  files: tuple[str, ...]
  labels: tuple[str, ...]
  file_index: np.ndarray  # int64 [E]
  label_index: np.ndarray  # int64 [E]
  onset: np.ndarray  # float64 [E], seconds
  offset: np.ndarray  # float64 [E], seconds

  def __len__(self) -> int:
    return len(self.onset)

  @classmethod
  def from_hear(
      cls, events: Mapping[str, Sequence[Mapping[str, Any]]], *, what: str = "events"
  ) -> EventTable:
    """Flattens `{filename: [{"label", "start", "end"}, ...]}` (times in ms).

    `what` names the argument in error messages ("predictions", "targets").
    """
    if isinstance(events, EventTable):
      return events
    if not isinstance(events, Mapping):
      raise ValueError(
          f"{what} must be a dict {{filename: [event, ...]}}, "
          f"got {type(events).__name__}"
      )
    files = tuple(events.keys())
    for name in files:
      if not isinstance(name, str):
        raise ValueError(f"{what}: file names must be str, got {name!r}")
    per_file = list(events.values())
    try:
      counts = np.array([len(v) for v in per_file], dtype=np.int64)
      flat = [event for file_events in per_file for event in file_events]
      labels = [str(event["label"]) for event in flat]
      start_ms = np.array([event["start"] for event in flat], dtype=np.float64)
      end_ms = np.array([event["end"] for event in flat], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
      raise _describe_bad_event(events, what) from error
    bad = ~np.isfinite(start_ms) | ~np.isfinite(end_ms) | (start_ms < 0)
    bad |= end_ms < start_ms
    if np.any(bad):
      i = int(np.argmax(bad))
      file_position = int(np.searchsorted(np.cumsum(counts), i, side="right"))
      within = i - int(counts[:file_position].sum())
      raise ValueError(
          f"{what}[{files[file_position]!r}][{within}]: need finite "
          f"0 <= start <= end, got start={start_ms[i]!r}, end={end_ms[i]!r}"
      )
    label_ids: dict[str, int] = {}
    label_index = np.array(
        [label_ids.setdefault(label, len(label_ids)) for label in labels],
        dtype=np.int64,
    )
    return cls(
        files=files,
        labels=tuple(label_ids),
        file_index=np.repeat(np.arange(len(files), dtype=np.int64), counts),
        label_index=label_index,
        onset=start_ms / 1000.0,
        offset=end_ms / 1000.0,
    )


Events = Mapping[str, Sequence[Mapping[str, Any]]] | EventTable


def _describe_bad_event(events: Mapping[str, Any], what: str) -> ValueError:
  """Finds the first malformed event (slow path, only after a failure)."""
  for name, file_events in events.items():
    if not isinstance(file_events, Sequence):
      return ValueError(
          f"{what}[{name!r}] must be a list of events, "
          f"got {type(file_events).__name__}"
      )
    for i, event in enumerate(file_events):
      if not isinstance(event, Mapping):
        return ValueError(f"{what}[{name!r}][{i}] must be a dict, got {event!r}")
      for key in ("label", "start", "end"):
        if key not in event:
          return ValueError(f"{what}[{name!r}][{i}] has no {key!r}: {event!r}")
      for key in ("start", "end"):
        try:
          float(event[key])
        except (TypeError, ValueError):
          return ValueError(
              f"{what}[{name!r}][{i}][{key!r}] is not a number: {event[key]!r}"
          )
  return ValueError(f"{what}: could not read events")


@dataclasses.dataclass(frozen=True)
class JointEvents:
  """Reference or estimated events, numbered like the other side's.

  Made by `joint_events`: file and label ids are shared by both sides.
  """

  file: np.ndarray
  label: np.ndarray
  onset: np.ndarray
  offset: np.ndarray

  def __len__(self) -> int:
    return len(self.onset)


def joint_events(
    predictions: Events,
    targets: Events,
    label_vocab: Sequence[str] | None,
    files: Iterable[str] | None,
) -> tuple[JointEvents, JointEvents, int]:
  """(reference, estimated, number of labels) with shared file/label ids.

  `files` picks the evaluated files (default: every file of either side);
  events of other files are dropped. With `label_vocab`, every label must be
  in it.
  """
  estimated = EventTable.from_hear(predictions, what="predictions")
  reference = EventTable.from_hear(targets, what="targets")
  if files is None:
    names = dict.fromkeys(reference.files)
    names.update(dict.fromkeys(estimated.files))
  else:
    names = dict.fromkeys(files)
  file_ids = {name: i for i, name in enumerate(names)}
  if label_vocab is None:
    label_names = dict.fromkeys(reference.labels)
    label_names.update(dict.fromkeys(estimated.labels))
  else:
    if isinstance(label_vocab, str):
      raise ValueError("label_vocab must be a sequence of labels, not one str")
    label_names = dict.fromkeys(str(label) for label in label_vocab)
    for what, table in (("targets", reference), ("predictions", estimated)):
      unknown = [label for label in table.labels if label not in label_names]
      if unknown:
        raise ValueError(
            f"{what} have labels not in label_vocab: {sorted(unknown)[:5]}"
        )
  label_ids = {label: i for i, label in enumerate(label_names)}

  def renumber(table: EventTable) -> JointEvents:
    file_map = np.array([file_ids.get(n, -1) for n in table.files], dtype=np.int64)
    label_map = np.array([label_ids[n] for n in table.labels], dtype=np.int64)
    file = file_map[table.file_index]
    kept = file >= 0
    return JointEvents(
        file=file[kept],
        label=label_map[table.label_index][kept],
        onset=table.onset[kept],
        offset=table.offset[kept],
    )

  return renumber(reference), renumber(estimated), max(len(label_ids), 1)
