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

Modules: `grid` (hyperparameter grids: HEAR's, and `linear_grid` for the
linear probe), `mlp` (the head as pure functions), `trainer` (members
fitted in one jitted program per architecture: `members`, `program`,
`driver`, `device_loop`, `early_stopping`, `prediction`), `events` (frame
labels and frame -> event post-processing), `knn` (the k-nearest-neighbour
probe: chunked cosine search, k chosen on validation), `ridge` (the
closed-form ridge probe: one eigendecomposition per split, alpha chosen on
validation), `protocol`
(HEAR's train/valid/test and k-fold protocol for one task, dispatching on
`config.probe.kind` and repeating over `config.probe.seeds`).

Beyond HEAR (opt-in, `config.probe.kind`): "linear" trains
`linear_grid()`'s points with `fit_probes`; "knn" uses
`knn.fit_knn` / `knn.predict_split` in place of `fit_probes` /
`predict_split`, and "ridge" `ridge.fit_ridge` / `ridge.predict_split`:

  fits = probe.fit_knn(train_x, train_y, valid_x, valid_y,
                       multilabel=False, score_fn=top1, maximize=True)
  fits = probe.fit_ridge(train_x, train_y, valid_x, valid_y,
                         multilabel=False, score_fn=top1, maximize=True)
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
    CLOSED_FORM_KINDS,
    PROBE_KINDS,
    HParams,
    hear_grid,
    linear_grid,
    parameter_grid,
    task_overrides,
)
from hear_jax.probe.knn import (
    KnnFit,
    KnnParams,
    fit_knn,
    nearest_neighbours,
)
from hear_jax.probe.ridge import (
    RidgeFit,
    RidgeParams,
    fit_ridge,
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
    "CLOSED_FORM_KINDS", "DEFAULT_POSTPROCESSING_GRID", "FitResult",
    "HParams", "KnnFit", "KnnParams", "PROBE_KINDS", "PostprocessingChoice",
    "RidgeFit", "RidgeParams", "SplitPredictions", "ValidationCheck",
    "event_score_fn", "fit_knn", "fit_probes", "fit_ridge",
    "frame_targets", "frames_to_events", "hear_grid", "linear_grid",
    "member_keys", "nearest_neighbours", "parameter_grid",
    "postprocessing_grid", "predict", "predict_split", "select_postprocessing",
    "task_overrides",
]
