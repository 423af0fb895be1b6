"""Any task in hearpreprocess's format, or embeddings in hear-eval-kit's.

  python -m hear_jax.main --config=configs/hear.py:<path> --workdir=runs/hear
  python -m hear_jax.main --config=configs/hear.py:../shared/fixtures/hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz --workdir=runs/spoken_digit
  python -m hear_jax.main --config=configs/hear.py:embeddings/hearbaseline.naive/spoken_digit-1.0.9-small --workdir=...

`<path>` is one of (told apart by its files):

  * a hearpreprocess task directory (task_metadata.json, labelvocabulary.csv,
    <split>.json, <rate>/<split>/*.wav), its tarball, or a folder of its
    tarballs at several rates (…-16000.tar.gz, …-44100.tar.gz), for any
    task, known to HEAR 2021 or not: scene or event, train/valid/test or
    k-fold, any rates. The configured model (default melstats;
    --config.model=naive,...) embeds it, each model from the audio at its own
    sample rate (as hear-eval-kit; a missing rate is resampled from the
    lowest one above it, else the highest, with a warning), HEAR's heads are
    fitted and scored;
  * a hear-eval-kit embeddings task directory, as written by
    `python -m heareval.embeddings.runner <module>` (embeddings/<module>/<task
    dir>/ with <split>.embeddings.npy and <split>.embedding-dimensions.json):
    no model runs, the heads are fitted on those embeddings and the
    leaderboard's model column is <module>.

Writes <workdir>/<model>/<task_name>/test.predicted-scores.json and
<workdir>/leaderboard.{csv,md}; prints the leaderboard row (k-fold tasks:
the mean ± std over folds). The spoken_digit fixture (5 folds, 100 clips)
takes about a minute on 2 CPU cores with melstats.
--config.export_heareval=True also writes the embeddings under
<workdir>/heareval/<model>/<task dir>/ for heareval.predictions.runner.
"""

from hear_jax.config import default_config
from hear_jax.data import task_specs


def get_config(path: str | None = None):
  """`path`: a task directory, tarball or heareval embeddings directory."""
  if not path:
    raise ValueError("configs/hear.py needs a path: --config=configs/hear.py:"
                     "<task dir, tarball or heareval embeddings dir>")
  config = default_config()
  config.model = "melstats"
  config.tasks = [task_specs.spec_for_path(path)]
  config.workdir = "runs/hear"
  return config
