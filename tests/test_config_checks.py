"""A wrong config fails at once, in one clear line, having written nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ml_collections
import pytest
import soundfile as sf
import numpy as np

from hear_jax import run
from hear_jax.config import check_config, default_config
from hear_jax.data import task_specs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**fields) -> ml_collections.ConfigDict:
  config = default_config()
  config.model = "naive"
  config.tasks = ["demo/pitch/tiny"]
  for name, value in fields.items():
    node = config
    *parents, leaf = name.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def _refused(config, workdir, *fragments, lock_only=False):
  """evaluate() raises a one-line error naming `fragments`, having written
  nothing (with `lock_only`, nothing but the workdir's lock file)."""
  with pytest.raises((ValueError, FileNotFoundError)) as e:
    run.evaluate(config, str(workdir))
  message = str(e.value)
  assert "\n" not in message, message
  for fragment in fragments:
    assert fragment in message, message
  if lock_only and os.path.exists(workdir):
    assert os.listdir(workdir) == [".lock"]
  else:
    assert not os.path.exists(workdir)
  return message


# --- fields and values --------------------------------------------------------


def test_config_file_setting_an_unknown_field_is_refused(tmp_path):
  config = _config()
  config.probe.max_epoch = 3  # a config file's typo: ConfigDict accepts it
  _refused(config, tmp_path / "w", "config.probe.max_epoch: no such config"
           " field", "did you mean config.probe.max_epochs?")


def test_unknown_top_level_field_is_refused(tmp_path):
  config = _config()
  config.workdri = "runs/x"
  _refused(config, tmp_path / "w", "config.workdri", "config.workdir?")


@pytest.mark.parametrize("field,value,fragments", [
    ("probe.grid", "fastest",
     ("config.probe", "unknown grid 'fastest'", "default")),
    ("probe.grid_points", 0, ("config.probe", "grid_points must be >= 1")),
    ("probe.max_epochs", 0, ("config.probe", "max_epochs", ">= 1")),
    ("embed.batch_seconds", -1.0, ("config.embed.batch_seconds", "> 0")),
    ("lock_wait_seconds", -5.0, ("config.lock_wait_seconds", ">= 0")),
    ("tasks", [], ("config.tasks: no task given",)),
])
def test_bad_values_are_refused(tmp_path, field, value, fragments):
  _refused(_config(**{field: value}), tmp_path / "w", *fragments)


def test_every_shipped_config_passes_the_field_check():
  # The check must not refuse what the project's own configs set.
  import importlib.util  # pylint: disable=g-import-not-at-top
  names = sorted(f for f in os.listdir(os.path.join(REPO, "configs"))
                 if f.endswith(".py"))
  assert "demo.py" in names
  for name in names:
    spec = importlib.util.spec_from_file_location(
        name[:-3], os.path.join(REPO, "configs", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
      config = module.get_config()
    except ValueError:  # a config that needs its `:arg` (a data path)
      config = module.get_config("data/some_task")
    config.tasks = config.tasks or ["demo/pitch/tiny"]
    check_config(config)


# --- models and tasks -----------------------------------------------------------


@pytest.mark.parametrize("model,fragments", [
    ("nosuchmodel", ("unknown model 'nosuchmodel'", "melstats")),
    ("melstats(n_melz=3)", ("model spec 'melstats(n_melz=3)'", "n_melz")),
    ("melstats(", ("config.model 'melstats('", "unbalanced")),
    ("melstats(n_mels=64", ("config.model 'melstats(n_mels=64'",
                            "unbalanced")),
])
def test_model_spec_that_does_not_resolve_is_refused(tmp_path, model,
                                                     fragments):
  # Models load under the workdir's lock (a second run must not load a model
  # just to find the workdir busy), so the lock file may be there.
  _refused(_config(model=model), tmp_path / "w", *fragments, lock_only=True)


@pytest.mark.parametrize("task,fragments", [
    ("demo/nosuch", ("task spec 'demo/nosuch'", "no TFDS builder")),
    ("demo/pitch/huge", ("unknown config 'huge'", "tiny")),
    ("hear2021:nosuch-1.0-full:/tmp", ("nosuch-1.0-full",)),
])
def test_task_spec_that_does_not_resolve_is_refused(tmp_path, task,
                                                    fragments):
  # The bad spec comes second: a later task must not fail after the first
  # one's data was built.
  config = _config(tasks=["demo/pitch/tiny", task])
  _refused(config, tmp_path / "w", *fragments)


def _task_dir(root, rates=(16000,)):
  """A minimal hearpreprocess task directory with audio at `rates`."""
  task = root / "toy-1.0-full"
  task.mkdir(parents=True)
  (task / "task_metadata.json").write_text(json.dumps({
      "task_name": "toy", "version": "1.0", "embedding_type": "scene",
      "prediction_type": "multiclass", "split_mode": "trainvaltest",
      "sample_duration": 0.25, "evaluation": ["top1_acc"],
      "default_mode": "full", "mode": "full",
      "splits": ["train", "valid", "test"]}))
  (task / "labelvocabulary.csv").write_text("idx,label\n0,a\n1,b\n")
  for split in ("train", "valid", "test"):
    (task / f"{split}.json").write_text(json.dumps({"x.wav": ["a"]}))
    for rate in rates:
      (task / str(rate) / split).mkdir(parents=True)
      sf.write(task / str(rate) / split / "x.wav",
               np.zeros(rate // 4, np.int16), rate, subtype="PCM_16")
  return task


def test_sample_rate_the_task_does_not_have_is_refused(tmp_path):
  task = _task_dir(tmp_path / "data")
  config = _config(tasks=[f"hearpreprocess:{task}"], task_sample_rate=22050)
  _refused(config, tmp_path / "w", str(task), "no 22050/ audio directory",
           "rates present: 16000", "config.task_sample_rate=22050")


def test_several_rates_need_no_flag_and_the_flag_forces_one(tmp_path):
  task = _task_dir(tmp_path / "data", rates=(16000, 48000))
  config = _config(tasks=[f"hearpreprocess:{task}"])
  # Each model reads its own rate (tests/test_task_rates.py).
  assert run.check_run(config) == ["naive"]
  # With the field set, the check passes and the builder reads that rate.
  config.task_sample_rate = 48000
  run.check_run(config)
  builder = task_specs.prepare_task(config.tasks[0], str(tmp_path / "tfds"),
                                    config.task_sample_rate)
  assert builder.builder_config.name == "toy-1.0-full-48000"


def test_tarball_named_for_another_rate_is_refused(tmp_path):
  tarball = tmp_path / "hear2021-toy-1.0-full-48000.tar.gz"
  tarball.write_bytes(b"")  # its name is all the check reads
  config = _config(tasks=[f"hearpreprocess:{tarball}"], task_sample_rate=16000)
  _refused(config, tmp_path / "w", "holds 48000 Hz audio",
           "config.task_sample_rate=16000")


def test_sample_rate_for_a_builder_task_is_refused(tmp_path):
  _refused(_config(task_sample_rate=16000), tmp_path / "w",
           "only hearpreprocess: and hear2021: task specs take a rate",
           "demo/pitch/tiny")


# --- the command line -------------------------------------------------------------


def _main(*args):
  return subprocess.run([sys.executable, "-m", "hear_jax.main", *args],
                        cwd=REPO, capture_output=True, text=True, timeout=300)


def _one_line(proc, *fragments):
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("hear_jax: error: "), lines[0]
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("override,fragments", [
    ("--config.probe.max_epoch=3",
     ("--config.probe.max_epoch: no such config field 'max_epoch'",
      'did you mean "max_epochs"')),
    ("--config.probe.max_epochs=ten",
     ("--config.probe.max_epochs=ten", "invalid literal for int()")),
])
def test_bad_override_on_the_command_line_is_one_line(tmp_path, override,
                                                      fragments):
  proc = _main("--config=configs/demo.py:tiny", override,
               f"--workdir={tmp_path / 'w'}")
  _one_line(proc, *fragments)
  assert not os.path.exists(tmp_path / "w")


def test_config_file_with_unknown_field_is_one_line(tmp_path):
  path = tmp_path / "typo.py"
  path.write_text("from hear_jax.config import default_config\n\n"
                  "def get_config():\n"
                  "  config = default_config()\n"
                  "  config.tasks = ['demo/pitch/tiny']\n"
                  "  config.probe.patiance = 3\n"
                  "  return config\n")
  proc = _main(f"--config={path}", f"--workdir={tmp_path / 'w'}")
  _one_line(proc, "config.probe.patiance: no such config field",
            "config.probe.patience?")
  assert not os.path.exists(tmp_path / "w")
