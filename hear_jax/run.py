"""The per-task loop: build -> embed -> probe -> score -> report.

  table = evaluate(config, workdir)   # writes everything, returns markdown

For every task of the config: prepare its TFDS dataset once, then for every
model: embed each split (cached in the workdir), fit HEAR's downstream heads
(`hear_jax.probe`), score the test split(s) (`hear_jax.metrics`) and write
`<workdir>/<model>/<task>/test.predicted-scores.json`. The leaderboard of all
models x tasks goes to `<workdir>/leaderboard.{csv,md}`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import zlib
from typing import Any

import jax
import ml_collections

from hear_jax import embed
from hear_jax.data import task_specs
from hear_jax.data.task import Task, load_task
from hear_jax.models import load_model
from hear_jax.models.interface import EmbeddingModel
from hear_jax.probe import protocol
from hear_jax.report import leaderboard
from hear_jax.report import results


def model_specs(config: ml_collections.ConfigDict) -> list[str]:
  specs = [s.strip() for s in config.model.split(",") if s.strip()]
  if not specs:
    raise ValueError("config.model: no model spec given")
  return specs


def slug(spec: str) -> str:
  """A model spec as a directory name."""
  return re.sub(r"[^A-Za-z0-9._=-]+", "_", spec).strip("_")


def _check_task_paths(config: ml_collections.ConfigDict) -> None:
  """Missing hearpreprocess data is the commonest first error: say so early."""
  for spec in config.tasks:
    if not spec.startswith(task_specs.HEARPREPROCESS_PREFIX):
      continue
    path = os.path.expanduser(spec[len(task_specs.HEARPREPROCESS_PREFIX):])
    if not os.path.exists(path):
      name = os.path.basename(path.rstrip("/"))
      raise FileNotFoundError(
          f"task data not found: {path} — download the hearpreprocess output"
          f" for {name} (HEAR 2021: https://zenodo.org/record/5887964, e.g."
          f" hear2021-{name}-48000.tar.gz), unpack it there or pass its path"
          f" as --config=<config>.py:<task dir or tarball>")


def embed_task(model: EmbeddingModel, model_spec: str, task: Task,
               builder: Any, cache_dir: str,
               config: ml_collections.ConfigDict
               ) -> tuple[dict[str, embed.SplitEmbeddings], str, float]:
  """Every split's embeddings (cached); returns them, a fingerprint of what
  they were made from, and the seconds spent."""
  start = time.perf_counter()
  batch_samples = int(config.embed.batch_seconds * model.sample_rate)
  splits, fingerprints = {}, []
  for split in task.info.splits:
    fingerprint = json.dumps({
        "model": model_spec, "dataset": builder.info.full_name,
        "config": builder.builder_config.name if builder.builder_config
                  else None,
        "split": split, "examples": len(task.source[split]),
    }, sort_keys=True)
    fingerprints.append(fingerprint)
    path = os.path.join(cache_dir, f"{split}.npz")
    splits[split], cached = embed.cached_split_embeddings(
        path, fingerprint,
        lambda split=split: embed.embed_split(
            model, task.info, task.read_split(split),
            batch_samples=batch_samples))
    logging.info("%s / %s / %s: %d rows%s", model_spec, task.info.name, split,
                 len(splits[split].x), " (cached)" if cached else "")
  return splits, "\n".join(fingerprints), time.perf_counter() - start


def probe_task(task: Task, splits: dict[str, embed.SplitEmbeddings],
               embeddings_fingerprint: str, out_dir: str,
               config: ml_collections.ConfigDict) -> dict[str, Any]:
  """HEAR's protocol on the embeddings, or its saved result when nothing it
  depends on changed (`prediction-done.json` records what it was made from)."""
  scores_path = os.path.join(out_dir, "test.predicted-scores.json")
  done_path = os.path.join(out_dir, "prediction-done.json")
  fingerprint = json.dumps({
      "probe": config.probe.to_dict(), "seed": config.seed,
      "embeddings": embeddings_fingerprint}, sort_keys=True)
  if os.path.exists(done_path) and os.path.exists(scores_path):
    with open(done_path) as f:
      if json.load(f).get("fingerprint") == fingerprint:
        with open(scores_path) as g:
          return json.load(g)
  start = time.perf_counter()
  task_key = jax.random.fold_in(jax.random.key(config.seed),
                                zlib.crc32(task.info.name.encode()))
  embedding_path = os.path.join(out_dir, "embeddings")
  doc = protocol.evaluate_task(task.info, splits, config.probe, task_key,
                               embedding_path=embedding_path)
  results.write_json(scores_path, doc)
  results.write_json(done_path, {
      "time": time.perf_counter() - start, "embedding_path": embedding_path,
      "grid_points": config.probe.grid_points, "fingerprint": fingerprint})
  return doc


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Runs the whole evaluation; returns the leaderboard as markdown."""
  specs = model_specs(config)
  if not config.tasks:
    raise ValueError("config.tasks: no task given")
  _check_task_paths(config)
  models = {spec: load_model(spec) for spec in specs}  # fail before any work
  data_dir = config.data_dir or os.path.join(workdir, "tfds")
  os.makedirs(workdir, exist_ok=True)

  rows = []
  for task_spec in config.tasks:
    builder = task_specs.prepare_task(task_spec, data_dir)
    task = load_task(builder)
    for spec, model in models.items():
      out_dir = os.path.join(workdir, slug(spec), task.info.name)
      splits, fingerprint, embed_seconds = embed_task(
          model, spec, task, builder, os.path.join(out_dir, "embeddings"),
          config)
      doc = probe_task(task, splits, fingerprint, out_dir, config)
      score, std = results.reported_score(doc)
      rows.append(leaderboard.LeaderboardRow(
          spec, task.info.name, task.info.primary_metric, score, std))
      logging.info("%s / %s: %s = %.4f (embedding %.1f s)", spec,
                   task.info.name, task.info.primary_metric, score,
                   embed_seconds)
  return leaderboard.write_leaderboard(rows, workdir)
