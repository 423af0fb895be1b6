"""Progress bars, stage lines, peak memory, the probe's progress callback,
and a real run's log when its output goes to a file."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from hear_jax import progress
from hear_jax.data.task import TaskInfo
from hear_jax.embed import SplitEmbeddings
from hear_jax.probe import protocol
from hear_jax.probe import trainer
from hear_jax.probe.grid import HParams

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeClock:

  def __init__(self):
    self.now = 0.0

  def __call__(self) -> float:
    return self.now


class TtyStream(io.StringIO):

  def isatty(self) -> bool:
    return True


def test_line_mode_is_quiet_then_one_full_line_per_interval():
  clock, out = FakeClock(), io.StringIO()
  bar = progress.Progress("embed m / t / train", 100.0, "s audio",
                          stream=out, line_every_s=30.0, clock=clock)
  for _ in range(10):  # 10 s of audio per second of wall time, 10 s long
    clock.now += 1.0
    bar.update(10.0)
  bar.close()
  assert out.getvalue() == ""  # a stage shorter than the interval is silent

  out = io.StringIO()
  bar = progress.Progress("embed m / t / train", 1000.0, "s audio",
                          stream=out, line_every_s=30.0, clock=clock)
  for _ in range(70):
    clock.now += 1.0
    bar.update(10.0)
  bar.close()
  lines = out.getvalue().splitlines()
  assert len(lines) == 2  # at 30 s and 60 s
  assert "\r" not in out.getvalue()
  # After 30 s: 300 of 1000 s at 10 s/s -> 70 s left.
  assert lines[0] == ("embed m / t / train: 300/1000 s audio (30%), "
                      "10.0 s audio/s, ETA 1:10")


def test_terminal_mode_redraws_in_place_and_erases_itself():
  clock, out = FakeClock(), TtyStream()
  with progress.Progress("probe m / t", 50, "member-epochs", stream=out,
                         clock=clock) as bar:
    for _ in range(5):
      clock.now += 0.5
      bar.update(5)
  text = out.getvalue()
  assert text.count("\r") >= 5 and "\n" not in text
  assert "probe m / t: [##########..........] 25/50 member-epochs (50%)" in (
      text)
  assert "ETA 0:02" in text  # 25 left at 10/s
  assert text.endswith("\r") and text.split("\r")[-2].strip() == ""


def test_progress_never_counts_past_total_and_total_can_grow():
  bar = progress.Progress("x", 10, "items", stream=io.StringIO())
  bar.update(25)
  assert bar.done == 10
  bar.add_total(5)
  bar.update(1)
  assert (bar.done, bar.total) == (11, 15)
  with pytest.raises(ValueError, match="total"):
    progress.Progress("x", -1, "items")


@pytest.mark.parametrize("seconds,text", [
    (0, "0:00"), (59.4, "0:59"), (61, "1:01"), (3723, "1:02:03"),
    (float("nan"), "?"), (float("inf"), "?")])
def test_format_duration(seconds, text):
  assert progress.format_duration(seconds) == text


def test_stage_lines_and_task_summary():
  out = io.StringIO()
  times = progress.RunTimes(stream=out)
  with times.stage("data", "demo/pitch/tiny") as stage:
    stage.task, stage.detail = "demo_pitch", "144 examples in 3 splits"
  with times.stage("embed", "demo_pitch", "melstats") as stage:
    stage.detail = "144 clips"
  with pytest.raises(RuntimeError):
    with times.stage("probe", "demo_pitch", "melstats"):
      raise RuntimeError("boom")  # a failed stage prints no "done" line
  with times.stage("report", "runs/x", track=False):
    pass
  times.print_summary()
  lines = out.getvalue().splitlines()
  assert len(lines) == 4
  assert lines[0].startswith("hear_jax: data   demo_pitch: 144 examples in 3"
                             " splits (")
  assert lines[1].startswith("hear_jax: embed  melstats / demo_pitch: 144 "
                             "clips (")
  assert lines[2].startswith("hear_jax: report runs/x: (")
  summary = lines[3]
  assert summary.startswith("hear_jax: summary demo_pitch: data ")
  assert "| melstats embed " in summary and "probe" not in summary
  assert summary.split("peak memory ")[1].endswith(("MB", "GB"))


def test_peak_memory_reset_gives_each_stage_its_own_peak():
  if not progress.reset_peak_memory():
    pytest.skip("peak memory cannot be reset on this platform")
  big = np.ones(200 * 2**20 // 8)  # 200 MB, touched
  peak_with = progress.peak_memory_bytes()
  del big
  assert progress.reset_peak_memory()
  peak_after = progress.peak_memory_bytes()
  assert peak_with - peak_after > 150 * 2**20


def test_fit_probes_progress_adds_up_to_every_members_max_epochs():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 4)).astype(np.float32)
  y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 64)]
  base = dict(hidden_layers=1, hidden_dim=8, batch_size=32,
              check_val_every_n_epoch=3)
  # Members stop early (patience 1 on a noisy score), at max_epochs, and
  # with epochs after the last possible check (max_epochs 10, every 3).
  hparams = [HParams(lr=1e-2, max_epochs=10, patience=1, **base),
             HParams(lr=1e-3, max_epochs=9, patience=50, **base),
             HParams(lr=3e-3, max_epochs=30, patience=1, **base)]
  calls = []
  fits = trainer.fit_probes(
      x, y, x, y, hparams, multilabel=False,
      score_fn=lambda p: float(rng.random()), maximize=True,
      key=jax.random.key(0), on_check=calls.append)
  assert sum(calls) == 10 + 9 + 30
  assert len(calls) == max(len(f.history) for f in fits)
  assert all(c > 0 for c in calls)


def test_probe_progress_of_a_kfold_task_reaches_its_planned_total(
    monkeypatch):
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(2, 4)) * 4

  def fold(n):
    labels = rng.integers(0, 2, n)
    return SplitEmbeddings(
        ids=tuple(f"{i}.wav" for i in range(n)),
        x=(centres[labels] + rng.normal(size=(n, 4))).astype(np.float32),
        labels=tuple((str(l),) for l in labels), events=())

  info = TaskInfo("toy", {"embedding_type": "scene",
                          "prediction_type": "multiclass",
                          "splits": ["fold00", "fold01", "fold02"],
                          "evaluation": ["top1_acc"]}, ("0", "1"), 16000)
  splits = {s: fold(40) for s in info.splits}
  small = dict(hidden_layers=1, hidden_dim=8, batch_size=16,
               check_val_every_n_epoch=3, patience=50)
  # The point that wins has the smaller max_epochs, so the later splits do
  # less work than planned at the grid's largest max_epochs.
  grid = [HParams(lr=1e-7, max_epochs=12, **small),
          HParams(lr=3e-2, max_epochs=6, **small)]
  monkeypatch.setattr(protocol, "task_grid", lambda info, config: grid)
  config = ml_collections.ConfigDict({"shuffle_train": False})
  planned = protocol.planned_member_epochs(info, config)
  assert planned == 12 + 6 + 2 * 12
  calls = []
  outcome = protocol.run_task(info, splits, config, jax.random.key(0),
                              embedding_path="x", on_progress=calls.append)
  assert outcome.grid[outcome.selected].hparams.max_epochs == 6
  assert sum(calls) == planned


def test_redirected_run_logs_one_line_per_stage_and_no_carriage_returns(
    tmp_path):
  # The tiny demo cut to one event task and one model, to keep it short.
  config = tmp_path / "one_task.py"
  config.write_text(
      "from hear_jax.config import default_config\n"
      "def get_config():\n"
      "  config = default_config()\n"
      "  config.model = 'naive'\n"
      "  config.tasks = ['demo/sound_events/tiny']\n"
      "  config.probe.grid_points = 1\n"
      "  config.probe.max_epochs = 6\n"
      "  return config\n")
  log = tmp_path / "run.log"
  with open(log, "w") as f:
    proc = subprocess.run(
        [sys.executable, "-m", "hear_jax.main", f"--config={config}",
         f"--workdir={tmp_path / 'run'}"],
        cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=600,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
  text = log.read_text()
  assert proc.returncode == 0, text[-3000:]
  assert "\r" not in text
  lines = [l for l in text.splitlines() if l.startswith("hear_jax: ")]
  stages = [l.split()[1] for l in lines]
  assert stages == ["data", "embed", "probe", "report", "summary"], lines
  assert "naive / demo_sound_events: " in lines[1]
  assert "s audio" in lines[1] and "x real time" in lines[1]
  assert "event_onset_200ms_fms" in lines[2]
  assert lines[4].startswith("hear_jax: summary demo_sound_events: data ")
  assert "peak memory" in lines[4]
  # What compiling cost, per stage, in the summary and compute.json.
  assert "compiles" in lines[4]
  compute = json.loads((tmp_path / "run" / "naive" / "demo_sound_events"
                        / "compute.json").read_text())
  assert compute["probe_compiles"] + compute["probe_compile_cache_hits"] > 0
  assert compute["probe_compile_seconds"] > 0
