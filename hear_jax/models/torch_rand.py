"""`torch.manual_seed(seed); torch.rand(shape)` on the CPU, in numpy.

HEAR 2021 modules draw fixed weights from torch's CPU generator (e.g.
hearbaseline.naive's projection, `torch.rand(256, 4096) / 16` after
`manual_seed(0)`); this gives the same float32 bits without torch.

  matrix = torch_rand(0, (256, 4096)) / np.float32(16)   # hearbaseline.naive

torch's CPU generator is MT19937, seeded by `manual_seed(s)` with the
reference `init_genrand(s mod 2**32)`. numpy's legacy `RandomState(s)` seeds
the same engine the same way, and its stream is frozen by numpy's
compatibility policy (NEP 19), so its raw 32-bit draws are torch's. For
float32, `torch.rand` takes one 32-bit draw per element, in row-major order,
and keeps its low 24 bits (float32's significand): `(x & (2**24 - 1)) *
2**-24`, exact in float32. tests/test_models.py checks all of this against
torch.
"""

from __future__ import annotations

import math

import numpy as np

_FLOAT32_DIGITS = 24  # std::numeric_limits<float>::digits


def mt19937_uint32(seed: int, count: int) -> np.ndarray:
  """The first `count` 32-bit outputs of MT19937 after `init_genrand(seed)`
  (torch's CPU generator after `torch.manual_seed(seed)`), uint32."""
  if not 0 <= seed < 2**32:
    raise ValueError(f"torch_rand: seed must be in [0, 2**32), got {seed}")
  # randint over the full uint32 range uses one raw draw per value, unmasked.
  return np.random.RandomState(seed).randint(
      0, 2**32, size=count, dtype=np.uint32)


def torch_rand(seed: int, shape: tuple[int, ...]) -> np.ndarray:
  """float32 `torch.rand(*shape)` right after `torch.manual_seed(seed)`."""
  raw = mt19937_uint32(seed, math.prod(shape))
  mask = np.uint32((1 << _FLOAT32_DIGITS) - 1)
  values = (raw & mask).astype(np.float32) * np.float32(2.0**-_FLOAT32_DIGITS)
  return values.reshape(shape)
