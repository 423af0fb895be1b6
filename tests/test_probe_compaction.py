"""Members that stop early leave the program: same results as keeping them.

A group moves its running members into a smaller program as others stop
(`trainer._COMPACT_MIN_FLOPS` decides when that pays off; here it is forced
on and off).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import trainer
from hear_jax.probe.grid import HParams

_D, _C = 10, 3


def _problem():
  rng = np.random.default_rng(4)
  centers = rng.normal(size=(_C, _D))
  labels = rng.integers(0, _C, 400)
  x = (centers[labels] + rng.normal(size=(400, _D)) * 1.5).astype(np.float32)
  return x, np.eye(_C, dtype=np.float32)[labels]


def _members():
  x, y = _problem()
  hp = lambda **kw: HParams(**{**dict(
      lr=3e-3, hidden_layers=1, hidden_dim=16, batch_size=64, max_epochs=30,
      check_val_every_n_epoch=2, patience=2), **kw})
  # Patience and lr spread the stopping epochs.
  points = [hp(), hp(lr=1e-2, patience=1), hp(lr=3e-4, patience=4),
            hp(lr=3e-2, patience=1), hp(lr=1e-3, patience=3)]
  keys = trainer.member_keys(jax.random.key(1), len(points))
  perm = np.random.default_rng(2).permutation(400)

  def accuracy(rows):
    return lambda p: float(np.mean(p.argmax(1) == y[rows].argmax(1)))

  # Per-member rows, as in the retraining on the folds of a k-fold task.
  return x, y, [trainer.Member(p, keys[i], np.roll(perm, 60 * i)[:250],
                               np.roll(perm, 60 * i)[250:330],
                               accuracy(np.roll(perm, 60 * i)[250:330]))
                for i, p in enumerate(points)]


def _fit(monkeypatch, compact: bool, **kw):
  monkeypatch.setattr(trainer, "_COMPACT_MIN_FLOPS", 0 if compact else 1e30)
  x, y, members = _members()
  return trainer.fit_members(x, y, members, multilabel=False, maximize=True,
                             **kw)


def test_compaction_gives_the_results_of_the_full_program(monkeypatch):
  full = _fit(monkeypatch, compact=False)
  sizes = []
  move_to = trainer._GroupFit._move_to  # pylint: disable=protected-access

  def recorded(self, slots):
    sizes.append(len(slots))
    move_to(self, slots)

  monkeypatch.setattr(trainer._GroupFit, "_move_to", recorded)
  compact = _fit(monkeypatch, compact=True)
  # Five members shrank to programs of 4 and 2 (and moved within them).
  assert set(sizes) >= {4, 2}
  # The members really stop at different checks.
  assert len({r.epochs_run for r in full}) >= 3
  x, _ = _problem()
  for a, b in zip(full, compact):
    assert (a.best_epoch, a.epochs_run, a.stop_reason) == (
        b.best_epoch, b.epochs_run, b.stop_reason)
    assert a.best_score == pytest.approx(b.best_score, abs=1e-6)
    np.testing.assert_allclose(trainer.predict(a, x), trainer.predict(b, x),
                               atol=1e-5)
    np.testing.assert_allclose(a.train_losses, b.train_losses, rtol=1e-5)


class _Killed(Exception):
  pass


def test_compacted_fit_resumes_bit_identically(monkeypatch, tmp_path):
  want = _fit(monkeypatch, compact=True)
  ckpt = checkpoint_lib.ProbeCheckpoint(str(tmp_path), "fp")
  calls = []

  def kill_late(n):
    calls.append(n)
    if len(calls) == 9:  # after several members stopped
      raise _Killed

  with pytest.raises(_Killed):
    _fit(monkeypatch, compact=True, checkpoint=ckpt, on_check=kill_late)
  got = _fit(monkeypatch, compact=True, checkpoint=ckpt)
  x, _ = _problem()
  for a, b in zip(want, got):
    assert (a.best_epoch, a.best_score, a.epochs_run) == (
        b.best_epoch, b.best_score, b.epochs_run)
    np.testing.assert_array_equal(trainer.predict(a, x),
                                  trainer.predict(b, x))
    np.testing.assert_array_equal(a.train_losses, b.train_losses)
