"""Several layers of a torch module at once, for `from_torch(layers=...)`.

A module that can return its hidden states (a list or tuple of [B, F, D]
tensors, a dict of them, or one [L, B, F, D] tensor) becomes a model with
several layers: `layers` picks which (indices or keys, in the order given),
the bridge runs the module once per batch and stacks the picked states.

  model = from_torch(module, sample_rate=16000, layers=[4, 8, 12],
                     timestamp_embeddings=lambda audio, m: m.hidden(audio))
  # fn(audio, module) -> (hidden states, t_ms [B, F]); model.layer_names is
  # ("4", "8", "12") and its embeddings are [3, B, F, D].

Inside the bridge the stacked states are batch-first ([b, L, F, D], so the
bridge's batching concatenates rows), and the model's functions move the
layer axis to the front, as `EmbeddingModel` has it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

LayerIds = Sequence[int | str]


def check_layers(where: str, layers: Any) -> tuple[int | str, ...]:
  """`layers` as a non-empty tuple of distinct ints or strings."""
  if isinstance(layers, (str, int)) or not layers:
    raise ValueError(f"{where}: layers must be a non-empty list of layer "
                     f"indices or names, got {layers!r}")
  layers = tuple(layers)
  if not all(isinstance(l, (int, str)) and not isinstance(l, bool)
             for l in layers) or len(set(layers)) != len(layers):
    raise ValueError(f"{where}: layers must be distinct ints or strings, "
                     f"got {list(layers)}")
  return layers


def layer_names(layers: LayerIds) -> tuple[str, ...]:
  return tuple(str(l) for l in layers)


def _pick(states: Any, layers: LayerIds) -> list[Any]:
  """The chosen hidden states of a sequence, dict or [L, ...] tensor."""
  picked = []
  for layer in layers:
    try:
      picked.append(states[layer])
    except (IndexError, KeyError, TypeError):
      count = (list(states) if isinstance(states, dict)
               else f"{len(states)} layers")
      raise ValueError(f"from_torch: layer {layer!r} is not among the "
                       f"module's hidden states ({count})") from None
  return picked


def hidden_timestamp_states(audio: Any, module: Any, *, fn: Callable,
                            layers: LayerIds) -> tuple[Any, Any]:
  """fn(audio, module) -> (hidden states, t_ms) as (torch [b, L, F, D],
  t_ms)."""
  import torch  # pylint: disable=g-import-not-at-top
  states, t_ms = fn(audio, module)
  return torch.stack(_pick(states, layers), dim=1), t_ms


def hidden_scene_states(audio: Any, module: Any, *, fn: Callable,
                        layers: LayerIds) -> Any:
  """fn(audio, module) -> hidden states [.., B, D] as torch [b, L, D]."""
  import torch  # pylint: disable=g-import-not-at-top
  return torch.stack(_pick(fn(audio, module), layers), dim=1)


def mean_over_frames(audio: Any, module: Any, *, fn: Callable) -> Any:
  """The scene embedding of stacked states: [b, L, F, D] -> [b, L, D]."""
  emb, _ = fn(audio, module)
  return emb.mean(dim=2)


def layers_first_timestamps(params: Any, audio: Any, *, fn: Callable
                            ) -> tuple[jax.Array, jax.Array]:
  emb, t_ms = fn(params, audio)
  return jnp.moveaxis(emb, 1, 0), t_ms


def layers_first_scene(params: Any, audio: Any, *, fn: Callable) -> jax.Array:
  return jnp.moveaxis(fn(params, audio), 1, 0)
