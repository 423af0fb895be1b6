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

import ml_collections
from ml_collections import config_dict


def default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # One model spec, or several separated by commas: "melstats,naive".
  config.model = "melstats"
  # Task specs: "demo/pitch" (a builder under tasks/, optionally with a
  # builder config: "demo/pitch/tiny") or "hearpreprocess:<dir or tarball>".
  config.tasks = []
  # Where results go; the --workdir flag wins over this.
  config.workdir = ""
  # Where prepared TFDS datasets go; empty means <workdir>/tfds.
  config.data_dir = ""
  # Root of every PRNG key of the run (probe initialisation, dropout).
  config.seed = 0

  config.embed = ml_collections.ConfigDict()
  # Seconds of audio (at the model's rate) per embedding batch.
  config.embed.batch_seconds = 64.0

  config.probe = ml_collections.ConfigDict()
  # HEAR's grids: "default" (16 points, 8 used), "fast", "faster".
  config.probe.grid = "default"
  config.probe.grid_points = 8
  # Overrides of the grid's fixed entries (unset: HEAR's values).
  config.probe.max_epochs = config_dict.placeholder(int)
  config.probe.patience = config_dict.placeholder(int)
  config.probe.check_val_every_n_epoch = config_dict.placeholder(int)
  # HEAR 2021.1.x never reshuffles training data (hear-reference §5.3).
  config.probe.shuffle_train = False
  return config
