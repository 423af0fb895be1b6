"""The per-task loop: build -> embed -> probe -> score -> report.

  table = evaluate(config, workdir)   # writes everything, returns markdown

For every task of the config: prepare its TFDS dataset once, then for every
model: embed each split (cached in the workdir), fit HEAR's downstream heads
(`hear_jax.probe`), score the test split(s) (`hear_jax.metrics`) and write
`<workdir>/<model>/<task>/test.predicted-scores.json`. The leaderboard of all
models x tasks goes to `<workdir>/leaderboard.{csv,md}`.

Each model reads a hearpreprocess task's audio at its own `sample_rate`, as
hear-eval-kit's runner feeds it the `<rate>/` folder of that rate; each rate
is prepared once as its own dataset. A rate the task lacks is resampled from
the lowest rate above it, else the highest, with a one-line warning and
`audio_resampled_from` in the results JSON and compute.json.
`config.task_sample_rate` makes every model read that one rate instead.

A "heareval:<dir>" task is embeddings hear-eval-kit's runner wrote: no model
runs, the heads are fitted on them and the model is the directory's parent.
`config.export_heareval` also writes each task's embeddings in that layout
under `<workdir>/heareval/<model>/<task dir>/`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import zlib
from typing import Any

import jax
import ml_collections

from hear_jax import distributed
from hear_jax import embed
from hear_jax import progress
from hear_jax import workdir_lock
from hear_jax.config import check_config
from hear_jax.data import heareval_layout
from hear_jax.data import hearpreprocess
from hear_jax.data import task_specs
from hear_jax.data.task import Task, load_task, read_split
from hear_jax.models import load_model
from hear_jax.models.loading import check_spec
from hear_jax.models.interface import EmbeddingModel
from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import protocol
from hear_jax.report import html as report_html
from hear_jax.report import leaderboard
from hear_jax.report import results
from hear_jax.report import task_files


def model_specs(config: ml_collections.ConfigDict) -> list[str]:
  """config.model split at top-level commas: options like `m(a=1, b=2)` or
  `m(x=[1, 2], s='a,b')` keep theirs."""
  specs, depth, quote, start = [], 0, "", 0
  text = config.model + ","
  for i, char in enumerate(text):
    if quote:
      quote = "" if char == quote and text[i - 1] != "\\" else quote
    elif char in "'\"":
      quote = char
    elif char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    elif char == "," and depth <= 0:
      specs.append(text[start:i].strip())
      start = i + 1
  if depth or quote or start < len(text):
    # An unclosed bracket or quote swallows the rest: say so, not "no spec".
    raise ValueError(f"config.model {config.model!r}: unbalanced brackets or"
                     " quotes")
  specs = [s for s in specs if s]
  if not specs:
    raise ValueError("config.model: no model spec given")
  return specs


def slug(spec: str) -> str:
  """A model spec as a directory name."""
  return re.sub(r"[^A-Za-z0-9._=-]+", "_", spec).strip("_")


def _check_task_paths(config: ml_collections.ConfigDict) -> None:
  """Missing data is the commonest first error: say so early."""
  for spec in config.tasks:
    path = task_specs.data_path(spec)
    if path is None or os.path.exists(path):
      continue
    if spec.startswith(task_specs.HEAREVAL_PREFIX):
      raise FileNotFoundError(
          f"embeddings not found: {path} — make them with"
          " `python -m heareval.embeddings.runner <module>` (a directory"
          " embeddings/<module>/<task dir>/) or pass its path as"
          " --config=configs/hear.py:<embeddings task dir>")
    name = os.path.basename(path.rstrip("/"))
    if spec.startswith(task_specs.HEAR2021_PREFIX):
      name = task_specs.hear2021_spec(spec)[0]
    raise FileNotFoundError(
        f"task data not found: {path} — download the hearpreprocess output"
        f" for {name} (HEAR 2021: https://zenodo.org/record/5887964, e.g."
        f" hear2021-{name}-48000.tar.gz), unpack it there or pass its path"
        f" as --config=<config>.py:<task dir or tarball>")


class _Rows:
  """Rows [start, stop) of a data source, as a data source (a process's
  share of a split: it reads only these records)."""

  def __init__(self, source: Any, rows: range):
    self.source, self.rows = source, rows

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, i: int) -> Any:
    return self.source[self.rows[i]]


def _embed_split(model: EmbeddingModel, model_spec: str, task: Task,
                 split: str, batch_samples: int,
                 stage: progress.Stage | None,
                 rows: range | None = None) -> embed.SplitEmbeddings:
  """One split (or its data source's `rows`), with a progress bar in seconds
  of audio; `stage` counts the audio embedded and the seconds it took (for
  compute.json)."""
  audio = (task.read_split(split) if rows is None
           else read_split(_Rows(task.source[split], rows)))
  start = time.perf_counter()
  total = sum(len(a) for a in audio.audio) / task.info.sample_rate
  with progress.Progress(f"embed {model_spec} / {task.info.name} / {split}",
                         total, "s audio") as bar:
    out = embed.embed_split(model, task.info, audio,
                            batch_samples=batch_samples,
                            on_progress=bar.update)
  if stage is not None:
    stage.count("embedded_audio_s", out.audio_seconds)
    stage.count("embed_s", time.perf_counter() - start)
  return out


def embed_task(model: EmbeddingModel, model_spec: str, task: Task,
               builder: Any, cache_dir: str,
               config: ml_collections.ConfigDict,
               stage: progress.Stage | None = None
               ) -> tuple[dict[str, embed.SplitEmbeddings], str, float]:
  """Every split's embeddings (cached); returns them, a fingerprint of what
  they were made from, and the seconds spent."""
  start = time.perf_counter()
  batch_samples = int(config.embed.batch_seconds * model.sample_rate)
  splits, fingerprints = {}, []
  for split in task.info.splits:
    fingerprint = embed.cache_fingerprint(model, {
        "dataset": builder.info.full_name,
        "config": builder.builder_config.name if builder.builder_config
                  else None,
        "split": split, "examples": len(task.source[split]),
        "task": task.info.metadata,
        # The prepared files' content: a rebuilt dataset is re-embedded.
        # Process 0 reads the files (and writes the digests' memo); the
        # other processes of a multi-host run get its digest.
        "files_sha256": distributed.from_main(
            f"digest {task.info.name}/{split}", lambda split=split:
            embed.files_digest(
                [os.fspath(p) for p in builder.info.splits[split].filepaths],
                os.path.join(cache_dir, "dataset-files.json")),
            timeout_seconds=config.distributed_timeout_seconds),
    }, batch_samples=batch_samples)
    fingerprints.append(fingerprint)
    path = os.path.join(cache_dir, f"{split}.npz")
    if distributed.process_count() > 1:
      splits[split], cached = embed.sharded_split_embeddings(
          path, fingerprint,
          lambda rows, split=split: _embed_split(
              model, model_spec, task, split, batch_samples, stage, rows),
          len(task.source[split]),
          label=f"{model_spec} / {task.info.name} / {split}",
          timeout_seconds=config.distributed_timeout_seconds)
    else:
      splits[split], cached = embed.cached_split_embeddings(
          path, fingerprint,
          lambda split=split: _embed_split(model, model_spec, task, split,
                                           batch_samples, stage))
    logging.info("%s / %s / %s: %d rows%s", model_spec, task.info.name, split,
                 len(splits[split].x), " (cached)" if cached else "")
  # One buffer for every split, which a CPU probe uses as it is.
  splits = embed.packed_splits(splits)
  return splits, "\n".join(fingerprints), time.perf_counter() - start


def probe_task(task: Task, splits: dict[str, embed.SplitEmbeddings],
               embeddings_fingerprint: str, out_dir: str,
               config: ml_collections.ConfigDict,
               embedding_path: str | None = None,
               stage: progress.Stage | None = None,
               audio_resampled_from: int | None = None) -> dict[str, Any]:
  """HEAR's protocol on the embeddings, or its saved result when nothing it
  depends on changed (`prediction-done.json` records what it was made from).
  Also writes the report's files (grid.json, predicted events, logs/).
  `audio_resampled_from`: the task rate the model's audio was resampled
  from, recorded in the results JSON (None: it read its own rate)."""
  scores_path = os.path.join(out_dir, "test.predicted-scores.json")
  done_path = os.path.join(out_dir, "prediction-done.json")
  fingerprint = json.dumps({
      "probe": config.probe.to_dict(), "seed": config.seed,
      "embeddings": embeddings_fingerprint}, sort_keys=True)
  doc = _finished_probe(done_path, scores_path, fingerprint)
  # Every process has decided before process 0 writes a result that would
  # change a slower process's decision.
  distributed.barrier(f"probe {out_dir}",
                      timeout_seconds=config.distributed_timeout_seconds)
  main = distributed.is_main()  # the only process that writes
  if doc is not None:
    # A run killed while clearing it may have left a finished probe's state.
    if main:
      shutil.rmtree(os.path.join(out_dir, "probe-checkpoint"),
                    ignore_errors=True)
    if stage is not None:
      stage.counts["cached"] = 1
      stage.detail = (f"reused, {task.info.primary_metric} "
                      f"{results.reported_score(doc)[0]:.4f}")
    return doc
  start = time.perf_counter()
  # The training state, saved as it goes, so a killed run resumes mid-fit;
  # the fingerprint keeps a state made from other inputs from being resumed.
  checkpoint = None
  if config.probe_checkpoint_seconds >= 0 and main:
    checkpoint = checkpoint_lib.ProbeCheckpoint(
        os.path.join(out_dir, "probe-checkpoint"), fingerprint,
        min_seconds=config.probe_checkpoint_seconds)
  task_key = jax.random.fold_in(jax.random.key(config.seed),
                                zlib.crc32(task.info.name.encode()))
  embedding_path = embedding_path or os.path.join(out_dir, "embeddings")
  label = stage.subject if stage is not None else out_dir
  with progress.Progress(
      f"probe {label}", protocol.planned_member_epochs(task.info, config.probe),
      "member-epochs") as bar:
    outcome = protocol.run_task(task.info, splits, config.probe, task_key,
                                embedding_path=embedding_path,
                                on_progress=bar.update, checkpoint=checkpoint)
  doc = outcome.doc
  if audio_resampled_from is not None:
    doc["audio_resampled_from"] = audio_resampled_from
  if stage is not None:
    points = len(doc.get("knn_validation_scores", outcome.grid))
    stage.detail = (f"{points} grid points, {len(outcome.fits)}"
                    f" splits, {task.info.primary_metric} "
                    f"{results.reported_score(doc)[0]:.4f}")
  if not main:
    return doc
  results.write_json(scores_path, doc)
  task_files.write_probe_outputs(out_dir, outcome)
  results.write_json(done_path, {
      "time": time.perf_counter() - start, "embedding_path": embedding_path,
      "grid_points": config.probe.grid_points, "fingerprint": fingerprint})
  if checkpoint is not None:
    checkpoint.clear()  # the results above are what a rerun reuses now
  return doc


def _finished_probe(done_path: str, scores_path: str,
                    fingerprint: str) -> dict[str, Any] | None:
  """The saved scores if `prediction-done.json` says they were made from
  `fingerprint`; None if missing, made from other inputs, or unreadable
  (logged, then recomputed)."""
  if not (os.path.exists(done_path) and os.path.exists(scores_path)):
    return None
  try:
    with open(done_path) as f:
      if json.load(f).get("fingerprint") != fingerprint:
        return None
    with open(scores_path) as f:
      return json.load(f)
  except (OSError, ValueError, AttributeError) as e:
    logging.warning("%s: unreadable probe result (%s: %s); recomputing",
                    os.path.dirname(done_path), type(e).__name__, e)
    return None


def probe_heareval_embeddings(path: str, workdir: str,
                              config: ml_collections.ConfigDict
                              ) -> leaderboard.LeaderboardRow:
  """HEAR's protocol on embeddings that hear-eval-kit's runner wrote; the
  model is the embeddings directory's parent (`embeddings/<module>/<task>`)."""
  info, splits = heareval_layout.read_embeddings(path)
  model = heareval_layout.model_name(path)
  out_dir = os.path.join(workdir, slug(model), info.name)
  doc = probe_task(Task(info=info, source=None), splits,
                   heareval_layout.fingerprint(path, splits), out_dir, config,
                   embedding_path=os.path.abspath(path))
  score, std = results.reported_score(doc)
  logging.info("%s / %s: %s = %.4f (heareval embeddings %s)", model,
               info.name, info.primary_metric, score, path)
  return leaderboard.LeaderboardRow(model, info.name, info.primary_metric,
                                    score, std,
                                    results.reported_interval(doc))


def check_run(config: ml_collections.ConfigDict) -> list[str]:
  """What can be checked before any work, writing nothing: the config's
  fields and values, the model specs (syntax, the model exists; before any
  task is read), the task specs and their data. Returns the model specs."""
  check_config(config)
  # Embeddings directories bring their own model; the rest need config.model.
  embedded = [s.startswith(task_specs.HEAREVAL_PREFIX) for s in config.tasks]
  specs = [] if all(embedded) else model_specs(config)
  # Models before any task is read: a wrong model spec is the message, not
  # whatever the data would say first.
  for spec in specs:
    check_spec(spec)
  _check_task_paths(config)
  for spec in config.tasks:
    task_specs.check_task_spec(spec, config.task_sample_rate)
  return specs


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Runs the whole evaluation; returns the leaderboard as markdown.

  A wrong config fails before anything is written (`check_run`). The run
  then holds `<workdir>/.lock` throughout (`hear_jax.workdir_lock`): a
  second run on the same workdir stops at once, naming the holder, or waits
  up to `config.lock_wait_seconds` for it. Models are loaded under the lock,
  so a wrong model spec leaves at most that lock file behind. A killed run
  leaves no stale lock, and rerunning it resumes: finished datasets,
  embeddings and probe results are reused (each is written atomically and
  checked against what it was made from), and an interrupted probe continues
  from its last checkpoint.
  """
  specs = check_run(config)
  # Process 0 of a multi-process run holds the lock for all of them (only it
  # writes results); the others go on once it holds it, or fail with it.
  with distributed.held_by_main(
      "workdir lock", lambda: workdir_lock.hold(
          workdir, wait_seconds=config.lock_wait_seconds),
      timeout_seconds=(config.lock_wait_seconds
                       + config.distributed_timeout_seconds)):
    models = {spec: load_model(spec) for spec in specs}
    return _evaluate(config, workdir, models)


def _evaluate(config: ml_collections.ConfigDict, workdir: str,
              models: dict[str, EmbeddingModel]) -> str:
  data_dir = config.data_dir or os.path.join(workdir, "tfds")
  os.makedirs(workdir, exist_ok=True)

  rows, times, seen_tasks = [], progress.RunTimes(), {}
  for task_spec in config.tasks:
    if task_spec.startswith(task_specs.HEAREVAL_PREFIX):
      rows.append(probe_heareval_embeddings(
          task_specs.data_path(task_spec), workdir, config))
      continue
    # The rates the task's data holds (() for builder specs); a forced rate
    # needs no look (a tarball without its rate in its name is read through).
    rates = (task_specs.audio_rates(task_spec)
             if config.task_sample_rate is None else ())
    by_rate: dict[int | None, tuple[Any, Task]] = {}
    for spec, model in models.items():
      rate = _audio_rate(spec, model, task_spec, rates,
                         config.task_sample_rate)
      if rate not in by_rate:
        by_rate[rate] = _prepare_task(task_spec, rate, data_dir, config,
                                      times)
        name = by_rate[rate][1].info.name
        if seen_tasks.get(name, task_spec) != task_spec:
          # Both would write <workdir>/<model>/<name>/: one would undo the
          # other.
          raise ValueError(f"task specs {seen_tasks[name]!r} and"
                           f" {task_spec!r} are both task {name!r}; give one"
                           " of them per run")
        names = {t.info.name for _, t in by_rate.values()}
        if len(names) > 1:
          raise ValueError(f"task spec {task_spec!r}: its rates hold"
                           f" different tasks ({', '.join(sorted(names))})")
        seen_tasks[name] = task_spec
      builder, task = by_rate[rate]
      resampled_from = (task.info.sample_rate
                        if task.info.sample_rate != model.sample_rate
                        else None)
      out_dir = os.path.join(workdir, slug(spec), task.info.name)
      with times.stage("embed", task.info.name, spec,
                       reset_peak=True) as embed_stage:
        splits, fingerprint, embed_seconds = embed_task(
            model, spec, task, builder, os.path.join(out_dir, "embeddings"),
            config, embed_stage)
        embed_stage.detail = progress.embed_detail(splits, embed_stage)
      if config.export_heareval and distributed.is_main():
        heareval_layout.export_task(
            os.path.join(workdir, "heareval", slug(spec),
                         heareval_layout.task_dir_name(task.info.metadata)),
            task.info, splits, fingerprint=fingerprint)
      with times.stage("probe", task.info.name, spec) as probe_stage:
        doc = probe_task(task, splits, fingerprint, out_dir, config,
                         stage=probe_stage,
                         audio_resampled_from=resampled_from)
      if distributed.is_main():
        task_files.record_compute(
            out_dir, model=spec, model_params=model.params,
            task_info=task.info,
            hear_task=heareval_layout.task_dir_name(task.info.metadata),
            splits=splits, embed_stage=embed_stage, probe_stage=probe_stage,
            audio_resampled_from=resampled_from)
      score, std = results.reported_score(doc)
      rows.append(leaderboard.LeaderboardRow(
          spec, task.info.name, task.info.primary_metric, score, std,
          results.reported_interval(doc)))
      logging.info("%s / %s: %s = %.4f (embedding %.1f s)", spec,
                   task.info.name, task.info.primary_metric, score,
                   embed_seconds)
  if not distributed.is_main():
    return leaderboard.to_markdown(rows)
  table = leaderboard.write_leaderboard(rows, workdir)
  _write_report(workdir, times)
  times.print_summary()
  return table


def _audio_rate(spec: str, model: EmbeddingModel, task_spec: str,
                rates: tuple[int, ...], forced: int | None) -> int | None:
  """The task rate `model` reads: `forced` (config.task_sample_rate) if set,
  else its own or the best to resample from (`rates` of a hearpreprocess
  task; None for a builder task, which has one rate)."""
  if forced is not None or not rates:
    return forced
  rate = hearpreprocess.rate_for_model(rates, model.sample_rate)
  if rate != model.sample_rate:
    logging.warning(
        "%s reads %d Hz audio; task %s has none (rates: %s): resampling"
        " from %d Hz", spec, model.sample_rate, task_spec,
        ", ".join(map(str, rates)), rate)
  return rate


def _prepare_task(task_spec: str, rate: int | None, data_dir: str,
                  config: ml_collections.ConfigDict,
                  times: progress.RunTimes) -> tuple[Any, Task]:
  """The task's dataset at `rate`, built once (the data stage)."""
  with times.stage("data", task_spec, reset_peak=True) as stage:
    # One process prepares a dataset, then the others read it.
    builder = distributed.main_first(
        f"data {task_spec} {rate}", lambda:
        task_specs.prepare_task(task_spec, data_dir, rate),
        timeout_seconds=config.distributed_timeout_seconds)
    task = load_task(builder)
    stage.task, stage.detail = task.info.name, (
        f"{progress.examples_detail(task.source)},"
        f" {task.info.sample_rate} Hz")
  return builder, task


def _write_report(workdir: str, times: progress.RunTimes) -> None:
  """report.html; its failure is logged, not raised: the results it draws
  are already written, and `python -m hear_jax.report --workdirs=<workdir>`
  redraws it."""
  try:
    with times.stage("report", workdir, track=False) as stage:
      stage.detail = report_html.write_report(workdir)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("report.html not written (%s: %s); redraw it with"
                    " python -m hear_jax.report --workdirs=%s",
                    type(e).__name__, e, workdir)
