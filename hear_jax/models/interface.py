"""The embedding-model interface: metadata plus pure functions.

An `EmbeddingModel` is to audio embeddings what `optax.GradientTransformation`
is to optimisers: an immutable bundle of data (`params`, sizes, rate) and pure
functions of `(params, audio)`. It has the meaning of the HEAR 2021 common API:

  emb, t_ms = model.timestamp_embeddings(model.params, audio)  # audio [B, T]
  # emb: float32 [B, F, timestamp_embedding_size]; t_ms: [B, F] frame centres (ms)
  scene = model.scene_embeddings(model.params, audio)         # [B, scene_embedding_size]

`audio` is float32 mono in [-1, 1] at `model.sample_rate`, all clips of a call
the same length. JAX models are jittable (`jittable=True`); a model that runs
on the host (e.g. a bridged torch module) says `jittable=False`.

A model with several layers (`layer_names` not empty) returns every layer
at once, with a leading layer axis: timestamp embeddings [L, B, F, D] (one
t_ms [B, F] for all) and scene embeddings [L, B, D], layer i named
`layer_names[i]`; every layer has the declared size. Evaluation scores
each layer (`hear_jax.evaluate`, `hear_jax.Evaluator`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

Params = Any
TimestampFn = Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
SceneFn = Callable[[Params, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class EmbeddingModel:
  """An audio embedding model with the HEAR 2021 API's meaning."""

  name: str
  sample_rate: int
  scene_embedding_size: int
  timestamp_embedding_size: int
  params: Params
  timestamp_embeddings: TimestampFn
  scene_embeddings: SceneFn
  jittable: bool = True
  layer_names: tuple[str, ...] = ()  # () : one layer, no layer axis
