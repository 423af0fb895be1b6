"""Lightning's checkpoint and early-stopping rules, and what a fit records.

`early_stopping_step` is one validation check of every member on the host
(ModelCheckpoint + EarlyStopping(min_delta=0, check_finite)); the device
loop applies the same rules inside its program (`program.train_checks`).
`FitLog` is a group's per-member record as either loop keeps it (its
checks, epoch losses, stop reasons, score extras), what a checkpoint saves
besides the arrays, and what becomes each member's `FitResult`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import mlp
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


@dataclasses.dataclass
class FitLog:
  """A group's per-member record, as either loop keeps it."""

  history: list[list[ValidationCheck]]
  losses: list[list[np.ndarray]]  # per check: each epoch's mean batch loss
  reason: list[str]  # why the member stopped ("" while running)
  last_check: np.ndarray  # the member's last check (-1 before any)
  extras: list[Any]  # the score_fn's extra at the member's best check

  @classmethod
  def start(cls, n_members: int) -> FitLog:
    return cls([[] for _ in range(n_members)], [[] for _ in range(n_members)],
               [""] * n_members, np.full(n_members, -1), [None] * n_members)

  @classmethod
  def resumed(cls, saved: checkpoint_lib.GroupProgress) -> FitLog:
    return cls([[ValidationCheck(int(r[0]), *map(float, r[1:])) for r in h]
                for h in saved.history], [list(l) for l in saved.losses],
               list(saved.reason), np.array(saved.last_check),
               list(saved.extras))

  def record(self, i: int, check: int, every: int, epoch_losses,
             valid_loss: float, score: float) -> None:
    """Member i's check `check` (after `every` epochs of `epoch_losses`)."""
    epoch_losses = np.asarray(epoch_losses)
    self.history[i].append(ValidationCheck(
        (check + 1) * every, float(epoch_losses[-1]), float(valid_loss),
        float(score)))
    self.losses[i].append(epoch_losses)
    self.last_check[i] = check

  def epochs_done(self, es: EarlyStoppingState, max_epochs: np.ndarray,
                  every: int) -> int:
    """Member-epochs done, a stopped member's remaining ones included (as
    the progress callback counts them)."""
    return int(np.where(es.stopped, max_epochs,
                        (self.last_check + 1) * every).sum())

  def progress(self, check: int, train_state, best, es: EarlyStoppingState,
               next_active: np.ndarray | None, *, done: bool
               ) -> checkpoint_lib.GroupProgress:
    """What a checkpoint saves after check `check`."""
    return checkpoint_lib.GroupProgress(
        check, train_state, best, tuple(es), self.extras,
        [np.array(h, np.float64) for h in self.history],
        [np.array(l) for l in self.losses], self.reason,
        self.last_check.copy(), next_active, done=done)

  def results(self, hparams: Sequence[HParams], *, multilabel: bool,
              every: int, es: EarlyStoppingState, best_scores: Sequence[float],
              best_of: Callable[[int], tuple[Any, Any]]) -> list[FitResult]:
    """Each member's `FitResult`; `best_of(i)` gives its best checkpoint's
    (params, bn_state) on the host."""
    out = []
    for i, hp in enumerate(hparams):
      params, bn_state = best_of(i)
      out.append(FitResult(
          hparams=hp, multilabel=multilabel, best_score=float(best_scores[i]),
          best_epoch=int((es.best_check[i] + 1) * every),
          best_extra=self.extras[i], params=params, bn_state=bn_state,
          epochs_run=int((self.last_check[i] + 1) * every),
          stop_reason=self.reason[i], history=tuple(self.history[i]),
          train_losses=np.concatenate(self.losses[i])))
    return out
