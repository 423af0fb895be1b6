"""Time to score every layer of an L-layer model, L = 1, 4, 12.

  .venv/bin/python benchmarks/layers_time.py            # demo tasks
  .venv/bin/python benchmarks/layers_time.py --tiny     # smoke

A model whose layers are fixed random maps (tanh, 64-d) stacked on 25 ms
log power spectra, built with `from_functions` to return all L layers at
once ([L, B, F, D]). For each L, one `hear_jax.Evaluator` (fast preset:
ridge) on the three demo tasks; the first call compiles, and the printed
time is the mean of the next `--repeats` calls, split into embedding and
probe time (summed over tasks), with the time per layer.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FRAME = 400  # 25 ms at 16 kHz
WIDTH = 64


def layered_model(layers: int):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hear_jax.models import from_functions  # pylint: disable=g-import-not-at-top

  def fn(params, audio):
    frames = audio[:, :audio.shape[1] // FRAME * FRAME].reshape(
        audio.shape[0], -1, FRAME)
    h = jnp.log1p(jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2)
    t_ms = (jnp.arange(frames.shape[1]) + 0.5) * FRAME / 16.0
    outs = []
    for w in params:
      h = jnp.tanh(h @ w)
      outs.append(h)
    return jnp.stack(outs), jnp.broadcast_to(t_ms, frames.shape[:2])

  rng = np.random.default_rng(0)
  sizes = [FRAME // 2 + 1] + [WIDTH] * layers
  params = [jnp.asarray(rng.normal(0, 1 / np.sqrt(a), (a, b)), jnp.float32)
            for a, b in zip(sizes[:-1], sizes[1:])]
  return from_functions(fn, params, sample_rate=16000, name=f"random{layers}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layers", default="1,4,12")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--tiny", action="store_true")
  args = parser.parse_args()
  import hear_jax  # pylint: disable=g-import-not-at-top
  size = "tiny" if args.tiny else "demo"
  evaluator = hear_jax.Evaluator(
      [f"demo/{t}/{size}" for t in ("pitch", "spoken_commands",
                                    "sound_events")], probe="fast")
  print("L   first_s  call_s  embed_s  probe_s  per_layer_s  best layers")
  for layers in [int(l) for l in args.layers.split(",")]:
    model = layered_model(layers)
    t = time.perf_counter()
    evaluator.run(model)
    first = time.perf_counter() - t
    calls, embed_s, probe_s = [], 0.0, 0.0
    for _ in range(args.repeats):
      t = time.perf_counter()
      evaluator.run(model)
      calls.append(time.perf_counter() - t)
      for r in evaluator.last_results:
        embed_s += r.timings["embed"] / args.repeats
        probe_s += r.timings["probe"] / args.repeats
    call = sum(calls) / len(calls)
    best = ",".join(str(r.best_layer) for r in evaluator.last_results)
    print(f"{layers:<3d} {first:7.2f}  {call:6.2f}  {embed_s:7.2f}  "
          f"{probe_s:7.2f}  {call / layers:11.3f}  {best}", flush=True)


if __name__ == "__main__":
  main()
