"""Embedding models behind the pure-function interface (see `interface`).

  from hear_jax import models
  model = models.load_model("melstats(n_mels=128)")
  models.available_models()  # ['melstats', 'naive', ...]
"""

from hear_jax.models.interface import EmbeddingModel
from hear_jax.models.loading import available_models, load_model

__all__ = ["EmbeddingModel", "available_models", "load_model"]
