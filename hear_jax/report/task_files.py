"""The report's files beside each task's test.predicted-scores.json.

  write_probe_outputs(task_dir, outcome)   # grid.json, events, logs/
  write_compute(task_dir, model=..., ...)  # compute.json
  results = scan_workdir("runs/demo")      # [TaskResult, ...] for reports

Per `<workdir>/<model>/<task>/` (hear-eval-kit's files keep their schema):

- `grid.json`: every grid point's best validation score on split 0 (the
  split whose test fold is `test_split`), the selected point (an index into
  `points`) and the monitor (`{"monitor", "maximize", "test_split",
  "selected", "points": [{"hparams", "best_score", "best_epoch",
  "epochs_run", "stop_reason"}]}`);
- `<split>.predicted-events.json` (event tasks): the tested head's events
  and the reference events of that test split, `{"predicted": {clip:
  [{"label", "start", "end"}]}, "reference": {...}}`, in ms;
- `compute.json`: what the model x task cost (see `write_compute`);
- `logs/<split>/`: training logs (`training_logs`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from typing import Any, Mapping

import jax
import numpy as np

from hear_jax import metrics
from hear_jax import progress
from hear_jax.report import results
from hear_jax.report import training_logs

SCORES_FILE = "test.predicted-scores.json"
GRID_FILE = "grid.json"
COMPUTE_FILE = "compute.json"
EVENTS_SUFFIX = ".predicted-events.json"


def _finite_or_none(x: float) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def write_probe_outputs(task_dir: str, outcome: Any) -> None:
  """grid.json, predicted events and training logs of a `TaskOutcome`."""
  first_split = next(iter(outcome.fits))
  results.write_json(os.path.join(task_dir, GRID_FILE), {
      "monitor": outcome.monitor, "maximize": outcome.maximize,
      "test_split": first_split, "selected": outcome.selected,
      "points": [{
          "hparams": dataclasses.asdict(fit.hparams),
          "best_score": _finite_or_none(fit.best_score),
          "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run,
          "stop_reason": fit.stop_reason} for fit in outcome.grid]})
  for split, predicted in outcome.predicted_events.items():
    # Compact: event tasks like MAESTRO have tens of thousands of events.
    path = os.path.join(task_dir, split + EVENTS_SUFFIX)
    with open(path + ".tmp", "w") as f:
      json.dump({"predicted": predicted,
                 "reference": outcome.reference_events.get(split, {})}, f,
                separators=(",", ":"))
    os.replace(path + ".tmp", path)
  training_logs.write_training_logs(task_dir, outcome)


def parameter_count(params: Any) -> int:
  """Numbers in a model's parameter tree (0 for a parameter-free model)."""
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def write_compute(task_dir: str, *, model: str, task_info: Any,
                  hear_task: str, parameters: int, audio_seconds: float,
                  embed_seconds: float | None, embedded_audio_seconds: float,
                  probe_seconds: float | None, probe_cached: bool,
                  peak_memory_bytes: int | None, peak_memory_scope: str,
                  device_peak_memory_bytes: int | None = None,
                  device: str = "",
                  audio_resampled_from: int | None = None,
                  compiled: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
  """Writes compute.json; returns it.

  `audio_sample_rate` is the task rate the model read;
  `audio_resampled_from` is that rate when it was not the model's own (its
  audio was resampled), else None.

  `embed_seconds` is the time spent computing the `embedded_audio_seconds`
  that were not in the cache this run (JIT compilation included);
  `hear_task` is hearpreprocess's task directory name (e.g.
  nsynth_pitch-v2.2.3-5h), which published scores are keyed by. Numbers a
  cached stage did not measure again are kept from the previous
  compute.json; the peak memory is then the larger of the two runs'.

  `compiled`: per stage ("embed", "probe"), the `compile_cache.CompileTotals`
  of this run, written as `<stage>_compiles` (XLA compilations),
  `<stage>_compile_cache_hits` (programs loaded from the persistent cache)
  and `<stage>_compile_seconds` (both); a stage that was cached keeps the
  previous run's.
  """
  path = os.path.join(task_dir, COMPUTE_FILE)
  previous = read_json(path) or {}
  doc = {
      "model": model, "task": task_info.name,
      "hear_task": hear_task,
      "metric": task_info.primary_metric,
      "parameters": int(parameters), "audio_seconds": float(audio_seconds),
      "audio_sample_rate": int(task_info.sample_rate),
      "audio_resampled_from": audio_resampled_from,
  }
  if embedded_audio_seconds > 0 and embed_seconds is not None:
    doc["embed_seconds"] = embed_seconds
    doc["embed_seconds_per_audio_hour"] = (
        embed_seconds / (embedded_audio_seconds / 3600.0))
  else:
    for k in ("embed_seconds", "embed_seconds_per_audio_hour"):
      doc[k] = previous.get(k)
  doc["probe_seconds"] = probe_seconds
  for stage in ("embed", "probe"):
    totals = (compiled or {}).get(stage)
    cached = probe_cached if stage == "probe" else (
        embedded_audio_seconds <= 0)
    for name in ("compiles", "compile_cache_hits", "compile_seconds"):
      key = f"{stage}_{name}"
      doc[key] = (previous.get(key) if cached or totals is None
                  else totals.as_dict()[name])
  mb = lambda b: None if b is None else b / (1 << 20)
  peak, device_peak = mb(peak_memory_bytes), mb(device_peak_memory_bytes)
  reused = probe_cached or embedded_audio_seconds < 0.999 * audio_seconds
  if reused:
    peak = _max_or_none(peak, previous.get("peak_memory_mb"))
    device_peak = _max_or_none(device_peak,
                               previous.get("device_peak_memory_mb"))
  doc.update(peak_memory_mb=peak, peak_memory_scope=peak_memory_scope,
             device_peak_memory_mb=device_peak, device=device)
  results.write_json(path, doc)
  return doc


def record_compute(task_dir: str, *, model: str, model_params: Any,
                   task_info: Any, hear_task: str, splits: Mapping[str, Any],
                   embed_stage: Any, probe_stage: Any,
                   audio_resampled_from: int | None = None) -> dict[str, Any]:
  """`write_compute` from a run's `progress.Stage`s of one model x task
  (the embed stage reset the peak-memory mark where it could)."""
  done = read_json(os.path.join(task_dir, "prediction-done.json")) or {}
  peaks = [s.peak_memory for s in (embed_stage, probe_stage)
           if s.peak_memory is not None]
  device = jax.devices()[0]
  kind = device.platform if device.device_kind == device.platform else (
      f"{device.platform}: {device.device_kind}")
  return write_compute(
      task_dir, model=model, task_info=task_info, hear_task=hear_task,
      parameters=parameter_count(model_params),
      audio_seconds=sum(s.audio_seconds for s in splits.values()),
      embed_seconds=embed_stage.counts.get("embed_s"),
      embedded_audio_seconds=embed_stage.counts.get("embedded_audio_s", 0.0),
      probe_seconds=done.get("time"),
      probe_cached=bool(probe_stage.counts.get("cached")),
      peak_memory_bytes=max(peaks) if peaks else None,
      peak_memory_scope=("model x task" if embed_stage.peak_is_own
                         else "process"),
      device_peak_memory_bytes=progress.device_peak_memory_bytes(),
      device=kind, audio_resampled_from=audio_resampled_from,
      compiled={"embed": embed_stage.compiled,
                "probe": probe_stage.compiled})


def _max_or_none(*values: float | None) -> float | None:
  present = [v for v in values if v is not None]
  return max(present) if present else None


def read_json(path: str) -> Any:
  """The file's JSON, None if it does not exist; a clear error if broken."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})"
                       ) from None


@dataclasses.dataclass(frozen=True)
class TaskResult:
  """One model x task of a run, as the reports show it."""

  model: str
  task: str
  metric: str
  score: float
  score_std: float | None
  split_scores: dict[str, float]  # test split -> test_score
  higher_is_better: bool
  hear_task: str = ""
  run: str = ""  # the workdir, or where a published score comes from
  directory: str = ""  # <workdir>/<model>/<task>, "" for published scores
  compute: dict[str, Any] | None = None


def _leaderboard_metrics(workdir: str) -> dict[tuple[str, str], str]:
  path = os.path.join(workdir, "leaderboard.csv")
  if not os.path.exists(path):
    return {}
  with open(path, newline="") as f:
    return {(r.get("model", ""), r.get("task", "")): r.get("metric", "")
            for r in csv.DictReader(f)}


def load_task_result(task_dir: str, *, run: str = "",
                     metric: str | None = None) -> TaskResult:
  """Reads one `<model>/<task>` directory of a workdir."""
  doc = read_json(os.path.join(task_dir, SCORES_FILE))
  if not isinstance(doc, dict):
    raise ValueError(f"{os.path.join(task_dir, SCORES_FILE)}: missing or"
                     " not a JSON object")
  try:
    score, std = results.reported_score(doc)
  except (KeyError, ValueError) as e:
    raise ValueError(f"{os.path.join(task_dir, SCORES_FILE)}: no test_score"
                     f" ({e})") from None
  compute = read_json(os.path.join(task_dir, COMPUTE_FILE))
  compute = compute if isinstance(compute, dict) else None
  model_dir, task = os.path.split(os.path.normpath(task_dir))
  model = (compute or {}).get("model") or os.path.basename(model_dir)
  splits = {k: float(v["test_score"]) for k, v in doc.items()
            if isinstance(v, dict) and "test_score" in v}
  return TaskResult(
      model=model, task=(compute or {}).get("task") or task,
      metric=((compute or {}).get("metric") or metric
              or _primary_metric(doc) or "test_score"),
      score=float(score),
      score_std=None if std is None or math.isnan(std) else float(std),
      split_scores=splits, higher_is_better=doc.get("score_mode") != "min",
      hear_task=(compute or {}).get("hear_task", ""), run=run,
      directory=task_dir, compute=compute)


def _primary_metric(doc: Mapping[str, Any]) -> str | None:
  """The metric whose `test_<metric>` equals `test_score` in every split,
  when exactly one does (results written before compute.json existed)."""
  rows = [v for v in doc.values() if isinstance(v, dict) and "test_score" in v]
  names = [m for m in metrics.METRIC_NAMES
           if rows and all(r.get(f"test_{m}") == r["test_score"] for r in rows)]
  return names[0] if len(names) == 1 else None


def scan_workdir(workdir: str) -> list[TaskResult]:
  """Every finished model x task under `workdir`, in the order of its
  leaderboard.csv (then by name for anything it does not list)."""
  if not os.path.isdir(workdir):
    raise ValueError(f"{workdir}: no such run directory")
  metrics = _leaderboard_metrics(workdir)
  order = {key: i for i, key in enumerate(metrics)}
  found = []
  for model_dir in sorted(os.listdir(workdir)):
    path = os.path.join(workdir, model_dir)
    if not os.path.isdir(path):
      continue
    for task in sorted(os.listdir(path)):
      task_dir = os.path.join(path, task)
      if os.path.isfile(os.path.join(task_dir, SCORES_FILE)):
        found.append(load_task_result(
            task_dir, run=workdir,
            metric=_metric_for(metrics, model_dir, task)))
  return sorted(found, key=lambda r: (order.get((r.model, r.task),
                                                len(order)), r.model, r.task))


def _metric_for(metrics: Mapping[tuple[str, str], str], model_dir: str,
                task: str) -> str | None:
  # leaderboard.csv names models by spec, directories by a slug of it.
  for (model, t), metric in metrics.items():
    if t == task and (model == model_dir
                      or model.replace("/", "_").replace(":", "_")
                      == model_dir):
      return metric
  return None
