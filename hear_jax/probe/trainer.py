"""Fits HEAR's shallow heads, many grid points at once, on fixed embeddings.

hear-eval-kit trains one PyTorch-Lightning model per grid point. Here the
grid points that share an architecture (hidden_layers, hidden_dim,
batch_size, check_val_every_n_epoch) are *members* of one vmapped program:
learning rate (in the optimizer state via `optax.inject_hyperparams`),
initialization, dropout rate, patience, max_epochs and PRNG key are
per-member numbers. The epochs between two validation checks run inside one
jitted `lax.scan`; only the validation predictions come back to the host,
where `score_fn` scores them and early stopping (per member) decides.

  results = fit_probes(train_x, train_y, valid_x, valid_y, hear_grid(),
                       multilabel=False, score_fn=top1, maximize=True,
                       key=jax.random.key(0))
  best = max(results, key=lambda r: r.best_score)      # HEAR's selection
  probs = predict(best, test_x)                        # [N, C] numpy

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
- Dropout masks are drawn at 16-bit resolution (`mlp.dropout_noise`): the
  drop rate is rounded to a multiple of 2^-16 (0.1 -> 0.1000061).
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
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

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


@functools.partial(jax.jit, static_argnames=("shape",))
def _init_members(keys, xavier_normal, learning_rate, dropout, *, shape):
  """Stacked train state and per-member numbers for one group."""
  def one(key, normal, lr):
    params, bn_state = mlp.init_mlp(jax.random.fold_in(key, 0), shape, normal)
    opt_state = _adam().init(params)
    opt_state = opt_state._replace(
        hyperparams={**opt_state.hyperparams, "learning_rate": lr})
    return _TrainState(params, bn_state, opt_state, jnp.zeros((), jnp.int32))
  state = jax.vmap(one)(keys, xavier_normal, learning_rate)
  fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
  return state, _Members(dropout, fold(keys, 1), fold(keys, 2))


def _training_batches(n: int, batch_size: int, has_batch_norm: bool):
  """(batches per epoch, rows used per epoch)."""
  if n % batch_size == 1 and has_batch_norm:
    n -= 1  # PyTorch BatchNorm cannot train on a single row: drop it.
  return -(-n // batch_size), n


@functools.partial(jax.jit, static_argnames=(
    "n_epochs", "batch_size", "multilabel", "shuffle"))
def _train_chunk(state, members, active, x, y, first_epoch, *, n_epochs,
                 batch_size, multilabel, shuffle):
  """Trains every member for `n_epochs` epochs; frozen where ~active.

  The full batches of an epoch run in a `lax.scan`; the last partial batch
  (if any) is a second step body compiled for its own row count, so no
  compute is spent on padding rows.
  """
  has_bn = bool(state.params["hidden"])
  _, n_used = _training_batches(x.shape[0], batch_size, has_bn)
  n_full, rest = divmod(n_used, batch_size)
  tx = _adam()

  def member_step(st, dropout, dropout_key, xb, yb):
    key = jax.random.fold_in(dropout_key, st.step)

    def loss_fn(params):
      logits, bn_state = mlp.apply_mlp(params, st.bn_state, xb, train=True,
                                       dropout=dropout, key=key)
      return mlp.head_loss(logits, yb, multilabel=multilabel), bn_state

    (loss, bn_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        st.params)
    updates, opt_state = tx.update(grads, st.opt_state, st.params)
    params = optax.apply_updates(st.params, updates)
    return _TrainState(params, bn_state, opt_state, st.step + 1), loss

  # Without shuffling every member sees the same batch: it is broadcast, not
  # gathered per member, and the members' first-layer matmuls fuse into one.
  data_axis = 0 if shuffle else None
  step_all = jax.vmap(member_step, in_axes=(0, 0, 0, data_axis, data_axis))

  def epoch_body(st, epoch):
    if shuffle:
      order = jax.vmap(lambda k: jax.random.permutation(
          jax.random.fold_in(k, epoch), x.shape[0]))(members.shuffle_key)

    def batch(st, start, size):
      if shuffle:
        rows = jax.lax.dynamic_slice_in_dim(order, start, size, axis=1)
        xb, yb = x[rows], y[rows]
      else:
        xb = jax.lax.dynamic_slice_in_dim(x, start, size)
        yb = jax.lax.dynamic_slice_in_dim(y, start, size)
      return step_all(st, members.dropout, members.dropout_key, xb, yb)

    losses = []
    if n_full:
      st, full = jax.lax.scan(
          lambda st, b: batch(st, b * batch_size, batch_size), st,
          jnp.arange(n_full))
      losses.append(full)
    if rest:
      st, last = batch(st, n_full * batch_size, rest)
      losses.append(last[None])
    return st, jnp.mean(jnp.concatenate(losses), axis=0)

  new_state, epoch_losses = jax.lax.scan(
      epoch_body, state, first_epoch + jnp.arange(n_epochs))

  def keep_stopped(new, old):
    mask = active.reshape(active.shape + (1,) * (new.ndim - 1))
    return jnp.where(mask, new, old)

  return jax.tree.map(keep_stopped, new_state, state), epoch_losses


@functools.partial(jax.jit,
                   static_argnames=("multilabel", "chunk", "with_logits"))
def _evaluate_members(params, bn_state, x, y, *, multilabel, chunk,
                      with_logits=False):
  """Eval-mode probs [M, N, C], logits [M, N, C] (or None) and mean loss [M]
  (or None without targets)."""
  def logits_of(rows):
    return jax.vmap(lambda p, b: mlp.apply_mlp(p, b, rows)[0])(params, bn_state)

  n = x.shape[0]
  n_full, rest = divmod(n, chunk)
  parts = []
  if n_full:
    # Chunks bound the [M, rows, hidden] activations on large splits.
    _, full = jax.lax.scan(
        lambda c, i: (c, logits_of(
            jax.lax.dynamic_slice_in_dim(x, i * chunk, chunk))),
        None, jnp.arange(n_full))
    m, c = full.shape[1], full.shape[-1]
    parts.append(full.transpose(1, 0, 2, 3).reshape(m, n_full * chunk, c))
  if rest:
    parts.append(logits_of(x[n_full * chunk:]))
  logits = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
  loss = None
  if y is not None:
    loss = jax.vmap(lambda lg: mlp.head_loss(lg, y, multilabel=multilabel))(
        logits)
  probs = mlp.head_probabilities(logits, multilabel=multilabel)
  return probs, logits if with_logits else None, loss


@jax.jit
def _select(mask, new, old):
  def pick(a, b):
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)
  return jax.tree.map(pick, new, old)


@jax.jit
def _split_facts(x, y):
  return jnp.all(jnp.isfinite(x)), jnp.all(jnp.sum(y, axis=1) == 1)


def _check_split(name: str, x, y, multilabel: bool):
  if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
    raise ValueError(f"fit_probes: {name}_x {x.shape} and {name}_y {y.shape} "
                     "must be [N, D] and [N, C] with the same N")
  if x.shape[0] == 0:
    raise ValueError(f"fit_probes: {name} split is empty")
  finite, one_label = _split_facts(x, y)
  if not finite:
    raise ValueError(f"fit_probes: {name}_x contains NaN or inf")
  if not multilabel and not one_label:
    raise ValueError(f"fit_probes: {name}_y must have exactly one label per "
                     "row for a multiclass task")


@jax.jit
def _member(tree, i):
  return jax.tree.map(lambda a: a[i], tree)


def _group_key(hp: HParams):
  return (hp.hidden_layers, hp.hidden_dim, hp.batch_size,
          hp.check_val_every_n_epoch)


def fit_probes(train_x, train_y, valid_x, valid_y, hparams: Sequence[HParams],
               *, multilabel: bool, score_fn: ScoreFn | None, maximize: bool,
               key: jax.Array, shuffle_train: bool = False,
               stop_on_non_finite: bool = True,
               eval_batch_size: int = 4096,
               on_check: Callable[[int], None] | None = None,
               checkpoint: checkpoint_lib.ProbeCheckpoint | None = None
               ) -> list[FitResult]:
  """Trains one head per `hparams` entry; results in the same order.

  Args:
    train_x, valid_x: embeddings [N, D] (numpy or jax; moved to the device
      once and shared by every member).
    train_y, valid_y: one-hot (multiclass) or multi-hot targets [N, C].
    hparams: the grid points; entries sharing an architecture are trained
      together as one vmapped program.
    multilabel: sigmoid + BCE (multilabel and event tasks) instead of
      softmax + cross-entropy.
    score_fn: host callback scoring one member's validation probabilities,
      or None to monitor the validation loss.
    maximize: the monitor's mode (False for losses and `segment_1s_er`).
    key: one PRNG key (member i uses fold_in(key, i)) or one key per member.
    shuffle_train: reshuffle the training rows every epoch.
    stop_on_non_finite: Lightning's check_finite (see module docstring).
    eval_batch_size: rows per chunk of the eval-mode forward pass.
    on_check: progress callback, called after every validation check with
      the member-epochs it completed; a member that stops counts its
      remaining epochs as done, so the calls add up to
      sum(h.max_epochs for h in hparams).
    checkpoint: where each group saves its training state as it goes and
      resumes from, bit-identically (`hear_jax.probe.checkpoint`); on resume
      `on_check` is called once with the member-epochs already done.
  """
  if not hparams:
    raise ValueError("fit_probes: hparams is empty")
  if score_fn is None and maximize:
    raise ValueError("fit_probes: score_fn=None monitors the validation loss, "
                     "which needs maximize=False")
  train_x = jnp.asarray(train_x, jnp.float32)
  train_y = jnp.asarray(train_y, jnp.float32)
  valid_x = jnp.asarray(valid_x, jnp.float32)
  valid_y = jnp.asarray(valid_y, jnp.float32)
  _check_split("train", train_x, train_y, multilabel)
  _check_split("valid", valid_x, valid_y, multilabel)
  if (train_x.shape[1] != valid_x.shape[1]
      or train_y.shape[1] != valid_y.shape[1]):
    raise ValueError(f"fit_probes: train ({train_x.shape[1]} dims, "
                     f"{train_y.shape[1]} labels) and valid ({valid_x.shape[1]}"
                     f" dims, {valid_y.shape[1]} labels) disagree")
  keys = member_keys(key, len(hparams))

  groups: dict[tuple, list[int]] = {}
  for i, hp in enumerate(hparams):
    groups.setdefault(_group_key(hp), []).append(i)
  results: list[FitResult | None] = [None] * len(hparams)
  for g, indices in enumerate(groups.values()):
    group = _GroupFit(
        [hparams[i] for i in indices], keys[jnp.asarray(indices)],
        (train_x, train_y), (valid_x, valid_y), multilabel=multilabel,
        score_fn=score_fn, maximize=maximize, shuffle=shuffle_train,
        stop_on_non_finite=stop_on_non_finite, eval_batch_size=eval_batch_size,
        on_check=on_check)
    group.checkpoint, group.group_index = checkpoint, g
    for i, result in zip(indices, group.run()):
      results[i] = result
  return results


class _GroupFit:
  """The host loop for one architecture group: dispatch, score, stop."""

  def __init__(self, hparams, keys, train, valid, *, multilabel, score_fn,
               maximize, shuffle, stop_on_non_finite, eval_batch_size,
               on_check=None):
    self.hparams = hparams
    self.keys = keys  # identifies a checkpoint's members
    self.on_check = on_check
    self.train, self.valid = train, valid
    self.multilabel, self.score_fn = multilabel, score_fn
    self.maximize = maximize
    self.shuffle, self.stop_on_non_finite = shuffle, stop_on_non_finite
    self.eval_batch_size = eval_batch_size
    hp = hparams[0]
    self.every = hp.check_val_every_n_epoch
    self.shape = mlp.MlpShape(
        in_dim=train[0].shape[1], n_labels=train[1].shape[1],
        hidden_layers=hp.hidden_layers, hidden_dim=hp.hidden_dim)
    n_batches, _ = _training_batches(train[0].shape[0], hp.batch_size,
                                     hp.hidden_layers > 0)
    if n_batches == 0:
      raise ValueError("fit_probes: a single training row cannot train a head "
                       "with BatchNorm")
    self.max_checks = np.array([h.max_epochs // self.every for h in hparams])
    self.patience = np.array([h.patience for h in hparams])
    self.state, self.members = _init_members(
        keys, jnp.array([h.initialization == "xavier_normal" for h in hparams]),
        jnp.array([h.lr for h in hparams], jnp.float32),
        jnp.array([h.dropout for h in hparams], jnp.float32), shape=self.shape)

  def _dispatch(self, check: int, active: np.ndarray):
    x, y = self.train
    self.state, epoch_losses = _train_chunk(
        self.state, self.members, jnp.asarray(active), x, y,
        jnp.int32(check * self.every), n_epochs=self.every,
        batch_size=self.hparams[0].batch_size, multilabel=self.multilabel,
        shuffle=self.shuffle)
    probs, _, loss = _evaluate_members(
        self.state.params, self.state.bn_state, *self.valid,
        multilabel=self.multilabel, chunk=self.eval_batch_size)
    for a in (epoch_losses, loss) + ((probs,) if self.score_fn else ()):
      a.copy_to_host_async()
    snapshot = (self.state.params, self.state.bn_state)
    return check, snapshot, epoch_losses, probs, loss, self.state

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
      check, snapshot, epoch_losses, probs, loss, state = pending.popleft()
      evaluated = ~es.stopped
      epoch_losses = np.asarray(epoch_losses)
      loss = np.asarray(loss, np.float64)
      scores = np.full(m, np.nan)
      extras_now: dict[int, Any] = {}
      probs_host = np.asarray(probs) if self.score_fn else None
      for i in np.flatnonzero(evaluated):
        if self.score_fn is None:
          scores[i] = loss[i]
          continue
        out = self.score_fn(probs_host[i])
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
        best = _select(jnp.asarray(improved), snapshot, best)
      if es.stopped.all():
        break
      if self._save_due(check):
        self._save(checkpoint_lib.GroupProgress(
            check, state, best, tuple(es), extras,
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
            params=_member(best[0], i), bn_state=_member(best[1], i),
            epochs_run=int((last_check[i] + 1) * self.every),
            stop_reason=reason[i], history=tuple(history[i]),
            train_losses=np.concatenate(losses[i]))
        for i, hp in enumerate(self.hparams)]

  # Checkpointing (hear_jax.probe.checkpoint); inert without a checkpoint.
  checkpoint: checkpoint_lib.ProbeCheckpoint | None = None
  group_index: int = 0

  def _identity(self) -> dict[str, Any]:
    """What a saved state must have been made with to be resumed here."""
    return {
        "hparams": [dataclasses.asdict(h) for h in self.hparams],
        "keys": np.asarray(jax.random.key_data(self.keys)).tolist(),
        "train": [list(a.shape) for a in self.train],
        "valid": [list(a.shape) for a in self.valid],
        "options": [self.multilabel, self.maximize, self.shuffle,
                    self.stop_on_non_finite, self.score_fn is None]}

  def _restore(self) -> checkpoint_lib.GroupProgress | None:
    if self.checkpoint is None:
      return None
    return self.checkpoint.load(
        self.group_index, self._identity(), train_template=self.state,
        best_template=(self.state.params, self.state.bn_state))

  def _save_due(self, check: int) -> bool:
    if self.checkpoint is None:
      return False
    last_check, last_time = self._saved_at
    return self.checkpoint.due(check - last_check,
                               time.monotonic() - last_time)

  def _save(self, progress: checkpoint_lib.GroupProgress) -> None:
    self.checkpoint.save(self.group_index, self._identity(), progress)
    self._saved_at = (progress.check, time.monotonic())


class SplitPredictions(NamedTuple):
  probs: np.ndarray  # [N, C]
  logits: np.ndarray  # [N, C]
  loss: float | None  # HEAR's test_loss when targets were given


def predict_split(result: FitResult, x, y=None, *,
                  batch_size: int = 4096) -> SplitPredictions:
  """Eval-mode predictions of a fitted head, and its loss if `y` is given."""
  x = jnp.asarray(x, jnp.float32)
  if y is not None:
    y = jnp.asarray(y, jnp.float32)
  if x.ndim != 2 or (y is not None and y.shape[0] != x.shape[0]):
    raise ValueError(f"predict: x {x.shape} must be [N, D] with one target row "
                     f"per row of x (y {None if y is None else y.shape})")
  expand = lambda a: a[None]
  probs, logits, loss = _evaluate_members(
      jax.tree.map(expand, result.params),
      jax.tree.map(expand, result.bn_state),
      x, y, multilabel=result.multilabel, chunk=batch_size, with_logits=True)
  return SplitPredictions(np.asarray(probs[0]), np.asarray(logits[0]),
                          None if y is None else float(loss[0]))


def predict(result: FitResult, x, *, batch_size: int = 4096) -> np.ndarray:
  """Probabilities [N, C] (softmax or sigmoid) of a fitted head."""
  return predict_split(result, x, batch_size=batch_size).probs
