"""HEAR 2021 task: FSD50K sound events (clip-level, multilabel).

  python -m hear_jax.main --config=configs/fsd50k.py --workdir=runs/fsd50k
  python -m hear_jax.main --config=configs/fsd50k.py:/path/to/hear2021-fsd50k-v1.0-full-48000.tar.gz --workdir=...

Expects the hearpreprocess output of fsd50k-v1.0-full: its tarball
hear2021-fsd50k-v1.0-full-48000.tar.gz from the HEAR 2021 release
(https://zenodo.org/record/5887964; other rates work too) or the unpacked
fsd50k-v1.0-full/ directory, by default in data/hear2021/. Before use it is
checked against the task's catalogue entry
(hear_jax/data/hear2021_catalogue.py): scene / multilabel, train/valid/test,
clips of any length, 200 labels, metrics mAP, d_prime, aucroc, top1_acc.
Without the data the run stops with one line saying what to download. Prints
the leaderboard row of the configured model (default melstats) under HEAR's
protocol (8 grid points).
"""

from hear_jax.config import hear_task_config


def get_config(arg: str | None = None):
  """`arg`: the task directory or tarball (default: under data/hear2021/)."""
  return hear_task_config("fsd50k-v1.0-full", arg)
