"""examples/train_and_evaluate.py --tiny runs end to end and logs scores."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tiny_run_logs_every_evaluation(tmp_path):
  logdir = tmp_path / "log"
  proc = subprocess.run(
      [sys.executable, "examples/train_and_evaluate.py", "--tiny",
       f"--logdir={logdir}"], cwd=REPO, capture_output=True, text=True,
      timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [json.loads(l) for l in (logdir / "scores.jsonl").read_text()
           .splitlines()]
  assert [l["step"] for l in lines] == [0, 3, 6]
  for line in lines:
    for key in ("demo_pitch/pitch_acc", "demo_spoken_commands/top1_acc",
                "demo_sound_events/event_onset_200ms_fms",
                "demo_pitch/layer_0/pitch_acc", "demo_pitch/best_layer"):
      assert key in line
  assert any(p.name.startswith("events.out.tfevents")
             for p in logdir.iterdir())
  assert "first -> last evaluation" in proc.stdout
