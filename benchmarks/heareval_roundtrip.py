"""hear_jax and hear-eval-kit on the same embeddings, in both directions.

  benchmarks/make_heareval_venv.sh /work/heareval-venv      # once, ~2 min
  .venv/bin/python benchmarks/heareval_roundtrip.py \
      --heareval_venv=/work/heareval-venv [--grid=default --grid_points=8]

Two tasks: the spoken_digit fixture (real hearpreprocess output: scene,
5 folds, 44.1 kHz) and a generated event task (train/valid/test, 44.1 kHz,
tone and noise events). For each:

1. hear_jax -> heareval: `python -m hear_jax.main --config=configs/hear.py:
   <task> --config.export_heareval=True` embeds with melstats, scores, and
   writes <workdir>/heareval/melstats/<task dir>/; then
   `heareval.predictions.runner` scores that directory, unchanged.
2. heareval -> hear_jax: `heareval.embeddings.runner` embeds the task with
   hearbaseline.naive (through the librosa shim the venv script installs);
   `python -m hear_jax.main --config=configs/hear.py:<embeddings dir>` and
   `heareval.predictions.runner` both score those embeddings.

Prints one row per (embeddings, scorer) with the primary score (k-fold: mean
± std over folds). The two scorers share embeddings and protocol but not
their random numbers or framework, so scores agree within the spread of the
folds, not digit for digit. Exits non-zero if any step fails.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = pathlib.Path(
    "/work/shared/fixtures/hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz")
RATE = 44100  # hearbaseline.naive's rate: the runner feeds audio as stored


def make_event_task(root: pathlib.Path) -> pathlib.Path:
  """A small DCASE-like event task: 3 s clips with 1 kHz beeps and noise
  hisses at seeded times, 12/4/4 clips, labels "beep" and "hiss"."""
  name = "toy_events-0.1-full"
  task = root / name
  rng = np.random.default_rng(0)
  splits = {"train": 12, "valid": 4, "test": 4}
  meta = {"task_name": "toy_events", "version": "0.1", "mode": "full",
          "embedding_type": "event", "prediction_type": "multilabel",
          "split_mode": "trainvaltest", "sample_duration": 3.0,
          "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
          "default_mode": "full", "splits": list(splits)}
  task.mkdir(parents=True)
  (task / "task_metadata.json").write_text(json.dumps(meta, indent=1))
  (task / "labelvocabulary.csv").write_text("idx,label\n0,beep\n1,hiss\n")
  t = np.arange(int(3.0 * RATE)) / RATE
  for split, count in splits.items():
    entries = {}
    (task / str(RATE) / split).mkdir(parents=True)
    for i in range(count):
      audio = 0.01 * rng.standard_normal(len(t))
      events = []
      for label in ("beep", "hiss"):
        start = float(rng.uniform(0.1, 2.0))
        end = start + float(rng.uniform(0.3, 0.8))
        on = (t >= start) & (t < end)
        audio[on] += (0.5 * np.sin(2 * np.pi * 1000 * t[on]) if label == "beep"
                      else 0.3 * rng.standard_normal(on.sum()))
        events.append({"label": label, "start": round(start * 1000, 3),
                       "end": round(end * 1000, 3)})
      wav = f"{split}_{i:02d}.wav"
      sf.write(task / str(RATE) / split / wav, np.clip(audio, -1, 1), RATE,
               subtype="PCM_16")
      entries[wav] = events
    (task / f"{split}.json").write_text(json.dumps(entries, indent=1))
  return task


def run(cmd: list[str], cwd: pathlib.Path, env: dict[str, str] | None = None,
        log: pathlib.Path | None = None) -> float:
  """Runs a command; its output goes to `log`. Returns seconds taken."""
  start = time.perf_counter()
  with open(log or os.devnull, "w") as out:
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})},
                          stdout=out, stderr=subprocess.STDOUT)
  if proc.returncode:
    tail = log.read_text()[-3000:] if log else ""
    sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
  return time.perf_counter() - start


def score(doc_path: pathlib.Path) -> str:
  doc = json.loads(doc_path.read_text())
  if "aggregated_scores" in doc:
    agg = doc["aggregated_scores"]
    return f"{agg['test_score_mean']:.4f} ± {agg['test_score_std']:.4f}"
  return f"{doc['test']['test_score']:.4f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--heareval_venv", default="/work/heareval-venv")
  parser.add_argument("--workdir", default="/tmp/heareval_roundtrip")
  parser.add_argument("--grid", default="faster")
  parser.add_argument("--grid_points", type=int, default=1)
  args = parser.parse_args()
  venv = pathlib.Path(args.heareval_venv)
  kit_python = venv / "bin" / "python"
  if not kit_python.exists():
    sys.exit(f"{kit_python}: not found; run benchmarks/make_heareval_venv.sh"
             f" {venv} first")
  work = pathlib.Path(args.workdir)
  shutil.rmtree(work, ignore_errors=True)
  tasks_dir = work / "tasks"
  tasks_dir.mkdir(parents=True)
  with tarfile.open(FIXTURE) as tar:  # hear-2021.0.6/tasks/<task dir>/...
    tar.extractall(work / "fixture", filter="data")
  fixture_task = next((work / "fixture").glob("*/tasks/*"))
  fixture_task.rename(tasks_dir / fixture_task.name)
  make_event_task(tasks_dir)

  hear_jax = [sys.executable, "-m", "hear_jax.main"]
  # --config.* overrides must follow --config.
  probe = [f"--config.probe.grid={args.grid}",
           f"--config.probe.grid_points={args.grid_points}"]
  # The TF stub only for the embeddings runner (it imports TF); with it on
  # the path tensorboard, which Lightning imports, takes the stub for TF.
  embed_env = {"PYTHONPATH": str(venv / "tfstub")}
  kit_env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
  predict = [str(kit_python), "-m", "heareval.predictions.runner",
             "--grid", args.grid, "--grid-points", str(args.grid_points)]
  rows = []
  # heareval -> hear_jax: the kit embeds every task with the naive baseline.
  seconds = run([str(kit_python), "-m", "heareval.embeddings.runner",
                 "naive_librosa_shim", "--tasks-dir", str(tasks_dir),
                 "--embeddings-dir", str(work / "embeddings")], work, embed_env,
                work / "heareval_embed.log")
  print(f"heareval.embeddings.runner (naive, both tasks): {seconds:.1f} s")
  for task in sorted(tasks_dir.iterdir()):
    name = json.loads((task / "task_metadata.json").read_text())["task_name"]
    # hear_jax -> heareval.
    w = work / f"hear_jax_{name}"
    seconds = run([*hear_jax, f"--config=configs/hear.py:{task}", *probe,
                   f"--workdir={w}", "--config.export_heareval=True"], REPO,
                  log=work / f"hear_jax_{name}.log")
    rows.append((name, "hear_jax melstats", "hear_jax", score(
        w / "melstats" / name / "test.predicted-scores.json"), seconds))
    exported = w / "heareval" / "melstats" / task.name
    seconds = run([*predict, str(exported)], work, kit_env,
                  work / f"heareval_predict_melstats_{name}.log")
    rows.append((name, "hear_jax melstats", "heareval",
                 score(exported / "test.predicted-scores.json"), seconds))
    # heareval -> hear_jax, on a copy the kit's runner never wrote into.
    kit_dir = work / "embeddings" / "naive_librosa_shim" / task.name
    copy = work / "kit_copy" / "naive_librosa_shim" / task.name
    shutil.copytree(kit_dir, copy)
    w = work / f"hear_jax_on_kit_{name}"
    seconds = run([*hear_jax, f"--config=configs/hear.py:{copy}", *probe,
                   f"--workdir={w}"], REPO, log=work / f"read_{name}.log")
    rows.append((name, "heareval naive", "hear_jax", score(
        w / "naive_librosa_shim" / name / "test.predicted-scores.json"),
                 seconds))
    seconds = run([*predict, str(kit_dir)], work, kit_env,
                  work / f"heareval_predict_naive_{name}.log")
    rows.append((name, "heareval naive", "heareval",
                 score(kit_dir / "test.predicted-scores.json"), seconds))

  print(f"grid {args.grid}, {args.grid_points} point(s); logs in {work}")
  print("| task | embeddings | scored by | primary score | seconds |")
  print("|---|---|---|---|---|")
  for task, emb, scorer, value, seconds in rows:
    print(f"| {task} | {emb} | {scorer} | {value} | {seconds:.1f} |")


if __name__ == "__main__":
  main()
