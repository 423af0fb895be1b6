"""HEAR's shallow prediction head as pure functions over a params pytree.

The architecture of hear-eval-kit's `FullyConnectedPrediction`
(hear-reference.md §5.1): `hidden_layers` blocks of
Linear -> BatchNorm1d -> Dropout -> ReLU, then a Linear to the labels.
Every function is vmap-friendly: the initialization kind and the dropout
rate may be traced per-member values.

  shape = MlpShape(in_dim=512, n_labels=10, hidden_layers=2, hidden_dim=1024)
  params, bn = init_mlp(jax.random.key(0), shape, xavier_normal=True)
  logits, bn = apply_mlp(params, bn, x, train=True, dropout=0.1,
                         key=jax.random.key(1))
  loss = head_loss(logits, y, multilabel=False)
  probs = head_probabilities(apply_mlp(params, bn, x)[0], multilabel=False)

Params: {"hidden": ({"weight" [H, in], "bias", "scale", "offset"}, ...),
"output": {"weight" [C, in], "bias"}}; BatchNorm state: ({"mean", "var"}, ...)
with PyTorch's initial values (0 and 1). Weights are [out, in] as in
torch.nn.Linear: then the first layer's gradient (x^T times the backward
signal) comes out of XLA:CPU's matmul in the layout the weight and its Adam
moments have; stored [in, out], every Adam update read it transposed, which
cost a 4096-d head's 56-row batch half of its step.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np
import optax

BATCHNORM_EPS = 1e-5
# PyTorch's momentum: running = (1 - m) * running + m * batch.
BATCHNORM_MOMENTUM = 0.1
# The logit of a class past a head's real ones (`apply_mlp`'s n_labels):
# softmax and sigmoid give it exactly 0, and its loss term is exactly 0.
MASKED_LOGIT = -1e9

Params = dict
BatchNormState = tuple


@dataclasses.dataclass(frozen=True)
class MlpShape:
  """The static shape of a head: everything that changes compiled code."""

  in_dim: int
  n_labels: int
  hidden_layers: int
  hidden_dim: int


def _open_uniform(key: jax.Array, n: int) -> jax.Array:
  # U(-1, 1) without -1 itself, so erfinv below stays finite (as in
  # jax.random.normal).
  low = np.nextafter(np.float32(-1.0), np.float32(1.0))
  return jax.random.uniform(key, (n,), jnp.float32, low, 1.0)


def init_mlp(key: jax.Array, shape: MlpShape,
             xavier_normal: bool | jax.Array,
             n_labels: int | jax.Array | None = None
             ) -> tuple[Params, BatchNormState]:
  """Fresh parameters and BatchNorm running statistics for one head.

  Kernels follow torch.nn.init.xavier_uniform_ / xavier_normal_ (the normal
  one untruncated, as in PyTorch), with gain `calculate_gain(previous
  activation)`: 1 for the first Linear (HEAR assumes a linear activation
  before the embedding) and sqrt(2) for every Linear after a ReLU, the
  output layer included. Biases keep PyTorch's nn.Linear default
  U(+-1/sqrt(fan_in)). BatchNorm starts at scale 1, offset 0, running mean 0
  and running variance 1.

  `xavier_normal` may be a traced per-member bool: both variants come from
  the same uniform draw u (normal = sqrt(2) erfinv(u)), so one random op
  initialises the whole head, which keeps compilation short.

  `n_labels` (may be traced) is the task's class count when `shape.n_labels`
  is a bucket above it (`buckets`): the output layer's scale uses the real
  count, and its draw is laid out class after class (weights, then bias), so
  the real classes' parameters are those of an unpadded head.
  """
  dims = [shape.in_dim] + [shape.hidden_dim] * shape.hidden_layers
  dims.append(shape.n_labels)
  sizes = [a * b + b for a, b in zip(dims[:-1], dims[1:])]
  u = _open_uniform(key, sum(sizes))
  offsets = np.cumsum([0] + sizes)
  real_labels = shape.n_labels if n_labels is None else n_labels
  layers = []
  for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
    gain = 1.0 if i == 0 else math.sqrt(2.0)
    flat = u[offsets[i]:offsets[i + 1]]
    if i == len(dims) - 2:
      # The output layer: its fan-out is the real class count.
      std = gain * jnp.sqrt(2.0 / (fan_in + jnp.asarray(real_labels,
                                                         jnp.float32)))
      block = flat.reshape(fan_out, fan_in + 1)
      w, bias = block[:, :fan_in], block[:, fan_in] / math.sqrt(fan_in)
    else:
      std = gain * math.sqrt(2.0 / (fan_in + fan_out))
      w = flat[:fan_in * fan_out].reshape(fan_in, fan_out).T
      bias = flat[fan_in * fan_out:] / math.sqrt(fan_in)
    weight = jnp.where(xavier_normal,
                       std * math.sqrt(2.0) * jax.scipy.special.erfinv(w),
                       math.sqrt(3.0) * std * w)
    layers.append({"weight": weight, "bias": bias})
  hidden = tuple(
      {**layer, "scale": jnp.ones((shape.hidden_dim,), jnp.float32),
       "offset": jnp.zeros((shape.hidden_dim,), jnp.float32)}
      for layer in layers[:-1])
  bn_state = tuple(
      {"mean": jnp.zeros((shape.hidden_dim,), jnp.float32),
       "var": jnp.ones((shape.hidden_dim,), jnp.float32)}
      for _ in layers[:-1])
  return {"hidden": hidden, "output": layers[-1]}, bn_state


def _batch_statistics(h: jax.Array, w: jax.Array | None):
  """Mean and biased variance over the rows (those where `w` is 1), and
  the row count."""
  if w is None:
    mean = jnp.mean(h, axis=0)
    return mean, jnp.mean(jnp.square(h - mean), axis=0), h.shape[0]
  n = jnp.sum(w)
  mean = jnp.sum(h * w[:, None], axis=0) / n
  return mean, jnp.sum(jnp.square(h - mean) * w[:, None], axis=0) / n, n


def _normalize_forward(h, w, scale, offset):
  mean, var, n = _batch_statistics(h, w)
  rstd = jax.lax.rsqrt(var + BATCHNORM_EPS)
  y = (h - mean) * rstd
  y = y * scale + offset
  return (y, mean, var), (h, w, mean, rstd, scale, n)


def _normalize_backward(res, cotangents):
  # BatchNorm's closed-form gradient: two row reductions (sum dy, sum dy *
  # xhat) and one fused pass over the rows. Left to autodiff, the two-pass
  # statistics' derivative took about a fifth of a 512-d head's training
  # step on CPU; this is the same function in exact arithmetic.
  h, w, mean, rstd, scale, n = res
  dy, dmean, dvar = cotangents
  xhat = (h - mean) * rstd
  sum_dy = jnp.sum(dy, axis=0)
  sum_dy_xhat = jnp.sum(dy * xhat, axis=0)
  rows = 1.0 if w is None else w[:, None]
  # Through the statistics (the batch's rows only), then directly; dmean and
  # dvar are the cotangents of the returned statistics (zero in training,
  # where they only feed the running averages).
  through_stats = (rows / n) * (
      dmean - scale * rstd * sum_dy
      + (h - mean) * (2.0 * dvar - scale * rstd * rstd * sum_dy_xhat))
  dh = scale * rstd * dy + through_stats
  dw = None if w is None else jnp.zeros_like(w)
  return dh, dw, sum_dy_xhat, sum_dy


@jax.custom_vjp
def _normalize(h, w, scale, offset):
  """(scale * (h - mean) / sqrt(var + eps) + offset, mean, var) with the
  batch statistics of the rows where `w` is 1 (every row for w None)."""
  return _normalize_forward(h, w, scale, offset)[0]


_normalize.defvjp(_normalize_forward, _normalize_backward)


def batch_norm_train(h: jax.Array, layer: Params, stats: dict,
                     mask: jax.Array | None = None,
                     input_bias: jax.Array | None = None
                     ) -> tuple[jax.Array, dict]:
  """BatchNorm1d in training mode, with PyTorch's running-stat update.

  Normalises with the biased batch variance but feeds the unbiased one
  (n / (n - 1)) into the running variance, as torch does; a batch of one row
  therefore has no defined update (the trainer never builds one). `mask`
  [N] (1 = real row) restricts the statistics to the real rows of a padded
  batch. `input_bias`: the preceding Linear's bias when `h` was computed
  without it; it cancels in the normalisation, so only the running mean
  (what eval mode subtracts) takes it in. The gradient is BatchNorm's
  closed form (`_normalize_backward`), not autodiff of the statistics.
  """
  y, mean, var = _normalize(h, mask, layer["scale"], layer["offset"])
  n = h.shape[0] if mask is None else jnp.sum(mask)
  unbiased = var * (n / (max(n - 1, 1) if mask is None
                         else jnp.maximum(n - 1, 1)))
  if input_bias is not None:
    mean = mean + input_bias
  m = BATCHNORM_MOMENTUM
  new_stats = {"mean": (1 - m) * stats["mean"] + m * mean,
               "var": (1 - m) * stats["var"] + m * unbiased}
  return y, new_stats


@jax.custom_vjp
def _linear(h: jax.Array, weight: jax.Array) -> jax.Array:
  """h [N, in] times a torch.nn.Linear weight [out, in] -> [N, out]."""
  return h @ weight.T


def _linear_forward(h, weight):
  return h @ weight.T, (h, weight)


def _linear_backward(res, dz):
  h, weight = res
  # The weight gradient dz^T h as a plain matmul of a transposed copy of dz
  # (kept by the barrier: XLA would fold the transpose back into the dot).
  # As a contraction over both operands' batch dimension, XLA:CPU gave it a
  # generic kernel at 55-75 % of the matmul rate; the copy costs one pass
  # over [N, out]. Where h is the fixed embedding, the unused input
  # gradient below is dead code that XLA removes.
  dw = jax.lax.optimization_barrier(dz.T) @ h
  return dz @ weight, dw


_linear.defvjp(_linear_forward, _linear_backward)


def batch_norm_eval(h: jax.Array, layer: Params, stats: dict) -> jax.Array:
  y = (h - stats["mean"]) * jax.lax.rsqrt(stats["var"] + BATCHNORM_EPS)
  return y * layer["scale"] + layer["offset"]


def _mix32(z: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser: a bijection with full avalanche."""
  z = z ^ (z >> 16)
  z = z * jnp.uint32(0x85EBCA6B)
  z = z ^ (z >> 13)
  z = z * jnp.uint32(0xC2B2AE35)
  return z ^ (z >> 16)


def dropout_noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniform 16-bit integers (as int32) for dropout masks of `shape`.

  Two 32-bit words of `key`'s stream seed a counter-based hash (two rounds
  of MurmurHash3's finaliser over the element index), and every hashed word
  gives two masks' worth of bits. On CPU, Threefry bits for every unit cost
  a third of a 512-d head's training step; this is ten times cheaper, and
  like Threefry it depends on the key and the element index only (not on
  vmap, devices or sharding). The drop rate becomes
  `dropout_threshold(p) / 2**16` (0.1 -> 0.1000061).
  """
  n = math.prod(shape)
  seed = jax.random.bits(key, (2,), jnp.uint32)
  counter = jnp.arange((n + 1) // 2, dtype=jnp.uint32)
  words = _mix32(_mix32(counter ^ seed[0]) + seed[1])
  halves = jnp.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(-1)
  return halves[:n].reshape(shape).astype(jnp.int32)


def dropout_threshold(dropout: float | jax.Array) -> jax.Array:
  """The 16-bit cut below which `dropout_noise` drops a unit."""
  return jnp.round(jnp.asarray(dropout, jnp.float32) * 65536.0).astype(
      jnp.int32)


def apply_mlp(params: Params, bn_state: BatchNormState, x: jax.Array, *,
              train: bool = False, dropout: float | jax.Array = 0.0,
              key: jax.Array | None = None, mask: jax.Array | None = None,
              n_labels: jax.Array | None = None
              ) -> tuple[jax.Array, BatchNormState]:
  """Logits [N, C] and the (updated in training) BatchNorm state.

  In training mode BatchNorm uses batch statistics (over the rows where
  `mask` is 1, if given) and inverted dropout zeroes units with probability
  `dropout`, which needs `key`. In eval mode the running statistics are used
  and the state comes back unchanged.
  """
  hidden = params["hidden"]
  if train and key is None and hidden:
    raise ValueError("apply_mlp: train=True needs a dropout `key`")
  if train and hidden:
    # Per layer, [rows, width] from the element index: a batch padded with
    # rows (a bucketed last batch) gets its real rows' masks unchanged.
    width = hidden[0]["weight"].shape[0]
    noise = [dropout_noise(jax.random.fold_in(key, i), (x.shape[0], width))
             for i in range(len(hidden))]
  h = x
  new_state = []
  for i, (layer, stats) in enumerate(zip(hidden, bn_state)):
    if train:
      # The bias is left out of the batch statistics it would cancel in:
      # its gradient is then exactly zero, as in exact arithmetic. Added
      # and subtracted again (PyTorch), it gets rounding-noise gradients
      # that Adam scales up to a random walk, and eval-mode outputs then
      # depend on how a program happened to round (member count, devices).
      # Only a wide embedding's first layer gains from `_linear`'s weight
      # gradient (measured per training step on CPU: 18-24 % less time at
      # 4096-d, none at 2048-d, 10-20 % more at 128-512-d and for the
      # 1024-wide layers, where the copy costs more than the kernel saves).
      h = (_linear(h, layer["weight"]) if i == 0 and h.shape[1] > 2048
           else h @ layer["weight"].T)
      h, stats = batch_norm_train(h, layer, stats, mask,
                                  input_bias=layer["bias"])
      # Kept units times 1 / (1 - p), as PyTorch scales them. A division by
      # the broadcast keep probability is rewritten into this product in
      # some programs and not in others, which rounds differently.
      scale = 1.0 / (1.0 - jnp.asarray(dropout, jnp.float32))
      h = jnp.where(noise[i] >= dropout_threshold(dropout), h * scale, 0.0)
    else:
      h = batch_norm_eval(h @ layer["weight"].T + layer["bias"], layer,
                          stats)
    h = jax.nn.relu(h)
    new_state.append(stats)
  logits = h @ params["output"]["weight"].T + params["output"]["bias"]
  if n_labels is not None:
    logits = jnp.where(jnp.arange(logits.shape[-1]) < n_labels, logits,
                       MASKED_LOGIT)
  return logits, tuple(new_state)


def head_losses(logits: jax.Array, targets: jax.Array, *,
                multilabel: bool, n_labels: jax.Array | None = None
                ) -> jax.Array:
  """Per-row loss [N]: HEAR's loss before its mean reduction.

  Multiclass: cross-entropy against argmax(one-hot target). Multilabel (and
  every event task): BCE with logits, averaged over classes, so the mean of
  these rows is BCEWithLogitsLoss's mean over batch x classes (the first
  `n_labels` classes, if given: the others are a class bucket's padding).
  """
  if multilabel:
    bce = optax.sigmoid_binary_cross_entropy(logits, targets)
    if n_labels is None:
      return jnp.mean(bce, axis=-1)
    real = jnp.arange(bce.shape[-1]) < n_labels
    return jnp.sum(jnp.where(real, bce, 0.0), axis=-1) / n_labels
  labels = jnp.argmax(targets, axis=-1)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def head_loss(logits: jax.Array, targets: jax.Array, *, multilabel: bool,
              mask: jax.Array | None = None,
              n_labels: jax.Array | None = None) -> jax.Array:
  """HEAR's training loss: the mean of `head_losses` (over `mask`ed rows)."""
  losses = head_losses(logits, targets, multilabel=multilabel,
                       n_labels=n_labels)
  if mask is None:
    return jnp.mean(losses)
  return jnp.sum(losses * mask) / jnp.sum(mask)


def head_probabilities(logits: jax.Array, *, multilabel: bool) -> jax.Array:
  """Sigmoid (multilabel) or softmax (multiclass) over the last axis."""
  if multilabel:
    return jax.nn.sigmoid(logits)
  return jax.nn.softmax(logits, axis=-1)
