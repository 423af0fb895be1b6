"""One evaluation on several meshes and processes: same leaderboard score.

  .venv/bin/python -m benchmarks.mesh_parity --out=/tmp/mesh          # parity
  .venv/bin/python -m benchmarks.mesh_parity --out=/tmp/mesh --memory # memory

Generates a 5-fold scene task in hearpreprocess's format (`--clips`, default
3001, a prime: no fold, batch or member count divides a device count by
accident): rendered instrument notes (the demo soundfont), labelled by
pitch class (12 classes), at 16 kHz. Then runs `python -m hear_jax.main
--config=configs/hear.py:<task>` with melstats and HEAR's default grid,
whole process, on

  1 device, 8 and 3 simulated devices (XLA's host platform device count),
  2 processes x 2 devices and 3 processes x 1 device (launch/local.sh),

each in its own workdir, and prints every run's leaderboard score (mean ±
std over the 5 folds), its difference from the one-device score, wall time
and peak RSS (largest process). Every run must agree with one device
within 1e-4 (`--tolerance`; the probe is built to agree exactly); the
script exits 1 if one does not.

`--memory` instead runs the probe with the faster grid and one point on 1,
2, 4 and 8 simulated devices and prints each run's peak RSS. Simulated CPU
devices share the host's memory, so what a mesh replicates per device shows
up there: each member's head and Adam moments live on one device (members
are split over the devices, never a batch), the validation outputs the host
reads and each member's row indices are replicated; the embeddings are
replicated too on accelerators (each device gathers its batches from its
own copy), but on CPU devices every device's copy is the same aligned host
buffer (`trainer.stack_rows`), so they are in memory once.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#",
                 "B")
RATE = 16000
FOLDS = 5


def make_task(root: pathlib.Path, clips: int, seed: int = 0) -> pathlib.Path:
  """A 5-fold pitch-class task of `clips` one-second notes (cached)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(REPO))
  from tasks.demo.sources import instruments, mixing  # pylint: disable=g-import-not-at-top

  task = root / f"mesh_pitch_class-{clips}"
  if (task / "task_metadata.json").exists():
    return task
  rng = np.random.default_rng(seed)
  folds = [f"fold{i:02d}" for i in range(FOLDS)]
  labels: dict[str, dict[str, list[str]]] = {f: {} for f in folds}
  for f in folds:
    (task / str(RATE) / f).mkdir(parents=True, exist_ok=True)
  for i in range(clips):
    pitch = int(rng.integers(36, 96))
    program = int(rng.choice(instruments.MELODIC_PROGRAMS))
    audio = instruments.render_note(
        program, pitch, velocity=int(rng.integers(30, 128)),
        hold_s=float(rng.uniform(0.2, 0.8)), total_s=1.0, sample_rate=RATE)
    audio = mixing.set_peak(audio, 10 ** (float(rng.uniform(-30, -3)) / 20))
    audio = audio + rng.normal(0, 0.01, audio.shape)  # a noise floor
    fold, name = folds[i % FOLDS], f"note{i:05d}.wav"
    labels[fold][name] = [PITCH_CLASSES[pitch % 12]]
    sf.write(task / str(RATE) / fold / name,
             np.clip(mixing.fit_length(audio, RATE), -1, 1), RATE,
             subtype="PCM_16")
  meta = {"task_name": task.name, "version": "1.0.0",
          "embedding_type": "scene", "prediction_type": "multiclass",
          "split_mode": "new_split_kfold", "nfolds": FOLDS, "splits": folds,
          "sample_duration": 1.0, "evaluation": ["top1_acc", "mAP"],
          "default_mode": "full", "mode": "full"}
  (task / "task_metadata.json").write_text(json.dumps(meta, indent=1))
  (task / "labelvocabulary.csv").write_text(
      "idx,label\n" + "".join(f"{i},{l}\n" for i, l in
                              enumerate(PITCH_CLASSES)))
  for fold, entries in labels.items():
    (task / f"{fold}.json").write_text(json.dumps(entries))
  return task


# Runs a command and writes the peak RSS (kB) of its largest descendant to
# argv[1]: RUSAGE_CHILDREN of a fresh process holds that run's alone.
_PEAK_RSS = ("import resource, subprocess, sys; "
             "status = subprocess.run(sys.argv[2:]).returncode; "
             "open(sys.argv[1], 'w').write(str(resource.getrusage("
             "resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(status)")


def run(name: str, cmd: list[str], env: dict[str, str], log: pathlib.Path
        ) -> tuple[float, float]:
  """(wall seconds, peak RSS in MB of its largest process)."""
  peak_file = log.with_suffix(".peak_kb")
  start = time.perf_counter()
  with open(log, "w") as out:
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(peak_file)]
                          + cmd, cwd=REPO, env=env, stdout=out,
                          stderr=subprocess.STDOUT)
  seconds = time.perf_counter() - start
  if proc.returncode:
    tail = log.read_text().splitlines()[-15:]
    raise SystemExit(f"{name} failed ({proc.returncode}), {log}:\n"
                     + "\n".join(tail))
  return seconds, int(peak_file.read_text()) / 1024


def leaderboard_score(workdir: pathlib.Path) -> tuple[float, float]:
  with open(workdir / "leaderboard.csv") as f:
    row = next(csv.DictReader(f))
  return float(row["score"]), float(row["score_std"] or "nan")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="task and workdirs here")
  parser.add_argument("--clips", type=int, default=3001)
  parser.add_argument("--tolerance", type=float, default=1e-4)
  parser.add_argument("--memory", action="store_true",
                      help="peak RSS on 1, 2, 4, 8 devices instead")
  parser.add_argument("--extra", default="",
                      help="more main flags, space separated (e.g. a "
                      "smaller grid for a smoke run)")
  args = parser.parse_args()
  out = pathlib.Path(args.out).resolve()
  out.mkdir(parents=True, exist_ok=True)
  task = make_task(out, args.clips)
  python = str(REPO / ".venv" / "bin" / "python")
  main_args = [f"--config=configs/hear.py:{task}", "--config.model=melstats"]
  main_args += args.extra.split()
  if args.memory:
    main_args += ["--config.probe.grid=faster", "--config.probe.grid_points=1"]
    runs = [(f"{d} devices", d, 0) for d in (1, 2, 4, 8)]
  else:
    runs = [("1 device", 1, 0), ("8 devices", 8, 0), ("3 devices", 3, 0),
            ("2 processes x 2 devices", 2, 2),
            ("3 processes x 1 device", 1, 3)]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  print(f"task: {task} ({args.clips} clips, 5 folds, 12 classes, melstats)"
        + (" -- peak memory" if args.memory else ""), flush=True)
  rows = []
  for name, devices, processes in runs:
    workdir = out / (("mem-" if args.memory else "") + name.replace(" ", "_"))
    if processes:
      cmd = ["bash", "launch/local.sh", "--processes", str(processes),
             "--devices-per-process", str(devices), "--python", python, "--"]
    else:
      cmd = [python, "-m", "hear_jax.main"]
    cmd += main_args + [f"--workdir={workdir}"]
    run_env = dict(env, XLA_FLAGS=(
        f"--xla_force_host_platform_device_count={devices}"
        if not processes else ""))
    seconds, peak = run(name, cmd, run_env, out / f"{workdir.name}.log")
    score, std = leaderboard_score(workdir)
    rows.append((name, score, std, seconds, peak))
    print(f"{name}: {score:.6f} ± {std:.4f}  {seconds:.0f} s  "
          f"peak {peak:.0f} MB", flush=True)
  base = rows[0][1]
  print("\n| run | top1_acc (mean ± std, 5 folds) | diff vs 1 device "
        "| wall s | peak RSS MB |")
  print("|---|---|---|---|---|")
  bad = []
  for name, score, std, seconds, peak in rows:
    diff = abs(score - base)
    if diff > args.tolerance:
      bad.append(name)
    print(f"| {name} | {score:.6f} ± {std:.4f} | {diff:.1e} | {seconds:.0f}"
          f" | {peak:.0f} |")
  if args.memory:
    print("\nReplicated on every device: each member's row indices, the "
          "validation outputs the host reads, and the embeddings (on CPU "
          "devices one shared host buffer). Each member's head, Adam moments "
          "and BatchNorm state live on one device only.")
  if bad and not args.memory:
    print(f"differs from 1 device by more than {args.tolerance}: "
          f"{', '.join(bad)}")
    sys.exit(1)


if __name__ == "__main__":
  main()
