"""The run configuration every config file starts from.

A config file's `get_config()` calls `default_config()` and sets what its run
needs, so every run has the same fields and a misspelt override fails at once
(`--config.probe.max_epoch=3` is rejected by ml_collections, not ignored).

  from hear_jax.config import default_config

  def get_config():
    config = default_config()
    config.model = "melstats"
    config.tasks = ["demo/pitch"]
    return config
"""

from __future__ import annotations

import difflib
import glob
import os

import ml_collections
from ml_collections import config_dict


def default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # One model spec, or several separated by commas: "melstats,naive".
  config.model = "melstats"
  # Task specs: "demo/pitch" (a builder under tasks/, optionally with a
  # builder config: "demo/pitch/tiny") or "hearpreprocess:<dir or tarball>"
  # (any task), "hear2021:<task dir>:<dir or tarball>" (a HEAR 2021 task,
  # checked against hear_jax/data/hear2021_catalogue.py) or
  # "heareval:<embeddings dir>" (embeddings from heareval's runner).
  config.tasks = []
  # Where results go; the --workdir flag wins over this.
  config.workdir = ""
  # Where prepared TFDS datasets go; empty means <workdir>/tfds.
  config.data_dir = ""
  # Root of every PRNG key of the run (probe initialisation, dropout).
  config.seed = 0
  # Unset: each model reads a hearpreprocess:/hear2021: task's audio at its
  # own sample_rate, as hear-eval-kit does (a rate the task lacks: resampled
  # from the lowest rate above it, else the highest). Set: every model reads
  # this rate's audio, resampled to its own rate.
  config.task_sample_rate = config_dict.placeholder(int)
  # A second run on a busy workdir stops at once with a message naming the
  # holder (0), or waits up to this many seconds for it to finish.
  config.lock_wait_seconds = 0.0
  # Seconds between saves of the probe's training state (at a validation
  # check), so a killed run resumes mid-training; 0 saves at every check,
  # a negative value never. Results do not depend on it.
  config.probe_checkpoint_seconds = 60.0
  # Where compiled XLA programs are kept across runs (JAX's persistent
  # compilation cache), so a rerun or a second task of the same embedding
  # width loads the probe's programs instead of compiling them: "" for
  # ~/.cache/hear_jax/xla ($XDG_CACHE_HOME), "none" for no cache.
  config.compilation_cache_dir = ""
  # Several processes (launch/): the longest wait, in seconds, at a point
  # where the processes meet (process 0 alone preparing a dataset or merging
  # embeddings counts: make it cover that), after which a process that did
  # not arrive fails the run with a message naming the point.
  config.distributed_timeout_seconds = 3600.0
  # How soon a process that stopped answering (killed, crashed, host lost) is
  # declared dead; JAX then stops every other process with a message.
  config.distributed_heartbeat_seconds = 60.0

  config.embed = ml_collections.ConfigDict()
  # Seconds of audio (at the model's rate) per embedding batch.
  config.embed.batch_seconds = 64.0

  config.probe = ml_collections.ConfigDict()
  # The probe: "hear" (HEAR's MLP grid below; the default), "linear" (one
  # Linear layer, softmax/sigmoid, at four Adam learning rates, trained,
  # early-stopped and selected on validation like HEAR's heads; the
  # max_epochs/patience/check_val_every_n_epoch overrides apply, grid and
  # grid_points do not), "knn" (cosine k-NN on L2-normalised
  # embeddings, k in (1, 5, 10, 20, 50) chosen on validation; event tasks
  # vote per frame) or "ridge" (closed-form ridge regression on
  # standardised embeddings and +-1 targets, alpha chosen per split on its
  # validation fold from a log-spaced grid; event tasks per frame).
  # Non-HEAR kinds are not HEAR's protocol: compare them with each other,
  # not with published HEAR scores.
  config.probe.kind = "hear"
  # Runs of the whole protocol with different PRNG keys (derived from
  # config.seed and the seed number; seed 0 is the one-seed run); > 1 reports
  # the seed mean, std and 95% Student-t interval. kNN and ridge have no
  # randomness: they need 1.
  config.probe.seeds = 1
  # HEAR's grids: "default" (16 points, 8 used), "fast", "faster".
  config.probe.grid = "default"
  config.probe.grid_points = 8
  # Overrides of the grid's fixed entries (unset: HEAR's values).
  config.probe.max_epochs = config_dict.placeholder(int)
  config.probe.patience = config_dict.placeholder(int)
  config.probe.check_val_every_n_epoch = config_dict.placeholder(int)
  # HEAR 2021.1.x never reshuffles training data (hear-reference §5.3).
  config.probe.shuffle_train = False
  # Scene tasks (and any task monitoring its validation loss): validation
  # checks, checkpoints and early stopping inside the training program,
  # many checks per dispatch, none of them a host round trip. Same rules and
  # epochs; the validation scores are float32 (off: scored on the host in
  # float64, one dispatch per check).
  config.probe.validate_on_device = True
  # Rows, classes and heads padded to a few sizes (`probe.buckets`): a
  # second task in the same buckets reuses the compiled programs (from the
  # persistent compilation cache in a later run). Numbers change by rounding
  # only. None: on for accelerators, off on a CPU (where a first run
  # compiles 5-8 s more per training program).
  config.probe.shape_buckets = config_dict.placeholder(bool)

  # Also write every task's embeddings in hear-eval-kit's layout, under
  # <workdir>/heareval/<model>/<task dir>/, for heareval.predictions.runner.
  config.export_heareval = False
  return config


# Where the per-task configs look for hearpreprocess output by default.
HEAR_DATA_DIR = "data/hear2021"


def hear_data_path(task_dir: str, data_dir: str = HEAR_DATA_DIR) -> str:
  """`<data_dir>/<task dir>` if unpacked there, else its one tarball in
  `data_dir` (Zenodo's hear2021-<task dir>-48000.tar.gz, or any rate);
  `data_dir` itself where it holds the task at several rates (several
  tarballs, or tarballs beside the unpacked task: each model reads its own
  rate); else the directory path, so a missing task is reported by that
  name."""
  directory = os.path.join(data_dir, task_dir)
  tarballs = sorted(glob.glob(os.path.join(data_dir,
                                           f"*{task_dir}-*.tar.gz")))
  if tarballs and (len(tarballs) > 1 or os.path.isdir(directory)):
    return data_dir
  if os.path.isdir(directory) or not tarballs:
    return directory
  return tarballs[0]


def hear_task_config(task_dir: str, arg: str | None = None,
                     variants: tuple[str, ...] = ()
                     ) -> ml_collections.ConfigDict:
  """The config of one HEAR 2021 catalogue task (its hearpreprocess task
  directory name, e.g. "esc50-v2.0.0-full"), checked against the catalogue.

  `arg` (the config file's `:arg`) is the data path, a task directory or
  tarball; default `hear_data_path(task_dir)`. It may instead name one of
  the task's other modes or `variants` (e.g. "beehive_states_fold1-v2-full"),
  which is then read from its default path.
  """
  from hear_jax.data import hear2021_catalogue  # pylint: disable=g-import-not-at-top
  entry = hear2021_catalogue.entry(task_dir)
  others = {e.task_dir for e in hear2021_catalogue.TASKS.values()
            if e.task_name == entry.task_name} | set(variants)
  if arg in others:
    task_dir, arg = arg, None
  config = default_config()
  config.model = "melstats"
  config.tasks = [f"hear2021:{task_dir}:{arg or hear_data_path(task_dir)}"]
  config.workdir = f"runs/{task_dir}"
  return config


def check_config(config: ml_collections.ConfigDict) -> None:
  """Refuses fields `default_config` does not have (a config file's typo is
  otherwise a silently ignored setting) and values no run can use; one-line
  ValueErrors naming the field."""
  _check_fields(config, default_config(), "config")
  if not config.tasks:
    raise ValueError("config.tasks: no task given")
  if config.embed.batch_seconds <= 0:
    raise ValueError("config.embed.batch_seconds: must be > 0, got"
                     f" {config.embed.batch_seconds}")
  if config.task_sample_rate is not None and config.task_sample_rate <= 0:
    raise ValueError("config.task_sample_rate: must be > 0 Hz, got"
                     f" {config.task_sample_rate}")
  for field in ("distributed_timeout_seconds", "distributed_heartbeat_seconds"):
    if not config[field] > 0:
      raise ValueError(f"config.{field}: must be > 0 s, got {config[field]}")
  if config.lock_wait_seconds < 0:
    raise ValueError("config.lock_wait_seconds: must be >= 0, got"
                     f" {config.lock_wait_seconds}")
  from hear_jax.probe import grid  # pylint: disable=g-import-not-at-top
  overrides = {f: config.probe[f] for f in ("max_epochs", "patience",
                                            "check_val_every_n_epoch")
               if config.probe[f] is not None}
  if config.probe.kind not in grid.PROBE_KINDS:
    raise ValueError(f"config.probe.kind: {config.probe.kind!r} is not one of"
                     f" {list(grid.PROBE_KINDS)}")
  try:
    grid.hear_grid(config.probe.grid, config.probe.grid_points, **overrides)
    if config.probe.kind == "linear":
      grid.linear_grid(**overrides)
  except ValueError as e:
    raise ValueError(f"config.probe: {e}") from None
  if config.probe.seeds < 1:
    raise ValueError(f"config.probe.seeds: must be >= 1, got"
                     f" {config.probe.seeds}")
  if config.probe.kind in grid.CLOSED_FORM_KINDS and config.probe.seeds > 1:
    raise ValueError(f"config.probe.seeds: kind {config.probe.kind!r} is"
                     f" deterministic, so {config.probe.seeds} seeds would"
                     " repeat one result; use seeds=1")


def _check_fields(config: ml_collections.ConfigDict,
                  reference: ml_collections.ConfigDict, where: str) -> None:
  for key in config.keys():
    if key not in reference:
      close = difflib.get_close_matches(key, list(reference.keys()), n=1)
      hint = f" (did you mean {where}.{close[0]}?)" if close else ""
      raise ValueError(f"{where}.{key}: no such config field{hint}; the"
                       " fields are those of hear_jax.config.default_config()")
    if isinstance(reference[key], ml_collections.ConfigDict):
      if not isinstance(config[key], ml_collections.ConfigDict):
        raise ValueError(f"{where}.{key}: must be a ConfigDict of fields,"
                         f" got {type(config[key]).__name__}")
      _check_fields(config[key], reference[key], f"{where}.{key}")
