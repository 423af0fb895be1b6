"""Packed splits reach a CPU device without a second copy of the embeddings."""

import jax
import numpy as np
import pytest

from hear_jax import aligned_rows, embed
from hear_jax.probe import trainer


def _splits(rng):
  return {name: embed.SplitEmbeddings(
      ids=tuple(f"{name}{i}" for i in range(n)),
      x=rng.standard_normal((n, 24)).astype(np.float32),
      labels=tuple(("a",) for _ in range(n)), events=tuple(() for _ in range(n)))
          for name, n in (("train", 7), ("valid", 3), ("test", 5))}


def test_packed_splits_keep_values_and_are_read_only():
  rng = np.random.default_rng(0)
  splits = _splits(rng)
  packed = embed.packed_splits(splits)
  assert list(packed) == list(splits)
  for name in splits:
    np.testing.assert_array_equal(packed[name].x, splits[name].x)
    assert packed[name].ids == splits[name].ids
    with pytest.raises(ValueError):
      packed[name].x[0, 0] = 1.0  # a device array may alias it


def test_stacking_packed_splits_on_cpu_aliases_their_buffer():
  rng = np.random.default_rng(1)
  packed = embed.packed_splits(_splits(rng))
  parts = [s.x for s in packed.values()]
  stacked = trainer.stack_rows(parts, jax.devices("cpu")[:1])
  np.testing.assert_array_equal(np.asarray(stacked), np.concatenate(parts))
  assert stacked.unsafe_buffer_pointer() == parts[0].ctypes.data


def test_parts_out_of_order_or_unpacked_are_copied_once():
  rng = np.random.default_rng(2)
  packed = embed.packed_splits(_splits(rng))
  parts = [packed["test"].x, packed["train"].x]  # not end to end
  assert aligned_rows.end_to_end(parts) is None
  stacked = trainer.stack_rows(parts, jax.devices("cpu")[:1])
  np.testing.assert_array_equal(np.asarray(stacked), np.concatenate(parts))
  plain = [rng.standard_normal((4, 24)), rng.standard_normal((2, 24))]
  np.testing.assert_allclose(
      np.asarray(trainer.stack_rows(plain, jax.devices("cpu")[:1])),
      np.concatenate(plain).astype(np.float32))


def test_packing_rejects_mismatched_widths():
  with pytest.raises(ValueError, match="trailing shapes differ"):
    aligned_rows.packed_rows([np.zeros((2, 3)), np.zeros((2, 4))])
