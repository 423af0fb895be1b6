"""hear-eval-kit's `test.predicted-scores.json`, written the same way.

  scores = split_scores(test_scores, test_loss=..., validation_score=..., ...)
  doc = predicted_scores({"test": scores}, hparams=..., score_mode="max", ...)
  write_json(path, doc)

Per test split a dict of `test_loss`, `test_score` (the primary metric),
`test_<metric>` for every metric and `test_<metric>_<sub>` for sed-style
sub-scores, `validation_score`, `epoch`, `time_in_min`; k-fold runs add
`aggregated_scores` with `<field>_mean` / `<field>_std` (ddof 1, NaN skipped,
as pandas does) over the folds (hear-reference §7).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np


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


def reported_score(doc: Mapping[str, Any]) -> tuple[float, float | None]:
  """HEAR's reported number: the test score, or the k-fold mean and std."""
  if "aggregated_scores" in doc:
    agg = doc["aggregated_scores"]
    return agg["test_score_mean"], agg["test_score_std"]
  (split,) = [k for k, v in doc.items()
              if isinstance(v, dict) and "test_score" in v]
  return doc[split]["test_score"], None


def write_json(path: str, doc: Any) -> None:
  """Writes JSON atomically (temporary file, then rename)."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(doc, f, indent=2, allow_nan=True)
    f.write("\n")
  os.replace(tmp, path)
