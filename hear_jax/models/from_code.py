"""Models from plain code: JAX functions or a torch module in memory.

`load_model` builds models from specs (a module of this package, or a HEAR
module file). Research code has its model in hand instead: a Flax module and
its variables, or a `torch.nn.Module` mid-training. These two functions make
an `EmbeddingModel` of it, with no module file and no config:

  encoder = MyEncoder()                        # a flax.linen.Module
  variables = encoder.init(key, jnp.zeros((1, 16000)))
  # encoder.apply(variables, audio) -> (emb [B, F, D], t_ms [B, F])
  model = from_functions(encoder.apply, variables, sample_rate=16000,
                         name="my_encoder")
  model.timestamp_embedding_size               # inferred (jax.eval_shape)
  scene = model.scene_embeddings(model.params, audio)  # mean over frames

  model = from_torch(torch_module, sample_rate=16000)  # HEAR-like methods
  model = from_torch(torch_module, timestamp_embeddings=get_ts,
                     scene_embeddings=get_scene)      # fn(audio, module)

A later checkpoint of the same JAX model is
`dataclasses.replace(model, params=new_variables)`: the functions and sizes
stay. Results and a workdir's embedding cache know a model by `name` and
its params (for torch: the module's repr), not by its code: give a changed
function a new name.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hear_jax.models import interface
from hear_jax.models import torch_bridge  # imports torch only when called
from hear_jax.models import torch_layers

# Length of the example audio the sizes are inferred from. jax.eval_shape
# runs nothing, so the length costs nothing there; torch modules without
# declared sizes run once on this much silence.
EXAMPLE_SECONDS = 2.0
# Rows of the example batch: two, so a batch axis that a function drops or
# mixes up with another axis shows.
_EXAMPLE_ROWS = 2


def mean_scene_embeddings(params: interface.Params, audio: jax.Array, *,
                          timestamp_embeddings: interface.TimestampFn
                          ) -> jax.Array:
  """The scene embedding HEAR suggests: timestamp embeddings [B, F, D]
  averaged over frames -> [B, D] (a layered model's [L, B, F, D] ->
  [L, B, D])."""
  emb, _ = timestamp_embeddings(params, audio)
  return jnp.mean(emb, axis=-2)


def _stacked_layers(params: interface.Params, audio: jax.Array, *,
                    fn: Callable, names: tuple[str, ...]) -> Any:
  """A function's dict of named layers as one [L, ...] array, in `names`
  order (timestamp functions: the embeddings of (emb, t_ms))."""
  out = fn(params, audio)
  if isinstance(out, tuple):
    emb, t_ms = out
    return jnp.stack([emb[n] for n in names]), t_ms
  return jnp.stack([out[n] for n in names])


def _layer_names(emb: Any, layer_axis: bool) -> tuple[str, ...]:
  """Names of a layered output: a dict's keys (in JAX's pytree order,
  sorted), or "0".."L-1" for a leading layer axis; () for one layer."""
  if isinstance(emb, dict):
    return tuple(str(k) for k in emb)
  return tuple(str(i) for i in range(emb.shape[0])) if layer_axis else ()


def _float32_timestamp_outputs(params: interface.Params, audio: jax.Array, *,
                               fn: interface.TimestampFn
                               ) -> tuple[jax.Array, jax.Array]:
  emb, t_ms = fn(params, audio)
  return emb.astype(jnp.float32), t_ms.astype(jnp.float32)


def _float32_scene_outputs(params: interface.Params, audio: jax.Array, *,
                           fn: interface.SceneFn) -> jax.Array:
  return fn(params, audio).astype(jnp.float32)


def _check_sample_rate(where: str, sample_rate: Any) -> None:
  if (not isinstance(sample_rate, int) or isinstance(sample_rate, bool)
      or sample_rate < 1):
    raise ValueError(f"{where}: sample_rate must be an int >= 1 (Hz), got "
                     f"{sample_rate!r}")


def _shape_text(out: Any) -> str:
  shapes = jax.tree.map(lambda s: f"{s.dtype}{list(s.shape)}", out)
  return str(shapes)


def from_functions(
    timestamp_embeddings: interface.TimestampFn,
    params: interface.Params,
    *,
    sample_rate: int,
    scene_embeddings: interface.SceneFn | None = None,
    name: str = "from_functions",
) -> interface.EmbeddingModel:
  """An `EmbeddingModel` from JAX functions and their params.

    model = from_functions(encoder.apply, variables, sample_rate=16000,
                           name="my_encoder")
    emb, t_ms = model.timestamp_embeddings(model.params, audio)  # [B, T]

  The embedding sizes are inferred with `jax.eval_shape` on a [2, T] example
  (`EXAMPLE_SECONDS` of audio), so nothing runs and nothing is compiled.
  `params` is kept as given: arrays sharded over a training mesh stay where
  they are (no copy, no device_put).

  Args:
    timestamp_embeddings: `fn(params, audio [B, T]) -> (emb [B, F, D],
      t_ms [B, F])`, frame centres in ms, jittable (e.g. a Flax module's
      `apply`). Outputs that are not float32 (bf16 embeddings, integer
      timestamps) are cast to float32, as the interface promises. Several
      layers at once: emb [L, B, F, D] (layers "0".."L-1") or a dict of
      named [B, F, D] layers (stacked in JAX's key order, sorted); every
      layer is then scored (`hear_jax.evaluate`, `hear_jax.Evaluator`).
    params: the functions' first argument (e.g. a Flax module's variables).
    sample_rate: the audio rate the functions expect, in Hz.
    scene_embeddings: `fn(params, audio [B, T]) -> emb [B, D]`; default the
      timestamp embeddings' mean over frames (`mean_scene_embeddings`).
    name: the model's name in results and in a workdir (where embeddings are
      cached by name and params, not by code).

  Returns:
    A jittable `EmbeddingModel`.
  """
  where = f"from_functions({name!r})"
  _check_sample_rate(where, sample_rate)
  for field, fn in (("timestamp_embeddings", timestamp_embeddings),
                    ("scene_embeddings", scene_embeddings)):
    if fn is not None and not callable(fn):
      raise ValueError(f"{where}: {field} must be a function, got "
                       f"{type(fn).__name__}")
  audio = jax.ShapeDtypeStruct(
      (_EXAMPLE_ROWS, int(EXAMPLE_SECONDS * sample_rate)), jnp.float32)
  out = jax.eval_shape(timestamp_embeddings, params, audio)
  layer_names = ()
  if (isinstance(out, (tuple, list)) and len(out) == 2
      and isinstance(out[0], dict) and out[0]):
    # Named layers: stacked into one leading layer axis, in key order.
    layer_names = _layer_names(out[0], True)
    if len({o.shape for o in out[0].values()}) != 1:
      raise ValueError(f"{where}: the layers {list(layer_names)} must all "
                       f"have one shape, got {_shape_text(out[0])}")
    timestamp_embeddings = functools.partial(
        _stacked_layers, fn=timestamp_embeddings, names=tuple(out[0]))
    out = jax.eval_shape(timestamp_embeddings, params, audio)
  elif (isinstance(out, (tuple, list)) and len(out) == 2
        and isinstance(out[0], jax.ShapeDtypeStruct) and out[0].ndim == 4):
    layer_names = _layer_names(out[0], True)
  lead = 1 if layer_names else 0
  if not (isinstance(out, (tuple, list)) and len(out) == 2
          and all(isinstance(o, jax.ShapeDtypeStruct) for o in out)
          and out[0].ndim == 3 + lead
          and out[0].shape[lead:lead + 2] == out[1].shape
          and out[0].shape[lead] == _EXAMPLE_ROWS):
    raise ValueError(
        f"{where}: timestamp_embeddings(params, audio {list(audio.shape)}) "
        f"must return (emb [B, F, D], t_ms [B, F]) with B = "
        f"{_EXAMPLE_ROWS} (several layers: emb [L, B, F, D] or a dict of "
        f"[B, F, D]), got {_shape_text(out)}")
  emb, t_ms = out
  if not (jnp.issubdtype(emb.dtype, jnp.floating)
          and (jnp.issubdtype(t_ms.dtype, jnp.floating)
               or jnp.issubdtype(t_ms.dtype, jnp.integer))):
    raise ValueError(f"{where}: timestamp_embeddings returned {emb.dtype} "
                     f"embeddings and {t_ms.dtype} timestamps; need floats")
  if emb.dtype != jnp.float32 or t_ms.dtype != jnp.float32:
    timestamp_embeddings = functools.partial(_float32_timestamp_outputs,
                                             fn=timestamp_embeddings)
  size = int(emb.shape[-1])
  if scene_embeddings is None:
    scene_embeddings = functools.partial(
        mean_scene_embeddings, timestamp_embeddings=timestamp_embeddings)
    scene_size = size
  else:
    scene = jax.eval_shape(scene_embeddings, params, audio)
    if isinstance(scene, dict) and layer_names:
      if _layer_names(scene, True) != layer_names:
        raise ValueError(f"{where}: scene_embeddings gives layers "
                         f"{list(scene)}, timestamp_embeddings "
                         f"{list(layer_names)}")
      scene_embeddings = functools.partial(
          _stacked_layers, fn=scene_embeddings, names=tuple(scene))
      scene = jax.eval_shape(scene_embeddings, params, audio)
    if not (isinstance(scene, jax.ShapeDtypeStruct)
            and scene.ndim == 2 + lead
            and scene.shape[lead] == _EXAMPLE_ROWS
            and scene.shape[:lead] == emb.shape[:lead]
            and jnp.issubdtype(scene.dtype, jnp.floating)):
      raise ValueError(
          f"{where}: scene_embeddings(params, audio {list(audio.shape)}) "
          f"must return float emb [B, D] with B = {_EXAMPLE_ROWS} (several "
          f"layers: [L, B, D], L as the timestamp embeddings'), got "
          f"{_shape_text(scene)}")
    if scene.dtype != jnp.float32:
      scene_embeddings = functools.partial(_float32_scene_outputs,
                                           fn=scene_embeddings)
    scene_size = int(scene.shape[-1])
  return interface.EmbeddingModel(
      name=name, sample_rate=sample_rate, scene_embedding_size=scene_size,
      timestamp_embedding_size=size, params=params,
      timestamp_embeddings=timestamp_embeddings,
      scene_embeddings=scene_embeddings, jittable=True,
      layer_names=layer_names)


# --- torch ---------------------------------------------------------------------


def _method(audio: Any, module: Any, *, method: str) -> Any:
  """`module.<method>(audio)`: a HEAR-like method as a HEAR function."""
  return getattr(module, method)(audio)


def _closure(audio: Any, _: Any, *, fn: Callable[[Any], Any]) -> Any:
  """`fn(audio)`: a callable that holds its own module."""
  return fn(audio)


def _torch_mean_scene(audio: Any, module: Any, *, fn: Callable) -> Any:
  emb, _ = fn(audio, module)
  return emb.mean(dim=1)


def _torch_device(module: Any) -> str | None:
  """Where a module's first parameter or buffer lives (None: it has none)."""
  import torch
  if not isinstance(module, torch.nn.Module):
    return None
  for tensor in (*module.parameters(), *module.buffers()):
    return str(tensor.device)
  return None


def from_torch(
    module: Any,
    *,
    sample_rate: int | None = None,
    timestamp_embeddings: Callable | None = None,
    scene_embeddings: Callable | None = None,
    name: str | None = None,
    batch_samples: int = torch_bridge.HEAR_BATCH_SAMPLES,
    device: str | None = None,
    layers: Sequence[int | str] | None = None,
) -> interface.EmbeddingModel:
  """An `EmbeddingModel` from a `torch.nn.Module` in memory, through the
  HEAR bridge (`torch_bridge.wrap_module`) that `hear:` specs use.

    # A module with HEAR-like attributes and methods: sample_rate,
    # get_timestamp_embeddings(audio) -> (emb, t_ms) and, optionally,
    # get_scene_embeddings(audio) -> emb (default: the frames' mean).
    model = from_torch(module)
    # Any module, with HEAR-API functions fn(audio, module):
    model = from_torch(module, sample_rate=16000,
                       timestamp_embeddings=hear_module.get_timestamp_embeddings,
                       scene_embeddings=hear_module.get_scene_embeddings)
    # Or a pair of callables fn(audio) that hold their own module:
    model = from_torch((embed_frames, embed_clip), sample_rate=16000)
    emb, t_ms = model.timestamp_embeddings(model.params, audio)  # JAX arrays

  The functions run on the host under `torch.inference_mode()` in blocks of
  `batch_samples` samples, and embeddings come back through DLPack, exactly
  as for `load_model("hear:<module>")`. The module's train/eval mode is left
  as it is (hear-eval-kit does not call eval() either): call
  `module.eval()` first if it has dropout or BatchNorm.

  Args:
    module: a `torch.nn.Module`, or a pair `(timestamp_fn, scene_fn)` of
      callables `fn(audio [B, T] torch) -> ...` (scene_fn may be None).
    sample_rate: Hz; default `module.sample_rate`.
    timestamp_embeddings: `fn(audio, module) -> (emb [B, F, D], t_ms [B, F])`
      torch tensors; default `module.get_timestamp_embeddings(audio)`.
    scene_embeddings: `fn(audio, module) -> emb [B, D]`; default
      `module.get_scene_embeddings(audio)` if it exists, else the timestamp
      embeddings' mean over frames.
    name: the model's name; default "torch:<class name>".
    layers: for a module that can return its hidden states: the timestamp
      function returns (hidden states, t_ms), the states a list/tuple or
      dict of [B, F, D] tensors (or one [L, B, F, D] tensor), and `layers`
      picks which, by index or key (`torch_layers`); the model then has
      those layers (`layer_names`), and its default scene embedding is each
      layer's mean over frames (a `scene_embeddings` function returns
      hidden states [B, D] too).
    batch_samples: most samples (clips x length) per call into torch;
      default hear-eval-kit's batch rule.
    device: torch device; default the module's own (that of its first
      parameter or buffer), else "cuda" when available, else "cpu".

  Returns:
    An `EmbeddingModel` with `jittable=False` whose `params` is `module`.
    Sizes are the module's `timestamp_embedding_size` /
    `scene_embedding_size` if it declares them, else read from one call on
    `EXAMPLE_SECONDS` of silence.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError(f"from_torch needs torch ({e}); pip install torch") from None
  if isinstance(module, (tuple, list)):
    if len(module) != 2 or not callable(module[0]) or not (
        module[1] is None or callable(module[1])):
      raise ValueError("from_torch: module must be a torch.nn.Module or a "
                       "pair (timestamp_fn, scene_fn or None) of callables")
    if timestamp_embeddings is not None or scene_embeddings is not None:
      raise ValueError("from_torch: a pair of callables already gives the "
                       "functions; do not pass timestamp_embeddings or "
                       "scene_embeddings too")
    timestamp_fn, scene_fn = module
    module = tuple(module)
    timestamp_embeddings = functools.partial(_closure, fn=timestamp_fn)
    if scene_fn is not None:
      scene_embeddings = functools.partial(_closure, fn=scene_fn)
    default_name = "torch:" + getattr(timestamp_fn, "__qualname__",
                                      type(timestamp_fn).__name__)
  elif isinstance(module, torch.nn.Module):
    default_name = f"torch:{type(module).__name__}"
  else:
    raise ValueError(f"from_torch: module must be a torch.nn.Module or a "
                     f"pair of callables, got {type(module).__name__}")
  name = name or default_name
  where = f"from_torch({name!r})"
  if sample_rate is None:
    sample_rate = getattr(module, "sample_rate", None)
    if sample_rate is None:
      raise ValueError(f"{where}: no sample_rate: pass sample_rate= or give "
                       "the module a sample_rate attribute")
  _check_sample_rate(where, sample_rate)
  for field, fn in (("timestamp_embeddings", timestamp_embeddings),
                    ("scene_embeddings", scene_embeddings)):
    if fn is not None and not callable(fn):
      raise ValueError(f"{where}: {field} must be a function fn(audio, "
                       f"module), got {type(fn).__name__}")
  if timestamp_embeddings is None:
    if not callable(getattr(module, "get_timestamp_embeddings", None)):
      raise ValueError(f"{where}: the module has no get_timestamp_embeddings"
                       " method; pass timestamp_embeddings=fn(audio, module)")
    timestamp_embeddings = functools.partial(
        _method, method="get_timestamp_embeddings")
  if layers is not None:
    layers = torch_layers.check_layers(where, layers)
    timestamp_embeddings = functools.partial(
        torch_layers.hidden_timestamp_states, fn=timestamp_embeddings,
        layers=layers)
    scene_embeddings = (
        functools.partial(torch_layers.mean_over_frames,
                          fn=timestamp_embeddings)
        if scene_embeddings is None else functools.partial(
            torch_layers.hidden_scene_states, fn=scene_embeddings,
            layers=layers))
  if scene_embeddings is None:
    if callable(getattr(module, "get_scene_embeddings", None)):
      scene_embeddings = functools.partial(_method,
                                           method="get_scene_embeddings")
    else:
      scene_embeddings = functools.partial(_torch_mean_scene,
                                           fn=timestamp_embeddings)
  sizes = {}
  for field in ("timestamp_embedding_size", "scene_embedding_size"):
    value = getattr(module, field, None)
    if value is not None and (not isinstance(value, int)
                              or isinstance(value, bool) or value < 1):
      raise ValueError(f"{where}: module.{field} must be an int >= 1, got "
                       f"{value!r}")
    sizes[field] = value
  model = torch_bridge.wrap_module(
      module, name=name, sample_rate=sample_rate,
      scene_embedding_size=sizes["scene_embedding_size"] or 0,
      timestamp_embedding_size=sizes["timestamp_embedding_size"] or 0,
      get_timestamp_embeddings=timestamp_embeddings,
      get_scene_embeddings=scene_embeddings,
      batch_samples=batch_samples,
      device=device or _torch_device(module))
  lead = 0
  if layers is not None:
    lead = 1  # the bridge's [b, L, ...] outputs, layer axis moved first
    model = dataclasses.replace(
        model, layer_names=torch_layers.layer_names(layers),
        timestamp_embeddings=functools.partial(
            torch_layers.layers_first_timestamps,
            fn=model.timestamp_embeddings),
        scene_embeddings=functools.partial(
            torch_layers.layers_first_scene, fn=model.scene_embeddings))
  if None in sizes.values():
    silence = np.zeros((1, int(EXAMPLE_SECONDS * sample_rate)), np.float32)
    if sizes["timestamp_embedding_size"] is None:
      emb, _ = model.timestamp_embeddings(model.params, silence)
      if emb.ndim != 3 + lead:
        raise ValueError(f"{where}: timestamp embeddings must be [B, F, D]"
                         f"{' per layer' if lead else ''}, got shape "
                         f"{tuple(emb.shape)}")
      sizes["timestamp_embedding_size"] = int(emb.shape[-1])
    if sizes["scene_embedding_size"] is None:
      scene = model.scene_embeddings(model.params, silence)
      if scene.ndim != 2 + lead:
        raise ValueError(f"{where}: scene embeddings must be [B, D]"
                         f"{' per layer' if lead else ''}, got shape "
                         f"{tuple(scene.shape)}")
      sizes["scene_embedding_size"] = int(scene.shape[-1])
    model = dataclasses.replace(model, **sizes)
  return model
