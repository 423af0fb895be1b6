"""`configs/hear.py:<path>`: the real spoken_digit tarball end to end, tasks
the project has never seen (every split mode, scene and event, 16 and 44.1
kHz), and hear-eval-kit embeddings directories."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from hear_jax import run
from hear_jax.data import heareval_layout

sys.path.insert(0, os.path.dirname(__file__))
# pylint: disable-next=g-import-not-at-top,wrong-import-position
from test_hear2021_catalogue import tar_task, write_task

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE_ARG = ("../shared/fixtures/"
               "hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz")
needs_fixture = pytest.mark.skipif(not (REPO / FIXTURE_ARG).exists(),
                                   reason="spoken_digit fixture not present")
FAST = ("--config.probe.grid=faster", "--config.probe.grid_points=1")


def hear_config(path: str):
  """configs/hear.py's get_config, with the fast probe the CLI test uses."""
  spec = importlib.util.spec_from_file_location("hear_config",
                                                REPO / "configs" / "hear.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(path)
  config.probe.grid = "faster"
  config.probe.grid_points = 1
  return config


def leaderboard(workdir):
  with open(os.path.join(workdir, "leaderboard.csv")) as f:
    return list(csv.DictReader(f))


# --- the real fixture, through the command line -------------------------------


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("spoken_digit")
  proc = subprocess.run(
      [sys.executable, "-m", "hear_jax.main",
       f"--config=configs/hear.py:{FIXTURE_ARG}", f"--workdir={workdir}",
       *FAST, "--config.export_heareval=True"],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONUNBUFFERED="1"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


@needs_fixture
def test_fixture_gives_a_five_fold_result(fixture_run):
  workdir, proc = fixture_run
  (row,) = leaderboard(workdir)
  assert (row["model"], row["task"], row["metric"]) == (
      "melstats", "spoken_digit", "top1_acc")
  doc = json.loads((workdir / "melstats" / "spoken_digit" /
                    "test.predicted-scores.json").read_text())
  folds = [k for k in doc if k.startswith("fold")]
  assert folds == [f"fold{i:02d}" for i in range(5)]
  scores = [doc[f]["test_top1_acc"] for f in folds]
  assert all(0.0 <= s <= 1.0 for s in scores)
  agg = doc["aggregated_scores"]
  assert agg["test_top1_acc_mean"] == pytest.approx(sum(scores) / 5)
  # The leaderboard CSV rounds to 6 decimals.
  assert float(row["score"]) == pytest.approx(agg["test_score_mean"], abs=1e-6)
  assert float(row["score_std"]) == pytest.approx(agg["test_score_std"],
                                                  abs=1e-6)
  assert "±" in proc.stdout


@needs_fixture
def test_exported_embeddings_score_again_as_a_heareval_directory(
    fixture_run, tmp_path):
  workdir, _ = fixture_run
  exported = workdir / "heareval" / "melstats" / "spoken_digit-1.0.9-small"
  assert (exported / "fold00.embeddings.npy").is_file()
  config = hear_config(str(exported))
  assert config.tasks == [f"heareval:{exported}"]
  run.evaluate(config, str(tmp_path))
  (row,) = leaderboard(tmp_path)
  # The model column is the embeddings directory's parent.
  assert (row["model"], row["task"]) == ("melstats", "spoken_digit")
  doc = json.loads((tmp_path / "melstats" / "spoken_digit" /
                    "test.predicted-scores.json").read_text())
  assert len([k for k in doc if k.startswith("fold")]) == 5
  assert doc["embedding_path"] == str(exported)
  assert 0.0 <= float(row["score"]) <= 1.0


# --- tasks the project has never seen -----------------------------------------


def _metadata(name, embedding_type, prediction_type, split_mode, splits,
              duration, evaluation):
  meta = {"task_name": name, "version": "0.1", "mode": "full",
          "embedding_type": embedding_type, "prediction_type": prediction_type,
          "split_mode": split_mode, "sample_duration": duration,
          "evaluation": evaluation, "default_mode": "full",
          "splits": list(splits)}
  if split_mode != "trainvaltest":
    meta["nfolds"] = len(splits)
  return meta


def scene_task(root, name, split_mode, rate, labels=("bark", "meow"),
               multilabel=False):
  folds = (["train", "valid", "test"] if split_mode == "trainvaltest"
           else [f"fold{i:02d}" for i in range(3)])
  duration = None if multilabel else 0.5
  splits, k = {}, 0
  for split in folds:
    splits[split] = {}
    for i in range(4):
      if multilabel:
        value = [[], [labels[0]], list(labels)][k % 3]
        seconds = 0.3 + 0.1 * (k % 4)  # variable length, like FSD50K
      else:
        value = [labels[i % len(labels)]]
        seconds = duration
      splits[split][f"{name}_{k:03d}.wav"] = (value, int(seconds * rate))
      k += 1
  meta = _metadata(name, "scene",
                   "multilabel" if multilabel else "multiclass", split_mode,
                   folds, duration,
                   ["mAP", "top1_acc"] if multilabel else ["top1_acc", "mAP"])
  return write_task(root, f"{name}-0.1-full", meta,
                    sorted(map(str, labels)), splits, rate=rate)


def event_task(root, name, rate):
  splits, k = {}, 0
  for split in ("train", "valid", "test"):
    splits[split] = {}
    for _ in range(2):
      events = [{"label": "door", "start": 100.0, "end": 400.0},
                {"label": "knock", "start": 300.0, "end": 800.0 + 10 * k}]
      splits[split][f"{name}_{k}.wav"] = (events, rate)  # 1 s clips
      k += 1
  meta = _metadata(name, "event", "multilabel", "trainvaltest",
                   ("train", "valid", "test"), 1.0,
                   ["event_onset_200ms_fms", "segment_1s_er"])
  return write_task(root, f"{name}-0.1-full", meta, ["door", "knock"], splits,
                    rate=rate)


UNSEEN = [
    # (maker, expected folds, primary metric, as tarball)
    (lambda r: scene_task(r, "kfold16", "new_split_kfold", 16000), 3,
     "top1_acc", False),
    (lambda r: scene_task(r, "kfold44", "presplit_kfold", 44100,
                          labels=(3, 7)), 3, "top1_acc", True),
    (lambda r: scene_task(r, "tvt16", "trainvaltest", 16000, labels=(1, 2)),
     1, "top1_acc", True),
    (lambda r: scene_task(r, "tvt44", "trainvaltest", 44100), 1, "top1_acc",
     False),
    (lambda r: scene_task(r, "fsdlike", "trainvaltest", 16000,
                          labels=("a", "b", "c"), multilabel=True), 1, "mAP",
     True),
    (lambda r: event_task(r, "event16", 16000), 1, "event_onset_200ms_fms",
     False),
    (lambda r: event_task(r, "event44", 44100), 1, "event_onset_200ms_fms",
     True),
]


@pytest.mark.parametrize("make, folds, metric, tarball", UNSEEN,
                         ids=["scene-kfold-16k", "scene-presplit-44k-int",
                              "scene-tvt-16k-int", "scene-tvt-44k",
                              "multilabel-varlen", "event-tvt-16k",
                              "event-tvt-44k"])
def test_unseen_hearpreprocess_tasks_run_unchanged(tmp_path, make, folds,
                                                   metric, tarball):
  task_dir = make(tmp_path / "src")
  path = (tar_task(task_dir, tmp_path / f"{task_dir.name}.tar.gz") if tarball
          else task_dir)
  config = hear_config(str(path))
  assert config.tasks == [f"hearpreprocess:{path}"]
  table = run.evaluate(config, str(tmp_path / "w"))
  (row,) = leaderboard(tmp_path / "w")
  name = task_dir.name.split("-")[0]
  assert (row["model"], row["task"], row["metric"]) == ("melstats", name,
                                                        metric)
  doc = json.loads((tmp_path / "w" / "melstats" / name /
                    "test.predicted-scores.json").read_text())
  tests = [k for k, v in doc.items()
           if isinstance(v, dict) and "test_score" in v]
  assert len(tests) == folds
  assert ("aggregated_scores" in doc) == (folds > 1)
  assert (row["score_std"] != "") == (folds > 1)
  assert f"test_{metric}" in doc[tests[0]]
  assert name in table


def test_event_task_exports_in_heareval_layout_and_reads_back(tmp_path):
  task_dir = event_task(tmp_path / "src", "evx", 16000)
  config = hear_config(str(task_dir))
  config.export_heareval = True
  run.evaluate(config, str(tmp_path / "w"))
  exported = tmp_path / "w" / "heareval" / "melstats" / "evx-0.1-full"
  info, splits = heareval_layout.read_embeddings(exported)
  assert info.embedding_type == "event"
  original = json.loads((task_dir / "test.json").read_text())
  assert {i: list(e) for i, e in zip(splits["test"].ids,
                                     splits["test"].events)} == original


# --- bad paths ----------------------------------------------------------------


def test_missing_paths_are_one_line_errors(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    run.evaluate(hear_config(str(tmp_path / "nope.tar.gz")), str(tmp_path))
  assert str(e.value).startswith("task data not found")
  assert "nope.tar.gz" in str(e.value) and "\n" not in str(e.value)
  config = hear_config(str(tmp_path))
  config.tasks = [f"heareval:{tmp_path}/gone"]
  with pytest.raises(FileNotFoundError, match="embeddings not found"):
    run.evaluate(config, str(tmp_path))
  with pytest.raises(ValueError, match="configs/hear.py needs a path"):
    hear_config("")
