"""Tests of the built-in embedding models, their front end and spec loading."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import scipy.signal

from hear_jax import models
from hear_jax.models import loading
from hear_jax.models import melstats
from hear_jax.models import naive
from hear_jax.models import spectral
from hear_jax.models import validation


@pytest.fixture(scope="module")
def naive_model():
  return models.load_model("naive")


@pytest.fixture(scope="module")
def melstats_model():
  return models.load_model("melstats")


def _test_audio(n_sounds: int, seconds: float, sample_rate: int, seed: int = 0):
  """Noise plus a tone, with leading digital silence in one clip (log floor)."""
  rng = np.random.default_rng(seed)
  n = int(seconds * sample_rate)
  t = np.arange(n) / sample_rate
  x = 0.5 * rng.random((n_sounds, n)) - 0.25 + 0.3 * np.sin(2 * np.pi * 440.0 * t)
  x[-1, : n // 3] = 0.0
  return x.astype(np.float32)


# --- spec parsing -----------------------------------------------------------

def test_parse_spec_reads_literal_options():
  assert loading.parse_spec("naive") == ("naive", {})
  assert loading.parse_spec(" melstats(n_mels=128, context_ms=500.0) ") == (
      "melstats", {"n_mels": 128, "context_ms": 500.0})


def test_load_model_applies_options_and_names_model_canonically():
  model = models.load_model("melstats(sample_rate=22050, n_mels=32)")
  assert model.sample_rate == 22050
  assert model.timestamp_embedding_size == model.scene_embedding_size == 64
  assert model.name == "melstats(n_mels=32, sample_rate=22050)"
  assert models.load_model("naive").name == "naive"


def test_available_models_lists_only_models():
  names = models.available_models()
  assert {"melstats", "naive"} <= set(names)
  assert not {"interface", "loading", "spectral", "validation"} & set(names)


@pytest.mark.parametrize("spec", ["nope", "spectral", "interface"])
def test_unknown_model_error_lists_built_ins(spec):
  with pytest.raises(ValueError, match=r"^unknown model .*; built-in models: ") as error:
    models.load_model(spec)
  assert {"melstats", "naive"} <= set(str(error.value).split(": ")[-1].split(", "))


@pytest.mark.parametrize("spec, message", [
    ("melstats(bands=3)", "bad options for 'melstats'.*bands"),
    ("melstats(64)", "key=value"),
    ("melstats(n_mels=__import__('os').getcwd())", "not a Python literal"),
    ("melstats(", "expected 'name'"),
    ("hear_jax.models.naive", "expected 'name'"),
    ("hear:no_such_module_xyz", "not found"),
    ("melstats(sample_rate=8000)", "sample_rate must be one of"),
])
def test_bad_specs_raise_one_clear_value_error(spec, message):
  with pytest.raises(ValueError, match=message):
    models.load_model(spec)


# --- front end --------------------------------------------------------------

@pytest.mark.parametrize("sample_rate, n_fft, n_mels, fmax", [
    (44100, 4096, 256, None), (16000, 512, 64, None), (22050, 1024, 80, 8000.0)])
def test_mel_filterbank_is_librosas_bit_for_bit(sample_rate, n_fft, n_mels, fmax):
  ours = spectral.mel_filterbank(sample_rate, n_fft, n_mels, fmax=fmax)
  theirs = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmax=fmax)
  assert ours.dtype == np.float32 and ours.shape == theirs.shape
  np.testing.assert_array_equal(ours, theirs)  # bit for bit


def test_hann_window_is_periodic():
  np.testing.assert_allclose(
      spectral.hann_window(400), scipy.signal.get_window("hann", 400, fftbins=True),
      atol=1e-7)


def _hearbaseline_frame_starts(n_samples, frame_size, hop_ms, sample_rate):
  """hearbaseline.util.frame_audio's loop, as written there (2021.1.1)."""
  padded = n_samples + frame_size
  step = hop_ms / 1000.0 * sample_rate
  k, starts, stamps, start = 0, [], [], 0
  while True:
    starts.append(start)
    stamps.append(k * step / sample_rate * 1000.0)
    k += 1
    start = int(round(k * step))
    if not start + frame_size <= padded:
      break
  return np.array(starts), np.array(stamps, dtype=np.float32)


@pytest.mark.parametrize("seconds, hop_ms, sample_rate", [
    (1.07, 50.0, 44100), (1.98, 25.0, 44100), (0.0, 50.0, 44100),
    (4.0, 10.0, 22050), (2.74, 10.0, 16000)])
def test_frame_layout_matches_hearbaseline_loop(seconds, hop_ms, sample_rate):
  n = int(seconds * sample_rate)
  starts, t_ms = spectral.frame_layout(n, 4096, hop_ms, sample_rate)
  want_starts, want_t = _hearbaseline_frame_starts(n, 4096, hop_ms, sample_rate)
  np.testing.assert_array_equal(starts, want_starts)
  np.testing.assert_array_equal(t_ms, want_t)


# --- naive ------------------------------------------------------------------

def _naive_reference(audio, projection, hop_ms):
  """hearbaseline.naive's pipeline in float64 numpy, with librosa's filterbank."""
  frame_size, sample_rate = 4096, 44100
  padded = np.pad(audio.astype(np.float64), ((0, 0), (2048, 2048)))
  starts, t_ms = _hearbaseline_frame_starts(audio.shape[1], frame_size, hop_ms, sample_rate)
  frames = np.stack([padded[:, s:s + frame_size] for s in starts], axis=1)
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame_size) / frame_size)
  power = np.abs(np.fft.rfft(frames * window)) ** 2
  mel = power @ librosa.filters.mel(sr=sample_rate, n_fft=4096, n_mels=256).T
  return np.log(mel + 1e-4) @ projection.astype(np.float64), t_ms


@pytest.mark.parametrize("seconds, hop_ms", [(1.07, 50.0), (0.5, 25.0)])
def test_naive_matches_numpy_reference(seconds, hop_ms):
  model = naive.create(timestamp_hop_ms=hop_ms)
  audio = _test_audio(2, seconds, 44100)
  emb, t_ms = jax.jit(model.timestamp_embeddings)(model.params, audio)
  want, want_t = _naive_reference(audio, np.asarray(model.params["projection"]), hop_ms)
  assert emb.dtype == jnp.float32 and emb.shape == want.shape
  np.testing.assert_array_equal(np.asarray(t_ms), np.broadcast_to(want_t, want.shape[:2]))
  assert np.abs(np.asarray(emb) - want).max() <= 1e-4 * np.abs(want).max()


def test_naive_scene_is_mean_of_250ms_frames(naive_model):
  audio = _test_audio(2, 1.07, 44100, seed=1)
  scene = jax.jit(naive_model.scene_embeddings)(naive_model.params, audio)
  frames, t_ms = _naive_reference(audio, np.asarray(naive_model.params["projection"]), 250.0)
  np.testing.assert_array_equal(t_ms, [0, 250, 500, 750, 1000])
  want = frames.mean(axis=1)
  assert np.abs(np.asarray(scene) - want).max() <= 1e-4 * np.abs(want).max()


# sha256 of hearbaseline.naive's projection (float32, C order): torch's
# `manual_seed(0); torch.rand(256, 4096) / 16`, taken from torch 2.13 and
# checked against torch again in tests/test_naive_hearbaseline.py.
HEARBASELINE_NAIVE_PROJECTION_SHA256 = (
    "20e99150139e1b13ca16625824f227953bdc706454697f43dbf861acd49690ac")


def test_naive_projection_is_hearbaselines_matrix_without_torch():
  import hashlib  # pylint: disable=g-import-not-at-top
  projection = np.asarray(naive.create().params["projection"])
  assert projection.shape == (256, 4096) and projection.dtype == np.float32
  assert hashlib.sha256(np.ascontiguousarray(projection).tobytes()).hexdigest() == (
      HEARBASELINE_NAIVE_PROJECTION_SHA256)
  # A few values as torch prints them (float.hex: exact).
  assert [float(projection[i, j]).hex() for i, j in ((0, 0), (0, 1), (255, 4095), (128, 2048))] == [
      "0x1.fc2ab00000000p-6", "0x1.89545e0000000p-5", "0x1.265f300000000p-8",
      "0x1.28daa20000000p-5"]
  # torch.rand's float32: 24 random bits, so every entry * 2**28 is an integer.
  scaled = projection.astype(np.float64) * 2.0**28
  np.testing.assert_array_equal(scaled, np.floor(scaled))
  assert projection.min() >= 0.0 and projection.max() < 1.0 / 16.0
  np.testing.assert_array_equal(projection, naive.create(seed=0).params["projection"])
  assert not np.array_equal(projection, naive.create(seed=1).params["projection"])
  injected = np.full((256, 4096), 0.5, np.float32)
  np.testing.assert_array_equal(naive.create(projection=injected).params["projection"], injected)
  with pytest.raises(ValueError, match="projection must have shape"):
    naive.create(projection=np.zeros((4096, 256)))
  with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
    naive.create(seed=-1)


# --- melstats ---------------------------------------------------------------

def test_melstats_log_mel_matches_librosa(melstats_model):
  audio = _test_audio(1, 0.6, 16000)
  log_mel, frame_ms = melstats.log_mel_frames(melstats_model.params, audio, 16000, 512)
  # Same 400 samples centred on k * 160; librosa centres the window inside
  # 512 points, which only changes the phase, not the power spectrum.
  power = librosa.feature.melspectrogram(
      y=audio[0].astype(np.float64), sr=16000, n_fft=512, win_length=400,
      hop_length=160, window="hann", center=True, pad_mode="constant", power=2.0,
      n_mels=64)
  want = np.log(power.T + 1e-6)
  assert log_mel.shape == (1,) + want.shape
  np.testing.assert_allclose(np.asarray(log_mel[0]), want, atol=2e-3)
  np.testing.assert_allclose(frame_ms, 10.0 * np.arange(want.shape[0]), atol=1e-3)


def test_melstats_windowed_stats_match_direct_computation(melstats_model):
  audio = _test_audio(2, 1.07, 16000, seed=3)
  emb, t_ms = jax.jit(melstats_model.timestamp_embeddings)(melstats_model.params, audio)
  log_mel, frame_ms = melstats.log_mel_frames(melstats_model.params, audio, 16000, 512)
  log_mel = np.asarray(log_mel, np.float64)
  n_frames = log_mel.shape[1]
  assert emb.shape == (2, len(frame_ms[::5]), 128)
  np.testing.assert_array_equal(np.asarray(t_ms[0]), frame_ms[::5])
  for j, centre in enumerate(range(0, n_frames, 5)):
    window = log_mel[:, max(centre - 12, 0):min(centre + 12, n_frames - 1) + 1]
    np.testing.assert_allclose(emb[:, j, :64], window.mean(axis=1), atol=1e-4)
    np.testing.assert_allclose(emb[:, j, 64:], window.std(axis=1), atol=1e-4)
  scene = jax.jit(melstats_model.scene_embeddings)(melstats_model.params, audio)
  np.testing.assert_allclose(scene[:, :64], log_mel.mean(axis=1), atol=1e-4)
  np.testing.assert_allclose(scene[:, 64:], log_mel.std(axis=1), atol=1e-4)


def test_melstats_stationary_sine_peaks_in_its_band_with_no_spread(melstats_model):
  freq = 1234.5
  t = np.arange(16000) / 16000
  audio = np.stack([0.25 * np.sin(2 * np.pi * freq * t), 0.5 * np.sin(2 * np.pi * freq * t)])
  emb, _ = jax.jit(melstats_model.timestamp_embeddings)(
      melstats_model.params, audio.astype(np.float32))
  emb = np.asarray(emb)
  interior = emb[:, 3:-3]  # windows whose 250 ms context is all inside the clip
  peak = interior[0, :, :64].mean(axis=0).argmax()
  edges = spectral.mel_to_hz(np.linspace(0, spectral.hz_to_mel(8000.0), 66))
  assert edges[peak] < freq < edges[peak + 2]  # the triangle of band `peak`
  assert np.all(interior[:, :, :64].argmax(axis=-1) == peak)
  assert interior[:, :, 64 + peak].max() < 0.01  # stationary: no spread
  # Twice the amplitude is 4x the power: log-mel moves up by log(4).
  np.testing.assert_allclose(interior[1, :, peak] - interior[0, :, peak], np.log(4.0), atol=1e-3)


def test_melstats_rejects_impossible_options():
  with pytest.raises(ValueError, match="multiple of 10.0 ms"):
    melstats.create(timestamp_hop_ms=25.0)
  with pytest.raises(ValueError, match="too many"):
    melstats.create(n_mels=256)


# --- both models ------------------------------------------------------------

@pytest.mark.parametrize("spec", ["naive", "melstats", "melstats(sample_rate=44100)"])
def test_models_pass_hear_validator_rules(spec):
  assert validation.check_hear_api(models.load_model(spec)) == []


@pytest.mark.parametrize("spec, seconds, n_timestamps", [
    ("naive", 1.07, 22), ("naive", 4.0, 81), ("melstats", 1.98, 40)])
def test_timestamps_cover_the_clip_every_50ms(spec, seconds, n_timestamps):
  model = models.load_model(spec)
  audio = np.zeros((2, int(seconds * model.sample_rate)), np.float64)  # float64 in
  emb, t_ms = jax.jit(model.timestamp_embeddings)(model.params, audio)
  assert emb.dtype == jnp.float32 and t_ms.dtype == jnp.float32
  assert emb.shape == (2, n_timestamps, model.timestamp_embedding_size)
  np.testing.assert_allclose(t_ms, np.broadcast_to(50.0 * np.arange(n_timestamps), t_ms.shape))


@pytest.mark.parametrize("model_fixture", ["naive_model", "melstats_model"])
def test_jit_is_deterministic_and_clips_are_independent(model_fixture, request):
  model = request.getfixturevalue(model_fixture)
  audio = _test_audio(3, 0.7, model.sample_rate, seed=5)
  timestamp_fn = jax.jit(model.timestamp_embeddings)
  first, _ = timestamp_fn(model.params, audio)
  second, _ = timestamp_fn(model.params, audio)
  np.testing.assert_array_equal(first, second)
  alone, _ = timestamp_fn(model.params, audio[1:2])
  np.testing.assert_allclose(alone[0], first[1], rtol=1e-5, atol=1e-5)
  eager = model.scene_embeddings(model.params, audio)
  jitted = jax.jit(model.scene_embeddings)(model.params, audio)
  np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("model_fixture", ["naive_model", "melstats_model"])
def test_models_reject_unbatched_audio(model_fixture, request):
  model = request.getfixturevalue(model_fixture)
  with pytest.raises(ValueError, match=r"audio must be \[n_sounds, n_samples\]"):
    model.timestamp_embeddings(model.params, np.zeros(1000, np.float32))


# --- validator rules --------------------------------------------------------

def _outputs(timestamps, size=8):
  timestamps = np.asarray([timestamps, timestamps], np.float32)
  return np.zeros(timestamps.shape + (size,), np.float32), timestamps


def test_validator_accepts_regular_covering_timestamps():
  emb, ts = _outputs(50.0 * np.arange(22))
  assert validation.check_timestamp_outputs(emb, ts, 2, 1.07, 8) == []


@pytest.mark.parametrize("timestamps, message", [
    ([0, 50, 100, 160, 200], "deviate"),
    (50.0 * np.arange(23), "past the"),
])
def test_validator_errors(timestamps, message):
  emb, ts = _outputs(timestamps)
  with pytest.raises(validation.HearApiError, match=message):
    validation.check_timestamp_outputs(emb, ts, 2, 1.07, 8)


def test_validator_errors_on_dtype_and_shape():
  emb, ts = _outputs(50.0 * np.arange(22))
  with pytest.raises(validation.HearApiError, match="not float32"):
    validation.check_timestamp_outputs(emb.astype(np.float64), ts, 2, 1.07, 8)
  with pytest.raises(validation.HearApiError, match="embedding size 8"):
    validation.check_timestamp_outputs(emb, ts, 2, 1.07, 16)
  with pytest.raises(validation.HearApiError, match=r"start with \(3, F\)"):
    validation.check_timestamp_outputs(emb, ts, 3, 1.07, 8)


@pytest.mark.parametrize("timestamps, message", [
    (100.0 * np.arange(11), "gap 100"),
    (75 + 50.0 * np.arange(19), "first timestamp"),
    (50.0 * np.arange(20), "uncovered"),
])
def test_validator_warnings(timestamps, message):
  emb, ts = _outputs(timestamps)
  warnings = validation.check_timestamp_outputs(emb, ts, 2, 1.07, 8)
  assert any(message in w for w in warnings), warnings
