"""Training logs of the tested probe heads: JSON lines and TensorBoard.

  write_training_logs(task_dir, outcome)   # after protocol.run_task
  # <task_dir>/logs/<test split>/metrics.jsonl
  # <task_dir>/logs/<test split>/events.out.tfevents.*   (tensorboard --logdir)
  curve = read_training_log(f"{task_dir}/logs/test/metrics.jsonl")

Writers follow CLU's `MetricWriter` interface (`write_scalars(step, dict)`,
`write_hparams(dict)`, `flush()`, `close()`), so a `clu.metric_writers`
writer can be passed in where CLU is usable. CLU itself is not a
dependency: `import clu.metric_writers` imports TensorFlow (clu 0.0.12), so
the defaults here are a JSON-lines writer and a TensorFlow-free TensorBoard
writer (`tensorboard_events`).

One step is one epoch. Every epoch logs `train_loss` (mean batch loss);
every validation check also logs `valid_loss` and `valid_score` (the
monitored value: the task's primary metric, or the validation loss when the
task monitors the loss). The hparams record holds the head's grid point and
its early-stopping outcome (best epoch and score, stop reason).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from hear_jax.report import tensorboard_events

LOG_FILE = "metrics.jsonl"


class MetricWriter(Protocol):
  """The part of `clu.metric_writers.MetricWriter` used here."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    ...

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    ...

  def flush(self) -> None:
    ...

  def close(self) -> None:
    ...


def _json_value(value: Any) -> Any:
  if isinstance(value, float) and not math.isfinite(value):
    return None  # strict JSON has no NaN/inf
  return value if isinstance(value, (str, int, float, bool, type(None))) else (
      str(value))


class JsonLinesWriter:
  """One JSON object per line: {"step": 3, "train_loss": 0.7, ...}, and
  {"hparams": {...}} for the run description."""

  def __init__(self, path: str):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    self.path = path
    self._file = open(path, "a")

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    record = {"step": int(step)}
    record.update({k: _json_value(float(v)) for k, v in scalars.items()})
    self._file.write(json.dumps(record) + "\n")

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._file.write(json.dumps(
        {"hparams": {k: _json_value(v) for k, v in hparams.items()}}) + "\n")

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()


class TensorBoardWriter:
  """Scalars to a TensorBoard event file; hparams are left to the JSON log
  (TensorBoard's hparams plugin needs its own protocol buffers)."""

  def __init__(self, log_dir: str):
    self._events = tensorboard_events.EventFileWriter(log_dir)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._events.add_scalars(dict(scalars), int(step))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    del hparams

  def flush(self) -> None:
    self._events.flush()

  def close(self) -> None:
    self._events.close()


class MultiWriter:
  """Writes to every writer (CLU's MultiWriter, for these two methods)."""

  def __init__(self, writers: Sequence[MetricWriter]):
    self.writers = list(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for w in self.writers:
      w.write_scalars(step, scalars)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    for w in self.writers:
      w.write_hparams(hparams)

  def flush(self) -> None:
    for w in self.writers:
      w.flush()

  def close(self) -> None:
    for w in self.writers:
      w.close()


def default_writer(log_dir: str) -> MultiWriter:
  return MultiWriter([JsonLinesWriter(os.path.join(log_dir, LOG_FILE)),
                      TensorBoardWriter(log_dir)])


def write_fit(writer: MetricWriter, fit: Any, *, monitor: str) -> None:
  """Logs one `trainer.FitResult` (its per-epoch losses and checks)."""
  hparams = dataclasses.asdict(fit.hparams)
  writer.write_hparams({
      **hparams, "monitor": monitor, "best_epoch": int(fit.best_epoch),
      "best_score": float(fit.best_score), "epochs_run": int(fit.epochs_run),
      "stop_reason": fit.stop_reason})
  checks = {c.epoch: c for c in fit.history}
  for epoch, loss in enumerate(fit.train_losses, start=1):
    scalars = {"train_loss": float(loss)}
    if epoch in checks:
      scalars["valid_loss"] = checks[epoch].valid_loss
      scalars["valid_score"] = checks[epoch].score
    writer.write_scalars(epoch, scalars)
  writer.flush()


def write_training_logs(
    task_dir: str, outcome: Any,
    make_writer: Callable[[str], MetricWriter] = default_writer) -> list[str]:
  """Logs the tested head of every test split of a `protocol.TaskOutcome`;
  returns the log directories. A split's old logs are replaced (a refit
  would otherwise add a second event file that TensorBoard overlays)."""
  dirs = []
  for split, fit in outcome.fits.items():
    if not len(getattr(fit, "train_losses", ())):
      continue  # nothing trained (a k-NN probe): no curves to log
    log_dir = os.path.join(task_dir, "logs", split)
    if os.path.isdir(log_dir):
      shutil.rmtree(log_dir)
    writer = make_writer(log_dir)
    try:
      write_fit(writer, fit, monitor=outcome.monitor)
    finally:
      writer.close()
    dirs.append(log_dir)
  return dirs


@dataclasses.dataclass(frozen=True)
class TrainingCurve:
  """A JSON training log read back: what the learning-curve plot draws."""

  hparams: dict[str, Any]
  train_epochs: tuple[int, ...]
  train_loss: tuple[float, ...]
  check_epochs: tuple[int, ...]
  valid_loss: tuple[float, ...]
  valid_score: tuple[float, ...]


def _float(value: Any) -> float:
  return math.nan if value is None else float(value)


def read_training_log(path: str) -> TrainingCurve:
  hparams: dict[str, Any] = {}
  train, checks = [], []
  with open(path) as f:
    for n, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
      if "hparams" in record:
        hparams = record["hparams"]
        continue
      if "step" not in record:
        raise ValueError(f"{path}:{n}: a scalar record needs a 'step'")
      if "train_loss" in record:
        train.append((record["step"], _float(record["train_loss"])))
      if "valid_loss" in record:
        checks.append((record["step"], _float(record["valid_loss"]),
                       _float(record.get("valid_score"))))
  return TrainingCurve(
      hparams, tuple(s for s, _ in train), tuple(v for _, v in train),
      tuple(c[0] for c in checks), tuple(c[1] for c in checks),
      tuple(c[2] for c in checks))
