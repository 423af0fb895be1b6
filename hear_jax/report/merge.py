"""One leaderboard from several runs, optionally beside HEAR 2021's numbers.

  results = merged_results(["runs/demo", "runs/other"], published=True)
  write_merged(results, "runs/merged")    # leaderboard.csv, leaderboard.md
  html.write_leaderboard_page(results, "runs/merged")  # .html + figures

A model that appears in more than one run is shown once per run, labelled
with the run ("melstats (demo)"). Published scores (hear2021_published.csv,
shipped with the package) join only tasks that the runs have, matched by
hearpreprocess's task directory name (compute.json's `hear_task`, e.g.
nsynth_pitch-v2.2.3-5h), or by task name when only one published task has
that name; they are labelled "<model> (HEAR 2021)".
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.resources
import io
import math
import os
from collections.abc import Sequence

from hear_jax import metrics
from hear_jax.metrics import normalisation
from hear_jax.report.task_files import TaskResult, scan_workdir
from hear_jax.report import leaderboard

PUBLISHED_FILE = "hear2021_published.csv"
PUBLISHED_RUN = "HEAR 2021 (published)"
CSV_COLUMNS = ("model", "task", "metric", "score", "score_std", "run")


@dataclasses.dataclass(frozen=True)
class PublishedScore:
  model: str
  hear_task: str
  metric: str
  score: float
  source: str

  @property
  def task_name(self) -> str:
    return self.hear_task.split("-")[0]


def read_published(text: str | None = None, *,
                   name: str = PUBLISHED_FILE) -> list[PublishedScore]:
  """The shipped CSV (or `text` in its format); '#' lines are comments."""
  if text is None:
    text = importlib.resources.files("hear_jax.report").joinpath(
        PUBLISHED_FILE).read_text()
  lines = [l for l in text.splitlines() if l.strip()
           and not l.lstrip().startswith("#")]
  out = []
  for n, row in enumerate(csv.DictReader(lines), start=1):
    try:
      score = PublishedScore(row["model"], row["hear_task"], row["metric"],
                             float(row["score"]), row["source"])
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"{name}: data row {n} is not model,hear_task,"
                       f"metric,score,source ({e})") from None
    if score.metric not in metrics.METRIC_NAMES:
      raise ValueError(f"{name}: data row {n}: {score.metric!r} is not a"
                       " known metric")
    out.append(score)
  return out


def published_results(runs: Sequence[TaskResult],
                      published: Sequence[PublishedScore]) -> list[TaskResult]:
  """Published scores of the runs' tasks and primary metrics, as results
  named like the runs' tasks (so they share the heat map's columns)."""
  tasks = {}  # run task name -> (hear_task or "", metric, higher_is_better)
  for r in runs:
    tasks.setdefault(r.task, (r.hear_task, r.metric, r.higher_is_better))
  ids = {p.hear_task for p in published}
  by_name: dict[str, set[str]] = {}
  for p in published:
    by_name.setdefault(p.task_name, set()).add(p.hear_task)
  out = []
  for task, (hear_task, metric, higher) in tasks.items():
    if hear_task not in ids:
      candidates = by_name.get(task, set())
      if len(candidates) != 1:
        continue
      (hear_task,) = candidates
    for p in published:
      if p.hear_task == hear_task and p.metric == metric:
        out.append(TaskResult(
            model=f"{p.model} (HEAR 2021)", task=task, metric=metric,
            score=p.score, score_std=None, split_scores={},
            higher_is_better=higher, hear_task=hear_task,
            run=f"{PUBLISHED_RUN}: {p.source}"))
  return out


def _label_by_run(results: list[TaskResult]) -> list[TaskResult]:
  """Adds the run's name to models that more than one run has."""
  runs_of: dict[str, set[str]] = {}
  for r in results:
    runs_of.setdefault(r.model, set()).add(r.run)
  names = {}
  for model, runs in runs_of.items():
    if len(runs) < 2:
      continue
    short = {run: os.path.basename(os.path.normpath(run)) for run in runs}
    unique = len(set(short.values())) == len(runs)
    for run in runs:
      names[(model, run)] = f"{model} ({short[run] if unique else run})"
  return [dataclasses.replace(r, model=names.get((r.model, r.run), r.model))
          for r in results]


def merged_results(workdirs: Sequence[str], *,
                   published: bool = False) -> list[TaskResult]:
  if not workdirs:
    raise ValueError("--workdirs: give at least one run directory")
  runs = []
  for workdir in workdirs:
    found = scan_workdir(workdir)
    if not found:
      raise ValueError(f"{workdir}: no results (no <model>/<task>/"
                       "test.predicted-scores.json)")
    runs.extend(found)
  runs = _label_by_run(runs)
  return runs + (published_results(runs, read_published()) if published
                 else [])


def score_table(results: Sequence[TaskResult]):
  """(models, tasks, scores, normalised, average normalised score), models
  ranked by their average normalised score."""
  scores = {(r.model, r.task): r.score for r in results}
  lower = {r.task for r in results if not r.higher_is_better}
  normalised = normalisation.normalise_scores(scores, lower_is_better=lower)
  average = normalisation.average_normalised_score(normalised)
  tasks = list(dict.fromkeys(r.task for r in results))
  models = sorted(dict.fromkeys(r.model for r in results),
                  key=lambda m: -average[m] if not math.isnan(average[m])
                  else math.inf)
  return models, tasks, scores, normalised, average


def to_csv(results: Sequence[TaskResult]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(CSV_COLUMNS)
  for r in results:
    writer.writerow([r.model, r.task, r.metric,
                     leaderboard.format_number(r.score),
                     leaderboard.format_number(r.score_std), r.run])
  return out.getvalue()


def score_cell(r: TaskResult | None) -> str:
  if r is None:
    return "–"
  text = f"{r.score:.4f}"
  if r.score_std is not None:
    text += f" ± {r.score_std:.4f}"
  return text


def to_markdown(results: Sequence[TaskResult]) -> str:
  """Models (ranked) x tasks, with each task's metric under its name."""
  models, tasks, _, _, average = score_table(results)
  by_key = {(r.model, r.task): r for r in results}
  metric = {r.task: r.metric for r in results}
  lines = ["| model | " + " | ".join(f"{t} ({metric[t]})" for t in tasks)
           + " | avg. normalised |",
           "|---" * (len(tasks) + 2) + "|"]
  for m in models:
    cells = [score_cell(by_key.get((m, t))) for t in tasks]
    lines.append(f"| {m} | " + " | ".join(cells)
                 + f" | {average[m]:+.3f} |")
  return "\n".join(lines) + "\n"


def write_merged(results: Sequence[TaskResult], out_dir: str) -> list[str]:
  """Writes leaderboard.csv and leaderboard.md; returns their paths (the
  HTML page and figures: `html.write_leaderboard_page`)."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for name, text in (("leaderboard.csv", to_csv(results)),
                     ("leaderboard.md", to_markdown(results))):
    path = os.path.join(out_dir, name)
    with open(path + ".tmp", "w") as f:
      f.write(text)
    os.replace(path + ".tmp", path)
    paths.append(path)
  return paths
