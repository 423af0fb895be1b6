"""HEAR 2021 task: Vocal imitations: which of 302 reference sounds.

  python -m hear_jax.main --config=configs/vocal_imitation.py --workdir=runs/vocal_imitation
  python -m hear_jax.main --config=configs/vocal_imitation.py:/path/to/hear2021-vocal_imitation-v1.1.3-full-48000.tar.gz --workdir=...

Expects the hearpreprocess output of vocal_imitation-v1.1.3-full: its tarball
hear2021-vocal_imitation-v1.1.3-full-48000.tar.gz from the HEAR 2021 release
(https://zenodo.org/record/5887964; other rates work too) or the unpacked
vocal_imitation-v1.1.3-full/ directory, by default in data/hear2021/. Before
use it is checked against the task's catalogue entry
(hear_jax/data/hear2021_catalogue.py): scene / multiclass, 3 folds
(new_split_kfold; the score is the mean ± std over folds), 11.26 s clips, 302
labels, metrics mAP, d_prime, aucroc, top1_acc. Without the data the run stops
with one line saying what to download. Prints the leaderboard row of the
configured model (default melstats) under HEAR's protocol (8 grid points).
"""

from hear_jax.config import hear_task_config


def get_config(arg: str | None = None):
  """`arg`: the task directory or tarball (default: under data/hear2021/)."""
  return hear_task_config("vocal_imitation-v1.1.3-full", arg)
