"""XLA compilation across runs: JAX's persistent cache, and what compiling cost.

The probe's programs depend only on shapes (embedding width, classes,
member count, rows), so a second task of the same width, or a rerun, can
load them instead of compiling them again. `enable` turns JAX's persistent
compilation cache on for the process, keeping every program however small
or quick to compile (JAX's defaults skip those under one second, which is
most of the probe's). `totals` counts compilations, cache hits and their
seconds from JAX's monitoring events, for the compute report:

  compile_cache.enable(compile_cache.directory(config))
  before = compile_cache.totals()
  ...  # anything that jits
  spent = compile_cache.totals() - before   # .compiles, .cache_hits, ...
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Any

# What JAX reports (jax._src.monitoring; public listeners in jax.monitoring).
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_LOWERING = ("/jax/core/compile/jaxpr_trace_duration",
             "/jax/core/compile/jaxpr_to_mlir_module_duration")
_CACHE_HIT = "/jax/compilation_cache/cache_hits"
_CACHE_MISS = "/jax/compilation_cache/cache_misses"


@dataclasses.dataclass(frozen=True)
class CompileTotals:
  """Counts since the process started (or a difference of two)."""

  programs: int = 0  # backend compilations requested (hits included)
  cache_hits: int = 0  # programs loaded from the persistent cache
  cache_misses: int = 0  # programs compiled and written to it
  compile_seconds: float = 0.0  # XLA compile (or cache load) time
  lowering_seconds: float = 0.0  # tracing and lowering to MLIR

  @property
  def compiles(self) -> int:
    """Programs XLA actually compiled (not loaded from the cache)."""
    return self.programs - self.cache_hits

  def __sub__(self, other: CompileTotals) -> CompileTotals:
    return CompileTotals(**{
        f.name: getattr(self, f.name) - getattr(other, f.name)
        for f in dataclasses.fields(self)})

  def as_dict(self) -> dict[str, Any]:
    return {"compiles": self.compiles, "compile_cache_hits": self.cache_hits,
            "compile_seconds": round(self.compile_seconds, 3),
            "lowering_seconds": round(self.lowering_seconds, 3)}


_lock = threading.Lock()
_counts: dict[str, float] = {}
_listening = False


def _on_event(event: str, **_) -> None:
  if event in (_CACHE_HIT, _CACHE_MISS):
    with _lock:
      _counts[event] = _counts.get(event, 0) + 1


def _on_duration(event: str, seconds: float, **_) -> None:
  if event == _BACKEND_COMPILE or event in _LOWERING:
    with _lock:
      key = "lowering" if event in _LOWERING else event
      _counts[key] = _counts.get(key, 0.0) + seconds
      if event == _BACKEND_COMPILE:
        _counts["programs"] = _counts.get("programs", 0) + 1


def listen() -> None:
  """Starts counting (idempotent; JAX's listeners cannot be removed)."""
  global _listening
  with _lock:
    if _listening:
      return
    _listening = True
  # Imported here so that importing this module (progress does) is cheap.
  import jax  # pylint: disable=g-import-not-at-top
  jax.monitoring.register_event_listener(_on_event)
  jax.monitoring.register_event_duration_secs_listener(_on_duration)


def totals() -> CompileTotals:
  """Compilations counted since `listen` (which this calls)."""
  listen()
  with _lock:
    return CompileTotals(
        programs=int(_counts.get("programs", 0)),
        cache_hits=int(_counts.get(_CACHE_HIT, 0)),
        cache_misses=int(_counts.get(_CACHE_MISS, 0)),
        compile_seconds=float(_counts.get(_BACKEND_COMPILE, 0.0)),
        lowering_seconds=float(_counts.get("lowering", 0.0)))


def default_directory() -> str:
  """`$XDG_CACHE_HOME/hear_jax/xla` (default `~/.cache/hear_jax/xla`)."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(root, "hear_jax", "xla")


def directory(config: Any) -> str | None:
  """The cache directory `config.compilation_cache_dir` asks for: "" for
  `default_directory()`, "none" for no persistent cache (None)."""
  value = str(config.get("compilation_cache_dir", "") or "")
  if value.lower() == "none":
    return None
  return os.path.expanduser(value) if value else default_directory()


def enable(path: str | None) -> None:
  """Compiled programs are kept in, and loaded from, `path` (None: off).

  Every program is kept, however quick to compile or small: the probe's
  are mostly under JAX's default one-second threshold, and together they
  are tens of seconds a task. Programs differ by shape, XLA version and
  device kind, so one directory serves every run and model. Counting
  (`listen`) starts too."""
  import jax  # pylint: disable=g-import-not-at-top
  listen()
  current = jax.config.jax_compilation_cache_dir
  if path is not None:
    os.makedirs(path, exist_ok=True)
  if path == current:
    return
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  jax.config.update("jax_compilation_cache_dir", path)
  if current is not None:
    # JAX opens the cache once; a new directory needs it reopened.
    from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
    compilation_cache.reset_cache()
  logging.info("XLA compilation cache: %s", path or "off")
