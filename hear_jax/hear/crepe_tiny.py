"""hear_jax's `crepe_tiny` model as a HEAR 2021 API module (see `exported`).

  hear-validator hear_jax.hear.crepe_tiny

  model = load_model()                           # torch.nn.Module
  emb, t_ms = get_timestamp_embeddings(audio, model)   # torch float32
  scene = get_scene_embeddings(audio, model)
"""

from __future__ import annotations

from hear_jax.hear import exported

load_model, get_timestamp_embeddings, get_scene_embeddings = exported.hear_api(
    "crepe_tiny")
