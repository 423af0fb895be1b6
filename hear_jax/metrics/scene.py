"""HEAR's scene (clip-level) metrics, vectorised over samples and classes.

Same numbers as hear-eval-kit's `heareval/score.py`, which calls
scikit-learn 1.9; scikit-learn itself is not needed here.

  probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
  onehot = np.array([[1, 0], [0, 1], [0, 1], [1, 0]])
  top1_accuracy(probs, onehot)             # 0.5
  mean_average_precision(probs, onehot)    # 0.666...
  aucroc(probs, onehot)                    # 0.5
  d_prime(probs, onehot)                   # 0.0

Every function takes `predictions[N, C]` (scores, usually probabilities)
and `targets[N, C]` (one-hot or multi-hot, values 0/1) and returns a float.
"""

from __future__ import annotations

import numpy as np
from scipy import special


def _check_inputs(
    predictions: np.ndarray, targets: np.ndarray, *, allow_non_finite: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  """Returns float64 predictions and 0/1 float64 targets, or raises ValueError."""
  predictions = np.asarray(predictions)
  targets = np.asarray(targets)
  if predictions.ndim != 2 or targets.ndim != 2:
    raise ValueError(
        "predictions and targets must be 2-D [N, C]; got shapes "
        f"{predictions.shape} and {targets.shape}"
    )
  if predictions.shape != targets.shape:
    raise ValueError(
        f"predictions shape {predictions.shape} != targets shape {targets.shape}"
    )
  if predictions.shape[0] == 0 or predictions.shape[1] == 0:
    raise ValueError(f"predictions/targets are empty: shape {predictions.shape}")
  if not np.issubdtype(predictions.dtype, np.number) and predictions.dtype != bool:
    raise ValueError(f"predictions must be numeric, got dtype {predictions.dtype}")
  predictions = predictions.astype(np.float64)
  targets_f = np.asarray(targets, dtype=np.float64)
  if not np.all((targets_f == 0) | (targets_f == 1)):
    raise ValueError("targets must contain only 0 and 1 (one-hot or multi-hot)")
  if not allow_non_finite and not np.all(np.isfinite(predictions)):
    raise ValueError("predictions contain NaN or infinity")
  return predictions, targets_f


def top1_accuracy(predictions: np.ndarray, targets: np.ndarray) -> float:
  """Fraction of rows where argmax(prediction) == argmax(target).

  As in HEAR, a multi-hot target counts as its first positive class and an
  all-zero target as class 0 (that is what `np.argmax` returns).
  """
  predictions, targets = _check_inputs(predictions, targets)
  correct = np.argmax(predictions, axis=1) == np.argmax(targets, axis=1)
  return int(np.count_nonzero(correct)) / len(targets)


def chroma_accuracy(predictions: np.ndarray, targets: np.ndarray) -> float:
  """Top-1 accuracy after mapping vocabulary indices to `index % 12`.

  HEAR applies `% 12` to vocabulary *indices*, which equals pitch chroma only
  because the NSynth vocabulary is every MIDI pitch in order; kept as is.
  """
  predictions, targets = _check_inputs(predictions, targets)
  predicted = np.argmax(predictions, axis=1) % 12
  target = np.argmax(targets, axis=1) % 12
  return int(np.count_nonzero(predicted == target)) / len(targets)


def _sorted_by_class(
    predictions: np.ndarray, targets: np.ndarray, *, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
  """Scores and targets as [C, N], each class's row sorted by score.

  Rows are contiguous, which makes the per-class gathers several times
  faster than along axis 0. Order within ties is arbitrary; the callers
  only use per-tie-group quantities.
  """
  scores = np.ascontiguousarray(predictions.T)
  order = np.argsort(-scores if descending else scores, axis=1)
  return (
      np.take_along_axis(scores, order, axis=1),
      np.take_along_axis(np.ascontiguousarray(targets.T), order, axis=1),
  )


def _tie_groups(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """First and last position of each entry's run of equal values, per row."""
  n = sorted_scores.shape[1]
  column = np.broadcast_to(np.arange(n), sorted_scores.shape)
  differs = sorted_scores[:, :-1] != sorted_scores[:, 1:]
  is_first = np.ones(sorted_scores.shape, dtype=bool)
  is_first[:, 1:] = differs
  is_last = np.ones(sorted_scores.shape, dtype=bool)
  is_last[:, :-1] = differs
  first = np.maximum.accumulate(np.where(is_first, column, -1), axis=1)
  last = np.minimum.accumulate(np.where(is_last, column, n)[:, ::-1], axis=1)[:, ::-1]
  return first, last


def average_precision_per_class(
    predictions: np.ndarray, targets: np.ndarray
) -> np.ndarray:
  """Uninterpolated average precision of every class, shape [C].

  AP = sum over distinct score thresholds (descending) of
  (recall step) x (precision at that threshold), as in
  `sklearn.metrics.average_precision_score`. Samples with equal scores form
  one threshold. A class with no positives scores 0.0 (scikit-learn 1.9
  sets its recall to 1 everywhere, so no recall step ever happens).
  """
  predictions, targets = _check_inputs(predictions, targets)
  scores, positives = _sorted_by_class(predictions, targets, descending=True)
  true_positives = np.cumsum(positives, axis=1)
  # Every sample of a tie group sees the precision at the group's end.
  _, group_last = _tie_groups(scores)
  precision_at_threshold = np.take_along_axis(true_positives, group_last, axis=1) / (
      group_last + 1
  )
  n_positive = true_positives[:, -1]
  summed = np.sum(positives * precision_at_threshold, axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    ap = np.where(n_positive > 0, summed / n_positive, 0.0)
  return ap


def mean_average_precision(predictions: np.ndarray, targets: np.ndarray) -> float:
  """HEAR's `mAP`: macro average of `average_precision_per_class`."""
  return float(np.mean(average_precision_per_class(predictions, targets)))


def _trapezoidal_auc(scores: np.ndarray, positives: np.ndarray) -> float:
  """One class's ROC AUC, with scikit-learn's exact arithmetic.

  The area is the same as the rank-sum (Mann-Whitney) form, but HEAR's
  d_prime takes norm.ppf of it, so a perfect class's rounding (1.0 or
  0.9999999999999998) decides between inf and about 8.3: follow
  `roc_curve(drop_intermediate=True)` and `np.trapezoid` step by step.
  """
  order = np.argsort(-scores, kind="stable")
  sorted_scores, sorted_pos = scores[order], positives[order]
  thresholds = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(scores) - 1]
  tps = np.cumsum(sorted_pos, dtype=np.float64)[thresholds]
  fps = 1 + thresholds.astype(np.float64) - tps
  if len(fps) > 2:
    keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
    fps, tps = fps[keep], tps[keep]
  tpr = np.r_[0.0, tps] / tps[-1]
  fpr = np.r_[0.0, fps] / fps[-1]
  return float(np.trapezoid(tpr, fpr))


def roc_auc_per_class(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """ROC AUC of every class, shape [C]; NaN where a class has one target value.

  One vectorised pass per class (sorting, cumulative counts, trapezoids), as
  scikit-learn computes it, so results agree to the last bit.
  """
  predictions, targets = _check_inputs(predictions, targets)
  auc = np.full(targets.shape[1], np.nan)
  n_positive = targets.sum(axis=0)
  for c in np.nonzero((n_positive > 0) & (n_positive < targets.shape[0]))[0]:
    auc[c] = _trapezoidal_auc(predictions[:, c], targets[:, c])
  return auc


def _auc_or_nan(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
  """AUCs per class, or None where HEAR's try/except would return NaN."""
  predictions, targets = _check_inputs(predictions, targets, allow_non_finite=True)
  # scikit-learn raises ValueError on NaN/inf scores; HEAR turns it into NaN.
  if not np.all(np.isfinite(predictions)):
    return None
  return roc_auc_per_class(predictions, targets)


def aucroc(predictions: np.ndarray, targets: np.ndarray) -> float:
  """HEAR's `aucroc`: macro-average ROC AUC; NaN if any class is undefined."""
  auc = _auc_or_nan(predictions, targets)
  return float("nan") if auc is None else float(np.mean(auc))


def d_prime(predictions: np.ndarray, targets: np.ndarray) -> float:
  """HEAR's `d_prime`: mean over classes of `norm.ppf(auc) * sqrt(2)`.

  NaN if any class's AUC is undefined; +inf/-inf where an AUC is exactly 1/0.
  """
  auc = _auc_or_nan(predictions, targets)
  if auc is None:
    return float("nan")
  # special.ndtri is scipy.stats.norm.ppf without the import cost.
  return float(np.mean(special.ndtri(auc) * np.sqrt(2.0)))
