"""Members that stop early leave the program: same results as keeping them.

On several devices a group moves its running members into a smaller
program as others stop, so the devices share them
(`trainer._COMPACT_MIN_FLOPS` decides when that pays off; here it is forced
on and off). One device only skips a stopped member's chunks, so each test
reruns itself in a subprocess with 2 simulated devices.
"""

from __future__ import annotations

import os
import subprocess
import sys

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


def _on_two_devices(request) -> bool:
  """True in the 2-device subprocess; in the parent, runs the test there."""
  if jax.device_count() >= 2:
    return True
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  out = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
       f"{__file__}::{request.node.name}"], env=env, capture_output=True,
      text=True, timeout=900, check=False)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
  return False


def _fit(monkeypatch, compact: bool, **kw):
  monkeypatch.setattr(trainer, "_COMPACT_MIN_FLOPS", 0 if compact else 1e30)
  x, y, members = _members()
  return trainer.fit_members(x, y, members, multilabel=False, maximize=True,
                             **kw)


def test_compaction_gives_the_results_of_the_full_program(monkeypatch,
                                                         request):
  if not _on_two_devices(request):
    return
  full = _fit(monkeypatch, compact=False)
  sizes = []
  move_to = trainer._GroupFit._move_to  # pylint: disable=protected-access

  def recorded(self, slots):
    sizes.append(len(slots))
    move_to(self, slots)

  monkeypatch.setattr(trainer._GroupFit, "_move_to", recorded)
  compact = _fit(monkeypatch, compact=True)
  # Five members (6 slots on 2 devices) shrank to programs of 4 and 2 (and
  # moved within them).
  assert set(sizes) >= {4, 2}
  # The members really stop at different checks.
  assert len({r.epochs_run for r in full}) >= 3
  x, _ = _problem()
  # Each member's program is the same whatever it shares it with: the same
  # bits.
  for a, b in zip(full, compact):
    assert (a.best_epoch, a.epochs_run, a.stop_reason, a.best_score) == (
        b.best_epoch, b.epochs_run, b.stop_reason, b.best_score)
    np.testing.assert_array_equal(trainer.predict(a, x),
                                  trainer.predict(b, x))
    np.testing.assert_array_equal(a.train_losses, b.train_losses)


class _Killed(Exception):
  pass


def test_compacted_fit_resumes_bit_identically(monkeypatch, tmp_path,
                                               request):
  if not _on_two_devices(request):
    return
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
