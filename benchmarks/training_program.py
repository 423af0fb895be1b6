"""Seconds per member-epoch of the probe's compiled programs, alone.

  .venv/bin/python benchmarks/training_program.py                 # 4096-d
  .venv/bin/python benchmarks/training_program.py --dims 128 --rows 12060 \
      --valid_rows 4020 --classes 11 --multilabel                # event-sized

One architecture group of the default grid's shape (hidden 1024, batch
1024, 3 epochs per validation check), its members on one set of shuffled
training rows of random embeddings, compiled beforehand:

- `train_chunk`: the training program alone (3 epochs per call);
- `train_checks`: the same epochs with a validation check after each 3
  (eval-mode forward on the validation rows, a device metric, the
  checkpoint and early-stopping rules), several checks per dispatch, as
  the probe runs a group whose members are scored on the device.

Each is timed over `--repeats` calls, alternating, and the best call is
printed per member-epoch, with the head's matmul GFLOP/s; the difference
of the two is what validation on the device costs per member-check. This
is the steady state of `probe_vs_heareval.py`'s whole-process runs (which
add compiling, early stopping's varying epochs and the host).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

EPOCHS_PER_CHECK = 3
BATCH = 1024
HIDDEN = 1024


def head_train_flops(dims: int, classes: int, layers: int) -> int:
  """Matmul FLOPs of one training row: 2 forward, 2 for the weight
  gradient, 2 for the input gradient except the first layer's."""
  widths = [dims] + [HIDDEN] * layers + [classes]
  return sum((4 if i == 0 else 6) * a * b
             for i, (a, b) in enumerate(zip(widths, widths[1:])))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dims", type=int, default=4096)
  parser.add_argument("--rows", type=int, default=1800,
                      help="training rows (default: 3 folds of 600)")
  parser.add_argument("--valid_rows", type=int, default=600)
  parser.add_argument("--classes", type=int, default=12)
  parser.add_argument("--layers", default="1,2")
  parser.add_argument("--members", type=int, default=4)
  parser.add_argument("--checks", type=int, default=4,
                      help="validation checks per timed call")
  parser.add_argument("--multilabel", action="store_true")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import members as members_lib  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import mlp, program  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  n = args.rows + args.valid_rows
  m, c = args.members, args.classes
  x = jax.device_put(rng.normal(size=(n, args.dims)).astype(np.float32))
  y = jax.device_put(np.eye(c, dtype=np.float32)[rng.integers(0, c, n)])
  order = rng.permutation(n).astype(np.int32)
  train_rows = jnp.asarray(order[:args.rows])
  valid_rows = jnp.asarray(order[args.rows:])
  n_train = jnp.full(m, args.rows, jnp.int32)
  n_valid = jnp.full(m, args.valid_rows, jnp.int32)
  keys = members_lib.member_keys(jax.random.key(0), m)
  metric = "mAP" if args.multilabel else "top1_acc"
  print(f"{args.dims}-d, {args.rows} training rows, {args.valid_rows}"
        f" validation rows, {m} members, {jax.devices()[0].platform}")
  for layers in [int(v) for v in args.layers.split(",")]:
    state, numbers = members_lib.init_members(
        np.asarray(jax.random.key_data(keys)), np.ones(m, bool),
        np.full(m, 1e-4, np.float32), np.full(m, 0.1, np.float32),
        np.full(m, c, np.int32),
        shape=mlp.MlpShape(args.dims, c, layers, HIDDEN),
        impl=jax.random.key_impl(keys), place=None)
    common = dict(n_epochs=EPOCHS_PER_CHECK, batch_size=BATCH,
                  tails=program.tail_sizes(BATCH, [args.rows], layers > 0),
                  multilabel=args.multilabel, shuffle=True, place=None)
    monitor = program.Monitor(
        jnp.full(m, -jnp.inf), jnp.full(m, -1, jnp.int32),
        jnp.zeros(m, jnp.int32), jnp.zeros(m, bool))
    never = jnp.full(m, 1 << 20, jnp.int32)  # no member stops

    def chunks():
      st = state
      for k in range(args.checks):
        st, _ = program.train_chunk(
            st, numbers, jnp.ones(m, bool), x, y, train_rows, n_train,
            jnp.int32(k * EPOCHS_PER_CHECK), **common)
      return st

    def checks():
      return program.train_checks(
          state, (state.params, state.bn_state), monitor, numbers, x, y,
          train_rows, n_train, valid_rows, n_valid, jnp.int32(0),
          jnp.int32(args.checks), never, never, metric=metric,
          maximize=True, stop_on_non_finite=True,
          chunk=program.eval_chunk_rows(BATCH, args.dims, HIDDEN),
          history=args.checks, **common)

    runs = {"train_chunk": chunks, "train_checks": checks}
    best = dict.fromkeys(runs, float("inf"))
    for fn in runs.values():
      jax.block_until_ready(fn())  # compiles
    for _ in range(args.repeats):
      for name, fn in runs.items():
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best[name] = min(best[name], time.perf_counter() - start)
    member_epochs = m * args.checks * EPOCHS_PER_CHECK
    rows_used = program.training_batches(args.rows, BATCH, layers > 0)[1]
    flops = rows_used * head_train_flops(args.dims, c, layers)
    for name, seconds in best.items():
      per = seconds / member_epochs
      print(f"  {layers} hidden layer(s), {name}: {per:.4f} s per"
            f" member-epoch, {flops / per / 1e9:.1f} GFLOP/s of training")
    extra = (best["train_checks"] - best["train_chunk"]) / (
        m * args.checks)
    print(f"  {layers} hidden layer(s): validation on the device"
          f" {extra:+.4f} s per member-check")


if __name__ == "__main__":
  main()
