"""Predictions of a fitted head (`trainer.FitResult`) on any split."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from hear_jax.probe import members as members_lib
from hear_jax.probe import program
from hear_jax.probe.driver import FitResult


class SplitPredictions(NamedTuple):
  """A fitted head's eval-mode outputs on one split."""

  probs: np.ndarray  # [N, C]
  logits: np.ndarray  # [N, C]
  loss: float | None  # HEAR's test_loss when targets were given


def predict_split(result: FitResult, x, y=None, *, rows=None,
                  batch_size: int = 4096) -> SplitPredictions:
  """Eval-mode predictions of a fitted head on x (or its `rows`), and its
  loss if targets `y` (rows like x) are given."""
  if not isinstance(x, jax.Array):
    x = jax.device_put(np.asarray(x, np.float32))
  if y is not None and not isinstance(y, jax.Array):
    y = jax.device_put(np.asarray(y, np.float32))
  if x.ndim != 2 or (y is not None and y.shape[0] != x.shape[0]):
    raise ValueError(f"predict: x {x.shape} must be [N, D] with one target row "
                     f"per row of x (y {None if y is None else y.shape})")
  rows = np.arange(x.shape[0]) if rows is None else np.asarray(rows)
  # The head and rows go where x is (see `members_lib.to_device`).
  whole = (x.sharding.update(spec=jax.sharding.PartitionSpec())
           if isinstance(x.sharding, jax.sharding.NamedSharding) else None)
  expand = lambda a: members_lib.to_device(np.asarray(a)[None], whole)
  probs, logits, loss = program.evaluate_members(
      jax.tree.map(expand, result.params),
      jax.tree.map(expand, result.bn_state),
      x, y, members_lib.to_device(rows.astype(np.int32), whole), None,
      multilabel=result.multilabel,
      chunk=program.eval_chunk_rows(batch_size, x.shape[1], max(
          (layer["weight"].shape[0] for layer in result.params["hidden"]),
          default=0)),
      with_logits=True)
  return SplitPredictions(np.asarray(probs[0]), np.asarray(logits[0]),
                          None if y is None else float(loss[0]))


def predict(result: FitResult, x, *, batch_size: int = 4096) -> np.ndarray:
  """Probabilities [N, C] (softmax or sigmoid) of a fitted head."""
  return predict_split(result, x, batch_size=batch_size).probs
