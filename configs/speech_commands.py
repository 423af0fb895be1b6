"""HEAR 2021 open task: Speech Commands (5 h), top1_acc.

  python -m hear_jax.main --config=configs/speech_commands.py --workdir=runs/speech_commands
  python -m hear_jax.main --config=configs/speech_commands.py:/path/to/speech_commands-v0.0.2-5h --workdir=...

Reads hearpreprocess output: the task directory `speech_commands-v0.0.2-5h` (holding
task_metadata.json) or its tarball, e.g. `hear2021-speech_commands-v0.0.2-5h-48000.tar.gz` from
the HEAR 2021 Zenodo release (https://zenodo.org/record/5887964), by default
under data/hear2021/. Without it the run stops with one line saying what to
download and where to put it. Prints the leaderboard row of the configured
model (default melstats) with HEAR's full protocol (8 grid points).
"""

from hear_jax.config import default_config


def get_config(path: str = "data/hear2021/speech_commands-v0.0.2-5h"):
  config = default_config()
  config.model = "melstats"
  config.tasks = ["hearpreprocess:" + path]
  config.workdir = "runs/speech_commands"
  return config
