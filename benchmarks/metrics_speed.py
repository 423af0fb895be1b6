"""hear_jax event metrics vs sed_eval on a MAESTRO-sized synthetic split.

  .venv/bin/python -m benchmarks.metrics_speed                     # defaults
  .venv/bin/python -m benchmarks.metrics_speed --sed_eval_clips 185  # no scaling

Times the three event metrics HEAR computes on MAESTRO
(`event_onset_50ms_fms`, `event_onset_offset_50ms_20perc_fms`,
`segment_1s_er`) with hear_jax (from HEAR's dict format, parsing included)
and with sed_eval called the way heareval/score.py calls it. Both use the
same synthetic split: 185 clips x 120 s, 88 piano pitches, dense notes
(6 per second), predictions = jittered notes, missed notes, wrong
pitches and false positives. Deterministic (fixed seed).

sed_eval takes seconds per clip, so by default it runs on the first
`--sed_eval_clips` (10) clips and its time is scaled linearly to 185 clips; the
output says so. That underestimates sed_eval: HEAR filters the whole event
container once per file, a cost that grows with the square of the clip count.
Scores are compared on the clips both ran.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import numpy as np

from hear_jax import metrics

MAESTRO_METRICS = (
    "event_onset_50ms_fms",
    "event_onset_offset_50ms_20perc_fms",
    "segment_1s_er",
)
SED_EVAL_PARAMS = {
    "event_onset_50ms_fms": dict(evaluate_onset=True, evaluate_offset=False, t_collar=0.05),
    "event_onset_offset_50ms_20perc_fms": dict(
        evaluate_onset=True, evaluate_offset=True, t_collar=0.05, percentage_of_length=0.2
    ),
}


def synthetic_split(n_clips: int, clip_s: float, notes_per_s: float, seed: int):
  """(predictions, targets, vocab) in HEAR's format, times in ms."""
  rng = np.random.default_rng(seed)
  vocab = [str(pitch) for pitch in range(21, 109)]
  targets, predictions = {}, {}
  for clip in range(n_clips):
    n = rng.poisson(notes_per_s * clip_s)
    onset = np.sort(rng.uniform(0.0, clip_s - 0.1, n))
    duration = np.clip(rng.lognormal(np.log(0.3), 0.8, n), 0.03, 4.0)
    offset = np.minimum(onset + duration, clip_s)
    pitch = np.clip(np.round(rng.normal(64, 12, n)), 21, 108).astype(int)
    name = f"maestro_{clip:03d}.wav"
    targets[name] = [
        {"label": str(p), "start": round(s * 1000, 1), "end": round(e * 1000, 1)}
        for p, s, e in zip(pitch, onset, offset)
    ]
    # Predictions: frame-like 10 ms times, onset jitter around the 50 ms
    # collar, offsets off by up to ~30 %, 15 % misses, 5 % wrong pitch
    # (octave or semitone), 15 % extra notes.
    kept = rng.random(n) > 0.15
    est_onset = np.maximum(0.0, onset + rng.normal(0.0, 0.035, n))
    est_offset = np.maximum(
        est_onset, offset + rng.normal(0.0, 0.15, n) * (offset - onset) + 0.01
    )
    wrong = rng.random(n) < 0.05
    est_pitch = np.where(wrong, pitch + rng.choice([-12, -1, 1, 12], n), pitch)
    est_pitch = np.clip(est_pitch, 21, 108)
    n_extra = rng.poisson(0.15 * n)
    extra_onset = rng.uniform(0.0, clip_s - 0.1, n_extra)
    extra_offset = np.minimum(extra_onset + rng.uniform(0.05, 1.0, n_extra), clip_s)
    extra_pitch = rng.integers(21, 109, n_extra)
    all_onset = np.concatenate([est_onset[kept], extra_onset])
    all_offset = np.concatenate([est_offset[kept], extra_offset])
    all_pitch = np.concatenate([est_pitch[kept], extra_pitch])
    order = np.argsort(all_onset, kind="stable")
    predictions[name] = [
        {"label": str(p), "start": round(s * 100) * 10.0, "end": round(e * 100) * 10.0}
        for p, s, e in zip(all_pitch[order], all_onset[order], all_offset[order])
    ]
  return predictions, targets, vocab


def sed_eval_score(name, predictions, targets, vocab):
  """heareval/score.py's SoundEventScore.__call__, returning the score."""
  import sed_eval  # pylint: disable=g-import-not-at-top
  from dcase_util.containers import MetaDataContainer  # pylint: disable=g-import-not-at-top

  def container(x):
    return MetaDataContainer([
        {
            "event_label": str(e["label"]),
            "event_onset": e["start"] / 1000.0,
            "event_offset": e["end"] / 1000.0,
            "file": f,
        }
        for f, file_events in x.items()
        for e in file_events
    ])

  reference, estimated = container(targets), container(predictions)
  if name == "segment_1s_er":
    scores = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=list(vocab), time_resolution=1.0
    )
  else:
    scores = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=list(vocab), **SED_EVAL_PARAMS[name]
    )
  for filename in predictions:
    scores.evaluate(
        reference_event_list=reference.filter(filename=filename),
        estimated_event_list=estimated.filter(filename=filename),
    )
  overall = scores.results_overall_metrics()
  key = "error_rate" if name == "segment_1s_er" else "f_measure"
  return overall[key][key]


def timed(fn, repeats):
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--clips", type=int, default=185)
  parser.add_argument("--clip_seconds", type=float, default=120.0)
  parser.add_argument("--notes_per_second", type=float, default=6.0)
  parser.add_argument("--sed_eval_clips", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=5, help="hear_jax repeats")
  parser.add_argument("--sed_eval_repeats", type=int, default=2)
  args = parser.parse_args()
  warnings.simplefilter("ignore")

  predictions, targets, vocab = synthetic_split(
      args.clips, args.clip_seconds, args.notes_per_second, seed=0
  )
  n_ref = sum(len(v) for v in targets.values())
  n_est = sum(len(v) for v in predictions.values())
  print(
      f"split: {args.clips} clips x {args.clip_seconds:.0f} s, {len(vocab)} classes, "
      f"{n_ref} reference / {n_est} predicted events"
  )
  sub_names = list(targets)[: args.sed_eval_clips]
  sub_targets = {k: targets[k] for k in sub_names}
  sub_predictions = {k: predictions[k] for k in sub_names}
  scale = args.clips / len(sub_names)
  full = len(sub_names) == args.clips
  if not full:
    print(
        f"NOTE: sed_eval runs on the first {len(sub_names)} of {args.clips} clips; "
        f"its time is scaled x{scale:.1f} to the full split (a lower bound)."
    )

  print(f"\n{'metric':38s} {'hear_jax':>10s} {'sed_eval':>12s} {'ratio':>8s}  scores")
  total_ours = total_theirs = 0.0
  all_agree = True
  for name in MAESTRO_METRICS:
    ours_s, ours_full = timed(
        lambda: metrics.compute(name, predictions, targets, label_vocab=vocab),
        args.repeats,
    )
    ours_sub = metrics.compute(name, sub_predictions, sub_targets, label_vocab=vocab)
    theirs_s, theirs_sub = timed(
        lambda: sed_eval_score(name, sub_predictions, sub_targets, vocab),
        args.sed_eval_repeats,
    )
    theirs_full_s = theirs_s * scale
    agree = (math.isnan(ours_sub) and math.isnan(theirs_sub)) or abs(
        ours_sub - theirs_sub
    ) <= 1e-9
    all_agree &= agree
    total_ours += ours_s
    total_theirs += theirs_full_s
    print(
        f"{name:38s} {ours_s:9.3f}s {theirs_full_s:11.2f}s {theirs_full_s / ours_s:7.0f}x"
        f"  full={ours_full:.6f}; on {len(sub_names)} clips: hear_jax={ours_sub:.12f}"
        f" sed_eval={theirs_sub:.12f} {'agree' if agree else 'DIFFER'}"
    )
  print(
      f"{'all three':38s} {total_ours:9.3f}s {total_theirs:11.2f}s "
      f"{total_theirs / total_ours:7.0f}x"
  )

  # Parsing once and scoring all three from EventTables (the probe's path).
  def from_tables():
    est = metrics.EventTable.from_hear(predictions)
    ref = metrics.EventTable.from_hear(targets)
    return [metrics.compute(n, est, ref, label_vocab=vocab) for n in MAESTRO_METRICS]

  tables_s, _ = timed(from_tables, args.repeats)
  print(f"hear_jax, parse once + all three:      {tables_s:9.3f}s")
  print(
      f"medians of {args.repeats} (hear_jax) / {args.sed_eval_repeats} (sed_eval) runs; "
      f"scores {'agree' if all_agree else 'DIFFER'} to 1e-9"
  )
  if not all_agree:
    raise SystemExit(1)


if __name__ == "__main__":
  main()
