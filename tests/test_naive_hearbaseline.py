"""`naive` against the installed hearbaseline.naive (2021.1.1) itself.

hearbaseline.naive calls `librosa.filters.mel(44100, ...)` positionally,
which librosa >= 0.10 refuses: `torch_compat.install()` maps the positional
arguments back (environment.md §6's librosa shim) before it is imported.
"""

from __future__ import annotations

import io
import pathlib
import tarfile

import jax
import numpy as np
import pytest
import soundfile as sf

from hear_jax.models import naive
from hear_jax.models import torch_rand

torch = pytest.importorskip("torch")
pytest.importorskip("hearbaseline")

FIXTURE = pathlib.Path(
    "/work/shared/fixtures/hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz")
# max |ours - theirs| / max |theirs| (the measure).
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def hearbaseline_naive():
  from hear_jax.models import torch_compat  # pylint: disable=g-import-not-at-top
  torch_compat.install()
  from hearbaseline import naive as hb  # pylint: disable=g-import-not-at-top
  return hb, hb.load_model()


@pytest.fixture(scope="module")
def digit_clips():
  """Every clip of the spoken_digit fixture (1 s at 44.1 kHz), as
  hear-eval-kit reads them (soundfile, float32), in name order."""
  if not FIXTURE.exists():
    pytest.skip("spoken_digit fixture not present")
  clips = {}
  with tarfile.open(FIXTURE) as tar:
    for member in tar:
      if member.name.endswith(".wav"):
        audio, rate = sf.read(io.BytesIO(tar.extractfile(member).read()),
                              dtype="float32")
        assert rate == 44100
        clips[member.name] = audio
  return np.stack([clips[name] for name in sorted(clips)])


def _relative_difference(ours, theirs) -> float:
  return float(np.abs(np.asarray(ours) - theirs).max() / np.abs(theirs).max())


def _compare(hb, hb_model, audio: np.ndarray) -> tuple[float, float]:
  model = naive.create()
  with torch.no_grad():
    want, want_t = hb.get_timestamp_embeddings(torch.from_numpy(audio), hb_model)
    want_scene = hb.get_scene_embeddings(torch.from_numpy(audio), hb_model)
  emb, t_ms = jax.jit(model.timestamp_embeddings)(model.params, audio)
  scene = jax.jit(model.scene_embeddings)(model.params, audio)
  assert emb.shape == want.shape and scene.shape == want_scene.shape
  np.testing.assert_array_equal(np.asarray(t_ms), want_t.numpy())
  return (_relative_difference(emb, want.numpy()),
          _relative_difference(scene, want_scene.numpy()))


def test_projection_is_torchs(hearbaseline_naive):
  _, hb_model = hearbaseline_naive
  np.testing.assert_array_equal(np.asarray(naive.create().params["projection"]),
                                hb_model.projection.detach().numpy())
  for seed, shape in ((0, (7, 5)), (3, (1000,)), (2**32 - 1, (4, 4))):
    torch.manual_seed(seed)
    np.testing.assert_array_equal(torch_rand.torch_rand(seed, shape),
                                  torch.rand(*shape).numpy())


def test_mel_filterbank_is_hearbaselines(hearbaseline_naive):
  _, hb_model = hearbaseline_naive
  np.testing.assert_array_equal(np.asarray(naive.create().params["mel"]).T,
                                hb_model.mel_scale.numpy())


def test_spoken_digit_clips_match_hearbaseline(hearbaseline_naive, digit_clips):
  hb, hb_model = hearbaseline_naive
  timestamp, scene = _compare(hb, hb_model, digit_clips)
  assert timestamp <= TOLERANCE and scene <= TOLERANCE, (timestamp, scene)


def test_ten_second_clips_match_hearbaseline(hearbaseline_naive, digit_clips):
  """10 s of real speech (ten digits in a row), and one clip that starts with
  3 s of digital silence (the log floor)."""
  hb, hb_model = hearbaseline_naive
  speech = digit_clips[:20].reshape(2, 10 * 44100)
  silent_start = speech[1].copy()
  silent_start[:3 * 44100] = 0.0
  audio = np.stack([speech[0], silent_start])
  timestamp, scene = _compare(hb, hb_model, audio)
  assert timestamp <= TOLERANCE and scene <= TOLERANCE, (timestamp, scene)
