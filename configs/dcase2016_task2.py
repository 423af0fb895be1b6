"""HEAR 2021 open task: DCASE 2016 task 2 office sound events, event_onset_200ms_fms / segment_1s_er.

  python -m hear_jax.main --config=configs/dcase2016_task2.py --workdir=runs/dcase2016_task2
  python -m hear_jax.main --config=configs/dcase2016_task2.py:/path/to/dcase2016_task2-hear2021-full --workdir=...

Reads hearpreprocess output: the task directory `dcase2016_task2-hear2021-full` (holding
task_metadata.json) or its tarball, e.g. `hear2021-dcase2016_task2-hear2021-full-48000.tar.gz` from
the HEAR 2021 Zenodo release (https://zenodo.org/record/5887964), by default
under data/hear2021/. Without it the run stops with one line saying what to
download and where to put it. Prints the leaderboard row of the configured
model (default melstats) with HEAR's full protocol (8 grid points).
"""

from hear_jax.config import default_config


def get_config(path: str = "data/hear2021/dcase2016_task2-hear2021-full"):
  config = default_config()
  config.model = "melstats"
  config.tasks = ["hearpreprocess:" + path]
  config.workdir = "runs/dcase2016_task2"
  return config
