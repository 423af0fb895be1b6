"""The compiled programs of a probe fit: epochs of training, validation.

`train_chunk` trains every member of a group for a chunk of epochs (the
epochs between two validation checks) in one `lax.scan` per member,
skipped where a member has stopped; `evaluate_members` is the eval-mode
forward pass and loss on a split. `train_checks` runs many validation
checks in one dispatch: each member trains, validates, scores itself with
a device metric (`device_metrics`) and applies Lightning's checkpoint and
early-stopping rules on the device, until it stops or the dispatch's checks
are done, so nothing goes to the host between checks. All of them run on
the group's mesh (`members.placement`), each device taking its members one
after the other (`members.map_members`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from hear_jax.probe import device_metrics
from hear_jax.probe import members as members_lib
from hear_jax.probe import mlp

_EVAL_CHUNK_BYTES = 8 << 20


def training_batches(n: int, batch_size: int, has_batch_norm: bool):
  """(batches per epoch, rows used per epoch)."""
  if n % batch_size == 1 and has_batch_norm:
    n -= 1  # PyTorch BatchNorm cannot train on a single row: drop it.
  return -(-n // batch_size), n


def _epochs_fn(*, n_max: int, own_rows: bool, n_epochs: int, batch_size: int,
               multilabel: bool, shuffle: bool, has_bn: bool):
  """`train(st, numbers, rows, n, x, y, first_epoch) -> (st, losses)`: one
  member's `n_epochs` epochs from `first_epoch` on its `rows` ([N] shared,
  or its own [N_max] of which `n` are real), and each epoch's mean batch
  loss [n_epochs].

  Shared rows: the full batches of an epoch run in a `lax.scan` and the
  last partial batch is a second step body compiled for its own size, so
  no compute goes to padding. Own rows: batch b holds the member's rows
  [b*B, (b+1)*B); the slots past its end are masked out of the loss and the
  BatchNorm statistics, and a batch with no row at all is no step."""
  tx = members_lib.adam()

  def member_step(st, numbers, xb, yb, mask):
    key = jax.random.fold_in(numbers.dropout_key, st.step)

    def loss_fn(params):
      logits, bn_state = mlp.apply_mlp(params, st.bn_state, xb, train=True,
                                       dropout=numbers.dropout, key=key,
                                       mask=mask)
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

  if own_rows:
    n_batches = -(-n_max // batch_size)
    batch_sizes = [batch_size] * (n_batches - 1) + [
        n_max - (n_batches - 1) * batch_size]
  else:
    _, n_used = training_batches(n_max, batch_size, has_bn)
    batch_sizes = [batch_size] * (n_used // batch_size)
    if n_used % batch_size:
      batch_sizes.append(n_used % batch_size)
  n_full = sum(1 for s in batch_sizes if s == batch_size)

  def train(st, numbers, member_rows, n, x, y, first_epoch):
    if own_rows:
      n_used = n - ((n % batch_size == 1) & has_bn)

    def epoch_body(st, epoch):
      epoch_key = jax.random.fold_in(numbers.shuffle_key, epoch)
      if shuffle and own_rows:
        # The member's own rows first, in random order; padding slots last.
        u = jax.random.uniform(epoch_key, (n_max,))
        order = jnp.argsort(jnp.where(jnp.arange(n_max) < n, u, 2.0))
      elif shuffle:
        order = jax.random.permutation(epoch_key, n_max)

      def batch(st, start, size):
        slots = (jax.lax.dynamic_slice_in_dim(order, start, size) if shuffle
                 else start + jnp.arange(size))
        picked = member_rows[slots]
        mask = (((start + jnp.arange(size)) < n_used).astype(jnp.float32)
                if own_rows else None)
        return member_step(st, numbers, x[picked], y[picked], mask)

      sums, counts = 0.0, 0.0
      if n_full:
        def full_body(st, b):
          st, loss, has = batch(st, b * batch_size, batch_size)
          return st, (loss, has)
        st, (losses, has) = jax.lax.scan(full_body, st, jnp.arange(n_full))
        sums, counts = jnp.sum(losses), jnp.sum(has)
      if n_full < len(batch_sizes):
        st, loss, has = batch(st, n_full * batch_size, batch_sizes[-1])
        sums, counts = sums + loss, counts + has
      return st, sums / jnp.maximum(counts, 1.0)

    return jax.lax.scan(epoch_body, st, first_epoch + jnp.arange(n_epochs))

  return train


def _outputs_fn(*, n: int, own_rows: bool, chunk: int, multilabel: bool,
                with_logits: bool):
  """`outputs(params, bn_state, rows, n_real, x, y) -> (probs, logits or
  None, loss or None)`: one member's eval-mode outputs on its `n` rows
  (the loss over the first `n_real` of its own rows, or all shared rows)."""
  n_full, rest = divmod(n, chunk)

  def outputs(p, b, member_rows, n_real, x, y):
    logits_of = lambda r: mlp.apply_mlp(p, b, x[r])[0]
    parts = []
    if n_full:
      # Chunks bound the [rows, hidden] activations on large splits.
      _, full = jax.lax.scan(
          lambda c, i: (c, logits_of(jax.lax.dynamic_slice_in_dim(
              member_rows, i * chunk, chunk))), None, jnp.arange(n_full))
      parts.append(full.reshape(n_full * chunk, full.shape[-1]))
    if rest:
      parts.append(logits_of(member_rows[n_full * chunk:]))
    logits = jnp.concatenate(parts) if len(parts) > 1 else parts[0]
    loss = None
    if y is not None:
      real = ((jnp.arange(n) < n_real).astype(jnp.float32) if own_rows
              else None)
      loss = mlp.head_loss(logits, y[member_rows], multilabel=multilabel,
                           mask=real)
    probs = mlp.head_probabilities(logits, multilabel=multilabel)
    return probs, logits if with_logits else None, loss

  return outputs


@functools.partial(jax.jit, static_argnames=(
    "n_epochs", "batch_size", "multilabel", "shuffle", "place"))
def train_chunk(state, members, active, x, y, rows, n_rows, first_epoch, *,
                n_epochs, batch_size, multilabel, shuffle, place):
  """Trains every member for `n_epochs` epochs; frozen (and skipped, no
  compute) where ~active. Returns the new state and the mean batch loss of
  every epoch [n_epochs, M] (0 where frozen).

  `rows` [N] (every member trains on the same rows; `n_rows` unused) or
  [M, N_max] with each member's count in `n_rows` [M] (e.g. the folds of a
  k-fold task, padded to the longest); see `_epochs_fn`. Members run one
  after the other on each device (`members.map_members`), so a member's
  numbers are the same on any mesh.
  """
  own_rows = rows.ndim == 2
  train = _epochs_fn(
      n_max=rows.shape[-1], own_rows=own_rows, n_epochs=n_epochs,
      batch_size=batch_size, multilabel=multilabel, shuffle=shuffle,
      has_bn=bool(state.params["hidden"]))

  def member_chunk(member, data):
    st, numbers, on = member[:3]
    x, y, first_epoch = data[:3]
    member_rows, n = member[3:] if own_rows else (data[3], None)
    return jax.lax.cond(
        on, lambda st: train(st, numbers, member_rows, n, x, y, first_epoch),
        lambda st: (st, jnp.zeros((n_epochs,), jnp.float32)), st)

  per_member = (state, members, active) + ((rows, n_rows) if own_rows else ())
  shared = (x, y, first_epoch) + (() if own_rows else (rows,))
  new_state, epoch_losses = members_lib.map_members(member_chunk, place,
                                                    per_member, shared)
  return new_state, members_lib.constrain(epoch_losses.T,
                                          place and place.replicated)


def eval_chunk_rows(batch_size: int, in_dim: int, hidden_units: int) -> int:
  """Rows per chunk of one member's eval-mode forward pass."""
  # Each chunk gathers its rows of x and holds the member's activations; on
  # wide embeddings a full eval batch of them costs more memory than the
  # head does. The chunk never depends on the member count: a member's
  # numbers must not.
  row_bytes = 4 * (in_dim + hidden_units)
  return max(256, min(batch_size, _EVAL_CHUNK_BYTES // row_bytes))


@functools.partial(jax.jit, static_argnames=(
    "multilabel", "chunk", "with_logits", "place"))
def evaluate_members(params, bn_state, x, y, rows, n_rows, *, multilabel,
                     chunk, with_logits=False, place=None):
  """Eval-mode probs [M, N, C], logits (or None) and mean loss [M] (or None
  without targets `y`) on `rows` [N] (shared) or [M, N_max] (per member,
  `n_rows` [M] real; the padding rows' outputs are garbage, not in the
  loss). Members run one after the other (`members.map_members`)."""
  own_rows = rows.ndim == 2
  outputs = _outputs_fn(n=rows.shape[-1], own_rows=own_rows, chunk=chunk,
                        multilabel=multilabel, with_logits=with_logits)

  def member_outputs(member, data):
    p, b = member[:2]
    x, y = data[:2]
    member_rows, n_real = member[2:] if own_rows else (data[2], None)
    return outputs(p, b, member_rows, n_real, x, y)

  per_member = (params, bn_state) + ((rows, n_rows) if own_rows else ())
  shared = (x, y) + (() if own_rows else (rows,))
  out = members_lib.map_members(member_outputs, place, per_member, shared)
  return members_lib.constrain(out, place and place.replicated)


# Device monitors that can score a member's own (padded) validation rows:
# their per-row terms are masked; the others need every member to validate
# on the same rows.
MASKABLE_METRICS = frozenset({"valid_loss", "top1_acc", "pitch_acc",
                              "chroma_acc"})


class Monitor(NamedTuple):
  """Per-member early-stopping state on the device, each [M]."""

  best: jax.Array  # float32; NaN stored as the worst value
  best_check: jax.Array  # int32; -1 before the first check
  wait: jax.Array  # int32; checks since the last improvement
  stopped: jax.Array  # bool


class CheckHistory(NamedTuple):
  """What a `train_checks` dispatch did, per member (leading M)."""

  checks: jax.Array  # [M] int32: checks run (a member stops inside)
  train_loss: jax.Array  # [M, H, n_epochs]: each epoch's mean batch loss
  valid_loss: jax.Array  # [M, H]
  score: jax.Array  # [M, H] the monitored value (the loss for valid_loss)


def _member_score(metric: str, probs, targets, real):
  """The monitored metric of one member's validation outputs, its padding
  rows (`real` 0) left out (`MASKABLE_METRICS`)."""
  if real is None:
    return device_metrics.SCENE[metric](probs, targets)
  if metric == "chroma_acc":
    hit = (jnp.argmax(probs, 1) % 12) == (jnp.argmax(targets, 1) % 12)
  else:  # top1_acc, pitch_acc
    hit = jnp.argmax(probs, 1) == jnp.argmax(targets, 1)
  return jnp.sum(hit * real) / jnp.sum(real)


@functools.partial(jax.jit, static_argnames=(
    "n_epochs", "batch_size", "multilabel", "shuffle", "metric", "maximize",
    "stop_on_non_finite", "chunk", "history", "place"))
def train_checks(state, best, monitor, members, x, y, train_rows, n_train,
                 valid_rows, n_valid, first_check, n_checks, max_checks,
                 patience, *, n_epochs, batch_size, multilabel, shuffle,
                 metric, maximize, stop_on_non_finite, chunk, history,
                 place):
  """Up to `n_checks` (<= `history`) validation checks of every member in
  one dispatch: train `n_epochs` epochs, validate, score with `metric` (a
  `device_metrics.SCENE` name, or "valid_loss"), then Lightning's
  ModelCheckpoint + EarlyStopping(min_delta=0, check_finite), as
  `early_stopping.early_stopping_step` does on the host: a strict improvement (or
  the first check) keeps the params as the member's best, `patience` checks
  without one stop it, so does a non-finite score (`stop_on_non_finite`)
  and its `max_checks`. A stopped member runs nothing more.

  Returns (state, best, monitor, (CheckHistory, monitor) replicated for
  the host); check c of the dispatch is the member's check
  `first_check + c`. Each check is the same computation
  whatever `n_checks` is, so dispatch boundaries never change a number.
  """
  own_train, own_valid = train_rows.ndim == 2, valid_rows.ndim == 2
  train = _epochs_fn(
      n_max=train_rows.shape[-1], own_rows=own_train, n_epochs=n_epochs,
      batch_size=batch_size, multilabel=multilabel, shuffle=shuffle,
      has_bn=bool(state.params["hidden"]))
  outputs = _outputs_fn(n=valid_rows.shape[-1], own_rows=own_valid,
                        chunk=chunk, multilabel=multilabel, with_logits=False)
  worst = jnp.float32(-jnp.inf if maximize else jnp.inf)

  def member_checks(member, data):
    st, kept, mon, numbers, trows, ntr, vrows, nva, last, wait_max = member
    x, y, first_check, n_checks, shared_train, shared_valid = data
    # Rows shared by every member come with the data (None per member).
    trows = shared_train if trows is None else trows
    vrows = shared_valid if vrows is None else vrows
    real = ((jnp.arange(vrows.shape[0]) < nva).astype(jnp.float32)
            if own_valid else None)
    targets = y[vrows]

    def check(carry):
      i, st, kept, mon, hist = carry
      c = first_check + i
      st, losses = train(st, numbers, trows, ntr, x, y, c * n_epochs)
      probs, _, loss = outputs(st.params, st.bn_state, vrows, nva, x, y)
      score = (loss if metric == "valid_loss"
               else _member_score(metric, probs, targets, real))
      value = jnp.where(jnp.isnan(score), worst, score)
      better = value > mon.best if maximize else value < mon.best
      improved = (mon.best_check < 0) | better
      wait = jnp.where(improved, 0, mon.wait + 1)
      stop = (wait >= wait_max) | (c + 1 >= last)
      if stop_on_non_finite:
        stop |= ~jnp.isfinite(score)
      mon = Monitor(jnp.where(improved, value, mon.best),
                    jnp.where(improved, c, mon.best_check), wait, stop)
      kept = jax.tree.map(lambda a, b: jnp.where(improved, a, b),
                          (st.params, st.bn_state), kept)
      hist = CheckHistory(
          i + 1, hist.train_loss.at[i].set(losses),
          hist.valid_loss.at[i].set(loss), hist.score.at[i].set(score))
      return i + 1, st, kept, mon, hist

    hist = CheckHistory(jnp.int32(0),
                        jnp.zeros((history, n_epochs), jnp.float32),
                        jnp.zeros((history,), jnp.float32),
                        jnp.zeros((history,), jnp.float32))
    _, st, kept, mon, hist = jax.lax.while_loop(
        lambda carry: (carry[0] < n_checks) & ~carry[3].stopped, check,
        (jnp.int32(0), st, kept, mon, hist))
    return st, kept, mon, hist

  own = lambda rows, n: (rows, n) if rows.ndim == 2 else (None, n)
  per_member = (state, best, monitor, members, *own(train_rows, n_train),
                *own(valid_rows, n_valid), max_checks, patience)

  shared = (x, y, first_check, n_checks,
            None if own_train else train_rows,
            None if own_valid else valid_rows)
  state, best, monitor, hist = members_lib.map_members(
      member_checks, place, per_member, shared)
  # What the host reads, whole on every device (and so on every process);
  # the state and monitor stay split for the next dispatch.
  return state, best, monitor, members_lib.constrain(
      (hist, monitor), place and place.replicated)


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
