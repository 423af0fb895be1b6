"""`hear_jax.Evaluator`: downstream scores inside a training loop.

  evaluator = hear_jax.Evaluator(["demo/pitch", "demo/spoken_commands",
                                  "demo/sound_events"], probe="fast",
                                 sample_rate=16000)
  model = from_functions(encoder.apply, variables, sample_rate=16000)
  for step in range(steps):
    state = train_step(state, batch)
    if step % 1000 == 0:
      scalars = evaluator.run(dataclasses.replace(model, params=state.params),
                              step=step)
      writer.write_scalars(step, scalars)  # {"demo_pitch/pitch_acc": ...}

Built once, it prepares the tasks' datasets, decodes every clip, resamples
it to the model's rate and packs each split into fixed-shape, zero-padded
batches that stay resident (on the mesh's devices when one is given; as
host arrays otherwise, which a CPU device reads in place). `run` then only
embeds those batches with the model's jitted function and fits the probe.

Compiled programs are reused: one jitted embedding function per model
function (so keep the model's functions and replace its params; a new
`from_functions` call per step makes new functions, hence new programs), and
the probe's programs (jitted by shape, and the shapes do not change) from the
first call on. Memory stays flat: nothing but the batches and those programs
outlives a call. Results depend only on the params and the seed.

Presets (`probe=`): "fast" is the closed-form ridge probe
(`hear_jax.probe.ridge`, not HEAR's protocol; milliseconds to seconds a
task), optionally on `max_clips` clips per split; "hear" is HEAR's full
protocol (its MLP grid; minutes). Any probe kind or dict of config.probe
fields works too ("linear", "knn", {"kind": "hear", "grid_points": 1}).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from hear_jax import embed
from hear_jax import evaluation
from hear_jax import progress
from hear_jax import task_stages
from hear_jax.data import hearpreprocess
from hear_jax.data import task_specs
from hear_jax.data.task import SplitAudio, Task, TaskInfo
from hear_jax.evaluation_results import (LayerScore, Results, TaskResult,
                                         layer_score)
from hear_jax.models.interface import EmbeddingModel
from hear_jax.probe import layers as probe_layers
from hear_jax.probe import protocol

PRESETS: dict[str, dict[str, Any]] = {
    # Closed form: one eigendecomposition per split, alpha on validation.
    "fast": {"kind": "ridge"},
    # HEAR's protocol as the CLI runs it by default.
    "hear": {"kind": "hear"},
}

# Distinct model functions whose jitted forms are kept (a training loop has
# one; a few more cover scene + timestamp functions of two models).
_MAX_JITTED = 8


def _to_host(a) -> np.ndarray:
  """A model output as one numpy array on every process."""
  if isinstance(a, jax.Array) and not a.is_fully_addressable:
    # Under jax.distributed a batch split over every process's devices
    # comes back in pieces; every process gathers the whole (a collective:
    # all of them run the same calls).
    return np.asarray(multihost_utils.process_allgather(a, tiled=True))
  return np.asarray(a)


@dataclasses.dataclass(frozen=True)
class _Batch:
  audio: Any  # [rows, samples] float32, resident (np or a sharded jax.Array)
  clips: np.ndarray  # int: the split's clip of each real row (a prefix)


@dataclasses.dataclass(frozen=True)
class _ResidentSplit:
  audio: SplitAudio  # ids, labels, events (the audio is in `batches`)
  batches: tuple[_Batch, ...]
  clip_ms: np.ndarray  # each clip's length in ms
  seconds: float


@dataclasses.dataclass(frozen=True)
class _ResidentTask:
  info: TaskInfo
  splits: dict[str, _ResidentSplit]


def _subset(audio: SplitAudio, max_clips: int | None, seed: int,
            name: str) -> SplitAudio:
  """At most `max_clips` clips, drawn once from `seed` and the split's
  name, kept in id order."""
  if max_clips is None or len(audio) <= max_clips:
    return audio
  rng = np.random.default_rng([seed, *name.encode()])
  keep = np.sort(rng.choice(len(audio), max_clips, replace=False))
  pick = lambda seq: tuple(seq[i] for i in keep)
  return SplitAudio(pick(audio.ids), pick(audio.audio), pick(audio.labels),
                    pick(audio.events))


def _batches(clips: Sequence[np.ndarray], batch_samples: int, per_batch: int,
             place: Callable[[np.ndarray], Any]) -> tuple[_Batch, ...]:
  """Clips grouped by length into batches of a fixed size per length (the
  last one zero-padded), so each length is one program."""
  by_length: dict[int, list[int]] = {}
  for i, clip in enumerate(clips):
    by_length.setdefault(len(clip), []).append(i)
  out = []
  for length, members in sorted(by_length.items()):
    size = max(1, batch_samples // max(1, length))
    size = -(-min(size, len(members)) // per_batch) * per_batch
    for start in range(0, len(members), size):
      chunk = members[start:start + size]
      audio = np.zeros((size, length), np.float32)
      for row, i in enumerate(chunk):
        audio[row] = clips[i]
      out.append(_Batch(place(audio), np.asarray(chunk, np.int64)))
  return tuple(out)


class Evaluator:
  """Scores of a model's embeddings on fixed tasks, again and again.

    evaluator = hear_jax.Evaluator(["demo/pitch/tiny"], probe="fast")
    scalars = evaluator.run(model, step=0)
    # {"demo_pitch/pitch_acc": 0.41, "demo_pitch/chroma_acc": ...,
    #  "demo_pitch/seconds": 1.3}
    evaluator.last_results["demo_pitch"].hparams   # the full TaskResult

  Args:
    tasks: task specs (as `hear_jax.evaluate`) or loaded `Task` objects.
    probe: "fast" (ridge), "hear" (HEAR's protocol), a probe kind, or a dict
      of config.probe fields.
    sample_rate: the rate of the models it will score (Hz); the audio is
      resampled to it once.
    seed: the root of the probe's PRNG keys (as `evaluate`'s seed).
    max_clips: at most this many clips per split (drawn once from `seed`).
    mesh: a `jax.sharding.Mesh`: batches are split over all its devices
      (params may be sharded over the same mesh), which may span the
      processes of a `jax.distributed` job (every process then calls `run`
      alike and gets the same scalars). Default: the batches stay host
      arrays and the model's jit places them.
    batch_seconds: seconds of audio per embedding batch.
    data_dir: where datasets are prepared and kept (default a temporary
      directory, removed once the audio is in memory).
    layer: for multi-layer models, the layer whose metrics are the task's
      (default the last); every layer's are reported too.
    task_sample_rate: read hearpreprocess tasks at this rate.
  """

  def __init__(self, tasks: Sequence[str | Task] | str | Task, *,
               probe: str | Mapping[str, Any] = "fast",
               sample_rate: int = 16000, seed: int = 0,
               max_clips: int | None = None,
               mesh: jax.sharding.Mesh | None = None,
               batch_seconds: float = 64.0, data_dir: str | None = None,
               layer: str | int | None = None,
               task_sample_rate: int | None = None):
    if isinstance(probe, str) and probe in PRESETS:
      probe = PRESETS[probe]
    if not isinstance(sample_rate, int) or sample_rate < 1:
      raise ValueError(f"sample_rate: must be an int >= 1 (Hz), got "
                       f"{sample_rate!r}")
    if max_clips is not None and max_clips < 3:
      raise ValueError(f"max_clips: must be >= 3 (or None), got {max_clips}")
    self.sample_rate, self.mesh, self.layer = sample_rate, mesh, layer
    tasks = [evaluation.resolve_task(t) for t in
             ([tasks] if isinstance(tasks, (str, Task)) else list(tasks))]
    if not tasks:
      raise ValueError("tasks: no task given")
    specs = [t for t in tasks if isinstance(t, str)]
    if any(s.startswith(task_specs.HEAREVAL_PREFIX) for s in specs):
      raise ValueError("tasks: heareval: embeddings have no audio to embed;"
                       " use hear_jax.evaluate")
    self.config = evaluation.make_config(
        probe=probe, seed=seed, data_dir=data_dir,
        task_sample_rate=task_sample_rate)
    self.config.tasks = specs
    self.config.embed.batch_seconds = batch_seconds
    evaluation.check_inputs(self.config, [],
                            loaded_tasks=len(specs) < len(tasks))
    self._per_batch = mesh.size if mesh is not None else 1
    self._jitted: dict[Callable, Callable] = {}
    self.tasks: list[_ResidentTask] = []
    times = progress.RunTimes()
    with evaluation.data_directory(self.config, None) as directory:
      for spec in tasks:
        task = spec if isinstance(spec, Task) else self._prepare(
            spec, directory, times)
        self.tasks.append(self._resident(task, max_clips, seed))
    self.last_results: Results | None = None

  def _prepare(self, spec: str, data_dir: str,
               times: progress.RunTimes) -> Task:
    """The task's dataset at the rate the models read (as `evaluate`
    picks it: the models' own, else resampled from the best other)."""
    rate = self.config.task_sample_rate
    rates = () if rate is not None else task_specs.audio_rates(spec)
    if rates:
      rate = hearpreprocess.rate_for_model(rates, self.sample_rate)
      if rate != self.sample_rate:
        logging.warning("task %s has no %d Hz audio (rates: %s): resampling"
                        " from %d Hz", spec, self.sample_rate,
                        ", ".join(map(str, rates)), rate)
    return task_stages.prepare_task(spec, rate, data_dir, self.config,
                                    times)[1]

  def _place(self, audio: np.ndarray) -> Any:
    if self.mesh is None:
      return audio
    rows = jax.sharding.NamedSharding(
        self.mesh, jax.sharding.PartitionSpec(self.mesh.axis_names))
    return jax.device_put(audio, rows)

  def _resident(self, task: Task, max_clips: int | None,
                seed: int) -> _ResidentTask:
    batch_samples = int(self.config.embed.batch_seconds * self.sample_rate)
    splits = {}
    for split in task.info.splits:
      audio = _subset(task.read_split(split), max_clips, seed,
                      f"{task.info.name}/{split}")
      clips = [embed.to_model_rate(a, task.info.sample_rate,
                                   self.sample_rate) for a in audio.audio]
      splits[split] = _ResidentSplit(
          dataclasses.replace(audio, audio=()),
          _batches(clips, batch_samples, self._per_batch, self._place),
          np.array([1000.0 * len(c) / self.sample_rate for c in clips]),
          sum(len(c) for c in clips) / self.sample_rate)
    return _ResidentTask(task.info, splits)

  def _jit(self, fn: Callable) -> Callable:
    """One jitted function per model function, kept across calls."""
    jitted = self._jitted.get(fn)
    if jitted is None:
      if len(self._jitted) >= _MAX_JITTED:
        self._jitted.pop(next(iter(self._jitted)))  # the oldest
      jitted = self._jitted[fn] = jax.jit(fn)
    return jitted

  def _embed(self, model: EmbeddingModel, task: _ResidentTask,
             split: _ResidentSplit) -> embed.SplitEmbeddings:
    event = task.info.embedding_type == "event"
    fn = model.timestamp_embeddings if event else model.scene_embeddings
    fn = self._jit(fn) if model.jittable else fn
    layers = len(model.layer_names)
    # Every batch is dispatched before any result is read back.
    outs = [fn(model.params, b.audio) for b in split.batches]
    rows: list[Any] = [None] * len(split.audio)
    for batch, out in zip(split.batches, outs):
      emb, ts = (out if event else (out, None))
      emb = _to_host(emb)
      if layers:
        emb = np.moveaxis(emb, 0, 1)  # [B, L, ...]
      if not np.isfinite(emb[:len(batch.clips)]).all():
        raise ValueError(f"model {model.name!r} on task {task.info.name!r}:"
                         " embeddings contain NaN or Inf")
      ts = None if ts is None else _to_host(ts).astype(np.float64)
      for row, clip in enumerate(batch.clips):
        rows[clip] = emb[row] if ts is None else (emb[row], ts[row])
    audio = split.audio
    if not event:
      x = np.stack(rows).astype(np.float32)
      return embed.SplitEmbeddings(
          audio.ids, np.moveaxis(x, 0, 1) if layers else x, audio.labels,
          audio.events, audio_seconds=split.seconds)
    x = np.concatenate([e for e, _ in rows], axis=-2).astype(np.float32)
    file_index = np.concatenate([np.full(len(t), i, np.int32)
                                 for i, (_, t) in enumerate(rows)])
    return embed.SplitEmbeddings(
        audio.ids, x, audio.labels, audio.events, file_index,
        np.concatenate([t for _, t in rows]), audio_seconds=split.seconds)

  def _probe(self, info: TaskInfo, splits: dict[str, embed.SplitEmbeddings]
             ) -> dict[str, Any]:
    outcome = protocol.run_task(info, splits, self.config.probe,
                                task_stages.task_key(self.config, info.name),
                                embedding_path="")
    return outcome.doc

  def run(self, model: EmbeddingModel, *, step: int | None = None
          ) -> dict[str, float]:
    """Scores `model` on every task; returns {"<task>/<metric>": value}
    (every HEAR metric of the task; for multi-layer models also
    "<task>/layer_<name>/<metric>" and "<task>/best_layer", the best layer's
    index) and "<task>/seconds", the task's embed + probe time. `step` is
    only logged. `last_results` keeps the full `Results`."""
    if not isinstance(model, EmbeddingModel):
      raise ValueError(f"model: expected an EmbeddingModel, got "
                       f"{type(model).__name__}")
    if model.sample_rate != self.sample_rate:
      raise ValueError(f"model.sample_rate: {model.sample_rate} Hz, but this"
                       f" Evaluator resampled its audio to {self.sample_rate}"
                       " Hz (Evaluator(sample_rate=...))")
    chosen = (evaluation.layer_index(model, self.layer)
              if model.layer_names else None)
    scalars, results = {}, []
    for task in self.tasks:
      start = time.perf_counter()
      info = task.info
      splits = {name: self._embed(model, task, split)
                for name, split in task.splits.items()}
      embed_seconds = time.perf_counter() - start
      layers: dict[str, LayerScore] = {}
      if model.layer_names:
        outcomes = probe_layers.run_task_layers(
            info, splits, self.config.probe,
            task_stages.task_key(self.config, info.name), embedding_path="")
        for name, outcome in zip(model.layer_names, outcomes):
          layers[name] = layer_score(name, outcome.doc, info.evaluation)
        doc = layers[model.layer_names[chosen]].document
      else:
        doc = self._probe(info, splits)
      del splits
      seconds = time.perf_counter() - start
      result = TaskResult.from_document(
          model.name, info.name, info.evaluation, doc,
          timings={"embed": embed_seconds, "probe": seconds - embed_seconds},
          layer=model.layer_names[chosen] if layers else None, layers=layers)
      results.append(result)
      scalars.update({f"{info.name}/{m}": v for m, v in result.metrics.items()})
      for name, l in layers.items():
        scalars.update({f"{info.name}/layer_{name}/{m}": v
                        for m, v in l.metrics.items()})
      if layers:
        scalars[f"{info.name}/best_layer"] = float(
            model.layer_names.index(result.best_layer))
      scalars[f"{info.name}/seconds"] = seconds
    self.last_results = Results(tuple(results))
    logging.info("Evaluator step %s: %s", step, ", ".join(
        f"{r.task} {r.primary_metric} {r.score:.4f}" for r in results))
    return scalars
