"""Shape buckets: the sizes a probe's programs are compiled for.

XLA compiles a program per shape. The probe's programs take the row, class
and member counts as traced numbers where they can (`program`), so they
only need arrays large enough: the embeddings' rows, the classes of the
output layer and the member stack are padded up to a bucket, and a second
task whose counts fall in the same buckets (the same embedding width, the
same grid) runs the executables of the first, from memory or from the
persistent compilation cache (`hear_jax.compile_cache`):

  n_rows = buckets.rows(len(x), row_bytes=4 * x.shape[1])   # >= len(x)
  n_classes = buckets.classes(y.shape[1])                    # >= C
  n_members = buckets.members(len(members))                  # >= M

Padding costs memory and little compute: training and evaluation loop
over the real rows, the last partial batch is a step of the next multiple
of 128 rows (`program.tail_sizes`), padding classes are masked
(`mlp.apply_mlp`'s n_labels) and a padding member is frozen. Numbers do not
depend on the buckets beyond float rounding (`mlp.init_mlp`,
`program._epochs_fn`).

Buckets are on by default on accelerators (`enabled`). On a CPU each
last-batch size is a step body XLA compiles (measured on 2 cores: 0.6 s
for a one-layer 512-d head's, about 1 s for a two-layer one's, so a
training program takes 5-8 s more to compile), which a first run of a task
pays and only a second task in the same buckets gets back; there they are
a setting (`config.probe.shape_buckets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Rows: the next of 2^k x {1, 5/4, 3/2, 7/4}, at most a quarter more rows.
_ROW_STEPS = (4, 5, 6, 7)
# The smallest row bucket.
_MIN_ROWS = 256
# Above this many bytes of padded embeddings, rows are not padded: a large
# task's compiles are a small part of its time, and padding would copy it.
MAX_PADDED_BYTES = 2 << 30
# Classes: a multiple of 8 up to 64, then the next power of two.
_CLASS_STEP = 8


def rows(n: int, row_bytes: int = 0) -> int:
  """The row bucket of `n` rows of `row_bytes` each (`n` itself when the
  padded embeddings would pass `MAX_PADDED_BYTES`)."""
  if n <= _MIN_ROWS:
    return _MIN_ROWS if _MIN_ROWS * row_bytes <= MAX_PADDED_BYTES else n
  power = 1 << (n - 1).bit_length() - 3  # n / power is in (4, 8]
  size = next(power * s for s in _ROW_STEPS + (8,) if power * s >= n)
  return size if size * row_bytes <= MAX_PADDED_BYTES else n


def classes(n: int) -> int:
  """The class bucket of an output layer with `n` classes."""
  if n <= 8 * _CLASS_STEP:
    return -(-n // _CLASS_STEP) * _CLASS_STEP
  return 1 << (n - 1).bit_length()


def members(n: int) -> int:
  """The member bucket: the next power of two."""
  return 1 << max(0, n - 1).bit_length()


def enabled(setting: bool | None, devices: Sequence[Any] | None = None
            ) -> bool:
  """`setting`, or when None (the default): whether any of `devices`
  (default: all) is an accelerator."""
  if setting is not None:
    return bool(setting)
  import jax  # pylint: disable=g-import-not-at-top
  return any(d.platform != "cpu"
             for d in (jax.devices() if devices is None else devices))
