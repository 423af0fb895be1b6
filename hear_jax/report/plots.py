"""The report's figures, as PNG files (matplotlib, Agg backend).

  heat_map(scores, normalised, "heatmap.png")          # model x task
  task_bars("esc50", "top1_acc", bars, "esc50.png")     # fold error bars
  learning_curves({"test": curve}, "top1_acc", "curves.png")
  grid_map(grid_json, "grid.png")                       # lr x layers x init
  event_timeline(reference, predicted, clips, "timeline.png")

Each function draws one small `matplotlib.figure.Figure` (no pyplot, so no
global backend or open-figure state; PNGs go through Agg) and returns the
path it wrote; they are cheap enough to run after every evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
import numpy as np

from hear_jax.report.training_logs import TrainingCurve

_DPI = 90


def _save(fig, path: str) -> str:
  fig.savefig(path, dpi=_DPI, bbox_inches="tight", format="png")
  return path


def _nan(x: float | None) -> float:
  return math.nan if x is None else float(x)


def heat_map(scores: Mapping[tuple[str, str], float],
             normalised: Mapping[tuple[str, str], float], path: str, *,
             models: Sequence[str] | None = None,
             tasks: Sequence[str] | None = None,
             average: Mapping[str, float] | None = None,
             title: str = "") -> str:
  """Cells coloured by the normalised score (HEAR's clipped z-score, -1..1),
  labelled with the raw score; a last column with each model's average
  normalised score when `average` is given. Missing cells are grey."""
  models = list(models or dict.fromkeys(m for m, _ in scores))
  tasks = list(tasks or dict.fromkeys(t for _, t in scores))
  z = np.array([[_nan(normalised.get((m, t))) for t in tasks]
                for m in models])
  raw = np.array([[_nan(scores.get((m, t))) for t in tasks] for m in models])
  columns = list(tasks)
  if average is not None:
    z = np.concatenate([z, [[_nan(average.get(m))] for m in models]], axis=1)
    raw = np.concatenate([raw, z[:, -1:]], axis=1)
    columns.append("avg. normalised")
  width = 1.6 + 1.05 * len(columns)
  height = 1.2 + 0.45 * len(models)
  fig = Figure(figsize=(width, height))
  ax = fig.subplots()
  cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
  image = ax.imshow(np.ma.masked_invalid(z), cmap=cmap, vmin=-1, vmax=1,
                    aspect="auto")
  for i in range(len(models)):
    for j in range(len(columns)):
      text = "–" if math.isnan(raw[i, j]) else f"{raw[i, j]:.3f}"
      ax.text(j, i, text, ha="center", va="center", fontsize=8)
  ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right",
                fontsize=8)
  ax.set_yticks(range(len(models)), models, fontsize=8)
  fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02).set_label(
      "normalised score", fontsize=8)
  ax.set_title(title or "score (colour: per-task z-score, clipped to ±1)",
               fontsize=9)
  return _save(fig, path)


class Bar(NamedTuple):
  label: str
  score: float
  std: float | None = None
  split_scores: Sequence[float] = ()  # one dot per fold


def task_bars(task: str, metric: str, bars: Sequence[Bar], path: str) -> str:
  """One bar per model with ±std error bars over folds and the folds as
  dots."""
  fig = Figure(figsize=(1.8 + 0.7 * len(bars), 2.8))
  ax = fig.subplots()
  x = np.arange(len(bars))
  # Single-split tasks have no spread to show: no error bars at all.
  stds = ([b.std if b.std is not None else 0.0 for b in bars]
          if any(b.std is not None for b in bars) else None)
  ax.bar(x, [b.score for b in bars], yerr=stds, capsize=4,
         color="#6a9fd4", edgecolor="#2b5d8c")
  for i, b in enumerate(bars):
    if len(b.split_scores) > 1:  # folds beside the error bar, not on it
      ax.plot(np.full(len(b.split_scores), i + 0.22), b.split_scores, "o",
              color="#222222", markersize=3)
    top = b.score + (b.std or 0.0)
    ax.text(i, top, f"{b.score:.3f}", ha="center", va="bottom", fontsize=7)
  ax.set_xticks(x, [b.label for b in bars], rotation=30, ha="right",
                fontsize=8)
  ax.set_ylabel(metric, fontsize=8)
  ax.set_title(task, fontsize=9)
  ax.grid(axis="y", alpha=0.3)
  return _save(fig, path)


def learning_curves(curves: Mapping[str, TrainingCurve], monitor: str,
                    path: str, *, title: str = "") -> str:
  """Per test split: training loss per epoch and validation loss (left),
  the monitored validation score (right), the best check marked."""
  fig = Figure(figsize=(8.0, 2.8))
  loss_ax, score_ax = fig.subplots(1, 2)
  colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
  for k, (split, c) in enumerate(curves.items()):
    colour = colours[k % len(colours)]
    # Splits are named by their test fold; a single split needs no name.
    name = f"{split}: " if len(curves) > 1 else ""
    loss_ax.plot(c.train_epochs, c.train_loss, color=colour, lw=1,
                 label=f"{name}train")
    loss_ax.plot(c.check_epochs, c.valid_loss, "o--", color=colour, lw=1,
                 markersize=3, label=f"{name}valid")
    score_ax.plot(c.check_epochs, c.valid_score, "o-", color=colour, lw=1,
                  markersize=3, label=split)
    best = c.hparams.get("best_epoch")
    if best:
      for ax in (loss_ax, score_ax):
        ax.axvline(best, color=colour, alpha=0.4, ls=":")
  loss_ax.set_xlabel("epoch", fontsize=8)
  loss_ax.set_ylabel("loss", fontsize=8)
  loss_ax.legend(fontsize=7)
  score_ax.set_xlabel("epoch", fontsize=8)
  score_ax.set_ylabel(f"validation {monitor}", fontsize=8)
  if len(curves) > 1:
    score_ax.legend(fontsize=7)
  for ax in (loss_ax, score_ax):
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  fig.suptitle(title or "learning curves (dotted: best check)", fontsize=9)
  return _save(fig, path)


def _varying(points: Sequence[Mapping[str, Any]], exclude: Sequence[str]
             ) -> list[str]:
  keys = [k for k in points[0]["hparams"] if k not in exclude]
  return [k for k in keys
          if len({repr(p["hparams"][k]) for p in points}) > 1]


def _text_colour(image, value: float) -> str:
  """Black on light cells, white on dark ones."""
  if math.isnan(value):
    return "black"
  red, green, blue, _ = image.cmap(image.norm(value))
  return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else (
      "white")


def grid_map(grid: Mapping[str, Any], path: str, *, title: str = "") -> str:
  """Best validation score of every grid point on split 0 (grid.json):
  columns are learning rates, rows the other hyperparameters that vary
  (hidden layers, initialization, ...); the selected point is outlined."""
  points = grid["points"]
  lrs = sorted({p["hparams"]["lr"] for p in points})
  row_keys = _varying(points, exclude=("lr",))
  for key in ("initialization", "hidden_layers"):  # always shown
    if key not in row_keys:
      row_keys.insert(0, key)
  rows = sorted(set(tuple(p["hparams"][k] for k in row_keys)
                    for p in points))
  values = np.full((len(rows), len(lrs)), np.nan)
  selected = None
  for i, p in enumerate(points):
    r = rows.index(tuple(p["hparams"][k] for k in row_keys))
    c = lrs.index(p["hparams"]["lr"])
    values[r, c] = _nan(p["best_score"])
    if i == grid.get("selected"):
      selected = (r, c)
  fig = Figure(figsize=(2.2 + 0.9 * len(lrs), 1.2 + 0.4 * len(rows)))
  ax = fig.subplots()
  cmap = matplotlib.colormaps["viridis" if grid.get("maximize", True)
                              else "viridis_r"].with_extremes(bad="#dddddd")
  image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
  for r in range(len(rows)):
    for c in range(len(lrs)):
      v = values[r, c]
      ax.text(c, r, "–" if math.isnan(v) else f"{v:.3f}", ha="center",
              va="center", fontsize=7, color=_text_colour(image, v))
  if selected is not None:
    ax.add_patch(Rectangle(
        (selected[1] - 0.5, selected[0] - 0.5), 1, 1, fill=False,
        edgecolor="red", lw=2))
  ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs], fontsize=7)
  ax.set_xlabel("learning rate", fontsize=8)
  short = {"hidden_layers": "layers", "initialization": "init"}
  ax.set_yticks(range(len(rows)), [
      ", ".join(f"{short.get(k, k)}={v}" for k, v in zip(row_keys, row))
      for row in rows], fontsize=7)
  ax.set_title(title or f"best validation {grid.get('monitor', 'score')},"
               " split 0 (red: selected)", fontsize=8)
  return _save(fig, path)


def event_timeline(reference: Mapping[str, Sequence[Mapping[str, Any]]],
                   predicted: Mapping[str, Sequence[Mapping[str, Any]]],
                   clips: Sequence[str], path: str, *,
                   title: str = "") -> str:
  """Reference (wide, light) and predicted (narrow, dark) events per label
  for each clip, times in seconds (events are in ms)."""
  fig = Figure(figsize=(8.0, 0.6 + 1.5 * len(clips)))
  axes = fig.subplots(len(clips), 1, squeeze=False)
  for ax, clip in zip(axes[:, 0], clips):
    ref, pred = reference.get(clip, []), predicted.get(clip, [])
    labels = sorted({e["label"] for e in list(ref) + list(pred)})
    row = {label: i for i, label in enumerate(labels)}
    for events, height, colour in ((ref, 0.7, "#9ecae1"),
                                   (pred, 0.3, "#d94801")):
      for label in labels:
        spans = [(e["start"] / 1000, (e["end"] - e["start"]) / 1000)
                 for e in events if e["label"] == label]
        ax.broken_barh(spans, (row[label] - height / 2, height),
                       color=colour)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(-0.6, max(len(labels), 1) - 0.4)
    ax.set_xlim(left=0)
    ax.set_title(clip, fontsize=8, loc="left")
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
  axes[-1, 0].set_xlabel("time (s)", fontsize=8)
  handles = [Patch(color="#9ecae1", label="reference"),
             Patch(color="#d94801", label="predicted")]
  fig.suptitle(title or "test events", fontsize=9)
  fig.tight_layout()
  # Above the axes, so it never hides events.
  fig.legend(handles=handles, fontsize=7, loc="upper right", ncol=2,
             bbox_to_anchor=(1.0, 1.0), frameon=False)
  return _save(fig, path)
