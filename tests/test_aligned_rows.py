"""Packed splits reach a CPU device without a second copy of the embeddings."""

import os
import subprocess
import sys
import textwrap

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


def test_several_cpu_devices_share_one_copy_of_the_embeddings():
  # Simulated CPU devices share the host's memory: every device's replica
  # of the embeddings is the same aligned buffer, not a copy per device.
  code = textwrap.dedent("""
      import numpy as np, jax
      from hear_jax import aligned_rows
      from hear_jax.probe import trainer
      parts = aligned_rows.packed_rows(
          [np.arange(12.0).reshape(4, 3), np.ones((5, 3))])
      x = trainer.stack_rows(parts)
      pointers = {s.data.unsafe_buffer_pointer() for s in x.addressable_shards}
      assert len(x.addressable_shards) == 8, x.sharding
      assert pointers == {parts[0].ctypes.data}, pointers
      np.testing.assert_array_equal(np.asarray(x), np.concatenate(parts))
      print("ok")
      """)
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  out = subprocess.run([sys.executable, "-c", code], env=env, text=True,
                       capture_output=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
