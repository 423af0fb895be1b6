"""Any HEAR 2021 API PyTorch module as an `EmbeddingModel` (host-side).

A model spec `hear:<module>` or `hear:<module>(key=value, ...)` loads a HEAR
module the way hear-eval-kit's embedding runner does: `model_file` is the
weights path (the runner's `--model`, passed as `load_model`'s first
argument); every other key is a keyword option (`--model-options`). Values
are Python literals (quote strings), never evaluated:

  hear:hearbaseline.torchcrepe
  hear:hearbaseline.naive(model_file='/path/naive.pt')
  hear:mypackage.mymodel(model_file='/w/ckpt.pt', hop_ms=25, mode='all')

  model = load_model("hear:hearbaseline.torchcrepe")   # hear_jax.models
  emb, t_ms = model.timestamp_embeddings(model.params, audio)  # jax arrays

The result is not jittable (`jittable=False`): `params` is the torch module,
and the functions run torch on the host (CUDA when available, as the runner
does) under `torch.inference_mode()`, in sub-batches of at most
`batch_samples` samples (hear-eval-kit's batch rule, 0.7 x 120 s at 16 kHz, so
long clips do not exhaust memory). Audio goes to torch and embeddings come
back through DLPack: no copy on CPU for contiguous float32 buffers.

torch is imported on first use, not at import, so listing the built-in models
never pulls it in; compatibility shims (`torch_compat`) are installed before
the HEAR module is imported.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import TYPE_CHECKING, Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from hear_jax.models import interface
from hear_jax.models import torch_compat

if TYPE_CHECKING:
  import torch

# hear-eval-kit 2021.1.3: batch = 0.7 * (120 / seconds) * (16000 / rate)
# clips, i.e. 0.7 * 120 * 16000 samples whatever the rate.
HEAR_BATCH_SAMPLES = int(0.7 * 120 * 16000)
HEAR_FUNCTIONS = ("load_model", "get_timestamp_embeddings", "get_scene_embeddings")


def to_torch(x: np.ndarray | jax.Array) -> torch.Tensor:
  """numpy or JAX array -> torch tensor sharing its buffer (DLPack) when it
  can; a copy otherwise (e.g. a JAX array on an accelerator torch lacks)."""
  import torch
  try:
    return torch.from_dlpack(x)
  except (BufferError, RuntimeError, TypeError):
    return torch.from_numpy(np.array(x))


def to_jax(t: torch.Tensor) -> jax.Array:
  """torch tensor -> JAX array sharing its buffer when layout and device
  allow (contiguous CPU float32 does); a copy otherwise."""
  t = t.detach()
  if t.device.type != "cpu" and jax.default_backend() == "cpu":
    t = t.cpu()
  try:
    return jax.dlpack.from_dlpack(t)
  except (BufferError, RuntimeError, TypeError, ValueError):
    return jnp.asarray(t.cpu().numpy())


def load_hear_model(
    module_name: str,
    model_file: str = "",
    options: Mapping[str, Any] | None = None,
    *,
    batch_samples: int = HEAR_BATCH_SAMPLES,
    device: str | None = None,
) -> interface.EmbeddingModel:
  """Imports a HEAR-API module, loads its model and wraps it.

  Args:
    module_name: importable module with `load_model`, `get_timestamp_embeddings`
      and `get_scene_embeddings` (e.g. "hearbaseline.torchcrepe").
    model_file: weights path given to `load_model` (empty: none, as the
      runner does without `--model`).
    options: keyword options for `load_model`.
    batch_samples: most samples (clips x length) per call into the module.
    device: torch device; default "cuda" when available, else "cpu".
  """
  options = dict(options or {})
  import torch
  where = f"HEAR module {module_name!r}"
  if not (isinstance(batch_samples, int) and batch_samples >= 1):
    raise ValueError(f"{where}: batch_samples must be an int >= 1, got {batch_samples!r}")
  torch_compat.install()
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is not None and module_name.startswith(e.name):
      raise ValueError(f"{where} not found: install it (pip install ...) or add "
                       "it to PYTHONPATH") from None
    raise  # The module exists but one of its own imports is missing.
  missing = [f for f in HEAR_FUNCTIONS if not callable(getattr(module, f, None))]
  if missing:
    raise ValueError(f"{where} lacks the HEAR API function(s) {', '.join(missing)}")
  args = (model_file,) if model_file else ()
  try:
    inspect.signature(module.load_model).bind(*args, **options)
  except TypeError as e:
    raise ValueError(f"{where}: bad options for load_model: {e}") from None
  model = module.load_model(*args, **options)
  if not isinstance(model, torch.nn.Module):
    raise ValueError(f"{where}: load_model returned {type(model).__name__}, "
                     "not a torch.nn.Module")
  sizes = {}
  for field in ("sample_rate", "scene_embedding_size", "timestamp_embedding_size"):
    value = getattr(model, field, None)
    if not isinstance(value, int) or isinstance(value, bool):
      raise ValueError(f"{where}: model.{field} must be an int, got {value!r}")
    sizes[field] = value
  return wrap_module(
      model, name=f"hear:{module_name}",
      get_timestamp_embeddings=module.get_timestamp_embeddings,
      get_scene_embeddings=module.get_scene_embeddings,
      batch_samples=batch_samples, device=device, **sizes)


def wrap_module(
    model: Any, *, name: str, sample_rate: int,
    scene_embedding_size: int, timestamp_embedding_size: int,
    get_timestamp_embeddings: Callable, get_scene_embeddings: Callable,
    batch_samples: int = HEAR_BATCH_SAMPLES, device: str | None = None,
) -> interface.EmbeddingModel:
  """A torch module and two HEAR-API functions, `fn(audio, model)`, as an
  `EmbeddingModel` (`params` is `model`; not jittable). `model` is whatever
  the functions take as their second argument, usually the module.

  The one path by which torch runs behind the interface: `load_hear_model`
  (HEAR module files) and `from_code.from_torch` (modules in memory) both
  end here. A module is moved to `device` (default "cuda" when available,
  else "cpu"), as hear-eval-kit's runner does, and its train/eval mode is
  left as it is (the runner does not call eval() either).
  """
  import torch
  if not (isinstance(batch_samples, int) and batch_samples >= 1):
    raise ValueError(f"{name}: batch_samples must be an int >= 1, got "
                     f"{batch_samples!r}")
  device = device or ("cuda" if torch.cuda.is_available() else "cpu")
  if isinstance(model, torch.nn.Module):
    model.to(device)
  call = functools.partial(_call_in_batches, batch_samples=batch_samples,
                           device=device)
  return interface.EmbeddingModel(
      name=name,
      sample_rate=sample_rate,
      scene_embedding_size=scene_embedding_size,
      timestamp_embedding_size=timestamp_embedding_size,
      params=model,
      timestamp_embeddings=functools.partial(
          timestamp_embeddings, fn=get_timestamp_embeddings, call=call),
      scene_embeddings=functools.partial(
          scene_embeddings, fn=get_scene_embeddings, call=call),
      jittable=False,
  )


def timestamp_embeddings(model: torch.nn.Module, audio, *, fn: Callable,
                         call: Callable) -> tuple[jax.Array, jax.Array]:
  """[B, T] -> (float32 [B, F, D], timestamps_ms float32 [B, F]) via `fn`."""
  emb, timestamps = call(lambda x: fn(x, model), audio, outputs=2)
  return _float32(emb), _float32(timestamps)


def scene_embeddings(model: torch.nn.Module, audio, *, fn: Callable,
                     call: Callable) -> jax.Array:
  """[B, T] -> float32 [B, D] via `fn`."""
  (emb,) = call(lambda x: (fn(x, model),), audio, outputs=1)
  return _float32(emb)


def _float32(x: jax.Array) -> jax.Array:
  # Timestamps are often int64 (hearbaseline.torchcrepe) and some modules
  # return float64; the interface promises float32 for both.
  return x if x.dtype == jnp.float32 else x.astype(jnp.float32)


def _call_in_batches(fn: Callable, audio, *, outputs: int, batch_samples: int,
                     device: str) -> tuple[jax.Array, ...]:
  """Runs `fn` (torch [b, T] -> tuple of torch [b, ...]) over row blocks of
  `audio` of at most `batch_samples` samples; outputs come back as JAX."""
  import torch
  if getattr(audio, "ndim", None) != 2:
    raise ValueError(f"HEAR bridge: audio must be [n_sounds, n_samples], got "
                     f"shape {getattr(audio, 'shape', None)}")
  if isinstance(audio, np.ndarray) and audio.dtype != np.float32:
    audio = audio.astype(np.float32)
  elif isinstance(audio, jax.Array) and audio.dtype != jnp.float32:
    audio = audio.astype(jnp.float32)
  x = to_torch(audio).to(device)
  rows = max(1, batch_samples // max(1, x.shape[1]))
  with torch.inference_mode():
    parts = [fn(x[i:i + rows]) for i in range(0, x.shape[0], rows)]
    if len(parts) == 1:
      results = parts[0]
    else:  # One copy, unavoidable: the module made one tensor per block.
      results = tuple(torch.cat(group) for group in zip(*parts))
  if not (isinstance(results, (tuple, list)) and len(results) == outputs
          and all(isinstance(r, torch.Tensor) for r in results)):
    raise ValueError(f"HEAR bridge: the module returned {type(results).__name__}"
                     f", expected {outputs} torch tensor(s)")
  return tuple(to_jax(r) for r in results)
