"""The host driver of a probe fit: dispatch, validation, early stopping.

`GroupFit` runs one architecture group's members: it dispatches chunks of
epochs (`program.train_chunk`) one ahead of the host, scores each
validation check with the members' score functions, applies Lightning's
checkpoint and early-stopping rules (`early_stopping_step`), moves the
running members into smaller programs as others stop, saves and resumes
its progress (`hear_jax.probe.checkpoint`) and reports it (`on_check`).
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections import deque
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import members as members_lib
from hear_jax.probe import mlp
from hear_jax.probe import program
from hear_jax.probe.grid import HParams


class ValidationCheck(NamedTuple):
  """One validation check of one member."""

  epoch: int  # epochs trained when the check ran
  train_loss: float  # mean batch loss of the last epoch before the check
  valid_loss: float
  score: float  # the monitored value, as returned (may be NaN)


@dataclasses.dataclass(frozen=True)
class FitResult:
  """One member's outcome; `params`/`bn_state` are its best checkpoint."""

  hparams: HParams
  multilabel: bool
  best_score: float  # NaN stored as the worst value (see trainer.py)
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


# A group moves its running members into a smaller program (one compile per
# power-of-two size) only when a member's chunk of epochs is at least this
# much matmul work; below it, compiling costs more than the stopped
# members' frozen compute it saves.
COMPACT_MIN_FLOPS = 5e9


def compact_size(n_running: int, n_members: int) -> int:
  """Members in the program for `n_running` of `n_members`: a power of two."""
  return min(n_members, 1 << max(0, n_running - 1).bit_length())


class GroupFit:
  """The host loop for one architecture group: dispatch, score, stop."""

  def __init__(self, members, x, y, *, multilabel, maximize, shuffle,
               stop_on_non_finite, eval_batch_size, on_check=None,
               devices=None, compact_min_flops: float = COMPACT_MIN_FLOPS):
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
    self.place = members_lib.placement(len(members), devices)
    hp = self.hparams[0]
    self.every = hp.check_val_every_n_epoch
    self.shape = mlp.MlpShape(
        in_dim=x.shape[1], n_labels=y.shape[1],
        hidden_layers=hp.hidden_layers, hidden_dim=hp.hidden_dim)
    self.train_rows, self.n_train = members_lib.rows_on_device(
        [m.train_rows for m in members], self.place)
    self.valid_rows, self.n_valid = members_lib.rows_on_device(
        [m.valid_rows for m in members], self.place)
    train_counts = np.array([len(m.train_rows) for m in members])
    for n in train_counts:
      if program.training_batches(int(n), hp.batch_size,
                                  hp.hidden_layers > 0)[0] == 0:
        raise ValueError("fit_probes: a single training row cannot train a "
                         "head with BatchNorm")
    self.max_checks = np.array([h.max_epochs // self.every
                                for h in self.hparams])
    self.patience = np.array([h.patience for h in self.hparams])
    self.state, self.members_state = members_lib.init_members(
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
    self.compact = chunk_flops >= compact_min_flops
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
    size = compact_size(len(running), len(self.hparams))
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
      place = members_lib.placement(len(slots), self.devices)
      members_state = members_lib.take(
          self.members_state, np.maximum(slots, 0),
          sharding=place and place.members)
      train_rows, n_train = members_lib.rows_on_device(
          [m.train_rows for m in members], place)
      valid_rows, n_valid = members_lib.rows_on_device(
          [m.valid_rows for m in members], place)
      self._layouts = {key: (place, members_state, train_rows, n_train,
                             valid_rows, n_valid)}
    where = {member: pos for pos, member in enumerate(self.slots)}
    running = slots[slots >= 0]
    positions = np.array([where[i] for i in running]
                         + [where[running[0]]] * int((slots < 0).sum()))
    place = self._layouts[key][0]
    self.state = members_lib.take(self.state, positions,
                                  sharding=place and place.members)
    self.slots = slots

  def _dispatch(self, check: int, active: np.ndarray):
    slots = self._layout_for(active)
    if not np.array_equal(slots, self.slots):
      self._move_to(slots)
    place, members_state, train_rows, n_train, valid_rows, n_valid = (
        self._layouts[tuple(self.slots)])
    on_mesh = lambda a: members_lib.to_device(a, place and place.replicated)
    self.state, epoch_losses = program.train_chunk(
        self.state, members_state, on_mesh(
            np.where(self.slots >= 0, active[np.maximum(self.slots, 0)],
                     False)),
        self.x, self.y, train_rows, n_train,
        on_mesh(np.int32(check * self.every)),
        n_epochs=self.every, batch_size=self.hparams[0].batch_size,
        multilabel=self.multilabel, shuffle=self.shuffle, place=place)
    probs, _, loss = program.evaluate_members(
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
    return program.eval_chunk_rows(self.eval_batch_size, self.shape.in_dim,
                                   n_members * self.shape.hidden_dim)

  def _full_state(self, state, slots: np.ndarray):
    """A train state in the initial layout (every member at its index; a
    member without a slot gets any slot's copy: it has stopped and is never
    trained again) for checkpoints."""
    if np.array_equal(slots, np.arange(len(self.hparams))):
      return state
    where = {member: pos for pos, member in enumerate(slots) if member >= 0}
    positions = np.array([where.get(i, 0) for i in range(len(self.hparams))])
    return members_lib.take(state, positions,
                            sharding=self.place and self.place.members)

  def _host_member(self, tree, i: int):
    """Member i's leaves as numpy arrays (gathered from every device)."""
    replicated = self.place and self.place.replicated
    return jax.tree.map(np.asarray, members_lib.member_at(
        tree, members_lib.to_device(np.int32(i), replicated),
        replicated=replicated))

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
        best = members_lib.select(
            members_lib.to_device(improved,
                                  self.place and self.place.replicated),
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
