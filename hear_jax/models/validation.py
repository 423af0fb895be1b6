"""HEAR API checks of hear-validator 2021.0.6, for any `EmbeddingModel`.

Runs the model on the validator's inputs (uniform noise in [-1, 1), batches of
2 clips of 1.07 s, 1.98 s and 4.0 s for timestamp embeddings, 4 clips of
2.74 s for scene embeddings) and applies its rules (hear-reference.md §1.4).
Errors raise `HearApiError` (a ValueError) at the first failed rule, as the
validator stops there; warnings are returned.

  warnings = check_hear_api(load_model("melstats"))
  for w in warnings: print("warning:", w)
"""

from __future__ import annotations

import jax
import numpy as np

from hear_jax.models import interface

SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)
TIMESTAMP_CHECKS = ((2, 1.07), (2, 1.98), (2, 4.0))  # (n_sounds, seconds)
SCENE_CHECK = (4, 2.74)
SUGGESTED_MAX_HOP_MS = 50.0


class HearApiError(ValueError):
  """A model breaks a rule that hear-validator treats as an error."""


def check_hear_api(model: interface.EmbeddingModel, seed: int = 0) -> list[str]:
  """Checks `model` against hear-validator 2021.0.6; returns the warnings."""
  _check_attributes(model)
  rng = np.random.default_rng(seed)
  timestamp_fn, scene_fn = model.timestamp_embeddings, model.scene_embeddings
  if model.jittable:
    timestamp_fn, scene_fn = jax.jit(timestamp_fn), jax.jit(scene_fn)
  found: list[str] = []
  for n_sounds, seconds in TIMESTAMP_CHECKS:
    audio = _noise(rng, n_sounds, seconds, model.sample_rate)
    emb, timestamps = timestamp_fn(model.params, audio)
    found += check_timestamp_outputs(
        np.asarray(emb), np.asarray(timestamps), n_sounds, seconds,
        model.timestamp_embedding_size)
  n_sounds, seconds = SCENE_CHECK
  audio = _noise(rng, n_sounds, seconds, model.sample_rate)
  scene = np.asarray(scene_fn(model.params, audio))
  where = f"scene_embeddings on {n_sounds} x {seconds} s"
  if scene.dtype != np.float32:
    raise HearApiError(f"{where}: embeddings are {scene.dtype}, not float32")
  if scene.shape != (n_sounds, model.scene_embedding_size):
    raise HearApiError(
        f"{where}: embeddings have shape {scene.shape}, expected "
        f"{(n_sounds, model.scene_embedding_size)}")
  return found


def check_timestamp_outputs(
    emb: np.ndarray, timestamps: np.ndarray, n_sounds: int, seconds: float,
    embedding_size: int,
) -> list[str]:
  """Validator rules 5-6 on one timestamp-embedding result; returns warnings."""
  where = f"timestamp_embeddings on {n_sounds} x {seconds} s"
  if emb.dtype != np.float32:
    raise HearApiError(f"{where}: embeddings are {emb.dtype}, not float32")
  if emb.ndim != 3 or timestamps.ndim != 2:
    raise HearApiError(
        f"{where}: need embeddings [n, F, D] and timestamps [n, F], got "
        f"{emb.shape} and {timestamps.shape}")
  if emb.shape[0] != n_sounds or emb.shape[:2] != timestamps.shape:
    raise HearApiError(
        f"{where}: embeddings {emb.shape} and timestamps {timestamps.shape} "
        f"do not both start with ({n_sounds}, F)")
  if emb.shape[2] != embedding_size:
    raise HearApiError(
        f"{where}: embedding size {emb.shape[2]} != timestamp_embedding_size "
        f"{embedding_size}")
  found = []
  if timestamps.shape[1] <= 1:
    return found
  gaps = np.diff(timestamps)
  mean_gap, max_gap = np.mean(gaps), np.max(gaps)
  length_ms = 1000.0 * seconds
  if max_gap > SUGGESTED_MAX_HOP_MS:
    found.append(f"{where}: largest timestamp gap {max_gap} ms > 50 ms")
  deviation = np.max(np.abs(gaps - mean_gap))
  if deviation > 1.0:
    raise HearApiError(
        f"{where}: timestamp gaps deviate by {deviation} ms (> 1 ms) from "
        f"their mean {mean_gap} ms")
  first, last = np.min(timestamps), np.max(timestamps)
  if first > mean_gap:
    found.append(f"{where}: first timestamp {first} ms > mean gap {mean_gap} ms")
  if last < length_ms - mean_gap or last < length_ms - SUGGESTED_MAX_HOP_MS:
    found.append(f"{where}: last timestamp {last} ms leaves the end of the "
                 f"{length_ms} ms clip uncovered")
  if last > length_ms:
    raise HearApiError(f"{where}: last timestamp {last} ms is past the "
                       f"{length_ms} ms clip")
  return found


def _check_attributes(model: interface.EmbeddingModel) -> None:
  if model.sample_rate not in SAMPLE_RATES:
    raise HearApiError(
        f"{model.name}: sample_rate {model.sample_rate} is not one of {SAMPLE_RATES}")
  for field in ("scene_embedding_size", "timestamp_embedding_size"):
    value = getattr(model, field)
    if not isinstance(value, int) or isinstance(value, bool):
      raise HearApiError(f"{model.name}: {field} must be an int, got {value!r}")


def _noise(rng: np.random.Generator, n_sounds: int, seconds: float,
           sample_rate: int) -> np.ndarray:
  # Same length rule as the validator: int(seconds * sample_rate) samples.
  shape = (n_sounds, int(seconds * sample_rate))
  return (rng.random(shape, dtype=np.float32) * 2.0 - 1.0)
