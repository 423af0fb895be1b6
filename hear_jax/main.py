"""Runs a HEAR-style evaluation.

  python -m hear_jax.main --config=configs/demo.py --workdir=runs/demo
  python -m hear_jax.main --config=configs/demo.py --config.model=naive

Each config file's docstring shows its command and what it prints.
"""

from __future__ import annotations

import re
import traceback

from absl import app
from absl import flags
from ml_collections import config_flags
import tensorflow_datasets as tfds

from hear_jax import distributed
from hear_jax import run
from hear_jax import workdir_lock

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where results, caches and reports go (overrides"
    " config.workdir).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = _CONFIG.value
  try:
    config.keys()  # a config file that failed to load raises only when used
  except OSError as e:
    _fail(str(e), 2)
  workdir = _WORKDIR.value or config.workdir
  if not workdir:
    raise app.UsageError("give --workdir (or set config.workdir)")
  tfds.disable_progress_bar()  # carriage-return bars spam logs
  try:
    # One of several processes (launch/) if the environment says so.
    distributed.initialize(
        timeout_seconds=config.distributed_timeout_seconds,
        heartbeat_seconds=config.distributed_heartbeat_seconds)
    table = run.evaluate(config, workdir)
  except (ValueError, FileNotFoundError, workdir_lock.WorkdirBusyError,
          distributed.DistributedError) as e:
    # hear_jax reports bad data, models and configs as one-line ValueErrors
    # naming the file or field; a user needs that line, not a traceback.
    _fail(str(e), 1)
  except Exception as e:  # pylint: disable=broad-except
    if distributed.process_count() == 1:
      raise
    # A bug in one of several processes: its traceback, then out at once,
    # not into JAX's exit handshake with peers that wait for it.
    traceback.print_exc()
    first = (str(e).strip().splitlines() or [""])[0]
    distributed.fail(f"{type(e).__name__}: {first}", 1)
  if distributed.is_main():
    print(table)


def _fail(message: str, status: int) -> None:
  distributed.fail(message, status)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, but a bad flag, config file or config override is
  one line on stderr, without traceback or usage text (exit status 2)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e), 2)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections raises these, wrapped, for an override naming a field
    # the config lacks; the innermost message has its "did you mean" hint.
    while isinstance(e, BaseException) and e.args:
      e = e.args[0]
    field, _, hint = str(e).partition("\n")
    name = re.fullmatch(r"'([^']+)'", field.strip())
    if name is None:
      _fail(f"bad config override: {e}", 2)
    flag = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")
            and name[1] in a.split("=")[0].split(".")]
    hint = f" ({hint[:1].lower()}{hint[1:]})" if hint.strip() else ""
    _fail(f"{', '.join(flag) or 'config override'}: no such config field"
          f" {name[0]}{hint}", 2)
  return []


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main, flags_parser=_parse_flags)
