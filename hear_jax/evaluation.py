"""`hear_jax.evaluate`: HEAR scores for a model, from Python.

  import hear_jax
  from hear_jax.models import load_model
  results = hear_jax.evaluate(load_model("melstats"),
                              ["demo/pitch/tiny", "demo/sound_events/tiny"],
                              probe={"grid_points": 1, "max_epochs": 6})
  results["demo_pitch"].score          # HEAR's reported number
  results.to_rows()                    # flat dicts, one per model x task

This is the command line's code path: `python -m hear_jax.main` checks its
config, holds the workdir's lock and calls `evaluate(..., config=config,
workdir=workdir)`, so the same config and seed give bitwise the same
scores. With `workdir=None` nothing is written: datasets are prepared in a
temporary directory that is removed before `evaluate` returns (or in
`data_dir`, if given, where they are kept and reused), embeddings stay in
memory and no results file, cache or checkpoint is made. With a workdir,
everything the CLI writes is written (datasets, embedding cache, HEAR
JSON, report files, leaderboard, report.html) and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Iterator, Mapping, Sequence

import ml_collections

from hear_jax import compile_cache
from hear_jax import distributed
from hear_jax import embed
from hear_jax import progress
from hear_jax import task_stages
from hear_jax import workdir_lock
from hear_jax.config import check_config, default_config
from hear_jax.data import heareval_layout
from hear_jax.data import task_specs
from hear_jax.data.task import Task
from hear_jax.evaluation_results import (LayerScore, Results, TaskResult,
                                         layer_score)
from hear_jax.models.interface import EmbeddingModel
from hear_jax.probe import layers as probe_layers
from hear_jax.report import task_files

ModelLike = EmbeddingModel | str
TaskLike = str | Task


def make_config(*, probe: str | Mapping[str, Any] | None = None,
                seed: int | None = None,
                config: ml_collections.ConfigDict | None = None,
                **fields: Any) -> ml_collections.ConfigDict:
  """A run config: `config` (default `default_config()`) with `seed`, the
  probe's fields and any other top-level `fields` set. `probe` is a kind
  ("hear", "linear", "knn", "ridge") or a dict of config.probe fields, e.g.
  {"kind": "hear", "grid_points": 1, "max_epochs": 6}."""
  config = ml_collections.ConfigDict(
      (config if config is not None else default_config()).to_dict())
  if isinstance(probe, str):
    probe = {"kind": probe}
  for key, value in dict(probe or {}).items():
    if key not in config.probe:
      raise ValueError(f"probe.{key}: no such probe field (fields: "
                       f"{', '.join(sorted(config.probe.keys()))})")
    config.probe[key] = value
  if seed is not None:
    config.seed = seed
  for key, value in fields.items():
    if value is not None:
      config[key] = value
  return config


def _models(model: ModelLike | Sequence[ModelLike] | None
            ) -> list[ModelLike]:
  if model is None:
    return []
  if isinstance(model, (str, EmbeddingModel)):
    return [model]
  models = list(model)
  for i, m in enumerate(models):
    if not isinstance(m, (str, EmbeddingModel)):
      raise ValueError(f"model[{i}]: expected an EmbeddingModel or a spec "
                       f"string, got {type(m).__name__}")
  return models


def _labels(models: Sequence[ModelLike]) -> list[str]:
  """Each model's name in results and the workdir: the spec, or the
  model's name (made unique with #2, #3... when two models share it)."""
  labels = []
  for m in models:
    label = m if isinstance(m, str) else m.name
    base, n = label, 1
    while label in labels:
      n += 1
      label = f"{base}#{n}"
    labels.append(label)
  return labels


def resolve_task(spec: TaskLike) -> TaskLike:
  """A HEAR 2021 task directory name ("esc50-v2.0.0-full") or task name
  with one mode ("esc50") -> its "hear2021:" spec with the data at its
  default path (`config.hear_data_path`); anything else as it is."""
  if not isinstance(spec, str) or "/" in spec or ":" in spec:
    return spec
  from hear_jax.config import hear_task_config  # pylint: disable=g-import-not-at-top
  from hear_jax.data import hear2021_catalogue  # pylint: disable=g-import-not-at-top
  entries = [e for e in hear2021_catalogue.TASKS.values()
             if spec in (e.task_dir, e.task_name)]
  if len(entries) != 1:
    return spec  # a builder spec or unknown: check_task_spec says which
  return hear_task_config(entries[0].task_dir).tasks[0]


def check_inputs(config: ml_collections.ConfigDict,
                 model_specs: Sequence[str], *,
                 loaded_tasks: bool = False) -> None:
  """What can be checked before any work, writing nothing: the config's
  fields and values, the model specs (syntax, the model exists; before any
  task is read), the task specs and their data. `loaded_tasks`: tasks
  given as objects too (config.tasks may then be empty)."""
  from hear_jax.models.loading import check_spec  # pylint: disable=g-import-not-at-top
  specs = list(config.tasks)
  if loaded_tasks and not config.tasks:
    config = ml_collections.ConfigDict(config.to_dict())
    config.tasks = ["<loaded task>"]  # check_config wants one
  check_config(config)
  for spec in model_specs:
    check_spec(spec)
  task_stages.check_task_paths(specs)
  for spec in specs:
    task_specs.check_task_spec(spec, config.task_sample_rate)


def evaluate(model: ModelLike | Sequence[ModelLike] | None,
             tasks: Sequence[TaskLike] | TaskLike, *,
             probe: str | Mapping[str, Any] | None = None,
             workdir: str | None = None,
             seed: int | None = None,
             layer: str | int | None = None,
             data_dir: str | None = None,
             task_sample_rate: int | None = None,
             keep_predictions: bool = False,
             config: ml_collections.ConfigDict | None = None) -> Results:
  """Evaluates models on tasks with HEAR's protocol (or another probe).

    results = hear_jax.evaluate(load_model("melstats"), ["demo/pitch/tiny"])
    results = hear_jax.evaluate(
        from_functions(encoder.apply, variables, sample_rate=16000),
        ["demo/pitch", "hearpreprocess:/data/esc50-v2.0.0-full"],
        probe="ridge", workdir="runs/mine")
    print(results.to_markdown())

  Args:
    model: an `EmbeddingModel`, a model spec ("melstats", "hear:<module>"),
      or a list of them (None only when every task is "heareval:"
      embeddings).
    tasks: task specs ("demo/pitch/tiny", "hearpreprocess:<dir or
      tarball>", "hear2021:<task dir>:<path>", "heareval:<dir>") or
      `hear_jax.data.task.Task` objects already loaded. For a HEAR 2021
      task by name, `hear_jax.config.hear_task_config(name).tasks`.
    probe: "hear" (HEAR's grid; the default), "linear", "knn", "ridge", or
      a dict of `config.probe` fields ({"kind": ..., "grid_points": 1}).
    workdir: where the CLI's files, caches and reports go; None writes
      nothing (see the module docstring).
    seed: the root of every PRNG key (default config.seed, 0).
    layer: for models with several layers, the one `score` and the
      leaderboard report (a name or index; default the last).
    data_dir: where TFDS datasets are prepared and kept (default
      `<workdir>/tfds`; without a workdir a temporary directory).
    task_sample_rate: read every task at this rate (`config.task_sample_rate`).
    keep_predictions: keep each test split's probabilities in
      `TaskResult.predictions`.
    config: a whole run config (`hear_jax.config.default_config()` and its
      fields); `probe`, `seed`, `data_dir` and `task_sample_rate` override
      it, and `tasks` replaces its tasks.

  Returns:
    `Results`: one `TaskResult` per model x task, in task-then-model order.
  """
  models = _models(model)
  tasks = [resolve_task(t) for t in
           ([tasks] if isinstance(tasks, (str, Task)) else list(tasks))]
  config = make_config(probe=probe, seed=seed, config=config,
                       data_dir=data_dir, task_sample_rate=task_sample_rate)
  if not tasks:
    raise ValueError("tasks: no task given")
  for i, t in enumerate(tasks):
    if not isinstance(t, (str, Task)):
      raise ValueError(f"tasks[{i}]: expected a task spec string or a"
                       f" hear_jax.data.task.Task, got {type(t).__name__}")
  config.tasks = [t for t in tasks if isinstance(t, str)]
  embedded = all(isinstance(t, str) and t.startswith(task_specs.HEAREVAL_PREFIX)
                 for t in tasks)
  if not models and not embedded:
    raise ValueError("model: no model given")
  check_inputs(config, [m for m in models if isinstance(m, str)],
               loaded_tasks=len(config.tasks) < len(tasks))
  with _held(workdir, config):
    from hear_jax.models import load_model  # pylint: disable=g-import-not-at-top
    loaded = {label: load_model(m) if isinstance(m, str) else m
              for label, m in zip(_labels(models), models)}
    return _evaluate(loaded, tasks, config, workdir, layer=layer,
                     keep_predictions=keep_predictions)


@contextlib.contextmanager
def _held(workdir: str | None, config: ml_collections.ConfigDict
          ) -> Iterator[None]:
  """The workdir's lock for the whole run (process 0 holds it for all);
  nothing without a workdir."""
  if workdir is None:
    yield
    return
  with distributed.held_by_main(
      "workdir lock", lambda: workdir_lock.hold(
          workdir, wait_seconds=config.lock_wait_seconds),
      timeout_seconds=(config.lock_wait_seconds
                       + config.distributed_timeout_seconds)):
    yield


@contextlib.contextmanager
def data_directory(config: ml_collections.ConfigDict, workdir: str | None
              ) -> Iterator[str]:
  """config.data_dir, else <workdir>/tfds, else a temporary directory that
  is removed on the way out (the datasets are read into memory by then)."""
  if config.data_dir or workdir:
    yield config.data_dir or os.path.join(workdir, "tfds")
    return
  path = tempfile.mkdtemp(prefix="hear_jax-data-")
  try:
    yield path
  finally:
    shutil.rmtree(path, ignore_errors=True)


def layer_index(model: EmbeddingModel, layer: str | int | None) -> int:
  """The index of `layer` (a name or an index; None: the last) among the
  model's layers; one clear line if it has no such layer."""
  names = list(model.layer_names)
  if layer is None:
    return len(names) - 1
  if isinstance(layer, int) and not isinstance(layer, bool):
    if -len(names) <= layer < len(names):
      return layer % len(names)
  elif str(layer) in names:
    return names.index(str(layer))
  raise ValueError(f"layer: {layer!r} is not a layer of model "
                   f"{model.name!r} (layers: {', '.join(names)})")


def _evaluate(models: dict[str, EmbeddingModel], tasks: Sequence[TaskLike],
              config: ml_collections.ConfigDict, workdir: str | None, *,
              layer: str | int | None, keep_predictions: bool) -> Results:
  """Every model on every task, stage by stage (`task_stages`)."""
  for label, model in models.items():
    if model.layer_names:
      layer_index(model, layer)  # a wrong layer fails before any work
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
  # Programs compiled by an earlier run (or task) are loaded, not compiled.
  # Without a workdir nothing is written, the compile cache included,
  # unless the caller names its directory.
  if workdir is not None or config.get("compilation_cache_dir"):
    compile_cache.enable(compile_cache.directory(config))
  else:
    compile_cache.listen()
  out: list[TaskResult] = []
  times, seen_tasks = progress.RunTimes(), {}
  with data_directory(config, workdir) as data_dir:
    for task_spec in tasks:
      if isinstance(task_spec, str) and task_spec.startswith(
          task_specs.HEAREVAL_PREFIX):
        if workdir is None:
          raise ValueError(f"task {task_spec!r}: heareval: embeddings are"
                           " probed with a workdir; give one")
        name, info, doc = task_stages.probe_heareval_embeddings(
            task_specs.data_path(task_spec), workdir, config)
        out.append(TaskResult.from_document(name, info.name,
                                            info.evaluation, doc))
        continue
      by_rate = _tasks_by_rate(task_spec, models, data_dir, config, times,
                               seen_tasks)
      for label, model in models.items():
        builder, task = by_rate[label]
        out.append(_model_on_task(label, model, task, builder, config,
                                  workdir, times, layer=layer,
                                  keep_predictions=keep_predictions))
  results = Results(tuple(out))
  if workdir is not None and distributed.is_main():
    results.write_leaderboard(workdir)
    task_stages.write_report(workdir, times)
  if distributed.is_main():
    times.print_summary()
  return results


def _tasks_by_rate(task_spec: TaskLike, models: dict[str, EmbeddingModel],
                   data_dir: str, config: ml_collections.ConfigDict,
                   times: progress.RunTimes, seen_tasks: dict[str, Any]
                   ) -> dict[str, tuple[Any, Task]]:
  """Per model: the (builder, task) it reads. A spec's dataset is prepared
  once per audio rate the models need; a loaded task is used as it is."""
  if isinstance(task_spec, Task):
    return {label: (None, task_spec) for label in models}
  # The rates the task's data holds (() for builder specs); a forced rate
  # needs no look (a tarball without its rate in its name is read through).
  rates = (task_specs.audio_rates(task_spec)
           if config.task_sample_rate is None else ())
  by_rate: dict[int | None, tuple[Any, Task]] = {}
  chosen = {}
  for label, model in models.items():
    rate = task_stages.audio_rate(label, model, task_spec, rates,
                                  config.task_sample_rate)
    if rate not in by_rate:
      by_rate[rate] = task_stages.prepare_task(task_spec, rate, data_dir,
                                               config, times)
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
    chosen[label] = by_rate[rate]
  return chosen


def _model_on_task(label: str, model: EmbeddingModel, task: Task,
                   builder: Any, config: ml_collections.ConfigDict,
                   workdir: str | None, times: progress.RunTimes, *,
                   layer: str | int | None,
                   keep_predictions: bool) -> TaskResult:
  """Embed, probe (every layer of a multi-layer model) and record one
  model on one task."""
  info = task.info
  resampled_from = (info.sample_rate if info.sample_rate != model.sample_rate
                    else None)
  out_dir = (os.path.join(workdir, task_stages.slug(label), info.name)
             if workdir is not None else None)
  with times.stage("embed", info.name, label, reset_peak=True) as embed_stage:
    splits, fingerprint, embed_seconds = task_stages.embed_task(
        model, label, task, builder,
        out_dir and os.path.join(out_dir, "embeddings"), config, embed_stage)
    embed_stage.detail = progress.embed_detail(splits, embed_stage)
  if config.export_heareval and workdir and distributed.is_main():
    if model.layer_names:
      raise ValueError("config.export_heareval: hear-eval-kit's layout has"
                       " one layer; evaluate one layer of the model")
    heareval_layout.export_task(
        os.path.join(workdir, "heareval", task_stages.slug(label),
                     heareval_layout.task_dir_name(info.metadata)),
        info, splits, fingerprint=fingerprint)
  start = time.perf_counter()
  with times.stage("probe", info.name, label) as probe_stage:
    if model.layer_names:
      doc, outcome, layers = _probe_layers(
          model, task, splits, fingerprint, out_dir, config, probe_stage,
          resampled_from, layer)
    else:
      (doc, outcome), layers = task_stages.probe_task(
          task, splits, fingerprint, out_dir, config, stage=probe_stage,
          audio_resampled_from=resampled_from), {}
  probe_seconds = time.perf_counter() - start
  if out_dir is not None and distributed.is_main():
    task_files.record_compute(
        out_dir, model=label, model_params=model.params, task_info=info,
        hear_task=heareval_layout.task_dir_name(info.metadata),
        splits=splits, embed_stage=embed_stage, probe_stage=probe_stage,
        audio_resampled_from=resampled_from)
  result = TaskResult.from_document(
      label, info.name, info.evaluation, doc,
      timings={"embed": embed_seconds, "probe": probe_seconds},
      layer=(model.layer_names[layer_index(model, layer)]
             if model.layer_names else None), layers=layers,
      predictions=(dict(outcome.test_probs)
                   if keep_predictions and outcome is not None else None))
  logging.info("%s / %s: %s = %.4f (embedding %.1f s)", label, info.name,
               info.primary_metric, result.score, embed_seconds)
  return result


def _probe_layers(model: EmbeddingModel, task: Task,
                  splits: dict[str, embed.SplitEmbeddings], fingerprint: str,
                  out_dir: str | None, config: ml_collections.ConfigDict,
                  stage: progress.Stage, resampled_from: int | None,
                  layer: str | int | None
                  ) -> tuple[dict[str, Any], Any, dict[str, LayerScore]]:
  """The probe on every layer of a multi-layer model (embeddings [L, N, D]),
  each layer's results under `<out_dir>/layers/<name>/`; the chosen layer's
  document is also the task's (`<out_dir>/test.predicted-scores.json`,
  the leaderboard's), and `layers.json` lists every layer's score."""
  chosen = layer_index(model, layer)
  scores, docs, outcomes = {}, [], []
  if out_dir is None:  # in memory: every layer at once (probe.layers)
    outcomes = probe_layers.run_task_layers(
        task.info, splits, config.probe,
        task_stages.task_key(config, task.info.name), embedding_path="")
    for name, outcome in zip(model.layer_names, outcomes):
      if resampled_from is not None:
        outcome.doc["audio_resampled_from"] = resampled_from
      scores[name] = layer_score(name, outcome.doc, task.info.evaluation)
    doc = dict(outcomes[chosen].doc, layer=model.layer_names[chosen])
    return doc, outcomes[chosen], scores
  # With a workdir, layer by layer: each layer's results are kept and a
  # rerun reuses the finished ones.
  for i, name in enumerate(model.layer_names):
    layer_splits = embed.packed_splits(
        {s: dataclasses.replace(e, x=e.x[i]) for s, e in splits.items()})
    doc, outcome = task_stages.probe_task(
        task, layer_splits, f"{fingerprint}\nlayer {name}",
        out_dir and os.path.join(out_dir, "layers", task_stages.slug(name)),
        config, stage=stage, audio_resampled_from=resampled_from)
    scores[name] = layer_score(name, doc, task.info.evaluation)
    docs.append(doc)
    outcomes.append(outcome)
  doc = dict(docs[chosen], layer=model.layer_names[chosen])
  if out_dir is not None and distributed.is_main():
    from hear_jax.report import results as results_json  # pylint: disable=g-import-not-at-top
    results_json.write_json(os.path.join(out_dir, task_files.SCORES_FILE),
                            doc)
    results_json.write_json(os.path.join(out_dir, "layers.json"), {
        "layers": [{"layer": l.layer, "score": l.score,
                    "score_std": l.score_std} for l in scores.values()],
        "chosen": model.layer_names[chosen]})
  return doc, outcomes[chosen], scores
