"""Runs a HEAR-style evaluation.

  python -m hear_jax.main --config=configs/demo.py --workdir=runs/demo
  python -m hear_jax.main --config=configs/demo.py --config.model=naive

Each config file's docstring shows its command and what it prints.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from ml_collections import config_flags
import tensorflow_datasets as tfds

from hear_jax import run

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where results, caches and reports go (overrides"
    " config.workdir).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  workdir = _WORKDIR.value or config.workdir
  if not workdir:
    raise app.UsageError("give --workdir (or set config.workdir)")
  tfds.disable_progress_bar()  # carriage-return bars spam logs
  try:
    table = run.evaluate(config, workdir)
  except (ValueError, FileNotFoundError) as e:
    # hear_jax reports bad data, models and configs as one-line ValueErrors
    # naming the file or field; a user needs that line, not a traceback.
    print(f"hear_jax: error: {e}", file=sys.stderr)
    sys.exit(1)
  print(table)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
