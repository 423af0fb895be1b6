"""Model specs: `"name"` or `"name(key=value, ...)"` -> `EmbeddingModel`.

A built-in model is a module `hear_jax.models.<name>` with a function
`create(**options) -> EmbeddingModel`; it is found by module name, so adding a
model means adding a module (no registry). Option values are Python literals,
parsed with `ast.literal_eval`, never evaluated.

  model = load_model("melstats(n_mels=128, context_ms=500.0)")
  model = load_model("naive")

A spec `hear:<module>` or `hear:<module>(model_file='w.pt', key=value)` loads
any HEAR 2021 API PyTorch module through `torch_bridge` (torch is imported only
then):

  model = load_model("hear:hearbaseline.torchcrepe")
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import pkgutil
from typing import Any

from hear_jax.models import interface

_PACKAGE = "hear_jax.models"
_HEAR_PREFIX = "hear:"


def load_model(spec: str) -> interface.EmbeddingModel:
  """Builds the model named by `spec`; its `name` becomes the canonical spec."""
  spec = spec.strip()
  if spec.startswith(_HEAR_PREFIX):
    return _load_hear_module(spec)
  name, options = parse_spec(spec)
  create = _find_create(name)
  try:
    inspect.signature(create).bind(**options)
  except TypeError as e:
    raise ValueError(f"model spec {spec!r}: bad options for {name!r}: {e}") from None
  model = create(**options)
  return dataclasses.replace(model, name=format_spec(name, options))


def check_spec(spec: str) -> None:
  """What `load_model(spec)` would refuse, found without building the model
  (no weights, no torch): bad syntax, an unknown built-in or bad options for
  it, a `hear:` module that is not installed. One-line ValueErrors, worded
  as `load_model`'s."""
  spec = spec.strip()
  if not spec.startswith(_HEAR_PREFIX):
    name, options = parse_spec(spec)
    try:
      inspect.signature(_find_create(name)).bind(**options)
    except TypeError as e:
      raise ValueError(
          f"model spec {spec!r}: bad options for {name!r}: {e}") from None
    return
  module_name, options = parse_spec(spec[len(_HEAR_PREFIX):], dotted=True)
  if not isinstance(options.get("model_file", ""), str):
    raise ValueError(f"model spec {spec!r}: model_file must be a quoted path")
  # The top-level package only: finding a submodule would import its
  # package, which may need torch or the bridge's shims.
  if importlib.util.find_spec(module_name.split(".")[0]) is None:
    raise ValueError(f"HEAR module {module_name!r} not found: install it (pip"
                     " install ...) or add it to PYTHONPATH")


def parse_spec(spec: str, dotted: bool = False) -> tuple[str, dict[str, Any]]:
  """`"melstats(n_mels=128)"` -> `("melstats", {"n_mels": 128})`.

  With `dotted`, the name may be a module path: `"a.b(k=1)"` -> `("a.b", ...)`.
  """
  try:
    node = ast.parse(spec.strip(), mode="eval").body
  except SyntaxError:
    raise ValueError(
        f"model spec {spec!r}: expected 'name' or 'name(key=value, ...)'") from None
  name = _spec_name(node, dotted)
  if name is not None:
    return name, {}
  if not (isinstance(node, ast.Call) and _spec_name(node.func, dotted)):
    raise ValueError(
        f"model spec {spec!r}: expected 'name' or 'name(key=value, ...)'")
  if node.args or any(k.arg is None for k in node.keywords):
    raise ValueError(
        f"model spec {spec!r}: options must be given as key=value")
  options = {}
  for keyword in node.keywords:
    try:
      options[keyword.arg] = ast.literal_eval(keyword.value)
    except ValueError:
      raise ValueError(
          f"model spec {spec!r}: option {keyword.arg!r} is not a Python "
          f"literal: {ast.unparse(keyword.value)}") from None
  return _spec_name(node.func, dotted), options


def _spec_name(node: ast.AST, dotted: bool) -> str | None:
  if isinstance(node, ast.Name):
    return node.id
  if dotted and isinstance(node, ast.Attribute):
    parent = _spec_name(node.value, dotted)
    return None if parent is None else f"{parent}.{node.attr}"
  return None


def _load_hear_module(spec: str) -> interface.EmbeddingModel:
  """`hear:<module>(model_file=..., key=value)` -> the bridged torch model."""
  module_name, options = parse_spec(spec[len(_HEAR_PREFIX):], dotted=True)
  model_file = options.pop("model_file", "")
  if not isinstance(model_file, str):
    raise ValueError(f"model spec {spec!r}: model_file must be a quoted path")
  try:
    from hear_jax.models import torch_bridge  # imports torch
  except ImportError as e:
    raise ValueError(f"model spec {spec!r}: HEAR PyTorch modules need torch "
                     f"({e}); pip install torch") from None
  model = torch_bridge.load_hear_model(module_name, model_file, options)
  if model_file:
    options["model_file"] = model_file
  return dataclasses.replace(
      model, name=_HEAR_PREFIX + format_spec(module_name, options))


def format_spec(name: str, options: dict[str, Any]) -> str:
  """Inverse of `parse_spec`, with options sorted by key."""
  if not options:
    return name
  return f"{name}({', '.join(f'{k}={v!r}' for k, v in sorted(options.items()))})"


def available_models() -> list[str]:
  """Names of the built-in models: modules of this package with `create`."""
  package = importlib.import_module(_PACKAGE)
  names = []
  for info in pkgutil.iter_modules(package.__path__):
    if info.ispkg or info.name.startswith("_"):
      continue
    try:
      module = importlib.import_module(f"{_PACKAGE}.{info.name}")
    except ImportError:  # A module needing an optional dependency is no built-in.
      continue
    if callable(getattr(module, "create", None)):
      names.append(info.name)
  return sorted(names)


def _find_create(name: str):
  try:
    module = importlib.import_module(f"{_PACKAGE}.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"{_PACKAGE}.{name}":
      raise  # The model exists but one of its imports is missing.
    module = None
  create = getattr(module, "create", None)
  if not callable(create):
    raise ValueError(
        f"unknown model {name!r}; built-in models: {', '.join(available_models())}")
  return create
