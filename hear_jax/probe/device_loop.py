"""A probe fit's validation checks on the device, many per dispatch.

`run_on_device(group)` is `driver.GroupFit.run` for a group whose members
all have a `device_metric`: each dispatch of `program.train_checks` trains,
validates, scores and early-stops every member for up to `n_checks` checks
inside one program, and the host only reads back what the checks did,
records it (`early_stopping.FitLog`), reports progress, saves checkpoints
and sizes the next dispatch to about `DISPATCH_SECONDS` of work. The group
keeps its layout (a stopped member runs nothing), so slot i is member i.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from hear_jax.probe import members as members_lib
from hear_jax.probe import program
from hear_jax.probe.early_stopping import (EarlyStoppingState, FitLog,
                                           FitResult, early_stopping_init)

# JAX monitoring events (`jax.monitoring`), one per validation check scored
# and one per time the host waited for a program's results (either loop
# records them): a benchmark's listener counts how many checks each host
# round trip carried.
CHECK_EVENT = "/hear_jax/probe/validation_check"
HOST_READ_EVENT = "/hear_jax/probe/host_read"

# Seconds of work a dispatch aims at: long enough that the host's turn costs
# nothing, short enough for progress, checkpoints and Ctrl-C.
DISPATCH_SECONDS = 2.0
# Checks one dispatch can hold (the history buffers' static size).
MAX_CHECKS_PER_DISPATCH = 64


def run_on_device(group: Any) -> list[FitResult]:
  """The fit of `group` (a `driver.GroupFit`) with its checks on the device."""
  m, every = len(group.hparams), group.every
  slots = np.maximum(group.initial_slots, 0)
  padding = group.initial_slots < 0
  max_epochs = np.array([h.max_epochs for h in group.hparams])
  saved = group.restore()
  if saved is None:
    es = early_stopping_init(m, maximize=group.maximize)
    best = (group.state.params, group.state.bn_state)
    log, next_check = FitLog.start(m), 0
  else:
    es, best = EarlyStoppingState(*saved.early_stopping), saved.best
    log, next_check = FitLog.resumed(saved), saved.check + 1
    if saved.train_state is not None:
      group.state = saved.train_state
    if group.on_check is not None:
      group.on_check(log.epochs_done(es, max_epochs, every))
  by_member = group.place.members
  on_slots = lambda a, dtype: members_lib.to_device(
      np.asarray(a, dtype)[slots], by_member)
  monitor = program.Monitor(
      on_slots(es.best, np.float32), on_slots(es.best_check, np.int32),
      on_slots(es.wait, np.int32),
      members_lib.to_device(es.stopped[slots] | padding, by_member))
  history = int(min(group.max_checks.max(), MAX_CHECKS_PER_DISPATCH))
  static = dict(
      n_epochs=every, batch_size=group.hparams[0].batch_size,
      tails=group.tails, multilabel=group.multilabel, shuffle=group.shuffle,
      metric=group.device_metric, maximize=group.maximize,
      stop_on_non_finite=group.stop_on_non_finite, chunk=group.eval_rows(),
      history=history, place=group.place)
  max_checks = on_slots(group.max_checks, np.int32)
  patience = on_slots(group.patience, np.int32)
  on_mesh = lambda a: members_lib.to_device(
      a, group.place.replicated)
  n_checks = 1  # the first dispatch also compiles: it sizes the next
  group.saved_at = (next_check - 1, time.monotonic())
  while not es.stopped.all():
    start = time.monotonic()
    group.state, best, monitor, readback = program.train_checks(
        group.state, best, monitor, group.members_state, group.x, group.y,
        group.train_rows, group.n_train, group.valid_rows, group.n_valid,
        on_mesh(np.int32(next_check)), on_mesh(np.int32(n_checks)),
        max_checks, patience, **static)
    done, mon = jax.device_get(readback)
    seconds = time.monotonic() - start
    group.dispatches += 1
    jax.monitoring.record_event(HOST_READ_EVENT)
    progress = 0
    for i in range(m):
      k = int(done.checks[i])
      for j in range(k):
        jax.monitoring.record_event(CHECK_EVENT)
        log.record(i, next_check + j, every, done.train_loss[i, j],
                   done.valid_loss[i, j], done.score[i, j])
      progress += k * every
      if mon.stopped[i] and not es.stopped[i]:
        # The order of `early_stopping_step` and the host loop.
        log.reason[i] = (
            "non_finite" if group.stop_on_non_finite
            and not np.isfinite(done.score[i, k - 1]) else
            "patience" if mon.wait[i] >= group.patience[i] else "max_epochs")
        progress += int(max_epochs[i] - (log.last_check[i] + 1) * every)
    es = EarlyStoppingState(
        best=mon.best[:m].astype(np.float64),
        best_check=mon.best_check[:m].astype(int),
        wait=mon.wait[:m].astype(int), stopped=mon.stopped[:m].copy())
    if group.on_check is not None:
      group.on_check(progress)
    next_check += n_checks
    # Sized by the last dispatch's time per check (at least doubled while
    # under the target: the first one also compiled).
    wanted = round(n_checks * DISPATCH_SECONDS / max(seconds, 1e-3))
    if seconds < DISPATCH_SECONDS:
      wanted = max(wanted, 2 * n_checks)
    n_checks = int(np.clip(wanted, 1, history))
    if not es.stopped.all() and group.save_due(next_check - 1):
      group.save(log.progress(next_check - 1, group.state, best, es, None,
                              done=False))
  best_scores = host_scores(group, best, es)
  if group.checkpoint is not None and not (saved and saved.done):
    group.save(log.progress(int(log.last_check.max()), None, best, es, None,
                            done=True))
  return log.results(
      group.hparams, multilabel=group.multilabel, every=every, es=es,
      best_scores=best_scores, best_of=lambda i: group.host_head(best, i))


def host_scores(group: Any, best, es: EarlyStoppingState) -> list[float]:
  """Each member's best score as its score_fn gives it (float64, as HEAR
  reports it) from its best checkpoint; the device's float32 value for the
  loss monitor or a member that never scored."""
  scores = [float(v) for v in es.best]
  if group.monitor_loss:
    return scores
  probs, _, _ = program.evaluate_members(
      best[0], best[1], group.x, group.y, group.valid_rows, group.n_valid,
      group.members_state.n_labels, multilabel=group.multilabel,
      chunk=group.eval_rows(), place=group.place)
  probs = np.asarray(probs)
  for i, member in enumerate(group.members):
    if es.best_check[i] >= 0:
      out = member.score_fn(
          probs[i, :len(member.valid_rows), :group.n_labels])
      score = float(out[0] if isinstance(out, tuple) else out)
      if np.isfinite(score):
        scores[i] = score
  return scores
