"""Embedding and probe throughput against the number of devices.

  .venv/bin/python -m benchmarks.scaling                  # 1, 2, 4, 8 devices
  .venv/bin/python -m benchmarks.scaling --devices 1,8 --clips 512 --members 16

Each device count runs in its own process (the device count is fixed when
JAX starts): on CPU with `XLA_FLAGS=--xla_force_host_platform_device_count=D`,
elsewhere (`--platform=default`) on the first D real devices. It measures,
after one warm-up pass with the same shapes (compilation excluded),

- embedding: `embed.embed_split` with `--model` on `--clips` clips of
  `--seconds` s of noise, batches split over the devices; seconds of audio
  embedded per second;
- probe: `trainer.fit_probes` with `--members` grid points of HEAR's head
  (hidden 1024, batch 1024) on `--rows` random embeddings, `--epochs` epochs,
  members and batches spread over the devices; member-epochs per second.

Simulated CPU devices share the machine's cores, so on CPU the table shows
that the sharded programs run, and what splitting costs, not a speed-up:
wall-clock gains need real accelerators (one TPU chip or GPU per device).
The plan for the whole HEAR suite on a TPU v4-32 or an 8-GPU node is in
launch/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _measure(args: argparse.Namespace) -> dict[str, float]:
  """Runs in the child process, with its device count already set."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from hear_jax import embed  # pylint: disable=g-import-not-at-top
  from hear_jax.data.task import SplitAudio, TaskInfo  # pylint: disable=g-import-not-at-top
  from hear_jax.models import load_model  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import grid, trainer  # pylint: disable=g-import-not-at-top

  devices = jax.devices()
  model = load_model(args.model)
  rng = np.random.default_rng(0)
  samples = int(args.seconds * model.sample_rate)
  audio = tuple((rng.normal(size=samples) * 3000).astype(np.int16)
                for _ in range(args.clips))
  split = SplitAudio(tuple(f"c{i:05d}" for i in range(args.clips)), audio,
                     tuple(() for _ in audio), tuple(() for _ in audio))
  info = TaskInfo("bench", {"embedding_type": "scene"}, (),
                  model.sample_rate)
  batch = int(args.batch_seconds * model.sample_rate)
  embed.embed_split(model, info, split, batch_samples=batch, devices=devices)
  start = time.perf_counter()
  embed.embed_split(model, info, split, batch_samples=batch, devices=devices)
  embed_s = time.perf_counter() - start

  x = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
  labels = rng.integers(0, 10, size=args.rows)
  y = np.eye(10, dtype=np.float32)[labels]
  cut = args.rows * 4 // 5
  hparams = [grid.HParams(lr=1e-4 * (1 + i), hidden_layers=1,
                          max_epochs=args.epochs, check_val_every_n_epoch=1,
                          patience=10 ** 6) for i in range(args.members)]

  def fit():
    return trainer.fit_probes(x[:cut], y[:cut], x[cut:], y[cut:], hparams,
                              multilabel=False, score_fn=None, maximize=False,
                              key=jax.random.key(0), devices=devices)

  fit()
  start = time.perf_counter()
  fit()
  probe_s = time.perf_counter() - start
  return {"devices": len(devices), "platform": devices[0].platform,
          "embed_audio_s_per_s": args.clips * args.seconds / embed_s,
          "probe_member_epochs_per_s": args.members * args.epochs / probe_s}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--devices", default="1,2,4,8",
                      help="device counts, comma-separated")
  parser.add_argument("--platform", default="cpu",
                      help="cpu (simulated devices) or default (real ones)")
  parser.add_argument("--model", default="melstats")
  parser.add_argument("--clips", type=int, default=256)
  parser.add_argument("--seconds", type=float, default=1.0)
  parser.add_argument("--batch-seconds", type=float, default=64.0)
  parser.add_argument("--members", type=int, default=8)
  parser.add_argument("--rows", type=int, default=8192)
  parser.add_argument("--dim", type=int, default=512)
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(_measure(args)))
    return

  rows = []
  for count in [int(c) for c in args.devices.split(",")]:
    env = dict(os.environ)
    if args.platform == "cpu":
      env["JAX_PLATFORMS"] = "cpu"
      env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={count} "
                          + env.get("XLA_FLAGS", ""))
    else:
      # The first `count` accelerators (CUDA_VISIBLE_DEVICES-style masks are
      # the portable way; TPU_VISIBLE_CHIPS on TPU VMs).
      env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(count)))
      env["TPU_VISIBLE_CHIPS"] = ",".join(map(str, range(count)))
    child = [a for a in sys.argv[1:] if not a.startswith("--devices")]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--child", *child],
        env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
      sys.exit(f"{count} devices failed:\n{proc.stderr[-3000:]}")
    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"{count} devices done", file=sys.stderr)

  base = rows[0]
  print(f"model {args.model}: {args.clips} clips x {args.seconds:g} s;"
        f" probe: {args.members} members x {args.epochs} epochs on"
        f" {args.rows} x {args.dim}")
  print("| devices | platform | embed (s audio / s) | x | probe (member-epochs"
        " / s) | x |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['devices']} | {r['platform']} |"
          f" {r['embed_audio_s_per_s']:.0f} |"
          f" {r['embed_audio_s_per_s'] / base['embed_audio_s_per_s']:.2f} |"
          f" {r['probe_member_epochs_per_s']:.1f} |"
          f" {r['probe_member_epochs_per_s'] / base['probe_member_epochs_per_s']:.2f} |")
  if args.platform == "cpu":
    print(f"\nSimulated CPU devices share this machine's {os.cpu_count()}"
          " cores: this shows the sharded programs run and what splitting"
          " costs, not a speed-up. Wall-clock gains need real accelerators.")


if __name__ == "__main__":
  main()
