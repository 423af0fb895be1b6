#!/usr/bin/env bash
# Builds a virtualenv with the original HEAR 2021 evaluation kit (heareval
# 2021.1.3) and the HEAR baselines, for parity checks against hear_jax.
#
#   benchmarks/make_heareval_venv.sh /work/heareval-venv
#
# Keep it OUTSIDE the repository. The upstream pins (numpy==1.19.2, numba,
# TensorFlow) cannot install on Python 3.11, so the kit is installed with
# --no-deps and its dependencies by hand (docs: environment.md §6):
#   * torch==2.13.0 (the CPU build; an unpinned torch pulls CUDA wheels),
#   * pytorch-lightning==1.6.5.post0 (2.x lacks `gpus=`, 1.9.5 breaks event
#     tasks with KeyError in epoch_best_postprocessing),
#   * setuptools<81 (dcase_util and sed_eval import pkg_resources),
#   * a TensorFlow stub in <venv>/tfstub: heareval.embeddings.runner imports
#     TF at top level; torch-only models never use it,
#   * torchcrepe 0.0.24 (for hearbaseline.torchcrepe) with a torchaudio stub
#     in <venv>/tfstub.
# Run the kit with PYTHONPATH=<venv>/tfstub (embeddings runner) and
# TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (predictions runner: Lightning 1.6
# checkpoints are not weights-only); benchmarks/heareval_roundtrip.sh does.
set -euo pipefail

VENV="${1:?usage: $0 <venv directory>}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --disable-pip-version-check -q)
"${PIP[@]}" -U pip
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" --no-deps heareval==2021.1.3 hearbaseline==2021.1.1
"${PIP[@]}" --no-deps --ignore-requires-python hearvalidator==2021.0.6
"${PIP[@]}" click dcase-util intervaltree more-itertools pandas pynvml \
  python-slugify sed-eval soundfile torchinfo tqdm scikit-learn librosa \
  "setuptools<81" torch==2.13.0
"${PIP[@]}" "pytorch-lightning==1.6.5.post0" torch==2.13.0
# hearbaseline.torchcrepe (benchmarks/heareval_pipeline_parity.py's crepe
# row); torchaudio has no release for torch 2.13, so it gets a stub below.
"${PIP[@]}" --no-deps torchcrepe==0.0.24 resampy==0.4.3

# TensorFlow stub: enough for torch-only HEAR modules (isinstance(model,
# tf.Module) is then always false, which is right).
mkdir -p "$VENV/tfstub/tensorflow"
cat > "$VENV/tfstub/tensorflow/__init__.py" <<'EOF'
"""Stand-in for TensorFlow: heareval imports it; torch models never use it."""


class Module:
  pass


class test:  # noqa: N801 (mirrors tf.test)
  @staticmethod
  def is_gpu_available(*args, **kwargs):
    return False


def convert_to_tensor(*args, **kwargs):
  raise RuntimeError("TensorFlow is stubbed out in this environment")
EOF

# torchaudio stub: torchcrepe imports torchaudio for torchcrepe.load.audio
# only, which hearbaseline.torchcrepe never calls.
mkdir -p "$VENV/tfstub/torchaudio"
cat > "$VENV/tfstub/torchaudio/__init__.py" <<'EOF'
"""Stand-in for torchaudio (no release for torch 2.13): torchcrepe imports it
for torchcrepe.load.audio only, which hearbaseline.torchcrepe never calls."""


def load(*args, **kwargs):
  raise RuntimeError("torchaudio is stubbed out in this environment")
EOF

# hearbaseline.naive calls librosa.filters.mel positionally, which librosa
# >= 0.10 refuses; this module passes the rate as a keyword and re-exports
# the baseline's HEAR API.
cat > "$VENV/tfstub/naive_librosa_shim.py" <<'EOF'
"""hearbaseline.naive with librosa >= 0.10 (keyword-only mel filters)."""
import librosa
import librosa.filters

_mel = librosa.filters.mel


def _mel_keywords(*args, **kwargs):
  if args:
    kwargs["sr"], args = args[0], args[1:]
  if args:
    kwargs["n_fft"], args = args[0], args[1:]
  if args:
    kwargs["n_mels"], args = args[0], args[1:]
  return _mel(*args, **kwargs)


librosa.filters.mel = _mel_keywords
from hearbaseline.naive import *  # noqa: E402,F401,F403
EOF

"$VENV/bin/python" -c "import heareval, pytorch_lightning, torch; \
print('heareval venv ready:', pytorch_lightning.__version__, torch.__version__)"
