"""Predictions of a fitted head (`trainer.FitResult`) on any split."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hear_jax.probe import buckets
from hear_jax.probe import members as members_lib
from hear_jax.probe import program
from hear_jax.probe.driver import FitResult


class SplitPredictions(NamedTuple):
  """A fitted head's eval-mode outputs on one split."""

  probs: np.ndarray  # [N, C]
  logits: np.ndarray  # [N, C]
  loss: float | None  # HEAR's test_loss when targets were given


def predict_split(result: FitResult, x, y=None, *, rows=None,
                  batch_size: int = 4096,
                  shape_buckets: bool | None = None) -> SplitPredictions:
  """Eval-mode predictions of a fitted head on x (or its `rows`), and its
  loss if targets `y` (rows like x) are given.

  With `shape_buckets` the rows and the head's classes are padded to
  `buckets` (and masked), so heads of another task in the same buckets
  reuse the compiled program (None: on for accelerators,
  `buckets.enabled`)."""
  if not isinstance(x, jax.Array):
    x = jax.device_put(np.asarray(x, np.float32))
  if y is not None and not isinstance(y, jax.Array):
    y = jax.device_put(np.asarray(y, np.float32))
  if x.ndim != 2 or (y is not None and y.shape[0] != x.shape[0]):
    raise ValueError(f"predict: x {x.shape} must be [N, D] with one target row "
                     f"per row of x (y {None if y is None else y.shape})")
  rows = np.arange(x.shape[0]) if rows is None else np.asarray(rows)
  n, params = len(rows), result.params
  shape_buckets = buckets.enabled(shape_buckets, list(x.devices()))
  n_labels = params["output"]["bias"].shape[0]
  # As wide as x's row bucket: every split of a task's x, and any task in
  # its bucket, share the program.
  padded_rows = np.zeros(
      buckets.rows(max(n, x.shape[0]), 4 * x.shape[1]) if shape_buckets
      else n, np.int32)
  padded_rows[:n] = rows
  if shape_buckets:
    pad = buckets.classes(n_labels) - n_labels
    params = {**params, "output": {
        k: np.pad(np.asarray(v), [(0, pad)] + [(0, 0)] * (np.ndim(v) - 1))
        for k, v in params["output"].items()}}
    if y is not None and pad:
      y = jnp.pad(y, ((0, 0), (0, pad)))
  # The head and rows go where x is (see `members_lib.to_device`).
  whole = (x.sharding.update(spec=jax.sharding.PartitionSpec())
           if isinstance(x.sharding, jax.sharding.NamedSharding) else None)
  expand = lambda a: members_lib.to_device(np.asarray(a)[None], whole)
  probs, logits, loss = program.evaluate_members(
      jax.tree.map(expand, params),
      jax.tree.map(expand, result.bn_state),
      x, y, members_lib.to_device(padded_rows, whole),
      expand(np.int32(n)), expand(np.int32(n_labels)),
      multilabel=result.multilabel,
      chunk=program.eval_chunk_rows(batch_size, x.shape[1], max(
          (layer["weight"].shape[0] for layer in result.params["hidden"]),
          default=0)),
      with_logits=True)
  return SplitPredictions(np.asarray(probs)[0, :n, :n_labels],
                          np.asarray(logits)[0, :n, :n_labels],
                          None if y is None else float(loss[0]))


def predict(result: FitResult, x, *, batch_size: int = 4096) -> np.ndarray:
  """Probabilities [N, C] (softmax or sigmoid) of a fitted head."""
  return predict_split(result, x, batch_size=batch_size).probs
