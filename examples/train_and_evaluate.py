"""Train a small Flax audio encoder from scratch; score it while it trains.

  .venv/bin/python examples/train_and_evaluate.py                # ~5 min, 2 cores
  .venv/bin/python examples/train_and_evaluate.py --tiny         # seconds (tests)
  tensorboard --logdir runs/train_and_evaluate                   # the curves

The encoder: log-mel frames (hear_jax's melstats front end, 64 bands every
10 ms) -> LayerNorm -> three 1-D convolutions over time (64 channels, kernel
5, GELU) -> 40 ms average pooling. Every conv layer's pooled output is an
embedding layer, so the model has three layers and the Evaluator scores
each of them.

The objective (honest, supervised): classify the clip (mean of the last
layer's frames -> Linear) on the *train* splits of two demo tasks at once,
pitch (36 notes) and spoken commands (12 words), with one head each; the
Evaluator fits its probes on the tasks' train splits and scores their *test*
splits (other instruments, other voices), plus the demo sound-event task,
which the encoder never trains on.

Every `--eval_every` steps, `hear_jax.Evaluator(..., probe="fast")` (the
closed-form ridge probe) scores the current params on the three demo tasks;
the scalars go to TensorBoard event files and `scores.jsonl` in `--logdir`,
and a PNG of the curves is drawn at the end (`scores.png`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import hear_jax
from hear_jax.data import task_specs
from hear_jax.data.task import load_task
from hear_jax.models import from_functions, melstats
from hear_jax.report.tensorboard_events import EventFileWriter

SAMPLE_RATE = 16000
POOL = 4  # 4 x 10 ms frames per embedding frame
TRAIN_TASKS = ("pitch", "spoken_commands")
EVAL_TASKS = ("pitch", "spoken_commands", "sound_events")
PRIMARY = {"demo_pitch": "pitch_acc", "demo_spoken_commands": "top1_acc",
           "demo_sound_events": "event_onset_200ms_fms"}


class Encoder(nn.Module):
  """Log-mel frames [B, N, M] -> every layer's pooled frames [L, B, N/4, C]."""

  channels: int = 64
  layers: int = 3

  @nn.compact
  def __call__(self, log_mel: jax.Array) -> jax.Array:
    h = nn.LayerNorm()(log_mel)
    outs = []
    for _ in range(self.layers):
      h = nn.gelu(nn.Conv(self.channels, (5,))(h))
      n = h.shape[1] // POOL  # mean of each 4 frames (a reshape, not a
      # reduce-window, whose gradient XLA:CPU constant-folds slowly)
      outs.append(h[:, :n * POOL].reshape(h.shape[0], n, POOL, -1).mean(2))
    return jnp.stack(outs)


FRONT_END = melstats.create(n_mels=64)  # its log-mel front end, fixed
ENCODER = Encoder()


def embed(params: dict, audio: jax.Array) -> tuple[jax.Array, jax.Array]:
  """hear_jax's timestamp function: audio [B, T] -> (every layer's frames
  [L, B, F, C], frame centres [B, F] in ms)."""
  log_mel, frame_ms = melstats.log_mel_frames(
      FRONT_END.params, audio, SAMPLE_RATE, 512)
  emb = ENCODER.apply(params["encoder"], log_mel)
  n = emb.shape[2]
  t_ms = jnp.asarray(frame_ms[:n * POOL].reshape(n, POOL).mean(axis=1))
  return emb, jnp.broadcast_to(t_ms, emb.shape[1:3])


def load_train_split(name: str, size: str, data_dir: str):
  """A demo task's train split: audio [N, T] float32 and int labels."""
  task = load_task(task_specs.prepare_task(f"demo/{name}/{size}", data_dir))
  split = task.read_split("train")
  vocab = {label: i for i, label in enumerate(task.info.label_vocabulary)}
  audio = np.stack([a.astype(np.float32) / 32768.0 for a in split.audio])
  labels = np.array([vocab[l[0]] for l in split.labels], np.int32)
  return audio, labels, len(vocab)


def init(key: jax.Array, classes: dict[str, int]) -> dict:
  k_enc, *k_heads = jax.random.split(key, 1 + len(classes))
  log_mel, _ = melstats.log_mel_frames(
      FRONT_END.params, jnp.zeros((1, SAMPLE_RATE)), SAMPLE_RATE, 512)
  return {"encoder": ENCODER.init(k_enc, log_mel),
          "heads": {name: nn.Dense(n).init(k, jnp.zeros((1, 64)))
                    for (name, n), k in zip(classes.items(), k_heads)}}


def loss_fn(params: dict, batches: dict) -> jax.Array:
  total = 0.0
  for name, (audio, labels) in batches.items():
    emb, _ = embed(params, audio)
    clip = emb[-1].mean(axis=1)  # the last layer, averaged over frames
    logits = nn.Dense(params["heads"][name]["params"]["kernel"].shape[1]
                      ).apply(params["heads"][name], clip)
    total += optax.softmax_cross_entropy_with_integer_labels(
        logits, labels).mean()
  return total / len(batches)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tiny", action="store_true",
                      help="the tiny demo tasks and a few steps (tests)")
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--eval_every", type=int, default=None)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--learning_rate", type=float, default=3e-3)
  parser.add_argument("--logdir", default="runs/train_and_evaluate")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  size = "tiny" if args.tiny else "demo"
  steps = args.steps or (6 if args.tiny else 400)
  eval_every = args.eval_every or (3 if args.tiny else 50)

  start = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix="train_and_evaluate-") as data_dir:
    train = {name: load_train_split(name, size, data_dir)
             for name in TRAIN_TASKS}
    evaluator = hear_jax.Evaluator(
        [f"demo/{name}/{size}" for name in EVAL_TASKS], probe="fast",
        sample_rate=SAMPLE_RATE, seed=args.seed, data_dir=data_dir)
  print(f"data ready in {time.perf_counter() - start:.1f} s")

  key = jax.random.key(args.seed)
  params = init(key, {name: n for name, (_, _, n) in train.items()})
  # One model, built once: each evaluation only swaps its params, so the
  # Evaluator's compiled programs are reused.
  model = from_functions(embed, params, sample_rate=SAMPLE_RATE,
                         name="conv_encoder")
  print(f"layers: {model.layer_names}, {model.timestamp_embedding_size}-d")
  optimizer = optax.adam(args.learning_rate)
  opt_state = optimizer.init(params)

  @jax.jit
  def train_step(params, opt_state, batches):
    loss, grads = jax.value_and_grad(loss_fn)(params, batches)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(args.seed)
  os.makedirs(args.logdir, exist_ok=True)
  history = []
  with EventFileWriter(args.logdir) as events, open(
      os.path.join(args.logdir, "scores.jsonl"), "w") as log:
    for step in range(steps + 1):
      if step % eval_every == 0 or step == steps:
        t = time.perf_counter()
        scalars = evaluator.run(dataclasses.replace(model, params=params),
                                step=step)
        seconds = time.perf_counter() - t
        events.add_scalars({f"eval/{k}": v for k, v in scalars.items()}, step)
        events.flush()
        history.append({"step": step, "eval_seconds": seconds, **scalars})
        log.write(json.dumps(history[-1]) + "\n")
        log.flush()
        print(f"step {step:4d} eval {seconds:5.1f} s  " + "  ".join(
            f"{task} {metric} {scalars[f'{task}/{metric}']:.3f}"
            for task, metric in PRIMARY.items()), flush=True)
      if step == steps:
        break
      batches = {}
      for name, (audio, labels, _) in train.items():
        rows = rng.choice(len(labels), min(args.batch, len(labels)),
                          replace=False)
        batches[name] = (audio[rows], labels[rows])
      params, opt_state, loss = train_step(params, opt_state, batches)
      events.add_scalar("train/loss", float(loss), step)
  first, last = history[0], history[-1]
  print(f"done in {time.perf_counter() - start:.0f} s; first -> last "
        "evaluation: " + ", ".join(
            f"{task} {first[f'{task}/{m}']:.3f} -> {last[f'{task}/{m}']:.3f}"
            for task, m in PRIMARY.items()))
  _plot(history, os.path.join(args.logdir, "scores.png"))


def _plot(history: list[dict], path: str) -> None:
  """The primary metrics against the step (skipped without matplotlib)."""
  try:
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  fig = Figure(figsize=(6, 3.5))
  ax = fig.add_subplot()
  steps = [h["step"] for h in history]
  for task, metric in PRIMARY.items():
    ax.plot(steps, [h[f"{task}/{metric}"] for h in history], marker="o",
            label=f"{task} {metric}")
  ax.set_xlabel("training step")
  ax.set_ylabel("test score (ridge probe)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
