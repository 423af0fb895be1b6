"""Embedding throughput: hear_jax's JAX/Flax models vs the HEAR torch originals.

  .venv/bin/python -m benchmarks.embedding_throughput
  .venv/bin/python -m benchmarks.embedding_throughput --clips 8 --seconds 4 --repeats 5

For CREPE (full) and the naive baseline, times timestamp embeddings (HEAR's
default 50 ms hop, the event-task path) of the same audio with

- the JAX version: `crepe` / `naive` from hear_jax.models, jitted;
- the torch version: `hearbaseline.torchcrepe` / `hearbaseline.naive`
  (2021.1.1) through hear_jax's HEAR bridge, torch with its default threads.

Each version runs once to warm up (JIT compilation, weight loading), then
`--repeats` times, alternating JAX and torch so that load from other
processes hits both alike; the table gives medians in seconds of audio
embedded per second of wall time, and the JAX/torch ratio. The naive JAX model
gets hearbaseline's own projection matrix, so both columns compute the same
numbers; the max |difference| of the embeddings is printed as a check.

Needs torch==2.13.0 and, with --no-deps, torchcrepe and hearbaseline==2021.1.1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import jax
import numpy as np

from hear_jax.models import crepe
from hear_jax.models import load_model
from hear_jax.models import naive


def test_audio(n_clips: int, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
  """Harmonic tones with vibrato over noise, float32 [n_clips, samples]."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  clips = []
  for _ in range(n_clips):
    f0 = rng.uniform(80.0, 800.0)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / sample_rate
    tone = sum(0.3 / k * np.sin(k * phase) for k in range(1, 5))
    clips.append(tone + 0.02 * rng.standard_normal(len(t)))
  return np.stack(clips).astype(np.float32)


def _jax_fn(model) -> Callable[[np.ndarray], np.ndarray]:
  fn = jax.jit(model.timestamp_embeddings)
  return lambda audio: np.asarray(jax.block_until_ready(fn(model.params, audio)[0]))


def _torch_fn(model) -> Callable[[np.ndarray], np.ndarray]:
  return lambda audio: np.asarray(model.timestamp_embeddings(model.params, audio)[0])


def compare(name: str, jax_model, torch_model, audio: np.ndarray, repeats: int) -> dict:
  """Medians of alternating timed runs, after one warm-up run of each."""
  runs = {"jax": _jax_fn(jax_model), "torch": _torch_fn(torch_model)}
  outputs = {impl: fn(audio) for impl, fn in runs.items()}  # warm-up
  times = {impl: [] for impl in runs}
  for _ in range(repeats):
    for impl, fn in runs.items():
      start = time.perf_counter()
      fn(audio)
      times[impl].append(time.perf_counter() - start)
  seconds = audio.size / jax_model.sample_rate
  medians = {impl: statistics.median(t) for impl, t in times.items()}
  return {
      "model": name, "audio_s": seconds,
      "jax_s": medians["jax"], "torch_s": medians["torch"],
      "jax_rate": seconds / medians["jax"], "torch_rate": seconds / medians["torch"],
      "ratio": medians["torch"] / medians["jax"],
      "max_abs_diff": float(np.max(np.abs(outputs["jax"] - outputs["torch"]))),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--clips", type=int, default=4)
  parser.add_argument("--seconds", type=float, default=2.0)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--models", default="crepe,naive",
                      help="comma-separated subset of crepe,naive")
  args = parser.parse_args()
  import torch  # after argparse, so --help is instant

  rows = []
  for name in args.models.split(","):
    if name == "crepe":
      torch_model = load_model("hear:hearbaseline.torchcrepe")
      jax_model = crepe.create("full")
    elif name == "naive":
      torch_model = load_model("hear:hearbaseline.naive")
      jax_model = naive.create()  # hearbaseline.naive's own matrix
    else:
      raise ValueError(f"--models: unknown model {name!r}; use crepe and/or naive")
    audio = test_audio(args.clips, args.seconds, jax_model.sample_rate)
    rows.append(compare(name, jax_model, torch_model, audio, args.repeats))

  print(f"\n{args.clips} clips x {args.seconds} s, timestamp embeddings (50 ms hop),"
        f" median of {args.repeats} after warm-up; torch threads "
        f"{torch.get_num_threads()}, JAX on {jax.default_backend()}\n")
  print("| model | JAX s | torch s | JAX audio s/s | torch audio s/s | JAX / torch "
        "speed | max abs diff |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['model']} | {r['jax_s']:.3f} | {r['torch_s']:.3f} | "
          f"{r['jax_rate']:.2f} | {r['torch_rate']:.2f} | {r['ratio']:.2f}x | "
          f"{r['max_abs_diff']:.2e} |")


if __name__ == "__main__":
  main()
