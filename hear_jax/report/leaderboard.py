"""The leaderboard: one row per model x task for the primary metric.

  rows = [LeaderboardRow("melstats", "pitch", "pitch_acc", 0.61, None), ...]
  write_leaderboard(rows, workdir)    # leaderboard.csv and leaderboard.md

CSV columns are exactly `model,task,metric,score,score_std`; `score_std` is
empty when the task has a single test split. Runs with several seeds
(`config.probe.seeds`) give the seed mean and std, and a row's
`score_ci95` (half-width of the 95% interval, `results.reported_interval`)
adds a last column `score_ci95` to the CSV and shows as
"0.6200 ± 0.0248 (95% CI)" in the markdown.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from typing import Sequence

COLUMNS = ("model", "task", "metric", "score", "score_std")


@dataclasses.dataclass(frozen=True)
class LeaderboardRow:
  model: str
  task: str
  metric: str
  score: float
  score_std: float | None
  score_ci95: float | None = None


def format_number(value: float | None) -> str:
  if value is None:
    return ""
  return "nan" if math.isnan(value) else f"{value:.6f}"


def to_csv(rows: Sequence[LeaderboardRow]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  # Only seeded runs have the interval column, so one-seed tables keep
  # HEAR's five columns.
  with_ci = any(r.score_ci95 is not None for r in rows)
  writer.writerow(COLUMNS + (("score_ci95",) if with_ci else ()))
  for r in rows:
    writer.writerow([r.model, r.task, r.metric, format_number(r.score),
                     format_number(r.score_std)]
                    + ([format_number(r.score_ci95)] if with_ci else []))
  return out.getvalue()


# Under the table when a score is NaN, so that it does not read as a crash.
NAN_NOTE = ("nan: the metric is undefined on the test predictions (an event"
            " F-measure when the head predicted no event: precision is 0/0)."
            " As in hear-eval-kit, a fit whose validation score is NaN stops"
            " at that check.")


def to_markdown(rows: Sequence[LeaderboardRow]) -> str:
  lines = ["| model | task | metric | score |", "|---|---|---|---|"]
  for r in rows:
    score = f"{r.score:.4f}"
    if r.score_ci95 is not None and not math.isnan(r.score_ci95):
      score += f" ± {r.score_ci95:.4f} (95% CI)"
    elif r.score_std is not None and not math.isnan(r.score_std):
      score += f" ± {r.score_std:.4f}"
    lines.append(f"| {r.model} | {r.task} | {r.metric} | {score} |")
  if any(math.isnan(r.score) for r in rows):
    lines.append(f"\n{NAN_NOTE}")
  return "\n".join(lines) + "\n"


def write_leaderboard(rows: Sequence[LeaderboardRow], workdir: str) -> str:
  """Writes leaderboard.csv and leaderboard.md; returns the markdown."""
  markdown = to_markdown(rows)
  for name, text in (("leaderboard.csv", to_csv(rows)),
                     ("leaderboard.md", markdown)):
    path = os.path.join(workdir, name)
    with open(path + ".tmp", "w") as f:
      f.write(text)
    os.replace(path + ".tmp", path)
  return markdown
