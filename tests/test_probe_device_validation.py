"""Validation, checkpoints and early stopping on the device: the host loop's
results, with many validation checks per host round trip.

A member with a `device_metric` is scored inside the training program
(`program.train_checks`); the same members without one are scored on the
host after every check. Both must stop at the same epochs, keep the same
best checkpoint (bit for bit) and report the same best score (the host's
float64 value). A dispatch covers many checks, and a fit killed between
dispatches resumes bit-identically.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hear_jax import metrics
from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import device_loop
from hear_jax.probe import trainer
from hear_jax.probe.grid import HParams

_D, _C = 9, 4


def _problem(multilabel: bool = False, n: int = 467):
  rng = np.random.default_rng(11)
  centers = rng.normal(size=(_C, _D)) * 2.0
  labels = rng.integers(0, _C, n)
  x = (centers[labels] + rng.normal(size=(n, _D)) * 1.2).astype(np.float32)
  y = np.eye(_C, dtype=np.float32)[labels]
  if multilabel:  # a second label on a third of the rows
    extra = rng.integers(0, _C, n)
    y[np.arange(n), extra] = np.where(rng.random(n) < 1 / 3, 1.0,
                                      y[np.arange(n), extra])
  return x, y


def _hp(**kw) -> HParams:
  return HParams(**{**dict(
      lr=3e-3, hidden_layers=1, hidden_dim=16, batch_size=64, max_epochs=40,
      check_val_every_n_epoch=2, patience=3, dropout=0.1), **kw})


# Patience, rates and max_epochs spread the stopping checks and reasons.
_POINTS = [_hp(), _hp(lr=1e-2, patience=1), _hp(lr=3e-4, patience=5),
           _hp(lr=3e-2, patience=2), _hp(max_epochs=10),
           _hp(lr=1e-3, initialization="xavier_normal")]


def _members(metric: str | None, *, own_rows: bool, multilabel: bool):
  x, y = _problem(multilabel)
  n = len(x)
  keys = trainer.member_keys(jax.random.key(2), len(_POINTS))
  order = np.random.default_rng(3).permutation(n)

  def score_fn(rows):
    if metric in (None, "valid_loss"):
      return None
    return lambda p: metrics.compute(metric, p, y[rows])

  members = []
  for i, hp in enumerate(_POINTS):
    if own_rows:  # folds of their own, of different sizes
      rows = np.roll(order, 71 * i)
      train, valid = rows[:300 + 7 * i], rows[300 + 7 * i:400]
    else:
      train, valid = order[:330], order[330:]
    members.append(trainer.Member(hp, keys[i], train, valid, score_fn(valid),
                                  metric))
  return x, y, members


def _fit(members, x, y, multilabel, **kw):
  return trainer.fit_members(
      x, y, members, multilabel=multilabel,
      maximize=members[0].score_fn is not None, **kw)


@pytest.mark.parametrize("metric, own_rows, multilabel", [
    ("top1_acc", False, False),
    ("pitch_acc", True, False),  # per-member rows: masked padding
    ("mAP", False, True),
    ("mAP", True, True),  # ranking metrics mask padding rows too
    ("valid_loss", True, False),
])
def test_device_checks_give_the_host_loops_results(metric, own_rows,
                                                   multilabel):
  x, y, members = _members(metric, own_rows=own_rows, multilabel=multilabel)
  on_host = _fit([m._replace(device_metric=None) for m in members], x, y,
                 multilabel)
  reads = []
  jax.monitoring.register_event_listener(
      lambda event, **_: reads.append(event))
  on_device = _fit(members, x, y, multilabel)
  assert len({r.epochs_run for r in on_host}) >= 2  # they stop apart
  assert {r.stop_reason for r in on_host} >= {"patience", "max_epochs"}
  for a, b in zip(on_host, on_device):
    assert (a.best_epoch, a.epochs_run, a.stop_reason) == (
        b.best_epoch, b.epochs_run, b.stop_reason)
    assert [h.epoch for h in a.history] == [h.epoch for h in b.history]
    np.testing.assert_array_equal(a.train_losses, b.train_losses)
    np.testing.assert_array_equal(trainer.predict(a, x),
                                  trainer.predict(b, x))
    if metric == "valid_loss":  # float32 either way, from other programs
      assert b.best_score == pytest.approx(a.best_score, rel=1e-5)
    else:  # the host's float64 score of the same checkpoint
      assert b.best_score == a.best_score
  checks = reads.count(device_loop.CHECK_EVENT)
  host_reads = reads.count(device_loop.HOST_READ_EVENT)
  assert checks == sum(len(r.history) for r in on_device)
  # Many checks per round trip (the first dispatch runs one check, then
  # dispatches grow to about DISPATCH_SECONDS of work); on the host, one.
  assert checks >= 4 * host_reads


def test_a_fit_compiles_each_training_program_once(monkeypatch):
  # Dispatches feed the program's outputs back as its inputs; inputs it
  # first got from the host must be laid out as those outputs are, or the
  # second dispatch compiles the program again (it did, on one device).
  monkeypatch.setattr(device_loop, "DISPATCH_SECONDS", 1e-9)
  x, y, members = _members("top1_acc", own_rows=False, multilabel=False)
  x = np.concatenate([x, x[:, :2]], axis=1)  # a width no other test compiles
  compiled = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, seconds, fun_name=None, **_: compiled.append(fun_name)
      if event == "/jax/core/compile/backend_compile_duration" else None)
  on_device = _fit(members, x, y, False)
  on_host = _fit([m._replace(device_metric=None) for m in members], x, y,
                 False)
  assert max(len(r.history) for r in on_device) > 3  # many dispatches
  assert compiled.count("jit(train_checks)") == 1
  assert compiled.count("jit(train_chunk)") == 1
  assert [r.best_epoch for r in on_device] == [r.best_epoch for r in on_host]


class _Killed(Exception):
  pass


def test_killed_between_dispatches_resumes_bit_identically(monkeypatch,
                                                           tmp_path):
  # One check per dispatch, so the kill falls between checks.
  monkeypatch.setattr(device_loop, "DISPATCH_SECONDS", 1e-9)
  x, y, members = _members("top1_acc", own_rows=False, multilabel=False)
  want = _fit(members, x, y, False)
  ckpt = checkpoint_lib.ProbeCheckpoint(str(tmp_path), "fp",
                                        every_checks=1)
  calls = []

  def kill_late(n):
    calls.append(n)
    if len(calls) == 6:  # after some members stopped
      raise _Killed

  with pytest.raises(_Killed):
    _fit(members, x, y, False, checkpoint=ckpt, on_check=kill_late)
  done = []
  got = _fit(members, x, y, False, checkpoint=ckpt, on_check=done.append)
  # Progress: what the saved state had done, then the rest.
  assert sum(done) == sum(p.max_epochs for p in _POINTS)
  for a, b in zip(want, got):
    assert (a.best_epoch, a.best_score, a.epochs_run, a.stop_reason) == (
        b.best_epoch, b.best_score, b.epochs_run, b.stop_reason)
    np.testing.assert_array_equal(a.train_losses, b.train_losses)
    np.testing.assert_array_equal(trainer.predict(a, x),
                                  trainer.predict(b, x))
