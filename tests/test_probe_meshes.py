"""The probe gives the one-device numbers on any mesh, for any shape.

Device counts 1, 2, 3, 4, 6 and 8 (simulated host devices, one subprocess
each, since the count is fixed when jax starts) run the same fixed table of
cases, with compaction forced on (members move into programs of 16, 8, 4, 2
and 1 as they stop): 16 and 5 members sharing their rows (two
architectures), multilabel targets, the folds of a 3-fold task (members
with rows of their own), and HEAR's protocol on a 5-fold scene task (the
grid on split 0, one point retrained on 4 folds) and on an event task.
Nothing in them divides the device counts on purpose: row counts are prime
and most member counts are odd. Every case must give the one-device
numbers bit for bit (each member runs the same program on any mesh), which
is stronger than the 1e-4 a user needs.

The table is fixed (drawn once from a seeded generator), so CI replays the
same examples on every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from hear_jax.config import default_config
from hear_jax.data.task import TaskInfo
from hear_jax.embed import SplitEmbeddings
from hear_jax.probe import protocol
from hear_jax.probe import trainer
from hear_jax.probe.grid import HParams

DEVICE_COUNTS = (2, 3, 4, 6, 8)
_D = 7

# (name, members, folds, rows, multilabel); folds=0: every member trains on
# the same rows (grid points), else member i is fold i's retraining.
_FIT_CASES = (
    ("five_members_multilabel", 5, 0, 197, True),
    ("sixteen_members", 16, 0, 101, False),
    ("three_folds", 2, 3, 181, False),
)


def _problem(seed: int, n: int, classes: int, multilabel: bool):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(classes, _D)) * 1.4
  labels = rng.integers(0, classes, n)
  x = (centers[labels] + rng.normal(size=(n, _D))).astype(np.float32)
  y = np.eye(classes, dtype=np.float32)[labels]
  if multilabel:  # a second label on a third of the rows
    extra = rng.integers(0, classes, n)
    y[np.arange(n), extra] = np.where(rng.random(n) < 1 / 3, 1.0,
                                      y[np.arange(n), extra])
  return x, y


def _fit_case(index: int, members: int, folds: int, n: int,
              multilabel: bool) -> dict:
  rng = np.random.default_rng(100 + index)
  x, y = _problem(index, n, 4, multilabel)
  # Two architectures at most (each group is its own set of programs to
  # compile), one batch size.
  batch_size = int(rng.choice([16, 29, 64]))
  points = [HParams(
      lr=float(rng.choice([3e-4, 1e-3, 3e-3, 1e-2, 3e-2])),
      hidden_layers=int(rng.integers(0, 2)) if 3 < members < 16 else 1,
      hidden_dim=12, batch_size=batch_size,
      max_epochs=int(rng.choice([12, 18])), check_val_every_n_epoch=2,
      patience=int(rng.integers(1, 4)),
      initialization=str(rng.choice(["xavier_uniform", "xavier_normal"])))
            for _ in range(members)]
  keys = trainer.member_keys(jax.random.key(index), members)
  order = rng.permutation(n)

  def monitor(rows):
    if multilabel:
      return lambda p: float(-np.mean((p - y[rows]) ** 2))
    return lambda p: float(np.mean(p.argmax(1) == y[rows].argmax(1)))

  if folds:
    parts = np.array_split(order, folds)
    plans = [(np.concatenate([parts[j] for j in range(folds)
                              if j not in (i, (i + 1) % folds)]),
              parts[(i + 1) % folds]) for i in range(1, members + 1)]
  else:
    cut = int(n * 0.7)
    plans = [(order[:cut], order[cut:])] * members
  fits = trainer.fit_members(
      x, y, [trainer.Member(p, keys[i], tr, va, monitor(va))
             for i, (p, (tr, va)) in enumerate(zip(points, plans))],
      multilabel=multilabel, maximize=True)
  return {"scores": [f.best_score for f in fits],
          "epochs": [[f.best_epoch, f.epochs_run] for f in fits],
          "probs": [trainer.predict(f, x[:9]).tolist() for f in fits]}


def _probe_config(**fields) -> ml_collections.ConfigDict:
  config = default_config().probe
  config.grid = "faster"
  config.grid_points = 2
  config.max_epochs = 9
  for name, value in fields.items():
    config[name] = value
  return config


_VOCAB = ("a", "b", "c")


def _scene_fold_task() -> tuple[TaskInfo, dict[str, SplitEmbeddings]]:
  folds = [f"fold{i:02d}" for i in range(5)]
  info = TaskInfo(name="folds", metadata={
      "embedding_type": "scene", "prediction_type": "multiclass",
      "splits": folds, "evaluation": ["top1_acc", "mAP"]},
      label_vocabulary=_VOCAB, sample_rate=16000)
  splits = {}
  for i, fold in enumerate(folds):
    x, y = _problem(40 + i, (37, 41, 43, 47, 53)[i], 3, False)
    splits[fold] = SplitEmbeddings(
        ids=tuple(f"{fold}_{j}.wav" for j in range(len(x))), x=x,
        labels=tuple((_VOCAB[k],) for k in y.argmax(1)),
        events=((),) * len(x))
  return info, splits


def _event_task() -> tuple[TaskInfo, dict[str, SplitEmbeddings]]:
  info = TaskInfo(name="events", metadata={
      "embedding_type": "event", "prediction_type": "multilabel",
      "splits": ["train", "valid", "test"],
      "evaluation": ["event_onset_200ms_fms", "segment_1s_er"]},
      label_vocabulary=_VOCAB, sample_rate=16000)
  splits = {}
  for s, (name, clips) in enumerate((("train", 7), ("valid", 3),
                                     ("test", 3))):
    rng = np.random.default_rng(60 + s)
    frames = 47  # 50 ms hop: 2.35 s clips
    clip_events, xs = [], []
    for c in range(clips):
      label = int(rng.integers(0, 3))
      start = int(rng.integers(0, 25))
      end = start + int(rng.integers(6, 20))
      clip_events.append(({"label": _VOCAB[label], "start": 50.0 * start,
                           "end": 50.0 * end},))
      x = rng.normal(size=(frames, _D)).astype(np.float32)
      x[start:end + 1, label] += 3.0
      xs.append(x)
    splits[name] = SplitEmbeddings(
        ids=tuple(f"{name}_{c}.wav" for c in range(clips)),
        x=np.concatenate(xs), labels=((),) * clips,
        events=tuple(clip_events),
        file_index=np.repeat(np.arange(clips), frames).astype(np.int32),
        timestamps_ms=np.tile(50.0 * np.arange(frames), clips))
  return info, splits


def _protocol_case(task) -> dict:
  info, splits = task()
  doc = protocol.run_task(info, splits, _probe_config(), jax.random.key(5),
                          embedding_path="e").doc
  splits = [k for k, v in doc.items() if isinstance(v, dict)
            and "test_score" in v]
  return {"scores": [doc[k]["test_score"] for k in splits]
          + [doc[k]["validation_score"] for k in splits]}


def describe() -> dict:
  """Every case's numbers on this process's devices."""
  # Compaction whenever members stop, however small the program.
  trainer._COMPACT_MIN_FLOPS = 0  # pylint: disable=protected-access
  out = {"devices": jax.device_count()}
  for i, (name, *case) in enumerate(_FIT_CASES):
    start = time.perf_counter()
    out[name] = _fit_case(i, *case)
    out[name]["seconds"] = time.perf_counter() - start
  for name, task in (("protocol_5_fold_scene", _scene_fold_task),
                     ("protocol_event", _event_task)):
    start = time.perf_counter()
    out[name] = _protocol_case(task)
    out[name]["seconds"] = time.perf_counter() - start
  return out


def _run(devices: int) -> subprocess.Popen:
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  code = ("import json, sys; sys.path.insert(0, 'tests'); "
          "import test_probe_meshes as t; print(json.dumps(t.describe()))")
  return subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          cwd=os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture(scope="module")
def by_devices() -> dict[int, dict]:
  # All device counts at once: each process is mostly compiling, single-
  # threaded, so they overlap well on a few cores.
  procs = {d: _run(d) for d in (1,) + DEVICE_COUNTS}
  out = {}
  for d, proc in procs.items():
    stdout, stderr = proc.communicate(timeout=1200)
    assert proc.returncode == 0, f"{d} devices:\n{stderr[-3000:]}"
    out[d] = json.loads(stdout.strip().splitlines()[-1])
  return out


@pytest.mark.parametrize("devices", DEVICE_COUNTS)
def test_every_case_gives_the_one_device_numbers(by_devices, devices):
  one, many = by_devices[1], by_devices[devices]
  assert one["devices"] == 1 and many["devices"] == devices
  for name in [c[0] for c in _FIT_CASES] + ["protocol_5_fold_scene",
                                            "protocol_event"]:
    a, b = one[name], many[name]
    if "epochs" in a:
      assert a["epochs"] == b["epochs"], name
      np.testing.assert_array_equal(b["probs"], a["probs"], err_msg=name)
    np.testing.assert_array_equal(b["scores"], a["scores"], err_msg=name)


def test_the_cases_stop_at_different_checks(by_devices):
  # Compaction only happens when members stop apart; the table must make
  # them (else the test would not exercise the smaller programs).
  spread = [len({e[1] for e in by_devices[1][name]["epochs"]})
            for name, members, *_ in _FIT_CASES if members >= 3]
  assert min(spread) >= 2
