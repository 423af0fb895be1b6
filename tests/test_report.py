"""Results JSON and leaderboard files, as hear-eval-kit and users read them."""

import csv
import json
import math

import numpy as np
import pytest

from hear_jax.report import leaderboard
from hear_jax.report import results


def _row(score, **extra):
  metrics = {"top1_acc": {"top1_acc": score}}
  metrics.update(extra)
  return results.split_scores("top1_acc", metrics, test_loss=1.5,
                              validation_score=0.5, epoch=12, time_in_min=0.1)


def test_split_scores_has_hear_fields_and_subscores():
  row = results.split_scores(
      "event_onset_200ms_fms",
      {"event_onset_200ms_fms": {"f_measure": 0.4, "precision": 0.5,
                                 "recall": 1 / 3},
       "segment_1s_er": {"error_rate": 0.7}},
      test_loss=0.2, validation_score=0.3, epoch=9, time_in_min=1.0)
  assert row["test_score"] == row["test_event_onset_200ms_fms"] == 0.4
  assert row["test_event_onset_200ms_fms_f_measure"] == 0.4
  assert row["test_segment_1s_er"] == 0.7
  assert row["test_event_onset_200ms_fms_precision"] == 0.5
  assert row["test_segment_1s_er_error_rate"] == 0.7
  assert set(row) >= {"test_loss", "validation_score", "epoch", "time_in_min"}


def test_kfold_aggregation_matches_pandas_semantics():
  rows = {f"fold0{i}": _row(s) for i, s in enumerate([0.5, 0.7, math.nan])}
  doc = results.predicted_scores(rows, hparams={"lr": 1e-3, "init": print},
                                 postprocessing=[], score_mode="max",
                                 embedding_path="x")
  agg = doc["aggregated_scores"]
  assert agg["test_score_mean"] == pytest.approx(0.6)  # NaN skipped
  assert agg["test_score_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
  assert isinstance(doc["hparams"]["init"], str)
  assert results.reported_score(doc) == (agg["test_score_mean"],
                                         agg["test_score_std"])


def test_single_split_reports_test_score_without_std(tmp_path):
  doc = results.predicted_scores({"test": _row(0.25)}, hparams={},
                                 postprocessing=[], score_mode="max",
                                 embedding_path="x")
  assert "aggregated_scores" not in doc
  assert results.reported_score(doc) == (0.25, None)
  path = tmp_path / "m" / "t" / "test.predicted-scores.json"
  results.write_json(str(path), doc)
  assert json.loads(path.read_text())["test"]["test_score"] == 0.25
  assert not list(path.parent.glob("*.tmp"))


def test_leaderboard_csv_columns_and_empty_std(tmp_path):
  rows = [leaderboard.LeaderboardRow("melstats", "pitch", "pitch_acc", 0.5,
                                     None),
          leaderboard.LeaderboardRow("naive", "digits", "top1_acc", 0.1,
                                     0.02)]
  md = leaderboard.write_leaderboard(rows, str(tmp_path))
  with open(tmp_path / "leaderboard.csv") as f:
    table = list(csv.reader(f))
  assert table[0] == ["model", "task", "metric", "score", "score_std"]
  assert table[1] == ["melstats", "pitch", "pitch_acc", "0.500000", ""]
  assert table[2][4] == "0.020000"
  assert "0.1000 ± 0.0200" in md
  assert (tmp_path / "leaderboard.md").read_text() == md


def test_markdown_explains_a_nan_score():
  rows = [leaderboard.LeaderboardRow("naive", "events",
                                     "event_onset_200ms_fms", math.nan, None),
          leaderboard.LeaderboardRow("melstats", "events",
                                     "event_onset_200ms_fms", 0.46, None)]
  text = leaderboard.to_markdown(rows)
  assert "| naive | events | event_onset_200ms_fms | nan |" in text
  assert leaderboard.NAN_NOTE in text
  assert leaderboard.NAN_NOTE not in leaderboard.to_markdown(rows[1:])
