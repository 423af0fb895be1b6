"""The compiled programs of a probe fit: epochs of training, validation.

`train_chunk` trains every member of a group for a chunk of epochs (the
epochs between two validation checks) in one `lax.scan`, frozen where a
member has stopped; `evaluate_members` is the eval-mode forward pass and
loss on a split. Both run on the group's mesh (`members.placement`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from hear_jax.probe import members as members_lib
from hear_jax.probe import mlp

_EVAL_CHUNK_BYTES = 8 << 20


def training_batches(n: int, batch_size: int, has_batch_norm: bool):
  """(batches per epoch, rows used per epoch)."""
  if n % batch_size == 1 and has_batch_norm:
    n -= 1  # PyTorch BatchNorm cannot train on a single row: drop it.
  return -(-n // batch_size), n


@functools.partial(jax.jit, static_argnames=(
    "n_epochs", "batch_size", "multilabel", "shuffle", "place"))
def train_chunk(state, members, active, x, y, rows, n_rows, first_epoch, *,
                n_epochs, batch_size, multilabel, shuffle, place):
  """Trains every member for `n_epochs` epochs; frozen where ~active.

  `rows` [N] (every member trains on the same rows; `n_rows` unused) or
  [M, N_max] with each member's count in `n_rows` [M] (e.g. the folds of a
  k-fold task, padded to the longest). Shared rows: the full batches of an
  epoch run in a `lax.scan` and the last partial batch is a second step body
  compiled for its own size, so no compute goes to padding; each batch is
  broadcast to every member, whose first-layer matmuls fuse into one.
  Per-member rows: every member's batch b holds its rows [b*B, (b+1)*B);
  the slots past its end are masked out of the loss and the BatchNorm
  statistics, and a batch with no row at all is no step.
  """
  has_bn = bool(state.params["hidden"])
  shared = rows.ndim == 1
  tx = members_lib.adam()

  def member_step(st, dropout, dropout_key, xb, yb, mask):
    key = jax.random.fold_in(dropout_key, st.step)

    def loss_fn(params):
      logits, bn_state = mlp.apply_mlp(params, st.bn_state, xb, train=True,
                                       dropout=dropout, key=key, mask=mask)
      return (mlp.head_loss(logits, yb, multilabel=multilabel, mask=mask),
              bn_state)

    (loss, bn_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        st.params)
    updates, opt_state = tx.update(grads, st.opt_state, st.params)
    params = optax.apply_updates(st.params, updates)
    new = members_lib.TrainState(params, bn_state, opt_state, st.step + 1)
    if mask is None:
      return new, loss, jnp.float32(1)
    has_rows = jnp.sum(mask) > 0
    new = jax.tree.map(lambda a, b: jnp.where(has_rows, a, b), new, st)
    return new, jnp.where(has_rows, loss, 0.0), has_rows.astype(jnp.float32)

  if shared:
    _, n_used = training_batches(rows.shape[0], batch_size, has_bn)
    batch_sizes = [batch_size] * (n_used // batch_size)
    if n_used % batch_size:
      batch_sizes.append(n_used % batch_size)
    # Without shuffling every member sees the same batch: it is broadcast,
    # not gathered per member.
    data_axis = 0 if shuffle else None
    step_all = jax.vmap(member_step,
                        in_axes=(0, 0, 0, data_axis, data_axis, None))
    batch_sharding = place and (place.member_batch if shuffle else place.batch)
  else:
    n_max = rows.shape[1]
    n_used = n_rows - ((n_rows % batch_size == 1) & has_bn)
    n_batches = -(-n_max // batch_size)
    batch_sizes = [batch_size] * (n_batches - 1) + [
        n_max - (n_batches - 1) * batch_size]
    step_all = jax.vmap(member_step, in_axes=(0, 0, 0, 0, 0, 0))
    batch_sharding = place and place.member_batch

  def epoch_body(st, epoch):
    if shuffle and shared:
      order = jax.vmap(lambda k: jax.random.permutation(
          jax.random.fold_in(k, epoch), rows.shape[0]))(members.shuffle_key)
    elif shuffle:
      # Each member's own rows first, in random order; padding slots last.
      def member_order(k, n):
        u = jax.random.uniform(jax.random.fold_in(k, epoch), (n_max,))
        return jnp.argsort(jnp.where(jnp.arange(n_max) < n, u, 2.0))
      order = jax.vmap(member_order)(members.shuffle_key, n_rows)

    def batch(st, start, size):
      mask = None
      if shared:
        if shuffle:
          picked = rows[jax.lax.dynamic_slice_in_dim(order, start, size, 1)]
        else:
          picked = jax.lax.dynamic_slice_in_dim(rows, start, size)
      else:
        slots = start + jnp.arange(size)
        positions = order[:, slots] if shuffle else jnp.broadcast_to(
            slots, (rows.shape[0], size))
        picked = jnp.take_along_axis(rows, positions, axis=1)
        mask = (slots[None, :] < n_used[:, None]).astype(jnp.float32)
      xb = members_lib.constrain(x[picked], batch_sharding)
      return step_all(st, members.dropout, members.dropout_key, xb,
                      y[picked], mask)

    sums, counts = 0.0, 0.0
    n_full = sum(1 for s in batch_sizes if s == batch_size)
    if n_full:
      def full_body(st, b):
        st, loss, has = batch(st, b * batch_size, batch_size)
        return st, (loss, has)
      st, (losses, has) = jax.lax.scan(full_body, st, jnp.arange(n_full))
      sums, counts = jnp.sum(losses, 0), jnp.sum(has, 0)
    if n_full < len(batch_sizes):
      st, loss, has = batch(st, n_full * batch_size, batch_sizes[-1])
      sums, counts = sums + loss, counts + has
    return st, sums / jnp.maximum(counts, 1.0)

  new_state, epoch_losses = jax.lax.scan(
      epoch_body, state, first_epoch + jnp.arange(n_epochs))

  def keep_stopped(new, old):
    mask = active.reshape(active.shape + (1,) * (new.ndim - 1))
    return jnp.where(mask, new, old)

  new_state = jax.tree.map(keep_stopped, new_state, state)
  return new_state, members_lib.constrain(epoch_losses,
                                          place and place.replicated)


def eval_chunk_rows(batch_size: int, in_dim: int, hidden_units: int) -> int:
  """Rows per chunk of the eval-mode forward pass."""
  # Each chunk gathers its rows of x and holds every member's activations;
  # on wide embeddings a full eval batch of them costs more memory than the
  # heads do.
  row_bytes = 4 * (in_dim + hidden_units)
  return max(256, min(batch_size, _EVAL_CHUNK_BYTES // row_bytes))


@functools.partial(jax.jit, static_argnames=(
    "multilabel", "chunk", "with_logits", "place"))
def evaluate_members(params, bn_state, x, y, rows, n_rows, *, multilabel,
                      chunk, with_logits=False, place=None):
  """Eval-mode probs [M, N, C], logits (or None) and mean loss [M] (or None
  without targets `y`) on `rows` [N] (shared) or [M, N_max] (per member,
  `n_rows` [M] real; the padding rows' outputs are garbage, not in the
  loss)."""
  shared = rows.ndim == 1

  def logits_of(r):
    if shared:
      xr = x[r]
      return jax.vmap(lambda p, b: mlp.apply_mlp(p, b, xr)[0])(params,
                                                                bn_state)
    return jax.vmap(lambda p, b, ri: mlp.apply_mlp(p, b, x[ri])[0])(
        params, bn_state, r)

  n = rows.shape[-1]
  n_full, rest = divmod(n, chunk)
  parts = []
  if n_full:
    # Chunks bound the [M, rows, hidden] activations on large splits.
    _, full = jax.lax.scan(
        lambda c, i: (c, logits_of(jax.lax.dynamic_slice_in_dim(
            rows, i * chunk, chunk, axis=rows.ndim - 1))),
        None, jnp.arange(n_full))
    m, c = full.shape[1], full.shape[-1]
    parts.append(full.transpose(1, 0, 2, 3).reshape(m, n_full * chunk, c))
  if rest:
    parts.append(logits_of(rows[..., n_full * chunk:]))
  logits = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
  loss = None
  if y is not None:
    targets = y[rows]
    if shared:
      loss = jax.vmap(lambda lg: mlp.head_loss(
          lg, targets, multilabel=multilabel))(logits)
    else:
      real = (jnp.arange(n)[None, :] < n_rows[:, None]).astype(jnp.float32)
      loss = jax.vmap(lambda lg, t, m: mlp.head_loss(
          lg, t, multilabel=multilabel, mask=m))(logits, targets, real)
  probs = mlp.head_probabilities(logits, multilabel=multilabel)
  out = (probs, logits if with_logits else None, loss)
  return members_lib.constrain(out, place and place.replicated)


@jax.jit
def all_finite(x):
  """Whether every entry of x is finite, in one fused pass."""
  # 0 * x is 0 for finite x and NaN for NaN or inf; summed, it fuses into one
  # pass, where all(isfinite(x)) materialised a boolean copy of x.
  return jnp.isfinite(jnp.sum(x * 0.0))


@jax.jit
def one_label_each(y, rows):
  """Whether each of `rows` has exactly one positive target."""
  return jnp.all(jnp.sum(y[rows], axis=1) == 1)
