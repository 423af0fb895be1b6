"""Tests for hear_jax.probe.events: frame labels and event post-processing."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
import pytest
from scipy.ndimage import median_filter

from hear_jax.probe import events as ev
from hear_jax.probe import trainer
from hear_jax.probe.grid import HParams

VOCAB = ("cough", "door", "speech")


def _frames(n_frames: Sequence[int], hop: float = 50.0):
  """(file_index, timestamps_ms) for files of the given lengths."""
  index = np.repeat(np.arange(len(n_frames)), n_frames)
  times = np.concatenate([hop * np.arange(n) for n in n_frames])
  return index, times


# --- frame labels -----------------------------------------------------------

def test_frame_targets_use_the_closed_interval_rule():
  # File 0's frames are deliberately out of time order and interleaved.
  index = np.array([0, 1, 0, 0, 0, 0, 1, 0])
  times = np.array([150.0, 0.0, 0.0, 50.0, 100.0, 100.00005, 50.0, 100.0002])
  events = [
      [{"label": "door", "start": 50.0, "end": 100.0},
       {"label": "speech", "start": 0.0, "end": 0.0},  # one instant
       {"label": "door", "start": 90.0, "end": 160.0}],  # overlaps
      [{"label": "cough", "start": 10.0, "end": 60.0}],
  ]
  y = ev.frame_targets(events, index, times, VOCAB)
  assert y.dtype == np.float32 and y.shape == (8, 3)
  np.testing.assert_array_equal(y, [
      [0, 1, 0],  # 0 @150: second door event
      [0, 0, 0],  # 1 @0
      [0, 0, 1],  # 0 @0: speech, start == end == t
      [0, 1, 0],  # 0 @50: start <= t
      [0, 1, 0],  # 0 @100: t <= end
      [0, 1, 0],  # 0 @100.00005: within IntervalTree's +0.0001
      [1, 0, 0],  # 1 @50
      [0, 1, 0],  # 0 @100.0002: only the overlapping event covers it
  ])
  y = ev.frame_targets([events[0][:2], events[1]], index, times, VOCAB)
  assert y[5, 1] == 1 and y[7, 1] == 0 and y[0, 1] == 0


def test_frame_inputs_are_checked():
  index, times = _frames([3])
  with pytest.raises(ValueError, match="file 0: label 'cat' is not in"):
    ev.frame_targets([[{"label": "cat", "start": 0, "end": 1}]], index, times,
                     VOCAB)
  with pytest.raises(ValueError, match=r"values must lie in \[0, 1\)"):
    ev.frame_targets([[]], np.array([0, 1, 1]), times, VOCAB)
  with pytest.raises(ValueError, match="file 0 has two frames at 50.0 ms"):
    ev.frame_targets([[]], index, np.array([0.0, 50.0, 50.0]), VOCAB)
  with pytest.raises(ValueError, match="file 'b' has no frames"):
    ev.frames_to_events(np.zeros((3, 3)), index, times, ["a", "b"], VOCAB)
  with pytest.raises(ValueError, match=r"probs has shape \(3, 2\)"):
    ev.frames_to_events(np.zeros((3, 2)), index, times, ["a"], VOCAB)


# --- frames -> events -------------------------------------------------------

def _reference_events(probs, timestamps, vocab, median_filter_ms, min_duration):
  """hear-eval-kit's create_events_from_prediction, written plainly."""
  order = np.argsort(timestamps)
  timestamps, probs = timestamps[order], probs[order]
  if median_filter_ms:
    width = int(round(median_filter_ms / np.mean(np.diff(timestamps))))
    if width:
      probs = median_filter(probs, size=(width, 1))
  active = probs > 0.5
  out = []
  for c in range(probs.shape[1]):
    frames = list(np.flatnonzero(active[:, c]))
    while frames:
      run = [frames.pop(0)]
      while frames and frames[0] == run[-1] + 1:
        run.append(frames.pop(0))
      start, end = timestamps[run[0]], timestamps[run[-1]]
      if end - start >= min_duration:
        out.append({"label": vocab[c], "start": start, "end": end})
  out.sort(key=lambda e: e["start"])
  return out


def test_runs_become_events_and_short_ones_are_dropped():
  index, times = _frames([8, 3])
  names = ["a.wav", "b.wav"]
  probs = np.zeros((11, 3), np.float32)
  probs[0:3, 0] = 0.9  # a: cough 0..100 ms, touching the first frame
  probs[4, 1] = 0.7  # a: a single-frame door at 200 ms
  probs[6:8, 2] = 0.51  # a: speech 300..350, touching the last frame
  probs[0:3, 1] = 0.5  # exactly 0.5 is not active (> 0.5)
  probs[6:8, 0] = 0.8  # a: cough 300..350, same start as speech
  result = ev.frames_to_events(probs, index, times, names, VOCAB)
  assert result == {
      "a.wav": [{"label": "cough", "start": 0.0, "end": 100.0},
                {"label": "door", "start": 200.0, "end": 200.0},
                {"label": "cough", "start": 300.0, "end": 350.0},
                {"label": "speech", "start": 300.0, "end": 350.0}],
      "b.wav": [],
  }
  result = ev.frames_to_events(probs, index, times, names, VOCAB,
                               min_duration=50)
  assert [e["label"] for e in result["a.wav"]] == ["cough", "cough", "speech"]
  result = ev.frames_to_events(probs, index, times, names, VOCAB,
                               min_duration=100.5)
  assert result["a.wav"] == []  # 100 ms and 50 ms runs are too short
  # Rows in any order give the same events.
  perm = np.random.default_rng(0).permutation(11)
  assert ev.frames_to_events(probs[perm], index[perm], times[perm], names,
                             VOCAB, min_duration=50) == \
      ev.frames_to_events(probs, index, times, names, VOCAB, min_duration=50)


def test_median_filter_fills_gaps_and_removes_spikes():
  index, times = _frames([10])
  probs = np.zeros((10, 3), np.float32)
  probs[1:8, 0] = 0.9
  probs[4, 0] = 0.1  # a one-frame gap inside a cough
  probs[5, 2] = 0.9  # a one-frame speech spike
  raw = ev.frames_to_events(probs, index, times, ["a"], VOCAB)
  assert len(raw["a"]) == 3
  # 150 ms / 50 ms hop = a 3-frame median.
  smooth = ev.frames_to_events(probs, index, times, ["a"], VOCAB,
                               median_filter_ms=150)
  assert smooth["a"] == [{"label": "cough", "start": 50.0, "end": 350.0}]


@pytest.mark.parametrize("median_filter_ms,min_duration", [
    (0, 0), (150, 0), (250, 125), (250, 250), (100, 60), (400, 0)])
def test_frames_to_events_matches_the_plain_algorithm(median_filter_ms,
                                                      min_duration):
  rng = np.random.default_rng(median_filter_ms + 7 * min_duration)
  lengths = [40, 7, 1, 2, 25]
  index, _ = _frames(lengths)
  times = np.concatenate([rng.permutation(np.arange(n) * 40.0 + 20.0)
                          for n in lengths])
  names = [f"f{i}" for i in range(len(lengths))]
  # Smooth random curves so that runs of several frames exist.
  noise = rng.normal(size=(len(index), 3))
  probs = (1 / (1 + np.exp(-np.cumsum(noise, axis=0)))).astype(np.float32)
  result = ev.frames_to_events(probs, index, times, names, VOCAB,
                               median_filter_ms, min_duration)
  for f, name in enumerate(names):
    rows = index == f
    if rows.sum() == 1 and median_filter_ms:
      continue  # hear-eval-kit crashes on a one-frame file with a filter
    expected = _reference_events(probs[rows], times[rows], VOCAB,
                                 median_filter_ms, min_duration)
    assert result[name] == expected, name
  assert sum(len(v) for v in result.values()) > 0


def test_median_filter_counting_matches_scipy():
  rng = np.random.default_rng(0)
  for _ in range(300):
    n, width = int(rng.integers(1, 40)), int(rng.integers(1, 50))
    probs = rng.choice(np.array([0.2, 0.5, 0.6], np.float32), size=(n, 2))
    np.testing.assert_array_equal(
        ev._median_filter_active(probs.T, width).T,
        median_filter(probs, size=(width, 1)) > 0.5, err_msg=f"{n=} {width=}")


# --- post-processing selection ---------------------------------------------

def test_postprocessing_grid_order_and_task_override():
  assert ev.postprocessing_grid() == [
      {"median_filter_ms": 250, "min_duration": 125},
      {"median_filter_ms": 250, "min_duration": 250}]
  maestro = {"evaluation_params": {"event_postprocessing_grid": {
      "median_filter_ms": [150], "min_duration": [50]}}}
  assert ev.postprocessing_grid(maestro) == [
      {"median_filter_ms": 150, "min_duration": 50}]
  with pytest.raises(ValueError, match="unknown entry 'threshold'"):
    ev.postprocessing_grid({"evaluation_params": {
        "event_postprocessing_grid": {"threshold": [0.5]}}})


def test_selection_breaks_ties_towards_larger_values_and_nan_counts_as_zero():
  index, times = _frames([20])
  probs = np.zeros((20, 3), np.float32)
  probs[2:6, 0] = 0.9  # 150 ms long: kept by min_duration 125, not by 250
  combos = [{"median_filter_ms": 0, "min_duration": 125},
            {"median_filter_ms": 0, "min_duration": 250}]
  events_of = lambda c: ev.frames_to_events(probs, index, times, ["a"], VOCAB,
                                            **c)
  constant = ev.select_postprocessing(combos, lambda c: 0.5)
  assert constant == (0.5, {"median_filter_ms": 0, "min_duration": 250})
  counted = ev.select_postprocessing(
      combos, lambda c: float(len(events_of(c)["a"])))
  assert counted.postprocessing["min_duration"] == 125
  assert counted.score == 1.0
  # No events -> a metric would give NaN; NaN ranks as 0 but is reported.
  nan_if_empty = lambda c: 1.0 if events_of(c)["a"] else math.nan
  assert ev.select_postprocessing(combos, nan_if_empty).score == 1.0
  all_nan = ev.select_postprocessing(combos, lambda c: math.nan)
  assert all_nan.postprocessing["min_duration"] == 250
  assert math.isnan(all_nan.score)
  # 0.0 and NaN both rank as 0: the larger min_duration wins the tie and
  # its NaN is what gets reported.
  zero_or_nan = lambda c: 0.0 if c["min_duration"] == 125 else math.nan
  tie = ev.select_postprocessing(combos, zero_or_nan)
  assert tie.postprocessing["min_duration"] == 250 and math.isnan(tie.score)


def test_event_score_fn_drives_fit_probes_and_keeps_the_postprocessing():
  rng = np.random.default_rng(0)
  n_files, n_frames, dim = 6, 40, 8
  index, times = _frames([n_frames] * n_files)
  names = [f"f{i}.wav" for i in range(n_files)]
  truth = []
  for _ in names:
    start = 50.0 * rng.integers(0, 20)
    truth.append([{"label": VOCAB[rng.integers(0, 3)], "start": start,
                   "end": start + 50.0 * rng.integers(3, 15)}])
  y = ev.frame_targets(truth, index, times, VOCAB)
  x = (y @ rng.normal(size=(3, dim)) * 3 + rng.normal(size=(len(y), dim)))
  x = x.astype(np.float32)
  train = index < 4
  valid_index, valid_times = index[~train] - 4, times[~train]
  valid_names, valid_truth = names[4:], dict(zip(names[4:], truth[4:]))

  def onset_hits(predicted):  # a crude stand-in for an event metric
    hits = sum(any(p["label"] == t["label"] and abs(p["start"] - t["start"])
                   <= 200 for p in predicted[f]) for f, ts in
               valid_truth.items() for t in ts)
    n_pred = sum(len(v) for v in predicted.values())
    return math.nan if n_pred == 0 else hits / n_pred

  score_fn = ev.event_score_fn(valid_index, valid_times, valid_names, VOCAB,
                               onset_hits)
  hp = HParams(lr=1e-2, hidden_layers=1, hidden_dim=16, batch_size=64,
               max_epochs=20, check_val_every_n_epoch=4, patience=100)
  (result,) = trainer.fit_probes(
      x[train], y[train], x[~train], y[~train], [hp], multilabel=True,
      score_fn=score_fn, maximize=True, key=jax.random.key(0),
      stop_on_non_finite=False)
  assert result.best_extra in ev.postprocessing_grid()
  probs = trainer.predict(result, x[~train])
  chosen = ev.frames_to_events(probs, valid_index, valid_times, valid_names,
                               VOCAB, **result.best_extra)
  assert onset_hits(chosen) == result.best_score > 0
  # The fast path agrees with scoring each combination from scratch.
  slow = ev.select_postprocessing(
      ev.postprocessing_grid(),
      lambda c: onset_hits(ev.frames_to_events(
          probs, valid_index, valid_times, valid_names, VOCAB, **c)))
  assert score_fn(probs) == slow
