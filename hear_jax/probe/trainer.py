"""Fits HEAR's shallow heads, many at once, on fixed embeddings.

hear-eval-kit trains one PyTorch-Lightning model per grid point and fold.
Here every head is a *member*; members that share an architecture
(hidden_layers, hidden_dim, batch_size, check_val_every_n_epoch) are one
vmapped program: learning rate (in the optimizer state via
`optax.inject_hyperparams`), initialization, dropout rate, patience,
max_epochs, PRNG key and the rows of the embedding matrix a member trains
and validates on are per-member numbers. The task's embeddings are on the
devices once (`stack_rows`); grid points share their rows, the folds of a
k-fold task are other rows. Members are spread over a ("members", "batch")
mesh of every device (`placement`). The epochs between two validation
checks run inside one jitted `lax.scan`; only the validation predictions
come back to the host, where each member's `score_fn` scores them and early
stopping (per member) decides. As members stop, the running ones move into
a smaller program (power-of-two sizes) when a chunk of epochs is worth the
compile, so stopped members stop costing compute.

  results = fit_probes(train_x, train_y, valid_x, valid_y, hear_grid(),
                       multilabel=False, score_fn=top1, maximize=True,
                       key=jax.random.key(0))
  best = max(results, key=lambda r: r.best_score)      # HEAR's selection
  probs = predict(best, test_x)                        # [N, C] numpy
  # Any members on one matrix, e.g. one point on every fold at once:
  results = fit_members(x, y, [Member(hp, key_i, train_rows_i, valid_rows_i,
                                      score_fn_i) for ...], ...)

`score_fn(probs[N, C]) -> float`, or `-> (float, extra)` where `extra`
(e.g. the chosen event post-processing) is kept with the best checkpoint
(`FitResult.best_extra`). It is called once per still-running member per
validation check, on that member's float32 validation probabilities (softmax
or sigmoid). With `score_fn=None` the monitor is the validation loss
(`maximize=False`), as for MAESTRO's `use_scoring_for_early_stopping=False`.

Protocol (hear-reference.md §5.3), with the choices this port makes:

- Batches of `batch_size` in data order; the last partial batch is kept
  (a step compiled for its size). A last batch of exactly one row is dropped
  when the head has BatchNorm (PyTorch raises on it; a single row has no
  unbiased variance).
- The Linear bias before each BatchNorm is kept out of the batch statistics
  (it cancels there) and enters only the running mean: its gradient is
  exactly zero, where PyTorch's rounding noise, rescaled by Adam, makes it
  drift at random (`mlp.apply_mlp`). Same function in exact arithmetic.
- Dropout masks come from a counter-based hash of each step's key, at
  16-bit resolution (`mlp.dropout_noise`): the drop rate is rounded to a
  multiple of 2^-16 (0.1 -> 0.1000061).
- No reshuffling by default (hear-eval-kit's k-fold-era behaviour);
  `shuffle_train=True` draws a new permutation every epoch from the member's
  key.
- Validation every `check_val_every_n_epoch` epochs on the whole split in
  eval mode. Monitor improvements are strict (a tie keeps the earlier
  checkpoint, min_delta 0); patience counts validation checks; a non-finite
  monitored value stops the member at that check (Lightning's
  `check_finite`; NaN never becomes the best unless it is the first check,
  where it is stored as the worst value, -inf for max / +inf for min, as
  Lightning's ModelCheckpoint does). `best_epoch` is the number of epochs
  trained at the best check (3, 6, ...), the checkpoint epoch hear-eval-kit
  reported under Lightning < 1.6 (Lightning 1.6 stores one less).
- Epochs after a member's last possible validation check (e.g. epochs 499
  and 500 with max_epochs=500, check every 3) cannot change its best
  checkpoint and are not run.
- The next chunk of epochs is dispatched before the current check is scored
  (host scoring overlaps device training); a member that stops at check k has
  thus trained one chunk more, which is discarded. Stopped members are frozen
  (jnp.where on a mask) and never evaluated again.

Keys: member i uses `fold_in(key, i)` (see `member_keys`); pass a batch of
M keys instead to control each member's key, e.g. to refit one member alone.
Its init, dropout and shuffle streams are `fold_in(member_key, 0/1/2)`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hear_jax import aligned_rows
from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import mlp
from hear_jax.probe.grid import HParams

ScoreFn = Callable[[np.ndarray], "float | tuple[float, Any]"]


class ValidationCheck(NamedTuple):
  epoch: int  # epochs trained when the check ran
  train_loss: float  # mean batch loss of the last epoch before the check
  valid_loss: float
  score: float  # the monitored value, as returned (may be NaN)


@dataclasses.dataclass(frozen=True)
class FitResult:
  """One member's outcome; `params`/`bn_state` are its best checkpoint."""

  hparams: HParams
  multilabel: bool
  best_score: float  # NaN stored as the worst value (see module docstring)
  best_epoch: int
  best_extra: Any  # the score_fn's extra at the best check, else None
  params: mlp.Params
  bn_state: mlp.BatchNormState
  epochs_run: int
  stop_reason: str  # "patience", "max_epochs" or "non_finite"
  history: tuple[ValidationCheck, ...]
  train_losses: np.ndarray  # [epochs_run] mean batch loss per epoch


class EarlyStoppingState(NamedTuple):
  """Per-member monitor state, all numpy arrays of shape [M]."""

  best: np.ndarray  # float64; NaN replaced by the worst value
  best_check: np.ndarray  # int; -1 before the first check
  wait: np.ndarray  # int; checks since the last improvement
  stopped: np.ndarray  # bool


def early_stopping_init(n_members: int, *, maximize: bool
                        ) -> EarlyStoppingState:
  worst = -np.inf if maximize else np.inf
  return EarlyStoppingState(
      best=np.full(n_members, worst), best_check=np.full(n_members, -1),
      wait=np.zeros(n_members, int), stopped=np.zeros(n_members, bool))


def early_stopping_step(state: EarlyStoppingState, scores: np.ndarray,
                        evaluated: np.ndarray, *, check: int,
                        patience: np.ndarray, maximize: bool,
                        stop_on_non_finite: bool = True
                        ) -> tuple[EarlyStoppingState, np.ndarray]:
  """One validation check for every member; returns (state, improved).

  Lightning's ModelCheckpoint + EarlyStopping(min_delta=0, check_finite):
  strict improvement, the first check always saves, and `patience` checks
  without improvement stop the member. Members not `evaluated` are untouched.
  """
  scores = np.asarray(scores, np.float64)
  worst = -np.inf if maximize else np.inf
  value = np.where(np.isnan(scores), worst, scores)
  better = value > state.best if maximize else value < state.best
  improved = evaluated & ((state.best_check < 0) | better)
  wait = np.where(improved, 0, np.where(evaluated, state.wait + 1, state.wait))
  stop = evaluated & (wait >= patience)
  if stop_on_non_finite:
    stop |= evaluated & ~np.isfinite(scores)
  return EarlyStoppingState(
      best=np.where(improved, value, state.best),
      best_check=np.where(improved, check, state.best_check),
      wait=wait, stopped=state.stopped | stop), improved


class Member(NamedTuple):
  """One head for `fit_members`: its grid point, PRNG key, the rows of `x`
  it trains and validates on, and its validation monitor (see `ScoreFn`;
  None monitors the validation loss)."""

  hparams: HParams
  key: jax.Array  # one typed PRNG key
  train_rows: np.ndarray  # int indices into x, in training order
  valid_rows: np.ndarray
  score_fn: ScoreFn | None


class Placement(NamedTuple):
  """Where a group's arrays live: a ("members", "batch") mesh over every
  device of every process. Member-stacked state is split over "members";
  each training batch over "batch" (BatchNorm's statistics and the weight
  gradients then sum across it); embeddings and outputs the host reads are
  replicated."""

  members: jax.sharding.NamedSharding  # leading member axis
  batch: jax.sharding.NamedSharding  # [rows, ...]
  member_batch: jax.sharding.NamedSharding  # [M, rows, ...]
  replicated: jax.sharding.NamedSharding


def placement(n_members: int, devices: Sequence[jax.Device] | None = None
              ) -> Placement | None:
  """The mesh for a group of `n_members` over `devices` (default: all of
  them, every process's); None on a single device (plain jit).

  Members go where they divide evenly (gcd of members and devices); the rest
  of the devices split the batch. The members' numbers do not depend on the
  layout: PRNG streams come from the member keys alone.
  """
  devices = list(jax.devices() if devices is None else devices)
  if len(devices) == 1:
    return None
  n_members_axis = math.gcd(n_members, len(devices))
  mesh = jax.sharding.Mesh(
      np.array(devices).reshape(n_members_axis, -1), ("members", "batch"))
  spec = jax.sharding.PartitionSpec
  named = lambda *s: jax.sharding.NamedSharding(mesh, spec(*s))
  return Placement(members=named("members"), batch=named("batch"),
                   member_batch=named("members", "batch"),
                   replicated=named())


def _constrain(tree, sharding):
  if sharding is None:
    return tree
  return jax.lax.with_sharding_constraint(tree, sharding)


def _to_device(a: np.ndarray, sharding) -> jax.Array:
  """A host array, whole on every device of `sharding` (or the default).

  Every host input of a program on a mesh goes through here: one left on
  the host gets a layout XLA picks, which jit reads back against the mesh
  of the program's first input, and that mesh may not express it (e.g. 4
  tiles on a mesh whose one axis has 8 devices)."""
  if sharding is None:
    return jax.device_put(a)
  # Built shard by shard so it also works when the mesh spans processes
  # (each process supplies its own devices' copies).
  a = np.asarray(a)
  return jax.make_array_from_callback(a.shape, sharding, lambda i: a[i])


_STACK_CHUNK_BYTES = 32 << 20
_EVAL_CHUNK_BYTES = 8 << 20


@functools.partial(jax.jit, donate_argnums=0)
def _write_rows(out, part, start):
  return jax.lax.dynamic_update_slice_in_dim(out, part, start, axis=0)


def stack_rows(parts: Sequence[np.ndarray],
               devices: Sequence[jax.Device] | None = None) -> jax.Array:
  """`np.concatenate(parts)` as float32 on every device (`devices`, default
  all), without a second host copy of the whole.

  On one CPU device the device array is host memory: the parts' own buffer
  when they are `aligned_rows.packed_rows` views in order (no copy at all),
  else a packed copy. On another single device the parts are written one
  after the other into a donated buffer, so the extra host memory is the
  largest slice."""
  parts = [np.asarray(p) for p in parts]
  shape = (sum(len(p) for p in parts),) + parts[0].shape[1:]
  place = placement(1, devices)
  if place is not None:
    # Across devices (or processes) the array is made shard by shard.
    return _to_device(np.concatenate(parts).astype(np.float32),
                      place.replicated)
  device = (devices or jax.devices())[0]
  if device.platform == "cpu":
    whole = aligned_rows.end_to_end(parts)
    if whole is None:
      whole = aligned_rows.end_to_end(aligned_rows.packed_rows(parts))
    return jax.device_put(whole, device)
  out = jnp.zeros(shape, jnp.float32, device=device)
  row_bytes = 4 * max(1, math.prod(shape[1:]))
  step = max(1, _STACK_CHUNK_BYTES // row_bytes)
  start = 0
  for p in parts:
    # In slices, so the transfer buffer stays small next to the result.
    for i in range(0, len(p), step):
      piece = p[i:i + step].astype(np.float32, copy=False)
      out = _write_rows(out, jax.device_put(piece, out.sharding),
                        np.int32(start + i))
    start += len(p)
  return out


class _Members(NamedTuple):
  """Per-member numbers a group's program reads, each with leading dim M."""

  dropout: jax.Array  # float32
  dropout_key: jax.Array
  shuffle_key: jax.Array


class _TrainState(NamedTuple):
  params: mlp.Params
  bn_state: mlp.BatchNormState
  opt_state: optax.OptState
  step: jax.Array  # int32 optimizer steps taken; indexes the dropout stream


def _adam() -> optax.GradientTransformation:
  # Only the learning rate is injected; PyTorch Adam's other constants are
  # fixed so they stay out of the vmapped state.
  return optax.inject_hyperparams(
      optax.adam, static_args=("b1", "b2", "eps", "eps_root"))(
          learning_rate=0.0, b1=0.9, b2=0.999, eps=1e-8)


def member_keys(key: jax.Array, n_members: int) -> jax.Array:
  """M typed keys: `fold_in(key, i)` for a single key, else checked as is."""
  if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(jnp.asarray(key))
  if key.ndim == 0:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(
        jnp.arange(n_members))
  if key.shape != (n_members,):
    raise ValueError(f"fit_probes: key has shape {key.shape}; expected one key "
                     f"or {n_members} keys (one per hparams entry)")
  return key


@functools.partial(jax.jit, static_argnames=("shape", "impl", "place"))
def _init_members(key_data, xavier_normal, learning_rate, dropout, *, shape,
                  impl, place):
  """Stacked train state and per-member numbers for one group."""
  keys = jax.random.wrap_key_data(key_data, impl=impl)

  def one(key, normal, lr):
    params, bn_state = mlp.init_mlp(jax.random.fold_in(key, 0), shape, normal)
    opt_state = _adam().init(params)
    opt_state = opt_state._replace(
        hyperparams={**opt_state.hyperparams, "learning_rate": lr})
    return _TrainState(params, bn_state, opt_state, jnp.zeros((), jnp.int32))
  state = jax.vmap(one)(keys, xavier_normal, learning_rate)
  fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
  members = _Members(dropout, fold(keys, 1), fold(keys, 2))
  members_sharding = place and place.members
  return (_constrain(state, members_sharding),
          _constrain(members, members_sharding))


def _training_batches(n: int, batch_size: int, has_batch_norm: bool):
  """(batches per epoch, rows used per epoch)."""
  if n % batch_size == 1 and has_batch_norm:
    n -= 1  # PyTorch BatchNorm cannot train on a single row: drop it.
  return -(-n // batch_size), n


@functools.partial(jax.jit, static_argnames=(
    "n_epochs", "batch_size", "multilabel", "shuffle", "place"))
def _train_chunk(state, members, active, x, y, rows, n_rows, first_epoch, *,
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
  tx = _adam()

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
    new = _TrainState(params, bn_state, opt_state, st.step + 1)
    if mask is None:
      return new, loss, jnp.float32(1)
    has_rows = jnp.sum(mask) > 0
    new = jax.tree.map(lambda a, b: jnp.where(has_rows, a, b), new, st)
    return new, jnp.where(has_rows, loss, 0.0), has_rows.astype(jnp.float32)

  if shared:
    _, n_used = _training_batches(rows.shape[0], batch_size, has_bn)
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
      xb = _constrain(x[picked], batch_sharding)
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
  return new_state, _constrain(epoch_losses, place and place.replicated)


def _eval_chunk_rows(batch_size: int, in_dim: int, hidden_units: int) -> int:
  # Each chunk gathers its rows of x and holds every member's activations;
  # on wide embeddings a full eval batch of them costs more memory than the
  # heads do.
  row_bytes = 4 * (in_dim + hidden_units)
  return max(256, min(batch_size, _EVAL_CHUNK_BYTES // row_bytes))


@functools.partial(jax.jit, static_argnames=(
    "multilabel", "chunk", "with_logits", "place"))
def _evaluate_members(params, bn_state, x, y, rows, n_rows, *, multilabel,
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
  return _constrain(out, place and place.replicated)


@jax.jit
def _select(mask, new, old):
  def pick(a, b):
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)
  return jax.tree.map(pick, new, old)


def _take(tree, positions, *, sharding=None):
  """Members `positions` of a member-stacked pytree (a new layout), laid
  out by `sharding`."""
  source = jax.tree.leaves(tree)[0].sharding
  if isinstance(source, jax.sharding.NamedSharding):
    # A host input would get a layout XLA picks, read back against the
    # tree's mesh; placed whole on that mesh it needs none.
    positions = jax.device_put(np.asarray(positions, np.int32),
                               source.update(spec=jax.sharding.PartitionSpec()))
  return _take_into(sharding)(tree, positions)


@functools.cache
def _take_into(sharding):
  # The output's layout is given as out_shardings, not constrained inside:
  # a layout of another member count lives on another mesh, and jit reads
  # an inferred output sharding back against its first input's mesh, which
  # cannot express it (e.g. 2 members split in 2 on a 4 x 1 mesh).
  return jax.jit(lambda tree, positions: jax.tree.map(
      lambda a: a[positions], tree), out_shardings=sharding)


# A group moves its running members into a smaller program (one compile per
# power-of-two size) only when a member's chunk of epochs is at least this
# much matmul work; below it, compiling costs more than the stopped
# members' frozen compute it saves.
_COMPACT_MIN_FLOPS = 5e9


def _compact_size(n_running: int, n_members: int) -> int:
  return min(n_members, 1 << max(0, n_running - 1).bit_length())


@jax.jit
def _all_finite(x):
  # 0 * x is 0 for finite x and NaN for NaN or inf; summed, it fuses into one
  # pass, where all(isfinite(x)) materialised a boolean copy of x.
  return jnp.isfinite(jnp.sum(x * 0.0))


@jax.jit
def _one_label_each(y, rows):
  return jnp.all(jnp.sum(y[rows], axis=1) == 1)


def _check_rows(name: str, x, y, rows: np.ndarray, multilabel: bool):
  if rows.ndim != 1 or len(rows) == 0:
    raise ValueError(f"fit_members: {name} rows are empty")
  if rows.min() < 0 or rows.max() >= x.shape[0]:
    raise ValueError(f"fit_members: {name} rows must index x's {x.shape[0]}"
                     f" rows; got {rows.min()}..{rows.max()}")
  if not multilabel and not _one_label_each(y, rows):
    raise ValueError(f"fit_probes: {name}_y must have exactly one label per "
                     "row for a multiclass task")


def _group_key(hp: HParams):
  return (hp.hidden_layers, hp.hidden_dim, hp.batch_size,
          hp.check_val_every_n_epoch)


def fit_probes(train_x, train_y, valid_x, valid_y, hparams: Sequence[HParams],
               *, multilabel: bool, score_fn: ScoreFn | None, maximize: bool,
               key: jax.Array, shuffle_train: bool = False,
               stop_on_non_finite: bool = True,
               eval_batch_size: int = 4096,
               on_check: Callable[[int], None] | None = None,
               checkpoint: checkpoint_lib.ProbeCheckpoint | None = None,
               devices: Sequence[jax.Device] | None = None
               ) -> list[FitResult]:
  """Trains one head per `hparams` entry on one split; results in order.

  Args:
    train_x, valid_x: embeddings [N, D] (numpy or jax).
    train_y, valid_y: one-hot (multiclass) or multi-hot targets [N, C].
    hparams: the grid points; entries sharing an architecture are trained
      together as one vmapped program.
    multilabel: sigmoid + BCE (multilabel and event tasks) instead of
      softmax + cross-entropy.
    score_fn: host callback scoring one member's validation probabilities,
      or None to monitor the validation loss.
    maximize: the monitor's mode (False for losses and `segment_1s_er`).
    key: one PRNG key (member i uses fold_in(key, i)) or one key per member.
    Others: as `fit_members`.
  """
  if not hparams:
    raise ValueError("fit_probes: hparams is empty")
  for name, (a, b) in (("train", (train_x, train_y)),
                       ("valid", (valid_x, valid_y))):
    if np.ndim(a) != 2 or np.ndim(b) != 2 or np.shape(a)[0] != np.shape(b)[0]:
      raise ValueError(f"fit_probes: {name}_x {np.shape(a)} and {name}_y "
                       f"{np.shape(b)} must be [N, D] and [N, C] with the "
                       "same N")
    if np.shape(a)[0] == 0:
      raise ValueError(f"fit_probes: {name} split is empty")
  if (np.shape(train_x)[1] != np.shape(valid_x)[1]
      or np.shape(train_y)[1] != np.shape(valid_y)[1]):
    raise ValueError(f"fit_probes: train ({np.shape(train_x)[1]} dims, "
                     f"{np.shape(train_y)[1]} labels) and valid "
                     f"({np.shape(valid_x)[1]} dims, {np.shape(valid_y)[1]}"
                     " labels) disagree")
  n_train = np.shape(train_x)[0]
  cat = np.concatenate if isinstance(train_x, np.ndarray) else jnp.concatenate
  x = cat([train_x, valid_x]).astype(np.float32)
  y = cat([train_y, valid_y]).astype(np.float32)
  train_rows = np.arange(n_train)
  valid_rows = np.arange(n_train, x.shape[0])
  keys = member_keys(key, len(hparams))
  return fit_members(
      x, y, [Member(hp, keys[i], train_rows, valid_rows, score_fn)
             for i, hp in enumerate(hparams)],
      multilabel=multilabel, maximize=maximize, shuffle_train=shuffle_train,
      stop_on_non_finite=stop_on_non_finite, eval_batch_size=eval_batch_size,
      on_check=on_check, checkpoint=checkpoint, devices=devices)


def fit_members(x, y, members: Sequence[Member], *, multilabel: bool,
                maximize: bool, shuffle_train: bool = False,
                stop_on_non_finite: bool = True, eval_batch_size: int = 4096,
                on_check: Callable[[int], None] | None = None,
                checkpoint: checkpoint_lib.ProbeCheckpoint | None = None,
                devices: Sequence[jax.Device] | None = None
                ) -> list[FitResult]:
  """Trains every member's head; results in the same order.

  All members index one embedding matrix, placed on the devices once: a
  k-fold task's folds are rows of it, so the best grid point retrained on
  every other split is one program of k - 1 members, with no copy of the
  embeddings per split.

  Args:
    x: every row any member trains or validates on [N, D] (numpy or jax).
    y: the targets of those rows [N, C].
    members: what to train (`Member`); members sharing an architecture run
      as one vmapped program, spread over `devices` (`placement`).
    multilabel, maximize: as `fit_probes`; the monitor (score_fn or the
      validation loss) must be the same kind for every member.
    shuffle_train: reshuffle each member's training rows every epoch.
    stop_on_non_finite: Lightning's check_finite (see module docstring).
    eval_batch_size: rows per chunk of the eval-mode forward pass (fewer
      when a chunk's gathered rows and activations would pass 8 MB).
    on_check: progress callback, called after every validation check with
      the member-epochs it completed; a member that stops counts its
      remaining epochs as done, so the calls add up to
      sum(m.hparams.max_epochs for m in members).
    checkpoint: where each group saves its training state as it goes and
      resumes from, bit-identically (`hear_jax.probe.checkpoint`); on resume
      `on_check` is called once with the member-epochs already done. Not
      used when the devices span several processes (logged).
    devices: the devices to spread members and batches over (default: all
      devices of all processes).
  """
  if not members:
    raise ValueError("fit_members: no members")
  monitors = {m.score_fn is None for m in members}
  if len(monitors) > 1:
    raise ValueError("fit_members: either every member has a score_fn or "
                     "none has (the validation-loss monitor)")
  if monitors == {True} and maximize:
    raise ValueError("fit_probes: score_fn=None monitors the validation loss, "
                     "which needs maximize=False")
  if np.ndim(x) != 2 or np.ndim(y) != 2 or np.shape(x)[0] != np.shape(y)[0]:
    raise ValueError(f"fit_members: x {np.shape(x)} and y {np.shape(y)} must "
                     "be [N, D] and [N, C] with the same N")
  devices = list(jax.devices() if devices is None else devices)
  if checkpoint is not None and len({d.process_index for d in devices}) > 1:
    logging.info("probe checkpoints are not used across %d processes",
                 len({d.process_index for d in devices}))
    checkpoint = None
  # One copy of the embeddings on the devices, shared by every group
  # (`stack_rows` makes it; an array already there is used as is).
  if not isinstance(x, jax.Array) or x.dtype != jnp.float32:
    x = stack_rows([np.asarray(x)], devices)
  if not isinstance(y, jax.Array) or y.dtype != jnp.float32:
    y = stack_rows([np.asarray(y)], devices)
  spread = placement(1, devices)
  if spread is not None:
    x, y = (a if a.sharding == spread.replicated
            else jax.device_put(a, spread.replicated) for a in (x, y))
  if not _all_finite(x):
    bad = int(np.flatnonzero(~np.isfinite(np.asarray(x)).all(axis=1))[0])
    name = next((n for m in members for n, r in (("train", m.train_rows),
                                                 ("valid", m.valid_rows))
                 if bad in np.asarray(r)), "test")
    raise ValueError(f"fit_probes: {name}_x contains NaN or inf (row {bad} "
                     "of the embeddings)")
  checked = set()
  for m in members:
    for name, rows in (("train", m.train_rows), ("valid", m.valid_rows)):
      rows = np.asarray(rows)
      if (name, rows.tobytes()) not in checked:
        _check_rows(name, x, y, rows, multilabel)
        checked.add((name, rows.tobytes()))

  groups: dict[tuple, list[int]] = {}
  for i, m in enumerate(members):
    groups.setdefault(_group_key(m.hparams), []).append(i)
  results: list[FitResult | None] = [None] * len(members)
  for g, indices in enumerate(groups.values()):
    group = _GroupFit(
        [members[i] for i in indices], x, y, multilabel=multilabel,
        maximize=maximize, shuffle=shuffle_train,
        stop_on_non_finite=stop_on_non_finite, eval_batch_size=eval_batch_size,
        on_check=on_check, devices=devices)
    group.checkpoint, group.group_index = checkpoint, g
    for i, result in zip(indices, group.run()):
      results[i] = result
  return results


def _rows_on_device(rows: Sequence[np.ndarray], place):
  """Shared rows [N] when every member has the same, else [M, N_max] padded
  with row 0, and the counts [M]."""
  rows = [np.asarray(r, np.int32) for r in rows]
  counts = np.array([len(r) for r in rows], np.int32)
  replicated = place and place.replicated
  if all(len(r) == len(rows[0]) and np.array_equal(r, rows[0])
         for r in rows):
    return _to_device(rows[0], replicated), _to_device(counts, replicated)
  padded = np.zeros((len(rows), counts.max()), np.int32)
  for i, r in enumerate(rows):
    padded[i, :len(r)] = r
  return _to_device(padded, replicated), _to_device(counts, replicated)


class _GroupFit:
  """The host loop for one architecture group: dispatch, score, stop."""

  def __init__(self, members, x, y, *, multilabel, maximize, shuffle,
               stop_on_non_finite, eval_batch_size, on_check=None,
               devices=None):
    self.members = members
    self.hparams = [m.hparams for m in members]
    self.keys = jnp.stack([m.key for m in members])
    self.score_fns = [m.score_fn for m in members]
    self.monitor_loss = members[0].score_fn is None
    self.on_check = on_check
    self.x, self.y = x, y
    self.multilabel = multilabel
    self.maximize = maximize
    self.shuffle, self.stop_on_non_finite = shuffle, stop_on_non_finite
    self.eval_batch_size = eval_batch_size
    self.place = placement(len(members), devices)
    hp = self.hparams[0]
    self.every = hp.check_val_every_n_epoch
    self.shape = mlp.MlpShape(
        in_dim=x.shape[1], n_labels=y.shape[1],
        hidden_layers=hp.hidden_layers, hidden_dim=hp.hidden_dim)
    self.train_rows, self.n_train = _rows_on_device(
        [m.train_rows for m in members], self.place)
    self.valid_rows, self.n_valid = _rows_on_device(
        [m.valid_rows for m in members], self.place)
    train_counts = np.array([len(m.train_rows) for m in members])
    for n in train_counts:
      if _training_batches(int(n), hp.batch_size, hp.hidden_layers > 0)[0] == 0:
        raise ValueError("fit_probes: a single training row cannot train a "
                         "head with BatchNorm")
    self.max_checks = np.array([h.max_epochs // self.every
                                for h in self.hparams])
    self.patience = np.array([h.patience for h in self.hparams])
    self.state, self.members_state = _init_members(
        np.asarray(jax.random.key_data(self.keys)),
        np.array([h.initialization == "xavier_normal" for h in self.hparams]),
        np.array([h.lr for h in self.hparams], np.float32),
        np.array([h.dropout for h in self.hparams], np.float32),
        shape=self.shape, impl=jax.random.key_impl(self.keys),
        place=self.place)
    # Which member each position of the device state holds (-1: padding).
    # As members stop, the running ones move into a smaller program, so
    # stopped members stop costing compute (`_layout_for`).
    self.slots = np.arange(len(members))
    self.devices = devices
    sizes = [self.shape.in_dim] + [self.shape.hidden_dim] * (
        self.shape.hidden_layers) + [self.shape.n_labels]
    chunk_flops = self.every * int(train_counts.max()) * (
        4 * sizes[0] * sizes[1]
        + 6 * sum(a * b for a, b in zip(sizes[1:-1], sizes[2:])))
    self.compact = chunk_flops >= _COMPACT_MIN_FLOPS
    self._layouts = {tuple(self.slots): (
        self.place, self.members_state, self.train_rows, self.n_train,
        self.valid_rows, self.n_valid)}

  def _layout_for(self, active: np.ndarray) -> np.ndarray:
    """The slots for a chunk training the `active` members: unchanged, or
    (when compacting and the running set changed) the running members first,
    padded to a power of two, so the layout depends on the running set
    alone (a resumed fit lays members out as the uninterrupted one)."""
    if not self.compact:
      return self.slots
    running = np.flatnonzero(active)
    size = _compact_size(len(running), len(self.hparams))
    slots = np.concatenate([running, np.full(size - len(running), -1)])
    if len(slots) == len(self.hparams) and np.array_equal(
        self.slots, np.arange(len(slots))):
      return self.slots  # full size: keep the initial layout
    return slots

  def _move_to(self, slots: np.ndarray) -> None:
    """Gathers the device state into the layout `slots`."""
    key = tuple(slots)
    if key not in self._layouts:
      members = [self.members[i] for i in np.maximum(slots, 0)]
      place = placement(len(slots), self.devices)
      members_state = _take(self.members_state, np.maximum(slots, 0),
                            sharding=place and place.members)
      train_rows, n_train = _rows_on_device(
          [m.train_rows for m in members], place)
      valid_rows, n_valid = _rows_on_device(
          [m.valid_rows for m in members], place)
      self._layouts = {key: (place, members_state, train_rows, n_train,
                             valid_rows, n_valid)}
    where = {member: pos for pos, member in enumerate(self.slots)}
    running = slots[slots >= 0]
    positions = np.array([where[i] for i in running]
                         + [where[running[0]]] * int((slots < 0).sum()))
    place = self._layouts[key][0]
    self.state = _take(self.state, positions,
                       sharding=place and place.members)
    self.slots = slots

  def _dispatch(self, check: int, active: np.ndarray):
    slots = self._layout_for(active)
    if not np.array_equal(slots, self.slots):
      self._move_to(slots)
    place, members_state, train_rows, n_train, valid_rows, n_valid = (
        self._layouts[tuple(self.slots)])
    on_mesh = lambda a: _to_device(a, place and place.replicated)
    self.state, epoch_losses = _train_chunk(
        self.state, members_state, on_mesh(
            np.where(self.slots >= 0, active[np.maximum(self.slots, 0)],
                     False)),
        self.x, self.y, train_rows, n_train,
        on_mesh(np.int32(check * self.every)),
        n_epochs=self.every, batch_size=self.hparams[0].batch_size,
        multilabel=self.multilabel, shuffle=self.shuffle, place=place)
    probs, _, loss = _evaluate_members(
        self.state.params, self.state.bn_state, self.x, self.y,
        valid_rows, n_valid, multilabel=self.multilabel,
        chunk=self._eval_rows(len(self.slots)), place=place)
    for a in (epoch_losses, loss) + ((probs,) if not self.monitor_loss
                                     else ()):
      a.copy_to_host_async()
    snapshot = (self.state.params, self.state.bn_state)
    return (check, snapshot, epoch_losses, probs, loss, self.state,
            self.slots)

  def _eval_rows(self, n_members: int) -> int:
    return _eval_chunk_rows(self.eval_batch_size, self.shape.in_dim,
                            n_members * self.shape.hidden_dim)

  def _full_state(self, state, slots: np.ndarray):
    """A train state in the initial layout (every member at its index; a
    member without a slot gets any slot's copy: it has stopped and is never
    trained again) for checkpoints."""
    if np.array_equal(slots, np.arange(len(self.hparams))):
      return state
    where = {member: pos for pos, member in enumerate(slots) if member >= 0}
    positions = np.array([where.get(i, 0) for i in range(len(self.hparams))])
    return _take(state, positions,
                 sharding=self.place and self.place.members)

  def _host_member(self, tree, i: int):
    """Member i's leaves as numpy arrays (gathered from every device)."""
    replicated = self.place and self.place.replicated
    return jax.tree.map(np.asarray, _member(
        tree, _to_device(np.int32(i), replicated), replicated=replicated))

  def run(self) -> list[FitResult]:
    m = len(self.hparams)
    es = early_stopping_init(m, maximize=self.maximize)
    best = (self.state.params, self.state.bn_state)
    extras: list[Any] = [None] * m
    history: list[list[ValidationCheck]] = [[] for _ in range(m)]
    losses: list[list[np.ndarray]] = [[] for _ in range(m)]
    reason = [""] * m
    last_check = np.full(m, -1)
    saved = self._restore()
    if saved is None:
      pending = deque([self._dispatch(0, np.ones(m, bool))])
      next_check = 1
    else:
      es, best, extras, reason, last_check = (
          EarlyStoppingState(*saved.early_stopping), saved.best,
          saved.extras, saved.reason, saved.last_check)
      history = [[ValidationCheck(int(r[0]), *map(float, r[1:])) for r in h]
                 for h in saved.history]
      losses = [list(l) for l in saved.losses]
      pending, next_check = deque(), saved.check + 1
      if saved.next_active is not None:
        # Redo the chunk the interrupted loop had dispatched, from the
        # state it was dispatched from, with the same mask.
        self.state = saved.train_state
        pending.append(self._dispatch(next_check, saved.next_active))
        next_check += 1
      if self.on_check is not None:
        done = np.where(es.stopped, [h.max_epochs for h in self.hparams],
                        (last_check + 1) * self.every)
        self.on_check(int(done.sum()))
    self._saved_at = (saved.check if saved else -1, time.monotonic())
    while pending:
      running = ~es.stopped & (next_check < self.max_checks)
      next_active = None
      if next_check < self.max_checks.max() and running.any():
        # Speculative: train the next chunk while the host scores this one.
        pending.append(self._dispatch(next_check, running))
        next_check += 1
        next_active = running
      (check, snapshot, epoch_losses, probs, loss, state,
       slots) = pending.popleft()
      evaluated = ~es.stopped
      # Back from the chunk's layout to one entry per member.
      position = np.full(m, -1)
      position[slots[slots >= 0]] = np.flatnonzero(slots >= 0)
      evaluated &= position >= 0
      epoch_losses = np.asarray(epoch_losses)[:, position]
      loss = np.asarray(loss, np.float64)[position]
      scores = np.full(m, np.nan)
      extras_now: dict[int, Any] = {}
      probs_host = None if self.monitor_loss else np.asarray(probs)
      for i in np.flatnonzero(evaluated):
        if self.monitor_loss:
          scores[i] = loss[i]
          continue
        out = self.score_fns[i](
            probs_host[position[i], :len(self.members[i].valid_rows)])
        score, extras_now[i] = out if isinstance(out, tuple) else (out, None)
        scores[i] = float(score)
      es_new, improved = early_stopping_step(
          es, scores, evaluated, check=check, patience=self.patience,
          maximize=self.maximize, stop_on_non_finite=self.stop_on_non_finite)
      for i in np.flatnonzero(improved):
        extras[i] = extras_now.get(i)
      for i in np.flatnonzero(evaluated):
        epoch = (check + 1) * self.every
        history[i].append(ValidationCheck(epoch, float(epoch_losses[-1, i]),
                                          float(loss[i]), float(scores[i])))
        losses[i].append(epoch_losses[:, i])
        last_check[i] = check
        if es_new.stopped[i]:
          reason[i] = ("non_finite" if self.stop_on_non_finite
                       and not np.isfinite(scores[i]) else "patience")
        elif check + 1 >= self.max_checks[i]:
          reason[i] = "max_epochs"
      stopped = es_new.stopped | (evaluated & (check + 1 >= self.max_checks))
      if self.on_check is not None:
        # Epochs trained at this check, plus the epochs a member now stopped
        # will never train (counted as done, so progress reaches its total).
        epoch = (check + 1) * self.every
        left = np.array([h.max_epochs for h in self.hparams]) - epoch
        self.on_check(int(evaluated.sum()) * self.every
                      + int(left[stopped & ~es.stopped].sum()))
      es = es_new._replace(stopped=stopped)
      if improved.any():
        # In the initial layout first, so both sides are on one mesh.
        best = _select(_to_device(improved, self.place
                                  and self.place.replicated),
                       self._full_state(snapshot, slots), best)
      if es.stopped.all():
        break
      if self._save_due(check):
        self._save(checkpoint_lib.GroupProgress(
            check, self._full_state(state, slots), best, tuple(es), extras,
            [np.array(h, np.float64) for h in history],
            [np.array(l) for l in losses], reason, last_check.copy(),
            next_active, done=False))
    if self.checkpoint is not None and not (saved and saved.done):
      self._save(checkpoint_lib.GroupProgress(
          int(last_check.max()), None, best, tuple(es), extras,
          [np.array(h, np.float64) for h in history],
          [np.array(l) for l in losses], reason, last_check.copy(), None,
          done=True))
    return [
        FitResult(
            hparams=hp, multilabel=self.multilabel,
            best_score=float(es.best[i]),
            best_epoch=int((es.best_check[i] + 1) * self.every),
            best_extra=extras[i],
            params=self._host_member(best[0], i),
            bn_state=self._host_member(best[1], i),
            epochs_run=int((last_check[i] + 1) * self.every),
            stop_reason=reason[i], history=tuple(history[i]),
            train_losses=np.concatenate(losses[i]))
        for i, hp in enumerate(self.hparams)]

  # Checkpointing (hear_jax.probe.checkpoint); inert without a checkpoint.
  checkpoint: checkpoint_lib.ProbeCheckpoint | None = None
  group_index: int = 0

  def _identity(self) -> dict[str, Any]:
    """What a saved state must have been made with to be resumed here."""
    rows = lambda ms, f: [zlib.crc32(np.asarray(getattr(m, f), np.int64)
                                     .tobytes()) for m in ms]
    return {
        "hparams": [dataclasses.asdict(h) for h in self.hparams],
        "keys": np.asarray(jax.random.key_data(self.keys)).tolist(),
        "data": [list(self.x.shape), list(self.y.shape)],
        "train_rows": rows(self.members, "train_rows"),
        "valid_rows": rows(self.members, "valid_rows"),
        "options": [self.multilabel, self.maximize, self.shuffle,
                    self.stop_on_non_finite, self.monitor_loss]}

  def _restore(self) -> checkpoint_lib.GroupProgress | None:
    if self.checkpoint is None:
      return None
    saved = self.checkpoint.load(
        self.group_index, self._identity(), train_template=self.state,
        best_template=(self.state.params, self.state.bn_state))
    if saved is not None and self.place is not None:
      # Back onto the group's mesh, where the running program expects them.
      put = lambda t: jax.device_put(t, self.place.members)
      saved.best = put(saved.best)
      if saved.train_state is not None:
        saved.train_state = put(saved.train_state)
    return saved

  def _save_due(self, check: int) -> bool:
    if self.checkpoint is None:
      return False
    last_check, last_time = self._saved_at
    return self.checkpoint.due(check - last_check,
                               time.monotonic() - last_time)

  def _save(self, progress: checkpoint_lib.GroupProgress) -> None:
    self.checkpoint.save(self.group_index, self._identity(), progress)
    self._saved_at = (progress.check, time.monotonic())


@functools.partial(jax.jit, static_argnames=("replicated",))
def _member(tree, i, *, replicated=None):
  return _constrain(jax.tree.map(lambda a: a[i], tree), replicated)


class SplitPredictions(NamedTuple):
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
  # The head and rows go where x is (see `_to_device`).
  whole = (x.sharding.update(spec=jax.sharding.PartitionSpec())
           if isinstance(x.sharding, jax.sharding.NamedSharding) else None)
  expand = lambda a: _to_device(np.asarray(a)[None], whole)
  probs, logits, loss = _evaluate_members(
      jax.tree.map(expand, result.params),
      jax.tree.map(expand, result.bn_state),
      x, y, _to_device(rows.astype(np.int32), whole), None,
      multilabel=result.multilabel,
      chunk=_eval_chunk_rows(batch_size, x.shape[1], max(
          (layer["weight"].shape[0] for layer in result.params["hidden"]),
          default=0)),
      with_logits=True)
  return SplitPredictions(np.asarray(probs[0]), np.asarray(logits[0]),
                          None if y is None else float(loss[0]))


def predict(result: FitResult, x, *, batch_size: int = 4096) -> np.ndarray:
  """Probabilities [N, C] (softmax or sigmoid) of a fitted head."""
  return predict_split(result, x, batch_size=batch_size).probs
