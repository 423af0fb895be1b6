"""from_torch(layers=...): a torch module's hidden states as model layers."""

import numpy as np
import pytest
import torch

from hear_jax.models import from_torch


class Hidden(torch.nn.Module):
  """Frames of 160 samples through three Linear + tanh layers."""

  def __init__(self):
    super().__init__()
    torch.manual_seed(0)
    self.layers = torch.nn.ModuleList(
        [torch.nn.Linear(160 if i == 0 else 8, 8) for i in range(3)])

  def hidden(self, audio):
    frames = audio[:, :audio.shape[1] // 160 * 160].reshape(
        audio.shape[0], -1, 160)
    states, h = [], frames
    for layer in self.layers:
      h = torch.tanh(layer(h))
      states.append(h)
    t_ms = (torch.arange(frames.shape[1]) * 10.0 + 5.0).expand(
        audio.shape[0], -1)
    return states, t_ms


def test_layers_are_the_chosen_hidden_states():
  module = Hidden()
  audio = np.random.default_rng(0).normal(0, 0.1, (3, 8000)).astype(
      np.float32)
  layered = from_torch(module, sample_rate=16000, layers=[0, 2],
                       timestamp_embeddings=lambda a, m: m.hidden(a))
  assert layered.layer_names == ("0", "2")
  assert layered.timestamp_embedding_size == 8
  emb, t_ms = layered.timestamp_embeddings(layered.params, audio)
  assert emb.shape == (2, 3, 50, 8) and t_ms.shape == (3, 50)
  for i, layer in enumerate((0, 2)):
    alone = from_torch(module, sample_rate=16000,
                       timestamp_embeddings=lambda a, m, l=layer: (
                           m.hidden(a)[0][l], m.hidden(a)[1]))
    one, _ = alone.timestamp_embeddings(alone.params, audio)
    np.testing.assert_allclose(np.asarray(emb[i]), np.asarray(one),
                               atol=1e-6)
  scene = layered.scene_embeddings(layered.params, audio)
  assert scene.shape == (2, 3, 8)
  np.testing.assert_allclose(np.asarray(scene),
                             np.asarray(emb).mean(axis=2), atol=1e-6)


def test_a_missing_layer_is_one_line():
  with pytest.raises(ValueError, match="layer 7 is not among"):
    from_torch(Hidden(), sample_rate=16000, layers=[7],
               timestamp_embeddings=lambda a, m: m.hidden(a))
  with pytest.raises(ValueError, match="layers must be a non-empty list"):
    from_torch(Hidden(), sample_rate=16000, layers=[],
               timestamp_embeddings=lambda a, m: m.hidden(a))
