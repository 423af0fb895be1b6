"""Event metrics against sed_eval 0.2.1 / dcase_util, called the way HEAR does.

sed_eval and dcase_util are test-only dependencies; the reference below is
heareval/score.py's SoundEventScore, evaluating every file of either dict.
"""

from __future__ import annotations

import math
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hear_jax import metrics
from hear_jax.metrics import events, segments

with warnings.catch_warnings():
  warnings.simplefilter("ignore")
  import sed_eval
  from dcase_util.containers import MetaDataContainer
  from sed_eval.util import bipartite_match

EVENT_NAMES = (
    "event_onset_200ms_fms",
    "event_onset_50ms_fms",
    "event_onset_offset_50ms_20perc_fms",
    "segment_1s_er",
)

# heareval/score.py's parameters.
SED_EVAL_PARAMS = {
    "event_onset_200ms_fms": dict(
        evaluate_onset=True, evaluate_offset=False, t_collar=0.2, percentage_of_length=0.5
    ),
    "event_onset_50ms_fms": dict(evaluate_onset=True, evaluate_offset=False, t_collar=0.05),
    "event_onset_offset_50ms_20perc_fms": dict(
        evaluate_onset=True, evaluate_offset=True, t_collar=0.05, percentage_of_length=0.2
    ),
}


def container(x):
  return MetaDataContainer([
      {
          "event_label": str(event["label"]),
          "event_onset": event["start"] / 1000.0,
          "event_offset": event["end"] / 1000.0,
          "file": filename,
      }
      for filename, file_events in x.items()
      for event in file_events
  ])


def sed_eval_detailed(name, predictions, targets, vocab, files=None, params=None):
  """HEAR's metric `name`, or EventBasedMetrics(**params) if params given."""
  reference, estimated = container(targets), container(predictions)
  if name == "segment_1s_er":
    scores = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=list(vocab), time_resolution=1.0
    )
  else:
    scores = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=list(vocab), **(params or SED_EVAL_PARAMS[name])
    )
  if files is None:
    files = dict.fromkeys(targets)
    files.update(dict.fromkeys(predictions))
  for filename in files:
    scores.evaluate(
        reference_event_list=reference.filter(filename=filename),
        estimated_event_list=estimated.filter(filename=filename),
    )
  overall = scores.results_overall_metrics()
  if name == "segment_1s_er":
    return {"error_rate": overall["error_rate"]["error_rate"]}
  return dict(overall["f_measure"])


def assert_same(ours, reference, context=""):
  assert ours.keys() == reference.keys(), (ours, reference)
  for key in ours:
    a, b = ours[key], reference[key]
    if math.isnan(a) or math.isnan(b):
      assert math.isnan(a) and math.isnan(b), (key, ours, reference, context)
    else:
      assert abs(a - b) <= 1e-9, (key, ours, reference, context)


def check_all_metrics(predictions, targets, vocab):
  for name in EVENT_NAMES:
    assert_same(
        metrics.compute_detailed(name, predictions, targets, label_vocab=vocab),
        sed_eval_detailed(name, predictions, targets, vocab),
        name,
    )


# -- Property-based parity on adversarial event lists ----------------------------

# Times in ms: exact collar distances and whole seconds (segment edges) on a
# 50 ms grid, plain ms, and arbitrary floats.
times_ms = st.one_of(
    st.integers(0, 80).map(lambda k: k * 50.0),
    st.integers(0, 4000).map(float),
    st.floats(0.0, 4000.0, allow_nan=False, allow_infinity=False),
)
durations_ms = st.one_of(
    st.just(0.0),
    st.sampled_from([50.0, 200.0, 250.0, 1000.0, 2000.0]),
    st.floats(0.0, 3000.0, allow_nan=False, allow_infinity=False),
)
# Shifts right at, just inside and just outside the 50 ms / 200 ms collars
# and the 20 % offset tolerance, plus arbitrary ones.
shifts_ms = st.one_of(
    st.sampled_from([0.0, 10.0, -10.0, 49.0, 50.0, -50.0, 51.0, 199.0, 200.0, -200.0, 201.0]),
    st.floats(-400.0, 400.0, allow_nan=False, allow_infinity=False),
)


@st.composite
def event_lists(draw, vocab, max_size):
  result = []
  for _ in range(draw(st.integers(0, max_size))):
    start = draw(times_ms)
    result.append(
        {"label": draw(st.sampled_from(vocab)), "start": start, "end": start + draw(durations_ms)}
    )
  return result


@st.composite
def event_problems(draw):
  """(predictions, targets, vocab): files of HEAR events with the edge cases.

  Files may be empty, exist in only one dict, hold overlapping events of one
  class (duplicated references), zero-length events and events at 0 s.
  """
  vocab = draw(st.sampled_from([("a",), ("a", "b"), ("17", "18", "19", "60")]))
  targets, predictions = {}, {}
  for i in range(draw(st.integers(0, 4))):
    references = draw(event_lists(vocab, 6))
    for event in list(references):
      if draw(st.integers(0, 4)) == 0:  # an overlapping event of the same class
        start = max(0.0, event["start"] + draw(shifts_ms))
        references.append({**event, "start": start, "end": max(start, event["end"])})
    estimates = []
    for event in references:
      if draw(st.booleans()):
        start = max(0.0, event["start"] + draw(shifts_ms))
        end = max(start, event["end"] + draw(shifts_ms))
        label = event["label"] if draw(st.integers(0, 5)) else draw(st.sampled_from(vocab))
        estimates.append({"label": label, "start": start, "end": end})
    estimates += draw(event_lists(vocab, 3))
    placement = draw(st.sampled_from(["both", "both", "both", "targets", "predictions"]))
    if placement != "predictions":
      targets[f"clip{i}.wav"] = references
    if placement != "targets":
      predictions[f"clip{i}.wav"] = estimates
  return predictions, targets, vocab


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_problems())
def test_event_metrics_match_sed_eval(problem):
  predictions, targets, vocab = problem
  check_all_metrics(predictions, targets, vocab)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_problems(),
    st.sampled_from([(True, False), (False, True), (True, True)]),
    st.sampled_from([0.05, 0.1, 0.25]),
    st.sampled_from([0.0, 0.2, 0.5, 1.0]),
)
def test_other_event_parameters_match_sed_eval(problem, evaluate, t_collar, percentage):
  """Parameters HEAR does not use, offset-only matching among them."""
  predictions, targets, vocab = problem
  params = dict(
      evaluate_onset=evaluate[0],
      evaluate_offset=evaluate[1],
      t_collar=t_collar,
      percentage_of_length=percentage,
  )
  assert_same(
      metrics.event_based_scores(predictions, targets, label_vocab=vocab, **params),
      sed_eval_detailed(None, predictions, targets, vocab, params=params),
      params,
  )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_problems())
def test_segment_boundary_sweep_matches_sed_eval(problem):
  """The path taken when event rolls would be too big (very long files)."""
  predictions, targets, vocab = problem
  with mock.patch.object(segments, "_ROLL_CELL_LIMIT", 0):
    ours = metrics.compute_detailed("segment_1s_er", predictions, targets, label_vocab=vocab)
  assert_same(ours, sed_eval_detailed("segment_1s_er", predictions, targets, vocab))


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_dense_overlapping_events_match_sed_eval(seed):
  """Many events per class within the collars: big matching components."""
  rng = np.random.default_rng(seed)
  vocab = ("a", "b")
  targets, predictions = {}, {}
  for i in range(2):
    n = 60
    start = np.round(rng.uniform(0, 3000, n), 0)
    end = start + rng.choice([0.0, 100.0, 400.0, 1500.0], n)
    labels = rng.choice(vocab, n)
    targets[f"f{i}"] = [
        {"label": str(l), "start": float(s), "end": float(e)}
        for l, s, e in zip(labels, start, end)
    ]
    keep = rng.random(n) < 0.8
    shift = rng.choice([0.0, 50.0, -50.0, 120.0, -180.0, 300.0], n)
    est_start = np.maximum(0.0, start + shift)
    est_end = np.maximum(est_start, end + rng.choice([0.0, 60.0, -300.0], n))
    predictions[f"f{i}"] = [
        {"label": str(l), "start": float(s), "end": float(e)}
        for l, s, e, k in zip(labels, est_start, est_end, keep)
        if k
    ]
  check_all_metrics(predictions, targets, vocab)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=30, unique=True)
)
def test_maximum_matching_size_equals_sed_eval_bipartite_match(edges):
  graph = {}
  for ref, est in edges:
    graph.setdefault(est, []).append(ref)
  expected = len(bipartite_match(graph))
  ref = np.array([r for r, _ in edges], dtype=np.int64)
  est = np.array([e for _, e in edges], dtype=np.int64)
  assert events._maximum_matching_size(ref, est) == expected


# -- Behaviour a user relies on -------------------------------------------------


def test_matching_is_optimal_not_greedy():
  # Estimate X (0.2 s) fits both references, Y (0.0 s) only the first. A
  # greedy pass gives ref 0.1 -> X and leaves ref 0.35 unmatched; the
  # maximum matching pairs both.
  targets = {"f": [{"label": "a", "start": 100.0, "end": 500.0},
                   {"label": "a", "start": 350.0, "end": 900.0}]}  # fmt: skip
  predictions = {"f": [{"label": "a", "start": 200.0, "end": 600.0},
                       {"label": "a", "start": 0.0, "end": 600.0}]}  # fmt: skip
  scores = metrics.compute_detailed("event_onset_200ms_fms", predictions, targets)
  assert scores == {"f_measure": 1.0, "precision": 1.0, "recall": 1.0}
  assert_same(scores, sed_eval_detailed("event_onset_200ms_fms", predictions, targets, ["a"]))


def test_no_predicted_events_gives_nan_f_measure():
  targets = {"f": [{"label": "a", "start": 0.0, "end": 500.0}], "g": []}
  predictions = {"f": [], "g": []}
  scores = metrics.compute_detailed("event_onset_50ms_fms", predictions, targets)
  assert math.isnan(scores["f_measure"]) and math.isnan(scores["precision"])
  assert scores["recall"] == 0.0
  assert metrics.compute("segment_1s_er", predictions, targets) == pytest.approx(1.0)


def test_no_reference_events_gives_nan_recall():
  predictions = {"f": [{"label": "a", "start": 0.0, "end": 500.0}]}
  scores = metrics.compute_detailed("event_onset_50ms_fms", predictions, {"f": []})
  assert scores["precision"] == 0.0 and math.isnan(scores["recall"])
  assert math.isnan(scores["f_measure"])
  # No reference activity: the error rate is insertions / eps, huge but finite.
  assert metrics.compute("segment_1s_er", predictions, {"f": []}) > 1e15


def test_offset_tolerance_grows_with_reference_length():
  # 10 s reference: 20 % allows 2 s of offset error, far beyond 50 ms.
  targets = {"f": [{"label": "a", "start": 0.0, "end": 10000.0}]}
  near = {"f": [{"label": "a", "start": 20.0, "end": 8100.0}]}
  far = {"f": [{"label": "a", "start": 20.0, "end": 7900.0}]}
  name = "event_onset_offset_50ms_20perc_fms"
  assert metrics.compute(name, near, targets) == 1.0
  assert metrics.compute(name, far, targets) == 0.0
  assert metrics.compute("event_onset_50ms_fms", far, targets) == 1.0


def test_segments_merge_overlaps_and_follow_sed_eval_rounding():
  # Two overlapping "a" events cover segments 0-2 once; the zero-length event
  # at 5.5 s covers segment 5; the one at exactly 7 s covers nothing.
  targets = {"f": [{"label": "a", "start": 200.0, "end": 2100.0},
                   {"label": "a", "start": 900.0, "end": 1500.0},
                   {"label": "b", "start": 5500.0, "end": 5500.0},
                   {"label": "b", "start": 7000.0, "end": 7000.0}]}  # fmt: skip
  predictions = {"f": [{"label": "b", "start": 0.0, "end": 900.0}]}
  scores = segments.segment_based_scores(predictions, targets)
  # Segment 0: ref {a}, sys {b} -> 1 substitution; segments 1, 2, 5: deletions.
  assert scores["substitution_rate"] == pytest.approx(1 / 4)
  assert scores["deletion_rate"] == pytest.approx(3 / 4)
  assert scores["insertion_rate"] == 0.0
  assert_same(
      {"error_rate": scores["error_rate"]},
      sed_eval_detailed("segment_1s_er", predictions, targets, ["a", "b"]),
  )


def test_files_option_reproduces_hears_loop_over_predictions():
  targets = {"f": [{"label": "a", "start": 0.0, "end": 500.0}],
             "missing": [{"label": "a", "start": 0.0, "end": 500.0}]}  # fmt: skip
  predictions = {"f": [{"label": "a", "start": 0.0, "end": 500.0}]}
  name = "event_onset_200ms_fms"
  assert metrics.compute(name, predictions, targets) == pytest.approx(2 / 3)
  hear_loop = metrics.compute(name, predictions, targets, files=predictions.keys())
  assert hear_loop == 1.0
  assert hear_loop == sed_eval_detailed(name, predictions, targets, ["a"], files=["f"])[
      "f_measure"
  ]


def test_event_table_is_reusable_and_equivalent():
  targets = {"f": [{"label": 3, "start": 0, "end": 500}], "g": []}
  predictions = {"f": [{"label": "3", "start": 30.0, "end": 480.0}], "g": []}
  ref_table = metrics.EventTable.from_hear(targets)
  est_table = metrics.EventTable.from_hear(predictions)
  assert ref_table.files == ("f", "g") and ref_table.labels == ("3",)
  for name in EVENT_NAMES:
    assert metrics.compute(name, est_table, ref_table, label_vocab=["3"]) == (
        metrics.compute(name, predictions, targets, label_vocab=["3"])
    )


@pytest.mark.parametrize(
    "predictions, message",
    [
        ({"f": [{"label": "z", "start": 0.0, "end": 1.0}]}, "not in label_vocab"),
        ({"f": [{"label": "a", "start": -5.0, "end": 1.0}]}, r"predictions\['f'\]\[0\]"),
        ({"f": [{"label": "a", "start": 0.0, "end": 1.0},
                {"label": "a", "start": 9.0, "end": 1.0}]}, r"\['f'\]\[1\].*start <= end"),  # fmt: skip
        ({"f": [{"label": "a", "start": 0.0, "end": float("nan")}]}, "finite"),
        ({"f": [{"label": "a", "start": 0.0}]}, "no 'end'"),
        ({"f": [{"label": "a", "start": "soon", "end": 1.0}]}, "not a number"),
        ({"f": "a"}, r"\['f'\]\[0\] must be a dict"),
        ([{"label": "a", "start": 0.0, "end": 1.0}], "must be a dict"),
        ({3: []}, "file names must be str"),
    ],
)
def test_bad_event_input_raises(predictions, message):
  targets = {"f": [{"label": "a", "start": 0.0, "end": 1.0}]}
  for name in EVENT_NAMES:
    with pytest.raises(ValueError, match=message):
      metrics.compute(name, predictions, targets, label_vocab=["a"])


def test_unknown_option_raises():
  with pytest.raises(ValueError, match="unknown options"):
    metrics.compute("segment_1s_er", {}, {}, time_resolution=0.5)
