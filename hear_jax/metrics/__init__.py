"""HEAR 2021's ten scores by name, as hear-eval-kit computes them.

  from hear_jax import metrics
  metrics.compute("top1_acc", probs, onehot)                  # float
  metrics.compute("event_onset_200ms_fms", pred_events, ref_events,
                  label_vocab=vocab)                           # float
  metrics.compute_detailed("event_onset_200ms_fms", pred_events, ref_events)
  # {'f_measure': ..., 'precision': ..., 'recall': ...}
  metrics.higher_is_better("segment_1s_er")                    # False

Scene metrics (`top1_acc`, `pitch_acc`, `chroma_acc`, `mAP`, `d_prime`,
`aucroc`) take numpy `predictions[N, C]` and 0/1 `targets[N, C]`. Event
metrics take `{filename: [{"label", "start", "end"}, ...]}` (ms) or an
`EventTable`; their option `files` limits the evaluated files (default:
every file in either dict). To score several event metrics on one split,
build `EventTable.from_hear` once per side and pass the tables.

`compute_detailed` returns HEAR's sub-scores, the ones hear-eval-kit logs as
`test_<metric>_<sub>`: `f_measure`, `precision`, `recall` for the event
F-measures and `error_rate` for `segment_1s_er` (the first key is the score).
Scene metrics have no sub-scores; for them it returns `{name: score}`.

`normalisation.normalise_scores` turns a (model, task) score table into the
leaderboard's clipped per-task z-scores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from hear_jax.metrics import event_table, events, normalisation, scene, segments
from hear_jax.metrics.event_table import EventTable
from hear_jax.metrics.events import event_based_scores
from hear_jax.metrics.segments import segment_based_scores

_SCENE: dict[str, Callable[[Any, Any], float]] = {
    "top1_acc": scene.top1_accuracy,
    "pitch_acc": scene.top1_accuracy,
    "chroma_acc": scene.chroma_accuracy,
    "mAP": scene.mean_average_precision,
    "d_prime": scene.d_prime,
    "aucroc": scene.aucroc,
}

# HEAR's sed_eval parameters (heareval/score.py; hear-reference.md §6).
_EVENT: dict[str, Callable[..., dict[str, float]]] = {
    "event_onset_200ms_fms": functools.partial(
        event_based_scores, evaluate_onset=True, evaluate_offset=False, t_collar=0.2
    ),
    "event_onset_50ms_fms": functools.partial(
        event_based_scores, evaluate_onset=True, evaluate_offset=False, t_collar=0.05
    ),
    "event_onset_offset_50ms_20perc_fms": functools.partial(
        event_based_scores,
        evaluate_onset=True,
        evaluate_offset=True,
        t_collar=0.05,
        percentage_of_length=0.2,
    ),
    "segment_1s_er": functools.partial(segment_based_scores, time_resolution=1.0),
}

_SUB_SCORES = {
    "segment_1s_er": ("error_rate",),
    **{
        name: ("f_measure", "precision", "recall")
        for name in _EVENT
        if name != "segment_1s_er"
    },
}

METRIC_NAMES: tuple[str, ...] = tuple(_SCENE) + tuple(_EVENT)

_EVENT_OPTIONS = ("files",)


def _check_name(name: str) -> None:
  if name not in METRIC_NAMES:
    raise ValueError(f"unknown metric {name!r}; valid: {', '.join(METRIC_NAMES)}")


def higher_is_better(name: str) -> bool:
  """False only for `segment_1s_er`, an error rate (HEAR's `maximize=False`)."""
  _check_name(name)
  return name != "segment_1s_er"


def compute_detailed(
    name: str,
    predictions: Any,
    targets: Any,
    *,
    label_vocab: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, float]:
  """Metric `name` with its HEAR sub-scores; the first entry is the score.

  `label_vocab` is the task's label list (event metrics check every label is
  in it; scene metrics ignore it). Event metrics accept `files=`.
  """
  _check_name(name)
  if name in _SCENE:
    if options:
      raise ValueError(f"{name} takes no options, got {sorted(options)}")
    return {name: _SCENE[name](predictions, targets)}
  unknown = sorted(set(options) - set(_EVENT_OPTIONS))
  if unknown:
    raise ValueError(f"{name}: unknown options {unknown}; valid: {list(_EVENT_OPTIONS)}")
  scores = _EVENT[name](predictions, targets, label_vocab=label_vocab, **options)
  return {key: scores[key] for key in _SUB_SCORES[name]}


def compute(
    name: str,
    predictions: Any,
    targets: Any,
    *,
    label_vocab: Sequence[str] | None = None,
    **options: Any,
) -> float:
  """The score HEAR reports for metric `name` (see `METRIC_NAMES`)."""
  detailed = compute_detailed(
      name, predictions, targets, label_vocab=label_vocab, **options
  )
  return next(iter(detailed.values()))


__all__ = [
    "METRIC_NAMES",
    "EventTable",
    "compute",
    "compute_detailed",
    "event_based_scores",
    "event_table",
    "events",
    "higher_is_better",
    "normalisation",
    "scene",
    "segment_based_scores",
    "segments",
]
