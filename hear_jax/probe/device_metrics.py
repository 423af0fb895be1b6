"""HEAR's scene metrics in JAX, for scoring validation checks on the device.

The same numbers as `hear_jax.metrics.scene` (which runs on the host in
float64), computed in float32 inside a jitted program, so a validation
check needs no transfer to the host:

  score = device_metrics.SCENE["top1_acc"](probs, targets)   # [] float32
  scores = jax.vmap(device_metrics.SCENE["mAP"])(member_probs, targets)
  score = device_metrics.SCENE["mAP"](probs, targets, real, n_labels)

Counts (true and false positives) are integers, exact in float32 below
2^24 rows; sums of many terms are taken pairwise (`pairwise_sum`), so the
rounding error grows with log2(rows), not rows. `d_prime` takes the normal
quantile of 1 - AUC where AUC > 1/2, where float32 keeps its relative
precision (the quantile is steep near 1). One difference is by design: a
class ranked perfectly has AUC exactly 1 here (d' = inf), where the host's
float64 trapezoid may round to 0.9999999999999998 (d' about 8.3).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def pairwise_sum(x: jax.Array) -> jax.Array:
  """Sum over the last axis by halving (error ~ log2(n) ulps, not n)."""
  n = x.shape[-1]
  size = 1 << max(0, n - 1).bit_length()
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - n)])
  while x.shape[-1] > 1:
    x = x[..., 0::2] + x[..., 1::2]
  return x[..., 0]


def _row_weights(probs, real):
  return (jnp.ones(probs.shape[:1], jnp.float32) if real is None
          else real.astype(jnp.float32))


def _class_mean(values, n_labels):
  """The mean over the first `n_labels` classes (all without it)."""
  if n_labels is None:
    return jnp.mean(values)
  real = jnp.arange(values.shape[-1]) < n_labels
  return jnp.sum(jnp.where(real, values, 0.0)) / n_labels


def top1_accuracy(probs: jax.Array, targets: jax.Array, real=None,
                  n_labels=None) -> jax.Array:
  """argmax agreement (a multi-hot target counts as its first class)."""
  del n_labels  # a padding class has probability 0 and no target
  w = _row_weights(probs, real)
  correct = jnp.argmax(probs, axis=1) == jnp.argmax(targets, axis=1)
  return jnp.sum(correct * w) / jnp.sum(w)


def chroma_accuracy(probs: jax.Array, targets: jax.Array, real=None,
                    n_labels=None) -> jax.Array:
  """Top-1 agreement of vocabulary indices modulo 12 (HEAR's chroma)."""
  del n_labels
  w = _row_weights(probs, real)
  correct = (jnp.argmax(probs, axis=1) % 12) == (
      jnp.argmax(targets, axis=1) % 12)
  return jnp.sum(correct * w) / jnp.sum(w)


def _sorted_by_class(probs, targets, real):
  """Per class [C, N]: scores descending, their positive and negative
  weights, and the last position of each entry's tie group. Padding rows
  (`real` 0) score -1, below every probability, and weigh nothing, so they
  end the ranking as a tie group of their own that moves no count."""
  w = _row_weights(probs, real)
  scores = jnp.where(w[None, :] > 0, probs.T, -1.0)
  order = jnp.argsort(-scores, axis=1)
  scores = jnp.take_along_axis(scores, order, axis=1)
  weights = jnp.take_along_axis(jnp.broadcast_to(w, scores.shape), order,
                                axis=1)
  positives = jnp.take_along_axis(targets.T.astype(jnp.float32), order,
                                  axis=1) * weights
  negatives = weights - positives
  n = scores.shape[1]
  is_last = jnp.concatenate(
      [scores[:, :-1] != scores[:, 1:], jnp.ones((scores.shape[0], 1), bool)],
      axis=1)
  column = jnp.broadcast_to(jnp.arange(n), scores.shape)
  group_last = jax.lax.cummin(jnp.where(is_last, column, n), axis=1,
                              reverse=True)
  return positives, negatives, group_last, is_last


def average_precision_per_class(probs: jax.Array, targets: jax.Array,
                                real=None) -> jax.Array:
  """scikit-learn's average precision of every class [C] (0 without
  positives), as `metrics.scene.average_precision_per_class`."""
  positives, _, group_last, _ = _sorted_by_class(probs, targets, real)
  true_positives = jnp.cumsum(positives, axis=1)
  # Padding rows rank last: the rows up to a real one's group are real.
  precision = jnp.take_along_axis(true_positives, group_last, axis=1) / (
      group_last + 1).astype(jnp.float32)
  n_positive = true_positives[:, -1]
  summed = pairwise_sum(positives * precision)
  return jnp.where(n_positive > 0, summed / jnp.maximum(n_positive, 1.0), 0.0)


def mean_average_precision(probs: jax.Array, targets: jax.Array, real=None,
                           n_labels=None) -> jax.Array:
  """HEAR's `mAP`."""
  return _class_mean(average_precision_per_class(probs, targets, real),
                     n_labels)


def _auc_parts(probs, targets, real):
  """Per class: the ROC area's complement (1 - AUC) and AUC, from integer
  counts (NaN where a class has one target value)."""
  positives, negatives, _, is_last = _sorted_by_class(probs, targets, real)
  tps = jnp.cumsum(positives, axis=1)
  fps = jnp.cumsum(negatives, axis=1)
  # The ROC curve's points are the ends of tie groups; the trapezoids
  # between consecutive points, in counts: d(fps) * (tps + tps_prev) / 2.
  # Points dropped by scikit-learn's drop_intermediate are collinear ones,
  # which do not change the area.
  tps_at = jnp.where(is_last, tps, 0.0)
  fps_at = jnp.where(is_last, fps, 0.0)
  prev_index = jax.lax.cummax(
      jnp.where(is_last, jnp.arange(tps.shape[1]), -1), axis=1)
  prev_index = jnp.concatenate(
      [jnp.full((tps.shape[0], 1), -1), prev_index[:, :-1]], axis=1)
  take = lambda a: jnp.where(
      prev_index >= 0,
      jnp.take_along_axis(a, jnp.maximum(prev_index, 0), axis=1), 0.0)
  tps_prev, fps_prev = take(tps), take(fps)
  n_pos, n_neg = tps[:, -1], fps[:, -1]
  # Area under the curve (tps up, fps right) and above it, in count units:
  # both exact sums of integers, so 1 - AUC keeps its precision near 1.
  under = pairwise_sum(jnp.where(is_last, (fps_at - fps_prev)
                                 * (tps_at + tps_prev), 0.0))
  over = pairwise_sum(jnp.where(is_last, (fps_at - fps_prev)
                                * (2 * n_pos[:, None] - tps_at - tps_prev),
                                0.0))
  total = 2.0 * n_pos * n_neg
  defined = (n_pos > 0) & (n_neg > 0)
  auc = jnp.where(defined, under / jnp.maximum(total, 1.0), jnp.nan)
  complement = jnp.where(defined, over / jnp.maximum(total, 1.0), jnp.nan)
  return auc, complement


def roc_auc_per_class(probs: jax.Array, targets: jax.Array,
                      real=None) -> jax.Array:
  """ROC AUC of every class [C]; NaN where a class has one target value."""
  return _auc_parts(probs, targets, real)[0]


def _all_finite(probs, real):
  if real is None:
    return jnp.all(jnp.isfinite(probs))
  return jnp.all(jnp.isfinite(probs) | (real[:, None] == 0))


def aucroc(probs: jax.Array, targets: jax.Array, real=None,
           n_labels=None) -> jax.Array:
  """HEAR's `aucroc`: the mean AUC; NaN if any class is undefined or any
  score is not finite (scikit-learn raises there, HEAR returns NaN)."""
  return jnp.where(_all_finite(probs, real),
                   _class_mean(roc_auc_per_class(probs, targets, real),
                               n_labels), jnp.nan)


def d_prime(probs: jax.Array, targets: jax.Array, real=None,
            n_labels=None) -> jax.Array:
  """HEAR's `d_prime`: the mean of sqrt(2) * ndtri(AUC) over classes."""
  auc, complement = _auc_parts(probs, targets, real)
  z = jnp.where(auc > 0.5, -jax.scipy.special.ndtri(complement),
                jax.scipy.special.ndtri(auc))
  return jnp.where(_all_finite(probs, real),
                   _class_mean(z * jnp.sqrt(2.0).astype(jnp.float32),
                               n_labels), jnp.nan)


# HEAR's scene metric names (as `hear_jax.metrics`), each
# (probs [N, C], targets [N, C], real rows [N] or None, real classes or
# None) -> [] float32: the rows with `real` 0 and the classes from
# `n_labels` on (a bucket's padding) are left out.
SCENE: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "top1_acc": top1_accuracy,
    "pitch_acc": top1_accuracy,
    "chroma_acc": chroma_accuracy,
    "mAP": mean_average_precision,
    "aucroc": aucroc,
    "d_prime": d_prime,
}
