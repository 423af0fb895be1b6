"""Each model reads a hearpreprocess task's audio at its own sample rate, as
hear-eval-kit's runner does; a rate the task lacks is resampled from the best
one there, with a warning and `audio_resampled_from`; model specs are checked
before any task is read."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile as sf

from hear_jax import run
from hear_jax.config import default_config
from hear_jax.data import hearpreprocess
from hear_jax.data import task_specs
from hear_jax.models import load_model

import hearpreprocess_dirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK = "toy-1.0-full"
LABELS = ("low", "high")


def _metadata():
  return {"task_name": "toy", "version": "1.0", "embedding_type": "scene",
          "prediction_type": "multiclass", "split_mode": "trainvaltest",
          "sample_duration": 0.5, "evaluation": ["top1_acc"],
          "splits": ["train", "valid", "test"], "default_mode": "full",
          "mode": "full"}


def _clip(label: str, seed: int):
  """A tone per label plus noise, at whatever rate is asked for. Each rate's
  noise differs (the seed folds in the rate), so embeddings made from
  another rate's folder cannot pass for this rate's."""
  def audio(rate: int) -> np.ndarray:
    rng = np.random.default_rng([seed, rate])
    t = np.arange(rate // 2) / rate
    tone = np.sin(2 * np.pi * (300.0 if label == "low" else 2000.0) * t)
    x = 0.3 * tone + 0.1 * rng.standard_normal(len(t))
    return np.round(x * 32767).astype(np.int16)
  return audio


def _task_at(root, rates):
  splits = {split: {f"{split}{i}.wav": ([LABELS[i % 2]], _clip(
      LABELS[i % 2], 100 * k + i)) for i in range(n)}
            for k, (split, n) in enumerate(
                (("train", 6), ("valid", 4), ("test", 4)))}
  return hearpreprocess_dirs.write_task(root, TASK, _metadata(), LABELS,
                                        splits, rate=rates)


def _config(task_spec: str, model: str = "melstats,naive"):
  config = default_config()
  config.model = model
  config.tasks = [task_spec]
  config.probe.grid = "faster"
  config.probe.grid_points = 1
  config.probe.max_epochs = 3
  config.probe_checkpoint_seconds = -1.0
  return config


def _own_rate_embeddings(model_spec: str, task_dir, split: str) -> np.ndarray:
  """Scene embeddings computed straight from the model's own `<rate>/`
  folder, in the cache's row order (sorted wav names)."""
  model = load_model(model_spec)
  folder = task_dir / str(model.sample_rate) / split
  names = sorted(os.listdir(folder))
  audio = np.stack([sf.read(folder / n, dtype="int16")[0] for n in names])
  audio = audio.astype(np.float32) / 32768.0
  return np.asarray(jax.jit(model.scene_embeddings)(model.params, audio))


# --- choosing and finding rates ---------------------------------------------


@pytest.mark.parametrize("rates, model_rate, want", [
    ((16000, 44100), 44100, 44100), ((16000, 44100), 16000, 16000),
    ((16000, 48000), 44100, 48000),   # lowest above: nothing audible lost
    ((22050, 32000, 48000), 16000, 22050),
    ((16000, 22050), 44100, 22050)])  # none above: the highest
def test_rate_for_model_is_own_else_lowest_above_else_highest(
    rates, model_rate, want):
  assert hearpreprocess.rate_for_model(rates, model_rate) == want


def test_rate_sources_of_a_folder_and_of_a_folder_of_tarballs(tmp_path):
  task = _task_at(tmp_path / "unpacked", (16000, 44100))
  assert hearpreprocess.rate_sources(task) == {16000: task, 44100: task}
  # The folder above a task directory works too (one task in it).
  assert hearpreprocess.rate_sources(tmp_path / "unpacked") == {
      16000: task, 44100: task}
  tarballs = hearpreprocess_dirs.write_rate_tarballs(task, tmp_path / "tars")
  assert hearpreprocess.rate_sources(tmp_path / "tars") == dict(
      zip((16000, 44100), tarballs))
  assert task_specs.audio_rates(f"hearpreprocess:{tmp_path / 'tars'}") == (
      16000, 44100)
  # A catalogue spec picks its task's tarballs out of a shared folder.
  (tmp_path / "tars" / "hear2021-other-1.0-full-48000.tar.gz").write_bytes(b"")
  assert hearpreprocess.rate_sources(tmp_path / "tars", task_dir=TASK) == dict(
      zip((16000, 44100), tarballs))
  with pytest.raises(ValueError, match=r"holds 2 tasks' data \(other-1.0-full, toy"):
    hearpreprocess.rate_sources(tmp_path / "tars")
  (tmp_path / "tars" / "hear2021-other-1.0-full-48000.tar.gz").unlink()
  (tmp_path / "tars" / f"{TASK}.tar.gz").write_bytes(b"")
  with pytest.raises(ValueError, match=f"{TASK}.tar.gz: its name does not end"
                     " in -<sample rate>.tar.gz"):
    hearpreprocess.rate_sources(tmp_path / "tars")


def test_forced_rate_is_read_by_every_model(tmp_path, caplog):
  naive = load_model("naive")
  with caplog.at_level(logging.WARNING):
    assert run._audio_rate("naive", naive, "t", (16000, 44100), 16000) == 16000  # pylint: disable=protected-access
    assert run._audio_rate("naive", naive, "t", (16000, 44100), None) == 44100  # pylint: disable=protected-access
    assert run._audio_rate("naive", naive, "t", (), None) is None  # pylint: disable=protected-access
  assert not caplog.records  # forced, own rate, builder task: no warning
  task = _task_at(tmp_path, (16000, 44100))
  builder = task_specs.prepare_task(f"hearpreprocess:{task}",
                                    str(tmp_path / "tfds"), 16000)
  assert builder.builder_config.name == f"{TASK}-16000"


# --- whole runs ---------------------------------------------------------------


def test_two_rate_folder_each_model_reads_its_own_rate(tmp_path, caplog):
  task = _task_at(tmp_path / "data", (16000, 44100))
  workdir = tmp_path / "w"
  with caplog.at_level(logging.WARNING):
    run.evaluate(_config(f"hearpreprocess:{task}"), str(workdir))
  assert not [r for r in caplog.records if "resampling" in r.getMessage()]
  # One dataset per rate, each prepared once.
  assert sorted(os.listdir(workdir / "tfds" / "hearpreprocess_task")) == [
      f"{TASK}-16000", f"{TASK}-44100"]
  for model in ("melstats", "naive"):
    out = workdir / model / "toy"
    for split in ("train", "test"):
      with np.load(out / "embeddings" / f"{split}.npz") as cached:
        np.testing.assert_allclose(
            cached["x"], _own_rate_embeddings(model, task, split),
            rtol=1e-6, atol=1e-6)
    doc = json.loads((out / "test.predicted-scores.json").read_text())
    assert "audio_resampled_from" not in doc
    compute = json.loads((out / "compute.json").read_text())
    assert compute["audio_resampled_from"] is None
    assert compute["audio_sample_rate"] == load_model(model).sample_rate


def test_missing_rate_is_resampled_from_the_best_tarball_with_a_warning(
    tmp_path, caplog):
  """A folder of the task's 16 kHz and 48 kHz tarballs: naive (44.1 kHz)
  reads the 48 kHz audio, resampled; melstats reads its own 16 kHz."""
  task = _task_at(tmp_path / "data", (16000, 48000))
  folder = tmp_path / "tarballs"
  hearpreprocess_dirs.write_rate_tarballs(task, folder)
  workdir = tmp_path / "w"
  with caplog.at_level(logging.WARNING):
    run.evaluate(_config(f"hearpreprocess:{folder}"), str(workdir))
  warnings = [r.getMessage() for r in caplog.records
              if "resampling" in r.getMessage()]
  assert len(warnings) == 1 and "\n" not in warnings[0], warnings
  assert warnings[0].startswith("naive reads 44100 Hz audio; task")
  assert warnings[0].endswith("(rates: 16000, 48000): resampling from"
                              " 48000 Hz")
  naive = json.loads((workdir / "naive" / "toy" /
                      "test.predicted-scores.json").read_text())
  assert naive["audio_resampled_from"] == 48000
  compute = json.loads((workdir / "naive" / "toy" / "compute.json").read_text())
  assert compute["audio_resampled_from"] == compute["audio_sample_rate"] == 48000
  melstats = json.loads((workdir / "melstats" / "toy" /
                         "test.predicted-scores.json").read_text())
  assert "audio_resampled_from" not in melstats
  with np.load(workdir / "melstats" / "toy" / "embeddings" / "test.npz") as c:
    np.testing.assert_allclose(c["x"], _own_rate_embeddings(
        "melstats", task, "test"), rtol=1e-6, atol=1e-6)
  assert "resampled" in (workdir / "report.html").read_text()


# --- model specs first --------------------------------------------------------


def test_wrong_model_spec_is_reported_before_any_task_is_read(tmp_path):
  task = _task_at(tmp_path / "data", (16000, 44100))
  config = _config(f"hearpreprocess:{task}", model="melstats,hear:nosuchmod")
  with pytest.raises(ValueError, match="HEAR module 'nosuchmod' not found"):
    run.evaluate(config, str(tmp_path / "w"))
  # Even where the task itself is broken: the model's line comes first.
  (task / "task_metadata.json").write_text("{")
  with pytest.raises(ValueError, match="HEAR module 'nosuchmod' not found"):
    run.evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
  proc = subprocess.run(
      [sys.executable, "-m", "hear_jax.main", "--config=configs/hear.py:"
       f"{task}", "--config.model=hear:nosuchmod",
       f"--workdir={tmp_path / 'w'}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert proc.returncode == 1 and len(lines) == 1, proc.stderr
  assert lines[0].startswith("hear_jax: error: HEAR module 'nosuchmod' not"
                             " found"), lines[0]
