"""HEAR's `segment_1s_er`: sed_eval's segment-based error rate, in numpy.

  targets = {"a.wav": [{"label": "dog", "start": 100.0, "end": 900.0}],
             "b.wav": [{"label": "cat", "start": 0.0, "end": 1500.0}]}
  predictions = {"a.wav": [{"label": "dog", "start": 130.0, "end": 700.0}],
                 "b.wav": []}
  segment_based_scores(predictions, targets)["error_rate"]   # 0.666...

Inputs are HEAR dicts (times in ms) or `EventTable`s (event_table.py); every
file present in either is evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from hear_jax.metrics.event_table import Events, JointEvents, joint_events

# sed_eval.metric adds numpy.spacing(1) to the error-rate denominators.
_EPS = np.spacing(1)

# Above this many (segment, class) cells the segment-based metric does not
# build event rolls but sweeps event boundaries (same counts, less memory).
_ROLL_CELL_LIMIT = 5_000_000

_Intervals = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _segment_intervals(events: JointEvents, time_resolution: float) -> _Intervals:
  """(file, label, first, stop): segments [first, stop) each event activates.

  Same arithmetic as sed_eval's event_list_to_event_roll.
  """
  first = np.floor(events.onset * 1 / time_resolution).astype(np.int64)
  stop = np.ceil(events.offset * 1 / time_resolution).astype(np.int64)
  active = stop > first  # `roll[first:stop] = 1` sets nothing otherwise
  return events.file[active], events.label[active], first[active], stop[active]


def _active_counts_from_rolls(
    ref: _Intervals, est: _Intervals, n_labels: int, block_start: np.ndarray, n_rows: int
) -> tuple[None, np.ndarray, np.ndarray, np.ndarray]:
  """Active classes per segment from dense event rolls of all files.

  File f owns rows block_start[f] .. block_start[f] + (its segments); the
  extra last row takes the -1 of events ending at the file's end.
  """

  def roll(intervals: _Intervals) -> np.ndarray:
    file, label, first, stop = intervals
    size = n_rows * n_labels
    up = np.bincount((block_start[file] + first) * n_labels + label, minlength=size)
    down = np.bincount((block_start[file] + stop) * n_labels + label, minlength=size)
    # Running coverage count; > 0 merges overlapping events of one class.
    return np.cumsum((up - down).reshape(n_rows, n_labels), axis=0) > 0

  ref_roll, est_roll = roll(ref), roll(est)
  return (
      None,
      ref_roll.sum(axis=1),
      est_roll.sum(axis=1),
      (ref_roll & est_roll).sum(axis=1),
  )


def _last_of_runs(*keys: np.ndarray) -> np.ndarray:
  """Mask of the last row of each run of equal key tuples (rows sorted)."""
  last = np.ones(len(keys[0]), dtype=bool)
  if len(last) > 1:
    differs = np.zeros(len(last) - 1, dtype=bool)
    for key in keys:
      differs |= key[1:] != key[:-1]
    last[:-1] = differs
  return last


def _order_by(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
  """Permutation sorting rows by (major, minor), both non-negative int64.

  One argsort of a combined key is faster than np.lexsort; ties may come in
  any order, which the callers do not depend on.
  """
  span = int(minor.max()) - int(minor.min()) + 1
  if (int(major.max()) + 1) * span < 2**62:
    return np.argsort(major * span + (minor - minor.min()))
  return np.lexsort((minor, major))


def _active_counts_from_sweep(
    ref: _Intervals, est: _Intervals, n_labels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Active classes per piece of constant activity, and each piece's width.

  Activity only changes at event boundaries, so this sorts the boundaries:
  first per (file, label) to get each class's on/off state (overlapping
  events of a class merge), then per file to count active classes on each
  piece [boundary, next boundary). Memory grows with the number of events,
  not with the length of the files.
  """
  n_ref, n_est = len(ref[0]), len(est[0])
  file = np.concatenate([ref[0], ref[0], est[0], est[0]])
  label = np.concatenate([ref[1], ref[1], est[1], est[1]])
  position = np.concatenate([ref[2], ref[3], est[2], est[3]])
  ones_ref, ones_est = np.ones(n_ref, np.int64), np.ones(n_est, np.int64)
  zeros_ref, zeros_est = np.zeros(n_ref, np.int64), np.zeros(n_est, np.int64)
  step_ref = np.concatenate([ones_ref, -ones_ref, zeros_est, zeros_est])
  step_est = np.concatenate([zeros_ref, zeros_ref, ones_est, -ones_est])

  # Per (file, label): coverage after each boundary. Every group's steps sum
  # to zero, so one global cumsum is each group's running sum.
  group = file * n_labels + label
  order = _order_by(group, position)
  group, position = group[order], position[order]
  last = _last_of_runs(group, position)
  ref_on = np.cumsum(step_ref[order])[last] > 0
  est_on = np.cumsum(step_est[order])[last] > 0
  group, position = group[last], position[last]

  def changes(state: np.ndarray) -> np.ndarray:
    # Each group ends switched off, so the row before a group's first
    # boundary reads "off" as it should.
    state = state.astype(np.int64)
    return state - np.concatenate([[0], state[:-1]])

  change_ref, change_est = changes(ref_on), changes(est_on)
  change_both = changes(ref_on & est_on)

  # Per file: active classes on each piece.
  file = group // n_labels
  order = _order_by(file, position)
  file, position = file[order], position[order]
  last = _last_of_runs(file, position)
  n_ref_active = np.cumsum(change_ref[order])[last]
  n_est_active = np.cumsum(change_est[order])[last]
  n_both_active = np.cumsum(change_both[order])[last]
  file, position = file[last], position[last]
  width = np.zeros(len(position), dtype=np.int64)
  width[:-1] = np.where(file[1:] == file[:-1], position[1:] - position[:-1], 0)
  return width, n_ref_active, n_est_active, n_both_active


def _segment_totals(
    ref: JointEvents, est: JointEvents, n_labels: int, time_resolution: float
) -> dict[str, int]:
  """Sums over segments of Nref, Nsys, S, D, I, as SegmentBasedMetrics does.

  Segments without activity add nothing, so the evaluated length (sed_eval's
  max offset per file) does not matter.
  """
  ref_intervals = _segment_intervals(ref, time_resolution)
  est_intervals = _segment_intervals(est, time_resolution)
  file = np.concatenate([ref_intervals[0], est_intervals[0]])
  if len(file) == 0:
    return {"Nref": 0, "Nsys": 0, "S": 0, "D": 0, "I": 0}
  n_segments = np.zeros(int(file.max()) + 1, dtype=np.int64)
  np.maximum.at(n_segments, file, np.concatenate([ref_intervals[3], est_intervals[3]]))
  n_rows = int(np.sum(n_segments + 1))
  if n_rows * n_labels <= _ROLL_CELL_LIMIT:
    block_start = np.cumsum(n_segments + 1) - (n_segments + 1)
    width, n_ref, n_est, n_both = _active_counts_from_rolls(
        ref_intervals, est_intervals, n_labels, block_start, n_rows
    )
  else:
    width, n_ref, n_est, n_both = _active_counts_from_sweep(
        ref_intervals, est_intervals, n_labels
    )

  def total(per_segment: np.ndarray) -> int:
    return int(np.sum(per_segment if width is None else width * per_segment))

  return {
      "Nref": total(n_ref),
      "Nsys": total(n_est),
      "S": total(np.minimum(n_ref, n_est) - n_both),
      "D": total(np.maximum(0, n_ref - n_est)),
      "I": total(np.maximum(0, n_est - n_ref)),
  }


def segment_based_scores(
    predictions: Events,
    targets: Events,
    *,
    time_resolution: float = 1.0,
    label_vocab: Sequence[str] | None = None,
    files: Iterable[str] | None = None,
) -> dict[str, float]:
  """Overall error rates of sed_eval's SegmentBasedMetrics.

  An event activates segments floor(onset / r) .. ceil(offset / r) - 1 of its
  file and class (r = time_resolution seconds). Per segment, with Nref/Nsys
  active classes and Ntp active in both: S = min(Nref, Nsys) - Ntp,
  D = max(0, Nref - Nsys), I = max(0, Nsys - Nref). Returns `error_rate` and
  its `substitution_rate`, `deletion_rate`, `insertion_rate` parts, each
  sum / (total Nref + eps) like sed_eval, so never NaN.
  """
  if not time_resolution > 0:
    raise ValueError(f"time_resolution must be > 0 seconds, got {time_resolution!r}")
  ref, est, n_labels = joint_events(predictions, targets, label_vocab, files)
  totals = _segment_totals(ref, est, n_labels, float(time_resolution))
  denominator = float(totals["Nref"]) + _EPS
  substitution_rate = float(totals["S"] / denominator)
  deletion_rate = float(totals["D"] / denominator)
  insertion_rate = float(totals["I"] / denominator)
  return {
      "error_rate": float(substitution_rate + deletion_rate + insertion_rate),
      "substitution_rate": substitution_rate,
      "deletion_rate": deletion_rate,
      "insertion_rate": insertion_rate,
  }
