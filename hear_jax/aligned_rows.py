"""Rows of several arrays in one aligned host buffer, which XLA:CPU can use
as a device array without copying it.

A probe needs a task's embeddings on its device. On CPU the device's memory
is the host's, and `jax.device_put` of a 64-byte-aligned array aliases it, so
splits read into one aligned buffer (`packed_rows`) reach the device as one
array (`end_to_end`) with no second copy: the memory a probe adds is then its
heads', not another copy of the embeddings.

  views = packed_rows([train_x, valid_x, test_x])  # one copy, read-only
  x = jax.device_put(end_to_end(views))            # no copy on CPU
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# XLA:CPU uses host memory aligned to this as a device buffer (no copy).
_HOST_ALIGN = 64


def packed_rows(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
  """float32 copies of `arrays` ([n_i, ...], one trailing shape) laid end to
  end in one 64-byte-aligned buffer, as read-only views in the same order.

  `trainer.stack_rows` of these views, in this order, on one CPU device
  uses that buffer as the device array instead of copying it: the
  embeddings are in memory once, not once for the host and once for the
  device. A task's splits are packed where they are read
  (`embed.packed_splits`) and the protocol stacks them in their order."""
  arrays = [np.asarray(a) for a in arrays]
  tail = arrays[0].shape[1:]
  if any(a.shape[1:] != tail for a in arrays):
    raise ValueError("packed_rows: the arrays' trailing shapes differ: "
                     f"{sorted({a.shape[1:] for a in arrays})}")
  rows = sum(len(a) for a in arrays)
  nbytes = 4 * rows * math.prod(tail)
  raw = np.empty(nbytes + _HOST_ALIGN, np.uint8)
  start = -raw.ctypes.data % _HOST_ALIGN
  whole = raw[start:start + nbytes].view(np.float32).reshape((rows,) + tail)
  views, at = [], 0
  for a in arrays:
    view = whole[at:at + len(a)]
    view[...] = a
    view.flags.writeable = False  # a device array may alias it
    views.append(view)
    at += len(a)
  return views


def end_to_end(parts: Sequence[np.ndarray]) -> np.ndarray | None:
  """The parts as one [sum n_i, ...] array without copying, when they are
  aligned float32 rows lying end to end in one buffer (`packed_rows`)."""
  root = parts[0]
  while isinstance(root.base, np.ndarray):
    root = root.base
  address = parts[0].ctypes.data
  if address % _HOST_ALIGN:
    return None
  end = address
  for p in parts:
    if (p.dtype != np.float32 or not p.flags.c_contiguous
        or p.shape[1:] != parts[0].shape[1:] or p.ctypes.data != end):
      return None
    end += p.nbytes
  if not (root.ctypes.data <= address and end <= root.ctypes.data
          + root.nbytes):
    return None
  shape = (sum(len(p) for p in parts),) + parts[0].shape[1:]
  whole = np.ndarray(shape, np.float32, buffer=root,
                     offset=address - root.ctypes.data)
  whole.flags.writeable = False
  return whole
