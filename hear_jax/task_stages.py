"""One model on one task, stage by stage: data -> embed -> probe.

  builder, task = prepare_task(spec, rate, data_dir, config, times)
  splits, fingerprint, seconds = embed_task(model, name, task, builder,
                                            cache_dir, config)
  doc, outcome = probe_task(task, splits, fingerprint, out_dir, config)

`hear_jax.evaluation` runs these for every model x task. With a workdir each
stage keeps its output there (prepared datasets, the embedding cache, the
probe's results, checkpoints and report files) and a rerun reuses it; with
`cache_dir=None` / `out_dir=None` a stage computes in memory and writes
nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import contextlib
import shutil
import tempfile
import time
import zlib
from typing import Any, Iterator

import jax
import ml_collections

from hear_jax import distributed
from hear_jax import embed
from hear_jax import progress
from hear_jax.data import heareval_layout
from hear_jax.data import hearpreprocess
from hear_jax.data import task_specs
from hear_jax.data.task import Task, load_task, read_split
from hear_jax.models.interface import EmbeddingModel
from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import protocol
from hear_jax.report import results
from hear_jax.report import task_files


def slug(spec: str) -> str:
  """A model spec as a directory name."""
  return re.sub(r"[^A-Za-z0-9._=-]+", "_", spec).strip("_")


def check_task_paths(specs: list[str]) -> None:
  """Missing data is the commonest first error: say so early."""
  for spec in specs:
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


def _loaded_task_digest(task: Task, split: str) -> str:
  """sha256 of a loaded task's split (ids, audio, labels, events): what a
  task given as an object, with no prepared files, is cached by."""
  audio = task.read_split(split)
  digest = hashlib.sha256(json.dumps(
      [audio.ids, audio.labels, audio.events]).encode())
  for clip in audio.audio:
    digest.update(clip.tobytes())
  return digest.hexdigest()


def _split_fingerprint(model: EmbeddingModel, task: Task, builder: Any,
                       split: str, cache_dir: str, batch_samples: int,
                       config: ml_collections.ConfigDict) -> str:
  """What a split's cached embeddings depend on (`embed.cache_fingerprint`):
  a prepared dataset's name, config and files' content, or a loaded task's
  own content (`builder` None)."""
  if builder is None:
    return embed.cache_fingerprint(model, {
        "task": task.info.metadata, "split": split,
        "examples": len(task.source[split]),
        "content_sha256": _loaded_task_digest(task, split),
    }, batch_samples=batch_samples)
  return embed.cache_fingerprint(model, {
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


def embed_task(model: EmbeddingModel, model_spec: str, task: Task,
               builder: Any, cache_dir: str | None,
               config: ml_collections.ConfigDict,
               stage: progress.Stage | None = None
               ) -> tuple[dict[str, embed.SplitEmbeddings], str, float]:
  """Every split's embeddings, cached in `cache_dir` (None: computed in
  memory, nothing written); returns them, a fingerprint of what they were
  made from ("" without a cache), and the seconds spent. `builder` is the
  prepared dataset's (None: a task given as an object)."""
  start = time.perf_counter()
  batch_samples = int(config.embed.batch_seconds * model.sample_rate)
  splits, fingerprints = {}, []
  for split in task.info.splits:
    if cache_dir is None:
      if distributed.process_count() > 1:
        raise ValueError("workdir: several processes share their embeddings"
                         " through a workdir on a shared disk; give one")
      splits[split] = _embed_split(model, model_spec, task, split,
                                   batch_samples, stage)
      continue
    fingerprint = _split_fingerprint(model, task, builder, split, cache_dir,
                                     batch_samples, config)
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
                 splits[split].x.shape[-2], " (cached)" if cached else "")
  # One buffer for every split, which a CPU probe uses as it is.
  splits = embed.packed_splits(splits)
  return splits, "\n".join(fingerprints), time.perf_counter() - start


def probe_task(task: Task, splits: dict[str, embed.SplitEmbeddings],
               embeddings_fingerprint: str, out_dir: str | None,
               config: ml_collections.ConfigDict,
               embedding_path: str | None = None,
               stage: progress.Stage | None = None,
               audio_resampled_from: int | None = None
               ) -> tuple[dict[str, Any], protocol.TaskOutcome | None]:
  """HEAR's protocol on the embeddings, or its saved result when nothing it
  depends on changed (`prediction-done.json` records what it was made from).
  Also writes the report's files (grid.json, predicted events, logs/).
  `audio_resampled_from`: the task rate the model's audio was resampled
  from, recorded in the results JSON (None: it read its own rate).
  Returns the results document and the protocol's outcome (None when the
  saved result was reused). `out_dir` None: run in memory, write nothing,
  reuse nothing."""
  if out_dir is None:
    return _probe_in_memory(task, splits, config, embedding_path, stage,
                            audio_resampled_from)
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
    return doc, None
  start = time.perf_counter()
  # The training state, saved as it goes, so a killed run resumes mid-fit;
  # the fingerprint keeps a state made from other inputs from being resumed.
  checkpoint = None
  if config.probe_checkpoint_seconds >= 0 and main:
    checkpoint = checkpoint_lib.ProbeCheckpoint(
        os.path.join(out_dir, "probe-checkpoint"), fingerprint,
        min_seconds=config.probe_checkpoint_seconds)
  embedding_path = embedding_path or os.path.join(out_dir, "embeddings")
  outcome = _run_protocol(task, splits, config, embedding_path, stage,
                          audio_resampled_from, checkpoint,
                          label=stage.subject if stage is not None
                          else out_dir)
  doc = outcome.doc
  if not main:
    return doc, outcome
  results.write_json(scores_path, doc)
  task_files.write_probe_outputs(out_dir, outcome)
  results.write_json(done_path, {
      "time": time.perf_counter() - start, "embedding_path": embedding_path,
      "grid_points": config.probe.grid_points, "fingerprint": fingerprint})
  if checkpoint is not None:
    checkpoint.clear()  # the results above are what a rerun reuses now
  return doc, outcome


def task_key(config: ml_collections.ConfigDict, task_name: str) -> jax.Array:
  """The probe's PRNG key of a task: from config.seed and the task's name
  only, so results do not depend on run order."""
  return jax.random.fold_in(jax.random.key(config.seed),
                            zlib.crc32(task_name.encode()))


def _run_protocol(task: Task, splits: dict[str, embed.SplitEmbeddings],
                  config: ml_collections.ConfigDict, embedding_path: str,
                  stage: progress.Stage | None,
                  audio_resampled_from: int | None,
                  checkpoint: checkpoint_lib.ProbeCheckpoint | None, *,
                  label: str) -> protocol.TaskOutcome:
  with progress.Progress(
      f"probe {label}", protocol.planned_member_epochs(task.info, config.probe),
      "member-epochs") as bar:
    outcome = protocol.run_task(task.info, splits, config.probe,
                                task_key(config, task.info.name),
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
  return outcome


def _probe_in_memory(task: Task, splits: dict[str, embed.SplitEmbeddings],
                     config: ml_collections.ConfigDict,
                     embedding_path: str | None,
                     stage: progress.Stage | None,
                     audio_resampled_from: int | None
                     ) -> tuple[dict[str, Any], protocol.TaskOutcome]:
  outcome = _run_protocol(task, splits, config, embedding_path or "",
                          stage, audio_resampled_from, None,
                          label=stage.subject if stage is not None
                          else task.info.name)
  return outcome.doc, outcome


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
                              ) -> tuple[str, Any, dict[str, Any]]:
  """HEAR's protocol on embeddings that hear-eval-kit's runner wrote; the
  model is the embeddings directory's parent (`embeddings/<module>/<task>`).
  Returns (model name, TaskInfo, results document)."""
  info, splits = heareval_layout.read_embeddings(path)
  model = heareval_layout.model_name(path)
  out_dir = os.path.join(workdir, slug(model), info.name)
  doc, _ = probe_task(Task(info=info, source=None), splits,
                      heareval_layout.fingerprint(path, splits), out_dir,
                      config, embedding_path=os.path.abspath(path))
  logging.info("%s / %s: %s = %.4f (heareval embeddings %s)", model,
               info.name, info.primary_metric,
               results.reported_score(doc)[0], path)
  return model, info, doc


def audio_rate(spec: str, model: EmbeddingModel, task_spec: str,
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


def prepare_task(task_spec: str, rate: int | None, data_dir: str,
                 config: ml_collections.ConfigDict,
                 times: progress.RunTimes) -> tuple[Any, Task]:
  """The task's dataset at `rate`, built once (the data stage)."""
  with times.stage("data", task_spec, reset_peak=True) as stage:
    # One process prepares a dataset, then the others read it.
    with _scratch_tempdir(data_dir):
      builder = distributed.main_first(
          f"data {task_spec} {rate}", lambda:
          task_specs.prepare_task(task_spec, data_dir, rate),
          timeout_seconds=config.distributed_timeout_seconds)
    task = load_task(builder)
    stage.task, stage.detail = task.info.name, (
        f"{progress.examples_detail(task.source)},"
        f" {task.info.sample_rate} Hz")
  return builder, task


@contextlib.contextmanager
def _scratch_tempdir(data_dir: str) -> Iterator[None]:
  """Python's temporary files inside `data_dir` while a dataset is
  prepared, removed afterwards: a TFDS builder leaves an empty
  `tmp*tfds` directory in the system's temp dir each time it is made for a
  dataset not yet prepared (its DatasetInfo's GCS look-up)."""
  os.makedirs(data_dir, exist_ok=True)
  scratch = tempfile.mkdtemp(prefix=".scratch-", dir=data_dir)
  previous = tempfile.tempdir
  tempfile.tempdir = scratch
  try:
    yield
  finally:
    tempfile.tempdir = previous
    shutil.rmtree(scratch, ignore_errors=True)


def write_report(workdir: str, times: progress.RunTimes) -> None:
  """report.html; its failure is logged, not raised: the results it draws
  are already written, and `python -m hear_jax.report --workdirs=<workdir>`
  redraws it."""
  try:
    with times.stage("report", workdir, track=False) as stage:
      # matplotlib (the plots) is imported only when a report is made.
      from hear_jax.report import html as report_html  # pylint: disable=g-import-not-at-top
      stage.detail = report_html.write_report(workdir)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("report.html not written (%s: %s); redraw it with"
                    " python -m hear_jax.report --workdirs=%s",
                    type(e).__name__, e, workdir)
