"""HEAR 2021 task: NSynth pitch (MIDI 21-108).

  python -m hear_jax.main --config=configs/nsynth.py --workdir=runs/nsynth
  python -m hear_jax.main --config=configs/nsynth.py:/path/to/hear2021-nsynth_pitch-v2.2.3-5h-48000.tar.gz --workdir=...

Expects the hearpreprocess output of nsynth_pitch-v2.2.3-5h: its tarball
hear2021-nsynth_pitch-v2.2.3-5h-48000.tar.gz from the HEAR 2021 release
(https://zenodo.org/record/5887964; other rates work too) or the unpacked
nsynth_pitch-v2.2.3-5h/ directory, by default in data/hear2021/. Before use it
is checked against the task's catalogue entry
(hear_jax/data/hear2021_catalogue.py): scene / multiclass, train/valid/test, 4
s clips, 88 labels, metrics pitch_acc, chroma_acc. Without the data the run
stops with one line saying what to download. Prints the leaderboard row of the
configured model (default melstats) under HEAR's protocol (8 grid points).
"""

from hear_jax.config import hear_task_config


def get_config(arg: str | None = None):
  """`arg`: the task directory or tarball (default: under data/hear2021/)."""
  return hear_task_config("nsynth_pitch-v2.2.3-5h", arg)
