"""The command line's run: check the config, then `hear_jax.evaluate`.

  table = evaluate(config, workdir)   # writes everything, returns markdown

The per-task loop itself (build -> embed -> probe -> score -> report) is
`hear_jax.evaluation` (stages in `hear_jax.task_stages`), the library's
entry point, so the command line and `hear_jax.evaluate` are one code path
with the same numbers. For every task of the config: prepare its TFDS
dataset once, then for every model: embed each split (cached in the
workdir), fit HEAR's downstream heads (`hear_jax.probe`), score the test
split(s) (`hear_jax.metrics`) and write
`<workdir>/<model>/<task>/test.predicted-scores.json`. The leaderboard of all
models x tasks goes to `<workdir>/leaderboard.{csv,md}`.

Each model reads a hearpreprocess task's audio at its own `sample_rate`, as
hear-eval-kit's runner feeds it the `<rate>/` folder of that rate; each rate
is prepared once as its own dataset. A rate the task lacks is resampled from
the lowest rate above it, else the highest, with a one-line warning and
`audio_resampled_from` in the results JSON and compute.json.
`config.task_sample_rate` makes every model read that one rate instead.

A "heareval:<dir>" task is embeddings hear-eval-kit's runner wrote: no model
runs, the heads are fitted on them and the model is the directory's parent.
`config.export_heareval` also writes each task's embeddings in that layout
under `<workdir>/heareval/<model>/<task dir>/`.
"""

from __future__ import annotations

import ml_collections

from hear_jax import evaluation
from hear_jax import task_stages
from hear_jax.data import task_specs

# The stages, under the names earlier code and tests use.
slug = task_stages.slug
embed_task = task_stages.embed_task
probe_task = task_stages.probe_task
_finished_probe = task_stages._finished_probe  # pylint: disable=protected-access
_audio_rate = task_stages.audio_rate


def model_specs(config: ml_collections.ConfigDict) -> list[str]:
  """config.model split at top-level commas: options like `m(a=1, b=2)` or
  `m(x=[1, 2], s='a,b')` keep theirs."""
  specs, depth, quote, start = [], 0, "", 0
  text = config.model + ","
  for i, char in enumerate(text):
    if quote:
      quote = "" if char == quote and text[i - 1] != "\\" else quote
    elif char in "'\"":
      quote = char
    elif char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    elif char == "," and depth <= 0:
      specs.append(text[start:i].strip())
      start = i + 1
  if depth or quote or start < len(text):
    # An unclosed bracket or quote swallows the rest: say so, not "no spec".
    raise ValueError(f"config.model {config.model!r}: unbalanced brackets or"
                     " quotes")
  specs = [s for s in specs if s]
  if not specs:
    raise ValueError("config.model: no model spec given")
  return specs


def _check_task_paths(config: ml_collections.ConfigDict) -> None:
  task_stages.check_task_paths(list(config.tasks))


def check_run(config: ml_collections.ConfigDict) -> list[str]:
  """What can be checked before any work, writing nothing: the config's
  fields and values, the model specs (syntax, the model exists; before any
  task is read), the task specs and their data. Returns the model specs."""
  # Embeddings directories bring their own model; the rest need config.model.
  embedded = [s.startswith(task_specs.HEAREVAL_PREFIX) for s in config.tasks]
  specs = [] if all(embedded) else model_specs(config)
  evaluation.check_inputs(config, specs)
  return specs


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Runs the whole evaluation; returns the leaderboard as markdown.

  A wrong config fails before anything is written (`check_run`). The run
  then holds `<workdir>/.lock` throughout (`hear_jax.workdir_lock`): a
  second run on the same workdir stops at once, naming the holder, or waits
  up to `config.lock_wait_seconds` for it. Models are loaded under the lock,
  so a wrong model spec leaves at most that lock file behind. A killed run
  leaves no stale lock, and rerunning it resumes: finished datasets,
  embeddings and probe results are reused (each is written atomically and
  checked against what it was made from), and an interrupted probe continues
  from its last checkpoint.
  """
  specs = check_run(config)
  results = evaluation.evaluate(specs or None, list(config.tasks),
                                config=config, workdir=workdir)
  return results.to_markdown()
