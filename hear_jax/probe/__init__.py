"""HEAR's downstream probe: shallow heads fitted on frozen embeddings.

  from hear_jax import probe
  points = probe.hear_grid()                       # HEAR's 8 grid points
  results = probe.fit_probes(train_x, train_y, valid_x, valid_y, points,
                             multilabel=False, score_fn=top1, maximize=True,
                             key=jax.random.key(0))
  best = max(results, key=lambda r: r.best_score)
  test = probe.predict_split(best, test_x, test_y)  # probs, logits, loss

Event tasks: `frame_targets` makes frame labels; `event_score_fn` is the
score_fn that also picks the post-processing (kept in `best.best_extra`);
`frames_to_events(..., **best.best_extra)` makes the test events.

Modules: `grid` (hyperparameter grids), `mlp` (the head as pure
functions), `trainer` (vmapped, jitted fitting with early stopping),
`events` (frame labels and frame -> event post-processing).
"""

from __future__ import annotations

from hear_jax.probe.events import (
    DEFAULT_POSTPROCESSING_GRID,
    PostprocessingChoice,
    event_score_fn,
    frame_targets,
    frames_to_events,
    postprocessing_grid,
    select_postprocessing,
)
from hear_jax.probe.grid import (
    HParams,
    hear_grid,
    parameter_grid,
    task_overrides,
)
from hear_jax.probe.trainer import (
    FitResult,
    SplitPredictions,
    ValidationCheck,
    fit_probes,
    member_keys,
    predict,
    predict_split,
)

__all__ = [
    "DEFAULT_POSTPROCESSING_GRID", "FitResult", "HParams",
    "PostprocessingChoice", "SplitPredictions", "ValidationCheck",
    "event_score_fn", "fit_probes", "frame_targets",
    "frames_to_events", "hear_grid", "member_keys", "parameter_grid",
    "postprocessing_grid", "predict", "predict_split", "select_postprocessing",
    "task_overrides",
]
