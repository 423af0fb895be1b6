"""Any hear_jax model as a HEAR 2021 API module (torch tensors in and out).

`hear_api(name)` gives the three functions of the HEAR common API for the
built-in model `hear_jax.models.<name>`; each `hear_jax.hear.<name>` module
is just those three functions, so hear-eval-kit and hear-validator can use it:

  hear-validator hear_jax.hear.crepe
  python -m heareval.embeddings.runner hear_jax.hear.crepe --tasks-dir tasks

  from hear_jax.hear import crepe
  model = crepe.load_model()                  # a torch.nn.Module
  emb, t_ms = crepe.get_timestamp_embeddings(audio, model)  # torch float32

`load_model(model_file_path="", **options)`: options are the model's
`create` arguments (hear-eval-kit's `--model-options`); a weights path goes to
the model's `weights` argument (models without one take none). Audio reaches
JAX through DLPack (no copy for contiguous float32 CPU tensors), the model runs
jitted, and embeddings return as torch tensors on the input's device.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

import jax
import torch

from hear_jax.models import interface
from hear_jax.models import torch_bridge

_MODELS = "hear_jax.models"


class ExportedModel(torch.nn.Module):
  """A hear_jax `EmbeddingModel` with the HEAR API's attributes.

  It holds no torch parameters: `.to(device)` is a no-op, and the JAX
  functions run where JAX runs; outputs follow the input tensor's device.
  """

  def __init__(self, model: interface.EmbeddingModel):
    super().__init__()
    self.embedding_model = model
    self.sample_rate = model.sample_rate
    self.scene_embedding_size = model.scene_embedding_size
    self.timestamp_embedding_size = model.timestamp_embedding_size
    jit = jax.jit if model.jittable else (lambda fn: fn)
    self.timestamp_fn = jit(model.timestamp_embeddings)
    self.scene_fn = jit(model.scene_embeddings)

  def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return get_timestamp_embeddings(audio, self)

  def extra_repr(self) -> str:
    return f"hear_jax model {self.embedding_model.name!r}"


def load_model(name: str, model_file_path: str = "", **options: Any) -> ExportedModel:
  """Builds `hear_jax.models.<name>` and wraps it as a torch module."""
  create = importlib.import_module(f"{_MODELS}.{name}").create
  if model_file_path:
    if "weights" not in inspect.signature(create).parameters:
      raise ValueError(f"hear_jax.hear.{name}: this model takes no weights file, "
                       f"got {model_file_path!r}")
    options["weights"] = model_file_path
  try:
    inspect.signature(create).bind(**options)
  except TypeError as e:
    raise ValueError(f"hear_jax.hear.{name}: bad options: {e}") from None
  return ExportedModel(create(**options))


def get_timestamp_embeddings(
    audio: torch.Tensor, model: ExportedModel
) -> tuple[torch.Tensor, torch.Tensor]:
  """[n_sounds, n_samples] -> (float32 [n, F, D], timestamps_ms float32 [n, F])."""
  x = _audio_to_jax(audio, model)
  emb, timestamps = model.timestamp_fn(model.embedding_model.params, x)
  return _to_device(emb, audio), _to_device(timestamps, audio)


def get_scene_embeddings(audio: torch.Tensor, model: ExportedModel) -> torch.Tensor:
  """[n_sounds, n_samples] -> float32 [n_sounds, scene_embedding_size]."""
  x = _audio_to_jax(audio, model)
  return _to_device(model.scene_fn(model.embedding_model.params, x), audio)


def hear_api(name: str) -> tuple[Callable, Callable, Callable]:
  """(load_model, get_timestamp_embeddings, get_scene_embeddings) for the
  built-in model `name`, to bind at the top of a `hear_jax.hear.<name>`."""

  def load(model_file_path: str = "", **options: Any) -> ExportedModel:
    return load_model(name, model_file_path, **options)

  load.__name__ = load.__qualname__ = "load_model"
  load.__doc__ = (f"hear_jax's {name!r} model as a torch.nn.Module (HEAR API); "
                  f"options are `hear_jax.models.{name}.create`'s arguments.")
  return load, get_timestamp_embeddings, get_scene_embeddings


def _audio_to_jax(audio: torch.Tensor, model: ExportedModel) -> jax.Array:
  if not isinstance(model, ExportedModel):
    raise ValueError(f"model must be an ExportedModel from load_model(), got "
                     f"{type(model).__name__}")
  if not isinstance(audio, torch.Tensor) or audio.ndim != 2:
    raise ValueError("audio must be a torch tensor [n_sounds, n_samples], got "
                     f"{getattr(audio, 'shape', type(audio).__name__)}")
  if audio.dtype != torch.float32:
    audio = audio.float()
  return torch_bridge.to_jax(audio.contiguous())


def _to_device(x: jax.Array, like: torch.Tensor) -> torch.Tensor:
  return torch_bridge.to_torch(x).to(like.device)
