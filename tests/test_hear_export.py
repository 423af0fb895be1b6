"""Tests of `hear_jax.hear.<model>`: every built-in model as a HEAR 2021 API
module that passes hear-validator 2021.0.6's rules and gives the same numbers
as the JAX model."""

from __future__ import annotations

import importlib

import jax
import numpy as np
import pytest

from hear_jax import models
from hear_jax.models import validation

torch = pytest.importorskip("torch")
from hear_jax.hear import exported  # pylint: disable=g-import-not-at-top

EXPORTED = ("naive", "melstats", "crepe", "crepe_tiny")


def test_every_built_in_model_has_a_hear_module():
  for name in models.available_models():
    module = importlib.import_module(f"hear_jax.hear.{name}")
    for function in ("load_model", "get_timestamp_embeddings", "get_scene_embeddings"):
      assert callable(getattr(module, function)), (name, function)


def _validator_audio(n_sounds: int, seconds: float, sample_rate: int) -> torch.Tensor:
  # hear-validator's test signal: uniform noise in [-1, 1).
  generator = torch.Generator().manual_seed(0)
  return torch.rand((n_sounds, int(seconds * sample_rate)), generator=generator) * 2 - 1


@pytest.mark.parametrize("name", EXPORTED)
def test_exported_module_passes_hear_validator_rules(name):
  """hear-validator 2021.0.6's checks, run on the torch API of the module, and
  hear_jax's own check on the wrapped model."""
  module = importlib.import_module(f"hear_jax.hear.{name}")
  model = module.load_model()
  assert isinstance(model, torch.nn.Module)
  assert model.to("cpu") is model
  assert model.sample_rate in validation.SAMPLE_RATES
  assert type(model.scene_embedding_size) is int
  assert type(model.timestamp_embedding_size) is int
  for n_sounds, seconds in validation.TIMESTAMP_CHECKS:
    audio = _validator_audio(n_sounds, seconds, model.sample_rate)
    emb, timestamps = module.get_timestamp_embeddings(audio, model)
    assert isinstance(emb, torch.Tensor) and emb.dtype == torch.float32
    assert isinstance(timestamps, torch.Tensor) and emb.device == audio.device
    assert validation.check_timestamp_outputs(
        emb.numpy(), timestamps.numpy(), n_sounds, seconds,
        model.timestamp_embedding_size) == []
  n_sounds, seconds = validation.SCENE_CHECK
  scene = module.get_scene_embeddings(
      _validator_audio(n_sounds, seconds, model.sample_rate), model)
  assert scene.dtype == torch.float32
  assert tuple(scene.shape) == (n_sounds, model.scene_embedding_size)
  # The same shapes again through hear_jax's validator: reuses the compiles.
  assert validation.check_hear_api(model.embedding_model) == []


def test_exported_embeddings_equal_the_jax_model():
  from hear_jax.hear import naive as hear_naive  # pylint: disable=g-import-not-at-top
  model = hear_naive.load_model(seed=3)
  jax_model = models.load_model("naive(seed=3)")
  audio = _validator_audio(2, 0.6, model.sample_rate)
  emb, timestamps = hear_naive.get_timestamp_embeddings(audio, model)
  want, want_t = jax.jit(jax_model.timestamp_embeddings)(jax_model.params, audio.numpy())
  np.testing.assert_array_equal(emb.numpy(), np.asarray(want))
  np.testing.assert_array_equal(timestamps.numpy(), np.asarray(want_t))
  scene = hear_naive.get_scene_embeddings(audio, model)
  np.testing.assert_array_equal(
      scene.numpy(), np.asarray(jax.jit(jax_model.scene_embeddings)(
          jax_model.params, audio.numpy())))


def test_audio_reaches_jax_without_a_copy():
  from hear_jax.hear import naive as hear_naive  # pylint: disable=g-import-not-at-top
  audio = _validator_audio(2, 0.1, 44100)
  x = exported._audio_to_jax(audio, hear_naive.load_model())  # pylint: disable=protected-access
  assert x.unsafe_buffer_pointer() == audio.data_ptr()


def test_load_model_options_and_weights(tmp_path):
  from hear_jax.hear import crepe_tiny, melstats  # pylint: disable=g-import-not-at-top
  assert melstats.load_model(n_mels=32).scene_embedding_size == 64
  with pytest.raises(ValueError, match="bad options"):
    melstats.load_model(bands=3)
  with pytest.raises(ValueError, match="takes no weights file"):
    melstats.load_model("weights.pt")
  # hear-validator -m <file>: a weights path reaches crepe's `weights`.
  from hear_jax.models import crepe_weights  # pylint: disable=g-import-not-at-top
  path = tmp_path / "tiny.npz"
  state = crepe_weights.load_state("tiny")
  state["conv5_BN.bias"] = state["conv5_BN.bias"] + 1.0
  np.savez(path, **state)
  shifted, default = crepe_tiny.load_model(str(path)), crepe_tiny.load_model()
  audio = _validator_audio(1, 0.3, 16000)
  difference = (crepe_tiny.get_scene_embeddings(audio, shifted)
                - crepe_tiny.get_scene_embeddings(audio, default))
  # BatchNorm's bias feeds straight into the last max-pool: +1 everywhere.
  np.testing.assert_allclose(difference.numpy(), 1.0, atol=1e-4)


def test_bad_inputs_raise_clear_errors():
  from hear_jax.hear import naive as hear_naive  # pylint: disable=g-import-not-at-top
  model = hear_naive.load_model()
  with pytest.raises(ValueError, match=r"audio must be a torch tensor \[n_sounds"):
    hear_naive.get_scene_embeddings(torch.zeros(100), model)
  with pytest.raises(ValueError, match="model must be an ExportedModel"):
    hear_naive.get_scene_embeddings(torch.zeros(1, 100), torch.nn.Linear(1, 1))
