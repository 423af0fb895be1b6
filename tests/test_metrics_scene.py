"""Scene metrics and leaderboard normalisation against scikit-learn / HEAR.

The references are hear-eval-kit's own definitions (heareval/score.py) run
on scikit-learn, a test-only dependency.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

from hear_jax import metrics
from hear_jax.metrics import normalisation, scene

SCENE_NAMES = ("top1_acc", "pitch_acc", "chroma_acc", "mAP", "d_prime", "aucroc")


# -- HEAR's definitions, verbatim in behaviour --------------------------------


def hear_top1(predictions, targets):
  correct = 0
  for target, prediction in zip(targets, predictions):
    if np.argmax(prediction) == np.argmax(target):
      correct += 1
  return correct / len(targets)


def hear_chroma(predictions, targets):
  correct = 0
  for target, prediction in zip(targets, predictions):
    if np.argmax(prediction) % 12 == np.argmax(target) % 12:
      correct += 1
  return correct / len(targets)


def hear_map(predictions, targets):
  return average_precision_score(targets, predictions, average="macro")


def hear_d_prime(predictions, targets):
  try:
    auc = roc_auc_score(targets, predictions, average=None)
    return np.mean(stats.norm().ppf(auc) * np.sqrt(2.0))
  except ValueError:
    return np.nan


def hear_aucroc(predictions, targets):
  try:
    return roc_auc_score(targets, predictions, average="macro")
  except ValueError:
    return np.nan


HEAR = {
    "top1_acc": hear_top1,
    "pitch_acc": hear_top1,
    "chroma_acc": hear_chroma,
    "mAP": hear_map,
    "d_prime": hear_d_prime,
    "aucroc": hear_aucroc,
}


def hear_score(name, predictions, targets):
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore")
    return float(HEAR[name](predictions, targets))


def assert_same(ours, reference, context=""):
  if math.isnan(reference) or math.isnan(ours):
    assert math.isnan(ours) and math.isnan(reference), (ours, reference, context)
  elif math.isinf(reference) or math.isinf(ours):
    assert ours == reference, (ours, reference, context)
  else:
    assert abs(ours - reference) <= 1e-9, (ours, reference, context)


def ours(name, predictions, targets):
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    return metrics.compute(name, predictions, targets)


# -- Property-based parity ----------------------------------------------------


@st.composite
def scene_problems(draw):
  """predictions[N, C] and 0/1 targets[N, C], with HEAR's awkward cases.

  Scores come from a coarse grid half of the time (many ties). Targets are
  one-hot (some classes never used), multi-hot (with empty rows) or
  single-class; C = 1 is a one-class task.
  """
  n = draw(st.integers(1, 25))
  c = draw(st.integers(1, 14))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  if draw(st.booleans()):
    predictions = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=(n, c))
  else:
    predictions = rng.random((n, c))
  if draw(st.booleans()):
    predictions = predictions.astype(np.float32)
  kind = draw(st.sampled_from(["onehot", "onehot_few", "multihot", "constant"]))
  if kind == "onehot":
    targets = np.eye(c)[rng.integers(0, c, n)]
  elif kind == "onehot_few":  # classes with no positives
    targets = np.eye(c)[rng.integers(0, max(1, c // 3), n)]
  elif kind == "multihot":
    targets = (rng.random((n, c)) < draw(st.floats(0.0, 1.0))).astype(np.int64)
  else:
    targets = np.full((n, c), draw(st.integers(0, 1)))
  return predictions, targets


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene_problems())
def test_scene_metrics_match_hear_definitions(problem):
  predictions, targets = problem
  for name in SCENE_NAMES:
    assert_same(
        ours(name, predictions, targets),
        hear_score(name, predictions, targets),
        name,
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 400), st.integers(0, 2**32 - 1))
def test_ranking_metrics_match_on_larger_inputs(n, seed):
  rng = np.random.default_rng(seed)
  targets = (rng.random((n, 5)) < 0.3).astype(int)
  targets[0], targets[1] = 1, 0  # every class has both values
  # Scores correlated with the targets, with rounding for ties.
  predictions = np.round(targets * 0.3 + rng.random((n, 5)), 2)
  for name in ("mAP", "aucroc", "d_prime"):
    assert_same(ours(name, predictions, targets), hear_score(name, predictions, targets))


# -- Edge cases, spelled out ---------------------------------------------------


def test_class_without_positives_has_zero_average_precision():
  predictions = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4], [0.7, 0.3, 0.6]])
  targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
  per_class = scene.average_precision_per_class(predictions, targets)
  np.testing.assert_array_equal(per_class, [1.0, 1.0, 0.0])
  assert_same(
      metrics.compute("mAP", predictions, targets), hear_score("mAP", predictions, targets)
  )


def test_undefined_auc_makes_aucroc_and_d_prime_nan():
  predictions = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4], [0.7, 0.3, 0.6]])
  targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])  # class 2: one value
  assert math.isnan(metrics.compute("aucroc", predictions, targets))
  assert math.isnan(metrics.compute("d_prime", predictions, targets))


def test_perfect_and_chance_ranking():
  targets = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
  perfect = targets * 0.8 + 0.1
  assert metrics.compute("aucroc", perfect, targets) == 1.0
  assert metrics.compute("d_prime", perfect, targets) == math.inf
  all_tied = np.full((4, 2), 0.5)
  assert metrics.compute("aucroc", all_tied, targets) == 0.5
  assert metrics.compute("d_prime", all_tied, targets) == 0.0
  assert metrics.compute("mAP", all_tied, targets) == 0.5


def test_top1_multilabel_and_empty_targets_follow_argmax():
  predictions = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.1, 0.2, 0.7]])
  # Row 0: first positive is class 0 -> wrong; row 1: all-zero -> class 0.
  targets = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1]])
  assert metrics.compute("top1_acc", predictions, targets) == 2 / 3


def test_chroma_ignores_octaves_of_vocabulary_indices():
  predictions = np.zeros((2, 30))
  predictions[0, 14] = 1.0  # 2 + 12: octave error
  predictions[1, 3] = 1.0
  targets = np.zeros((2, 30))
  targets[0, 2] = 1
  targets[1, 4] = 1
  assert metrics.compute("pitch_acc", predictions, targets) == 0.0
  assert metrics.compute("chroma_acc", predictions, targets) == 0.5


def test_non_finite_predictions():
  predictions = np.array([[np.nan, 0.5], [0.2, 0.8]])
  targets = np.array([[1, 0], [0, 1]])
  # HEAR catches scikit-learn's ValueError only for the AUC-based scores.
  assert math.isnan(metrics.compute("aucroc", predictions, targets))
  assert math.isnan(metrics.compute("d_prime", predictions, targets))
  with pytest.raises(ValueError, match="NaN"):
    metrics.compute("mAP", predictions, targets)


@pytest.mark.parametrize(
    "predictions, targets, message",
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), "shape"),
        (np.zeros(3), np.zeros(3), "2-D"),
        (np.zeros((0, 2)), np.zeros((0, 2)), "empty"),
        (np.zeros((2, 2)), np.array([[0.5, 0.5], [1, 0]]), "only 0 and 1"),
    ],
)
def test_bad_scene_input_raises(predictions, targets, message):
  for name in SCENE_NAMES:
    with pytest.raises(ValueError, match=message):
      metrics.compute(name, predictions, targets)


# -- Registry -------------------------------------------------------------------


def test_registry_names_and_directions():
  assert set(metrics.METRIC_NAMES) == {
      "top1_acc", "pitch_acc", "chroma_acc", "mAP", "d_prime", "aucroc",
      "event_onset_200ms_fms", "event_onset_50ms_fms",
      "event_onset_offset_50ms_20perc_fms", "segment_1s_er",
  }  # fmt: skip
  assert [n for n in metrics.METRIC_NAMES if not metrics.higher_is_better(n)] == [
      "segment_1s_er"
  ]
  with pytest.raises(ValueError, match="top1_acc"):
    metrics.compute("accuracy", np.zeros((1, 1)), np.zeros((1, 1)))
  with pytest.raises(ValueError, match="unknown metric"):
    metrics.higher_is_better("f1")


def test_compute_detailed_for_scene_metrics():
  predictions = np.array([[0.9, 0.1], [0.3, 0.7]])
  targets = np.array([[1, 0], [1, 0]])
  assert metrics.compute_detailed("top1_acc", predictions, targets) == {"top1_acc": 0.5}
  with pytest.raises(ValueError, match="no options"):
    metrics.compute("top1_acc", predictions, targets, files=["x"])


# -- Leaderboard normalisation ----------------------------------------------------


def test_normalisation_matches_standard_scaler_then_clip():
  rng = np.random.default_rng(0)
  table = rng.random((7, 4))
  table[:, 3] = 0.25  # a constant task
  models = [f"m{i}" for i in range(7)]
  tasks = ["a", "b", "c", "d"]
  scores = {(m, t): table[i, j] for i, m in enumerate(models) for j, t in enumerate(tasks)}
  expected = np.clip(StandardScaler().fit_transform(table), -1, 1)
  got = normalisation.normalise_scores(scores)
  for i, m in enumerate(models):
    for j, t in enumerate(tasks):
      assert abs(got[(m, t)] - expected[i, j]) <= 1e-12
  assert all(got[(m, "d")] == 0.0 for m in models)
  unclipped = normalisation.normalise_scores(scores, clip=None)
  assert max(abs(v) for v in unclipped.values()) > 1.0


def test_normalisation_direction_and_missing_cells():
  scores = {
      ("good", "er_task"): 0.1, ("bad", "er_task"): 0.9, ("mid", "er_task"): 0.5,
      ("good", "acc"): 0.9, ("bad", "acc"): float("nan"), ("mid", "acc"): 0.5,
  }  # fmt: skip
  z = normalisation.normalise_scores(scores, lower_is_better={"er_task"})
  assert z[("good", "er_task")] > 0 > z[("bad", "er_task")]
  assert math.isnan(z[("bad", "acc")])
  # Two observed models: +-1 standard deviation each.
  assert z[("good", "acc")] == pytest.approx(1.0)
  assert z[("mid", "acc")] == pytest.approx(-1.0)
  averages = normalisation.average_normalised_score(z)
  assert averages["good"] > averages["mid"] > averages["bad"]
  with pytest.raises(ValueError, match="without scores"):
    normalisation.normalise_scores(scores, lower_is_better={"typo"})
