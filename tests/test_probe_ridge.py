"""The closed-form ridge probe (`config.probe.kind = "ridge"`)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from hear_jax.config import check_config, default_config
from hear_jax.data.task import TaskInfo
from hear_jax.embed import SplitEmbeddings
from hear_jax.probe import protocol
from hear_jax.probe import ridge
from hear_jax.report import results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ("a", "b", "c")


def _data(seed, n, dim, classes=3, offset=3.0):
  """Correlated features with a large mean (as log-mel statistics have)."""
  rng = np.random.default_rng(seed)
  mixing = np.random.default_rng(100).normal(size=(dim, dim)) / np.sqrt(dim)
  x = rng.normal(size=(n, dim)) @ (np.eye(dim) + mixing)
  x = (x * np.linspace(0.5, 4.0, dim) + offset).astype(np.float32)
  y = (rng.random((n, classes)) < 0.4).astype(np.float32)
  return x, y


@pytest.mark.parametrize("n, dim", [(300, 24), (40, 96)])  # primal, dual
def test_equals_sklearn_ridge_on_the_standardised_rows(n, dim):
  x, y = _data(0, n, dim)
  y_pm1 = 2 * y - 1
  mean, scale = ridge.standardization(x)
  xs = np.asarray(ridge.standardize(x, mean, scale), np.float64)
  np.testing.assert_allclose(xs.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(xs.std(0), 1, atol=1e-5)
  factors = ridge.factorize(x, y_pm1)
  assert factors.basis.shape == (dim, min(n, dim))
  alpha = 7.5
  reference = Ridge(alpha=alpha, fit_intercept=True).fit(xs, y_pm1)
  w, b = ridge.weights(factors, alpha)
  np.testing.assert_allclose(w, reference.coef_.T, atol=1e-5, rtol=0)
  np.testing.assert_allclose(b, reference.intercept_, atol=1e-5, rtol=0)
  query, _ = _data(1, 17, dim)
  fit = ridge.RidgeFit(ridge.RidgeParams(alpha, alpha / n), True, 0.0, None,
                       factors)
  np.testing.assert_allclose(
      ridge.predict_scores(fit, query),
      reference.predict(np.asarray(ridge.standardize(query, mean, scale),
                                   np.float64)), atol=1e-5, rtol=0)


def test_every_alpha_comes_from_one_factorisation(monkeypatch):
  x, y = _data(2, 120, 16)
  valid_x, valid_y = _data(3, 50, 16)
  calls = []
  original = ridge.factorize

  def counting(*args):
    calls.append(1)
    return original(*args)

  monkeypatch.setattr(ridge, "factorize", counting)
  fits = ridge.fit_ridge(x, y, valid_x, valid_y, multilabel=True,
                         score_fn=None, maximize=False)
  assert len(calls) == 1 and len(fits) == len(ridge.DEFAULT_ALPHAS_PER_ROW)
  assert all(f.factors is fits[0].factors for f in fits)
  assert [f.hparams.alpha for f in fits] == pytest.approx(
      [a * 120 for a in ridge.DEFAULT_ALPHAS_PER_ROW])
  xs_train = ridge.standardization(x)
  valid_xs = np.asarray(ridge.standardize(valid_x, *xs_train), np.float64)
  train_xs = np.asarray(ridge.standardize(x, *xs_train), np.float64)
  for f in fits[::4]:  # the validation loss: squared error on +-1 targets
    pred = Ridge(alpha=f.hparams.alpha).fit(train_xs, 2 * y - 1).predict(
        valid_xs)
    assert f.best_score == pytest.approx(
        np.mean((pred - (2 * valid_y - 1)) ** 2), rel=1e-4)


def test_probabilities_keep_order_argmax_and_the_event_threshold():
  scores = np.array([[-0.3, 0.0, 0.8], [1.4, -2.0, 0.1]], np.float32)
  p = ridge.probabilities(scores, multilabel=True)
  np.testing.assert_array_equal(p > 0.5, scores > 0)
  np.testing.assert_array_equal(np.argsort(p, 0), np.argsort(scores, 0))
  q = ridge.probabilities(scores, multilabel=False)
  np.testing.assert_allclose(q.sum(1), 1, rtol=1e-6)
  np.testing.assert_array_equal(q.argmax(1), scores.argmax(1))


def test_bad_input_is_refused_in_one_line():
  x, y = _data(0, 20, 4)
  bad = x.copy()
  bad[2, 1] = np.inf
  cases = [
      (lambda: ridge.fit_ridge(bad, y, x, y, multilabel=True, score_fn=None,
                               maximize=False), "train_x contains NaN or inf"),
      (lambda: ridge.fit_ridge(x, y[:5], x, y, multilabel=True,
                               score_fn=None, maximize=False),
       r"train_y \(5, 3\) must be \[N, C\]"),
      (lambda: ridge.fit_ridge(x, y, x[:, :3], y, multilabel=True,
                               score_fn=None, maximize=False), "disagree"),
      (lambda: ridge.fit_ridge(x, y, x, y, [0.1, -1.0], multilabel=True,
                               score_fn=None, maximize=False),
       "alphas_per_row must be a non-empty list of finite values > 0"),
      (lambda: ridge.fit_ridge(x, y, x, y, multilabel=True, score_fn=None,
                               maximize=True), "needs maximize=False"),
  ]
  for build, message in cases:
    with pytest.raises(ValueError, match=message) as e:
      build()
    assert "\n" not in str(e.value)


# --- the protocol -------------------------------------------------------------


def _probe_config(**fields):
  config = default_config().probe
  for name, value in fields.items():
    config[name] = value
  return config


def _scene_split(name, x, labels):
  return SplitEmbeddings(
      ids=tuple(f"{name}_{i}.wav" for i in range(len(x))), x=x,
      labels=tuple((LABELS[int(k)],) for k in labels),
      events=((),) * len(x))


def _scene_task(splits):
  return TaskInfo(name="toy", metadata={
      "embedding_type": "scene", "prediction_type": "multiclass",
      "splits": list(splits), "evaluation": ["top1_acc", "mAP"]},
      label_vocabulary=LABELS, sample_rate=16000)


def _linear_classes(seed, n, dim=40, noise=2.5):
  """Classes from a linear rule, seen through noisy dimensions: shrinkage
  helps, so the validation fold has an opinion about alpha."""
  rng = np.random.default_rng(seed)
  directions = np.random.default_rng(50).normal(size=(3, dim))
  z = rng.normal(size=(n, dim))
  labels = np.argmax(z @ directions.T, axis=1)
  x = (z + noise * rng.normal(size=(n, dim))).astype(np.float32)
  return x, labels


def test_ridge_protocol_chooses_alpha_per_fold_on_validation():
  folds = ("fold00", "fold01", "fold02")
  info = _scene_task(folds)
  data = {f: _linear_classes(i, 60) for i, f in enumerate(folds)}
  splits = {f: _scene_split(f, *data[f]) for f in folds}
  outcome = protocol.run_task(info, splits, _probe_config(kind="ridge"),
                              jax.random.key(0), embedding_path="e")
  doc = outcome.doc
  assert doc["probe_kind"] == "ridge"
  assert set(doc["ridge_alphas"]) == set(folds)
  assert outcome.grid == () and set(outcome.fits) == set(folds)
  # Split 0 tests on fold00, validates on fold01, trains on fold02; its
  # validation scores are sklearn's accuracy at every alpha.
  train_x, train_labels = data["fold02"]
  valid_x, valid_labels = data["fold01"]
  mean, scale = ridge.standardization(train_x)
  std = lambda x: np.asarray(ridge.standardize(x, mean, scale), np.float64)
  accuracy = []
  for per_row in ridge.DEFAULT_ALPHAS_PER_ROW:
    model = Ridge(alpha=per_row * len(train_x)).fit(
        std(train_x), 2 * np.eye(3)[train_labels] - 1)
    accuracy.append(float(np.mean(model.predict(std(valid_x)).argmax(1)
                                  == valid_labels)))
  scores = doc["ridge_validation_scores"]
  np.testing.assert_allclose([a for a, _ in scores], [
      a * len(train_x) for a in ridge.DEFAULT_ALPHAS_PER_ROW], rtol=1e-6)
  np.testing.assert_allclose([s for _, s in scores], accuracy)
  best = int(np.argmax(accuracy))  # the first best
  assert len(set(accuracy)) > 1 and 0 < best
  assert doc["ridge_alphas"]["fold00"] == pytest.approx(scores[best][0])
  assert doc["hparams"]["alpha"] == doc["ridge_alphas"]["fold00"]
  assert doc["fold00"]["validation_score"] == pytest.approx(accuracy[best])
  assert "aggregated_scores" in doc and math.isfinite(
      doc["fold00"]["test_loss"])
  # The test fold plays no part in the choice: other test labels, same alpha.
  x0, labels0 = data["fold00"]
  shuffled = dict(splits, fold00=_scene_split(
      "fold00", x0, np.random.default_rng(9).permutation(labels0)))
  again = protocol.run_task(info, shuffled, _probe_config(kind="ridge"),
                            jax.random.key(0), embedding_path="e").doc
  assert again["ridge_alphas"]["fold00"] == doc["ridge_alphas"]["fold00"]
  assert again["ridge_validation_scores"] == scores


def _event_split(name, seed, clips=6, frames=80, hop=50.0):
  """Two labels, each active in one random run per clip; frame embeddings
  carry the activity plus noise and a few distractor dimensions."""
  rng = np.random.default_rng(seed)
  xs, file_index, timestamps, events = [], [], [], []
  times = hop / 2 + hop * np.arange(frames)
  for clip in range(clips):
    active = np.zeros((frames, 2), np.float32)
    clip_events = []
    for label in range(2):
      start = int(rng.integers(0, frames - 30))
      length = int(rng.integers(10, 25))
      active[start:start + length, label] = 1
      clip_events.append({"label": "ab"[label], "start": float(
          times[start] - hop / 2), "end": float(times[start + length - 1]
                                                 + hop / 2)})
    noise = rng.normal(size=(frames, 6)).astype(np.float32)
    xs.append(np.concatenate([active * 2 + 0.3 * noise[:, :2], noise[:, 2:]],
                             axis=1))
    file_index.append(np.full(frames, clip, np.int32))
    timestamps.append(times)
    events.append(tuple(clip_events))
  return SplitEmbeddings(
      ids=tuple(f"{name}_{c}.wav" for c in range(clips)),
      x=np.concatenate(xs), labels=((),) * clips, events=tuple(events),
      file_index=np.concatenate(file_index),
      timestamps_ms=np.concatenate(timestamps))


def test_ridge_protocol_on_an_event_task():
  info = TaskInfo(name="toy_events", metadata={
      "embedding_type": "event", "prediction_type": "multilabel",
      "splits": ["train", "valid", "test"],
      "evaluation": ["event_onset_200ms_fms", "segment_1s_er"]},
      label_vocabulary=("a", "b"), sample_rate=16000)
  splits = {s: _event_split(s, i) for i, s in enumerate(("train", "valid",
                                                          "test"))}
  outcome = protocol.run_task(info, splits, _probe_config(kind="ridge"),
                              jax.random.key(0), embedding_path="e")
  doc = outcome.doc
  assert doc["probe_kind"] == "ridge" and list(doc["ridge_alphas"]) == [
      "test"]
  assert len(doc["ridge_validation_scores"]) == len(
      ridge.DEFAULT_ALPHAS_PER_ROW)
  assert doc["test"]["test_event_onset_200ms_fms"] > 0.8
  assert doc["postprocessing"]  # chosen on validation, as for the heads
  assert outcome.predicted_events["test"]
  assert outcome.fits["test"].stop_reason == "ridge"


def test_config_takes_ridge_with_one_seed_only():
  config = default_config()
  config.tasks = ["demo/pitch/tiny"]
  config.probe.kind = "ridge"
  check_config(config)
  assert protocol.planned_member_epochs(None, config.probe) == 0
  config.probe.seeds = 2
  with pytest.raises(ValueError, match="kind 'ridge' is deterministic"):
    check_config(config)


def test_tiny_demo_runs_with_the_ridge_probe(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "hear_jax.main", "--config=configs/demo.py:tiny",
       "--config.model=melstats", f"--config.data_dir={tmp_path / 'tfds'}",
       f"--workdir={tmp_path / 'run'}", "--config.probe.kind=ridge"],
      cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"),
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "run" / "leaderboard.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3
  for r in rows:
    with open(tmp_path / "run" / "melstats" / r["task"]
              / "test.predicted-scores.json") as f:
      doc = json.load(f)
    assert doc["probe_kind"] == "ridge" and doc["ridge_alphas"]
    assert results.reported_score(doc)[0] == pytest.approx(
        float(r["score"]), abs=1e-6, nan_ok=True)
  assert (tmp_path / "run" / "report.html").exists()
