"""Per-call time and peak memory of `hear_jax.Evaluator.run` over many calls.

  .venv/bin/python benchmarks/evaluator_calls.py              # 20 calls, demo
  .venv/bin/python benchmarks/evaluator_calls.py --tiny --calls 5   # smoke

Builds one Evaluator (fast preset: the ridge probe) on the three demo tasks,
then calls `run` `--calls` times with the same model functions and a fresh
params object each call (`dataclasses.replace(model, params=...)`, as a
training loop does). Per call it prints the wall time, the XLA compilations
it triggered (JAX's backend-compile monitoring event) and the process's peak
RSS so far (VmHWM); at the end, the peak's growth after the second call.
The model is melstats (128-d, 16 kHz) through `from_functions`.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def peak_rss_mb() -> float:
  """The process's peak resident set (VmHWM), in MB."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--calls", type=int, default=20)
  parser.add_argument("--tiny", action="store_true",
                      help="the tiny demo tasks (a smoke run)")
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  import hear_jax  # pylint: disable=g-import-not-at-top
  from hear_jax.models import from_functions, load_model  # pylint: disable=g-import-not-at-top

  compiles = [0]

  def on_event(event: str, duration: float, **kwargs) -> None:
    del duration, kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      compiles[0] += 1

  jax.monitoring.register_event_duration_secs_listener(on_event)
  size = "tiny" if args.tiny else "demo"
  start = time.perf_counter()
  evaluator = hear_jax.Evaluator(
      [f"demo/{t}/{size}" for t in ("pitch", "spoken_commands",
                                    "sound_events")], probe="fast")
  print(f"Evaluator built in {time.perf_counter() - start:.1f} s "
        f"(datasets prepared, audio decoded and batched); peak RSS "
        f"{peak_rss_mb():.0f} MB")
  melstats = load_model("melstats")
  model = from_functions(melstats.timestamp_embeddings, melstats.params,
                         sample_rate=16000,
                         scene_embeddings=melstats.scene_embeddings,
                         name="melstats")
  peaks, times = [], []
  print("call  seconds  compiles  peak_rss_MB  " + "  ".join(
      ("pitch_acc", "top1_acc", "onset_fms")))
  for call in range(args.calls):
    params = jax.tree.map(lambda a: a + 0.0, model.params)  # a new object
    before = compiles[0]
    t = time.perf_counter()
    scalars = evaluator.run(dataclasses.replace(model, params=params),
                            step=call)
    times.append(time.perf_counter() - t)
    peaks.append(peak_rss_mb())
    print(f"{call:4d}  {times[-1]:7.2f}  {compiles[0] - before:8d}  "
          f"{peaks[-1]:11.0f}  {scalars['demo_pitch/pitch_acc']:.4f}  "
          f"{scalars['demo_spoken_commands/top1_acc']:.4f}  "
          f"{scalars['demo_sound_events/event_onset_200ms_fms']:.4f}",
          flush=True)
  if len(times) > 2:
    later = times[1:]
    print(f"calls 2..{len(times)}: mean {sum(later) / len(later):.2f} s, "
          f"max {max(later):.2f} s; peak RSS after call 2 {peaks[1]:.0f} MB, "
          f"after call {len(peaks)} {peaks[-1]:.0f} MB "
          f"(+{100 * (peaks[-1] / peaks[1] - 1):.1f}%)")


if __name__ == "__main__":
  main()
