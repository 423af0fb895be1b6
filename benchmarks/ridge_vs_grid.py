"""The ridge probe's time against HEAR's default grid on the same embeddings,
and the scores of the ridge, linear and HEAR probes side by side.

  # the demo's melstats embeddings (this script makes them if missing):
  .venv/bin/python -m hear_jax.main --config=configs/demo.py --workdir=runs/demo
  .venv/bin/python benchmarks/ridge_vs_grid.py --workdir=runs/demo
  # smoke run (~2 min; tiny grids, the times mean nothing):
  .venv/bin/python benchmarks/ridge_vs_grid.py --workdir=/tmp/rvg --quick

Cases, all on `melstats` embeddings (128-d) cached under
<workdir>/melstats/<task>/embeddings/ exactly as the demo run caches them
(the same fingerprint, so either reuses the other's):

- demo_pitch, demo_spoken_commands (train/valid/test, scene) and
  demo_sound_events (train/valid/test, event frames);
- demo_spoken_commands_5fold: the spoken commands clips pooled and re-split
  into 5 stratified folds (as benchmarks/probe_vs_heareval.py makes them),
  so the k-fold protocol runs: the heads train the grid on split 0 and
  retrain on the other 4; ridge factorises each split once.

Probes, each through `protocol.run_task` with hear_jax.run's task key (seed
0), timed with the embeddings already in memory:

- ridge: `config.probe.kind = "ridge"`. "ridge s" is the first call in this
  process (JIT compilation included); "warm s" a second, identical call;
- linear: kind "linear" (4 learning rates, HEAR's epochs and patience);
- hear: HEAR's default grid (8 points, 500 epochs at most, patience 20, the
  task's overrides). "hear / ridge" = hear s / ridge s (first call).

Scores are each probe's reported test score (the fold mean for k-fold
tasks). Ridge and linear are not HEAR's protocol: compare them with each
other and with hear, not with published HEAR numbers.

With --quick the HEAR grid is "faster" with one point and 3 epochs, and the
linear probe trains 3 epochs: a check that everything runs, not a timing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time
import zlib
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEMO_TASKS = ("demo/pitch", "demo/spoken_commands", "demo/sound_events")
MODEL = "melstats"
FOLDS = 5
PROBES = ("ridge", "linear", "hear")


def demo_embeddings(workdir: str, spec: str):
  """(TaskInfo, splits): the demo task prepared under <workdir>/tfds and
  embedded by melstats, cached where the demo run caches it."""
  from hear_jax import run  # pylint: disable=g-import-not-at-top
  from hear_jax.config import default_config  # pylint: disable=g-import-not-at-top
  from hear_jax.data import task_specs  # pylint: disable=g-import-not-at-top
  from hear_jax.data.task import load_task  # pylint: disable=g-import-not-at-top
  from hear_jax.models import load_model  # pylint: disable=g-import-not-at-top
  builder = task_specs.prepare_task(spec, os.path.join(workdir, "tfds"))
  task = load_task(builder)
  model = load_model(MODEL)
  splits, _, _ = run.embed_task(
      model, MODEL, task, builder,
      os.path.join(workdir, run.slug(MODEL), task.info.name, "embeddings"),
      default_config())
  return task.info, splits


def stratified_folds(info, splits, folds: int = FOLDS):
  """The scene task's clips pooled into `folds` stratified folds."""
  from hear_jax.data.task import TaskInfo  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(REPO / "benchmarks"))
  from probe_vs_heareval import pooled_folds  # pylint: disable=g-import-not-at-top
  out = pooled_folds(splits, folds)
  names = list(out)
  name = f"{info.name}_{folds}fold"
  metadata = {**info.metadata, "task_name": name,
              "split_mode": "new_split_kfold", "splits": names}
  metadata.pop("split_key", None)
  return TaskInfo(name=name, metadata=metadata,
                  label_vocabulary=info.label_vocabulary,
                  sample_rate=info.sample_rate), out


def probe_config(kind: str, quick: bool):
  from hear_jax.config import default_config  # pylint: disable=g-import-not-at-top
  config = default_config().probe
  config.kind = kind
  if quick and kind == "hear":
    config.grid, config.grid_points, config.max_epochs = "faster", 1, 3
    config.check_val_every_n_epoch = 1
  elif quick and kind == "linear":
    config.max_epochs, config.check_val_every_n_epoch = 3, 1
  return config


def time_probe(info, splits, kind: str, quick: bool) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import protocol  # pylint: disable=g-import-not-at-top
  from hear_jax.report import results  # pylint: disable=g-import-not-at-top
  # hear_jax.run's task key with config.seed = 0.
  key = jax.random.fold_in(jax.random.key(0), zlib.crc32(info.name.encode()))
  config = probe_config(kind, quick)
  start = time.perf_counter()
  doc = protocol.run_task(info, splits, config, key,
                          embedding_path="-").doc
  seconds = time.perf_counter() - start
  record = {"seconds": seconds, "score": results.reported_score(doc)[0],
            "hparams": doc["hparams"]}
  if kind == "ridge":
    start = time.perf_counter()
    again = protocol.run_task(info, splits, config, key,
                              embedding_path="-").doc
    record["warm_seconds"] = time.perf_counter() - start
    score = results.reported_score(again)[0]
    if not (score == record["score"]
            or math.isnan(score) and math.isnan(record["score"])):
      raise RuntimeError(f"{info.name}: ridge gave {record['score']} then "
                         f"{score} on the same inputs")
    record["alphas"] = doc["ridge_alphas"]
  return record


def _fmt(value: Any, spec: str) -> str:
  return "–" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
  print("| case | rows x dims | ridge s | warm s | linear s | hear s "
        "| hear / ridge | ridge | linear | hear | ridge alpha |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    p = r["probes"]
    get = lambda kind, field: p.get(kind, {}).get(field)
    ratio = (get("hear", "seconds") / get("ridge", "seconds")
             if get("hear", "seconds") and get("ridge", "seconds") else None)
    alphas = sorted(set((get("ridge", "alphas") or {}).values()))
    alpha = ", ".join(f"{a:.3g}" for a in alphas) or "–"
    print(f"| {r['case']} | {r['rows']} x {r['dims']} "
          f"| {_fmt(get('ridge', 'seconds'), '.2f')} "
          f"| {_fmt(get('ridge', 'warm_seconds'), '.2f')} "
          f"| {_fmt(get('linear', 'seconds'), '.1f')} "
          f"| {_fmt(get('hear', 'seconds'), '.1f')} "
          f"| {_fmt(ratio, '.0f')}{'×' if ratio else ''} "
          f"| {_fmt(get('ridge', 'score'), '.4f')} "
          f"| {_fmt(get('linear', 'score'), '.4f')} "
          f"| {_fmt(get('hear', 'score'), '.4f')} | {alpha} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="runs/demo",
                      help="the demo run's workdir (embeddings made there "
                      "if missing)")
  parser.add_argument("--quick", action="store_true",
                      help="smoke run: tiny HEAR and linear grids")
  parser.add_argument("--probes", default=",".join(PROBES),
                      help=f"comma-separated subset of {PROBES}")
  parser.add_argument("--cases", default="",
                      help="comma-separated case names (default: all)")
  parser.add_argument("--out", default="",
                      help="also write the records as JSON here")
  args = parser.parse_args(argv)
  args.probes = [p for p in args.probes.split(",") if p]
  bad = [p for p in args.probes if p not in PROBES]
  if bad or not args.probes:
    parser.error(f"--probes: {bad or 'none'} not in {PROBES}")
  args.cases = [c for c in args.cases.split(",") if c]
  return args


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  cases = []
  for spec in DEMO_TASKS:
    info, splits = demo_embeddings(args.workdir, spec)
    cases.append((info, splits))
    if info.name == "demo_spoken_commands":
      cases.append(stratified_folds(info, splits))
  if args.cases:
    known = [info.name for info, _ in cases]
    unknown = [c for c in args.cases if c not in known]
    if unknown:
      print(f"--cases: {unknown} not in {known}", file=sys.stderr)
      return 2
    cases = [c for c in cases if c[0].name in args.cases]
  rows = []
  for info, splits in cases:
    record = {"case": info.name, "rows": sum(len(s.x) for s in
                                              splits.values()),
              "dims": next(iter(splits.values())).x.shape[1],
              "splits": len(splits), "probes": {}}
    for kind in args.probes:
      record["probes"][kind] = time_probe(info, splits, kind, args.quick)
      print(f"{info.name} / {kind}: "
            f"{record['probes'][kind]['seconds']:.2f} s, score "
            f"{record['probes'][kind]['score']:.4f}", flush=True)
    rows.append(record)
  print()
  print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}"
        f"{' (--quick: tiny grids, times are not a benchmark)' if args.quick else ''}")
  print_table(rows)
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"quick": args.quick, "device": jax.devices()[0].device_kind,
                 "cases": rows}, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
