"""Peak host memory of the probe stage against the size of the embeddings.

  .venv/bin/python -m benchmarks.probe_memory                 # x1, x2, x4
  .venv/bin/python -m benchmarks.probe_memory --scales 1,8 --grid default

The task is the demo sound_events task embedded by `--model` (default
`naive`, 4096-d frames, 314 MB of float32 embeddings), read from
hear-eval-kit's layout as `benchmarks/probe_vs_heareval.py` writes it (built
there once if missing). Scale k repeats every split's clips k times (ids
`<clip>#<i>`, same frames and events), so the probe's data grows k-fold while
its heads stay the same. Each scale runs in its own process:

- `base`: resident set after importing jax and hear_jax and starting the
  backend;
- the repeated splits are packed as a reader packs them
  (`embed.packed_splits`); the high-water mark is then reset
  (/proc/self/clear_refs);
- `peak`: the high-water mark when `protocol.run_task` returns.

"ratio" = (peak - base) / embeddings bytes, the figure
`probe_vs_heareval.py` reports (the embeddings themselves count once, so
1.0 means the probe added nothing). A least-squares line over the scales
splits the probe's own memory into a part per embedding byte (the slope:
1.0 means the embeddings are in memory once) and a fixed part (the
intercept: compiled programs, heads, optimizer states, batches in flight).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
import zlib

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import probe_vs_heareval as pvh  # pylint: disable=g-import-not-at-top,wrong-import-position


def _repeated(splits, k: int):
  """Every split's clips k times over, with distinct ids."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  out = {}
  for name, s in splits.items():
    n_clips = len(s.ids)
    copies = {
        "ids": tuple(f"{i}#{c}" for c in range(k) for i in s.ids),
        "x": np.concatenate([s.x] * k),
        "labels": s.labels * k, "events": s.events * k}
    if s.file_index is not None:
      copies["file_index"] = np.concatenate(
          [s.file_index + c * n_clips for c in range(k)]).astype(np.int32)
      copies["timestamps_ms"] = np.concatenate([s.timestamps_ms] * k)
    out[name] = dataclasses.replace(s, **copies)
  return out


def _child(args: argparse.Namespace) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from hear_jax import embed  # pylint: disable=g-import-not-at-top
  from hear_jax.config import default_config  # pylint: disable=g-import-not-at-top
  from hear_jax.data import heareval_layout  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import protocol  # pylint: disable=g-import-not-at-top
  from hear_jax.report import results  # pylint: disable=g-import-not-at-top
  jax.devices()
  base = pvh._proc_status_kb("VmRSS")  # pylint: disable=protected-access
  info, splits = heareval_layout.read_embeddings(args.task_dir)
  if args.scale > 1:  # read_embeddings packed the scale-1 splits already
    splits = embed.packed_splits(_repeated(splits, args.scale))
  loaded = pvh._proc_status_kb("VmRSS")  # pylint: disable=protected-access
  reset = pvh._reset_peak()  # pylint: disable=protected-access
  config = default_config()
  config.probe.grid = args.grid
  config.probe.grid_points = args.grid_points
  key = jax.random.fold_in(jax.random.key(0), zlib.crc32(info.name.encode()))
  start = time.perf_counter()
  outcome = protocol.run_task(info, splits, config.probe, key,
                              embedding_path=args.task_dir)
  seconds = time.perf_counter() - start
  peak = pvh._proc_status_kb("VmHWM")  # pylint: disable=protected-access
  nbytes = sum(s.x.nbytes for s in splits.values())
  print(json.dumps({
      "scale": args.scale, "embeddings_mb": nbytes / 2**20,
      "rss_mb": {"base": base / 1024, "loaded": loaded / 1024,
                 "peak": peak / 1024},
      "peak_reset": reset, "probe_s": seconds,
      "score": results.reported_score(outcome.doc)[0]}))


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cache", type=pathlib.Path,
                      default=pathlib.Path("/tmp/probe_bench"))
  parser.add_argument("--model", default="naive")
  parser.add_argument("--scales", default="1,2,4",
                      type=lambda s: [int(v) for v in s.split(",")])
  parser.add_argument("--grid", default="faster")
  parser.add_argument("--grid_points", type=int, default=1)
  parser.add_argument("--out", type=pathlib.Path, default=None)
  parser.add_argument("--_task_dir", dest="task_dir", help=argparse.SUPPRESS)
  parser.add_argument("--_scale", dest="scale", type=int,
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.task_dir:
    _child(args)
    return 0
  os.chdir(REPO)
  task_dir = pvh.build_event(args.cache, args.model)
  rows = []
  for k in args.scales:
    proc = subprocess.run(
        [sys.executable, str(pathlib.Path(__file__).resolve()),
         f"--_task_dir={task_dir}", f"--_scale={k}", f"--grid={args.grid}",
         f"--grid_points={args.grid_points}"],
        capture_output=True, text=True, check=False)
    if proc.returncode:
      print(proc.stderr[-3000:], file=sys.stderr)
      return 1
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["probe_mb"] = row["rss_mb"]["peak"] - row["rss_mb"]["base"]
    row["ratio"] = row["probe_mb"] / row["embeddings_mb"]
    rows.append(row)
    print(f"x{k}: embeddings {row['embeddings_mb']:.0f} MB, probe peak"
          f" - base {row['probe_mb']:.0f} MB, ratio {row['ratio']:.2f}"
          f" (probe {row['probe_s']:.1f} s, score {row['score']:.4f})",
          flush=True)
  fit = None
  if len(rows) > 1:
    import numpy as np  # pylint: disable=g-import-not-at-top
    slope, fixed = np.polyfit([r["embeddings_mb"] for r in rows],
                              [r["probe_mb"] for r in rows], 1)
    fit = {"mb_per_embedding_mb": float(slope), "fixed_mb": float(fixed)}
    print(f"probe peak - base = {slope:.3f} x embeddings + {fixed:.0f} MB;"
          f" under 2x the embeddings from {fixed / (2 - slope):.0f} MB of"
          " embeddings" if slope < 2 else "")
  doc = {"args": {"model": args.model, "grid": args.grid,
                  "grid_points": args.grid_points, "task_dir": str(task_dir)},
         "rows": rows, "fit": fit}
  out = args.out or args.cache / "probe_memory.json"
  out.write_text(json.dumps(doc, indent=1))
  print(f"JSON: {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
