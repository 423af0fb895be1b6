"""HEAR 2021 task: MAESTRO piano note onsets.

  python -m hear_jax.main --config=configs/maestro.py --workdir=runs/maestro
  python -m hear_jax.main --config=configs/maestro.py:/path/to/hear2021-maestro-v3.0.0-5h-48000.tar.gz --workdir=...

Expects the hearpreprocess output of maestro-v3.0.0-5h: its tarball
hear2021-maestro-v3.0.0-5h-48000.tar.gz from the HEAR 2021 release
(https://zenodo.org/record/5887964; other rates work too) or the unpacked
maestro-v3.0.0-5h/ directory, by default in data/hear2021/. Before use it is
checked against the task's catalogue entry
(hear_jax/data/hear2021_catalogue.py): event / multilabel, 5 folds
(new_split_kfold; the score is the mean ± std over folds), 120 s clips, 88
labels, metrics event_onset_50ms_fms, event_onset_offset_50ms_20perc_fms.
Without the data the run stops with one line saying what to download. Prints
the leaderboard row of the configured model (default melstats) under HEAR's
protocol (8 grid points).
"""

from hear_jax.config import hear_task_config


def get_config(arg: str | None = None):
  """`arg`: the task directory or tarball (default: under data/hear2021/)."""
  return hear_task_config("maestro-v3.0.0-5h", arg)
