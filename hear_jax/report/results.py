"""hear-eval-kit's `test.predicted-scores.json`, written the same way.

  scores = split_scores(test_scores, test_loss=..., validation_score=..., ...)
  doc = predicted_scores({"test": scores}, hparams=..., score_mode="max", ...)
  write_json(path, doc)

Per test split a dict of `test_loss`, `test_score` (the primary metric),
`test_<metric>` for every metric and `test_<metric>_<sub>` for sed-style
sub-scores, `validation_score`, `epoch`, `time_in_min`; k-fold runs add
`aggregated_scores` with `<field>_mean` / `<field>_std` (ddof 1, NaN skipped,
as pandas does) over the folds (hear-reference §7).

Several seeds (`config.probe.seeds`, not part of HEAR): `seed_scores(docs)`
makes one document whose split rows (and `aggregated_scores`) are the seed
means, so every reader of HEAR's keys sees the seed mean, plus

  "seed_scores": {"n_seeds": 3, "confidence": 0.95,
                  "per_seed": [{"test_score": ..., ...}, ...],
                  "hparams": [...], "postprocessing": [...],
                  "test_score_mean": ..., "test_score_std": ...,
                  "test_score_ci95": ..., ...}

where a seed's value is its test split's row, or for k-fold tasks its fold
means; `<field>_ci95` is the half-width of the 95% Student-t interval over
seeds, mean +- t(0.975, n-1) * std / sqrt(n) (NaN seeds skipped; NaN with
fewer than two).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import special

SEED_CONFIDENCE = 0.95


def split_scores(
    primary: str,
    metrics: Mapping[str, Mapping[str, float]],
    *,
    test_loss: float,
    validation_score: float,
    epoch: int,
    time_in_min: float,
) -> dict[str, float]:
  """One test split's row. `metrics[name]` is `metrics.compute_detailed`'s
  dict: the score first, then any sub-scores (`f_measure`, `precision`, ...)."""
  score = lambda name: float(next(iter(metrics[name].values())))
  row: dict[str, float] = {"test_loss": float(test_loss),
                           "test_score": score(primary)}
  for name, values in metrics.items():
    row[f"test_{name}"] = score(name)
    for sub, value in values.items():
      if sub != name:
        row[f"test_{name}_{sub}"] = float(value)
  row["validation_score"] = float(validation_score)
  row["epoch"] = int(epoch)
  row["time_in_min"] = float(time_in_min)
  return row


def aggregate(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
  """`<field>_mean` and `<field>_std` over folds (pandas semantics)."""
  out = {}
  for field in rows[0]:
    values = np.array([r[field] for r in rows], np.float64)
    finite = values[~np.isnan(values)]
    out[f"{field}_mean"] = float(finite.mean()) if len(finite) else math.nan
    out[f"{field}_std"] = (float(finite.std(ddof=1)) if len(finite) > 1
                           else math.nan)
  return out


def predicted_scores(
    per_split: Mapping[str, Mapping[str, float]],
    *,
    hparams: Mapping[str, Any],
    postprocessing: Sequence[tuple[str, float]],
    score_mode: str,
    embedding_path: str,
) -> dict[str, Any]:
  doc: dict[str, Any] = dict(per_split)
  if len(per_split) > 1:
    doc["aggregated_scores"] = aggregate(list(per_split.values()))
  doc["hparams"] = {k: v if isinstance(v, (str, int, float)) else str(v)
                    for k, v in hparams.items()}
  doc["postprocessing"] = [list(p) for p in postprocessing]
  doc["score_mode"] = score_mode
  doc["embedding_path"] = embedding_path
  return doc


def _split_rows(doc: Mapping[str, Any]) -> list[str]:
  return [k for k, v in doc.items()
          if isinstance(v, dict) and "test_score" in v]


def _seed_value(doc: Mapping[str, Any]) -> dict[str, float]:
  """One seed's value of every field: its single test split's row, or the
  fold means of a k-fold document."""
  if "aggregated_scores" in doc:
    agg = doc["aggregated_scores"]
    return {k[:-len("_mean")]: v for k, v in agg.items() if k.endswith("_mean")}
  (split,) = _split_rows(doc)
  return dict(doc[split])


def t_interval(values: Sequence[float],
               confidence: float = SEED_CONFIDENCE) -> tuple[float, float,
                                                             float]:
  """(mean, std with ddof 1, half-width of the Student-t `confidence`
  interval) of the finite values; std and half-width are NaN below two."""
  finite = np.asarray(values, np.float64)
  finite = finite[np.isfinite(finite)]
  if not len(finite):
    return math.nan, math.nan, math.nan
  mean = float(finite.mean())
  if len(finite) < 2:
    return mean, math.nan, math.nan
  std = float(finite.std(ddof=1))
  # Student's t quantile (scipy.stats.t.ppf's own function, without the
  # second it takes to import scipy.stats).
  t = float(special.stdtrit(len(finite) - 1, (1 + confidence) / 2))
  return mean, std, t * std / math.sqrt(len(finite))


def seed_scores(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """One document for the same task run with several seeds (seed order):
  seed 0's document with every split row replaced by its seed means (NaN
  skipped), `aggregated_scores` recomputed from those, and `seed_scores`
  (see the module docstring)."""
  if len(docs) < 2:
    raise ValueError(f"seed_scores: needs >= 2 seeds' documents, got"
                     f" {len(docs)}")
  splits = _split_rows(docs[0])
  for i, doc in enumerate(docs[1:], start=1):
    if _split_rows(doc) != splits:
      raise ValueError(f"seed_scores: seed {i} has test splits"
                       f" {_split_rows(doc)}, seed 0 {splits}")
  out = dict(docs[0])
  for split in splits:
    means = aggregate([doc[split] for doc in docs])
    out[split] = {f: means[f"{f}_mean"] for f in docs[0][split]}
  if "aggregated_scores" in out:
    out["aggregated_scores"] = aggregate([out[s] for s in splits])
  values = [_seed_value(doc) for doc in docs]
  summary: dict[str, Any] = {
      "n_seeds": len(docs), "confidence": SEED_CONFIDENCE,
      "per_seed": values,
      "hparams": [doc["hparams"] for doc in docs],
      "postprocessing": [doc["postprocessing"] for doc in docs]}
  for field in values[0]:
    mean, std, half = t_interval([v[field] for v in values])
    summary.update({f"{field}_mean": mean, f"{field}_std": std,
                    f"{field}_ci95": half})
  out["seed_scores"] = summary
  return out


def reported_score(doc: Mapping[str, Any]) -> tuple[float, float | None]:
  """HEAR's reported number: the test score, or the k-fold mean and std;
  with several seeds, the mean and std over seeds (see `reported_interval`
  for the confidence interval)."""
  if "seed_scores" in doc:
    seeds = doc["seed_scores"]
    return seeds["test_score_mean"], seeds["test_score_std"]
  if "aggregated_scores" in doc:
    agg = doc["aggregated_scores"]
    return agg["test_score_mean"], agg["test_score_std"]
  (split,) = _split_rows(doc)
  return doc[split]["test_score"], None


def reported_interval(doc: Mapping[str, Any]) -> float | None:
  """The half-width of the 95% interval of `reported_score` over seeds
  (None for a one-seed document)."""
  if "seed_scores" not in doc:
    return None
  return doc["seed_scores"]["test_score_ci95"]


def write_json(path: str, doc: Any) -> None:
  """Writes JSON atomically (temporary file, then rename)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(doc, f, indent=2, allow_nan=True)
    f.write("\n")
  os.replace(tmp, path)
