"""Compiled programs are counted and kept across runs (hear_jax.compile_cache).

A rerun, or a second task with the same embedding width whose rows and
classes fall in the same buckets (`hear_jax.probe.buckets`), loads the
probe's programs from JAX's persistent cache instead of compiling them:
each fit runs in a fresh process (the in-memory cache then holds nothing)
and the second one must compile nothing and spend < 2 s on compilation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections

from hear_jax import compile_cache
from hear_jax import progress

# A fit on a fresh task of width 24 (rows, classes and values from `seed`),
# printing what the process compiled, as JSON.
_FIT = """
import json, sys
import numpy as np
import jax
from hear_jax import compile_cache
from hear_jax.probe import trainer
from hear_jax.probe.grid import hear_grid
compile_cache.enable(sys.argv[1])
seed, n_train, n_valid, n_labels = map(int, sys.argv[2:6])
rng = np.random.default_rng(seed)
def split(n):
  labels = rng.integers(0, n_labels, n)
  x = rng.normal(size=(n, 24)).astype(np.float32) + labels[:, None]
  return x, np.eye(n_labels, dtype=np.float32)[labels]
(tx, ty), (vx, vy) = split(n_train), split(n_valid)
before = compile_cache.totals()
results = trainer.fit_probes(
    tx, ty, vx, vy, hear_grid("faster", 2, max_epochs=6), multilabel=False,
    score_fn=lambda p: float(np.mean(p.argmax(1) == vy.argmax(1))),
    maximize=True, key=jax.random.key(seed), shape_buckets=True)
spent = compile_cache.totals() - before
print(json.dumps({**spent.as_dict(), "programs": spent.programs,
                  "scores": [r.best_score for r in results]}))
"""


def _fit_in_fresh_process(cache_dir: str, seed: int, n_train: int,
                          n_valid: int, n_labels: int) -> dict:
  out = subprocess.run(
      [sys.executable, "-c", _FIT, cache_dir, str(seed), str(n_train),
       str(n_valid), str(n_labels)],
      capture_output=True, text=True, check=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_task_of_the_same_width_compiles_nothing(tmp_path):
  cache = str(tmp_path / "xla")
  first = _fit_in_fresh_process(cache, 0, 150, 50, 4)
  assert first["compiles"] > 0 and first["compile_cache_hits"] == 0
  assert os.listdir(cache)  # programs were kept, small as they are
  # Another task in a later run: other data, other train, valid and class
  # counts (200 -> 229 rows, 4 -> 7 classes: the same buckets), all loaded.
  second = _fit_in_fresh_process(cache, 1, 171, 58, 7)
  assert second["compiles"] == 0, second
  assert second["compile_cache_hits"] == first["programs"]
  # Loading is < 2 s on an idle 2-core CPU (19 programs, ~0.4 s); on a
  # shared, loaded machine wall-clock seconds stretch, but stay a small
  # part of compiling them.
  assert (second["compile_seconds"] < 2.0
          or second["compile_seconds"] < first["compile_seconds"] / 10)
  # And a rerun gives the same numbers from the loaded programs.
  assert _fit_in_fresh_process(cache, 0, 150, 50, 4)["scores"] == (
      first["scores"])


def test_totals_count_compilations_in_a_stage():
  times = progress.RunTimes(stream=open(os.devnull, "w"))
  f = jax.jit(lambda x: jnp.tanh(x) * 3.0 + 0.25)
  x = jnp.ones((5, 7), jnp.float32)  # made (and compiled) outside
  with times.stage("probe", "task") as stage:
    f(x).block_until_ready()
    f(x).block_until_ready()  # not again
  assert stage.compiled.programs == 1
  assert stage.compiled.compile_seconds > 0
  assert "probe" in times.summary_line("task")
  assert "compiles" in times.summary_line("task")


def test_directory_follows_the_config(tmp_path, monkeypatch):
  config = ml_collections.ConfigDict({"compilation_cache_dir": ""})
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compile_cache.directory(config) == str(tmp_path / "hear_jax" / "xla")
  config.compilation_cache_dir = "none"
  assert compile_cache.directory(config) is None
  config.compilation_cache_dir = str(tmp_path / "x")
  assert compile_cache.directory(config) == str(tmp_path / "x")
