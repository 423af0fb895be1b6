"""The real entry point, end to end, on the tiny demo tasks."""

import csv
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, cwd=REPO):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run([sys.executable, "-m", "hear_jax.main", *args],
                        cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=900)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("demo_tiny"))
  proc = _main("--config=configs/demo.py:tiny", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def _leaderboard(workdir):
  with open(os.path.join(workdir, "leaderboard.csv")) as f:
    return list(csv.DictReader(f))


def test_tiny_demo_writes_leaderboard_and_hear_json(tiny_run):
  workdir, proc = tiny_run
  rows = _leaderboard(workdir)
  assert [r["model"] for r in rows] == ["melstats", "naive"] * 3
  metrics = {r["task"]: r["metric"] for r in rows}
  assert sorted(metrics.values()) == ["event_onset_200ms_fms", "pitch_acc",
                                      "top1_acc"]
  for r in rows:
    assert r["score_std"] == ""  # one test split per task
    doc = json.load(open(os.path.join(
        workdir, r["model"], r["task"], "test.predicted-scores.json")))
    assert doc["test"]["test_score"] == pytest.approx(float(r["score"]),
                                                      abs=1e-6)
    assert doc["score_mode"] == "max"
    assert f"test_{r['metric']}" in doc["test"]
  assert "| model | task | metric | score |" in proc.stdout


def test_rerun_reuses_cache_and_gives_identical_scores(tiny_run):
  workdir, _ = tiny_run
  before = open(os.path.join(workdir, "leaderboard.csv")).read()
  stamps = {p: os.stat(p).st_mtime_ns for p in _embedding_files(workdir)}
  proc = _main("--config=configs/demo.py:tiny", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert open(os.path.join(workdir, "leaderboard.csv")).read() == before
  assert {p: os.stat(p).st_mtime_ns for p in _embedding_files(workdir)} == (
      stamps)


def _embedding_files(workdir):
  out = []
  for root, _, files in os.walk(workdir):
    out += [os.path.join(root, f) for f in files if f.endswith(".npz")]
  assert out
  return sorted(out)


@pytest.mark.parametrize("arg", ["", ":{tmp}/nope"])
def test_missing_hear_data_is_one_clear_line(tmp_path, arg):
  # Exactly the README's command: no data under data/hear2021/ in the repo.
  proc = _main("--config=configs/nsynth.py" + arg.format(tmp=tmp_path))
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  assert lines[0].startswith("hear_jax: error: task data not found")
  assert "nsynth_pitch-v2.2.3-5h" in lines[0] or "nope" in lines[0]
  assert "download" in lines[0]


def test_unknown_model_fails_before_work(tmp_path):
  proc = _main("--config=configs/demo.py:tiny", "--config.model=nosuchmodel",
               f"--workdir={tmp_path}")
  assert proc.returncode != 0
  assert "nosuchmodel" in proc.stderr and "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "tfds")


def test_refit_without_result_cache_gives_identical_scores(tiny_run):
  workdir, _ = tiny_run
  before = open(os.path.join(workdir, "leaderboard.csv")).read()
  docs = {}
  for root, _, files in os.walk(workdir):
    if "prediction-done.json" in files:
      os.remove(os.path.join(root, "prediction-done.json"))
      docs[root] = json.load(open(os.path.join(
          root, "test.predicted-scores.json")))
  assert len(docs) == 6
  proc = _main("--config=configs/demo.py:tiny", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert open(os.path.join(workdir, "leaderboard.csv")).read() == before
  for root, doc in docs.items():
    again = json.load(open(os.path.join(root, "test.predicted-scores.json")))
    for key in ("test_score", "test_loss", "validation_score", "epoch"):
      assert again["test"][key] == doc["test"][key], (root, key)
