"""Models from plain code: `from_functions` (JAX/Flax) and `from_torch`."""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hear_jax import embed
from hear_jax import models
from hear_jax.data.task import SplitAudio, TaskInfo
from hear_jax.models import from_code
from hear_jax.models import validation

RATE = 16000
HOP = 160  # 10 ms


class FrameEncoder(nn.Module):
  """Log-energy of 400-sample frames every 10 ms, then a Dense layer."""

  features: int = 6
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, audio):
    starts = jnp.arange(0, audio.shape[1] - 400 + 1, HOP)
    frames = audio[:, starts[:, None] + jnp.arange(400)]  # [B, F, 400]
    pooled = frames.reshape(*frames.shape[:2], 8, 50)
    x = jnp.log(jnp.mean(pooled ** 2, axis=-1) + 1e-6)  # [B, F, 8]
    emb = nn.Dense(self.features, dtype=self.dtype)(x)
    t_ms = (starts + 200) * 1000.0 / RATE
    return emb, jnp.broadcast_to(t_ms, emb.shape[:2])


def _audio(rows=3, seconds=1.0, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(-1, 1, (rows, int(seconds * RATE))).astype(np.float32)


def test_a_flax_module_becomes_a_model_with_inferred_sizes():
  encoder = FrameEncoder()
  variables = encoder.init(jax.random.key(0), jnp.zeros((1, RATE)))
  model = models.from_functions(encoder.apply, variables, sample_rate=RATE,
                                name="frames")
  assert (model.name, model.sample_rate, model.jittable) == ("frames", RATE,
                                                            True)
  assert model.timestamp_embedding_size == model.scene_embedding_size == 6
  assert model.params is variables
  audio = _audio()
  emb, t_ms = jax.jit(model.timestamp_embeddings)(model.params, audio)
  want, want_t = jax.jit(encoder.apply)(variables, audio)  # same program
  np.testing.assert_array_equal(emb, want)
  np.testing.assert_array_equal(t_ms, want_t)
  scene = jax.jit(model.scene_embeddings)(model.params, audio)
  np.testing.assert_allclose(scene, np.mean(want, axis=1), rtol=1e-6)
  # hear-validator's rules hold (frame centres every 10 ms).
  assert validation.check_hear_api(model) is not None
  # A later checkpoint is the same model with other params.
  other = encoder.init(jax.random.key(1), jnp.zeros((1, RATE)))
  later = dataclasses.replace(model, params=other)
  np.testing.assert_array_equal(
      jax.jit(later.timestamp_embeddings)(later.params, audio)[0],
      jax.jit(encoder.apply)(other, audio)[0])


@pytest.mark.parametrize("embedding_type", ["scene", "event"])
def test_the_embedding_stage_takes_a_flax_model(embedding_type):
  encoder = FrameEncoder()
  variables = encoder.init(jax.random.key(0), jnp.zeros((1, RATE)))
  model = models.from_functions(encoder.apply, variables, sample_rate=RATE)
  info = TaskInfo(name="toy", metadata={
      "embedding_type": embedding_type, "prediction_type": "multiclass",
      "splits": ["train"], "evaluation": ["top1_acc"]},
      label_vocabulary=("a",), sample_rate=8000)  # resampled to 16 kHz
  pcm = (_audio(3, 0.5) * 3000).astype(np.int16)[:, :4000]
  split = SplitAudio(ids=("x", "y", "z"), audio=tuple(pcm),
                     labels=(("a",),) * 3, events=((),) * 3)
  out = embed.embed_split(model, info, split)
  rows = 3 if embedding_type == "scene" else 3 * 48  # 0.5 s: 48 frames
  assert out.x.shape == (rows, 6) and out.x.dtype == np.float32


def test_a_scene_function_gives_its_own_size():
  encoder = FrameEncoder()
  variables = encoder.init(jax.random.key(0), jnp.zeros((1, RATE)))

  def scene(params, audio):  # mean and max over frames: 2 x 6
    emb, _ = encoder.apply(params, audio)
    return jnp.concatenate([emb.mean(1), emb.max(1)], axis=-1)

  model = models.from_functions(encoder.apply, variables, sample_rate=RATE,
                                scene_embeddings=scene)
  assert (model.timestamp_embedding_size, model.scene_embedding_size) == (6,
                                                                          12)
  assert model.scene_embeddings is scene
  assert model.name == "from_functions"


def test_low_precision_outputs_are_cast_to_float32():
  encoder = FrameEncoder(dtype=jnp.bfloat16)
  variables = encoder.init(jax.random.key(0), jnp.zeros((1, RATE)))
  model = models.from_functions(encoder.apply, variables, sample_rate=RATE)
  emb, t_ms = model.timestamp_embeddings(model.params, _audio(2))
  assert emb.dtype == t_ms.dtype == jnp.float32
  assert model.scene_embeddings(model.params, _audio(2)).dtype == jnp.float32


def test_sharded_params_stay_where_they_are():
  encoder = FrameEncoder()
  variables = encoder.init(jax.random.key(0), jnp.zeros((1, RATE)))
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("model",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  sharded = jax.device_put(variables, sharding)
  model = models.from_functions(encoder.apply, sharded, sample_rate=RATE)
  for before, after in zip(jax.tree.leaves(sharded),
                           jax.tree.leaves(model.params)):
    assert after is before and after.sharding == sharding


@pytest.mark.parametrize("fn, message", [
    (lambda p, a: a, r"must return \(emb \[B, F, D\], t_ms \[B, F\]\)"),
    (lambda p, a: (a[:, None, :], a[:1, :1]), "must return"),
    (lambda p, a: (a[:, :, None] > 0, a), "need floats"),
])
def test_bad_functions_are_refused_in_one_line(fn, message):
  with pytest.raises(ValueError, match=message) as e:
    models.from_functions(fn, {}, sample_rate=RATE)
  assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="sample_rate must be an int >= 1"):
    models.from_functions(fn, {}, sample_rate=16000.0)


# --- torch ---------------------------------------------------------------------

# The same model twice: as a HEAR-API module file (for `hear:`), and as a
# class defined here (for `from_torch`, no module file).
HEAR_MODULE = textwrap.dedent('''
    import torch

    class Frames(torch.nn.Module):
      sample_rate = 16000
      scene_embedding_size = 5
      timestamp_embedding_size = 5

      def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(40, 5)

      def get_timestamp_embeddings(self, audio):
        n = audio.shape[1] // 400
        frames = audio[:, : n * 400].reshape(audio.shape[0], n, 40, 10)
        emb = torch.tanh(self.proj(frames.abs().mean(-1)))
        t = (torch.arange(n) * 25.0 + 12.5).expand(audio.shape[0], -1)
        return emb, t

      def get_scene_embeddings(self, audio):
        return self.get_timestamp_embeddings(audio)[0].amax(1)

    def load_model(model_file_path=""):
      return Frames()

    def get_timestamp_embeddings(audio, model):
      return model.get_timestamp_embeddings(audio)

    def get_scene_embeddings(audio, model):
      return model.get_scene_embeddings(audio)
''')


@pytest.fixture
def torch_frames(tmp_path, monkeypatch):
  """(the `hear:` model, a local class with the same code and weights)."""
  torch = pytest.importorskip("torch")
  (tmp_path / "frames_hear_module.py").write_text(HEAR_MODULE)
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, "frames_hear_module", raising=False)
  bridged = models.load_model("hear:frames_hear_module")
  namespace = {}
  exec(HEAR_MODULE, namespace)  # pylint: disable=exec-used
  local = namespace["Frames"]()
  assert not isinstance(local, type(bridged.params))  # not the file's class
  return torch, bridged, local


def test_from_torch_equals_the_hear_bridge(torch_frames):
  _, bridged, local = torch_frames
  model = models.from_torch(local)
  assert (model.name, model.jittable, model.params) == ("torch:Frames", False,
                                                        local)
  assert (model.sample_rate, model.timestamp_embedding_size,
          model.scene_embedding_size) == (16000, 5, 5)
  audio = _audio(4, 1.3)
  emb, t_ms = model.timestamp_embeddings(model.params, audio)
  want, want_t = bridged.timestamp_embeddings(bridged.params, audio)
  assert isinstance(emb, jax.Array) and emb.dtype == jnp.float32
  np.testing.assert_allclose(emb, want, atol=1e-6, rtol=0)
  np.testing.assert_allclose(t_ms, want_t, atol=1e-6, rtol=0)
  np.testing.assert_allclose(
      model.scene_embeddings(model.params, audio),
      bridged.scene_embeddings(bridged.params, audio), atol=1e-6, rtol=0)
  # Small batches: the bridge's blocks, concatenated, give the same.
  small = models.from_torch(local, batch_samples=2 * audio.shape[1])
  np.testing.assert_allclose(small.timestamp_embeddings(small.params,
                                                        audio)[0],
                             want, atol=1e-6, rtol=0)


def test_from_torch_with_functions_and_with_a_pair_of_callables(torch_frames):
  torch, bridged, local = torch_frames
  audio = _audio(2, 1.0)
  want = bridged.timestamp_embeddings(bridged.params, audio)[0]

  class Bare(torch.nn.Module):  # no HEAR attributes or methods
    def __init__(self, inner):
      super().__init__()
      self.inner = inner

  bare = Bare(local)
  model = models.from_torch(
      bare, sample_rate=16000,
      timestamp_embeddings=lambda a, m: m.inner.get_timestamp_embeddings(a))
  # Sizes from one call; the scene embedding is the mean over frames.
  assert (model.timestamp_embedding_size, model.scene_embedding_size) == (5, 5)
  np.testing.assert_allclose(model.timestamp_embeddings(model.params,
                                                        audio)[0], want,
                             atol=1e-6, rtol=0)
  np.testing.assert_allclose(model.scene_embeddings(model.params, audio),
                             np.mean(want, axis=1), atol=1e-6)
  pair = models.from_torch((local.get_timestamp_embeddings, None),
                           sample_rate=16000, name="frames")
  assert pair.name == "frames" and pair.scene_embedding_size == 5
  np.testing.assert_allclose(pair.timestamp_embeddings(pair.params, audio)[0],
                             want, atol=1e-6, rtol=0)


def test_from_torch_refuses_bad_input_in_one_line(torch_frames):
  torch, _, local = torch_frames
  cases = [
      (lambda: models.from_torch(torch.nn.Linear(2, 2), sample_rate=16000),
       "has no get_timestamp_embeddings method"),
      (lambda: models.from_torch(torch.nn.Linear(2, 2)), "no sample_rate"),
      (lambda: models.from_torch(local, sample_rate=0),
       "sample_rate must be an int >= 1"),
      (lambda: models.from_torch("frames"), "must be a torch.nn.Module or a"
                                            " pair of callables, got str"),
      (lambda: models.from_torch(local, batch_samples=0),
       "batch_samples must be an int >= 1"),
  ]
  for build, message in cases:
    with pytest.raises(ValueError, match=message) as e:
      build()
    assert "\n" not in str(e.value)


def test_torch_is_not_imported_for_jax_models():
  import subprocess  # pylint: disable=g-import-not-at-top
  code = ("import sys; from hear_jax import models; "
          "print('torch' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout.strip()
  assert out == "False"
  assert from_code.EXAMPLE_SECONDS > 0
