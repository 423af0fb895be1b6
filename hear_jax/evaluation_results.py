"""What `hear_jax.evaluate` returns: typed scores per model x task (x layer).

  results = hear_jax.evaluate(model, ["demo/pitch/tiny"])
  r = results["demo_pitch"]          # a TaskResult (one model), or
  r = results["melstats", "demo_pitch"]
  r.score, r.score_std, r.metrics["pitch_acc"], r.hparams, r.timings
  r.split_scores["test"]["test_chroma_acc"]   # HEAR's per-split row
  r.layers["3"].score, r.best_layer          # models with several layers
  results.to_rows()          # [{"model", "task", "metric", "score", ...}]
  results.to_dataframe()     # the same rows as a pandas DataFrame
  results.write_leaderboard(workdir)  # leaderboard.csv / .md, as the CLI

A task's numbers come from its HEAR document (`document`, the
test.predicted-scores.json the CLI writes), so the two never disagree:
`score` / `score_std` / `score_ci95` are HEAR's reported number
(`report.results.reported_score`), `metrics` every metric of the task (the
fold mean for k-fold tasks, the seed mean with several seeds).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from hear_jax.report import leaderboard
from hear_jax.report import results as results_json


@dataclasses.dataclass(frozen=True)
class LayerScore:
  """One layer's result on a task (models that give several layers).

    r = hear_jax.evaluate(layered_model, ["demo/pitch/tiny"], probe="ridge")
    r = r["demo_pitch"]
    {name: l.score for name, l in r.layers.items()}   # {"0": 0.61, ...}
    r.layers[r.best_layer].metrics["chroma_acc"]

  `score`/`score_std` are HEAR's reported number for this layer, `metrics`
  every metric of the task, `document` the layer's HEAR JSON document.
  """

  layer: str
  score: float
  score_std: float | None
  metrics: Mapping[str, float]
  document: Mapping[str, Any]


def _split_rows(doc: Mapping[str, Any]) -> list[str]:
  return [k for k, v in doc.items()
          if isinstance(v, dict) and "test_score" in v]


def document_metrics(doc: Mapping[str, Any],
                     names: Sequence[str]) -> dict[str, float]:
  """Every metric `names` of a HEAR document: its one test split's value, or
  the mean over folds (`aggregated_scores`)."""
  if "aggregated_scores" in doc:
    agg = doc["aggregated_scores"]
    return {m: float(agg.get(f"test_{m}_mean", math.nan)) for m in names}
  (split,) = _split_rows(doc)
  return {m: float(doc[split].get(f"test_{m}", math.nan)) for m in names}


def layer_score(layer: str, doc: Mapping[str, Any],
                metric_names: Sequence[str]) -> LayerScore:
  score, std = results_json.reported_score(doc)
  return LayerScore(layer, float(score), std,
                    document_metrics(doc, metric_names), doc)


@dataclasses.dataclass(frozen=True)
class TaskResult:
  """One model on one task.

  Attributes:
    model, task: names (the model's spec or name; HEAR's task name).
    primary_metric: the task's first evaluation metric (what `score` is).
    score: HEAR's reported number: the test score, or the mean over folds
      (seeds), with `score_std` over folds (seeds) and `score_ci95` the 95%
      Student-t half-width over seeds (None with one seed).
    metrics: every HEAR metric of the task -> value (fold / seed mean).
    split_scores: per test split (fold), HEAR's row (`test_score`,
      `test_<metric>`, sub-scores, `validation_score`, `epoch`, ...).
    hparams: the selected grid point (or k, alpha) as HEAR records it.
    probe: the probe kind ("hear", "linear", "knn", "ridge").
    timings: seconds: "embed" and "probe" (0.0 where reused from a cache).
    document: the whole test.predicted-scores.json document.
    layer: the layer scored above, for models with several layers (the one
      asked for; default the last); None for one-layer models.
    layers: per layer name, its `LayerScore` (empty for one-layer models).
    predictions: per test split, the tested head's probabilities [rows, C]
      (clips; frames for event tasks), if asked for (else None).
  """

  model: str
  task: str
  primary_metric: str
  score: float
  score_std: float | None
  score_ci95: float | None
  metrics: Mapping[str, float]
  split_scores: Mapping[str, Mapping[str, float]]
  hparams: Mapping[str, Any]
  probe: str
  timings: Mapping[str, float]
  document: Mapping[str, Any]
  layer: str | None = None
  layers: Mapping[str, LayerScore] = dataclasses.field(default_factory=dict)
  predictions: Mapping[str, np.ndarray] | None = None

  @classmethod
  def from_document(cls, model: str, task: str, metric_names: Sequence[str],
                    doc: Mapping[str, Any], *,
                    timings: Mapping[str, float] | None = None,
                    layer: str | None = None,
                    layers: Mapping[str, LayerScore] | None = None,
                    predictions: Mapping[str, np.ndarray] | None = None
                    ) -> TaskResult:
    """A task's result from its HEAR document (`metric_names`: the task's
    evaluation metrics, primary first)."""
    score, std = results_json.reported_score(doc)
    return cls(
        model=model, task=task, primary_metric=metric_names[0],
        score=float(score), score_std=std,
        score_ci95=results_json.reported_interval(doc),
        metrics=document_metrics(doc, metric_names),
        split_scores={s: dict(doc[s]) for s in _split_rows(doc)},
        hparams=dict(doc.get("hparams", {})),
        probe=doc.get("probe_kind", "hear"), timings=dict(timings or {}),
        document=doc, layer=layer, layers=dict(layers or {}),
        predictions=predictions)

  @property
  def best_layer(self) -> str | None:
    """The layer with the best primary score (None for one-layer models;
    NaN scores never win; a tie goes to the earlier layer)."""
    if not self.layers:
      return None
    sign = 1.0 if self.document.get("score_mode", "max") == "max" else -1.0
    finite = [l for l in self.layers.values() if math.isfinite(l.score)]
    if not finite:
      return next(iter(self.layers))
    return max(finite, key=lambda l: sign * l.score).layer

  def leaderboard_row(self) -> leaderboard.LeaderboardRow:
    return leaderboard.LeaderboardRow(self.model, self.task,
                                      self.primary_metric, self.score,
                                      self.score_std, self.score_ci95)

  def to_row(self) -> dict[str, Any]:
    """A flat dict: model, task, layer, metric, score, score_std,
    score_ci95, probe, embed_s, probe_s, then every metric by name."""
    row = {"model": self.model, "task": self.task, "layer": self.layer,
           "metric": self.primary_metric, "score": self.score,
           "score_std": self.score_std, "score_ci95": self.score_ci95,
           "probe": self.probe,
           "embed_s": self.timings.get("embed", math.nan),
           "probe_s": self.timings.get("probe", math.nan)}
    row.update(self.metrics)
    return row


@dataclasses.dataclass(frozen=True)
class Results:
  """Every model x task result of one `evaluate` call, in run order.

    results = hear_jax.evaluate("melstats", ["demo/pitch/tiny"])
    for r in results:
      print(r.model, r.task, r.primary_metric, r.score)
    results.to_rows()                   # one flat dict per model x task
    results.to_rows(layers=True)        # one per model x task x layer
    print(results.to_markdown())        # the CLI's leaderboard table
  """

  tasks: tuple[TaskResult, ...]

  def __iter__(self) -> Iterator[TaskResult]:
    return iter(self.tasks)

  def __len__(self) -> int:
    return len(self.tasks)

  def __getitem__(self, key: int | str | tuple[str, str]) -> TaskResult:
    """By index, by task name (one model), or by (model, task)."""
    if isinstance(key, int):
      return self.tasks[key]
    found = [r for r in self.tasks
             if (isinstance(key, tuple) and (r.model, r.task) == key)
             or r.task == key]
    if not found:
      raise KeyError(f"no result for {key!r}; have "
                     f"{[(r.model, r.task) for r in self.tasks]}")
    if len(found) > 1:
      raise KeyError(f"{key!r}: several models ran this task; use "
                     "results[model, task]")
    return found[0]

  def to_rows(self, *, layers: bool = False) -> list[dict[str, Any]]:
    """One flat dict per model x task (`TaskResult.to_row`); with
    `layers=True`, one per model x task x layer for multi-layer models."""
    rows = []
    for r in self.tasks:
      if not (layers and r.layers):
        rows.append(r.to_row())
        continue
      for name, l in r.layers.items():
        row = r.to_row()
        row.update({"layer": name, "score": l.score,
                    "score_std": l.score_std, "score_ci95": None, **l.metrics})
        rows.append(row)
    return rows

  def to_dataframe(self, *, layers: bool = False) -> Any:
    """`to_rows()` as a pandas DataFrame (needs pandas installed)."""
    try:
      import pandas  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(f"Results.to_dataframe needs pandas ({e}); "
                        "use to_rows()") from None
    return pandas.DataFrame(self.to_rows(layers=layers))

  def leaderboard_rows(self) -> list[leaderboard.LeaderboardRow]:
    return [r.leaderboard_row() for r in self.tasks]

  def to_markdown(self) -> str:
    """The leaderboard as markdown, as the CLI prints it."""
    return leaderboard.to_markdown(self.leaderboard_rows())

  def write_leaderboard(self, workdir: str) -> str:
    """leaderboard.csv and leaderboard.md in `workdir`; returns the
    markdown."""
    return leaderboard.write_leaderboard(self.leaderboard_rows(), workdir)

  def scalars(self) -> dict[str, float]:
    """A flat {"<task>/<metric>": value} dict (with several models,
    "<model>/<task>/<metric>"), layers as "<task>/layer_<name>/<metric>"."""
    many = len({r.model for r in self.tasks}) > 1
    out = {}
    for r in self.tasks:
      prefix = f"{r.model}/{r.task}" if many else r.task
      out.update({f"{prefix}/{m}": v for m, v in r.metrics.items()})
      for name, l in r.layers.items():
        out.update({f"{prefix}/layer_{name}/{m}": v
                    for m, v in l.metrics.items()})
    return out
