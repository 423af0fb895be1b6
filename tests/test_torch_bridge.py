"""Tests of the HEAR-API torch bridge (`hear:` specs), its DLPack hand-over,
the compatibility shims and the comma split of config.model."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from hear_jax import models
from hear_jax import run
from hear_jax.models import loading
from hear_jax.models import naive
from hear_jax.models import validation

torch = pytest.importorskip("torch")
from hear_jax.models import torch_bridge  # pylint: disable=g-import-not-at-top
from hear_jax.models import torch_compat  # pylint: disable=g-import-not-at-top

# A HEAR-API module that records what the bridge hands it.
FAKE_MODULE = textwrap.dedent('''
    import torch

    CALLS = []     # (batch rows, input data_ptr, inference mode on)
    OUTPUTS = []   # the embedding tensors returned
    LOADED = []    # (args, kwargs) of load_model

    class Model(torch.nn.Module):
      sample_rate = 16000
      scene_embedding_size = 3
      timestamp_embedding_size = 3

      def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def load_model(model_file_path="", scale=1.0):
      LOADED.append((model_file_path, scale))
      return Model(scale)

    def _frames(audio, model):
      CALLS.append((audio.shape[0], audio.data_ptr(), torch.is_inference_mode_enabled()))
      frames = audio[:, : audio.shape[1] // 100 * 100].reshape(audio.shape[0], -1, 100)
      emb = torch.stack([frames.mean(-1), frames.std(-1), frames.amax(-1)], -1)
      emb = (emb * model.scale).contiguous()
      OUTPUTS.append(emb)
      return emb

    def get_timestamp_embeddings(audio, model):
      emb = _frames(audio, model)
      # int64 timestamps, as hearbaseline.torchcrepe returns them
      t = torch.arange(emb.shape[1]).expand(emb.shape[0], -1) * 6 + 3
      return emb, t

    def get_scene_embeddings(audio, model):
      return _frames(audio, model).mean(1).double()  # float64: bridge casts
''')


@pytest.fixture
def fake(tmp_path, monkeypatch):
  (tmp_path / "fake_hear_module.py").write_text(FAKE_MODULE)
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, "fake_hear_module", raising=False)
  import fake_hear_module  # pylint: disable=g-import-not-at-top
  return fake_hear_module


def _expected(audio: np.ndarray, scale: float = 1.0) -> np.ndarray:
  frames = audio[:, : audio.shape[1] // 100 * 100].reshape(audio.shape[0], -1, 100)
  return scale * np.stack(
      [frames.mean(-1), frames.std(-1, ddof=1), frames.max(-1)], -1)


# --- specs ------------------------------------------------------------------

def test_hear_specs_parse_dotted_modules_and_literal_options():
  assert loading.parse_spec("hearbaseline.torchcrepe", dotted=True) == (
      "hearbaseline.torchcrepe", {})
  assert loading.parse_spec("a.b.c(model_file='/w/x.pt', k=[1, 2])", dotted=True) == (
      "a.b.c", {"model_file": "/w/x.pt", "k": [1, 2]})
  with pytest.raises(ValueError, match="expected 'name'"):
    loading.parse_spec("a.b")  # built-in names are plain
  with pytest.raises(ValueError, match="expected 'name'"):
    models.load_model("hear:m(model_file=/w/x.pt)")  # unquoted path
  with pytest.raises(ValueError, match="not a Python literal"):
    models.load_model("hear:os.path(model_file=__import__('os').getcwd())")


def test_options_and_weights_reach_load_model(fake):
  model = models.load_model("hear:fake_hear_module(scale=2.0, model_file='w.pt')")
  assert fake.LOADED == [("w.pt", 2.0)]
  assert model.name == "hear:fake_hear_module(model_file='w.pt', scale=2.0)"
  assert not model.jittable and model.sample_rate == 16000
  assert models.load_model("hear:fake_hear_module").name == "hear:fake_hear_module"
  assert fake.LOADED[-1] == ("", 1.0)  # no weights: load_model() as the runner


@pytest.mark.parametrize("spec, message", [
    ("hear:no_such_hear_module_xyz", "not found"),
    ("hear:json", "lacks the HEAR API function"),
    ("hear:fake_hear_module(size=3)", "bad options for load_model"),
    ("hear:fake_hear_module(model_file=3)", "model_file must be a quoted path"),
])
def test_bad_hear_specs_raise_one_clear_value_error(fake, spec, message):
  with pytest.raises(ValueError, match=message):
    models.load_model(spec)


def test_model_specs_split_only_top_level_commas():
  config = ml_collections.ConfigDict({"model": (
      "naive, hear:a.b(model_file='/x,y.pt', k=[1, 2]),crepe(conv='direct'),,")})
  assert run.model_specs(config) == [
      "naive", "hear:a.b(model_file='/x,y.pt', k=[1, 2])", "crepe(conv='direct')"]


def test_listing_and_loading_built_ins_never_imports_torch():
  code = ("import sys; from hear_jax import models; models.available_models(); "
          "models.load_model('naive'); assert 'torch' not in sys.modules, 'torch'")
  subprocess.run([sys.executable, "-c", code], check=True)


# --- running ----------------------------------------------------------------

def test_embeddings_come_back_as_float32_jax_arrays(fake):
  model = models.load_model("hear:fake_hear_module(scale=3.0)")
  audio = np.random.default_rng(0).uniform(-1, 1, (2, 1000)).astype(np.float32)
  emb, t_ms = model.timestamp_embeddings(model.params, audio)
  assert isinstance(emb, jax.Array) and emb.dtype == jnp.float32
  assert t_ms.dtype == jnp.float32  # from int64
  np.testing.assert_allclose(emb, _expected(audio, 3.0), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(t_ms, np.broadcast_to(3.0 + 6 * np.arange(10), (2, 10)))
  scene = model.scene_embeddings(model.params, jnp.asarray(audio))
  assert scene.dtype == jnp.float32  # from float64
  np.testing.assert_allclose(scene, _expected(audio, 3.0).mean(1), rtol=1e-5, atol=1e-6)
  assert all(inference for _, _, inference in fake.CALLS)


def test_dlpack_hand_over_shares_buffers(fake):
  model = models.load_model("hear:fake_hear_module")
  audio = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 800)), jnp.float32)
  emb, _ = model.timestamp_embeddings(model.params, audio)
  # JAX -> torch: the module saw JAX's own buffer ...
  assert fake.CALLS[-1][1] == audio.unsafe_buffer_pointer()
  # ... and torch -> JAX: the embeddings are the module's tensor, not a copy.
  assert emb.unsafe_buffer_pointer() == fake.OUTPUTS[-1].data_ptr()
  # numpy in: shared too.
  host = np.ascontiguousarray(np.asarray(audio))
  model.timestamp_embeddings(model.params, host)
  assert fake.CALLS[-1][1] == host.ctypes.data
  t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
  assert torch_bridge.to_jax(t).unsafe_buffer_pointer() == t.data_ptr()


def test_sub_batches_bound_memory_and_concatenate_in_order(fake):
  model = torch_bridge.load_hear_model("fake_hear_module", batch_samples=2500)
  audio = np.random.default_rng(2).uniform(-1, 1, (5, 1000)).astype(np.float32)
  emb, t_ms = model.timestamp_embeddings(model.params, audio)
  assert [rows for rows, _, _ in fake.CALLS] == [2, 2, 1]
  assert emb.shape == (5, 10, 3) and t_ms.shape == (5, 10)
  np.testing.assert_allclose(emb, _expected(audio), rtol=1e-5, atol=1e-6)


# --- real HEAR 2021 modules -------------------------------------------------

def test_hearbaseline_naive_matches_the_jax_port():
  pytest.importorskip("hearbaseline")
  bridged = models.load_model("hear:hearbaseline.naive")
  ported = naive.create()  # hearbaseline's own matrix, made without torch
  audio = np.random.default_rng(3).uniform(-0.5, 0.5, (2, 22050)).astype(np.float32)
  theirs, their_t = bridged.timestamp_embeddings(bridged.params, audio)
  ours, our_t = jax.jit(ported.timestamp_embeddings)(ported.params, audio)
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(our_t, their_t)
  assert validation.check_hear_api(bridged) == []


# --- compatibility shims ----------------------------------------------------

def test_torchaudio_stub_loads_and_resamples(tmp_path, monkeypatch):
  import importlib.util  # pylint: disable=g-import-not-at-top
  import soundfile  # pylint: disable=g-import-not-at-top
  for name in ("torchaudio", "torchaudio.functional", "torchaudio.transforms"):
    monkeypatch.delitem(sys.modules, name, raising=False)
  real = importlib.util.find_spec("torchaudio") is not None
  assert torch_compat.install_torchaudio_stub() is not real
  if real:
    pytest.skip("a real torchaudio is installed; the stub stays out")
  import torchaudio  # pylint: disable=g-import-not-at-top
  import torchaudio.transforms  # pylint: disable=g-import-not-at-top
  t = np.arange(44100) / 44100
  tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
  out = torchaudio.transforms.Resample(44100, 16000)(torch.from_numpy(tone)[None])
  assert out.shape == (1, 16000) and out.dtype == torch.float32
  peak = np.argmax(np.abs(np.fft.rfft(out[0].numpy())))
  assert peak == 440  # 1 Hz bins over 1 s
  path = tmp_path / "x.wav"
  soundfile.write(path, tone, 44100)
  loaded, rate = torchaudio.load(path)
  assert rate == 44100 and loaded.shape == (1, 44100)
  assert torch_compat.install_torchaudio_stub() is False  # already there


def test_librosa_takes_2021_positional_arguments(monkeypatch):
  librosa = pytest.importorskip("librosa")
  monkeypatch.setattr(librosa.filters, "mel", librosa.filters.mel)  # undo after
  monkeypatch.setattr(librosa, "resample", librosa.resample)
  torch_compat.install_librosa_positional_args()
  legacy = librosa.filters.mel(22050, 1024, n_mels=40)  # hearbaseline.naive style
  np.testing.assert_array_equal(
      legacy, librosa.filters.mel(sr=22050, n_fft=1024, n_mels=40))
  assert torch_compat.install_librosa_positional_args() == []  # idempotent
  with pytest.raises(TypeError, match="multiple values"):
    librosa.filters.mel(22050, 1024, sr=16000)


def test_accept_positional_leaves_plain_functions_alone():
  def plain(a, b=1):
    return a + b

  def keyword_only(a, *, b, c=0):
    return a + 10 * b + 100 * c

  assert torch_compat.accept_positional(plain) is plain
  legacy = torch_compat.accept_positional(keyword_only)
  assert legacy(1, 2, 3) == 321 and legacy(1, b=2) == 21
  with pytest.raises(TypeError, match="at most 3 arguments"):
    legacy(1, 2, 3, 4)
