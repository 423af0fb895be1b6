"""HTML pages that show a run's (or several runs') results and figures.

  write_report("runs/demo")                  # runs/demo/report.html
  write_leaderboard_page(results, out_dir)   # out_dir/leaderboard.html

report.html has the leaderboard (table and normalised heat map), a bar chart
per task with fold error bars, the compute table (compute.json), and per
model x task the learning curves of the selected head, the grid's
validation scores and, for event tasks, a timeline of predicted against
reference events on a few test clips. Figures go to `<workdir>/report/`;
the page links them by relative path, so the directory can be copied
whole. Whatever a task directory lacks (e.g. runs made before grid.json
existed) is left out of the page rather than failing it.
"""

from __future__ import annotations

import datetime
import html
import os
import re
from collections.abc import Sequence
from typing import Any

from hear_jax.report import merge
from hear_jax.report import plots
from hear_jax.report import task_files
from hear_jax.report import training_logs
from hear_jax.report.task_files import TaskResult

REPORT_FILE = "report.html"
FIGURE_DIR = "report"
TIMELINE_CLIPS = 3

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 75em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; margin: 0.5em 0; }
.figures img { max-width: 48%; vertical-align: top; }
.note { color: #666; font-size: 0.85em; }
"""


def _file_name(*parts: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)).strip("_") + ".png"


def _img(src: str, alt: str) -> str:
  return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row)
                 + "</tr>" for row in rows)
  return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: str) -> str:
  stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
  return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
          f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
          f"</head><body><h1>{html.escape(title)}</h1>"
          f"<p class=\"note\">generated {stamp} by hear_jax</p>{body}"
          "</body></html>\n")


def _write(path: str, text: str) -> str:
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
  return path


def leaderboard_section(results: Sequence[TaskResult], fig_dir: str,
                        rel: str) -> str:
  """Score table, heat map and per-task bar charts; figures are written to
  `fig_dir`, which the page reaches as `rel`."""
  models, tasks, scores, normalised, average = merge.score_table(results)
  by_key = {(r.model, r.task): r for r in results}
  metric = {r.task: r.metric for r in results}
  rows = [[m] + [merge.score_cell(by_key.get((m, t))) for t in tasks]
          + [f"{average[m]:+.3f}"] for m in models]
  parts = ["<h2>Leaderboard</h2>",
           _table(["model"] + [f"{t} ({metric[t]})" for t in tasks]
                  + ["avg. normalised"], rows),
           "<p class=\"note\">avg. normalised: mean over tasks of HEAR's"
           " per-task z-score across the models shown, clipped to ±1"
           " (lower-is-better metrics negated).</p>"]
  heat = plots.heat_map(scores, normalised, os.path.join(fig_dir,
                                                         "heatmap.png"),
                        models=models, tasks=tasks, average=average)
  parts.append(_img(f"{rel}/{os.path.basename(heat)}", "heat map"))
  parts.append("<h2>Scores per task</h2><div class=\"figures\">")
  for t in tasks:
    bars = [plots.Bar(m, by_key[(m, t)].score, by_key[(m, t)].score_std,
                      tuple(by_key[(m, t)].split_scores.values()))
            for m in models if (m, t) in by_key]
    path = plots.task_bars(t, metric[t], bars,
                           os.path.join(fig_dir, _file_name("task", t)))
    parts.append(_img(f"{rel}/{os.path.basename(path)}", f"{t} scores"))
  parts.append("</div>")
  return "\n".join(parts)


def write_leaderboard_page(results: Sequence[TaskResult], out_dir: str,
                           *, title: str = "hear_jax leaderboard") -> str:
  """out_dir/leaderboard.html with its figures beside it."""
  os.makedirs(out_dir, exist_ok=True)
  runs = sorted({r.run for r in results})
  body = (leaderboard_section(results, out_dir, ".")
          + "<h2>Runs</h2><ul>"
          + "".join(f"<li>{html.escape(r)}</li>" for r in runs) + "</ul>")
  return _write(os.path.join(out_dir, "leaderboard.html"), _page(title, body))


def _fmt(x: Any, spec: str = ".1f") -> str:
  return "" if x is None else format(x, spec)


def compute_section(results: Sequence[TaskResult]) -> str:
  rows = []
  for r in results:
    c = r.compute or {}
    if not c:
      continue
    rate = c.get("audio_sample_rate")
    rate = "" if rate is None else str(rate) + (
        "" if c.get("audio_resampled_from") is None else " (resampled)")
    rows.append([r.model, r.task, f"{c.get('parameters', 0):,}",
                 _fmt(c.get("audio_seconds")), rate,
                 _fmt(c.get("embed_seconds_per_audio_hour")),
                 _fmt(c.get("probe_seconds")),
                 _fmt(c.get("peak_memory_mb"), ".0f"),
                 _fmt(c.get("device_peak_memory_mb"), ".0f")])
  if not rows:
    return ""
  return ("<h2>Compute</h2>" + _table(
      ["model", "task", "parameters", "audio (s)", "task audio (Hz)",
       "embed s / audio hour",
       "probe (s)", "peak memory (MB)", "device peak (MB)"], rows)
          + "<p class=\"note\">task audio: the rate of the task audio the"
          " model read (its own where the task has it, as hear-eval-kit feeds"
          " it); \"resampled\" where it was resampled to the model's rate"
          " (compute.json's audio_resampled_from). embed s / audio hour"
          " includes JIT compilation;"
          " peak memory is the process's resident-set peak during the model"
          " x task (compute.json's peak_memory_scope says if it could not be"
          " reset per task).</p>")


def _timeline_clips(reference: dict[str, list], predicted: dict[str, list]
                    ) -> list[str]:
  with_events = [c for c in sorted(reference) if reference[c]]
  clips = with_events or sorted(set(reference) | set(predicted))
  return clips[:TIMELINE_CLIPS]


def task_section(r: TaskResult, fig_dir: str, rel: str) -> str:
  """Learning curves, grid map and event timeline of one model x task."""
  parts, d = [], r.directory
  name = lambda kind: os.path.join(fig_dir, _file_name(kind, r.model, r.task))
  logs = os.path.join(d, "logs")
  curves = {}
  if os.path.isdir(logs):
    for split in sorted(os.listdir(logs)):
      path = os.path.join(logs, split, training_logs.LOG_FILE)
      if os.path.exists(path):
        curves[split] = training_logs.read_training_log(path)
  monitor = next((c.hparams.get("monitor") for c in curves.values()),
                 r.metric)
  if curves:
    parts.append(plots.learning_curves(
        curves, monitor, name("curves"),
        title=f"{r.model} / {r.task}: selected head (dotted: best check)"))
  grid = task_files.read_json(os.path.join(d, task_files.GRID_FILE))
  if grid and grid.get("points"):
    parts.append(plots.grid_map(grid, name("grid")))
  event_files = sorted(f for f in os.listdir(d)
                       if f.endswith(task_files.EVENTS_SUFFIX))
  if event_files:
    doc = task_files.read_json(os.path.join(d, event_files[0]))
    split = event_files[0][:-len(task_files.EVENTS_SUFFIX)]
    clips = _timeline_clips(doc["reference"], doc["predicted"])
    if clips:
      parts.append(plots.event_timeline(
          doc["reference"], doc["predicted"], clips, name("events"),
          title=f"{r.model} / {r.task}: {split} events"))
  if not parts:
    return ""
  images = "".join(_img(f"{rel}/{os.path.basename(p)}", os.path.basename(p))
                   for p in parts)
  log_note = (f"<p class=\"note\">training logs: {html.escape(logs)} "
              "(metrics.jsonl; TensorBoard: tensorboard --logdir"
              f" {html.escape(logs)})</p>" if curves else "")
  return (f"<h3>{html.escape(r.model)} / {html.escape(r.task)}</h3>"
          f"<div class=\"figures\">{images}</div>{log_note}")


LAYERS_FILE = "layers.json"  # written by hear_jax.evaluation per layered model


def layers_section(results: Sequence[TaskResult]) -> str:
  """Per model x task with several layers: every layer's score, the best
  one and the one the leaderboard reports ("" if no model has layers)."""
  rows = []
  for r in results:
    doc = task_files.read_json(os.path.join(r.directory, LAYERS_FILE)) if (
        r.directory) else None
    if not isinstance(doc, dict) or not doc.get("layers"):
      continue
    finite = [l for l in doc["layers"] if l["score"] == l["score"]]
    sign = 1 if r.higher_is_better else -1
    best = max(finite, key=lambda l: sign * l["score"])["layer"] if (
        finite) else None
    for l in doc["layers"]:
      notes = [n for n, on in (("best", l["layer"] == best),
                               ("leaderboard", l["layer"] == doc["chosen"]))
               if on]
      std = l.get("score_std")
      rows.append([r.model, r.task, str(l["layer"]), r.metric,
                   _fmt(l["score"], ".4f") + (f" ± {std:.4f}" if std
                                              else ""), ", ".join(notes)])
  if not rows:
    return ""
  return "<h2>Layers</h2>" + _table(
      ["model", "task", "layer", "metric", "score", ""], rows)


def write_report(workdir: str) -> str:
  """Writes `<workdir>/report.html` and its figures; returns the path."""
  results = task_files.scan_workdir(workdir)
  if not results:
    raise ValueError(f"{workdir}: no results to report (no <model>/<task>/"
                     "test.predicted-scores.json)")
  fig_dir = os.path.join(workdir, FIGURE_DIR)
  os.makedirs(fig_dir, exist_ok=True)
  body = [leaderboard_section(results, fig_dir, FIGURE_DIR),
          layers_section(results), compute_section(results),
          "<h2>Training</h2>"]
  body += [task_section(r, fig_dir, FIGURE_DIR) for r in results]
  return _write(os.path.join(workdir, REPORT_FILE),
                _page(f"hear_jax report: {workdir}", "\n".join(body)))
