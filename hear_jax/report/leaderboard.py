"""The leaderboard: one row per model x task for the primary metric.

  rows = [LeaderboardRow("melstats", "pitch", "pitch_acc", 0.61, None), ...]
  write_leaderboard(rows, workdir)    # leaderboard.csv and leaderboard.md

CSV columns are exactly `model,task,metric,score,score_std`; `score_std` is
empty when the task has a single test split.
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


def format_number(value: float | None) -> str:
  if value is None:
    return ""
  return "nan" if math.isnan(value) else f"{value:.6f}"


def to_csv(rows: Sequence[LeaderboardRow]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(COLUMNS)
  for r in rows:
    writer.writerow([r.model, r.task, r.metric, format_number(r.score),
                     format_number(r.score_std)])
  return out.getvalue()


def to_markdown(rows: Sequence[LeaderboardRow]) -> str:
  lines = ["| model | task | metric | score |", "|---|---|---|---|"]
  for r in rows:
    score = f"{r.score:.4f}"
    if r.score_std is not None and not math.isnan(r.score_std):
      score += f" ± {r.score_std:.4f}"
    lines.append(f"| {r.model} | {r.task} | {r.metric} | {score} |")
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
