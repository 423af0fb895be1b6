"""All 19 HEAR 2021 tasks, one leaderboard.

  python -m hear_jax.main --config=configs/hear2021.py --workdir=runs/hear2021
  python -m hear_jax.main --config=configs/hear2021.py:/data/hear2021 --workdir=...
  python -m hear_jax.main --config=configs/hear2021.py --config.model=naive ...

Expects the hearpreprocess output of every task in data/hear2021/ (or the
directory given after the colon): each task's tarball from the HEAR 2021
release (https://zenodo.org/record/5887964), e.g.
hear2021-esc50-v2.0.0-full-48000.tar.gz, or the unpacked task directory. The
tasks, in the order of the HEAR task table, with the file each one reads
(the per-task configs run them one at a time):

   1 dcase2016_task2-hear2021-full       configs/dcase2016_task2.py
   2 nsynth_pitch-v2.2.3-5h              configs/nsynth.py
   3 nsynth_pitch-v2.2.3-50h             configs/nsynth_50h.py
   4 speech_commands-v0.0.2-5h           configs/speech_commands.py
   5 speech_commands-v0.0.2-full         configs/speech_commands_full.py
   6 beehive_states_fold0-v2-full        configs/beehive_states.py
   7 beijing_opera-v1.0-hear2021-full    configs/beijing_opera.py
   8 tfds_crema_d-1.0.0-full             configs/crema_d.py
   9 esc50-v2.0.0-full                   configs/esc50.py
  10 fsd50k-v1.0-full                    configs/fsd50k.py
  11 gunshot_triangulation-v1.0-full     configs/gunshot_triangulation.py
  12 tfds_gtzan-1.0.0-full               configs/gtzan_genre.py
  13 tfds_gtzan_music_speech-1.0.0-full  configs/gtzan_music_speech.py
  14 libricount-v1.0.0-hear2021-full     configs/libricount.py
  15 maestro-v3.0.0-5h                   configs/maestro.py
  16 mridangam_stroke-v1.5-full          configs/mridangam_stroke.py
  17 mridangam_tonic-v1.5-full           configs/mridangam_tonic.py
  18 vocal_imitation-v1.1.3-full         configs/vocal_imitation.py
  19 vox_lingua_top10-hear2021-full      configs/vox_lingua_top10.py

Each task is checked against its catalogue entry before use; a missing task
stops the run with one line saying what to download. Prints the leaderboard
of the configured model (default melstats) on all 19 tasks under HEAR's
protocol (8 grid points; k-fold tasks report the mean ± std over folds).
"""

from hear_jax.config import HEAR_DATA_DIR
from hear_jax.config import default_config
from hear_jax.config import hear_data_path
from hear_jax.data.hear2021_catalogue import HEAR2021_TASKS


def get_config(data_dir: str = HEAR_DATA_DIR):
  """`data_dir`: where the 19 tasks' directories or tarballs are."""
  config = default_config()
  config.model = "melstats"
  config.tasks = [f"hear2021:{task}:{hear_data_path(task, data_dir)}"
                  for task in HEAR2021_TASKS]
  config.workdir = "runs/hear2021"
  return config
