"""Fault injection: SIGKILL an evaluation at random moments, restart it, and
require the uninterrupted run's results every time.

  .venv/bin/python -m benchmarks.fault_injection                # 10 trials
  .venv/bin/python -m benchmarks.fault_injection --trials=3 --seed=1 --keep

What runs: `configs/demo.py:tiny` (melstats and naive on the tiny tasks)
with its spoken-commands task at demo size, `demo/spoken_commands/demo`
(1,800 one-second clips; a tiny and a demo-sized variant of one task share a
task name, so one replaces the other), 24 probe epochs (8 validation checks
per fit) and a probe checkpoint at every check (`probe_checkpoint_seconds=0`),
so that kills land inside data builds, embeddings and fits of some length.
Not the full `configs/demo.py`: it takes 3-6 minutes a run on the 2-core
machine, so 10 trials and the reference would take about an hour.

1. A reference run, uninterrupted. Its output lines are timestamped as they
   arrive and give the stage windows: data build per task ("Generating
   dataset" ... "downloaded and prepared"), embedding per split (up to each
   "<model> / <task> / <split>: N rows"), probe per model x task (up to
   "<model> / <task>: <metric> = ...").
2. Each trial, in a fresh workdir: the stage is drawn round-robin over
   data / embed / probe (after a seeded shuffle), then one of that stage's
   windows and a uniform fraction of its reference duration. The run is
   started, and SIGKILLed that long after the window's opening line, scaled
   by how much faster or slower than the reference it reached that line
   (other jobs share the CPU). The line says which stage the kill hit and
   whether the restart resumed a probe from its checkpoint. The run is then
   restarted, without kills, until it exits 0.
3. Checks: leaderboard.csv byte for byte; every test.predicted-scores.json
   minus its timings and paths; every cached embedding array, bit for bit.

One line per trial, then "N passed, M failed"; exit status 1 on a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_SIZED_TASK = "demo/spoken_commands/demo"
STAGES = ("data", "embed", "probe")

_CONFIG = f'''"""configs/demo.py:tiny with {DEMO_SIZED_TASK} (fault injection)."""
import importlib.util

_SPEC = importlib.util.spec_from_file_location(
    "demo_config", {os.path.join(REPO, "configs", "demo.py")!r})
_DEMO = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_DEMO)


def get_config():
  config = _DEMO.get_config("tiny")
  config.tasks = [{DEMO_SIZED_TASK!r} if "spoken_commands" in t else t
                  for t in config.tasks]
  config.probe.max_epochs = 24
  config.probe_checkpoint_seconds = 0.0
  return config
'''

# Lines that open or close a stage window, as (kind, pattern).
_MARKERS = (
    ("data_start", re.compile(r"Generating dataset (\S+) \(")),
    ("data_end", re.compile(r"Dataset (\S+) downloaded and prepared")),
    ("embed_end", re.compile(r"\] (\S+) / (\S+) / (\S+): \d+ rows")),
    ("probe_end", re.compile(r"\] (\S+) / (\S+): \S+ = [-\d.naninf]+ \(")),
)
_STAGE_OF_END = {"data_end": "data", "embed_end": "embed",
                 "probe_end": "probe", "data_start": "other"}


def _marker(line: str) -> tuple[str, ...] | None:
  for kind, pattern in _MARKERS:
    match = pattern.search(line)
    if match:
      return (kind, *match.groups())
  return None


_RESUMED = re.compile(r"resuming after validation check (\d+)$")


@dataclasses.dataclass
class Run:
  """One process: its exit status and the markers it printed, timed."""

  returncode: int
  markers: list[tuple[float, tuple[str, ...]]]
  killed_at: float | None = None
  tail: str = ""
  resumed_checks: list[int] = dataclasses.field(default_factory=list)


def _run(config: str, workdir: str, *,
         kill_after: tuple[tuple[str, ...], float, float] | None = None,
         log_path: str | None = None) -> Run:
  """Runs the evaluation; with `kill_after=(marker, seconds, reference
  time of marker)`, SIGKILLs it `seconds` after it prints `marker`, scaled
  by its pace relative to the reference (or never, if it does not)."""
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  start = time.monotonic()
  proc = subprocess.Popen(
      [sys.executable, "-m", "hear_jax.main", f"--config={config}",
       f"--workdir={workdir}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, start_new_session=True)
  markers, lines, counts = [], [], {}
  seen = threading.Event()
  result = Run(0, markers)

  def killer():
    if seen.wait() and proc.poll() is None:
      pace = (time.monotonic() - start) / max(kill_after[2], 1e-3)
      time.sleep(kill_after[1] * min(max(pace, 0.5), 2.0))
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        result.killed_at = time.monotonic() - start

  thread = None
  if kill_after is not None:
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
  with open(log_path or os.devnull, "a") as log:
    for line in proc.stdout:
      log.write(line)
      lines.append(line)
      resumed = _RESUMED.search(line.rstrip())
      if resumed:
        result.resumed_checks.append(int(resumed[1]))
      marker = _marker(line)
      if marker is not None:
        # Numbered, so a line printed twice names two different moments.
        counts[marker] = counts.get(marker, 0) + 1
        marker = (*marker, counts[marker])
        markers.append((time.monotonic() - start, marker))
        if kill_after is not None and marker == kill_after[0]:
          seen.set()
  result.returncode = proc.wait()
  seen.set()  # the killer thread ends either way
  if thread is not None:
    thread.join()
  result.tail = "".join(lines[-15:])
  return result


@dataclasses.dataclass(frozen=True)
class Window:
  stage: str  # data | embed | probe
  opens: tuple[str, ...]  # the marker the window starts after
  closes: tuple[str, ...]
  start: float  # when it opened in the reference run
  seconds: float  # its duration there


def _windows(reference: Run) -> list[Window]:
  out = []
  for (t0, opens), (t1, closes) in zip(reference.markers,
                                       reference.markers[1:]):
    stage = _STAGE_OF_END[closes[0]]
    if stage in STAGES:
      out.append(Window(stage, opens, closes, t0, t1 - t0))
  return out


def _results(workdir: str) -> dict[str, object]:
  """What must not change: leaderboard, scores, embeddings."""
  out = {}
  with open(os.path.join(workdir, "leaderboard.csv"), "rb") as f:
    out["leaderboard.csv"] = f.read()
  for path in sorted(glob.glob(os.path.join(
      workdir, "*", "*", "test.predicted-scores.json"))):
    with open(path) as f:
      doc = json.load(f)
    for split in doc.values():
      if isinstance(split, dict):
        split.pop("time_in_min", None)
    doc.pop("embedding_path", None)
    out[os.path.relpath(path, workdir)] = doc
  for path in sorted(glob.glob(os.path.join(
      workdir, "*", "*", "embeddings", "*.npz"))):
    with np.load(path, allow_pickle=False) as f:
      out[os.path.relpath(path, workdir)] = {
          k: f[k].tobytes() for k in ("x", "file_index", "timestamps_ms")
          if k in f}
  return out


def _differences(got: dict, want: dict) -> list[str]:
  return [k for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]


def _stage_at(run: Run, reference_windows: list[Window]) -> str:
  """The stage the killed run was in: the window after its last marker."""
  last = run.markers[-1][1] if run.markers else None
  if last is None:
    return "startup"
  for w in reference_windows:
    if w.opens == last:
      return f"{w.stage} ({' / '.join(w.closes[1:-1])})"
  return f"after {' / '.join(last)}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trials", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--keep", action="store_true",
                      help="keep the workdirs and logs (printed)")
  args = parser.parse_args()

  root = tempfile.mkdtemp(prefix="hear_jax_fault_injection_")
  config = os.path.join(root, "fault_injection_config.py")
  with open(config, "w") as f:
    f.write(_CONFIG)
  print(f"workdirs and logs under {root}", flush=True)

  start = time.monotonic()
  reference_dir = os.path.join(root, "reference")
  reference = _run(config, reference_dir,
                   log_path=os.path.join(root, "reference.log"))
  if reference.returncode != 0:
    sys.exit(f"reference run failed ({reference.returncode}):\n"
             f"{reference.tail}")
  want = _results(reference_dir)
  windows = _windows(reference)
  totals = {s: sum(w.seconds for w in windows if w.stage == s)
            for s in STAGES}
  print(f"reference: {time.monotonic() - start:.0f} s; "
        + ", ".join(f"{s} {totals[s]:.1f} s in"
                    f" {sum(w.stage == s for w in windows)} windows"
                    for s in STAGES), flush=True)

  rng = random.Random(args.seed)
  order = list(STAGES)
  rng.shuffle(order)
  passed = failed = 0
  for trial in range(args.trials):
    stage = order[trial % len(order)]
    window = rng.choice([w for w in windows if w.stage == stage])
    delay = rng.uniform(0.0, window.seconds)
    workdir = os.path.join(root, f"trial{trial}")
    log = os.path.join(root, f"trial{trial}.log")
    t0 = time.monotonic()
    first = _run(config, workdir,
                 kill_after=(window.opens, delay, window.start), log_path=log)
    restarts, resumed = 0, []
    status = first.returncode
    while status != 0 and restarts < 3:
      restarts += 1
      again = _run(config, workdir, log_path=log)
      status, resumed = again.returncode, resumed + again.resumed_checks
    if first.killed_at is None:
      where = "not killed (finished first)"
    else:
      where = (f"killed at {first.killed_at:.1f} s in"
               f" {_stage_at(first, windows)}")
    ok = status == 0 and first.killed_at is not None
    problems = [] if status == 0 else [f"exit status {status}"]
    if status == 0:
      problems = _differences(_results(workdir), want)
      ok = ok and not problems
    passed += ok
    failed += not ok
    if resumed:
      where += (f"; the restart resumed a probe after validation check"
                f" {', '.join(map(str, resumed))}")
    print(f"trial {trial}: target {stage} {' / '.join(window.closes[1:-1])}"
          f" +{delay:.1f} s: {where}; {restarts} restart(s);"
          f" {time.monotonic() - t0:.0f} s;"
          f" {'PASS' if ok else 'FAIL ' + ', '.join(problems[:4])}",
          flush=True)
    if ok and not args.keep:
      shutil.rmtree(workdir, ignore_errors=True)
  print(f"{passed} passed, {failed} failed"
        f" ({time.monotonic() - start:.0f} s in all)")
  if not args.keep and not failed:
    shutil.rmtree(root, ignore_errors=True)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
