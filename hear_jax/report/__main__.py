"""Merges runs into one leaderboard, or redraws one run's report.

  python -m hear_jax.report --workdirs=runs/demo,runs/other --out=runs/merged
  python -m hear_jax.report --workdirs=runs/nsynth --out=cmp --published
  python -m hear_jax.report --workdirs=runs/demo        # runs/demo/report.html

With --out: writes DIR/leaderboard.{csv,md,html}, DIR/heatmap.png and one
bar chart per task, with every run's models (a model in several runs is
labelled with its run). --published adds HEAR 2021's published scores of the
reference models for the runs' tasks (hear_jax/report/hear2021_published.csv).
Without --out (one workdir): rewrites that run's report.html and figures.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from hear_jax.report import html
from hear_jax.report import merge

_WORKDIRS = flags.DEFINE_list(
    "workdirs", None, "Run directories (hear_jax.main --workdir), comma"
    " separated.")
_OUT = flags.DEFINE_string(
    "out", None, "Where the merged leaderboard goes; without it, one"
    " workdir's report.html is redrawn.")
_PUBLISHED = flags.DEFINE_bool(
    "published", False, "Show HEAR 2021's published scores of the reference"
    " models beside the runs' (tasks the runs have only).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  workdirs = [w for w in _WORKDIRS.value if w]
  try:
    if _OUT.value is None:
      if len(workdirs) != 1 or _PUBLISHED.value:
        raise app.UsageError("give --out to merge several runs or to add"
                             " --published scores")
      print(html.write_report(workdirs[0]))
      return
    results = merge.merged_results(workdirs, published=_PUBLISHED.value)
    if _PUBLISHED.value and not any(r.run.startswith(merge.PUBLISHED_RUN)
                                    for r in results):
      print("hear_jax.report: no published HEAR 2021 scores for these tasks",
            file=sys.stderr)
    merge.write_merged(results, _OUT.value)
    print(html.write_leaderboard_page(results, _OUT.value))
    print(merge.to_markdown(results), end="")
  except ValueError as e:
    print(f"hear_jax.report: error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
