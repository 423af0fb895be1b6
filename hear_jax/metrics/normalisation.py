"""HEAR leaderboard normalisation: per-task z-scores across models, clipped.

hear-leaderboard/leaderboard.py standardises each task's column of scores to
zero mean and unit variance over models (scikit-learn `StandardScaler`, i.e.
population std) and clamps the result to [-1, +1], so one task's outlier
cannot dominate a model's average. Its heat map and "grand score" use these.

  scores = {("wav2vec2", "esc50"): 0.561, ("openl3", "esc50"): 0.751,
            ("wav2vec2", "dcase"): 0.663, ("openl3", "dcase"): 0.833}
  z = normalise_scores(scores)          # {("wav2vec2", "esc50"): -1.0, ...}
  average_normalised_score(z)           # {"wav2vec2": -1.0, "openl3": 1.0}

Differences from upstream, on purpose:

- Missing cells (absent keys or NaN) stay NaN and are left out of their
  task's mean and std. Upstream first fills them with sklearn's
  `IterativeImputer` (a regression on the other tasks) and standardises the
  filled table, then blanks them again; with missing cells its statistics
  therefore differ slightly from these.
- Tasks named in `lower_is_better` (e.g. scored by `segment_1s_er`) are
  negated after standardising, so that higher is better everywhere.
  Upstream's table holds only primary scores, all maximised, so it never
  needed this.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np


def normalise_scores(
    scores: Mapping[tuple[str, str], float],
    *,
    lower_is_better: Collection[str] = (),
    clip: float | None = 1.0,
) -> dict[tuple[str, str], float]:
  """Standardises every task's scores across models; keys are (model, task).

  Returns the same keys, each z = (score - task mean) / task std, negated for
  tasks in `lower_is_better`, then clipped to [-clip, clip] (no clipping if
  `clip` is None). A task whose scores are all equal gets z = 0, like
  StandardScaler's unit scale for constant features. NaN stays NaN.
  """
  if clip is not None and not clip > 0:
    raise ValueError(f"clip must be > 0 or None, got {clip!r}")
  by_task: dict[str, list[tuple[str, str]]] = {}
  for key in scores:
    if not (isinstance(key, tuple) and len(key) == 2):
      raise ValueError(f"score keys must be (model, task) tuples, got {key!r}")
    by_task.setdefault(key[1], []).append(key)
  unknown = set(lower_is_better) - set(by_task)
  if unknown:
    raise ValueError(f"lower_is_better names tasks without scores: {sorted(unknown)}")

  normalised: dict[tuple[str, str], float] = {}
  for task, keys in by_task.items():
    values = np.array([scores[key] for key in keys], dtype=np.float64)
    observed = values[~np.isnan(values)]
    if len(observed):
      mean = observed.mean()
      variance = observed.var()
      n = len(observed)
      # StandardScaler's test for a constant column (variance at the level
      # of its own rounding error): such a column keeps scale 1.
      eps = np.finfo(np.float64).eps
      constant = variance <= n * eps * variance + (n * mean * eps) ** 2
      scale = 1.0 if constant else np.sqrt(variance)
      z = (values - mean) / scale
    else:
      z = values
    if task in lower_is_better:
      z = -z
    if clip is not None:
      z = np.clip(z, -clip, clip)
    normalised.update(zip(keys, (float(v) for v in z)))
  return normalised


def average_normalised_score(
    normalised: Mapping[tuple[str, str], float],
) -> dict[str, float]:
  """Each model's mean normalised score over the tasks it has (NaN skipped).

  The leaderboard's ranking number ("avgscore"); upstream averages over
  imputed cells too, this averages only the observed ones.
  """
  by_model: dict[str, list[float]] = {}
  for (model, _), value in normalised.items():
    by_model.setdefault(model, []).append(value)
  averages = {}
  for model, values in by_model.items():
    observed = [v for v in values if not np.isnan(v)]
    averages[model] = float(np.mean(observed)) if observed else float("nan")
  return averages
