"""The probe on several devices: members spread, same numbers as one device.

The 8-device run is a subprocess with XLA's host-platform device count set
(it must be set before jax starts); the reference runs in this process on
one device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np

from hear_jax.probe import trainer
from hear_jax.probe.grid import HParams

_D, _C = 12, 4


def _problem():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(_C, _D)) * 1.5
  labels = rng.integers(0, _C, 500)
  x = (centers[labels] + rng.normal(size=(500, _D))).astype(np.float32)
  return x, np.eye(_C, dtype=np.float32)[labels]


def _members():
  """Four grid points on one split (shared rows), and two members with rows
  of their own (like the folds of a k-fold task)."""
  x, y = _problem()
  hp = lambda **kw: HParams(**{**dict(
      lr=3e-3, hidden_layers=1, hidden_dim=32, batch_size=64, max_epochs=12,
      check_val_every_n_epoch=3, patience=2), **kw})
  points = [hp(), hp(lr=1e-3, initialization="xavier_uniform"),
            hp(lr=3e-4, dropout=0.3), hp(lr=1e-2)]
  keys = trainer.member_keys(jax.random.key(3), 6)

  def accuracy(rows):
    return lambda p: float(np.mean(p.argmax(1) == y[rows].argmax(1)))

  members = [trainer.Member(p, keys[i], np.arange(350), np.arange(350, 500),
                            accuracy(np.arange(350, 500)))
             for i, p in enumerate(points)]
  perm = np.random.default_rng(1).permutation(500)
  for j, (tr, va) in enumerate([(perm[:300], perm[300:400]),
                                (perm[100:500], perm[:100])]):
    members.append(trainer.Member(points[j], keys[4 + j], tr, va,
                                  accuracy(va)))
  return x, y, members


def fit_and_describe() -> dict:
  x, y, members = _members()
  results = trainer.fit_members(x, y, members, multilabel=False,
                                maximize=True)
  place = trainer.placement()
  n = jax.device_count()
  state, _ = trainer._init_members(  # pylint: disable=protected-access
      np.asarray(jax.random.key_data(trainer.member_keys(
          jax.random.key(3), n))),
      np.ones(n, bool), np.full(n, 1e-3, np.float32),
      np.full(n, 0.1, np.float32), np.full(n, _C, np.int32),
      shape=trainer.mlp.MlpShape(_D, _C, 1, 32),
      impl=jax.random.key_impl(members[0].key), place=place)
  weight = state.params["hidden"][0]["weight"]
  layout = {"mesh": dict(place.members.mesh.shape),
            "devices": len({s.device for s in weight.addressable_shards}),
            "member_slices": len({s.index[0].start
                                  for s in weight.addressable_shards})}
  return {"devices": jax.device_count(), "layout": layout,
          "scores": [r.best_score for r in results],
          "epochs": [r.best_epoch for r in results],
          "probs": [trainer.predict(r, x[:50]).tolist() for r in results]}


def test_rerun_is_bitwise_identical():
  a, b = fit_and_describe(), fit_and_describe()
  assert a["scores"] == b["scores"] and a["epochs"] == b["epochs"]
  assert a["probs"] == b["probs"]


def test_eight_devices_spread_members_and_match_one_device():
  env = {**os.environ,
         "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}
  code = ("import json, sys; sys.path.insert(0, 'tests'); "
          "import test_probe_devices as t; "
          "print(json.dumps(t.fit_and_describe()))")
  out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                       capture_output=True, text=True, timeout=600,
                       cwd=os.path.dirname(os.path.dirname(__file__)))
  eight = json.loads(out.stdout.strip().splitlines()[-1])
  one = fit_and_describe()
  assert eight["devices"] == 8 and one["devices"] == 1
  # Eight members over the 8 devices, one each (no batch is split).
  assert eight["layout"] == {"mesh": {"members": 8}, "devices": 8,
                             "member_slices": 8}
  # Each member runs the same program on any mesh: the same bits.
  assert eight["epochs"] == one["epochs"]
  assert eight["scores"] == one["scores"]
  assert eight["probs"] == one["probs"]
