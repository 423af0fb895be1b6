"""HEAR 2021 task: GTZAN music genre.

  python -m hear_jax.main --config=configs/gtzan_genre.py --workdir=runs/gtzan_genre
  python -m hear_jax.main --config=configs/gtzan_genre.py:/path/to/hear2021-tfds_gtzan-1.0.0-full-48000.tar.gz --workdir=...

Expects the hearpreprocess output of tfds_gtzan-1.0.0-full: its tarball
hear2021-tfds_gtzan-1.0.0-full-48000.tar.gz from the HEAR 2021 release
(https://zenodo.org/record/5887964; other rates work too) or the unpacked
tfds_gtzan-1.0.0-full/ directory, by default in data/hear2021/. Before use it
is checked against the task's catalogue entry
(hear_jax/data/hear2021_catalogue.py): scene / multiclass, 10 folds
(new_split_kfold; the score is the mean ± std over folds), 30 s clips, 10
labels, metrics top1_acc, mAP, d_prime, aucroc. Without the data the run stops
with one line saying what to download. Prints the leaderboard row of the
configured model (default melstats) under HEAR's protocol (8 grid points).
"""

from hear_jax.config import hear_task_config


def get_config(arg: str | None = None):
  """`arg`: the task directory or tarball (default: under data/hear2021/)."""
  return hear_task_config("tfds_gtzan-1.0.0-full", arg)
