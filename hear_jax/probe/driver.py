"""The host driver of a probe fit: dispatch, validation, early stopping.

`GroupFit` runs one architecture group's members: it dispatches chunks of
epochs (`program.train_chunk`) one ahead of the host, scores each
validation check with the members' score functions, applies Lightning's
checkpoint and early-stopping rules (`early_stopping.early_stopping_step`),
moves the running members into smaller programs as others stop, saves and
resumes its progress (`hear_jax.probe.checkpoint`) and reports it
(`on_check`). A group whose members can all be scored on the device runs
its checks there instead (`device_loop.run_on_device`).
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections import deque
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hear_jax.probe import buckets
from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import device_loop
from hear_jax.probe import members as members_lib
from hear_jax.probe import mlp
from hear_jax.probe import program
from hear_jax.probe.device_loop import CHECK_EVENT, HOST_READ_EVENT
from hear_jax.probe.early_stopping import (EarlyStoppingState, FitLog,
                                           FitResult, early_stopping_init,
                                           early_stopping_step)


# A group moves its running members into a smaller program (one compile per
# power-of-two size) only when a member's chunk of epochs is at least this
# much matmul work; below it, compiling costs more than the stopped
# members' frozen compute it saves.
COMPACT_MIN_FLOPS = 5e9


def compact_size(n_running: int, n_slots: int, n_devices: int = 1) -> int:
  """Slots in the program for `n_running` members of a group of `n_slots`:
  a power of two, rounded up to a multiple of the devices."""
  size = 1 << max(0, n_running - 1).bit_length()
  return min(n_slots, -(-size // n_devices) * n_devices)


class GroupFit:
  """The host loop for one architecture group: dispatch, score, stop."""

  def __init__(self, members, x, y, *, multilabel, maximize, shuffle,
               stop_on_non_finite, eval_batch_size, on_check=None,
               devices=None, compact_min_flops: float = COMPACT_MIN_FLOPS,
               n_labels: int | None = None, bucketed: bool = False):
    # x and y may be padded to a bucket (`buckets`): rows past the members'
    # rows, classes past `n_labels`; `bucketed` pads the rows arrays and
    # the member stack too.
    self.members = members
    self.n_labels = y.shape[1] if n_labels is None else n_labels
    self.row_width = x.shape[0] if bucketed else 0
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
    self.place = members_lib.placement(devices)
    # The member axis is split evenly over the devices: the slots past the
    # members (-1) hold copies of member 0, frozen and never read.
    slots = buckets.members(len(members)) if bucketed else len(members)
    self.initial_slots = np.concatenate([
        np.arange(len(members)),
        np.full(members_lib.padded_count(slots, self.place)
                - len(members), -1)])
    slot_members = [members[i] for i in np.maximum(self.initial_slots, 0)]
    hp = self.hparams[0]
    self.every = hp.check_val_every_n_epoch
    self.shape = mlp.MlpShape(
        in_dim=x.shape[1], n_labels=y.shape[1],
        hidden_layers=hp.hidden_layers, hidden_dim=hp.hidden_dim)
    self.train_rows, self.n_train = members_lib.rows_on_device(
        [m.train_rows for m in slot_members], self.place, self.row_width)
    self.valid_rows, self.n_valid = members_lib.rows_on_device(
        [m.valid_rows for m in slot_members], self.place, self.row_width)
    train_counts = np.array([len(m.train_rows) for m in members])
    for n in train_counts:
      if program.training_batches(int(n), hp.batch_size,
                                  hp.hidden_layers > 0)[0] == 0:
        raise ValueError("fit_probes: a single training row cannot train a "
                         "head with BatchNorm")
    # Every tail size in a bucketed program (any row count); else the
    # members' own (`program.tail_sizes`).
    self.tails = program.tail_sizes(
        hp.batch_size, None if bucketed else train_counts,
        hp.hidden_layers > 0, max_rows=x.shape[0])
    self.max_checks = np.array([h.max_epochs // self.every
                                for h in self.hparams])
    self.patience = np.array([h.patience for h in self.hparams])
    on_slots = lambda a: members_lib.to_device(
        np.asarray(a)[np.maximum(self.initial_slots, 0)],
        self.place.members)
    self.state, self.members_state = members_lib.init_members(
        on_slots(jax.random.key_data(self.keys)),
        on_slots([h.initialization == "xavier_normal" for h in self.hparams]),
        on_slots(np.array([h.lr for h in self.hparams], np.float32)),
        on_slots(np.array([h.dropout for h in self.hparams], np.float32)),
        on_slots(np.full(len(members), self.n_labels, np.int32)),
        shape=self.shape, impl=jax.random.key_impl(self.keys),
        place=self.place)
    # Which member each position of the device state holds (-1: padding).
    # A stopped member's chunk is skipped; on several devices the running
    # members also move into a smaller program as others stop, so that
    # every device keeps a share of them (`_layout_for`).
    self.slots = self.initial_slots
    self.devices = devices
    sizes = [self.shape.in_dim] + [self.shape.hidden_dim] * (
        self.shape.hidden_layers) + [self.shape.n_labels]
    chunk_flops = self.every * int(train_counts.max()) * (
        4 * sizes[0] * sizes[1]
        + 6 * sum(a * b for a, b in zip(sizes[1:-1], sizes[2:])))
    self.n_devices = self.place.mesh.size
    metrics = {m.device_metric for m in members}
    self.device_metric = metrics.pop() if len(metrics) == 1 else None
    # On the device a group keeps its layout: a stopped member runs nothing.
    self.compact = (self.device_metric is None and self.n_devices > 1
                    and chunk_flops >= compact_min_flops)
    self.dispatches = 0  # programs whose outputs the host waited for
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
    size = compact_size(len(running), len(self.initial_slots),
                        self.n_devices)
    slots = np.concatenate([running, np.full(size - len(running), -1)])
    if len(slots) == len(self.initial_slots) and np.array_equal(
        self.slots, self.initial_slots):
      return self.slots  # full size: keep the initial layout
    return slots

  def _move_to(self, slots: np.ndarray) -> None:
    """Gathers the device state into the layout `slots`."""
    key = tuple(slots)
    if key not in self._layouts:
      members = [self.members[i] for i in np.maximum(slots, 0)]
      place = self.place
      members_state = members_lib.take(
          self.members_state, np.maximum(slots, 0),
          sharding=place.members)
      train_rows, n_train = members_lib.rows_on_device(
          [m.train_rows for m in members], place, self.row_width)
      valid_rows, n_valid = members_lib.rows_on_device(
          [m.valid_rows for m in members], place, self.row_width)
      self._layouts = {key: (place, members_state, train_rows, n_train,
                             valid_rows, n_valid)}
    where = {member: pos for pos, member in enumerate(self.slots)}
    running = slots[slots >= 0]
    positions = np.array([where[i] for i in running]
                         + [where[running[0]]] * int((slots < 0).sum()))
    place = self._layouts[key][0]
    self.state = members_lib.take(self.state, positions,
                                  sharding=place.members)
    self.slots = slots

  def _dispatch(self, check: int, active: np.ndarray):
    slots = self._layout_for(active)
    if not np.array_equal(slots, self.slots):
      self._move_to(slots)
    place, members_state, train_rows, n_train, valid_rows, n_valid = (
        self._layouts[tuple(self.slots)])
    on_mesh = lambda a: members_lib.to_device(a, place.replicated)
    self.state, epoch_losses = program.train_chunk(
        self.state, members_state, on_mesh(
            np.where(self.slots >= 0, active[np.maximum(self.slots, 0)],
                     False)),
        self.x, self.y, train_rows, n_train,
        on_mesh(np.int32(check * self.every)),
        n_epochs=self.every, batch_size=self.hparams[0].batch_size,
        tails=self.tails, multilabel=self.multilabel, shuffle=self.shuffle,
        place=place)
    probs, _, loss = program.evaluate_members(
        self.state.params, self.state.bn_state, self.x, self.y,
        valid_rows, n_valid, members_state.n_labels,
        multilabel=self.multilabel, chunk=self.eval_rows(), place=place)
    for a in (epoch_losses, loss) + ((probs,) if not self.monitor_loss
                                     else ()):
      a.copy_to_host_async()
    snapshot = (self.state.params, self.state.bn_state)
    self.dispatches += 1
    return (check, snapshot, epoch_losses, probs, loss, self.state,
            self.slots)

  def eval_rows(self) -> int:
    """Rows per chunk of a member's eval-mode forward pass."""
    return program.eval_chunk_rows(self.eval_batch_size, self.shape.in_dim,
                                   self.shape.hidden_dim)

  def _full_state(self, state, slots: np.ndarray):
    """A train state in the initial layout (every member at its index; a
    member without a slot gets any slot's copy: it has stopped and is never
    trained again) for checkpoints."""
    if np.array_equal(slots, self.initial_slots):
      return state
    where = {member: pos for pos, member in enumerate(slots) if member >= 0}
    positions = np.array([where.get(i, 0)
                          for i in np.maximum(self.initial_slots, 0)])
    return members_lib.take(state, positions,
                            sharding=self.place.members)

  def host_member(self, tree, i: int):
    """Member i's leaves as numpy arrays (gathered from every device)."""
    replicated = self.place.replicated
    return jax.tree.map(np.asarray, members_lib.member_at(
        tree, members_lib.to_device(np.int32(i), replicated),
        replicated=replicated))

  def host_head(self, best, i: int):
    """Member i's (params, bn_state) from `best`, on the host, with its
    task's classes only (a class bucket's padding dropped)."""
    params = self.host_member(best[0], i)
    output = {k: v[:self.n_labels] for k, v in params["output"].items()}
    return {**params, "output": output}, self.host_member(best[1], i)

  def run(self) -> list[FitResult]:
    if self.device_metric is not None:
      return device_loop.run_on_device(self)
    m = len(self.hparams)
    max_epochs = np.array([h.max_epochs for h in self.hparams])
    es = early_stopping_init(m, maximize=self.maximize)
    best = (self.state.params, self.state.bn_state)
    log = FitLog.start(m)
    saved = self.restore()
    if saved is None:
      pending = deque([self._dispatch(0, np.ones(m, bool))])
      next_check = 1
    else:
      es, best = EarlyStoppingState(*saved.early_stopping), saved.best
      log = FitLog.resumed(saved)
      pending, next_check = deque(), saved.check + 1
      if saved.next_active is not None:
        # Redo the chunk the interrupted loop had dispatched, from the
        # state it was dispatched from, with the same mask.
        self.state = saved.train_state
        pending.append(self._dispatch(next_check, saved.next_active))
        next_check += 1
      if self.on_check is not None:
        self.on_check(log.epochs_done(es, max_epochs, self.every))
    self.saved_at = (saved.check if saved else -1, time.monotonic())
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
      jax.monitoring.record_event(HOST_READ_EVENT)
      for i in np.flatnonzero(evaluated):
        jax.monitoring.record_event(CHECK_EVENT)
        if self.monitor_loss:
          scores[i] = loss[i]
          continue
        out = self.score_fns[i](probs_host[
            position[i], :len(self.members[i].valid_rows), :self.n_labels])
        score, extras_now[i] = out if isinstance(out, tuple) else (out, None)
        scores[i] = float(score)
      es_new, improved = early_stopping_step(
          es, scores, evaluated, check=check, patience=self.patience,
          maximize=self.maximize, stop_on_non_finite=self.stop_on_non_finite)
      for i in np.flatnonzero(improved):
        log.extras[i] = extras_now.get(i)
      for i in np.flatnonzero(evaluated):
        log.record(i, check, self.every, epoch_losses[:, i], loss[i],
                   scores[i])
        if es_new.stopped[i]:
          log.reason[i] = ("non_finite" if self.stop_on_non_finite
                           and not np.isfinite(scores[i]) else "patience")
        elif check + 1 >= self.max_checks[i]:
          log.reason[i] = "max_epochs"
      stopped = es_new.stopped | (evaluated & (check + 1 >= self.max_checks))
      if self.on_check is not None:
        # Epochs trained at this check, plus the epochs a member now stopped
        # will never train (counted as done, so progress reaches its total).
        left = max_epochs - (check + 1) * self.every
        self.on_check(int(evaluated.sum()) * self.every
                      + int(left[stopped & ~es.stopped].sum()))
      es = es_new._replace(stopped=stopped)
      if improved.any():
        # In the initial layout first, so both sides are on one mesh.
        improved_slots = np.where(self.initial_slots >= 0,
                                  improved[np.maximum(self.initial_slots, 0)],
                                  False)
        best = members_lib.select(
            members_lib.to_device(improved_slots,
                                  self.place.replicated),
            self._full_state(snapshot, slots), best)
      if es.stopped.all():
        break
      if self.save_due(check):
        self.save(log.progress(check, self._full_state(state, slots), best,
                               es, next_active, done=False))
    if self.checkpoint is not None and not (saved and saved.done):
      self.save(log.progress(int(log.last_check.max()), None, best, es, None,
                             done=True))
    return log.results(
        self.hparams, multilabel=self.multilabel, every=self.every, es=es,
        best_scores=es.best, best_of=lambda i: self.host_head(best, i))

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
                    self.stop_on_non_finite, self.monitor_loss],
        "slots": len(self.initial_slots)}

  def restore(self) -> checkpoint_lib.GroupProgress | None:
    if self.checkpoint is None:
      return None
    saved = self.checkpoint.load(
        self.group_index, self._identity(), train_template=self.state,
        best_template=(self.state.params, self.state.bn_state))
    if saved is not None:
      # Back onto the group's mesh, where the running program expects them.
      put = lambda t: jax.device_put(t, self.place.members)
      saved.best = put(saved.best)
      if saved.train_state is not None:
        saved.train_state = put(saved.train_state)
    return saved

  def save_due(self, check: int) -> bool:
    if self.checkpoint is None:
      return False
    last_check, last_time = self.saved_at
    return self.checkpoint.due(check - last_check,
                               time.monotonic() - last_time)

  def save(self, progress: checkpoint_lib.GroupProgress) -> None:
    self.checkpoint.save(self.group_index, self._identity(), progress)
    self.saved_at = (progress.check, time.monotonic())
