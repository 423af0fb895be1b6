"""HEAR 2021 task: Speech Commands v2: 10 words, _silence_, _unknown_.

  python -m hear_jax.main --config=configs/speech_commands_full.py --workdir=runs/speech_commands_full
  python -m hear_jax.main --config=configs/speech_commands_full.py:/path/to/hear2021-speech_commands-v0.0.2-full-48000.tar.gz --workdir=...

Expects the hearpreprocess output of speech_commands-v0.0.2-full: its tarball
hear2021-speech_commands-v0.0.2-full-48000.tar.gz from the HEAR 2021 release
(https://zenodo.org/record/5887964; other rates work too) or the unpacked
speech_commands-v0.0.2-full/ directory, by default in data/hear2021/. Before
use it is checked against the task's catalogue entry
(hear_jax/data/hear2021_catalogue.py): scene / multiclass, train/valid/test, 1
s clips, 12 labels, metrics top1_acc. Without the data the run stops with one
line saying what to download. Prints the leaderboard row of the configured
model (default melstats) under HEAR's protocol (8 grid points).
"""

from hear_jax.config import hear_task_config


def get_config(arg: str | None = None):
  """`arg`: the task directory or tarball (default: under data/hear2021/)."""
  return hear_task_config("speech_commands-v0.0.2-full", arg)
