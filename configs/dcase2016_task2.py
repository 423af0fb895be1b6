"""HEAR 2021 task: DCASE 2016 task 2: office sound event detection.

  python -m hear_jax.main --config=configs/dcase2016_task2.py --workdir=runs/dcase2016_task2
  python -m hear_jax.main --config=configs/dcase2016_task2.py:/path/to/hear2021-dcase2016_task2-hear2021-full-48000.tar.gz --workdir=...

Expects the hearpreprocess output of dcase2016_task2-hear2021-full: its
tarball hear2021-dcase2016_task2-hear2021-full-48000.tar.gz from the HEAR 2021
release (https://zenodo.org/record/5887964; other rates work too) or the
unpacked dcase2016_task2-hear2021-full/ directory, by default in
data/hear2021/. Before use it is checked against the task's catalogue entry
(hear_jax/data/hear2021_catalogue.py): event / multilabel, train/valid/test,
120 s clips, 11 labels, metrics event_onset_200ms_fms, segment_1s_er. Without
the data the run stops with one line saying what to download. Prints the
leaderboard row of the configured model (default melstats) under HEAR's
protocol (8 grid points).
"""

from hear_jax.config import hear_task_config


def get_config(arg: str | None = None):
  """`arg`: the task directory or tarball (default: under data/hear2021/)."""
  return hear_task_config("dcase2016_task2-hear2021-full", arg)
