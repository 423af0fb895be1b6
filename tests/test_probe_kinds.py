"""The probes beyond HEAR: kNN, linear, and several seeds with a t-interval."""

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
import scipy.stats
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from hear_jax.config import check_config, default_config
from hear_jax.data.task import TaskInfo
from hear_jax.embed import SplitEmbeddings
from hear_jax.probe import grid
from hear_jax.probe import knn
from hear_jax.probe import protocol
from hear_jax.report import leaderboard
from hear_jax.report import results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ("a", "b", "c")


def _labelled(seed, n, dim=12, classes=3):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, dim)).astype(np.float32)
  labels = rng.integers(0, classes, n)
  return x, labels, np.eye(classes, dtype=np.float32)[labels]


# --- kNN ---------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 9])
def test_knn_matches_sklearn_cosine_knn(k):
  train_x, train_labels, train_y = _labelled(0, 150)
  query, _, _ = _labelled(1, 41)
  reference = KNeighborsClassifier(k, metric="cosine", algorithm="brute")
  reference.fit(train_x, train_labels)
  distances, neighbours = reference.kneighbors(query)
  # Chunks that do not divide the rows: padding and the running top-k merge.
  rows, sims = knn.nearest_neighbours(query, train_x, k, query_chunk=8,
                                      train_chunk=32)
  np.testing.assert_array_equal(rows, neighbours)
  np.testing.assert_allclose(sims, 1 - distances, atol=1e-6)
  probs = knn.knn_probabilities(train_x, train_y, query, k)
  np.testing.assert_allclose(probs, reference.predict_proba(query), atol=1e-6)
  np.testing.assert_array_equal(probs.argmax(1), reference.predict(query))


def test_knn_ties_go_to_the_lower_training_row_in_any_chunking():
  rng = np.random.default_rng(2)
  distinct = rng.normal(size=(6, 5)).astype(np.float32)
  train = np.repeat(distinct, 3, axis=0)  # rows 3i..3i+2 are equal
  want = None
  for chunks in [(1, 1), (2, 5), (6, 18), (4, 4)]:
    rows, _ = knn.nearest_neighbours(distinct, train, 5, query_chunk=chunks[0],
                                     train_chunk=chunks[1])
    if want is None:
      want = rows
    np.testing.assert_array_equal(rows, want)
  np.testing.assert_array_equal(want[:, :3], np.arange(18).reshape(6, 3))
  # Beyond the three copies, the next rows of the runner-up come in order.
  assert all(r[3] % 3 == 0 and r[4] == r[3] + 1 for r in want)


def test_knn_multilabel_is_the_per_label_fraction_of_neighbours():
  train_x, _, _ = _labelled(3, 90)
  query, _, _ = _labelled(4, 17)
  train_y = (np.random.default_rng(5).random((90, 4)) < 0.3).astype(
      np.float32)
  idx = NearestNeighbors(n_neighbors=6, metric="cosine",
                         algorithm="brute").fit(train_x).kneighbors(
                             query, return_distance=False)
  np.testing.assert_allclose(knn.knn_probabilities(train_x, train_y, query, 6),
                             train_y[idx].mean(axis=1), atol=1e-6)


def test_knn_refuses_bad_input_in_one_line():
  x, _, y = _labelled(0, 10)
  with pytest.raises(ValueError, match=r"k must be in \[1, 10\]"):
    knn.nearest_neighbours(x, x, 11)
  bad = x.copy()
  bad[3, 2] = np.nan
  with pytest.raises(ValueError, match="query contains NaN"):
    knn.nearest_neighbours(bad, x, 1)
  with pytest.raises(ValueError, match="exactly one label per row"):
    knn.fit_knn(x, y * 0, x, y, multilabel=False, score_fn=None,
                maximize=False)


# --- the protocol: toy tasks --------------------------------------------------


def _scene_task(splits, metric="top1_acc"):
  return TaskInfo(name="toy", metadata={
      "embedding_type": "scene", "prediction_type": "multiclass",
      "splits": list(splits), "evaluation": [metric, "mAP"]},
      label_vocabulary=LABELS, sample_rate=16000)


def _split(name, x, labels):
  return SplitEmbeddings(
      ids=tuple(f"{name}_{i}.wav" for i in range(len(x))), x=x,
      labels=tuple((LABELS[int(k)],) for k in labels),
      events=((),) * len(x))


def _noisy_clusters(seed, n, noise):
  """Three clusters; a fraction `noise` of the labels is replaced at random,
  so a few neighbours vote better than one."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(99).normal(size=(3, 8)) * 1.2
  labels = rng.integers(0, 3, n)
  x = (centres[labels] + rng.normal(size=(n, 8))).astype(np.float32)
  flip = rng.random(n) < noise
  labels = np.where(flip, rng.integers(0, 3, n), labels)
  return x, labels


def _probe_config(**fields):
  config = default_config().probe
  for name, value in fields.items():
    config[name] = value
  return config


def test_knn_protocol_chooses_k_on_validation_like_sklearn():
  info = _scene_task(("train", "valid", "test"))
  data = {s: _noisy_clusters(i, n, noise) for i, (s, n, noise) in
          enumerate([("train", 240, 0.35), ("valid", 90, 0.0),
                     ("test", 90, 0.0)])}
  splits = {s: _split(s, *data[s]) for s in data}
  outcome = protocol.run_task(info, splits, _probe_config(kind="knn"),
                              jax.random.key(0), embedding_path="e")
  doc = outcome.doc
  # sklearn's accuracy of every k on the validation split; the first best.
  accuracy = {}
  for k in knn.DEFAULT_KS:
    model = KNeighborsClassifier(k, metric="cosine", algorithm="brute")
    model.fit(*data["train"])
    accuracy[k] = float(np.mean(model.predict(data["valid"][0])
                                == data["valid"][1]))
  best = max(knn.DEFAULT_KS, key=lambda k: (accuracy[k], -k))
  assert [k for k, _ in doc["knn_validation_scores"]] == list(knn.DEFAULT_KS)
  np.testing.assert_allclose([s for _, s in doc["knn_validation_scores"]],
                             [accuracy[k] for k in knn.DEFAULT_KS])
  assert accuracy[1] < accuracy[best]  # label noise: one neighbour is worse
  assert doc["hparams"] == {"k": best, "similarity": "cosine",
                            "vote": "uniform"}
  assert doc["probe_kind"] == "knn"
  assert doc["test"]["validation_score"] == pytest.approx(accuracy[best])
  model = KNeighborsClassifier(best, metric="cosine", algorithm="brute")
  model.fit(*data["train"])
  assert doc["test"]["test_top1_acc"] == pytest.approx(
      np.mean(model.predict(data["test"][0]) == data["test"][1]))
  assert math.isfinite(doc["test"]["test_loss"])
  assert outcome.grid == () and outcome.fits["test"].hparams.k == best


def test_linear_probe_learns_a_linearly_separable_task():
  info = _scene_task(("train", "valid", "test"))
  rng = np.random.default_rng(7)
  normal = rng.normal(size=(3, 16))
  splits = {}
  for name, n in (("train", 400), ("valid", 100), ("test", 200)):
    x = rng.normal(size=(3 * n, 16)).astype(np.float32)
    # Three classes cut by hyperplanes through the origin, with a margin:
    # linearly separable, but no cluster structure for a kNN to find.
    scores = np.sort(x @ normal.T, axis=1)
    x = x[scores[:, -1] - scores[:, -2] > 1.0][:n]
    splits[name] = _split(name, x, np.argmax(x @ normal.T, axis=1))
  config = _probe_config(kind="linear", max_epochs=150, patience=50)
  outcome = protocol.run_task(info, splits, config, jax.random.key(1),
                              embedding_path="e")
  doc = outcome.doc
  assert doc["probe_kind"] == "linear"
  assert doc["hparams"]["hidden_layers"] == 0
  assert [f.hparams.lr for f in outcome.grid] == list(
      grid.LINEAR_LEARNING_RATES)
  assert outcome.fits["test"].params["hidden"] == ()
  assert doc["test"]["test_top1_acc"] >= 0.97


def test_default_probe_document_has_only_hear_keys():
  info = _scene_task(("train", "valid", "test"))
  splits = {s: _split(s, *_noisy_clusters(i, 30, 0.0))
            for i, s in enumerate(("train", "valid", "test"))}
  config = _probe_config(grid="faster", grid_points=1, max_epochs=3)
  doc = protocol.run_task(info, splits, config, jax.random.key(0),
                          embedding_path="e").doc
  assert list(doc) == ["test", "hparams", "postprocessing", "score_mode",
                       "embedding_path"]


# --- seeds --------------------------------------------------------------------


def _fold_task():
  folds = ("fold00", "fold01", "fold02")
  return _scene_task(folds), {
      f: _split(f, *_noisy_clusters(10 + i, 36, 0.2))
      for i, f in enumerate(folds)}


def _without_times(doc):
  if isinstance(doc, dict):
    return {k: _without_times(v) for k, v in doc.items() if "time_in_min"
            not in k}
  if isinstance(doc, list):
    return [_without_times(v) for v in doc]
  return doc


def test_seeds_report_a_student_t_interval_over_fold_means():
  info, splits = _fold_task()
  config = _probe_config(kind="linear", max_epochs=6, seeds=3)
  one_seed = _probe_config(kind="linear", max_epochs=6)
  key = jax.random.key(3)
  calls = []
  doc = protocol.run_task(info, splits, config, key, embedding_path="e",
                          on_progress=calls.append).doc
  assert sum(calls) == protocol.planned_member_epochs(info, config)
  singles = [protocol.run_task(info, splits, one_seed,
                               protocol.seed_key(key, s),
                               embedding_path="e").doc for s in range(3)]
  seeds = doc["seed_scores"]
  assert seeds["n_seeds"] == 3 and seeds["confidence"] == 0.95
  per_seed = [s["aggregated_scores"]["test_score_mean"] for s in singles]
  assert [v["test_score"] for v in seeds["per_seed"]] == per_seed
  losses = [s["aggregated_scores"]["test_loss_mean"] for s in singles]
  assert len(set(losses)) == 3  # the seeds' keys differ
  half = scipy.stats.t.ppf(0.975, 2) * np.std(per_seed, ddof=1) / np.sqrt(3)
  assert scipy.stats.t.ppf(0.975, 2) == pytest.approx(4.302652729911275)
  assert seeds["test_score_mean"] == pytest.approx(np.mean(per_seed))
  assert seeds["test_score_std"] == pytest.approx(np.std(per_seed, ddof=1))
  assert seeds["test_score_ci95"] == pytest.approx(half)
  low, high = scipy.stats.t.interval(0.95, 2, loc=np.mean(per_seed),
                                     scale=scipy.stats.sem(per_seed))
  assert (high - low) / 2 == pytest.approx(seeds["test_score_ci95"])
  # HEAR's keys hold the seed means; seed 0 is the one-seed run.
  for fold in info.splits:
    assert doc[fold]["test_score"] == pytest.approx(
        np.mean([s[fold]["test_score"] for s in singles]))
  assert doc["aggregated_scores"]["test_score_mean"] == pytest.approx(
      np.mean(per_seed))
  assert doc["hparams"] == singles[0]["hparams"]
  assert seeds["hparams"] == [s["hparams"] for s in singles]
  assert results.reported_score(doc) == (seeds["test_score_mean"],
                                         seeds["test_score_std"])
  assert results.reported_interval(doc) == seeds["test_score_ci95"]
  assert results.reported_interval(singles[0]) is None
  again = protocol.run_task(info, splits, config, key, embedding_path="e").doc
  assert _without_times(again) == _without_times(doc)


def test_leaderboard_shows_the_interval_only_for_seeded_rows(tmp_path):
  rows = [leaderboard.LeaderboardRow("m", "t", "top1_acc", 0.62, 0.01,
                                     0.0248),
          leaderboard.LeaderboardRow("m", "u", "top1_acc", 0.5, None)]
  md = leaderboard.write_leaderboard(rows, str(tmp_path))
  with open(tmp_path / "leaderboard.csv") as f:
    table = list(csv.reader(f))
  assert table[0][-1] == "score_ci95"
  assert table[1][-1] == "0.024800" and table[2][-1] == ""
  assert "0.6200 ± 0.0248 (95% CI)" in md
  assert leaderboard.to_csv(rows[1:]).splitlines()[0] == (
      "model,task,metric,score,score_std")


# --- config -------------------------------------------------------------------


@pytest.mark.parametrize("fields, message", [
    ({"kind": "mlp"}, "config.probe.kind: 'mlp' is not one of"),
    ({"seeds": 0}, "config.probe.seeds: must be >= 1, got 0"),
    ({"kind": "knn", "seeds": 3}, "config.probe.seeds: kind 'knn' is"
                                  " deterministic"),
    ({"kind": "linear", "max_epochs": 2}, "config.probe: HParams.max_epochs"),
])
def test_config_refuses_bad_probe_kinds_and_seeds(fields, message):
  config = default_config()
  config.tasks = ["demo/pitch/tiny"]
  for name, value in fields.items():
    config.probe[name] = value
  with pytest.raises(ValueError) as e:
    check_config(config)
  assert message in str(e.value) and "\n" not in str(e.value)


def test_linear_grid_keeps_its_layers():
  with pytest.raises(ValueError, match="hidden_layers cannot be overridden"):
    grid.linear_grid(hidden_layers=1)


# --- end to end ---------------------------------------------------------------


def _main(*args):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, "-m", "hear_jax.main", *args],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("kinds_tfds"))


@pytest.mark.parametrize("flags", [["--config.probe.kind=knn"],
                                   ["--config.probe.kind=linear",
                                    "--config.probe.seeds=2"]])
def test_tiny_demo_runs_with_other_probes(tmp_path, data_dir, flags):
  proc = _main("--config=configs/demo.py:tiny", "--config.model=naive",
               f"--config.data_dir={data_dir}", f"--workdir={tmp_path}",
               *flags)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "leaderboard.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3
  kind = flags[0].split("=")[1]
  for r in rows:
    doc = json.load(open(tmp_path / "naive" / r["task"]
                         / "test.predicted-scores.json"))
    assert doc["probe_kind"] == kind
    assert results.reported_score(doc)[0] == pytest.approx(float(r["score"]),
                                                           abs=1e-6)
    if kind == "linear":
      assert doc["seed_scores"]["n_seeds"] == 2
      # NaN when a seed's score is NaN (skipped, as HEAR's fold means do).
      assert r["score_std"] == leaderboard.format_number(
          doc["seed_scores"]["test_score_std"])
    else:
      assert "k" in doc["hparams"] and r["score_std"] == ""
  assert (tmp_path / "report.html").exists()
  assert "report.html not written" not in proc.stderr
