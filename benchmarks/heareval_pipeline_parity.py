"""hear-eval-kit and hear_jax end to end on the same hearpreprocess tasks.

  benchmarks/make_heareval_venv.sh /work/heareval-venv      # once, ~3 min
  # A: whole pipeline, both kits (embed -> probe -> score)
  .venv/bin/python benchmarks/heareval_pipeline_parity.py \
      --models naive,bridge --grid default --grid_points 1
  .venv/bin/python benchmarks/heareval_pipeline_parity.py \
      --models crepe --crepe_clips 108 --tasks pitch
  .venv/bin/python benchmarks/heareval_pipeline_parity.py --models crepe \
      --crepe_clips 2052 --crepe_clip_s 0.25 --tasks pitch \
      --grid default --grid_points 1 --workdir /tmp/pipeline_parity_crepe
  # B: 5 seeds of both probes on identical embeddings (5 runs at once)
  .venv/bin/python benchmarks/heareval_pipeline_parity.py --seeds 5 \
      --jobs 5 --grid fast --grid_points 1
  .venv/bin/python benchmarks/heareval_pipeline_parity.py --seeds 5 \
      --jobs 5 --grid default --grid_points 1 --seed_tasks pitch_seeds \
      --seed_grid_override '{}' --workdir /tmp/pipeline_parity_default
  # Runs of different (model, task) pairs may share a --workdir at once;
  # the same step in two runs at once may not.

Tasks (written under --workdir/tasks/, hearpreprocess's on-disk format):

- `parity_pitch` (--clips, default 2052): the demo pitch task's notes
  (tasks/demo/pitch: GM instruments through tinysoundfont, 36 MIDI pitches
  48-83, instruments disjoint between splits, 60/20/20 per pitch), rendered
  at 44.1 kHz and resampled with soxr (HQ) to 16 kHz: one task directory
  with `44100/` and `16000/`, as hearpreprocess writes a task at several
  rates. Scene, multiclass, trainvaltest, `pitch_acc` then `chroma_acc`.
  Each model reads its own rate's folder in both kits (naive 44100/, crepe
  16000/). `crepe` uses `parity_pitch_small` (--crepe_clips, the same
  generator with fewer clips, or shorter ones with --crepe_clip_s):
  torchcrepe embeds ~0.16 s of audio per second on 2 cores, so 2000 1-s
  clips are 3.5 h under the kit; 2052 clips of 0.25 s take ~55 min.
- `spoken_digit`: the real hearpreprocess fixture
  (/work/shared/fixtures/hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz,
  100 clips, 5 folds, 44.1 kHz only: crepe is not run on it, as the kit
  asserts the file rate equals the model's).
- `parity_events` (--seeds mode only; --event_clips, default 24/8/8): 3-s
  clips of noise with a 1 kHz beep and a noise hiss at seeded times (the
  event task of benchmarks/heareval_roundtrip.py, with more clips and
  --event_levels: noise std, beep amplitude, hiss std, default 0.02, 0.1,
  0.1), 44.1 kHz and 16 kHz.
- `parity_pitch_seeds` (--seeds mode only; --seed_clips, default 432):
  `parity_pitch` with fewer clips (288/72/72).
- --seeds' tasks carry a grid override in task_metadata.json
  (evaluation_params.task_specific_param_grid, applied by both kits;
  --seed_grid_override, default {"lr": [1e-3], "max_epochs": [30]}; '{}'
  for none).

Models (--models): `naive` (hear_jax's built-in naive vs hearbaseline.naive
through the venv's librosa shim), `crepe` (hear_jax's Flax crepe vs
hearbaseline.torchcrepe), `bridge` (hear_jax running
`hear:hearbaseline.naive` through its torch bridge vs the kit's
hearbaseline.naive; the kit side is the naive run's, reused).

A, per (model, task):
- kit: `heareval.embeddings.runner <module> --tasks-dir <tasks>` (one task
  per call, --task), then `heareval.predictions.runner <embeddings dir>
  --grid G --grid-points N` on a copy of the embeddings, in the kit's venv
  (TF stub on PYTHONPATH for the embeddings runner;
  TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the predictions runner). "embed s"
  is the embeddings runner's whole process (torch import and model load
  included: it records no time of its own); "probe s" is the time the
  predictions runner records in prediction-done.json.
- hear_jax: `python -m hear_jax.main --config=configs/hear.py:<task dir>
  --config.model=<model> --config.probe.grid=G --config.probe.grid_points=N`.
  "embed s" is compute.json's embed_seconds (embedding only, JIT compile
  included; reading the wavs into a TFDS dataset is apart, in the process
  time); "probe s" is compute.json's probe_seconds. The whole process time
  is printed too.
- Scores: the primary metric (k-fold: mean ± std over the folds, as the
  kit's aggregated_scores). Agreement: |difference| <= max(0.02, the kit's
  fold std), the issue's criterion.

B (--seeds K, tasks --seed_tasks, default events,pitch_seeds): the kit
embeds `parity_pitch_seeds` with hearbaseline.naive (scene, 4096-d), and
hear_jax exports its `--event_embeddings` (default melstats, 128-d frames;
`naive` for the kit's hearbaseline.naive, whose 4096-d frames take hours
under the kit here) of `parity_events` in the kit's layout
(--config.export_heareval=True); both kits' probes then run K times on
those same embeddings (hear_jax reads the embeddings directory,
`--config=configs/hear.py:<embeddings dir>`), --jobs at once (the kit then
with OMP_NUM_THREADS=1).
- kit seed s (42 .. 42+K-1): a wrapper (written to <workdir>/) replaces
  task_predictions' `random` so that the grid is shuffled exactly as the
  kit's own `seed_everything(42)` shuffles it (same grid points for every
  seed, as in hear_jax, whose grid order is fixed), then calls
  `pytorch_lightning.seed_everything(s)` before any head is built: torch,
  numpy and random are seeded by Lightning's own mechanism. Seed 42 gives
  the kit's default run exactly (torch's generator is in the same state).
- hear_jax seed s (0 .. K-1): `--config.seed=s`, one process per seed.
Prints per-seed scores and mean ± std (sample std, ddof 1) for each kit, and
whether |mean difference| <= the larger std.

Everything (commands' times, score documents) goes to <workdir>/*.json;
steps already done (their result JSON exists) are reused on a rerun, so
remove <workdir> (or the step's JSON) to redo one. Logs: <workdir>/logs/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = pathlib.Path(
    "/work/shared/fixtures/hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz")
RATES = (44100, 16000)  # written rates of the generated tasks

# (kit module, hear_jax model spec) per --models entry.
MODELS = {
    "naive": ("naive_librosa_shim", "naive"),
    "crepe": ("hearbaseline.torchcrepe", "crepe"),
    "bridge": ("naive_librosa_shim", "hear:hearbaseline.naive"),
}
MODEL_RATE = {"naive": 44100, "crepe": 16000, "bridge": 44100}

KIT_SEED_WRAPPER = '''\
"""heareval.predictions.runner with its grid order from seed 42 (the kit's
own) and its training seeded by pytorch_lightning.seed_everything(SEED)."""
import random
import sys

import pytorch_lightning as pl
import heareval.predictions.task_predictions as tp

SEED = int(sys.argv.pop(1))


class _Random:
  """task_predictions' `random`: shuffle as after seed_everything(42), then
  reseed everything with SEED before the first head is built."""

  def shuffle(self, x):
    random.Random(42).shuffle(x)
    pl.seed_everything(SEED, workers=False)

  def __getattr__(self, name):
    return getattr(random, name)


tp.random = _Random()
from heareval.predictions.runner import runner  # noqa: E402

runner()
'''


# --- tasks -----------------------------------------------------------------


def make_pitch_task(root: pathlib.Path, name: str, clips: int,
                    grid_override: dict | None = None,
                    clip_s: float | None = None) -> pathlib.Path:
  """The demo pitch notes at 44.1 kHz (rendered) and 16 kHz (soxr HQ),
  `clip_s` seconds each (the demo's length by default)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  import soxr  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(REPO))
  from tasks import demo  # pylint: disable=g-import-not-at-top
  from tasks.demo.pitch import pitch_dataset_builder as pb  # pylint: disable=g-import-not-at-top
  from tasks.demo.sources import instruments, mixing  # pylint: disable=g-import-not-at-top

  per_pitch = clips // len(pb.PITCHES)
  held = max(1, round(per_pitch * 0.2))
  if per_pitch - 2 * held < 1:
    raise SystemExit(f"--clips {clips}: need at least {3 * len(pb.PITCHES)}")
  n = len(pb.PITCHES)
  config = pb.PitchConfig(name=name, train=(per_pitch - 2 * held) * n,
                          valid=held * n, test=held * n)
  clip_s = pb.CLIP_S if clip_s is None else clip_s
  meta = dict(pb.task_metadata(config), task_name=name, mode="full",
              default_mode="full", sample_duration=clip_s)
  if grid_override:
    meta["evaluation_params"] = {"task_specific_param_grid": grid_override}
  task = root / f"{name}-1.0.0-full"
  entries: dict[str, dict[str, Any]] = {}
  rate = RATES[0]
  for split in demo.SPLITS:
    entries[split] = {}
    for r in RATES:
      (task / str(r) / split).mkdir(parents=True, exist_ok=True)
    for index, note in enumerate(pb.note_plan(config, split)):
      rng = demo.example_rng(config.seed, split, index)  # as render_clip
      audio = instruments.render_note(
          note.program, note.pitch, velocity=int(rng.integers(40, 128)),
          hold_s=float(rng.uniform(0.6, 0.8)), total_s=clip_s,
          sample_rate=rate)
      peak_db = float(rng.uniform(-9.0, -3.0))
      audio = mixing.fit_length(
          mixing.set_peak(audio, 10.0**(peak_db / 20.0)), int(clip_s * rate))
      wav = f"{note.clip_id}.wav"
      entries[split][wav] = [str(note.pitch)]
      sf.write(task / str(rate) / split / wav, np.clip(audio, -1, 1), rate,
               subtype="PCM_16")
      for r in RATES[1:]:
        low = soxr.resample(audio.astype(np.float64), rate, r, quality="HQ")
        low = mixing.fit_length(low, int(clip_s * r))
        sf.write(task / str(r) / split / wav, np.clip(low, -1, 1), r,
                 subtype="PCM_16")
  (task / "task_metadata.json").write_text(json.dumps(meta, indent=1))
  _write_task_files_after(task, list(pb.LABELS), entries)
  return task


def _write_task_files_after(task: pathlib.Path, vocab: list[str],
                            entries: dict[str, dict[str, Any]]) -> None:
  (task / "labelvocabulary.csv").write_text(
      "idx,label\n" + "".join(f"{i},{l}\n" for i, l in enumerate(vocab)))
  for split, labels in entries.items():
    (task / f"{split}.json").write_text(json.dumps(labels, indent=1))


# Event task levels (amplitude / std). benchmarks/heareval_roundtrip.py uses
# 0.01 / 0.5 / 0.3, which any embedding solves (onset F = 1.0 on every seed,
# so seeds cannot be compared); these put the events near the noise.
NOISE, BEEP, HISS = 0.02, 0.1, 0.1
# --seeds' grid override, written into its tasks' task_metadata.json
# (evaluation_params.task_specific_param_grid, which both kits apply): the
# fast grid's first point has lr 1e-4, too slow for a few dozen steps (on
# events the head predicts no event, the onset F-measure is NaN and the fit
# stops); 30 epochs keep 5 seeds x 2 kits x 2 tasks within the hour.
SEED_GRID_OVERRIDE = {"lr": [1e-3], "max_epochs": [30]}


def make_event_task(root: pathlib.Path, counts: dict[str, int],
                    levels: tuple[float, float, float] = (NOISE, BEEP, HISS),
                    grid_override: dict | None = None) -> pathlib.Path:
  """benchmarks/heareval_roundtrip.py's event task with `counts` clips,
  quieter events (NOISE, BEEP, HISS), at 44.1 kHz and (soxr HQ) 16 kHz."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  import soxr  # pylint: disable=g-import-not-at-top
  rate, duration = 44100, 3.0
  noise, beep, hiss = levels
  name = "parity_events"
  task = root / f"{name}-0.1-full"
  rng = np.random.default_rng(0)
  meta = {"task_name": name, "version": "0.1", "mode": "full",
          "embedding_type": "event", "prediction_type": "multilabel",
          "split_mode": "trainvaltest", "sample_duration": duration,
          "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
          "default_mode": "full", "splits": list(counts),
          "evaluation_params": {
              "task_specific_param_grid": grid_override}}
  t = np.arange(int(duration * rate)) / rate
  entries: dict[str, dict[str, Any]] = {}
  for split, count in counts.items():
    entries[split] = {}
    (task / str(rate) / split).mkdir(parents=True)
    for i in range(count):
      audio = noise * rng.standard_normal(len(t))
      events = []
      for label in ("beep", "hiss"):
        start = float(rng.uniform(0.1, 2.0))
        end = start + float(rng.uniform(0.3, 0.8))
        on = (t >= start) & (t < end)
        audio[on] += (beep * np.sin(2 * np.pi * 1000 * t[on]) if label == "beep"
                      else hiss * rng.standard_normal(on.sum()))
        events.append({"label": label, "start": round(start * 1000, 3),
                       "end": round(end * 1000, 3)})
      wav = f"{split}_{i:03d}.wav"
      sf.write(task / str(rate) / split / wav, np.clip(audio, -1, 1), rate,
               subtype="PCM_16")
      low = soxr.resample(audio, rate, 16000, quality="HQ")
      (task / "16000" / split).mkdir(parents=True, exist_ok=True)
      sf.write(task / "16000" / split / wav, np.clip(low, -1, 1), 16000,
               subtype="PCM_16")
      entries[split][wav] = events
  (task / "task_metadata.json").write_text(json.dumps(meta, indent=1))
  _write_task_files_after(task, ["beep", "hiss"], entries)
  return task


def unpack_fixture(root: pathlib.Path) -> pathlib.Path:
  scratch = root.parent / "fixture_unpacked"
  shutil.rmtree(scratch, ignore_errors=True)
  with tarfile.open(FIXTURE) as tar:  # hear-2021.0.6/tasks/<task dir>/...
    tar.extractall(scratch, filter="data")
  task = next(scratch.glob("*/tasks/*"))
  target = root / task.name
  task.rename(target)
  shutil.rmtree(scratch)
  return target


def task_dirs(work: pathlib.Path, args: argparse.Namespace,
              keys: set[str]) -> dict[str, Any]:
  """{key: task dir}, generating what is missing (one tasks dir per key:
  the kit's embeddings runner takes a folder of task folders)."""
  makers = {
      "pitch": lambda r: make_pitch_task(r, "parity_pitch", args.clips),
      "pitch_small": lambda r: make_pitch_task(r, "parity_pitch_small",
                                               args.crepe_clips,
                                               clip_s=args.crepe_clip_s),
      "spoken_digit": unpack_fixture,
      "pitch_seeds": lambda r: make_pitch_task(
          r, "parity_pitch_seeds", args.seed_clips, args.seed_grid_override),
      "events": lambda r: make_event_task(r, dict(zip(
          ("train", "valid", "test"), args.event_clips)),
          args.event_levels, args.seed_grid_override),
  }
  out = {}
  for key, make in makers.items():
    if key not in keys:
      continue
    root = work / "tasks" / key
    done = root / ".done"
    if not done.exists():
      shutil.rmtree(root, ignore_errors=True)
      root.mkdir(parents=True)
      start = time.perf_counter()
      make(root)
      done.write_text(f"{time.perf_counter() - start:.1f}")
      print(f"task {key}: written in {done.read_text()} s", flush=True)
    out[key] = next(p for p in root.iterdir() if p.is_dir())
  return out


def clip_count(task: pathlib.Path) -> int:
  meta = json.loads((task / "task_metadata.json").read_text())
  return sum(len(json.loads((task / f"{s}.json").read_text()))
             for s in meta["splits"])


# --- running ---------------------------------------------------------------


def run(cmd: list[str], log: pathlib.Path, env: dict[str, str] | None = None,
        cwd: pathlib.Path = REPO) -> float:
  """Runs cmd (output to log); returns its wall seconds; exits on failure."""
  log.parent.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  with open(log, "w") as out:
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})},
                          stdout=out, stderr=subprocess.STDOUT)
  seconds = time.perf_counter() - start
  if proc.returncode:
    sys.exit(f"failed ({proc.returncode}) after {seconds:.0f} s: "
             f"{' '.join(cmd)}\n{log.read_text()[-3000:]}")
  return seconds


def cached(path: pathlib.Path, compute) -> dict[str, Any]:
  if path.is_file():
    return json.loads(path.read_text())
  doc = compute()
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(doc, indent=1))
  return doc


def primary(doc: dict[str, Any]) -> tuple[float, float | None]:
  """(score, fold std or None) of a test.predicted-scores.json."""
  if "aggregated_scores" in doc:
    agg = doc["aggregated_scores"]
    return agg["test_score_mean"], agg["test_score_std"]
  return doc["test"]["test_score"], None


def kit_embed(ctx: dict[str, Any], module: str, task: pathlib.Path
              ) -> pathlib.Path:
  """The kit's embeddings of `task` (kept pristine: the predictions runner
  works on copies)."""
  venv = ctx["venv"]
  out = ctx["work"] / "kit_embeddings"
  record = ctx["work"] / "results" / f"kit_embed.{module}.{task.name}.json"

  def compute():
    shutil.rmtree(out / module / task.name, ignore_errors=True)
    seconds = run([str(venv / "bin" / "python"), "-m",
                   "heareval.embeddings.runner", module, "--tasks-dir",
                   str(task.parent), "--task", task.name, "--embeddings-dir",
                   str(out)], ctx["logs"] / f"kit_embed.{module}.{task.name}.log",
                  {"PYTHONPATH": str(venv / "tfstub")}, cwd=ctx["work"])
    return {"embed_process_s": seconds, "dir": str(out / module / task.name)}

  cached(record, compute)
  return out / module / task.name


def kit_predict(ctx: dict[str, Any], embeddings: pathlib.Path, label: str,
                seed: int | None = None) -> dict[str, Any]:
  """heareval.predictions.runner on a fresh copy of `embeddings`."""
  venv, args = ctx["venv"], ctx["args"]
  record = ctx["work"] / "results" / f"kit_predict.{label}.json"

  def compute():
    copy = ctx["work"] / "kit_runs" / label / embeddings.parent.name / \
        embeddings.name
    shutil.rmtree(copy.parent.parent, ignore_errors=True)
    shutil.copytree(embeddings, copy)
    if seed is None:
      cmd = [str(venv / "bin" / "python"), "-m", "heareval.predictions.runner"]
    else:
      wrapper = ctx["work"] / "kit_seeded_predictions.py"
      if not wrapper.is_file():
        wrapper.write_text(KIT_SEED_WRAPPER)
      cmd = [str(venv / "bin" / "python"), str(wrapper), str(seed)]
    seconds = run([*cmd, str(copy), "--grid", args.grid, "--grid-points",
                   str(args.grid_points)], ctx["logs"] / f"kit_predict.{label}.log",
                  {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
                   **({"OMP_NUM_THREADS": "1"} if args.jobs > 1 else {})},
                  cwd=ctx["work"])
    scores = json.loads((copy / "test.predicted-scores.json").read_text())
    done = json.loads((copy / "prediction-done.json").read_text())
    return {"probe_s": done["time"], "process_s": seconds, "scores": scores}

  return cached(record, compute)


def hear_jax_run(ctx: dict[str, Any], model: str | None, path: pathlib.Path,
                 label: str, seed: int = 0) -> dict[str, Any]:
  """python -m hear_jax.main on a task dir (model given) or on a kit
  embeddings dir (model None)."""
  args = ctx["args"]
  record = ctx["work"] / "results" / f"hear_jax.{label}.json"

  def compute():
    workdir = ctx["work"] / "hear_jax_runs" / label
    shutil.rmtree(workdir, ignore_errors=True)
    cmd = [sys.executable, "-m", "hear_jax.main",
           f"--config=configs/hear.py:{path}", f"--workdir={workdir}",
           f"--config.data_dir={ctx['work'] / 'tfds'}",
           f"--config.probe.grid={args.grid}",
           f"--config.probe.grid_points={args.grid_points}",
           f"--config.seed={seed}"]
    if model is not None:
      cmd.append(f"--config.model={model}")
    seconds = run(cmd, ctx["logs"] / f"hear_jax.{label}.log",
                  cwd=ctx["hear_jax_repo"])
    scores_path = next(workdir.glob("*/*/test.predicted-scores.json"))
    compute_path = scores_path.parent / "compute.json"
    comp = json.loads(compute_path.read_text()) if compute_path.is_file() \
        else {}
    return {"process_s": seconds, "embed_s": comp.get("embed_seconds"),
            "probe_s": comp.get("probe_seconds"),
            "audio_resampled_from": comp.get("audio_resampled_from"),
            "scores": json.loads(scores_path.read_text())}

  return cached(record, compute)


def hear_jax_export(ctx: dict[str, Any], model: str, task: pathlib.Path
                    ) -> pathlib.Path:
  """hear_jax's `model` embeddings of `task` in hear-eval-kit's layout
  (--config.export_heareval=True; its probe runs on the faster grid, one
  point, and is not used)."""
  workdir = ctx["work"] / "hear_jax_export" / model
  out = workdir / "heareval" / model / task.name
  record = ctx["work"] / "results" / f"hear_jax_export.{model}.{task.name}.json"

  def compute():
    shutil.rmtree(workdir, ignore_errors=True)
    seconds = run([sys.executable, "-m", "hear_jax.main",
                   f"--config=configs/hear.py:{task}", f"--workdir={workdir}",
                   f"--config.data_dir={ctx['work'] / 'tfds'}",
                   f"--config.model={model}", "--config.export_heareval=True",
                   "--config.probe.grid=faster", "--config.probe.grid_points=1"],
                  ctx["logs"] / f"hear_jax_export.{model}.{task.name}.log",
                  cwd=ctx["hear_jax_repo"])
    # The kit's layout as hear_jax exports it; keep the task's grid override.
    task_meta = json.loads((task / "task_metadata.json").read_text())
    meta_path = out / "task_metadata.json"
    meta = json.loads(meta_path.read_text())
    if "evaluation_params" in task_meta:
      meta["evaluation_params"] = task_meta["evaluation_params"]
      meta_path.write_text(json.dumps(meta, indent=1))
    return {"process_s": seconds, "dir": str(out)}

  cached(record, compute)
  return out


# --- A: whole pipeline -------------------------------------------------------


def fmt_score(score: float, std: float | None) -> str:
  return f"{score:.4f}" if std is None else f"{score:.4f} ± {std:.4f}"


def fmt_s(seconds: float | None) -> str:
  return "-" if seconds is None else f"{seconds:.1f}"


def pipeline(ctx: dict[str, Any], tasks: dict[str, pathlib.Path]) -> None:
  args = ctx["args"]
  rows = []
  for model in args.models:
    module, spec = MODELS[model]
    for key in args.tasks:
      task = tasks["pitch_small" if (model == "crepe" and key == "pitch")
                   else key]
      if key == "spoken_digit" and MODEL_RATE[model] != 44100:
        print(f"skip {model} on {key}: the fixture is 44.1 kHz only and the "
              "kit asserts the file rate", flush=True)
        continue
      print(f"{model} on {task.name}: kit ...", flush=True)
      emb = kit_embed(ctx, module, task)
      kit_e = json.loads((ctx["work"] / "results" /
                          f"kit_embed.{module}.{task.name}.json").read_text())
      kit_p = kit_predict(ctx, emb, f"{module}.{task.name}.{args.grid}"
                          f"{args.grid_points}")
      print(f"{model} on {task.name}: hear_jax ...", flush=True)
      hj = hear_jax_run(ctx, spec, task, f"{model}.{task.name}.{args.grid}"
                        f"{args.grid_points}")
      ks, kstd = primary(kit_p["scores"])
      hs, hstd = primary(hj["scores"])
      tol = max(0.02, kstd or 0.0)
      rows.append({
          "model": model, "kit_module": module, "hear_jax_model": spec,
          "task": task.name, "clips": clip_count(task),
          "grid": f"{args.grid}/{args.grid_points}",
          "kit_score": ks, "kit_std": kstd, "hear_jax_score": hs,
          "hear_jax_std": hstd, "diff": abs(hs - ks), "tolerance": tol,
          "agree": abs(hs - ks) <= tol,
          "kit_embed_process_s": kit_e["embed_process_s"],
          "hear_jax_embed_s": hj["embed_s"], "kit_probe_s": kit_p["probe_s"],
          "hear_jax_probe_s": hj["probe_s"],
          "kit_process_s": kit_e["embed_process_s"] + kit_p["process_s"],
          "hear_jax_process_s": hj["process_s"],
          "audio_resampled_from": hj["audio_resampled_from"]})
  print("\n| model | task (clips) | grid | hear-eval-kit | hear_jax | |diff| "
        "(tol) | embed s kit / hear_jax | probe s kit / hear_jax | "
        "total s kit / hear_jax |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['model']} | {r['task']} ({r['clips']}) | {r['grid']} | "
          f"{fmt_score(r['kit_score'], r['kit_std'])} | "
          f"{fmt_score(r['hear_jax_score'], r['hear_jax_std'])} | "
          f"{r['diff']:.4f} ({r['tolerance']:.4f}) "
          f"{'ok' if r['agree'] else 'MISSED'} | "
          f"{fmt_s(r['kit_embed_process_s'])} / {fmt_s(r['hear_jax_embed_s'])}"
          f" | {fmt_s(r['kit_probe_s'])} / {fmt_s(r['hear_jax_probe_s'])} | "
          f"{fmt_s(r['kit_process_s'])} / {fmt_s(r['hear_jax_process_s'])} |")
  out = ctx["work"] / f"pipeline.{args.grid}{args.grid_points}.json"
  out.write_text(json.dumps(rows, indent=1))
  print(f"(rows in {out})")


# --- B: seeds ------------------------------------------------------------------


def seeds(ctx: dict[str, Any], tasks: dict[str, pathlib.Path]) -> None:
  args = ctx["args"]
  rows = []
  for key in args.seed_tasks:
    task = tasks[key]
    if key == "events" and args.event_embeddings != "naive":
      emb = hear_jax_export(ctx, args.event_embeddings, task)
    else:
      emb = kit_embed(ctx, "naive_librosa_shim", task)
    tag = f"{task.name}.{args.grid}{args.grid_points}"
    (ctx["work"] / "kit_seeded_predictions.py").write_text(KIT_SEED_WRAPPER)
    calls = ([lambda i=i: kit_predict(ctx, emb, f"seed{42 + i}.{tag}",
                                      seed=42 + i) for i in range(args.seeds)]
             + [lambda i=i: hear_jax_run(ctx, None, emb, f"seed{i}.{tag}",
                                         seed=i) for i in range(args.seeds)])
    print(f"seeds {task.name}: {len(calls)} runs, {args.jobs} at once",
          flush=True)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
      docs = list(pool.map(lambda call: call(), calls))
    kit_scores = [primary(d["scores"])[0] for d in docs[:args.seeds]]
    hj_scores = [primary(d["scores"])[0] for d in docs[args.seeds:]]
    km, hm = statistics.mean(kit_scores), statistics.mean(hj_scores)
    ksd = statistics.stdev(kit_scores) if len(kit_scores) > 1 else 0.0
    hsd = statistics.stdev(hj_scores) if len(hj_scores) > 1 else 0.0
    rows.append({"task": task.name, "clips": clip_count(task),
                 "embeddings": emb.parent.name,
                 "metric": json.loads((task / "task_metadata.json")
                                      .read_text())["evaluation"][0],
                 "grid": f"{args.grid}/{args.grid_points}",
                 "kit_seeds": list(range(42, 42 + args.seeds)),
                 "kit_scores": kit_scores, "hear_jax_scores": hj_scores,
                 "kit_mean": km, "kit_std": ksd, "hear_jax_mean": hm,
                 "hear_jax_std": hsd, "diff": abs(hm - km),
                 "agree": abs(hm - km) <= max(ksd, hsd)})
  print("\n| task (clips) | embeddings | metric | grid | hear-eval-kit mean "
        "± std | hear_jax mean ± std | |diff| | within larger std |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['task']} ({r['clips']}) | {r['embeddings']} | {r['metric']} "
          f"| {r['grid']} | "
          f"{r['kit_mean']:.4f} ± {r['kit_std']:.4f} | {r['hear_jax_mean']:.4f}"
          f" ± {r['hear_jax_std']:.4f} | {r['diff']:.4f} | "
          f"{'yes' if r['agree'] else 'NO'} |")
    print(f"  per seed: kit {[round(s, 4) for s in r['kit_scores']]}, "
          f"hear_jax {[round(s, 4) for s in r['hear_jax_scores']]}")
  out = ctx["work"] / f"seeds{args.seeds}.{args.grid}{args.grid_points}.json"
  out.write_text(json.dumps(rows, indent=1))
  print(f"(rows in {out})")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--heareval_venv", default="/work/heareval-venv")
  parser.add_argument("--workdir", default="/tmp/pipeline_parity")
  parser.add_argument("--hear_jax_repo", default=str(REPO),
                      help="where `python -m hear_jax.main` runs (its "
                      "hear_jax/ and configs/), e.g. a `git archive` of a "
                      "commit while the working tree is being edited")
  parser.add_argument("--models", default="naive,crepe,bridge",
                      type=lambda s: s.split(","))
  parser.add_argument("--tasks", default="pitch,spoken_digit",
                      type=lambda s: s.split(","))
  parser.add_argument("--clips", type=int, default=2052,
                      help="clips of parity_pitch (36 pitches, 60/20/20)")
  parser.add_argument("--crepe_clips", type=int, default=108,
                      help="clips of parity_pitch_small (crepe's task)")
  parser.add_argument("--crepe_clip_s", type=float, default=None,
                      help="seconds per clip of parity_pitch_small (default "
                      "the demo's 1 s; hearbaseline.torchcrepe embeds about "
                      "0.16 s of audio per second on 2 cores)")
  parser.add_argument("--event_embeddings", default="melstats",
                      help="--seeds: the event task's embeddings: `naive` "
                      "(the kit's hearbaseline.naive) or a hear_jax model "
                      "(exported in the kit's layout)")
  parser.add_argument("--event_levels", default=f"{NOISE},{BEEP},{HISS}",
                      type=lambda s: tuple(float(x) for x in s.split(",")),
                      help="--seeds: the event task's noise std, beep "
                      "amplitude and hiss std")
  parser.add_argument("--event_clips", default="24,8,8",
                      type=lambda s: [int(x) for x in s.split(",")])
  parser.add_argument("--grid", default="default",
                      choices=("default", "fast", "faster"))
  parser.add_argument("--grid_points", type=int, default=1)
  parser.add_argument("--seeds", type=int, default=0,
                      help="B: this many seeds of both probes instead of A")
  parser.add_argument("--seed_grid_override",
                      default=json.dumps(SEED_GRID_OVERRIDE), type=json.loads,
                      help="--seeds: task_specific_param_grid written into "
                      "the generated tasks' metadata ('{}': none)")
  parser.add_argument("--seed_clips", type=int, default=432,
                      help="--seeds: clips of parity_pitch_seeds")
  parser.add_argument("--jobs", type=int, default=1,
                      help="--seeds: runs at once (seeds are independent)")
  parser.add_argument("--seed_tasks", default="events,pitch_seeds",
                      type=lambda s: s.split(","))
  args = parser.parse_args()
  for m in args.models:
    if m not in MODELS:
      sys.exit(f"--models: {m!r} is not one of {sorted(MODELS)}")
  venv = pathlib.Path(args.heareval_venv)
  if not (venv / "bin" / "python").exists():
    sys.exit(f"{venv}/bin/python: not found; run "
             f"benchmarks/make_heareval_venv.sh {venv} first")
  work = pathlib.Path(args.workdir).resolve()
  work.mkdir(parents=True, exist_ok=True)
  ctx = {"args": args, "venv": venv, "work": work, "logs": work / "logs",
         "hear_jax_repo": pathlib.Path(args.hear_jax_repo).resolve()}
  if args.seeds:
    keys = set(args.seed_tasks)
  else:
    keys = set(args.tasks) | ({"pitch_small"} if "crepe" in args.models
                              and "pitch" in args.tasks else set())
    if args.models == ["crepe"]:
      keys.discard("pitch")
  tasks = task_dirs(work, args, keys)
  if args.seeds:
    seeds(ctx, tasks)
  else:
    pipeline(ctx, tasks)


if __name__ == "__main__":
  main()
