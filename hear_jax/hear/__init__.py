"""hear_jax's built-in models as HEAR 2021 API modules, one per model.

`hear_jax.hear.<model>` has `load_model`, `get_timestamp_embeddings` and
`get_scene_embeddings` with torch tensors in and out, so the 2021 tools run
on hear_jax models unchanged:

  hear-validator hear_jax.hear.naive
  hear-validator hear_jax.hear.crepe
  python -m heareval.embeddings.runner hear_jax.hear.crepe_tiny --tasks-dir tasks

Modules: naive, melstats, crepe, crepe_tiny (`exported` is the shared
wrapper). Importing any of them imports torch.
"""
