"""The offline demo: three generated tasks, melstats and naive, one leaderboard.

  python -m hear_jax.main --config=configs/demo.py --workdir=runs/demo
  (or `make demo`)

Generates the embedded tasks (pitch, spoken commands, sound events; see
tasks/demo/*/README.md), embeds them with both models, fits HEAR's downstream
MLP on each and prints a leaderboard like

  | model | task | metric | score |
  | melstats | demo_pitch | pitch_acc | 0.5... |
  ...

written to runs/demo/leaderboard.{csv,md}. A second run reuses the data and
embeddings. The demo trains one grid point for at most 60 epochs so it
finishes in minutes on 2 CPU cores; everything else follows HEAR's protocol.

  python -m hear_jax.main --config=configs/demo.py:tiny --workdir=/tmp/t

is the same pipeline on a few clips per class (seconds; used by the tests).
"""

from hear_jax.config import default_config


def get_config(size: str = "demo"):
  """`size` is the tasks' builder config: "demo", or "tiny" for tests."""
  config = default_config()
  config.model = "melstats,naive"
  config.tasks = [f"demo/{name}/{size}"
                  for name in ("pitch", "spoken_commands", "sound_events")]
  config.workdir = "runs/demo" if size == "demo" else f"runs/demo_{size}"
  config.probe.grid_points = 1
  config.probe.max_epochs = 60 if size == "demo" else 6
  return config
