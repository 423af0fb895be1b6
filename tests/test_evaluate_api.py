"""hear_jax.evaluate: the CLI's numbers from Python, and nothing on disk."""

import json
import os
import subprocess
import sys
import tempfile

import pytest

import hear_jax
from hear_jax.models import load_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ["demo/pitch/tiny", "demo/sound_events/tiny"]
PROBE = {"grid_points": 1, "max_epochs": 6}  # configs/demo.py:tiny's probe

CONFIG = f"""
from hear_jax.config import default_config

def get_config():
  config = default_config()
  config.model = "melstats"
  config.tasks = {TASKS!r}
  config.probe.grid_points = {PROBE["grid_points"]}
  config.probe.max_epochs = {PROBE["max_epochs"]}
  return config
"""


def _listing(path):
  return sorted(os.path.relpath(os.path.join(d, f), path)
                for d, dirs, files in os.walk(path) for f in files + dirs)


@pytest.fixture(scope="module")
def cli_docs(tmp_path_factory):
  root = tmp_path_factory.mktemp("cli")
  (root / "cfg.py").write_text(CONFIG)
  workdir = root / "work"
  proc = subprocess.run(
      [sys.executable, "-m", "hear_jax.main", f"--config={root / 'cfg.py'}",
       f"--workdir={workdir}"], cwd=REPO, capture_output=True, text=True,
      timeout=900, env=dict(os.environ, PYTHONUNBUFFERED="1"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  docs = {}
  for task in os.listdir(workdir / "melstats"):
    with open(workdir / "melstats" / task / "test.predicted-scores.json") as f:
      docs[task] = json.load(f)
  return docs


def test_evaluate_equals_cli_bitwise_and_writes_nothing(cli_docs, tmp_path,
                                                        monkeypatch):
  private_tmp = tmp_path / "tmp"
  private_tmp.mkdir()
  # Everything tempfile makes goes here, so other jobs' files in /tmp do
  # not blur the before/after listing.
  monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
  monkeypatch.setenv("TMPDIR", str(private_tmp))
  before = _listing(str(private_tmp))
  results = hear_jax.evaluate(load_model("melstats"), TASKS, probe=PROBE,
                              seed=0, keep_predictions=True)
  assert _listing(str(private_tmp)) == before == []
  assert sorted(r.task for r in results) == sorted(cli_docs)
  for r in results:
    cli = cli_docs[r.task]
    # Bitwise: every number of the test split's HEAR row.
    ours = {k: v for k, v in r.split_scores["test"].items()
            if k != "time_in_min"}
    theirs = {k: v for k, v in cli["test"].items() if k != "time_in_min"}
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs,
                                                          sort_keys=True)
    assert r.score == cli["test"]["test_score"]
    assert r.hparams == cli["hparams"]
    assert r.metrics[r.primary_metric] == cli["test"]["test_score"]
    assert r.predictions["test"].ndim == 2
    assert set(r.timings) == {"embed", "probe"}
  rows = results.to_rows()
  assert [row["task"] for row in rows] == [r.task for r in results]
  assert "| melstats | demo_pitch | pitch_acc |" in results.to_markdown()


def test_bad_input_is_one_line_naming_the_field():
  with pytest.raises(ValueError, match=r"^probe\.max_epoch: no such"):
    hear_jax.evaluate("melstats", ["demo/pitch/tiny"],
                      probe={"max_epoch": 3})
  with pytest.raises(ValueError, match=r"^tasks: no task given"):
    hear_jax.evaluate("melstats", [])
  with pytest.raises(ValueError, match=r"config\.probe\.kind"):
    hear_jax.evaluate("melstats", ["demo/pitch/tiny"], probe="lasso")


def test_a_loaded_task_gives_the_specs_numbers(tmp_path):
  from hear_jax.data import task_specs  # pylint: disable=g-import-not-at-top
  from hear_jax.data.task import load_task  # pylint: disable=g-import-not-at-top
  task = load_task(task_specs.prepare_task("demo/pitch/tiny",
                                           str(tmp_path / "tfds")))
  by_spec = hear_jax.evaluate("melstats", "demo/pitch/tiny", probe="ridge")
  loaded = hear_jax.evaluate("melstats", [task], probe="ridge")
  cached = hear_jax.evaluate("melstats", [task], probe="ridge",
                             workdir=str(tmp_path / "work"))
  assert loaded[0].metrics == by_spec[0].metrics == cached[0].metrics
  assert (tmp_path / "work" / "melstats" / "demo_pitch" / "embeddings"
          / "train.npz").exists()
  evaluator = hear_jax.Evaluator([task], probe="ridge")
  scalars = evaluator.run(load_model("melstats"))
  assert scalars["demo_pitch/pitch_acc"] == by_spec[0].score
