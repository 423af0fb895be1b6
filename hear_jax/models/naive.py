"""HEAR 2021's naive baseline: log-mel spectrum times a fixed random matrix.

`hearbaseline.naive` (2021.1.1), number for number: 44.1 kHz audio, centred
4096-sample frames (periodic Hann), |rFFT|^2, librosa's default 256-band mel
filterbank (its exact float32 weights), `log(mel + 1e-4)`, then a projection
by hearbaseline's own (256, 4096) matrix: `torch.rand(256, 4096) / 16` right
after `torch.manual_seed(0)`, reproduced without torch
(`hear_jax.models.torch_rand`). Timestamp embeddings every 50 ms (frame
centres at `k * 50` ms, from 0); the scene embedding is the mean of frames
taken every 250 ms, as hearbaseline does. Both are 4096-d, and equal
hearbaseline's up to float32 rounding (tests/test_models.py: <= 1e-5 of the
largest value on real clips).

  model = create()                       # hearbaseline.naive's matrix
  model = load_model("naive(seed=1)")    # torch.manual_seed(1)'s matrix
  emb, t_ms = jax.jit(model.timestamp_embeddings)(model.params, audio)
  scene = jax.jit(model.scene_embeddings)(model.params, audio)  # [B, 4096]

The embeddings are not normalised (hear-eval-kit does not normalise either):
they share a large common offset, which is why this baseline scores at chance
under HEAR's protocol (hear-reference.md §1.5).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hear_jax.models import interface
from hear_jax.models import spectral
from hear_jax.models import torch_rand

SAMPLE_RATE = 44100
N_FFT = 4096
N_MELS = 256
EMBEDDING_SIZE = 4096
LOG_OFFSET = 1e-4
TIMESTAMP_HOP_MS = 50.0
SCENE_HOP_MS = 250.0


def create(
    seed: int = 0,
    projection: np.ndarray | jax.Array | None = None,
    timestamp_hop_ms: float = TIMESTAMP_HOP_MS,
    scene_hop_ms: float = SCENE_HOP_MS,
) -> interface.EmbeddingModel:
  """Builds the naive baseline.

  Args:
    seed: the `torch.manual_seed` before hearbaseline's `torch.rand`; 0 (its
      `RandomProjectionMelEmbedding.seed`) is hearbaseline.naive itself.
    projection: an explicit float (256, 4096) matrix to use instead (e.g. the
      `projection` of a hearbaseline.naive checkpoint).
    timestamp_hop_ms: hop of timestamp embeddings (hearbaseline: 50).
    scene_hop_ms: hop of the frames averaged into the scene embedding (250).
  """
  if projection is None:
    if not (isinstance(seed, int) and 0 <= seed < 2**32):
      raise ValueError(f"naive.create: seed must be an integer in [0, 2**32),"
                       f" got {seed!r}")
    # hearbaseline divides by math.sqrt(n_mels) = 16.0: exact in float32.
    projection = (torch_rand.torch_rand(seed, (N_MELS, EMBEDDING_SIZE))
                  / np.float32(np.sqrt(N_MELS)))
  else:
    projection = np.asarray(projection, dtype=np.float32)
    if projection.shape != (N_MELS, EMBEDDING_SIZE):
      raise ValueError(
          f"naive.create: projection must have shape {(N_MELS, EMBEDDING_SIZE)}, "
          f"got {projection.shape}")
  for name, hop in (("timestamp_hop_ms", timestamp_hop_ms),
                    ("scene_hop_ms", scene_hop_ms)):
    if not hop > 0:
      raise ValueError(f"naive.create: {name} must be > 0, got {hop}")
  params = {
      "window": jnp.asarray(spectral.hann_window(N_FFT)),
      # Stored transposed so frames @ mel is a plain [.., 2049] x [2049, 256].
      "mel": jnp.asarray(spectral.mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS).T),
      "projection": jnp.asarray(projection),
  }
  return interface.EmbeddingModel(
      name="naive",
      sample_rate=SAMPLE_RATE,
      scene_embedding_size=EMBEDDING_SIZE,
      timestamp_embedding_size=EMBEDDING_SIZE,
      params=params,
      timestamp_embeddings=functools.partial(
          timestamp_embeddings, hop_ms=float(timestamp_hop_ms)),
      scene_embeddings=functools.partial(
          scene_embeddings, hop_ms=float(scene_hop_ms)),
  )


def timestamp_embeddings(
    params: dict[str, jax.Array], audio: jax.Array, hop_ms: float = TIMESTAMP_HOP_MS
) -> tuple[jax.Array, jax.Array]:
  """[B, T] audio -> (float32 [B, F, 4096], timestamps_ms float32 [B, F])."""
  audio = spectral.as_audio_batch(audio, "naive")
  starts, t_ms = spectral.frame_layout(audio.shape[1], N_FFT, hop_ms, SAMPLE_RATE)
  frames = spectral.frame_audio(audio, starts, N_FFT)
  power = spectral.power_spectrum(frames, params["window"])
  # HIGHEST keeps float32 accuracy on accelerators (whose default may be
  # TF32/bf16 passes): embeddings of different clips differ only slightly
  # around a large shared offset, so rounding would swamp the signal.
  mel = jnp.matmul(power, params["mel"], precision=jax.lax.Precision.HIGHEST)
  log_mel = jnp.log(mel + LOG_OFFSET)
  # One [B*F, 256] x [256, 4096] matmul for the whole batch.
  emb = jnp.matmul(log_mel, params["projection"], precision=jax.lax.Precision.HIGHEST)
  timestamps = jnp.broadcast_to(jnp.asarray(t_ms), emb.shape[:2])
  return emb, timestamps


def scene_embeddings(
    params: dict[str, jax.Array], audio: jax.Array, hop_ms: float = SCENE_HOP_MS
) -> jax.Array:
  """[B, T] audio -> float32 [B, 4096]: mean of frames every `hop_ms`."""
  emb, _ = timestamp_embeddings(params, audio, hop_ms=hop_ms)
  return jnp.mean(emb, axis=1)

