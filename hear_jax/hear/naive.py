"""hear_jax's `naive` model as a HEAR 2021 API module (see `exported`).

The same embeddings as `hearbaseline.naive` up to float32 rounding (the same
projection matrix, `torch.manual_seed(0)`'s; `load_model(seed=s)` takes
`torch.manual_seed(s)`'s).

  hear-validator hear_jax.hear.naive

  model = load_model()                           # torch.nn.Module
  emb, t_ms = get_timestamp_embeddings(audio, model)   # torch float32
  scene = get_scene_embeddings(audio, model)
"""

from __future__ import annotations

from hear_jax.hear import exported

load_model, get_timestamp_embeddings, get_scene_embeddings = exported.hear_api(
    "naive")
