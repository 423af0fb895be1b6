"""HEAR's downstream protocol for one task and one model's embeddings.

  doc = evaluate_task(task_info, split_embeddings, config.probe, key,
                      embedding_path=...)   # test.predicted-scores.json
  outcome = run_task(...)   # the same, plus the grid's fits, the tested
                            # heads and predicted events (for reports)

Splits (hear-reference §5.4): train/valid/test tasks have one data split;
k-fold tasks have k, where split i tests on fold i, validates on fold i+1
(mod k) and trains on the rest. Every grid point trains on split 0; the best
by validation score is retrained from scratch on every other split; each
split's best checkpoint is scored on its test fold with every metric of the
task. The task's embeddings go to the devices once and a data split is a set
of their rows, so the grid is one program (`trainer.fit_members`, members
per architecture) and the retraining on the k - 1 other splits is another.

Event tasks train on frames (labels from the events, `events.frame_targets`)
and are validated and tested on events made from the frame probabilities
(`events.frames_to_events`), with the post-processing chosen at each
validation check kept with the checkpoint.

Beyond HEAR, opt-in through `probe_config` (HEAR's protocol is the default):

- `kind`: "hear" (HEAR's MLP grid), "linear" (`grid.linear_grid`: a single
  Linear layer at four learning rates, trained and selected the same way),
  "knn" (`knn.fit_knn`: cosine k-NN on L2-normalised embeddings, k
  chosen on split 0's validation fold like a grid point, event tasks voting
  per frame) or "ridge" (`ridge.fit_ridge`: closed-form ridge regression,
  alpha chosen on each split's own validation fold, since trying an alpha
  costs a matmul; event tasks per frame). Non-HEAR documents add
  "probe_kind" (for kNN "knn_validation_scores": [[k, split 0 validation
  score], ...]; for ridge "ridge_validation_scores": [[alpha, split 0
  validation score], ...] and "ridge_alphas": {test split: chosen alpha}).
- `seeds`: the whole protocol runs once per seed (seed 0 with `key` itself,
  so seeds=1 is exactly HEAR's run; seed s > 0 with `seed_key(key, s)`),
  every seed's heads as members of the same programs;
  the document's split rows become the seed means and "seed_scores" holds
  the per-seed values with mean, std and 95% Student-t interval
  (`results.seed_scores`). The returned outcome's fits are seed 0's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from hear_jax import metrics
from hear_jax.data.task import TaskInfo
from hear_jax.embed import SplitEmbeddings
from hear_jax.probe import buckets
from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import device_metrics
from hear_jax.probe import events
from hear_jax.probe import grid
from hear_jax.probe import knn
from hear_jax.probe import ridge
from hear_jax.probe import trainer
from hear_jax.report import results


@dataclasses.dataclass(frozen=True)
class DataSplit:
  train: tuple[str, ...]
  valid: str
  test: str


def data_splits(info: TaskInfo) -> list[DataSplit]:
  """hear-eval-kit's train/valid/test assignment of the task's splits."""
  names = info.splits
  if set(names) == {"train", "valid", "test"}:
    return [DataSplit(("train",), "valid", "test")]
  folds = sorted(names)
  if len(folds) < 3:
    raise ValueError(f"task {info.name}: splits {list(names)} are neither"
                     " train/valid/test nor >= 3 folds")
  k = len(folds)
  return [DataSplit(tuple(f for j, f in enumerate(folds)
                          if j not in (i, (i + 1) % k)),
                    folds[(i + 1) % k], folds[i]) for i in range(k)]


def label_matrix(labels: Sequence[Sequence[str]], vocab: Sequence[str],
                 task: str) -> np.ndarray:
  """Multi-hot targets [N, C] from per-clip label lists."""
  index = {label: i for i, label in enumerate(vocab)}
  y = np.zeros((len(labels), len(vocab)), np.float32)
  for row, clip_labels in enumerate(labels):
    for label in clip_labels:
      if label not in index:
        raise ValueError(f"task {task}: label {label!r} is not in the label"
                         " vocabulary")
      y[row, index[label]] = 1.0
  return y


@dataclasses.dataclass(frozen=True)
class _Examples:
  """The rows the probe sees for some splits, and how to score them."""

  x: np.ndarray
  y: np.ndarray
  ids: tuple[str, ...] = ()
  file_index: np.ndarray | None = None  # event tasks: row -> ids index
  timestamps_ms: np.ndarray | None = None
  reference_events: dict[str, list[dict[str, Any]]] | None = None


def _examples(info: TaskInfo, splits: Sequence[SplitEmbeddings]) -> _Examples:
  vocab = info.label_vocabulary
  # One split's embeddings are used as they are, not copied.
  x = splits[0].x if len(splits) == 1 else np.concatenate([s.x for s in splits])
  if info.embedding_type != "event":
    y = np.concatenate([label_matrix(s.labels, vocab, info.name)
                        for s in splits])
    return _Examples(x, y)
  ids, file_index, timestamps, ys, reference = [], [], [], [], {}
  for s in splits:
    ys.append(events.frame_targets(s.events, s.file_index, s.timestamps_ms,
                                   vocab))
    file_index.append(s.file_index + len(ids))
    timestamps.append(s.timestamps_ms)
    for clip_id, clip_events in zip(s.ids, s.events):
      reference[clip_id] = [dict(e) for e in clip_events]
    ids.extend(s.ids)
  return _Examples(x, np.concatenate(ys), tuple(ids),
                   np.concatenate(file_index), np.concatenate(timestamps),
                   reference)


def _predicted_events(info: TaskInfo, ex: _Examples, probs: np.ndarray,
                      postprocessing: Mapping[str, float]):
  return events.frames_to_events(probs, ex.file_index, ex.timestamps_ms,
                                 ex.ids, info.label_vocabulary,
                                 **postprocessing)


def _score_fn(info: TaskInfo, valid: _Examples):
  """The validation monitor: the primary metric (events: best post-proc.)."""
  primary = info.primary_metric
  vocab = info.label_vocabulary
  if info.embedding_type != "event":
    return lambda probs: metrics.compute(primary, probs, valid.y,
                                         label_vocab=vocab)
  combos = events.postprocessing_grid(info.metadata)

  def score(probs):
    def combo_score(combo):
      return metrics.compute(primary, _predicted_events(info, valid, probs,
                                                        combo),
                             valid.reference_events, label_vocab=vocab)
    return events.select_postprocessing(combos, combo_score)
  return score


def _device_metric(info: TaskInfo, use_scoring: bool) -> str | None:
  """The validation monitor as the device computes it, if it can: the
  validation loss, or a scene task's primary metric (event tasks choose
  their post-processing on the host)."""
  if not use_scoring:
    return "valid_loss"
  if info.embedding_type != "event" and (
      info.primary_metric in device_metrics.SCENE):
    return info.primary_metric
  return None


def _test_metrics(info: TaskInfo, test: _Examples, probs: np.ndarray,
                  postprocessing: Mapping[str, float] | None):
  vocab = info.label_vocabulary
  if info.embedding_type != "event":
    return {name: metrics.compute_detailed(name, probs, test.y,
                                           label_vocab=vocab)
            for name in info.evaluation}
  predicted = _predicted_events(info, test, probs, postprocessing)
  return {name: metrics.compute_detailed(name, predicted,
                                         test.reference_events,
                                         label_vocab=vocab)
          for name in info.evaluation}


# Folded into a task key before a seed number (seeds > 0), so no seed's key
# is a data split's key (those fold in 0, 1, ... directly).
_SEED_STREAM = 0x5EED


def probe_kind(probe_config: ml_collections.ConfigDict) -> str:
  """`probe_config.kind` ("hear" when the config has no such field)."""
  kind = probe_config.get("kind", "hear")
  if kind not in grid.PROBE_KINDS:
    raise ValueError(f"config.probe.kind: {kind!r} is not one of "
                     f"{list(grid.PROBE_KINDS)}")
  return kind


def seed_key(key: jax.Array, seed: int) -> jax.Array:
  """The task key of seed `seed`: `key` itself for seed 0 (a one-seed run is
  HEAR's run), else derived from `key` and the seed number."""
  if seed == 0:
    return key
  return jax.random.fold_in(jax.random.fold_in(key, _SEED_STREAM), seed)


def task_grid(info: TaskInfo,
              probe_config: ml_collections.ConfigDict) -> list[grid.HParams]:
  """The trained probe's grid for the task (HEAR's, or the linear probe's
  for kind "linear"), with the config's overrides on top."""
  overrides = grid.task_overrides(info.metadata)
  for field in ("max_epochs", "patience", "check_val_every_n_epoch"):
    value = probe_config.get(field)
    if value is not None:
      overrides[field] = value
  if probe_kind(probe_config) == "linear":
    return grid.linear_grid(**overrides)
  return grid.hear_grid(probe_config.grid, probe_config.grid_points,
                        **overrides)


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
  """What the protocol produced besides the HEAR document, for reports.

  `grid`: every grid point's fit on split 0, in grid order (`selected` is
  the index of the chosen one); empty for kNN and ridge, whose k or alpha
  values are not grid points the reports can draw. `fits`: per test split,
  the fitted head (or `knn.KnnFit`, `ridge.RidgeFit`) that was tested.
  `predicted_events` / `reference_events`: per test split, the event task's
  `{clip: [{"label", "start", "end"}]}` (ms); empty otherwise.
  `test_probs`: per test split, the tested head's probabilities [rows, C]
  (clips, or frames of event tasks, in the split's order).
  """

  doc: dict[str, Any]
  grid: tuple[trainer.FitResult, ...]
  selected: int
  monitor: str  # the validation monitor: the primary metric or "valid_loss"
  maximize: bool
  fits: dict[str, trainer.FitResult | knn.KnnFit | ridge.RidgeFit]
  predicted_events: dict[str, dict[str, list[dict[str, Any]]]]
  reference_events: dict[str, dict[str, list[dict[str, Any]]]]
  test_probs: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def planned_member_epochs(info: TaskInfo,
                          probe_config: ml_collections.ConfigDict) -> int:
  """The probe's work in member-epochs, for progress: every grid point on
  split 0, then one point on each other split (counted at the grid's
  largest max_epochs; `run_task` reports the difference once it knows),
  once per seed. kNN and ridge train nothing: 0."""
  if probe_kind(probe_config) in grid.CLOSED_FORM_KINDS:
    return 0
  points = task_grid(info, probe_config)
  return probe_config.get("seeds", 1) * (
      sum(p.max_epochs for p in points)
      + (len(data_splits(info)) - 1) * max(p.max_epochs for p in points))


def evaluate_task(info: TaskInfo, splits: Mapping[str, SplitEmbeddings],
                  probe_config: ml_collections.ConfigDict, key: jax.Array,
                  *, embedding_path: str) -> dict[str, Any]:
  """Runs HEAR's protocol; returns the test.predicted-scores.json document."""
  return run_task(info, splits, probe_config, key,
                  embedding_path=embedding_path).doc


def run_task(info: TaskInfo, splits: Mapping[str, SplitEmbeddings],
             probe_config: ml_collections.ConfigDict, key: jax.Array,
             *, embedding_path: str,
             on_progress: Callable[[int], None] | None = None,
             checkpoint: checkpoint_lib.ProbeCheckpoint | None = None
             ) -> TaskOutcome:
  """`evaluate_task`, also returning the fits and events reports draw on.

  `on_progress(member_epochs)` is called as training goes (see
  `planned_member_epochs` for the total). With a `checkpoint`, the
  grid's fit (every seed's) saves its state under
  `<checkpoint.directory>/split0/` and the retraining's under `retrain/`,
  and a rerun resumes from there (the caller clears it once results are
  kept)."""
  return run_layers(info, [splits], probe_config, key,
                    embedding_path=embedding_path, on_progress=on_progress,
                    checkpoint=checkpoint)[0]


def run_layers(info: TaskInfo,
               layer_splits: Sequence[Mapping[str, SplitEmbeddings]],
               probe_config: ml_collections.ConfigDict, key: jax.Array,
               *, embedding_path: str,
               on_progress: Callable[[int], None] | None = None,
               checkpoint: checkpoint_lib.ProbeCheckpoint | None = None
               ) -> list[TaskOutcome]:
  """`run_task` on each of several layers' embeddings of one task, with the
  same task key (each layer's outcome is that layer's `run_task`). For the
  trained probes every layer's heads (and every seed's) are members of the
  same programs: the layers' embeddings are stacked into one matrix, and a
  layer is a set of its rows."""
  kind = probe_kind(probe_config)
  seeds = probe_config.get("seeds", 1)
  if seeds < 1:
    raise ValueError(f"config.probe.seeds: must be >= 1, got {seeds}")
  keys = [seed_key(key, seed) for seed in range(seeds)]
  trained = [[None] * seeds for _ in layer_splits]
  if kind not in grid.CLOSED_FORM_KINDS:
    trained = _fit_heads(
        info, layer_splits, data_splits(info),
        task_grid(info, probe_config), probe_config, keys,
        use_scoring=_monitors_score(info), on_progress=on_progress,
        checkpoint=checkpoint)
  outcomes = []
  for splits, layer_trained in zip(layer_splits, trained):
    per_seed = [_run_protocol(info, splits, probe_config, k, kind,
                              embedding_path=embedding_path, trained=t)
                for k, t in zip(keys, layer_trained)]
    outcomes.append(per_seed[0] if seeds == 1 else dataclasses.replace(
        per_seed[0], doc=results.seed_scores([o.doc for o in per_seed])))
  return outcomes


def _ranked(fits: Sequence[Any], maximize: bool) -> list[int]:
  """HEAR ranks points by best validation score; a tie goes to the earlier."""
  return sorted(range(len(fits)), key=lambda j: (
      -fits[j].best_score if maximize else fits[j].best_score, j))


@dataclasses.dataclass(frozen=True)
class _TrainedHeads:
  """Every data split's fits, on one device-resident copy of the task."""

  examples: dict[str, _Examples]  # per task split
  x: jax.Array  # every split's rows, in `rows` order
  y: jax.Array
  rows: dict[str, np.ndarray]  # task split -> its rows of x
  fits: list[list[trainer.FitResult]]  # per data split (grid on split 0)
  seconds: list[float]  # per data split (the retraining shared evenly)


def _multilabel(info: TaskInfo) -> bool:
  return (info.prediction_type == "multilabel"
          or info.embedding_type == "event")


def _monitors_score(info: TaskInfo) -> bool:
  """Early stopping on the primary metric (else on the validation loss)."""
  return info.metadata.get("use_scoring_for_early_stopping", True)


def _maximize(info: TaskInfo) -> bool:
  return (metrics.higher_is_better(info.primary_metric)
          if _monitors_score(info) else False)


def _fit_heads(info: TaskInfo,
               layer_splits: Sequence[Mapping[str, SplitEmbeddings]],
               plans: Sequence[DataSplit], points: Sequence[grid.HParams],
               probe_config: ml_collections.ConfigDict,
               keys: Sequence[jax.Array], *, use_scoring: bool,
               on_progress: Callable[[int], None] | None,
               checkpoint: checkpoint_lib.ProbeCheckpoint | None
               ) -> list[list[_TrainedHeads]]:
  """For every layer and seed (one task key each): the grid on data split
  0, then that run's best point on every other split; per layer, per seed.
  Every run's grid points are members of one program
  (`trainer.fit_members`), and all the retraining another.

  The task's embeddings (every layer's) go to the devices once; a data
  split of a layer is a set of their rows. Keys are those of one
  `fit_probes` call per split, the same for every layer: member j of split
  i uses fold_in(fold_in(seed key, i), j).
  """
  multilabel, maximize = _multilabel(info), _maximize(info)
  used = {n for p in plans for n in (*p.train, p.valid, p.test)}
  # In the splits' own order: packed splits (`embed.packed_splits`) of one
  # layer then reach a CPU device without a copy.
  names = [n for n in layer_splits[0] if n in used]
  examples = [{n: _examples(info, [splits[n]]) for n in names}
              for splits in layer_splits]
  parts = [ex[n].x for ex in examples for n in names]
  shape_buckets = buckets.enabled(probe_config.get("shape_buckets"))
  n_x = sum(len(p) for p in parts)
  padding = (buckets.rows(n_x, 4 * parts[0].shape[1]) - n_x
             if shape_buckets else 0)
  targets = [ex[n].y for ex in examples for n in names]
  if padding:
    # Written with the embeddings: `fit_members` would copy them to pad.
    parts.append(np.zeros((padding, parts[0].shape[1]), np.float32))
    targets.append(np.zeros((padding, targets[0].shape[1]), np.float32))
  x = trainer.stack_rows(parts)
  y = trainer.stack_rows(targets)
  ends = np.cumsum([len(ex[n].y) for ex in examples for n in names])
  ends = ends.reshape(len(examples), len(names))
  rows = [{n: np.arange(end - len(ex[n].y), end)
           for n, end in zip(names, layer_ends)}
          for ex, layer_ends in zip(examples, ends)]
  runs = [(layer, key) for layer in range(len(layer_splits)) for key in keys]
  score_fns = {}
  device_metric = (_device_metric(info, use_scoring)
                   if probe_config.get("validate_on_device", True) else None)

  def member(hp: grid.HParams, split: int, key: jax.Array,
             layer: int) -> trainer.Member:
    plan = plans[split]
    if plan.valid not in score_fns:  # the targets: the same in every layer
      score_fns[plan.valid] = (_score_fn(info, examples[0][plan.valid])
                               if use_scoring else None)
    layer_rows = rows[layer]
    return trainer.Member(
        hp, key, np.concatenate([layer_rows[s] for s in plan.train]),
        layer_rows[plan.valid], score_fns[plan.valid], device_metric)

  fit = lambda members, part: trainer.fit_members(
      x, y, members, multilabel=multilabel, maximize=maximize,
      shuffle_train=probe_config.shuffle_train, on_check=on_progress,
      checkpoint=checkpoint and checkpoint.child(part),
      shape_buckets=shape_buckets)
  n = len(points)
  start = time.perf_counter()
  grid_fits = fit([member(p, 0, k, layer) for layer, key in runs
                   for p, k in zip(points, trainer.member_keys(
                       jax.random.fold_in(key, 0), n))], "split0")
  grid_fits = [grid_fits[r * n:(r + 1) * n] for r in range(len(runs))]
  grid_seconds = (time.perf_counter() - start) / len(runs)
  selected = [f[_ranked(f, maximize)[0]].hparams for f in grid_fits]
  if on_progress is not None:
    # Later splits train the selected point only: its epochs, not the
    # grid's largest, are what is left.
    on_progress((len(plans) - 1) * sum(
        max(p.max_epochs for p in points) - hp.max_epochs for hp in selected))
  retrained, retrain_seconds = [], 0.0
  if len(plans) > 1:
    start = time.perf_counter()
    retrained = fit(
        [member(hp, i, trainer.member_keys(jax.random.fold_in(key, i), 1)[0],
                layer)
         for (layer, key), hp in zip(runs, selected)
         for i in range(1, len(plans))], "retrain")
    retrain_seconds = (time.perf_counter() - start) / len(retrained)
  k = len(plans) - 1
  trained = [_TrainedHeads(
      examples[layer], x, y, rows[layer],
      [grid_fits[r]] + [[f] for f in retrained[r * k:(r + 1) * k]],
      [grid_seconds] + [retrain_seconds] * k)
             for r, (layer, _) in enumerate(runs)]
  return [trained[l * len(keys):(l + 1) * len(keys)]
          for l in range(len(layer_splits))]


def _run_protocol(info: TaskInfo, splits: Mapping[str, SplitEmbeddings],
                  probe_config: ml_collections.ConfigDict, key: jax.Array,
                  kind: str, *, embedding_path: str,
                  trained: _TrainedHeads | None,
                  ridge_fits: Sequence[Sequence[ridge.RidgeFit]] | None = None
                  ) -> TaskOutcome:
  """One seed's run of the protocol with the probe `kind`: its `trained`
  heads (`_fit_heads`) or, for kNN and ridge, fitted here (ridge: or
  `ridge_fits`, per data split, fitted already), scored on the test
  splits."""
  multilabel, maximize = _multilabel(info), _maximize(info)
  use_scoring = _monitors_score(info)
  points = {"knn": list(knn.DEFAULT_KS),
            "ridge": list(ridge.DEFAULT_ALPHAS_PER_ROW)}.get(kind)
  if points is None:
    points = task_grid(info, probe_config)
  ridge_alphas = {}
  per_split, selected, postprocessing = {}, None, []
  grid_fits, selected_index, fits_by_split = (), 0, {}
  predicted, reference, test_probs = {}, {}, {}
  plans = data_splits(info)
  for i, plan in enumerate(plans):
    start = time.perf_counter()
    if trained is None:
      train = _examples(info, [splits[s] for s in plan.train])
      valid = _examples(info, [splits[plan.valid]])
      test = _examples(info, [splits[plan.test]])
      score_fn = _score_fn(info, valid) if use_scoring else None
      if kind == "knn":
        fits = knn.fit_knn(train.x, train.y, valid.x, valid.y,
                           points if selected is None else [selected.k],
                           multilabel=multilabel, score_fn=score_fn,
                           maximize=maximize)
      elif ridge_fits is not None:  # every layer's at once (probe.layers)
        fits = ridge_fits[i]
      else:  # ridge: every split chooses its own alpha
        fits = ridge.fit_ridge(train.x, train.y, valid.x, valid.y, points,
                               multilabel=multilabel, score_fn=score_fn,
                               maximize=maximize)
    else:
      test, fits = trained.examples[plan.test], trained.fits[i]
    order = _ranked(fits, maximize)
    best = fits[order[0]]
    if selected is None:
      selected = best.hparams
      grid_fits, selected_index = tuple(fits), order[0]
      if kind in grid.CLOSED_FORM_KINDS:
        # As grid.json: a NaN score (stored as the worst) is null.
        validation_scores = [
            [f.hparams.k if kind == "knn" else f.hparams.alpha,
             f.best_score if math.isfinite(f.best_score) else None]
            for f in fits]
        grid_fits, selected_index = (), 0
    fits_by_split[plan.test] = best
    if kind == "ridge":
      ridge_alphas[plan.test] = best.hparams.alpha
    # Loss-monitored event tasks (MAESTRO) have a single combination and
    # never choose one at validation.
    chosen = best.best_extra or (events.postprocessing_grid(info.metadata)[0]
                                 if info.embedding_type == "event" else None)
    if not postprocessing and chosen:
      postprocessing = sorted(chosen.items())
    if kind == "ridge":
      prediction = ridge.predict_split(best, test.x, test.y)
    elif kind == "knn":
      prediction = knn.predict_split(best, test.x, test.y)
    else:
      prediction = trainer.predict_split(
          best, trained.x, trained.y, rows=trained.rows[plan.test],
          shape_buckets=buckets.enabled(probe_config.get("shape_buckets")))
    scores = _test_metrics(info, test, prediction.probs, chosen)
    test_probs[plan.test] = prediction.probs
    if info.embedding_type == "event":
      predicted[plan.test] = _predicted_events(info, test, prediction.probs,
                                               chosen)
      reference[plan.test] = test.reference_events
    per_split[plan.test] = results.split_scores(
        info.primary_metric, scores, test_loss=prediction.loss,
        validation_score=best.best_score, epoch=best.best_epoch,
        time_in_min=(time.perf_counter() - start
                     + (trained.seconds[i] if trained else 0.0)) / 60)
  doc = results.predicted_scores(
      per_split, hparams=dataclasses.asdict(selected),
      postprocessing=postprocessing,
      score_mode="max" if metrics.higher_is_better(info.primary_metric)
      else "min",
      embedding_path=embedding_path)
  if kind != "hear":
    doc["probe_kind"] = kind
  if kind in grid.CLOSED_FORM_KINDS:
    doc[f"{kind}_validation_scores"] = validation_scores
  if kind == "ridge":
    doc["ridge_alphas"] = ridge_alphas
  return TaskOutcome(
      doc=doc, grid=grid_fits, selected=selected_index,
      monitor=info.primary_metric if use_scoring else "valid_loss",
      maximize=maximize, fits=fits_by_split, predicted_events=predicted,
      reference_events=reference, test_probs=test_probs)
