"""A k-nearest-neighbour probe: cosine similarity on L2-normalised embeddings.

The `config.probe.kind = "knn"` alternative to HEAR's trained heads. A query
row's probabilities are the mean of its k nearest training rows' targets: a
uniform vote, i.e. the fraction of neighbours in each class (sklearn's
`KNeighborsClassifier(k, weights="uniform", metric="cosine")`), and for
multilabel tasks and event frames, per label the fraction of neighbours that
have it. k is chosen on the validation split like a grid point (`fit_knn`).

  fits = fit_knn(train_x, train_y, valid_x, valid_y, ks=(1, 5, 10, 20, 50),
                 multilabel=False, score_fn=top1, maximize=True)
  best = max(fits, key=lambda f: f.best_score)   # protocol.py: ties -> first
  test = predict_split(best, test_x, test_y)     # .probs [N, C], .loss

  idx, sims = nearest_neighbours(query_x, train_x, k=5)    # [N, 5] each
  probs = knn_probabilities(train_x, train_y, query_x, k=5)

Similarities are computed in blocks of at most `query_chunk` x `train_chunk`
rows, with a running top-k merged across training blocks, so memory never
holds the N_query x N_train matrix. Ties go to the lower training row
(`lax.top_k` keeps the lower index first, and the running top-k always comes
before the next block), so results do not depend on the chunk sizes' tie
order and are deterministic. A zero embedding normalises to zero (similarity
0 to every row). Similarities use full float32 matmul precision, so GPUs and
TPUs rank neighbours as the CPU does.
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

# The k values tried on the validation split (kind="knn").
DEFAULT_KS = (1, 5, 10, 20, 50)
# Probabilities are clipped to [eps, 1 - eps] for the reported log loss: a
# vote gives exact zeros, whose log loss would be infinite (as sklearn's
# log_loss clips).
LOSS_EPS = 1e-7
# Floats of one [query rows, k, labels] gather of neighbour targets.
_VOTE_BUDGET = 1 << 24

ScoreFn = Callable[[np.ndarray], "float | tuple[float, Any]"]


@dataclasses.dataclass(frozen=True)
class KnnParams:
  """One kNN "grid point" (what the results document records as hparams)."""

  k: int
  similarity: str = "cosine"
  vote: str = "uniform"

  def __post_init__(self):
    if self.k < 1:
      raise ValueError(f"KnnParams.k: must be >= 1, got {self.k}")


@dataclasses.dataclass(frozen=True)
class KnnFit:
  """The kNN counterpart of `trainer.FitResult`, with the fields the
  protocol and the reports read (`best_score` is the validation score, NaN
  stored as the worst value; nothing is trained, so no epochs, checks or
  losses). `train_x` is the L2-normalised training set the votes come from.
  """

  hparams: KnnParams
  multilabel: bool
  best_score: float
  best_extra: Any  # the score_fn's extra (events: the post-processing)
  train_x: jax.Array
  train_y: jax.Array
  best_epoch: int = 0
  epochs_run: int = 0
  stop_reason: str = "knn"
  history: tuple = ()
  train_losses: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(0, np.float32))


class KnnPredictions(NamedTuple):
  probs: np.ndarray  # [N, C]
  loss: float | None  # clipped log loss, None without targets


def l2_normalize(x: jax.Array) -> jax.Array:
  """Rows scaled to unit L2 norm; zero rows stay zero."""
  x = jnp.asarray(x, jnp.float32)
  norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
  return x / jnp.where(norm > 0, norm, 1.0)


@functools.partial(jax.jit,
                   static_argnames=("k", "query_chunk", "train_chunk"))
def _neighbours(query, train, n_train, *, k, query_chunk, train_chunk):
  """Top-k (indices, similarities) of unit rows; both inputs padded to
  whole chunks, padded training rows masked out."""
  dim = query.shape[1]
  blocks = train.reshape(-1, train_chunk, dim)
  block_k = min(k, train_chunk)

  def search(q):
    def merge(best, block_and_index):
      block, b = block_and_index
      sims = jnp.matmul(q, block.T, precision=jax.lax.Precision.HIGHEST)
      rows = b * train_chunk + jnp.arange(train_chunk, dtype=jnp.int32)
      sims = jnp.where(rows < n_train, sims, -jnp.inf)
      top_sims, top = jax.lax.top_k(sims, block_k)
      # The running best (lower rows) first, so a tie keeps the lower row.
      sims = jnp.concatenate([best[0], top_sims], axis=1)
      rows = jnp.concatenate([best[1], rows[top]], axis=1)
      top_sims, top = jax.lax.top_k(sims, k)
      return (top_sims, jnp.take_along_axis(rows, top, axis=1)), None

    start = (jnp.full((q.shape[0], k), -jnp.inf, jnp.float32),
             jnp.full((q.shape[0], k), -1, jnp.int32))
    (sims, rows), _ = jax.lax.scan(
        merge, start, (blocks, jnp.arange(blocks.shape[0], dtype=jnp.int32)))
    return rows, sims

  rows, sims = jax.lax.map(search, query.reshape(-1, query_chunk, dim))
  return rows.reshape(-1, k), sims.reshape(-1, k)


def _pad_rows(x: jax.Array, multiple: int) -> jax.Array:
  pad = -x.shape[0] % multiple
  return jnp.pad(x, ((0, pad), (0, 0))) if pad else x


def _check_x(name: str, x: jax.Array) -> None:
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"knn: {name} {x.shape} must be a non-empty [N, D]")
  if not bool(jnp.all(jnp.isfinite(x))):
    raise ValueError(f"knn: {name} contains NaN or inf")


def nearest_neighbours(query: Any, train: Any, k: int, *,
                       query_chunk: int = 1024, train_chunk: int = 16384
                       ) -> tuple[np.ndarray, np.ndarray]:
  """The k most cosine-similar training rows of every query row.

  Returns (indices [Nq, k] int32, similarities [Nq, k] float32), most
  similar first, ties to the lower training index. Memory is bounded by one
  `query_chunk` x `train_chunk` block of similarities.
  """
  query, train = jnp.asarray(query, jnp.float32), jnp.asarray(train,
                                                               jnp.float32)
  _check_x("query", query)
  _check_x("train", train)
  if query.shape[1] != train.shape[1]:
    raise ValueError(f"knn: query has {query.shape[1]} dims, train "
                     f"{train.shape[1]}")
  n_query, n_train = query.shape[0], train.shape[0]
  if not 1 <= k <= n_train:
    raise ValueError(f"knn: k must be in [1, {n_train}] (training rows), "
                     f"got {k}")
  if query_chunk < 1 or train_chunk < 1:
    raise ValueError("knn: query_chunk and train_chunk must be >= 1")
  query_chunk, train_chunk = min(query_chunk, n_query), min(train_chunk,
                                                           n_train)
  rows, sims = _neighbours(
      _pad_rows(l2_normalize(query), query_chunk),
      _pad_rows(l2_normalize(train), train_chunk), jnp.int32(n_train),
      k=k, query_chunk=query_chunk, train_chunk=train_chunk)
  return np.asarray(rows[:n_query]), np.asarray(sims[:n_query])


@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def _vote(rows, train_y, *, k, chunk):
  labels = train_y.shape[1]
  blocks = rows[:, :k].reshape(-1, chunk, k)
  probs = jax.lax.map(lambda r: jnp.mean(train_y[r], axis=1), blocks)
  return probs.reshape(-1, labels)


def vote(neighbour_rows: Any, train_y: Any, k: int) -> np.ndarray:
  """Probabilities [Nq, C]: the mean target of each query's first `k`
  neighbours (`neighbour_rows` from `nearest_neighbours`, k <= its width)."""
  rows = jnp.asarray(neighbour_rows, jnp.int32)
  train_y = jnp.asarray(train_y, jnp.float32)
  if not 1 <= k <= rows.shape[1]:
    raise ValueError(f"knn vote: k must be in [1, {rows.shape[1]}], got {k}")
  chunk = max(1, min(rows.shape[0], _VOTE_BUDGET // (k * train_y.shape[1])))
  pad = -rows.shape[0] % chunk
  padded = jnp.pad(rows, ((0, pad), (0, 0))) if pad else rows
  return np.asarray(_vote(padded, train_y, k=k, chunk=chunk)[:rows.shape[0]])


def knn_probabilities(train_x: Any, train_y: Any, query_x: Any,
                      k: int) -> np.ndarray:
  """Class (or per-label) probabilities [Nq, C] of a k-NN uniform vote."""
  rows, _ = nearest_neighbours(query_x, train_x, k)
  return vote(rows, train_y, k)


def log_loss(probs: np.ndarray, y: np.ndarray, *, multilabel: bool) -> float:
  """The heads' loss on probabilities clipped to [LOSS_EPS, 1 - LOSS_EPS]:
  cross-entropy against argmax(target), or BCE averaged over labels."""
  p = np.clip(np.asarray(probs, np.float64), LOSS_EPS, 1 - LOSS_EPS)
  y = np.asarray(y, np.float64)
  if multilabel:
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
  return float(-np.mean(np.log(p[np.arange(len(y)), y.argmax(axis=1)])))


def _split(name: str, x: Any, y: Any, multilabel: bool):
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  _check_x(f"{name}_x", x)
  if y.ndim != 2 or y.shape[0] != x.shape[0]:
    raise ValueError(f"knn: {name}_y {y.shape} must be [N, C] with the "
                     f"{x.shape[0]} rows of {name}_x")
  if not multilabel and not bool(jnp.all(jnp.sum(y, axis=1) == 1)):
    raise ValueError(f"knn: {name}_y must have exactly one label per row for"
                     " a multiclass task")
  return x, y


def usable_ks(ks: Sequence[int], n_train: int) -> tuple[int, ...]:
  """`ks` capped at the training rows, duplicates dropped, order kept."""
  if not ks or any(int(k) < 1 for k in ks):
    raise ValueError(f"knn: ks must be a non-empty list of k >= 1, got "
                     f"{list(ks)}")
  return tuple(dict.fromkeys(min(int(k), n_train) for k in ks))


def fit_knn(train_x: Any, train_y: Any, valid_x: Any, valid_y: Any,
            ks: Sequence[int] = DEFAULT_KS, *, multilabel: bool,
            score_fn: ScoreFn | None, maximize: bool) -> list[KnnFit]:
  """One `KnnFit` per k of `usable_ks(ks)`, scored on the validation split.

  `score_fn(probs) -> float | (float, extra)` as for `trainer.fit_probes`;
  None monitors the validation log loss (`maximize=False`). The validation
  neighbours are searched once, at the largest k.
  """
  if score_fn is None and maximize:
    raise ValueError("fit_knn: score_fn=None monitors the validation loss, "
                     "which needs maximize=False")
  train_x, train_y = _split("train", train_x, train_y, multilabel)
  valid_x, valid_y = _split("valid", valid_x, valid_y, multilabel)
  if (train_x.shape[1] != valid_x.shape[1]
      or train_y.shape[1] != valid_y.shape[1]):
    raise ValueError(f"fit_knn: train ({train_x.shape[1]} dims, "
                     f"{train_y.shape[1]} labels) and valid ({valid_x.shape[1]}"
                     f" dims, {valid_y.shape[1]} labels) disagree")
  ks = usable_ks(ks, train_x.shape[0])
  train_x = l2_normalize(train_x)
  rows, _ = nearest_neighbours(valid_x, train_x, max(ks))
  worst = -math.inf if maximize else math.inf
  fits = []
  for k in ks:
    probs = vote(rows, train_y, k)
    extra = None
    if score_fn is None:
      score = log_loss(probs, np.asarray(valid_y), multilabel=multilabel)
    else:
      score = score_fn(probs)
      if isinstance(score, tuple):
        score, extra = score
    score = float(score)
    fits.append(KnnFit(KnnParams(k), multilabel,
                       worst if math.isnan(score) else score, extra,
                       train_x, train_y))
  return fits


def predict_split(fit: KnnFit, x: Any, y: Any = None) -> KnnPredictions:
  """The fit's probabilities for `x`, and its clipped log loss if `y`."""
  x = jnp.asarray(x, jnp.float32)
  _check_x("x", x)
  if y is not None and np.shape(y)[0] != x.shape[0]:
    raise ValueError(f"knn predict: y {np.shape(y)} must have one row per "
                     f"row of x {x.shape}")
  probs = knn_probabilities(fit.train_x, fit.train_y, x, fit.hparams.k)
  loss = None if y is None else log_loss(probs, np.asarray(y),
                                         multilabel=fit.multilabel)
  return KnnPredictions(probs, loss)
