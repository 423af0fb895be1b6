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


# A last partial batch runs as a step of the next multiple of this many rows
# (its padding rows masked out), so one program serves every row count.
TAIL_ROWS = 128


def training_batches(n: int, batch_size: int, has_batch_norm: bool):
  """(batches per epoch, rows used per epoch)."""
  if n % batch_size == 1 and has_batch_norm:
    n -= 1  # PyTorch BatchNorm cannot train on a single row: drop it.
  return -(-n // batch_size), n


def tail_sizes(batch_size: int, counts=None, has_batch_norm: bool = True,
               max_rows: int | None = None) -> tuple[int, ...]:
  """The step sizes a last partial batch may run as: every multiple of
  `TAIL_ROWS` up to the batch size (any row count up to `max_rows`), or for
  these training row `counts` only the largest of their last batches (one
  step body)."""
  if counts is None:
    largest = batch_size if max_rows is None else min(batch_size, max_rows)
    return tuple(sorted({min(batch_size, k * TAIL_ROWS)
                         for k in range(1, -(-largest // TAIL_ROWS) + 1)}))
  tails = [training_batches(int(n), batch_size, has_batch_norm)[1]
           % batch_size for n in counts]
  return (max(tails),) if max(tails) else ()


def _epochs_fn(*, n_max: int, n_epochs: int, batch_size: int,
               tails: tuple[int, ...], multilabel: bool, shuffle: bool,
               has_bn: bool):
  """`train(st, numbers, rows, n, x, y, first_epoch) -> (st, losses)`: one
  member's `n_epochs` epochs from `first_epoch` on the first `n` of its
  `rows` [N_max] (shared with other members or its own), and each epoch's
  mean batch loss [n_epochs].

  The row count is a traced number, so one program serves every count up to
  N_max (`buckets`): the full batches run in a loop of as many steps as the
  count has, and the last partial batch as a step of the first of `tails`
  that holds it (one branch per size, `tail_sizes`), its padding rows
  masked out of the loss and the BatchNorm statistics. Shuffled, an
  epoch's order is the argsort of one uniform draw per slot (the padding
  slots last), the same numbers for the real rows whatever N_max is."""
  tx = members_lib.adam()

  def gradients(st, numbers, xb, yb, mask):
    """(loss, new BatchNorm state, gradients) of one batch."""
    key = jax.random.fold_in(numbers.dropout_key, st.step)

    def loss_fn(params):
      logits, bn_state = mlp.apply_mlp(params, st.bn_state, xb, train=True,
                                       dropout=numbers.dropout, key=key,
                                       mask=mask, n_labels=numbers.n_labels)
      return (mlp.head_loss(logits, yb, multilabel=multilabel, mask=mask,
                            n_labels=numbers.n_labels), bn_state)

    (loss, bn_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        st.params)
    return loss, bn_state, grads

  def update(st, bn_state, grads):
    updates, opt_state = tx.update(grads, st.opt_state, st.params)
    params = optax.apply_updates(st.params, updates)
    return members_lib.TrainState(params, bn_state, opt_state, st.step + 1)

  sizes = list(tails)

  def train(st, numbers, member_rows, n, x, y, first_epoch):
    n_used = n - ((n % batch_size == 1) & has_bn)
    n_full = n_used // batch_size
    tail = n_used - n_full * batch_size
    # Branch 0: no partial batch; branch k: a step of sizes[k - 1] rows.
    branch = (jnp.where(tail > 0, jnp.searchsorted(jnp.array(sizes), tail) + 1,
                        0) if sizes else 0)

    def epoch_body(st, epoch):
      epoch_key = jax.random.fold_in(numbers.shuffle_key, epoch)
      if shuffle:
        u = jax.random.uniform(epoch_key, (n_max,))
        order = jnp.argsort(jnp.where(jnp.arange(n_max) < n, u, 2.0))
      else:
        order = jnp.arange(n_max)
      # Slot 0 past the end: a batch's slice never runs off the order.
      order = jnp.concatenate([order, jnp.zeros((batch_size,), order.dtype)])

      def batch(st, start, size, masked):
        picked = member_rows[jax.lax.dynamic_slice_in_dim(order, start, size)]
        mask = (((start + jnp.arange(size)) < n_used).astype(jnp.float32)
                if masked else None)
        return gradients(st, numbers, x[picked], y[picked], mask)

      def full_body(b, carry):
        st, total = carry
        loss, bn_state, grads = batch(st, b * batch_size, batch_size, False)
        return update(st, bn_state, grads), total + loss

      st, total = jax.lax.fori_loop(0, n_full, full_body, (st, 0.0))
      # Only the gradients are compiled once per size; the Adam update of
      # the last batch, once after them.
      no_step = lambda st: (jnp.float32(0), st.bn_state,
                            jax.tree.map(jnp.zeros_like, st.params))
      loss, bn_state, grads = jax.lax.switch(branch, [no_step] + [
          functools.partial(lambda size, st: batch(
              st, n_full * batch_size, size, True), size) for size in sizes],
                                             st)
      st = jax.lax.cond(tail > 0, update, lambda st, *_: st, st, bn_state,
                        grads)
      steps = n_full + (tail > 0)
      return st, (total + loss) / jnp.maximum(steps, 1).astype(jnp.float32)

    return jax.lax.scan(epoch_body, st, first_epoch + jnp.arange(n_epochs))

  return train


def _outputs_fn(*, n: int, chunk: int, multilabel: bool, with_logits: bool):
  """`outputs(params, bn_state, rows, n_real, x, y, n_labels) -> (probs,
  logits or None, loss or None)`: one member's eval-mode outputs on its
  rows [n], computed for the first `n_real` (traced) in chunks of `chunk`
  rows (the rest are zeros), and the loss over those."""
  n_chunks = -(-n // chunk)

  def outputs(p, b, member_rows, n_real, x, y, n_labels):
    rows = jnp.pad(member_rows, (0, n_chunks * chunk - n))

    def chunk_body(i, out):
      # Chunks bound the [rows, hidden] activations on large splits.
      r = jax.lax.dynamic_slice_in_dim(rows, i * chunk, chunk)
      logits = mlp.apply_mlp(p, b, x[r], n_labels=n_labels)[0]
      return jax.lax.dynamic_update_slice_in_dim(out, logits, i * chunk, 0)

    logits = jax.lax.fori_loop(
        0, -(-n_real // chunk), chunk_body,
        jnp.zeros((n_chunks * chunk, p["output"]["weight"].shape[0]),
                  jnp.float32))[:n]
    loss = None
    if y is not None:
      real = (jnp.arange(n) < n_real).astype(jnp.float32)
      loss = mlp.head_loss(logits, y[member_rows], multilabel=multilabel,
                           mask=real, n_labels=n_labels)
    probs = mlp.head_probabilities(logits, multilabel=multilabel)
    return probs, logits if with_logits else None, loss

  return outputs


@functools.partial(jax.jit, static_argnames=(
    "n_epochs", "batch_size", "tails", "multilabel", "shuffle", "place"))
def train_chunk(state, members, active, x, y, rows, n_rows, first_epoch, *,
                n_epochs, batch_size, tails, multilabel, shuffle, place):
  """Trains every member for `n_epochs` epochs; frozen (and skipped, no
  compute) where ~active. Returns the new state and the mean batch loss of
  every epoch [n_epochs, M] (0 where frozen).

  `rows` [N] (every member trains on the same rows) or [M, N] (e.g. the
  folds of a k-fold task), of which each member's first `n_rows` [M] are
  real; `tails` as `tail_sizes` gives them; see `_epochs_fn`. Members run
  one after the other on each device
  (`members.map_members`), so a member's numbers are the same on any mesh.
  """
  own_rows = rows.ndim == 2
  train = _epochs_fn(
      n_max=rows.shape[-1], n_epochs=n_epochs, batch_size=batch_size,
      tails=tails, multilabel=multilabel, shuffle=shuffle,
      has_bn=bool(state.params["hidden"]))

  def member_chunk(member, data):
    st, numbers, on, n = member[:4]
    x, y, first_epoch = data[:3]
    member_rows = member[4] if own_rows else data[3]
    return jax.lax.cond(
        on, lambda st: train(st, numbers, member_rows, n, x, y, first_epoch),
        lambda st: (st, jnp.zeros((n_epochs,), jnp.float32)), st)

  per_member = (state, members, active, n_rows) + ((rows,) if own_rows
                                                   else ())
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
def evaluate_members(params, bn_state, x, y, rows, n_rows, n_labels=None, *,
                     multilabel, chunk, with_logits=False, place=None):
  """Eval-mode probs [M, N, C], logits (or None) and mean loss [M] (or None
  without targets `y`) on `rows` [N] (shared) or [M, N] (per member), of
  which each member's first `n_rows` [M] are real (the other rows' outputs
  are zeros, not in the loss); `n_labels` [M] masks a class bucket's
  padding (`mlp.apply_mlp`). Members run one after the other
  (`members.map_members`)."""
  own_rows = rows.ndim == 2
  outputs = _outputs_fn(n=rows.shape[-1], chunk=chunk,
                        multilabel=multilabel, with_logits=with_logits)

  def member_outputs(member, data):
    p, b, n_real, labels = member[:4]
    x, y = data[:2]
    member_rows = member[4] if own_rows else data[2]
    return outputs(p, b, member_rows, n_real, x, y, labels)

  per_member = (params, bn_state, n_rows, n_labels) + (
      (rows,) if own_rows else ())
  shared = (x, y) + (() if own_rows else (rows,))
  out = members_lib.map_members(member_outputs, place, per_member, shared)
  return members_lib.constrain(out, place and place.replicated)


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


@functools.partial(jax.jit, static_argnames=(
    "n_epochs", "batch_size", "tails", "multilabel", "shuffle", "metric",
    "maximize", "stop_on_non_finite", "chunk", "history", "place"))
def train_checks(state, best, monitor, members, x, y, train_rows, n_train,
                 valid_rows, n_valid, first_check, n_checks, max_checks,
                 patience, *, n_epochs, batch_size, tails, multilabel,
                 shuffle, metric, maximize, stop_on_non_finite, chunk,
                 history, place):
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
      n_max=train_rows.shape[-1], n_epochs=n_epochs, batch_size=batch_size,
      tails=tails, multilabel=multilabel, shuffle=shuffle,
      has_bn=bool(state.params["hidden"]))
  outputs = _outputs_fn(n=valid_rows.shape[-1], chunk=chunk,
                        multilabel=multilabel, with_logits=False)
  score_of = device_metrics.SCENE.get(metric)
  worst = jnp.float32(-jnp.inf if maximize else jnp.inf)

  def member_checks(member, data):
    st, kept, mon, numbers, trows, ntr, vrows, nva, last, wait_max = member
    x, y, first_check, n_checks, shared_train, shared_valid = data
    # Rows shared by every member come with the data (None per member).
    trows = shared_train if trows is None else trows
    vrows = shared_valid if vrows is None else vrows
    real = (jnp.arange(vrows.shape[0]) < nva).astype(jnp.float32)
    targets = y[vrows]

    def check(carry):
      i, st, kept, mon, hist = carry
      c = first_check + i
      st, losses = train(st, numbers, trows, ntr, x, y, c * n_epochs)
      probs, _, loss = outputs(st.params, st.bn_state, vrows, nva, x, y,
                               numbers.n_labels)
      score = (loss if metric == "valid_loss"
               else score_of(probs, targets, real, numbers.n_labels))
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

  # Counts are per member either way (`_epochs_fn`, `_outputs_fn`).
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
def one_label_each(y, rows, n):
  """Whether each of the first `n` of `rows` has exactly one positive
  target (rows padded to x's rows, so one program serves every split)."""
  ok = (jnp.sum(y[rows], axis=1) == 1) | (jnp.arange(rows.shape[0]) >= n)
  return jnp.all(ok)
