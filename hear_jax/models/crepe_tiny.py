"""CREPE's tiny model (256-d embeddings): `crepe.create(capacity="tiny")`.

A module of its own so that "crepe_tiny" is a built-in model spec:

  model = load_model("crepe_tiny")     # options as for "crepe", but no capacity
"""

from __future__ import annotations

from hear_jax.models import crepe
from hear_jax.models import interface


def create(
    weights: str = "",
    timestamp_hop_ms: float = crepe.TIMESTAMP_HOP_MS,
    scene_hop_ms: float = crepe.SCENE_HOP_MS,
    conv: str = "fft",
    frames_per_batch: int = 32,
) -> interface.EmbeddingModel:
  """`crepe.create(capacity="tiny", ...)`; see there for the arguments."""
  return crepe.create("tiny", weights, timestamp_hop_ms, scene_hop_ms, conv,
                      frames_per_batch)
