"""fit_probes interrupted at any validation check resumes bit-identically."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import trainer
from hear_jax.probe.grid import HParams

D, C = 6, 3


def _blobs(seed: int, n: int):
  rng = np.random.default_rng(seed)
  centers = np.random.default_rng(7).normal(size=(C, D)) * 1.5
  labels = rng.integers(0, C, n)
  x = centers[labels] + rng.normal(size=(n, D))
  return x.astype(np.float32), np.eye(C, dtype=np.float32)[labels]


TRAIN = _blobs(0, 150)
VALID = _blobs(1, 60)


def _hp(**kw) -> HParams:
  base = dict(lr=1e-2, hidden_layers=1, hidden_dim=8, batch_size=32,
              max_epochs=12, check_val_every_n_epoch=2, patience=100,
              dropout=0.1, initialization="xavier_normal")
  return HParams(**{**base, **kw})


# Two architecture groups (so a kill can fall in either, or between them);
# members that stop early by patience, at max_epochs, and one with a smaller
# max_epochs, so the frozen-member masks matter.
HPARAMS = [_hp(patience=1), _hp(lr=3e-3), _hp(max_epochs=6),
           _hp(hidden_layers=2, patience=2),
           _hp(hidden_layers=2, lr=3e-2, patience=1)]


def _score(probs):
  # A (score, extra) pair like the event tasks' post-processing choice, so
  # the extras' JSON round trip is exercised.
  acc = float(np.mean(probs.argmax(1) == VALID[1].argmax(1)))
  return acc, {"threshold": round(acc, 3), "name": "argmax"}


class Killed(Exception):
  """Stands in for SIGKILL: the fit stops wherever it is."""


def _fit(checkpoint=None, on_check=None):
  return trainer.fit_probes(*TRAIN, *VALID, HPARAMS, multilabel=False,
                            score_fn=_score, maximize=True,
                            key=jax.random.key(3), shuffle_train=True,
                            on_check=on_check, checkpoint=checkpoint)


def _assert_identical(a, b):
  for x, y in zip(a, b, strict=True):
    assert x.hparams == y.hparams
    assert (x.best_score, x.best_epoch, x.epochs_run, x.stop_reason) == (
        y.best_score, y.best_epoch, y.epochs_run, y.stop_reason)
    assert x.best_extra == y.best_extra
    assert x.history == y.history
    assert x.train_losses.tobytes() == y.train_losses.tobytes()
    for p, q in zip(jax.tree.leaves((x.params, x.bn_state)),
                    jax.tree.leaves((y.params, y.bn_state)), strict=True):
      assert np.asarray(p).tobytes() == np.asarray(q).tobytes()


@pytest.fixture(scope="module")
def reference():
  results = _fit()
  # The problem must exercise what a resume has to restore.
  reasons = {r.stop_reason for r in results}
  assert reasons == {"patience", "max_epochs"}, reasons
  return results


def _kill_after(n_calls):
  calls = []

  def on_check(_):
    calls.append(1)
    if len(calls) == n_calls:
      raise Killed()
  return on_check


def test_checkpointing_does_not_change_results(reference, tmp_path):
  ckpt = checkpoint_lib.ProbeCheckpoint(str(tmp_path), "fp")
  _assert_identical(_fit(ckpt), reference)
  # Each group left a finished state behind; a rerun reads it, trains nothing.
  assert sorted(os.listdir(tmp_path)) == ["group0.npz", "group1.npz"]
  calls = []
  _assert_identical(_fit(ckpt, on_check=calls.append), reference)
  assert sum(calls) == sum(h.max_epochs for h in HPARAMS)


@pytest.mark.parametrize("kill_at", [2, 5, 7, 9])
def test_killed_mid_check_resumes_bit_identically(reference, tmp_path,
                                                  kill_at):
  # Calls 1-6 are group 0's checks, 7-12 group 1's: kills in both groups.
  ckpt = checkpoint_lib.ProbeCheckpoint(str(tmp_path), "fp")
  with pytest.raises(Killed):
    _fit(ckpt, on_check=_kill_after(kill_at))
  assert os.listdir(tmp_path)  # something was saved before the kill
  progress = []
  _assert_identical(_fit(ckpt, on_check=progress.append), reference)
  # Progress restarts where the saved state was and still adds up.
  assert sum(progress) == sum(h.max_epochs for h in HPARAMS)


class _KillingCheckpoint(checkpoint_lib.ProbeCheckpoint):
  """Dies right after its n-th save, every time it is used."""

  n = 1

  def save(self, group, identity, progress):
    super().save(group, identity, progress)
    self.n -= 1
    if self.n == 0:
      raise Killed()


def test_killed_after_every_save_still_finishes_identically(reference,
                                                            tmp_path):
  attempts = 0
  while True:
    attempts += 1
    assert attempts < 40
    ckpt = _KillingCheckpoint(str(tmp_path), "fp")
    try:
      results = _fit(ckpt)
      break
    except Killed:
      continue
  _assert_identical(results, reference)
  assert attempts > 5  # it really was interrupted at every save


def test_other_fingerprint_or_damaged_file_starts_over(reference, tmp_path,
                                                       caplog):
  ckpt = checkpoint_lib.ProbeCheckpoint(str(tmp_path), "fp")
  with pytest.raises(Killed):
    _fit(ckpt, on_check=_kill_after(4))
  other = checkpoint_lib.ProbeCheckpoint(str(tmp_path), "other embeddings")
  calls = []
  with pytest.raises(Killed):
    _fit(other, on_check=lambda n: (calls.append(n), _kill_after(1)(n)))
  assert len(calls) == 1 and calls[0] < 12  # a fresh start's first check
  path = ckpt.path(0)
  with open(path, "r+b") as f:  # a torn file: half of it
    f.truncate(os.path.getsize(path) // 2)
  caplog.set_level("WARNING")
  _assert_identical(_fit(ckpt), reference)
  assert "unreadable probe checkpoint" in caplog.text


def test_stale_temporary_file_is_never_read(reference, tmp_path):
  ckpt = checkpoint_lib.ProbeCheckpoint(str(tmp_path), "fp")
  with pytest.raises(Killed):
    _fit(ckpt, on_check=_kill_after(3))
  # A writer killed mid-write leaves only its temporary file: garbage.
  with open(ckpt.path(0) + ".999.tmp.npz", "wb") as f:
    f.write(b"PK\x03\x04 not a finished checkpoint")
  _assert_identical(_fit(ckpt), reference)


# --- through the protocol: k folds, a grid, a kill in a later fold ----------


def _fold_task():
  from hear_jax.data.task import TaskInfo  # pylint: disable=g-import-not-at-top
  from hear_jax.embed import SplitEmbeddings  # pylint: disable=g-import-not-at-top
  folds = ("fold00", "fold01", "fold02")
  info = TaskInfo(name="toy_folds", metadata={
      "embedding_type": "scene", "prediction_type": "multiclass",
      "splits": list(folds), "evaluation": ["top1_acc", "mAP"]},
      label_vocabulary=("a", "b", "c"), sample_rate=16000)
  splits = {}
  for i, fold in enumerate(folds):
    x, y = _blobs(10 + i, 60)
    splits[fold] = SplitEmbeddings(
        ids=tuple(f"{fold}_{j}.wav" for j in range(60)), x=x,
        labels=tuple((info.label_vocabulary[k],) for k in y.argmax(1)),
        events=((),) * 60)
  return info, splits


def _without_times(doc):
  return {k: ({kk: vv for kk, vv in v.items() if "time_in_min" not in kk}
              if isinstance(v, dict) else v) for k, v in doc.items()}


def test_protocol_resumes_a_task_killed_in_the_retraining(tmp_path,
                                                          monkeypatch):
  from hear_jax.config import default_config  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import device_loop  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import protocol  # pylint: disable=g-import-not-at-top
  # A scene task validates on the device in dispatches sized by time; one
  # check each makes the progress calls (where the kill falls) the same in
  # every run.
  monkeypatch.setattr(device_loop, "DISPATCH_SECONDS", 1e-9)
  info, splits = _fold_task()
  probe = default_config().probe
  probe.grid, probe.grid_points = "faster", 3
  key = jax.random.key(5)
  calls = []
  want = protocol.run_task(info, splits, probe, key, embedding_path="e",
                           on_progress=calls.append).doc
  ckpt = checkpoint_lib.ProbeCheckpoint(str(tmp_path), "task fp")
  with pytest.raises(Killed):  # in the other folds' retraining
    protocol.run_task(info, splits, probe, key, embedding_path="e",
                      on_progress=_kill_after(len(calls) - 2),
                      checkpoint=ckpt)
  assert sorted(os.listdir(tmp_path)) == ["retrain", "split0"]
  progress = []
  got = protocol.run_task(info, splits, probe, key, embedding_path="e",
                          on_progress=progress.append, checkpoint=ckpt).doc
  assert _without_times(got) == _without_times(want)
  assert sum(progress) == sum(calls)
