"""hear_jax's probe vs hear-eval-kit's on identical embeddings: time, memory,
FLOP rate and scores.

  benchmarks/make_heareval_venv.sh /work/heareval-venv     # once, ~2 min
  # smoke run (~3 min once the embeddings are cached):
  .venv/bin/python benchmarks/probe_vs_heareval.py --grid faster --grid_points 1
  # the real numbers (HEAR's default grid, 8 points; long, see below):
  .venv/bin/python benchmarks/probe_vs_heareval.py
  # one case, or hear_jax alone (e.g. on an accelerator machine without the
  # kit's virtualenv):
  .venv/bin/python benchmarks/probe_vs_heareval.py --tasks=scene --scene_dims=512
  .venv/bin/python benchmarks/probe_vs_heareval.py --skip_heareval

Cases (embeddings built once, cached under --cache, default /tmp/probe_bench):

- scene k-fold (5 folds, as ESC-50): `--kfold_clips` (default 3000)
  one-second clips of the demo spoken_commands generator (12 balanced
  classes; 1800 is the demo config itself) pooled and re-split into 5 folds
  fold00..fold04 (stratified by label: each label's clips, ordered by crc32
  of their id, are dealt round-robin, continuing where the previous label
  stopped; speakers are NOT kept apart), `split_mode: new_split_kfold`
  (hearpreprocess's mode for folds it makes; the predictions runner treats
  it exactly as ESC-50's `presplit_kfold`). Two embeddings:
  `--scene_dims=4096` is hear_jax's `naive` model (hearbaseline.naive's
  4096-d architecture), 512 is `melstats(n_mels=256, sample_rate=22050)`
  (mean and std of 256 log-mel bands; 22.05 kHz because at 16 kHz 256 bands
  leave some without an FFT bin).
- scene train/valid/test (`--tasks=scene_tvt`): the demo pitch builder's
  notes (tasks/demo/pitch: 36 pitch classes, GM instruments disjoint between
  splits), `--tvt_clips` of them (default 2916: 1764/576/576), rendered at
  16 kHz, `pitch_acc`. `--tvt_dims=512` embeds them with the 512-d melstats
  above, 2048 with `crepe` (HEAR's CREPE, 2048-d scene embeddings: pitch is
  what it was made for; embedding the 2916 clips took 103 s on 2 CPU cores,
  once: the embeddings are cached).
- event: the demo sound_events task (100 ten-second scenes, 11 classes,
  train/valid/test 60/20/20) embedded by `--event_model` (default `melstats`,
  128-d, 20 frames/s); `--event_scenes=200` generates 200 scenes of the same
  generator (120/40/40). `--event_model=naive` gives 4096-d frames, but then
  hear-eval-kit's default grid takes hours on 2 CPU cores.

Each case's embeddings are written once in hear-eval-kit's layout
(`hear_jax.data.heareval_layout.export_task`), under
<cache>/embeddings/<model>/<task dir>/. Then, for each case:

- hear_jax: a child python (this file, `--_probe_child`) imports jax and
  hear_jax, reads that directory (`heareval_layout.read_embeddings`) and
  calls `hear_jax.probe.protocol.run_task` with `--grid` / `--grid_points`,
  seed 0 and the task key hear_jax.run uses. "hear_jax s" is run_task alone
  (JIT compilation, training, validation scoring, test scoring); reading the
  embeddings is reported apart ("load s").
- heareval: `heareval.predictions.runner <copy> --grid G --grid-points N` in
  the kit's own virtualenv (--heareval_venv; its own torch, on CPU unless
  that torch has CUDA), with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (Lightning
  1.6 checkpoints are not weights-only on torch >= 2.6), on a fresh
  byte-identical copy of the directory (the runner writes into it and skips
  a directory it has finished). "heareval s" is the time the runner records
  in prediction-done.json for task_predictions (it loads the embeddings
  inside, once per training run; that is part of how it works); the whole
  process's wall time is in the JSON as well.
- "ratio" = heareval s / hear_jax s. "process s" are the wall times of
  both whole child processes (interpreter, imports, loading included), and
  their ratio; from hear_jax's the seconds of the child's own FLOP-rate
  measurement after the probe (below) are taken out, as a user's run does
  not do it (the JSON keeps both).
- "compiles (s, cached)": XLA programs hear_jax compiled during run_task,
  the seconds spent compiling or loading them, and how many came from JAX's
  persistent compilation cache (`--compile_cache`, default <cache>/xla, so
  a second run of the same case compiles nothing; `hear_jax.compile_cache`).
- "validation checks / host round trips": the checks hear_jax scored and
  how many times the host waited to read a program's results for them
  (`probe.device_loop.CHECK_EVENT`, `HOST_READ_EVENT`, counted with a
  `jax.monitoring` listener). Scene tasks validate on the device, many
  checks per round trip and none between them; the event task's
  post-processing is chosen on the host, one round trip per check.

Memory. Every child runs under a small launcher (this file, `--_measure`)
that waits for it with os.wait4 and records ru_maxrss: the peak resident
set of the child (and of any child of its own it waited for, such as the
kit's DataLoader workers: the max, not the sum). The launcher exists
because on Linux a child's ru_maxrss is at least its parent's resident set
when it was spawned (vfork + exec), and this process holds jax, torch and
the peak-test matrices. "peak MB" is that number for each side. For the
probe itself the hear_jax child reads /proc/self/status: `base` is its
resident set after importing jax and hear_jax and starting the backend,
before reading the embeddings; right after reading them the high-water
mark is reset (/proc/self/clear_refs), and `probe peak` is the high-water
mark when run_task returns. "mem ratio" = (probe peak - base) /
embeddings bytes, where embeddings bytes is the float32 size of all splits
([rows, D] * 4). It counts the embeddings themselves once (they stay
loaded, as they must for the probe to read them), so 1.0 means the probe
added nothing, and the target (< 2) allows the probe one more copy's worth.
JAX's CPU client is in `base`, not charged to the data; what compiling and
running the probe's programs allocate is (the table also prints it in MB,
"probe +MB"). That part does not grow with the rows: on the small demo
tasks (4-30 MB of embeddings) it dominates the ratio (measured here: about
+290 MB for one grid point of the faster grid, +1.35 GB for the default
grid on the 512-d scene task), so the < 2 target is printed only from
400 MB of embeddings up (the other cases print the ratio alone). Where
clear_refs is not writable the mark is not reset and the ratio also covers
reading the embeddings (marked in the JSON).

FLOP rate. The training hear_jax actually did, counted analytically from the
FitResults (`TaskOutcome.grid`: every grid point on split 0; `.fits`: the
selected point on every other split): per member, per epoch, per training
row used (the last row is dropped when a batch of one would meet
BatchNorm), each Linear in->out costs 2*in*out (forward) + 2*in*out (weight
gradient) + 2*in*out (input gradient, every Linear but the first, whose
input is the fixed embedding); dims are [D] + [hidden_dim] * hidden_layers +
[n_labels] from the HParams. Plus a forward pass (2*in*out per layer) over
the validation rows at every check (epochs_run / check_val_every_n_epoch).
Bias, BatchNorm, ReLU, dropout, Adam, the loss and the test predictions are
not counted, nor the compute of members that stopped early but still ride
along in a vmapped program: this is the useful work, as in "model FLOPs
utilisation". "GFLOP/s" = that / hear_jax s; "% peak" = GFLOP/s / peak.

Peak. Before the runs, in this process: the median of several fp32 matmuls
of 2048x2048 and of 4096x4096 with jax (jitted, default device and
precision, so on a GPU it is the GPU's figure), numpy and torch (if it
imports); the best of each library is printed and the largest is "peak".
(On GPUs, XLA's default fp32 matmul precision may use TF32; the probe runs
with the same default.)

Scores. Primary metric side by side: k-fold mean ± std over the folds
(hear-eval-kit's aggregated_scores), else the test score. Agreement: scene
|mean difference| <= max(0.02, heareval's fold std), event <= 0.05; the
two share embeddings and protocol but not random numbers or framework.

Targets (for a 2-core CPU) are printed PASS or MISSED. Speed is the ratio
of the whole processes (what a user waits for): never below 1 (hear_jax
never slower), >= 1.5 on both 512-d scene cases, >= 1.3 on the 4096-d scene
case, >= 2 on the event case; head training at >= 75 % of the fp32 matmul
peak on the scene cases of 512-d and more; scores within tolerance; mem
ratio < 2 from 400 MB of embeddings up. A missed target does not change
the exit status; a failed run does (its log's tail is printed; logs are in
<cache>/logs/).

Output: the table on stdout, and everything (per-case timings, memory,
member epochs, heareval's per-fold best epoch and, from its CSV logs, the
epochs each of its training runs lasted, both score documents, the peak
measurements, the machine) as JSON to --out (default
<cache>/probe_vs_heareval.json).

On an accelerator machine it runs unchanged: jax picks the GPU for the
embeddings, the peak and the probe (this process does not preallocate GPU
memory, so the child can); heareval runs with the kit venv's torch.

Duration on the 2-core development machine, shared with other jobs: the
smoke run (`--grid faster --grid_points 1`) takes about 3 min once the
embeddings are cached (building them the first time adds about 1.5 min).
The default grid on the 512-d scene case alone took 37 min (hear_jax 11.5
min, heareval 24.5 min, peak test and copies the rest); the 4096-d scene and
the event case take longer still, so budget 1.5-2 h for the full default
run there.
"""

from __future__ import annotations

# Only the standard library at module level: the `--_measure` launcher runs
# this file and must stay small (its resident set floors its child's
# ru_maxrss). Everything else is imported where it is used.
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
THIS = pathlib.Path(__file__).resolve()

SCENE_MODELS = {4096: "naive", 512: "melstats(n_mels=256, sample_rate=22050)"}
SCENE_TASK = "demo/spoken_commands"
EVENT_TASK = "demo/sound_events"
SCENE_TASK_NAME = "demo_spoken_commands_5fold"
DEMO_SCENE_CLIPS = 1800  # the demo spoken_commands config (1200/300/300)
TASK_KEY_SEED = 0  # config.seed of a default hear_jax run

# A train/valid/test scene task: the demo pitch notes, more of them.
TVT_MODELS = {512: "melstats(n_mels=256, sample_rate=22050)",
              2048: "crepe"}
TVT_TASK = "demo_pitch_tvt"
DEMO_EVENT_SCENES = 100  # the demo sound_events config (60/20/20)

# Targets for the whole-process ratio (kit / hear_jax) on a 2-core CPU:
# every case at least 1 (never slower), these cases more.
SPEED_TARGETS = {("scene", 4096): 1.3, ("scene", 512): 1.5,
                 ("scene_tvt", 512): 1.5, "event": 2.0}
NEVER_SLOWER = 1.0
FLOP_FRACTION_TARGET = {("scene", 4096): 0.75, ("scene", 512): 0.75,
                        ("scene_tvt", 512): 0.75, ("scene_tvt", 2048): 0.75}
SCENE_TOLERANCE, EVENT_TOLERANCE = 0.02, 0.05
# The probe's added memory against its embeddings' size: a target from
# MEMORY_TARGET_FROM_BYTES of embeddings up, where the probe's fixed part
# (compiled programs, heads, batches: ~400 MB) stops dominating; smaller
# cases only report the ratio (README, "Memory").
MEMORY_RATIO_TARGET = 2.0
MEMORY_TARGET_FROM_BYTES = 400 << 20


# --- launcher: run a command, record its wall time and peak RSS -------------


def _measure_main(argv: list[str]) -> int:
  """`--_measure <result.json> <log> -- cmd...`: runs cmd (output to log),
  writes {"rc", "seconds", "maxrss_kb"}; exits with cmd's status."""
  result_path, log_path, sep, *cmd = argv
  if sep != "--" or not cmd:
    sys.exit("usage: --_measure <result.json> <log> -- <command ...>")
  start = time.perf_counter()
  with open(log_path, "w") as log:
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
  seconds = time.perf_counter() - start
  rc = os.waitstatus_to_exitcode(status)
  pathlib.Path(result_path).write_text(json.dumps(
      {"rc": rc, "seconds": seconds, "maxrss_kb": usage.ru_maxrss}))
  return rc


def measured_run(cmd: list[str], name: str, logs: pathlib.Path,
                 env: dict[str, str], cwd: pathlib.Path) -> dict[str, Any]:
  """Runs cmd under the launcher; returns rc, seconds, maxrss_kb, log."""
  logs.mkdir(parents=True, exist_ok=True)
  result, log = logs / f"{name}.measure.json", logs / f"{name}.log"
  result.unlink(missing_ok=True)
  proc = subprocess.run([sys.executable, str(THIS), "--_measure", str(result),
                         str(log), "--", *cmd], env=env, cwd=cwd)
  if not result.is_file():
    return {"rc": proc.returncode or 1, "seconds": None, "maxrss_kb": None,
            "log": str(log)}
  return {**json.loads(result.read_text()), "log": str(log)}


# --- the hear_jax child -------------------------------------------------------


def _proc_status_kb(field: str) -> int | None:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1])
  except OSError:
    pass
  return None


def _reset_peak() -> bool:
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")  # resets VmHWM (and ru_maxrss) to the current RSS
    return True
  except OSError:
    return False


def head_flops(in_dim: int, n_labels: int, hidden_layers: int,
               hidden_dim: int) -> tuple[int, int]:
  """(training FLOPs, forward FLOPs) per row of one head's Linears."""
  dims = [in_dim] + [hidden_dim] * hidden_layers + [n_labels]
  train = forward = 0
  for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
    forward += 2 * a * b
    # Forward + weight gradient; the input gradient too except for the first
    # Linear (its input, the embedding, is fixed).
    train += (4 if i == 0 else 6) * a * b
  return train, forward


def member_record(split_index: int, fit: Any, in_dim: int, n_labels: int,
                  train_rows: int, valid_rows: int) -> dict[str, Any]:
  hp = fit.hparams
  rows = train_rows
  if rows % hp.batch_size == 1 and hp.hidden_layers > 0:
    rows -= 1  # the trainer drops a last batch of one row before BatchNorm
  train, forward = head_flops(in_dim, n_labels, hp.hidden_layers,
                              hp.hidden_dim)
  checks = fit.epochs_run // hp.check_val_every_n_epoch
  return {"split": split_index, "hparams": hp.to_json(),
          "epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
          "stop_reason": fit.stop_reason, "train_rows": rows,
          "valid_rows": valid_rows, "validation_checks": checks,
          "flops": fit.epochs_run * rows * train + checks * valid_rows * forward}


def training_step_rate(info: Any, splits: dict[str, Any],
                       points: list[Any]) -> dict[str, float]:
  """The steady-state speed of head training alone: every architecture group
  of the grid, as the probe runs it on data split 0 (all members training,
  one chunk of epochs per call, compiled beforehand), timed over 3 calls.
  Returns its matmul FLOPs, seconds and GFLOP/s. The whole probe stage
  (`probe_s`) also compiles, validates, scores and runs stopped members'
  frozen compute until its group shrinks."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import mlp, protocol, trainer  # pylint: disable=g-import-not-at-top
  plan = protocol.data_splits(info)[0]
  train = protocol._examples(info, [splits[s] for s in plan.train])  # pylint: disable=protected-access
  x = trainer.stack_rows([train.x])
  y = trainer.stack_rows([train.y])
  rows = jax.device_put(np.arange(len(train.y), dtype=np.int32))
  groups: dict[tuple, list[Any]] = {}
  for p in points:
    groups.setdefault((p.hidden_layers, p.hidden_dim, p.batch_size,
                       p.check_val_every_n_epoch), []).append(p)
  flops = seconds = 0.0
  for group in groups.values():
    hp, m = group[0], len(group)
    keys = trainer.member_keys(jax.random.key(0), m)
    state, members = trainer._init_members(  # pylint: disable=protected-access
        np.asarray(jax.random.key_data(keys)),
        np.array([p.initialization == "xavier_normal" for p in group]),
        np.array([p.lr for p in group], np.float32),
        np.array([p.dropout for p in group], np.float32),
        np.full(m, y.shape[1], np.int32),
        shape=mlp.MlpShape(x.shape[1], y.shape[1], hp.hidden_layers,
                           hp.hidden_dim),
        impl=jax.random.key_impl(keys), place=None)
    run = lambda st: trainer._train_chunk(  # pylint: disable=protected-access
        st, members, np.ones(m, bool), x, y, rows,
        np.full(m, len(train.y), np.int32), np.int32(0),
        n_epochs=hp.check_val_every_n_epoch, batch_size=hp.batch_size,
        tails=trainer.program.tail_sizes(hp.batch_size, [len(train.y)],
                                         hp.hidden_layers > 0),
        multilabel=(info.prediction_type == "multilabel"
                    or info.embedding_type == "event"),
        shuffle=False, place=None)
    jax.block_until_ready(run(state))
    times = []
    for _ in range(3):
      start = time.perf_counter()
      jax.block_until_ready(run(state))
      times.append(time.perf_counter() - start)
    n_rows = len(train.y) - (len(train.y) % hp.batch_size == 1
                             and hp.hidden_layers > 0)
    train_flops, _ = head_flops(x.shape[1], y.shape[1], hp.hidden_layers,
                                hp.hidden_dim)
    flops += m * hp.check_val_every_n_epoch * n_rows * train_flops
    seconds += sorted(times)[1]
  return {"flops": flops, "seconds": seconds,
          "gflops": flops / seconds / 1e9}


def _probe_child(args: argparse.Namespace) -> None:
  rss_start = _proc_status_kb("VmRSS")
  import jax  # pylint: disable=g-import-not-at-top
  from hear_jax import compile_cache  # pylint: disable=g-import-not-at-top
  from hear_jax.config import default_config  # pylint: disable=g-import-not-at-top
  from hear_jax.data import heareval_layout  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import device_loop  # pylint: disable=g-import-not-at-top
  from hear_jax.probe import protocol  # pylint: disable=g-import-not-at-top
  events = []
  jax.monitoring.register_event_listener(
      lambda event, **_: events.append(event)
      if event in (device_loop.CHECK_EVENT, device_loop.HOST_READ_EVENT) else None)
  devices = jax.devices()  # start the backend: its memory is not the data's
  rss_base = _proc_status_kb("VmRSS")

  start = time.perf_counter()
  info, splits = heareval_layout.read_embeddings(args._probe_child)
  load_s = time.perf_counter() - start
  rss_loaded = _proc_status_kb("VmRSS")
  peak_reset = _reset_peak()

  config = default_config()
  config.probe.grid = args.grid
  config.probe.grid_points = args.grid_points
  config.compilation_cache_dir = args.compile_cache
  if args.shape_buckets != "auto":
    config.probe.shape_buckets = args.shape_buckets == "on"
  compile_cache.enable(compile_cache.directory(config))
  key = jax.random.fold_in(jax.random.key(args.seed),
                           zlib.crc32(info.name.encode()))
  compiled_before = compile_cache.totals()
  start = time.perf_counter()
  outcome = protocol.run_task(info, splits, config.probe, key,
                              embedding_path=os.path.abspath(
                                  args._probe_child))
  probe_s = time.perf_counter() - start
  compiled = compile_cache.totals() - compiled_before
  probe_peak = _proc_status_kb("VmHWM")

  in_dim = next(iter(splits.values())).x.shape[1]
  n_labels = len(info.label_vocabulary)
  plans = protocol.data_splits(info)
  sizes = {name: len(s.x) for name, s in splits.items()}
  members = []
  for i, plan in enumerate(plans):
    fits = (outcome.grid if i == 0 else [outcome.fits[plan.test]])
    for fit in fits:
      members.append(member_record(
          i, fit, in_dim, n_labels, sum(sizes[s] for s in plan.train),
          sizes[plan.valid]))
  doc = {
      "task": info.name, "dims": in_dim, "n_labels": n_labels,
      "rows": sizes, "embeddings_bytes": sum(s.x.nbytes
                                             for s in splits.values()),
      "load_s": load_s, "probe_s": probe_s,
      "rss_kb": {"start": rss_start, "base": rss_base, "loaded": rss_loaded,
                 "probe_peak": probe_peak},
      "peak_reset_before_probe": peak_reset,
      "selected": outcome.selected, "members": members,
      "flops": sum(m["flops"] for m in members),
      "backend": jax.default_backend(),
      "device": devices[0].device_kind, "n_devices": len(devices),
      "scores": outcome.doc,
      "compiled": {**compiled.as_dict(), "programs": compiled.programs},
      # Validation checks scored, and times the host waited for a program's
      # results to score or record them (one per check when the host scores
      # them; one per dispatch of many when the device does).
      "validation": {"checks": events.count(device_loop.CHECK_EVENT),
                     "host_reads": events.count(device_loop.HOST_READ_EVENT)}}
  # The benchmark's own measurement, which a user's run does not do: its
  # seconds are taken out of this process's wall time in the summary.
  start = time.perf_counter()
  doc["training_step"] = training_step_rate(
      info, splits, protocol.task_grid(info, config.probe))
  doc["training_step"]["measure_s"] = time.perf_counter() - start
  pathlib.Path(args._child_out).write_text(json.dumps(doc, indent=1))


# --- embeddings -----------------------------------------------------------------


def assign_folds(ids: list[str], labels: list[str], k: int) -> list[int]:
  """Stratified, deterministic fold of each clip (see the module docstring)."""
  by_label: dict[str, list[int]] = {}
  for i, label in enumerate(labels):
    by_label.setdefault(label, []).append(i)
  fold, dealt = [0] * len(ids), 0
  for label in sorted(by_label):
    members = sorted(by_label[label],
                     key=lambda i: (zlib.crc32(ids[i].encode()), ids[i]))
    for i in members:
      fold[i] = dealt % k
      dealt += 1
  return fold


def _embedded_task(spec: Any, model_spec: str, cache: pathlib.Path):
  """(task, splits, fingerprint): the task (a task spec, or a demo builder
  class and its config) prepared under <cache>/tfds and embedded (cached as
  npz under <cache>/npz)."""
  from hear_jax import run  # pylint: disable=g-import-not-at-top
  from hear_jax.config import default_config  # pylint: disable=g-import-not-at-top
  from hear_jax.data import task_specs  # pylint: disable=g-import-not-at-top
  from hear_jax.data.task import load_task  # pylint: disable=g-import-not-at-top
  from hear_jax.models import load_model  # pylint: disable=g-import-not-at-top
  if isinstance(spec, str):
    builder = task_specs.prepare_task(spec, str(cache / "tfds"))
  else:
    builder_class, config = spec
    builder = builder_class(config=config, data_dir=str(cache / "tfds"),
                            file_format="array_record")
    builder.download_and_prepare()
  task = load_task(builder)
  model = load_model(model_spec)
  splits, fingerprint, _ = run.embed_task(
      model, model_spec, task, builder,
      str(cache / "npz" / run.slug(model_spec) / task.info.name),
      default_config())
  return task, splits, fingerprint


def pooled_folds(splits, folds: int):
  """A scene task's splits (`SplitEmbeddings`) pooled and re-split into
  `folds` stratified folds {"fold00": ..., ...} (`assign_folds`)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from hear_jax.embed import SplitEmbeddings  # pylint: disable=g-import-not-at-top
  ids = [i for s in splits.values() for i in s.ids]
  labels = [lab for s in splits.values() for lab in s.labels]
  x = np.concatenate([s.x for s in splits.values()])
  fold_of = np.array(assign_folds(ids, [lab[0] for lab in labels], folds))
  out = {}
  for f in range(folds):
    rows = np.flatnonzero(fold_of == f)
    out[f"fold{f:02d}"] = SplitEmbeddings(
        ids=tuple(ids[i] for i in rows), x=x[rows],
        labels=tuple(labels[i] for i in rows),
        events=tuple(() for _ in rows))
  return out


def build_scene_kfold(cache: pathlib.Path, model_spec: str, dims: int,
                      folds: int, clips: int) -> pathlib.Path:
  """The k-fold scene case: `clips` demo spoken_commands clips (the demo
  config's 1800, or more of its generator, 60/20/20 balanced over the 12
  labels) pooled into `folds` stratified folds."""
  from hear_jax import run  # pylint: disable=g-import-not-at-top
  from hear_jax.data import heareval_layout  # pylint: disable=g-import-not-at-top
  from hear_jax.data.task import TaskInfo  # pylint: disable=g-import-not-at-top
  from tasks.demo.spoken_commands import spoken_commands_dataset_builder as spoken  # pylint: disable=g-import-not-at-top
  if clips == DEMO_SCENE_CLIPS:
    spec, name = SCENE_TASK, SCENE_TASK_NAME
  else:
    train, valid, test = _split_counts(clips, len(spoken.LABELS))
    spec = (spoken.Builder, spoken.SpokenCommandsConfig(
        name=f"bench{clips}", train=train, valid=valid, test=test))
    name = f"{SCENE_TASK_NAME}_{clips}"
  task, splits, fingerprint = _embedded_task(spec, model_spec, cache)
  ids = [i for s in splits.values() for i in s.ids]
  if len(set(ids)) != len(ids):
    raise ValueError(f"{SCENE_TASK}: clip ids repeat across splits; cannot"
                     " pool them into folds")
  width = next(iter(splits.values())).x.shape[1]
  if width != dims:
    raise ValueError(f"--scene_dims={dims}: model {model_spec} gives"
                     f" {width} dimensions")
  fold_splits = pooled_folds(splits, folds)
  names = list(fold_splits)
  metadata = {**task.info.metadata, "task_name": name,
              "split_mode": "new_split_kfold", "splits": names}
  metadata.pop("split_key", None)  # folds do not keep speakers apart
  info = TaskInfo(name=name, metadata=metadata,
                  label_vocabulary=task.info.label_vocabulary,
                  sample_rate=task.info.sample_rate)
  out = (cache / "embeddings" / run.slug(model_spec)
         / heareval_layout.task_dir_name(metadata))
  return heareval_layout.export_task(
      out, info, fold_splits,
      fingerprint=f"{fingerprint}\nfolds={folds} stratified crc32 v1")


def _split_counts(total: int, per_label: int = 1) -> tuple[int, int, int]:
  """train/valid/test counts 60/20/20 of `total`, in multiples of
  `per_label`."""
  units = total // per_label
  held = max(1, round(units * 0.2))
  if units - 2 * held < 1:
    raise ValueError(f"{total} is too few to split 60/20/20")
  return ((units - 2 * held) * per_label, held * per_label, held * per_label)


def build_scene_tvt(cache: pathlib.Path, model_spec: str, dims: int,
                    clips: int) -> pathlib.Path:
  """The train/valid/test scene case: the demo pitch builder's notes (36
  pitch classes, instruments disjoint between splits), `clips` of them."""
  from hear_jax import run  # pylint: disable=g-import-not-at-top
  from hear_jax.data import heareval_layout  # pylint: disable=g-import-not-at-top
  from hear_jax.data.task import TaskInfo  # pylint: disable=g-import-not-at-top
  from tasks.demo.pitch import pitch_dataset_builder as pitch  # pylint: disable=g-import-not-at-top
  train, valid, test = _split_counts(clips, len(pitch.PITCHES))
  config = pitch.PitchConfig(name=f"bench{clips}", train=train, valid=valid,
                             test=test)
  task, splits, fingerprint = _embedded_task((pitch.Builder, config),
                                             model_spec, cache)
  width = next(iter(splits.values())).x.shape[1]
  if width != dims:
    raise ValueError(f"--tvt_dims={dims}: model {model_spec} gives {width}"
                     " dimensions")
  name = f"{TVT_TASK}_{clips}"
  info = TaskInfo(name=name, metadata={**task.info.metadata, "task_name": name},
                  label_vocabulary=task.info.label_vocabulary,
                  sample_rate=task.info.sample_rate)
  out = (cache / "embeddings" / run.slug(model_spec)
         / heareval_layout.task_dir_name(info.metadata))
  return heareval_layout.export_task(out, info, splits,
                                     fingerprint=fingerprint)


def build_event(cache: pathlib.Path, model_spec: str,
                scenes: int = DEMO_EVENT_SCENES) -> pathlib.Path:
  """The event case: the demo sound_events task, or `scenes` scenes of its
  generator (60/20/20)."""
  from hear_jax import run  # pylint: disable=g-import-not-at-top
  from hear_jax.data import heareval_layout  # pylint: disable=g-import-not-at-top
  from hear_jax.data.task import TaskInfo  # pylint: disable=g-import-not-at-top
  from tasks.demo.sound_events import sound_events_dataset_builder as events  # pylint: disable=g-import-not-at-top
  if scenes == DEMO_EVENT_SCENES:
    spec = EVENT_TASK
  else:
    train, valid, test = _split_counts(scenes)
    spec = (events.Builder, events.SoundEventsConfig(
        name=f"bench{scenes}", train=train, valid=valid, test=test))
  task, splits, fingerprint = _embedded_task(spec, model_spec, cache)
  info = task.info
  if scenes != DEMO_EVENT_SCENES:
    name = f"{info.name}_{scenes}"
    info = TaskInfo(name=name, metadata={**info.metadata, "task_name": name},
                    label_vocabulary=info.label_vocabulary,
                    sample_rate=info.sample_rate)
  out = (cache / "embeddings" / run.slug(model_spec)
         / heareval_layout.task_dir_name(info.metadata))
  return heareval_layout.export_task(out, info, splits,
                                     fingerprint=fingerprint)


# --- matmul peak ------------------------------------------------------------------


def _median_seconds(fn, repeats: int) -> float:
  fn()  # warm up (compilation, thread pools)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_peak(sizes: tuple[int, ...] = (2048, 4096)) -> dict[str, Any]:
  """GFLOP/s of fp32 n x n matmuls per library: {lib: {n: GFLOP/s}, best}."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  out: dict[str, dict[str, float]] = {}
  matmul = jax.jit(jnp.matmul)
  for n in sizes:
    a = rng.standard_normal((n, n), np.float32)
    b = rng.standard_normal((n, n), np.float32)
    repeats = 5
    flops = 2.0 * n ** 3
    ja, jb = jax.device_put(a), jax.device_put(b)
    seconds = _median_seconds(lambda: matmul(ja, jb).block_until_ready(),
                              repeats)
    out.setdefault(f"jax ({jax.default_backend()})", {})[str(n)] = (
        flops / seconds / 1e9)
    seconds = _median_seconds(lambda: a @ b, repeats)
    out.setdefault("numpy", {})[str(n)] = flops / seconds / 1e9
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      continue
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    seconds = _median_seconds(lambda: ta @ tb, repeats)
    out.setdefault(f"torch {torch.__version__} (cpu)", {})[str(n)] = (
        flops / seconds / 1e9)
  best = {lib: max(v.values()) for lib, v in out.items()}
  return {"gflops": out, "best": best, "peak_gflops": max(best.values()),
          "peak_library": max(best, key=best.get)}


# --- runs -------------------------------------------------------------------------


def run_hear_jax(case: dict[str, Any], args: argparse.Namespace,
                 env: dict[str, str]) -> dict[str, Any]:
  logs = args.cache / "logs"
  out = logs / f"{case['name']}.hear_jax.json"
  out.unlink(missing_ok=True)
  cmd = [sys.executable, str(THIS), "--_probe_child", str(case["dir"]),
         "--_child_out", str(out), "--grid", args.grid,
         "--grid_points", str(args.grid_points), "--seed", str(args.seed),
         "--compile_cache", args.compile_cache,
         "--shape_buckets", args.shape_buckets]
  proc = measured_run(cmd, f"{case['name']}.hear_jax", logs, env, REPO)
  if proc["rc"] != 0 or not out.is_file():
    return {"failed": True, "process": proc}
  return {**json.loads(out.read_text()), "process": proc}


def _heareval_epochs(task_dir: pathlib.Path) -> list[int]:
  """Epochs each of the runner's trainings lasted (grid points, then the
  other splits), from Lightning's CSV logs: <task dir>/lightning_logs/
  version_<i>/metrics.csv, one row per validation check (0-based epoch)."""
  import csv  # pylint: disable=g-import-not-at-top
  runs = sorted(task_dir.glob("lightning_logs/version_*/metrics.csv"),
                key=lambda p: int(p.parent.name.split("_")[1]))
  epochs = []
  for path in runs:
    with open(path) as f:
      # Rows with a validation loss are checks; the test row's epoch is the
      # best checkpoint's, set by the runner.
      values = [int(float(row["epoch"])) for row in csv.DictReader(f)
                if row.get("val_loss") and row.get("epoch")]
    epochs.append(max(values) + 1 if values else 0)
  return epochs


def run_heareval(case: dict[str, Any], args: argparse.Namespace,
                 env: dict[str, str]) -> dict[str, Any]:
  work = args.cache / "heareval_runs" / case["name"]
  shutil.rmtree(work, ignore_errors=True)
  copy = work / case["dir"].parent.name / case["dir"].name
  shutil.copytree(case["dir"], copy)
  kit_python = args.heareval_venv / "bin" / "python"
  cmd = [str(kit_python), "-m", "heareval.predictions.runner", str(copy),
         "--grid", args.grid, "--grid-points", str(args.grid_points)]
  proc = measured_run(cmd, f"{case['name']}.heareval", args.cache / "logs",
                      {**env, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}, work)
  scores_path = copy / "test.predicted-scores.json"
  done_path = copy / "prediction-done.json"
  if proc["rc"] != 0 or not scores_path.is_file():
    return {"failed": True, "process": proc}
  scores = json.loads(scores_path.read_text())
  best_epochs = {k: v["epoch"] for k, v in scores.items()
                 if isinstance(v, dict) and "epoch" in v}
  return {"predict_s": json.loads(done_path.read_text())["time"],
          "scores": scores, "best_epoch_per_split": best_epochs,
          "epochs_per_training_run": _heareval_epochs(copy),
          "process": proc}


# --- summary ----------------------------------------------------------------------


def summarize(case: dict[str, Any], hj: dict[str, Any] | None,
              he: dict[str, Any] | None, peak: float) -> dict[str, Any]:
  from hear_jax.report import results  # pylint: disable=g-import-not-at-top
  row: dict[str, Any] = {"task": case["kind"], "dims": case["dims"],
                         "model": case["model"], "dir": str(case["dir"])}
  targets: dict[str, dict[str, Any]] = {}
  if hj and not hj.get("failed"):
    score, std = results.reported_score(hj["scores"])
    rss = hj["rss_kb"]
    mem_ratio = ((rss["probe_peak"] - rss["base"]) * 1024
                 / hj["embeddings_bytes"])
    gflops = hj["flops"] / hj["probe_s"] / 1e9
    row.update(hear_jax_s=hj["probe_s"], hear_jax_load_s=hj["load_s"],
               hear_jax_process_s=(
                   hj["process"]["seconds"]
                   - hj.get("training_step", {}).get("measure_s", 0.0)),
               hear_jax_peak_mb=hj["process"]["maxrss_kb"] / 1024,
               hear_jax_score=score, hear_jax_std=std,
               embeddings_mb=hj["embeddings_bytes"] / 2**20,
               probe_added_mb=(rss["probe_peak"] - rss["base"]) / 1024,
               mem_ratio=mem_ratio, gflops=gflops,
               fraction_of_peak=gflops / peak,
               member_epochs=sum(m["epochs_run"] for m in hj["members"]),
               compiles=hj["compiled"]["compiles"],
               compile_s=hj["compiled"]["compile_seconds"],
               compile_cache_hits=hj["compiled"]["compile_cache_hits"],
               checks=hj["validation"]["checks"],
               host_reads=hj["validation"]["host_reads"])
    if hj["embeddings_bytes"] >= MEMORY_TARGET_FROM_BYTES:
      targets["memory"] = {"value": mem_ratio,
                           "target": f"< {MEMORY_RATIO_TARGET}",
                           "ok": mem_ratio < MEMORY_RATIO_TARGET}
    fraction_target = FLOP_FRACTION_TARGET.get((case["kind"], case["dims"]))
    step = hj.get("training_step")
    if step:
      row.update(train_step_gflops=step["gflops"],
                 train_step_fraction=step["gflops"] / peak)
    if fraction_target is not None and step:
      # The target is on head training itself; the whole stage's rate
      # (compiling, validating, scoring included) is reported beside it.
      targets["flop_fraction"] = {
          "value": step["gflops"] / peak, "target": f">= {fraction_target}",
          "ok": step["gflops"] / peak >= fraction_target}
  if he and not he.get("failed"):
    score, std = results.reported_score(he["scores"])
    row.update(heareval_s=he["predict_s"],
               heareval_process_s=he["process"]["seconds"],
               heareval_peak_mb=he["process"]["maxrss_kb"] / 1024,
               heareval_score=score, heareval_std=std,
               heareval_epochs=he["epochs_per_training_run"])
  if "hear_jax_s" in row and "heareval_s" in row:
    ratio = row["heareval_s"] / row["hear_jax_s"]
    row["ratio"] = ratio
    process_ratio = row["heareval_process_s"] / row["hear_jax_process_s"]
    row["process_ratio"] = process_ratio
    # The targets are on what a user waits for: the whole processes.
    speed_target = SPEED_TARGETS.get(
        "event" if case["kind"] == "event" else (case["kind"], case["dims"]),
        NEVER_SLOWER)
    targets["speed"] = {"value": process_ratio, "target": f">= {speed_target}",
                        "ok": process_ratio >= speed_target}
    tolerance = (EVENT_TOLERANCE if case["kind"] == "event"
                 else max(SCENE_TOLERANCE, row["heareval_std"] or 0.0))
    diff = abs(row["hear_jax_score"] - row["heareval_score"])
    row.update(score_diff=diff, score_tolerance=tolerance)
    targets["scores"] = {"value": diff, "target": f"<= {tolerance:.4f}",
                         "ok": diff <= tolerance}
  row["targets"] = targets
  return row


def _fmt(value: Any, spec: str = ".1f") -> str:
  return "-" if value is None else format(value, spec)


def _score_text(score: float | None, std: float | None) -> str:
  if score is None:
    return "-"
  return f"{score:.4f}" + ("" if std is None else f" ± {std:.4f}")


def print_table(rows: list[dict[str, Any]], peak: dict[str, Any],
                metric: dict[str, str]) -> None:
  print()
  print("| task | dims | hear_jax s (load s) | heareval s | ratio |"
        " process s hear_jax / heareval (ratio) |"
        " compiles (s, cached) |"
        " peak MB hear_jax / heareval | hear_jax score | heareval score |"
        " abs diff (tol) | stage GFLOP/s (% peak) |"
        " training GFLOP/s (% peak) | probe +MB / emb MB = mem ratio |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    diff = ("-" if "score_diff" not in r else
            f"{r['score_diff']:.4f} ({r['score_tolerance']:.4f})"
            f" {'PASS' if r['targets']['scores']['ok'] else 'FAIL'}")
    print(f"| {r['task']} ({metric.get(r['task'], '?')}) | {r['dims']} |"
          f" {_fmt(r.get('hear_jax_s'))} ({_fmt(r.get('hear_jax_load_s'))}) |"
          f" {_fmt(r.get('heareval_s'))} |"
          f" {_fmt(r.get('ratio'), '.2f')}{'x' if 'ratio' in r else ''} |"
          f" {_fmt(r.get('hear_jax_process_s'))} /"
          f" {_fmt(r.get('heareval_process_s'))}"
          f" ({_fmt(r.get('process_ratio'), '.2f')}x) |"
          f" {_fmt(r.get('compiles'), 'd')} ({_fmt(r.get('compile_s'))} s,"
          f" {_fmt(r.get('compile_cache_hits'), 'd')}) |"
          f" {_fmt(r.get('hear_jax_peak_mb'), '.0f')} /"
          f" {_fmt(r.get('heareval_peak_mb'), '.0f')} |"
          f" {_score_text(r.get('hear_jax_score'), r.get('hear_jax_std'))} |"
          f" {_score_text(r.get('heareval_score'), r.get('heareval_std'))} |"
          f" {diff} | {_fmt(r.get('gflops'))}"
          f" ({_fmt(100 * r['fraction_of_peak'] if 'fraction_of_peak' in r else None)}%) |"
          f" {_fmt(r.get('train_step_gflops'))}"
          f" ({_fmt(100 * r['train_step_fraction'] if 'train_step_fraction' in r else None)}%)"
          f" | {_fmt(r.get('probe_added_mb'), '.0f')} /"
          f" {_fmt(r.get('embeddings_mb'), '.1f')} ="
          f" {_fmt(r.get('mem_ratio'), '.2f')} |")
  print("\nvalidation checks / host round trips (results read back):")
  for r in rows:
    if "checks" in r:
      print(f"  {r['task']} {r['dims']}-d: {r['checks']} checks /"
            f" {r['host_reads']} reads")
  libs = ", ".join(f"{lib} {g:.1f}" for lib, g in peak["best"].items())
  print(f"\nfp32 matmul GFLOP/s (best of 2048/4096): {libs}; peak ="
        f" {peak['peak_gflops']:.1f} ({peak['peak_library']})")
  print("\ntargets:")
  for r in rows:
    for name, t in r["targets"].items():
      verdict = "PASS" if t["ok"] else "MISSED"
      print(f"  {r['task']} {r['dims']}-d {name}: {t['value']:.3f}"
            f" (target {t['target']}) {verdict}")


# --- main -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cache", type=pathlib.Path,
                      default=pathlib.Path("/tmp/probe_bench"),
                      help="embeddings, heareval's working copies, logs")
  parser.add_argument("--scene_dims", default="4096,512",
                      help=f"comma list of {sorted(SCENE_MODELS)}")
  parser.add_argument("--tasks", default="scene,scene_tvt,event",
                      help="comma list of scene, scene_tvt, event")
  parser.add_argument("--tvt_dims", default="512,2048",
                      help=f"comma list of {sorted(TVT_MODELS)}")
  parser.add_argument("--kfold_clips", type=int, default=3000,
                      help="clips of the k-fold scene case (1800: the demo"
                           " spoken_commands config as it is; more: its"
                           " generator, balanced over the 12 labels)")
  parser.add_argument("--tvt_clips", type=int, default=2916,
                      help="clips of the train/valid/test pitch task")
  parser.add_argument("--event_model", default="melstats",
                      help="hear_jax model spec embedding the event task")
  parser.add_argument("--event_scenes", type=int, default=DEMO_EVENT_SCENES,
                      help="10-s scenes of the event task (60/20/20)")
  parser.add_argument("--grid", default="default",
                      choices=("default", "fast", "faster"))
  parser.add_argument("--grid_points", type=int, default=8)
  parser.add_argument("--folds", type=int, default=5)
  parser.add_argument("--seed", type=int, default=TASK_KEY_SEED)
  parser.add_argument("--skip_heareval", action="store_true",
                      help="hear_jax only")
  parser.add_argument("--heareval_venv", type=pathlib.Path,
                      default=pathlib.Path("/work/heareval-venv"))
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help="JSON results (default <cache>/probe_vs_heareval"
                           ".json)")
  parser.add_argument("--compile_cache", default="",
                      help="XLA compilation cache for hear_jax (JAX's"
                           " persistent cache; default <cache>/xla, so a"
                           " rerun loads its programs; 'none': off)")
  parser.add_argument("--shape_buckets", choices=("auto", "on", "off"),
                      default="auto",
                      help="config.probe.shape_buckets (auto: on for "
                      "accelerators, off on a CPU)")
  parser.add_argument("--_probe_child", help=argparse.SUPPRESS)
  parser.add_argument("--_child_out", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args._probe_child:
    return args
  args.cache = args.cache.resolve()
  args.compile_cache = args.compile_cache or str(args.cache / "xla")
  args.out = args.out or args.cache / "probe_vs_heareval.json"
  args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
  kinds = ("scene", "scene_tvt", "event")
  bad = [t for t in args.tasks if t not in kinds]
  if bad or not args.tasks:
    parser.error(f"--tasks: {bad or 'nothing'} (expected some of {kinds})")
  for flag, task, models in (("scene_dims", "scene", SCENE_MODELS),
                             ("tvt_dims", "scene_tvt", TVT_MODELS)):
    text = getattr(args, flag)
    try:
      dims = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
      parser.error(f"--{flag}: {text!r} is not a comma list of integers")
    bad = [d for d in dims if d not in models]
    if task in args.tasks and (bad or not dims):
      parser.error(f"--{flag}: {bad or 'nothing'} (available:"
                   f" {sorted(models)})")
    setattr(args, flag, dims)
  if args.event_scenes < 5:
    parser.error("--event_scenes: must be >= 5 (3/1/1 scenes)")
  # Both clip counts are dealt 60/20/20 per label (12 commands, 36 pitches).
  for flag, per_label in (("kfold_clips", 12), ("tvt_clips", 36)):
    if getattr(args, flag) < 5 * per_label:
      parser.error(f"--{flag}: must be >= {5 * per_label} (3/1/1 clips of"
                   f" each of the {per_label} labels)")
  if args.grid_points < 1:
    parser.error("--grid_points: must be >= 1")
  if args.folds < 3:
    parser.error("--folds: must be >= 3 (train, valid and test folds)")
  kit_python = args.heareval_venv / "bin" / "python"
  if not args.skip_heareval and not kit_python.exists():
    parser.error(f"--heareval_venv: {kit_python} not found; build it with"
                 f" benchmarks/make_heareval_venv.sh {args.heareval_venv},"
                 " or pass --skip_heareval")
  return args


def main() -> int:
  if len(sys.argv) > 1 and sys.argv[1] == "--_measure":
    return _measure_main(sys.argv[2:])
  args = parse_args()
  if args._probe_child:
    _probe_child(args)
    return 0
  # Children get the environment as it was: this process's GPU setting below
  # is for itself (it holds jax for the peak test; preallocating 75 % of an
  # accelerator's memory here would starve the probe's child).
  child_env = dict(os.environ)
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  sys.path.insert(0, str(REPO))  # `tasks.demo` builders, when not installed
  os.chdir(REPO)
  args.cache.mkdir(parents=True, exist_ok=True)

  start = time.perf_counter()
  cases = []
  scene_cases = {
      "scene": (args.scene_dims, SCENE_MODELS,
                lambda model, dims: build_scene_kfold(
                    args.cache, model, dims, args.folds, args.kfold_clips)),
      "scene_tvt": (args.tvt_dims, TVT_MODELS,
                    lambda model, dims: build_scene_tvt(
                        args.cache, model, dims, args.tvt_clips))}
  for kind, (all_dims, models, build) in scene_cases.items():
    if kind in args.tasks:
      for dims in all_dims:
        cases.append({"kind": kind, "dims": dims, "model": models[dims],
                      "name": f"{kind}_{dims}",
                      "dir": build(models[dims], dims)})
  if "event" in args.tasks:
    path = build_event(args.cache, args.event_model, args.event_scenes)
    dims = json.loads((path / "train.embedding-dimensions.json")
                      .read_text())[1]
    cases.append({"kind": "event", "dims": dims, "model": args.event_model,
                  "name": f"event_{dims}", "dir": path})
  print(f"embeddings ready in {time.perf_counter() - start:.1f} s:"
        f" {', '.join(str(c['dir']) for c in cases)}", flush=True)

  peak = matmul_peak()
  print(f"fp32 matmul peak: {peak['peak_gflops']:.1f} GFLOP/s"
        f" ({peak['peak_library']})", flush=True)

  rows, raw, failed = [], [], []
  for case in cases:
    print(f"{case['name']}: hear_jax ...", flush=True)
    hj = run_hear_jax(case, args, child_env)
    he = None
    if not args.skip_heareval:
      print(f"{case['name']}: heareval ...", flush=True)
      he = run_heareval(case, args, child_env)
    for side, result in (("hear_jax", hj), ("heareval", he)):
      if result and result.get("failed"):
        log = pathlib.Path(result["process"]["log"])
        tail = log.read_text()[-3000:] if log.is_file() else ""
        print(f"{case['name']}: {side} FAILED (rc"
              f" {result['process']['rc']}), log {log}:\n{tail}",
              file=sys.stderr)
        failed.append(f"{case['name']}/{side}")
    rows.append(summarize(case, hj, he, peak["peak_gflops"]))
    raw.append({"case": {**case, "dir": str(case["dir"])}, "hear_jax": hj,
                "heareval": he})

  metric = {}
  for case in cases:
    meta = json.loads((case["dir"] / "task_metadata.json").read_text())
    metric[case["kind"]] = meta["evaluation"][0]
  print_table(rows, peak, metric)
  import jax  # pylint: disable=g-import-not-at-top
  doc = {"args": {k: str(v) if isinstance(v, pathlib.Path) else v
                  for k, v in vars(args).items() if not k.startswith("_")},
         "machine": {"cpus": os.cpu_count(), "backend": jax.default_backend(),
                     "device": jax.devices()[0].device_kind},
         "matmul_peak": peak, "rows": rows, "runs": raw, "failed": failed,
         "seconds": time.perf_counter() - start}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(doc, indent=1, default=str))
  print(f"\nJSON: {args.out}; total {doc['seconds']:.0f} s")
  if failed:
    print(f"FAILED runs: {', '.join(failed)}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
