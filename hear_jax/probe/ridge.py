"""A closed-form probe: ridge regression on standardised embeddings.

The `config.probe.kind = "ridge"` alternative to HEAR's trained heads (not
HEAR's protocol). Per task split, the training rows are standardised with
their own mean and std, the one-hot (multiclass) or multi-hot (multilabel,
event frames) targets are recoded to +-1, and

  W(alpha), b = argmin ||Y - X_s W - b||^2 + alpha ||W||^2

(scikit-learn's `Ridge(alpha, fit_intercept=True)` on X_s). The bias is the
targets' mean, because X_s is centred. One eigendecomposition per split
gives every alpha: X_s^T X_s = V diag(l) V^T (or the Gram matrix X_s X_s^T
when there are fewer rows than dimensions), and then
W(alpha) = B diag(1 / (l + alpha)) Q for a fixed basis B and projection Q,
so trying an alpha is a diagonal rescale and one matmul, never a new
factorisation. alpha is chosen on the validation split like a grid point,
from `DEFAULT_ALPHAS_PER_ROW` times the training rows (so the grid means the
same for small and large splits).

  fits = fit_ridge(train_x, train_y, valid_x, valid_y,
                   multilabel=False, score_fn=top1, maximize=True)
  best = max(fits, key=lambda f: f.best_score)   # protocol.py: ties -> first
  test = predict_split(best, test_x, test_y)     # .probs [N, C], .loss

  factors = factorize(train_x, 2 * train_y - 1)   # once per split
  w, b = weights(factors, alpha=10.0)   # on standardize(x, mean, scale)

Scores s = X_s W + b are on the +-1 scale: 0 is every label's decision
boundary. Probabilities are sigmoid(2 s) per label (multilabel, events) or
softmax(2 s) (multiclass): strictly monotone, so ranking metrics see the
scores' order, argmax is unchanged, and p > 0.5 (the event threshold) iff
s > 0; the slope 2 makes sigmoid(2 s) match (s + 1) / 2, the least-squares
estimate of p, near the boundary. The reported loss, and the validation
monitor of tasks that early-stop on the loss, is the mean squared error of
s against the +-1 targets: the probe's own objective.

Everything runs in float32 in jitted JAX on the default device, with
matmuls at full float32 precision (no TF32/bf16 passes on GPUs and TPUs);
centring and scaling before the products keep XᵀX well conditioned.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# alpha / training rows, log-spaced: 1e-4 ... 1e4 in half-decades (17).
DEFAULT_ALPHAS_PER_ROW = tuple(10.0 ** (k / 2) for k in range(-8, 9))
# Scores -> probabilities: sigmoid(2 s) ~ (s + 1) / 2 near s = 0.
PROBABILITY_SLOPE = 2.0

_HIGHEST = jax.lax.Precision.HIGHEST

ScoreFn = Callable[[np.ndarray], "float | tuple[float, Any]"]


@dataclasses.dataclass(frozen=True)
class RidgeParams:
  """One ridge "grid point" (what the results document records as hparams).

  `alpha` is scikit-learn's (the penalty on the summed squared error of the
  standardised training rows); `alpha_per_row` is the grid value it came
  from, alpha / training rows.
  """

  alpha: float
  alpha_per_row: float
  targets: str = "+-1"
  standardize: str = "train rows"

  def __post_init__(self):
    if not self.alpha > 0:
      raise ValueError(f"RidgeParams.alpha: must be > 0, got {self.alpha}")


class RidgeFactors(NamedTuple):
  """One split's factorisation: W(alpha) = basis @ (q / (eig + alpha))."""

  mean: jax.Array  # [D] training mean
  scale: jax.Array  # [D] training std (1 where it is 0)
  bias: jax.Array  # [C] the targets' training mean
  basis: jax.Array  # [D, r], r = min(rows, D)
  eig: jax.Array  # [r] eigenvalues, >= 0
  q: jax.Array  # [r, C]


@dataclasses.dataclass(frozen=True)
class RidgeFit:
  """The ridge counterpart of `trainer.FitResult`, with the fields the
  protocol and the reports read (`best_score` is the validation score, NaN
  stored as the worst value; nothing is trained, so no epochs, checks or
  losses). Every alpha's fit of a split shares one `factors`."""

  hparams: RidgeParams
  multilabel: bool
  best_score: float
  best_extra: Any  # the score_fn's extra (events: the post-processing)
  factors: RidgeFactors
  best_epoch: int = 0
  epochs_run: int = 0
  stop_reason: str = "ridge"
  history: tuple = ()
  train_losses: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.float32))


class RidgePredictions(NamedTuple):
  probs: np.ndarray  # [N, C]
  loss: float | None  # mean squared error on the +-1 scale, None without y


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.matmul(a, b, precision=_HIGHEST)


@jax.jit
def standardization(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(mean [D], std [D]) of the rows of x; a constant column's std is 1, so
  it standardises to 0 and gets no weight."""
  x = jnp.asarray(x, jnp.float32)
  mean = jnp.mean(x, axis=0)
  std = jnp.sqrt(jnp.mean(jnp.square(x - mean), axis=0))
  return mean, jnp.where(std > 0, std, 1.0)


@jax.jit
def standardize(x: jax.Array, mean: jax.Array, scale: jax.Array) -> jax.Array:
  return (jnp.asarray(x, jnp.float32) - mean) / scale


@functools.partial(jax.jit, static_argnames=("dual",))
def _factorize(x: jax.Array, y: jax.Array, *, dual: bool) -> RidgeFactors:
  mean, scale = standardization(x)
  xs = standardize(x, mean, scale)
  bias = jnp.mean(y, axis=0)
  yc = y - bias
  if dual:  # rows < dims: W = X^T (X X^T + alpha I)^-1 Y
    eig, u = jnp.linalg.eigh(_matmul(xs, xs.T))
    basis, q = _matmul(xs.T, u), _matmul(u.T, yc)
  else:  # W = (X^T X + alpha I)^-1 X^T Y
    eig, basis = jnp.linalg.eigh(_matmul(xs.T, xs))
    q = _matmul(basis.T, _matmul(xs.T, yc))
  # Rounding can leave a zero eigenvalue slightly negative.
  return RidgeFactors(mean, scale, bias, basis, jnp.maximum(eig, 0.0), q)


def factorize(x: Any, y_pm1: Any) -> RidgeFactors:
  """The eigendecomposition behind every alpha of one training set:
  x [N, D] raw embeddings, y_pm1 [N, C] targets (+-1)."""
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y_pm1, jnp.float32)
  return _factorize(x, y, dual=x.shape[0] < x.shape[1])


@jax.jit
def _weights(factors: RidgeFactors, alpha: jax.Array) -> jax.Array:
  return _matmul(factors.basis, factors.q / (factors.eig + alpha)[:, None])


@jax.jit
def _projected(factors: RidgeFactors, x: jax.Array) -> jax.Array:
  """Standardised rows in the eigenbasis: [N, r], computed once per split."""
  return _matmul(standardize(x, factors.mean, factors.scale), factors.basis)


@jax.jit
def _scores_at(factors: RidgeFactors, projected: jax.Array,
               alpha: jax.Array) -> jax.Array:
  return _matmul(projected, factors.q / (factors.eig + alpha)[:, None]
                 ) + factors.bias


def weights(factors: RidgeFactors, alpha: float) -> tuple[np.ndarray,
                                                          np.ndarray]:
  """(W [D, C], b [C]) of `alpha` on the standardised rows."""
  return (np.asarray(_weights(factors, jnp.float32(alpha))),
          np.asarray(factors.bias))


def probabilities(scores: Any, *, multilabel: bool) -> np.ndarray:
  """sigmoid(2 s) per label, or softmax(2 s) over classes."""
  logits = PROBABILITY_SLOPE * jnp.asarray(scores, jnp.float32)
  return np.asarray(jax.nn.sigmoid(logits) if multilabel
                    else jax.nn.softmax(logits, axis=-1))


def squared_error(scores: Any, y: Any) -> float:
  """Mean squared error of scores against the +-1 recoding of y (0/1)."""
  s = np.asarray(scores, np.float64)
  return float(np.mean(np.square(s - (2.0 * np.asarray(y, np.float64) - 1))))


def _check_x(name: str, x: jax.Array) -> None:
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"ridge: {name} {x.shape} must be a non-empty [N, D]")
  if not bool(jnp.all(jnp.isfinite(x))):
    raise ValueError(f"ridge: {name} contains NaN or inf")


def _split(name: str, x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  _check_x(f"{name}_x", x)
  if y.ndim != 2 or y.shape[0] != x.shape[0]:
    raise ValueError(f"ridge: {name}_y {y.shape} must be [N, C] with the "
                     f"{x.shape[0]} rows of {name}_x")
  return x, y


def check_alphas(alphas_per_row: Sequence[float]) -> tuple[float, ...]:
  """The grid as floats; refuses an empty grid or a value <= 0."""
  values = tuple(float(a) for a in alphas_per_row)
  if not values or not all(a > 0 and math.isfinite(a) for a in values):
    raise ValueError(f"ridge: alphas_per_row must be a non-empty list of "
                     f"finite values > 0, got {list(alphas_per_row)}")
  return values


def fit_ridge(train_x: Any, train_y: Any, valid_x: Any, valid_y: Any,
              alphas_per_row: Sequence[float] = DEFAULT_ALPHAS_PER_ROW, *,
              multilabel: bool, score_fn: ScoreFn | None,
              maximize: bool) -> list[RidgeFit]:
  """One `RidgeFit` per alpha (alpha_per_row x training rows), scored on
  the validation split, all from one factorisation of the training rows.

  `train_y`/`valid_y` are 0/1 targets [N, C] (one-hot or multi-hot).
  `score_fn(probs) -> float | (float, extra)` as for `trainer.fit_probes`;
  None monitors the validation squared error (`maximize=False`).
  """
  if score_fn is None and maximize:
    raise ValueError("fit_ridge: score_fn=None monitors the validation "
                     "squared error, which needs maximize=False")
  alphas_per_row = check_alphas(alphas_per_row)
  train_x, train_y = _split("train", train_x, train_y)
  valid_x, valid_y = _split("valid", valid_x, valid_y)
  if (train_x.shape[1] != valid_x.shape[1]
      or train_y.shape[1] != valid_y.shape[1]):
    raise ValueError(f"fit_ridge: train ({train_x.shape[1]} dims, "
                     f"{train_y.shape[1]} labels) and valid ({valid_x.shape[1]}"
                     f" dims, {valid_y.shape[1]} labels) disagree")
  factors = factorize(train_x, 2.0 * train_y - 1.0)
  projected = _projected(factors, valid_x)
  rows = train_x.shape[0]
  worst = -math.inf if maximize else math.inf
  fits = []
  for per_row in alphas_per_row:
    alpha = per_row * rows
    scores = np.asarray(_scores_at(factors, projected, jnp.float32(alpha)))
    extra = None
    if score_fn is None:
      score = squared_error(scores, valid_y)
    else:
      score = score_fn(probabilities(scores, multilabel=multilabel))
      if isinstance(score, tuple):
        score, extra = score
    score = float(score)
    fits.append(RidgeFit(RidgeParams(alpha, per_row), multilabel,
                         worst if math.isnan(score) else score, extra,
                         factors))
  return fits


@functools.partial(jax.jit, static_argnames=("dual",))
def _factorize_layers(x: jax.Array, y: jax.Array, *, dual: bool
                      ) -> RidgeFactors:
  return jax.vmap(lambda xl: _factorize(xl, y, dual=dual))(x)


_projected_layers = jax.jit(jax.vmap(_projected))
_scores_at_layers = jax.jit(jax.vmap(_scores_at, in_axes=(0, 0, None)))


def fit_ridge_layers(train_x: Any, train_y: Any, valid_x: Any, valid_y: Any,
                     alphas_per_row: Sequence[float] = DEFAULT_ALPHAS_PER_ROW,
                     *, multilabel: bool, score_fn: ScoreFn | None,
                     maximize: bool) -> list[list[RidgeFit]]:
  """`fit_ridge` for every layer at once: x [L, N, D] (the same rows and
  targets in every layer). One vmapped program factorises all layers and
  one scores every layer's validation rows per alpha; returns, per layer,
  the list `fit_ridge` would give for that layer alone."""
  if score_fn is None and maximize:
    raise ValueError("fit_ridge_layers: score_fn=None monitors the "
                     "validation squared error, which needs maximize=False")
  alphas_per_row = check_alphas(alphas_per_row)
  train_x = jnp.asarray(train_x, jnp.float32)
  valid_x = jnp.asarray(valid_x, jnp.float32)
  if train_x.ndim != 3 or valid_x.shape[::2] != train_x.shape[::2]:
    raise ValueError(f"fit_ridge_layers: train_x {train_x.shape} and valid_x"
                     f" {valid_x.shape} must be [L, N, D] with one L and D")
  for layer in range(train_x.shape[0]):
    _split("train", train_x[layer], train_y)
    _split("valid", valid_x[layer], valid_y)
  y = 2.0 * jnp.asarray(train_y, jnp.float32) - 1.0
  factors = _factorize_layers(train_x, y,
                              dual=train_x.shape[1] < train_x.shape[2])
  projected = _projected_layers(factors, valid_x)
  rows, layers = train_x.shape[1], train_x.shape[0]
  worst = -math.inf if maximize else math.inf
  per_layer = [jax.tree.map(lambda a, i=i: a[i], factors)
               for i in range(layers)]
  fits: list[list[RidgeFit]] = [[] for _ in range(layers)]
  for per_row in alphas_per_row:
    alpha = per_row * rows
    scores = np.asarray(_scores_at_layers(factors, projected,
                                          jnp.float32(alpha)))
    for layer in range(layers):
      extra = None
      if score_fn is None:
        score = squared_error(scores[layer], valid_y)
      else:
        score = score_fn(probabilities(scores[layer], multilabel=multilabel))
        if isinstance(score, tuple):
          score, extra = score
      score = float(score)
      fits[layer].append(RidgeFit(
          RidgeParams(alpha, per_row), multilabel,
          worst if math.isnan(score) else score, extra, per_layer[layer]))
  return fits


def predict_scores(fit: RidgeFit, x: Any) -> np.ndarray:
  """Scores [N, C] on the +-1 scale for raw embeddings x."""
  x = jnp.asarray(x, jnp.float32)
  _check_x("x", x)
  if x.shape[1] != fit.factors.mean.shape[0]:
    raise ValueError(f"ridge predict: x has {x.shape[1]} dims, the fit "
                     f"{fit.factors.mean.shape[0]}")
  return np.asarray(_scores_at(fit.factors, _projected(fit.factors, x),
                               jnp.float32(fit.hparams.alpha)))


def predict_split(fit: RidgeFit, x: Any, y: Any = None) -> RidgePredictions:
  """The fit's probabilities for `x`, and its squared error if `y`."""
  scores = predict_scores(fit, x)
  if y is not None and np.shape(y)[0] != scores.shape[0]:
    raise ValueError(f"ridge predict: y {np.shape(y)} must have one row per "
                     f"row of x {np.shape(x)}")
  loss = None if y is None else squared_error(scores, y)
  return RidgePredictions(probabilities(scores, multilabel=fit.multilabel),
                          loss)
