"""Log-mel statistics: a classical, honest baseline (and the demo default).

Front end: 25 ms periodic-Hann frames every 10 ms (centred, HEAR framing as in
`spectral.frame_layout`), zero-padded to the next power of two, power
spectrum, `n_mels` Slaney mel bands (librosa's default filterbank, 0 Hz to
Nyquist), then `log(mel + 1e-6)`. The power spectrum is unscaled (a full-scale
sine peaks around 1e4 in its band), so 1e-6 sits ~100 dB below it and only
floors digital silence.

Embeddings are the per-band mean and standard deviation (population, ddof=0)
of the log-mel frames, `[mean_0..mean_{M-1}, std_0..std_{M-1}]`, D = 2 * M:

- timestamp embeddings every 50 ms, at frame centres `0, 50, 100, ...` ms up
  to the clip's end; each pools the frames whose centres lie within
  +-context_ms/2 (default 250 ms context: 25 frames), clipped at the clip's
  edges (fewer frames there, never padding);
- the scene embedding pools every frame of the clip.

  model = create()                        # or load_model("melstats(n_mels=128)")
  emb, t_ms = jax.jit(model.timestamp_embeddings)(model.params, audio)  # [B, F, 128]
  scene = jax.jit(model.scene_embeddings)(model.params, audio)          # [B, 128]
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hear_jax.models import interface
from hear_jax.models import spectral

WINDOW_MS = 25.0
FRAME_HOP_MS = 10.0
LOG_OFFSET = 1e-6
HEAR_SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)


def create(
    n_mels: int = 64,
    sample_rate: int = 16000,
    context_ms: float = 250.0,
    timestamp_hop_ms: float = 50.0,
) -> interface.EmbeddingModel:
  """Builds the log-mel statistics model.

  Args:
    n_mels: number of mel bands M; embeddings have 2 * M dimensions.
    sample_rate: input rate, one of HEAR's rates.
    context_ms: span of frame centres pooled into one timestamp embedding.
    timestamp_hop_ms: timestamp spacing, a multiple of the 10 ms frame hop.
  """
  if sample_rate not in HEAR_SAMPLE_RATES:
    raise ValueError(
        f"melstats.create: sample_rate must be one of {HEAR_SAMPLE_RATES}, "
        f"got {sample_rate}")
  stride = timestamp_hop_ms / FRAME_HOP_MS
  if stride < 1 or stride != int(stride):
    raise ValueError(
        f"melstats.create: timestamp_hop_ms must be a positive multiple of "
        f"{FRAME_HOP_MS} ms, got {timestamp_hop_ms}")
  if not (isinstance(n_mels, int) and n_mels >= 1):
    raise ValueError(f"melstats.create: n_mels must be an int >= 1, got {n_mels!r}")
  if context_ms < 0:
    raise ValueError(f"melstats.create: context_ms must be >= 0, got {context_ms}")
  window_size = int(round(WINDOW_MS / 1000.0 * sample_rate))
  n_fft = 1 << (window_size - 1).bit_length()
  mel = spectral.mel_filterbank(sample_rate, n_fft, n_mels)
  if not (mel > 0).any(axis=1).all():
    raise ValueError(
        f"melstats.create: n_mels={n_mels} is too many for a {n_fft}-point FFT "
        f"at {sample_rate} Hz (some bands contain no FFT bin)")
  params = {
      "window": jnp.asarray(spectral.hann_window(window_size)),
      "mel": jnp.asarray(mel.T),
  }
  # Frames whose centres are within +-context/2 of the timestamp; the tiny
  # epsilon keeps an exact half-multiple (e.g. 120 ms) inside.
  half_context = int(np.floor(context_ms / 2.0 / FRAME_HOP_MS + 1e-9))
  config = dict(sample_rate=sample_rate, n_fft=n_fft)
  return interface.EmbeddingModel(
      name="melstats",
      sample_rate=sample_rate,
      scene_embedding_size=2 * n_mels,
      timestamp_embedding_size=2 * n_mels,
      params=params,
      timestamp_embeddings=functools.partial(
          timestamp_embeddings, stride=int(stride), half_context=half_context,
          **config),
      scene_embeddings=functools.partial(scene_embeddings, **config),
  )


def log_mel_frames(
    params: dict[str, jax.Array], audio: jax.Array, sample_rate: int, n_fft: int
) -> tuple[jax.Array, np.ndarray]:
  """[B, T] audio -> (log-mel [B, N, M] every 10 ms, frame centres in ms [N])."""
  audio = spectral.as_audio_batch(audio, "melstats")
  window = params["window"]
  starts, t_ms = spectral.frame_layout(
      audio.shape[1], window.shape[0], FRAME_HOP_MS, sample_rate)
  frames = spectral.frame_audio(audio, starts, window.shape[0])
  power = spectral.power_spectrum(frames, window, n_fft)
  mel = jnp.matmul(power, params["mel"], precision=jax.lax.Precision.HIGHEST)
  return jnp.log(mel + LOG_OFFSET), t_ms


def timestamp_embeddings(
    params: dict[str, jax.Array],
    audio: jax.Array,
    sample_rate: int = 16000,
    n_fft: int = 512,
    stride: int = 5,
    half_context: int = 12,
) -> tuple[jax.Array, jax.Array]:
  """[B, T] audio -> (float32 [B, F, 2M], timestamps_ms float32 [B, F])."""
  log_mel, frame_ms = log_mel_frames(params, audio, sample_rate, n_fft)
  mean, std = _windowed_mean_std(log_mel, stride, half_context)
  emb = jnp.concatenate([mean, std], axis=-1)
  t_ms = jnp.asarray(frame_ms[::stride])
  return emb, jnp.broadcast_to(t_ms, emb.shape[:2])


def scene_embeddings(
    params: dict[str, jax.Array], audio: jax.Array, sample_rate: int = 16000,
    n_fft: int = 512,
) -> jax.Array:
  """[B, T] audio -> float32 [B, 2M]: per-band mean and std over the clip."""
  log_mel, _ = log_mel_frames(params, audio, sample_rate, n_fft)
  return jnp.concatenate([jnp.mean(log_mel, axis=1), jnp.std(log_mel, axis=1)], axis=-1)


def _windowed_mean_std(
    x: jax.Array, stride: int, half: int
) -> tuple[jax.Array, jax.Array]:
  """Mean and std over frames [stride*j - half, stride*j + half] of x [B, N, M].

  Windows are clipped to [0, N). Each window's frames are gathered (static
  indices, (2*half+1)/stride times the log-mel's size) so the variance is a
  two-pass mean of squared deviations: E[x^2] - E[x]^2 from running sums
  cancels badly in float32 (a silent stretch, log-mel -13.8, came out with
  std ~4e-3 instead of 0).
  """
  n_frames = x.shape[1]
  n_out = (n_frames - 1) // stride + 1
  indices = stride * np.arange(n_out)[:, None] + np.arange(-half, half + 1)[None, :]
  valid = (indices >= 0) & (indices < n_frames)
  weights = valid / valid.sum(axis=1, keepdims=True)
  weights = jnp.asarray(weights, jnp.float32)[None, :, :, None]
  windows = x[:, np.clip(indices, 0, n_frames - 1)]  # [B, n_out, 2*half+1, M]
  mean = jnp.sum(windows * weights, axis=2)
  var = jnp.sum(jnp.square(windows - mean[:, :, None]) * weights, axis=2)
  return mean, jnp.sqrt(var)
