"""HEAR 2021 task: LibriCount speaker count (0-10).

  python -m hear_jax.main --config=configs/libricount.py --workdir=runs/libricount
  python -m hear_jax.main --config=configs/libricount.py:/path/to/hear2021-libricount-v1.0.0-hear2021-full-48000.tar.gz --workdir=...

Expects the hearpreprocess output of libricount-v1.0.0-hear2021-full: its
tarball hear2021-libricount-v1.0.0-hear2021-full-48000.tar.gz from the HEAR
2021 release (https://zenodo.org/record/5887964; other rates work too) or the
unpacked libricount-v1.0.0-hear2021-full/ directory, by default in
data/hear2021/. Before use it is checked against the task's catalogue entry
(hear_jax/data/hear2021_catalogue.py): scene / multiclass, 5 folds
(new_split_kfold; the score is the mean ± std over folds), 5 s clips, 11
labels, metrics top1_acc, mAP, d_prime, aucroc. Without the data the run stops
with one line saying what to download. Prints the leaderboard row of the
configured model (default melstats) under HEAR's protocol (8 grid points).
"""

from hear_jax.config import hear_task_config


def get_config(arg: str | None = None):
  """`arg`: the task directory or tarball (default: under data/hear2021/)."""
  return hear_task_config("libricount-v1.0.0-hear2021-full", arg)
