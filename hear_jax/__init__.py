"""hear_jax: HEAR 2021 evaluation of audio representations in JAX.

  import hear_jax
  from hear_jax.models import load_model
  results = hear_jax.evaluate(load_model("melstats"), ["demo/pitch/tiny"])
  evaluator = hear_jax.Evaluator(["demo/pitch/tiny"], probe="fast")
  scalars = evaluator.run(model, step=1000)   # {"demo_pitch/pitch_acc": ...}

`evaluate`, `Evaluator`, `Results` and `TaskResult` are imported on first
use, so `import hear_jax` stays fast (no JAX, TFDS or torch import).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first access).
_LAZY = {
    "evaluate": "hear_jax.evaluation",
    "Evaluator": "hear_jax.evaluator",
    "Results": "hear_jax.evaluation_results",
    "TaskResult": "hear_jax.evaluation_results",
    "LayerScore": "hear_jax.evaluation_results",
}

__all__ = ["Evaluator", "LayerScore", "Results", "TaskResult", "evaluate"]


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
  raise AttributeError(f"module 'hear_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted([*globals(), *_LAZY])
