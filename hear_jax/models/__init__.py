"""Embedding models behind the pure-function interface (see `interface`).

  from hear_jax import models
  model = models.load_model("melstats(n_mels=128)")
  models.available_models()  # ['melstats', 'naive', ...]

Models from research code, with no module file (`from_code`):

  model = models.from_functions(encoder.apply, variables, sample_rate=16000)
  model = models.from_torch(torch_module, sample_rate=16000)
"""

from hear_jax.models.from_code import from_functions, from_torch
from hear_jax.models.interface import EmbeddingModel
from hear_jax.models.loading import available_models, load_model

__all__ = ["EmbeddingModel", "available_models", "from_functions",
           "from_torch", "load_model"]
