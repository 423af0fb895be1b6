"""Saving and resuming `fit_probes` mid-training, bit for bit.

  ckpt = ProbeCheckpoint("runs/x/melstats/esc50/probe-checkpoint/split0",
                         fingerprint=what_the_fit_depends_on,
                         min_seconds=60.0)
  results = fit_probes(..., checkpoint=ckpt)   # killed? call it again:
  results = fit_probes(..., checkpoint=ckpt)   # resumes at the last save
  ckpt.clear()                                 # once the results are kept

Every architecture group of a fit (`driver.GroupFit`) saves its whole host
loop state after a validation check, when the save is due (`every_checks`
checks and `min_seconds` seconds since the last): the training state after
that check's chunk (params, Optax state, BatchNorm statistics, step
counter), the best checkpoints, the early-stopping state, the histories and
the mask of the next chunk the loop had dispatched. PRNG streams are
functions of the member keys and the step/epoch counters, so nothing else is
needed: a resumed fit replays exactly what the uninterrupted one computes.
A finished group saves once more (`done`), so a fit killed in a later group
does not train the earlier ones again.

Files are `group<g>.npz`: plain arrays named by their pytree path plus JSON
strings, written to a temporary file, fsynced and renamed, and read with
`allow_pickle=False`. A file whose identity (caller's fingerprint, group,
hyperparameters, member keys, data shapes, trainer options) differs from the
fit's, or that cannot be read, is logged and ignored: the fit starts over.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
import zipfile
import zlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

_FORMAT = 2  # 2: Linear weights stored [out, in]


@dataclasses.dataclass
class GroupProgress:
  """One group's host-loop state after validation check `check`."""

  check: int
  train_state: Any | None  # pytree after chunk `check`; None once done
  best: Any  # pytree: each member's best (params, bn_state)
  early_stopping: tuple[np.ndarray, ...]  # EarlyStoppingState fields
  extras: list[Any]  # JSON values (the score_fn's extras)
  history: list[np.ndarray]  # per member [checks, 4] float64
  losses: list[np.ndarray]  # per member [checks, every] float32
  reason: list[str]
  last_check: np.ndarray
  next_active: np.ndarray | None  # the dispatched next chunk's mask
  done: bool


def _flatten(tree: Any, prefix: str) -> dict[str, np.ndarray]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {prefix + jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in leaves}


def _unflatten(template: Any, arrays: Mapping[str, np.ndarray],
               prefix: str) -> Any:
  """`template`'s structure with `arrays`' leaves, checked leaf by leaf."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
  out = []
  for path, leaf in leaves:
    name = prefix + jax.tree_util.keystr(path)
    if name not in arrays:
      raise ValueError(f"no array {name}")
    value = arrays[name]
    if value.shape != np.shape(leaf) or value.dtype != np.asarray(leaf).dtype:
      raise ValueError(f"{name} is {value.dtype}{list(value.shape)}, expected"
                       f" {np.asarray(leaf).dtype}{list(np.shape(leaf))}")
    out.append(jnp.asarray(value))
  return jax.tree_util.tree_unflatten(treedef, out)


def _json(value: Any) -> str:
  def plain(o):
    if isinstance(o, np.generic):
      return o.item()
    raise TypeError(f"{type(o).__name__} is not a JSON value")
  try:
    return json.dumps(value, default=plain, sort_keys=True)
  except TypeError as e:
    raise ValueError(f"probe checkpoint: cannot save a score_fn extra ({e});"
                     " checkpointing needs JSON values") from None


def write_npz(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  """Writes `arrays` as one .npz, atomically (temporary file, fsync,
  rename), so a reader sees the old file or the whole new one."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  try:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


_DAMAGED = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile,
            zlib.error)


@dataclasses.dataclass
class ProbeCheckpoint:
  """Where one `fit_probes` call keeps its resumable state, and how often.

  `fingerprint` names everything the fit depends on that its arguments'
  shapes do not show (embeddings, config, seed); a saved state with another
  fingerprint is never resumed.
  """

  directory: str
  fingerprint: str
  every_checks: int = 1
  min_seconds: float = 0.0

  def child(self, name: str) -> ProbeCheckpoint:
    """The same policy for one part of a larger job (e.g. a data split)."""
    return dataclasses.replace(
        self, directory=os.path.join(self.directory, name),
        fingerprint=json.dumps([self.fingerprint, name]))

  def path(self, group: int) -> str:
    return os.path.join(self.directory, f"group{group}.npz")

  def due(self, checks_since: int, seconds_since: float) -> bool:
    return (checks_since >= self.every_checks
            and seconds_since >= self.min_seconds)

  def save(self, group: int, identity: Mapping[str, Any],
           progress: GroupProgress) -> None:
    arrays = {
        "identity": np.array(self._identity(group, identity)),
        "format": np.array(_FORMAT),
        "check": np.array(progress.check),
        "done": np.array(progress.done),
        "extras": np.array(_json(progress.extras)),
        "reason": np.array(json.dumps(progress.reason)),
        "last_check": np.asarray(progress.last_check),
        "has_next": np.array(progress.next_active is not None),
        "next_active": np.asarray(
            progress.next_active if progress.next_active is not None
            else np.zeros_like(progress.last_check, bool)),
    }
    for i, field in enumerate(progress.early_stopping):
      arrays[f"early_stopping/{i}"] = np.asarray(field)
    for i, (h, l) in enumerate(zip(progress.history, progress.losses)):
      arrays[f"history/{i}"] = np.asarray(h, np.float64).reshape(-1, 4)
      arrays[f"losses/{i}"] = np.asarray(l)
    arrays.update(_flatten(progress.best, "best"))
    if progress.train_state is not None:
      arrays.update(_flatten(progress.train_state, "train"))
    start = time.perf_counter()
    write_npz(self.path(group), arrays)
    logging.debug("probe checkpoint %s: check %d saved in %.2f s",
                  self.path(group), progress.check,
                  time.perf_counter() - start)

  def load(self, group: int, identity: Mapping[str, Any], *,
           train_template: Any, best_template: Any) -> GroupProgress | None:
    """The saved progress of `group` if it is this fit's and intact."""
    path = self.path(group)
    if not os.path.exists(path):
      return None
    try:
      with np.load(path, allow_pickle=False) as f:
        arrays = {name: f[name] for name in f.files}
      if str(arrays["identity"]) != self._identity(group, identity):
        logging.info("%s: saved by another fit; starting over", path)
        return None
      if int(arrays["format"]) != _FORMAT:
        raise ValueError(f"format {int(arrays['format'])}, not {_FORMAT}")
      done = bool(arrays["done"])
      m = len(arrays["last_check"])
      progress = GroupProgress(
          check=int(arrays["check"]),
          train_state=None if done else _unflatten(train_template, arrays,
                                                   "train"),
          best=_unflatten(best_template, arrays, "best"),
          early_stopping=tuple(arrays[f"early_stopping/{i}"]
                               for i in range(4)),
          extras=json.loads(str(arrays["extras"])),
          history=[arrays[f"history/{i}"] for i in range(m)],
          losses=[arrays[f"losses/{i}"] for i in range(m)],
          reason=json.loads(str(arrays["reason"])),
          last_check=arrays["last_check"],
          next_active=(arrays["next_active"] if bool(arrays["has_next"])
                       else None),
          done=done)
    except _DAMAGED as e:
      logging.warning("%s: unreadable probe checkpoint (%s: %s); starting"
                      " over", path, type(e).__name__, e)
      return None
    logging.info("%s: resuming after validation check %d%s", path,
                 progress.check, " (group done)" if progress.done else "")
    return progress

  def clear(self) -> None:
    """Removes the saved states (call once the fit's results are kept)."""
    shutil.rmtree(self.directory, ignore_errors=True)

  def _identity(self, group: int, identity: Mapping[str, Any]) -> str:
    return json.dumps({"fingerprint": self.fingerprint, "group": group,
                       **identity}, sort_keys=True, default=str)
