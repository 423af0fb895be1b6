"""Seconds per member-epoch of the probe's compiled programs, alone, and
what compiling them costs a first run.

  .venv/bin/python benchmarks/training_program.py                 # 4096-d
  .venv/bin/python benchmarks/training_program.py --dims 128 --rows 12060 \
      --valid_rows 4020 --classes 11 --multilabel                # event-sized
  .venv/bin/python benchmarks/training_program.py --compile --dims 512 \
      --rows 1764 --valid_rows 576 --classes 36    # train/valid/test-sized

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

`--compile` instead measures a first run's compiling, for the default
grid's two architecture groups (3 one-layer and 5 two-layer members, as
HEAR's grid splits): each group's `train_checks` compiled alone, the two
compiled at once in two threads, and the one-layer group training
`--checks` checks while the two-layer group's program compiles in a thread,
against the same one after the other. Each compile is of a program no
earlier one made (the history buffer's static size differs), so none comes
from JAX's in-memory cache; the persistent cache is not used here.
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


def _group(args, layers: int, m: int, data):
  """One architecture group's inputs: `checks(n, history)` is a call of
  `train_checks` for n checks (every member runs them: none stops), and
  `chunks()` the same epochs as `train_chunk` calls."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import members as members_lib  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import mlp, program  # pylint: disable=g-import-not-at-top

  x, y, train_rows, valid_rows = data
  c = args.classes
  n_train = jnp.full(m, args.rows, jnp.int32)
  n_valid = jnp.full(m, args.valid_rows, jnp.int32)
  keys = members_lib.member_keys(jax.random.key(layers), m)
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

  def checks(n: int, history: int, fn=program.train_checks):
    return fn(
        state, (state.params, state.bn_state), monitor, numbers, x, y,
        train_rows, n_train, valid_rows, n_valid, jnp.int32(0),
        jnp.int32(n), never, never,
        metric="mAP" if args.multilabel else "top1_acc", maximize=True,
        stop_on_non_finite=True,
        chunk=program.eval_chunk_rows(BATCH, args.dims, HIDDEN),
        history=history, **common)

  return chunks, checks


def _steady_state(args, data) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import program  # pylint: disable=g-import-not-at-top

  m, c = args.members, args.classes
  for layers in [int(v) for v in args.layers.split(",")]:
    chunks, checks = _group(args, layers, m, data)
    runs = {"train_chunk": chunks,
            "train_checks": lambda: checks(args.checks, args.checks)}
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


def _compiling(args, data) -> None:
  import itertools  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import program  # pylint: disable=g-import-not-at-top

  # A new program for every compile, each holding `--checks` checks.
  history = itertools.count(max(64, args.checks))
  groups = {1: _group(args, 1, 3, data)[1], 2: _group(args, 2, 5, data)[1]}

  def compile_(layers: int) -> None:
    groups[layers](1, next(history), fn=program.train_checks.lower).compile()

  def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start

  compile_(1)  # the compiler's own first-use costs, not counted
  alone = {layers: timed(lambda: compile_(layers)) for layers in groups}
  for layers, seconds in alone.items():
    print(f"  train_checks, {layers} hidden layer(s): compiles in"
          f" {seconds:.2f} s")

  def both_in_threads():
    threads = [threading.Thread(target=compile_, args=(layers,))
               for layers in groups]
    for t in threads:
      t.start()
    for t in threads:
      t.join()

  print(f"  both, one after the other: {sum(alone.values()):.2f} s; in two"
        f" threads: {timed(both_in_threads):.2f} s")

  def group_one_then(overlap: bool):
    # The one-layer group's first dispatch (compile, then `--checks`
    # checks of training), the two-layer group's compile beside or after.
    first = groups[1](args.checks, next(history))
    second = threading.Thread(target=compile_, args=(2,))
    if overlap:
      second.start()
    jax.block_until_ready(first)
    if not overlap:
      second.start()
    second.join()

  after = timed(lambda: group_one_then(False))
  beside = timed(lambda: group_one_then(True))
  print(f"  one-layer group training {args.checks} checks, then the"
        f" two-layer compile: {after:.2f} s; the compile in a thread beside"
        f" it: {beside:.2f} s ({after - beside:+.2f} s)")


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
  parser.add_argument("--compile", action="store_true",
                      help="measure a first run's compiling instead")
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  n = args.rows + args.valid_rows
  x = jax.device_put(rng.normal(size=(n, args.dims)).astype(np.float32))
  y = jax.device_put(
      np.eye(args.classes, dtype=np.float32)[rng.integers(0, args.classes,
                                                          n)])
  order = rng.permutation(n).astype(np.int32)
  data = (x, y, jnp.asarray(order[:args.rows]),
          jnp.asarray(order[args.rows:]))
  members = "3 and 5" if args.compile else args.members
  print(f"{args.dims}-d, {args.rows} training rows, {args.valid_rows}"
        f" validation rows, {members} members, {jax.devices()[0].platform}")
  (_compiling if args.compile else _steady_state)(args, data)


if __name__ == "__main__":
  main()
