"""Frame labels and frame -> event post-processing for HEAR event tasks.

An event task's split is a flat frame array: embeddings x[F, D] whose rows
come from many files, described by `file_index[F]` (row -> file number) and
`timestamps_ms[F]` (frame centres). Rows may come in any order. This module
converts between frames and HEAR's `{file: [{"label", "start", "end"}]}`
events (ms) exactly as hear-eval-kit does (hear-reference.md §4.3, §5.5),
vectorised per file.

  y = frame_targets(events, file_index, timestamps_ms, vocab)   # [F, C]
  predicted = frames_to_events(probs, file_index, timestamps_ms, names,
                               vocab, median_filter_ms=250, min_duration=125)
  combos = postprocessing_grid(task_metadata)  # [{"median_filter_ms": 250,
                                               #   "min_duration": 125}, ...]
  score, combo = select_postprocessing(combos, lambda c: metric(
      frames_to_events(probs, file_index, timestamps_ms, names, vocab, **c)))

`event_score_fn` packages the last step as a `trainer.fit_probes` score_fn
that sorts the frames once and median-filters once per filter width.
Post-processing names are hear-eval-kit's grid keys (`median_filter_ms`,
`min_duration`, both in ms).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.ndimage import median_filter

from hear_jax.probe.grid import parameter_grid

# hear-eval-kit's EVENT_POSTPROCESSING_GRID (tuned for DCASE 2016 task 2).
DEFAULT_POSTPROCESSING_GRID: dict[str, list[float]] = {
    "median_filter_ms": [250],
    "min_duration": [125, 250],
}
THRESHOLD = 0.5
# IntervalTree holds [start, end + 0.0001) per event: a frame at t is
# labelled when start <= t <= end (for millisecond timestamps).
_END_EPSILON_MS = 0.0001

Events = dict[str, list[dict[str, Any]]]


@dataclasses.dataclass(frozen=True, eq=False)
class _Layout:
  """Rows sorted by (file, time): file f is order[bounds[f]:bounds[f+1]]."""

  order: np.ndarray
  bounds: np.ndarray
  times: np.ndarray  # timestamps in that sorted order

  def rows(self, f: int) -> np.ndarray:
    return self.order[self.bounds[f]:self.bounds[f + 1]]

  def file_times(self, f: int) -> np.ndarray:
    return self.times[self.bounds[f]:self.bounds[f + 1]]


def _layout(file_index, timestamps_ms, n_files: int, caller: str) -> _Layout:
  index = np.asarray(file_index, np.int64)
  times = np.asarray(timestamps_ms, np.float64)
  if index.ndim != 1 or index.shape != times.shape:
    raise ValueError(f"{caller}: file_index {index.shape} and timestamps_ms "
                     f"{times.shape} must be equal-length 1-D arrays")
  if index.size and (index.min() < 0 or index.max() >= n_files):
    raise ValueError(f"{caller}: file_index values must lie in [0, {n_files})")
  if not np.all(np.isfinite(times)):
    raise ValueError(f"{caller}: timestamps_ms contains NaN or inf")
  order = np.lexsort((times, index))
  sorted_index, sorted_times = index[order], times[order]
  repeated = ((sorted_index[1:] == sorted_index[:-1])
              & (sorted_times[1:] == sorted_times[:-1]))
  if repeated.any():
    row = order[1:][repeated][0]
    raise ValueError(f"{caller}: file {index[row]} has two frames at "
                     f"{times[row]} ms")
  bounds = np.searchsorted(sorted_index, np.arange(n_files + 1))
  return _Layout(order, bounds, sorted_times)


def frame_targets(events: Sequence[Sequence[Mapping[str, Any]]], file_index,
                  timestamps_ms, label_vocab: Sequence[str]) -> np.ndarray:
  """Multi-hot frame labels [F, C] (float32), rows aligned with the input.

  `events[f]` holds file f's events ({"label", "start", "end"}, ms); a frame
  of file f at t gets every label whose event has start <= t <= end
  (IntervalTree's [start, end + 0.0001)).
  """
  label_index = {str(label): i for i, label in enumerate(label_vocab)}
  layout = _layout(file_index, timestamps_ms, len(events), "frame_targets")
  targets = np.zeros((len(layout.order), len(label_vocab)), np.float32)
  for f, file_events in enumerate(events):
    rows = layout.rows(f)
    if not file_events or not rows.size:
      continue
    try:
      labels = np.array([label_index[str(e["label"])] for e in file_events])
    except KeyError as err:
      raise ValueError(f"frame_targets: file {f}: label {err.args[0]!r} is not "
                       "in the label vocabulary") from None
    starts = np.array([float(e["start"]) for e in file_events])
    ends = np.array([float(e["end"]) for e in file_events]) + _END_EPSILON_MS
    if np.any(ends <= starts):
      raise ValueError(f"frame_targets: file {f}: an event ends before it "
                       "starts")
    times = layout.file_times(f)
    # +1 where each event's frame range opens, -1 where it closes; the
    # running sum counts the events covering a frame.
    change = np.zeros((len(rows) + 1, len(label_vocab)), np.int64)
    np.add.at(change, (np.searchsorted(times, starts, "left"), labels), 1)
    np.add.at(change, (np.searchsorted(times, ends, "left"), labels), -1)
    targets[rows] = np.cumsum(change[:-1], axis=0) > 0
  return targets


def _median_filter_active(probs_ct: np.ndarray, width: int) -> np.ndarray:
  """`median_filter(probs, size=(width, 1)) > THRESHOLD`, class-major.

  Takes and returns [C, T] (time along the contiguous axis, which is
  faster). Computed by counting: scipy's median of a window is its element
  of rank width // 2, which exceeds the threshold iff at least
  width - width // 2 window values do. The window of frame i covers
  i - width // 2 ... on scipy's 'reflect' (half-sample symmetric) extension.
  """
  n = probs_ct.shape[1]
  if width > n:
    # A window wider than the file: scipy's 1-D rank filter extends such
    # short inputs in its own way; defer to it (rare, and cheap here).
    return median_filter(probs_ct, size=(1, width)) > THRESHOLD
  before = width // 2
  above = np.pad(probs_ct > THRESHOLD,
                 ((0, 0), (before + 1, width - 1 - before)), mode="symmetric")
  above[:, 0] = 0  # the symmetric pad put a copy there; cumsum needs a 0
  counts = np.cumsum(above, axis=1, dtype=np.int32)
  return counts[:, width:width + n] - counts[:, :n] >= width - width // 2


@dataclasses.dataclass(frozen=True)
class _Runs:
  """Runs of active frames of one file: class, first and last frame time."""

  label: np.ndarray
  start: np.ndarray
  end: np.ndarray


def _active_runs(probs: np.ndarray, layout: _Layout,
                 median_filter_ms: float) -> list[_Runs]:
  """Per file: runs of consecutive above-threshold frames, class-major."""
  runs = []
  # Class-major [C, F] in (file, time) order: each file is a contiguous
  # column block and time runs along the fast axis.
  probs_ct = np.ascontiguousarray(probs[layout.order].T)
  for f in range(len(layout.bounds) - 1):
    lo, hi = layout.bounds[f], layout.bounds[f + 1]
    times = layout.times[lo:hi]
    width = 0
    # A one-frame file has no hop; hear-eval-kit would crash on it
    # (int(round(nan))), here it is simply not filtered.
    if median_filter_ms and hi - lo > 1:
      width = int(round(median_filter_ms / np.mean(np.diff(times))))
    if width > 0:
      active = _median_filter_active(probs_ct[:, lo:hi], width)
    else:
      active = probs_ct[:, lo:hi] > THRESHOLD
    edges = np.diff(active.view(np.int8), axis=1, prepend=0, append=0)
    label, first = np.nonzero(edges == 1)
    _, stop = np.nonzero(edges == -1)
    runs.append(_Runs(label, times[first], times[stop - 1]))
  return runs


def _events_from_runs(runs: list[_Runs], file_names: Sequence[str],
                      label_vocab: Sequence[str],
                      min_duration: float) -> Events:
  events: Events = {}
  for name, r in zip(file_names, runs):
    keep = (r.end - r.start) >= min_duration
    label, start, end = r.label[keep], r.start[keep], r.end[keep]
    # hear-eval-kit lists events class by class, then sorts by start
    # (stable), so ties keep the class order.
    by_start = np.argsort(start, kind="stable")
    events[name] = [{"label": label_vocab[label[i]], "start": float(start[i]),
                     "end": float(end[i])} for i in by_start]
  return events


def _frame_probs(probs, n_frames: int, label_vocab, caller: str) -> np.ndarray:
  probs = np.asarray(probs)
  if probs.shape != (n_frames, len(label_vocab)):
    raise ValueError(f"{caller}: probs has shape {probs.shape}; expected "
                     f"({n_frames} frames, {len(label_vocab)} labels)")
  return probs


def _check_files_have_frames(layout: _Layout, file_names, caller: str):
  empty = np.flatnonzero(np.diff(layout.bounds) == 0)
  if empty.size:
    raise ValueError(f"{caller}: file {file_names[empty[0]]!r} has no frames")


def frames_to_events(probs, file_index, timestamps_ms,
                     file_names: Sequence[str], label_vocab: Sequence[str],
                     median_filter_ms: float = 0.0,
                     min_duration: float = 0.0) -> Events:
  """Events for every file (maybe []) from frame probabilities [F, C].

  hear-eval-kit's `create_events_from_prediction`: per file, frames in time
  order, an optional median filter along time of width
  round(median_filter_ms / mean hop) frames (scipy, 'reflect' edges),
  threshold > 0.5, and each run of active frames of a class becomes an
  event from its first to its last frame timestamp, kept if
  end - start >= min_duration (ms). Events are sorted by start.
  """
  layout = _layout(file_index, timestamps_ms, len(file_names),
                   "frames_to_events")
  _check_files_have_frames(layout, file_names, "frames_to_events")
  probs = _frame_probs(probs, len(layout.order), label_vocab,
                       "frames_to_events")
  runs = _active_runs(probs, layout, median_filter_ms)
  return _events_from_runs(runs, file_names, label_vocab, min_duration)


def postprocessing_grid(metadata: Mapping[str, Any] | None = None
                        ) -> list[dict[str, float]]:
  """A task's post-processing combinations, in ParameterGrid order.

  `evaluation_params.event_postprocessing_grid` of task_metadata.json when
  present (MAESTRO: one combination), else DEFAULT_POSTPROCESSING_GRID.
  """
  params = (metadata or {}).get("evaluation_params") or {}
  grid = params.get("event_postprocessing_grid") or DEFAULT_POSTPROCESSING_GRID
  unknown = set(grid) - set(DEFAULT_POSTPROCESSING_GRID)
  if unknown:
    raise ValueError("event_postprocessing_grid: unknown entry "
                     f"{sorted(unknown)[0]!r}; expected "
                     f"{sorted(DEFAULT_POSTPROCESSING_GRID)}")
  return list(parameter_grid(grid))


class PostprocessingChoice(NamedTuple):
  """The winner: its score as returned (NaN possible) and its parameters.

  A 2-tuple, so `fit_probes` stores `postprocessing` as `best_extra`.
  """

  score: float
  postprocessing: dict[str, float]


def select_postprocessing(combinations: Sequence[Mapping[str, float]],
                          score_fn: Callable[[Mapping[str, float]], float]
                          ) -> PostprocessingChoice:
  """Scores each combination and keeps hear-eval-kit's winner.

  NaN counts as 0 for the choice, and (score, sorted (name, value) pairs)
  are ranked in descending order, so a tie goes to the larger parameter
  values (DCASE: min_duration 250 over 125).
  """
  if not combinations:
    raise ValueError("select_postprocessing: no combinations to choose from")
  scored = []
  for combination in combinations:
    score = float(score_fn(combination))
    rank = (0.0 if np.isnan(score) else score,
            tuple(sorted(combination.items())))
    scored.append((rank, score, dict(combination)))
  _, score, combination = max(scored, key=lambda item: item[0])
  return PostprocessingChoice(score, combination)


def event_score_fn(file_index, timestamps_ms, file_names: Sequence[str],
                   label_vocab: Sequence[str],
                   metric: Callable[[Events], float],
                   combinations: Sequence[Mapping[str, float]] | None = None
                   ) -> Callable[[np.ndarray], PostprocessingChoice]:
  """A `fit_probes` score_fn for an event task's validation frames.

  For frame probabilities [F, C] it returns the `select_postprocessing`
  winner over `combinations` (default: the default grid) of
  `metric(predicted events)`; the trainer then keeps the post-processing
  chosen at the best check in `FitResult.best_extra`. The frames are sorted
  once here, and each distinct median filter runs once per call.
  """
  combinations = (postprocessing_grid() if combinations is None
                  else list(combinations))
  layout = _layout(file_index, timestamps_ms, len(file_names), "event_score_fn")
  _check_files_have_frames(layout, file_names, "event_score_fn")

  def score(probs) -> PostprocessingChoice:
    probs = _frame_probs(probs, len(layout.order), label_vocab,
                         "event_score_fn")
    runs_by_filter: dict[float, list[_Runs]] = {}

    def combination_score(combination):
      filter_ms = combination.get("median_filter_ms", 0.0)
      if filter_ms not in runs_by_filter:
        runs_by_filter[filter_ms] = _active_runs(probs, layout, filter_ms)
      return metric(_events_from_runs(runs_by_filter[filter_ms], file_names,
                                      label_vocab,
                                      combination.get("min_duration", 0.0)))

    return select_postprocessing(combinations, combination_score)

  return score
