"""HEAR 2021 task: Beehive states (queen / no queen), train hive 1, test hive 3.

  python -m hear_jax.main --config=configs/beehive_states.py --workdir=runs/beehive_states
  python -m hear_jax.main --config=configs/beehive_states.py:/path/to/hear2021-beehive_states_fold0-v2-full-48000.tar.gz --workdir=...

Expects the hearpreprocess output of beehive_states_fold0-v2-full: its tarball
hear2021-beehive_states_fold0-v2-full-48000.tar.gz from the HEAR 2021 release
(https://zenodo.org/record/5887964; other rates work too) or the unpacked
beehive_states_fold0-v2-full/ directory, by default in data/hear2021/. Before
use it is checked against the task's catalogue entry
(hear_jax/data/hear2021_catalogue.py): scene / multiclass, train/valid/test,
600 s clips, 2 labels, metrics aucroc, mAP, d_prime, top1_acc. Without the
data the run stops with one line saying what to download. Prints the
leaderboard row of the configured model (default melstats) under HEAR's
protocol (8 grid points).

The other variant (train on hive 3, test on hive 1) and the 30 s 5h mode:
--config=configs/beehive_states.py:<task dir>, with <task dir> one of
beehive_states_fold1-v2-full, beehive_states_fold0-v2-5h,
beehive_states_fold1-v2-5h, read from data/hear2021/.
"""

from hear_jax.config import hear_task_config


def get_config(arg: str | None = None):
  """`arg`: the task directory or tarball (default: under data/hear2021/)."""
  return hear_task_config(
      "beehive_states_fold0-v2-full", arg,
      variants=("beehive_states_fold1-v2-full", "beehive_states_fold1-v2-5h"))
