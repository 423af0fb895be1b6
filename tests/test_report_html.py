"""report.html, the report's per-task files, training logs and the merged
leaderboard, on real tiny runs (configs/demo.py:tiny) of two models."""

from __future__ import annotations

import csv
import html.parser
import json
import os
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from PIL import Image

from hear_jax.models import load_model
from hear_jax.report import merge
from hear_jax.report import plots
from hear_jax.report import task_files
from hear_jax.report import tensorboard_events
from hear_jax.report import training_logs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ("demo_pitch", "demo_spoken_commands", "demo_sound_events")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _python(*args, cwd=REPO):
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True,
                        text=True, timeout=600,
                        env=dict(os.environ, PYTHONUNBUFFERED="1"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two tiny runs sharing the generated task data: melstats on the three
  tiny demo tasks, naive on the event task only (to keep the test short)."""
  root = tmp_path_factory.mktemp("report")
  naive_config = root / "naive_events.py"
  naive_config.write_text(
      "from configs import demo\n"
      "def get_config():\n"
      "  config = demo.get_config('tiny')\n"
      "  config.model = 'naive'\n"
      "  config.tasks = ['demo/sound_events/tiny']\n"
      "  return config\n")
  out = {}
  for model, config in (("melstats", "configs/demo.py:tiny"),
                        ("naive", str(naive_config))):
    workdir = str(root / f"run_{model}")
    proc = _python("-m", "hear_jax.main", f"--config={config}",
                   f"--config.model={model}",
                   f"--config.data_dir={root / 'tfds'}",
                   f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out[model] = workdir
  return out


class _Images(html.parser.HTMLParser):

  def __init__(self):
    super().__init__()
    self.srcs = []

  def handle_starttag(self, tag, attrs):
    if tag == "img":
      self.srcs.append(dict(attrs)["src"])


def _img_srcs(path):
  parser = _Images()
  with open(path) as f:
    parser.feed(f.read())
  return parser.srcs


def _check_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC, path
  with Image.open(path) as image:
    image.load()  # decodes every pixel: a truncated file fails here
    width, height = image.size
    assert width > 100 and height > 100, (path, image.size)
    # Not a blank canvas: a drawn figure has many distinct colours.
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or
               range(1 << 16)) > 20, path


def test_report_html_shows_every_figure(runs):
  workdir = runs["melstats"]
  page = os.path.join(workdir, "report.html")
  srcs = _img_srcs(page)
  names = [os.path.basename(s) for s in srcs]
  assert "heatmap.png" in names
  assert [n for n in names if n.startswith("events-")] == [
      "events-melstats-demo_sound_events.png"]
  for task in TASKS:
    assert f"task-{task}.png" in names
    assert f"curves-melstats-{task}.png" in names
    assert f"grid-melstats-{task}.png" in names
  for src in srcs:
    assert not os.path.isabs(src)  # the run directory can be moved whole
    _check_png(os.path.join(workdir, src))
  text = open(page).read()
  assert "Compute" in text and "melstats" in text and "naive" not in text


def test_task_files_describe_the_probe_and_its_cost(runs):
  workdir = runs["melstats"]
  params = load_model("melstats").params
  expected_params = sum(np.size(x) for x in jax.tree.leaves(params))
  for task in TASKS:
    d = os.path.join(workdir, "melstats", task)
    doc = json.load(open(os.path.join(d, "test.predicted-scores.json")))
    assert set(doc) == {"test", "hparams", "postprocessing", "score_mode",
                        "embedding_path"}  # HEAR's schema, nothing added

    compute = json.load(open(os.path.join(d, "compute.json")))
    assert compute["model"] == "melstats" and compute["task"] == task
    assert compute["parameters"] == expected_params
    assert compute["hear_task"] == f"{task}-1.0.0-tiny"
    assert compute["audio_seconds"] > 0
    assert compute["embed_seconds_per_audio_hour"] > 0
    assert compute["probe_seconds"] > 0 and compute["peak_memory_mb"] > 50

    grid = json.load(open(os.path.join(d, "grid.json")))
    assert len(grid["points"]) == 1 and grid["selected"] == 0
    point = grid["points"][0]
    assert point["best_score"] == pytest.approx(doc["test"]["validation_score"])
    assert point["best_epoch"] == doc["test"]["epoch"]
    assert point["hparams"]["lr"] == doc["hparams"]["lr"]

    curve = training_logs.read_training_log(
        os.path.join(d, "logs", "test", "metrics.jsonl"))
    assert curve.train_epochs == tuple(range(1, point["epochs_run"] + 1))
    best = curve.check_epochs.index(point["best_epoch"])
    assert curve.valid_score[best] == pytest.approx(
        doc["test"]["validation_score"])
    assert curve.hparams["monitor"] == doc_metric(workdir, task)

  events_files = [f for t in TASKS for f in os.listdir(
      os.path.join(workdir, "melstats", t)) if f.endswith("events.json")]
  assert events_files == ["test.predicted-events.json"]
  events = json.load(open(os.path.join(
      workdir, "melstats", "demo_sound_events", "test.predicted-events.json")))
  assert set(events["predicted"]) <= set(events["reference"])
  assert any(events["reference"].values())
  for e in (e for clip in events["predicted"].values() for e in clip):
    assert set(e) == {"label", "start", "end"} and e["end"] >= e["start"]


def doc_metric(workdir, task):
  with open(os.path.join(workdir, "leaderboard.csv")) as f:
    return {r["task"]: r["metric"] for r in csv.DictReader(f)}[task]


def _event_class():
  """tensorflow.Event's scalar fields, as a real protobuf class."""
  f = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(
      name="hear_jax_test_event.proto", package="t", syntax="proto3")
  value = proto.message_type.add(name="Value")
  value.field.add(name="tag", number=1, type=f.TYPE_STRING,
                  label=f.LABEL_OPTIONAL)
  value.field.add(name="simple_value", number=2, type=f.TYPE_FLOAT,
                  label=f.LABEL_OPTIONAL)
  summary = proto.message_type.add(name="Summary")
  summary.field.add(name="value", number=1, type=f.TYPE_MESSAGE,
                    type_name=".t.Value", label=f.LABEL_REPEATED)
  event = proto.message_type.add(name="Event")
  for name, number, kind in (("wall_time", 1, f.TYPE_DOUBLE),
                             ("step", 2, f.TYPE_INT64),
                             ("file_version", 3, f.TYPE_STRING)):
    event.field.add(name=name, number=number, type=kind,
                    label=f.LABEL_OPTIONAL)
  event.field.add(name="summary", number=5, type=f.TYPE_MESSAGE,
                  type_name=".t.Summary", label=f.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.Add(proto)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("t.Event"))


def _read_events(path):
  Event = _event_class()  # pylint: disable=invalid-name
  data, out, pos = open(path, "rb").read(), [], 0
  while pos < len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    (crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
    assert crc == tensorboard_events.masked_crc32c(header)
    payload = data[pos + 12:pos + 12 + length]
    (crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
    assert crc == tensorboard_events.masked_crc32c(payload)
    out.append(Event.FromString(payload))
    pos += 16 + length
  return out


def test_crc32c_matches_the_standard_check_value():
  assert tensorboard_events.crc32c(b"123456789") == 0xE3069283
  assert tensorboard_events.crc32c(b"") == 0


def test_tensorboard_event_file_holds_the_json_log(runs):
  log_dir = os.path.join(runs["naive"], "naive", "demo_sound_events", "logs",
                         "test")
  (name,) = [f for f in os.listdir(log_dir) if "tfevents" in f]
  events = _read_events(os.path.join(log_dir, name))
  assert events[0].file_version == "brain.Event:2"
  scalars = {}
  for e in events[1:]:
    for v in e.summary.value:
      scalars.setdefault(v.tag, []).append((e.step, v.simple_value))
  curve = training_logs.read_training_log(os.path.join(log_dir,
                                                       "metrics.jsonl"))
  assert [s for s, _ in scalars["train_loss"]] == list(curve.train_epochs)
  np.testing.assert_allclose([v for _, v in scalars["train_loss"]],
                             curve.train_loss, rtol=1e-6)
  np.testing.assert_allclose([v for _, v in scalars["valid_score"]],
                             curve.valid_score, rtol=1e-6)


def test_merged_leaderboard_has_both_runs(runs, tmp_path):
  out = tmp_path / "merged"
  proc = _python("-m", "hear_jax.report",
                 f"--workdirs={runs['melstats']},{runs['naive']}",
                 f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / "leaderboard.csv") as f:
    merged = {(r["model"], r["task"]): r for r in csv.DictReader(f)}
  expected = {}
  for model, workdir in runs.items():
    with open(os.path.join(workdir, "leaderboard.csv")) as f:
      for r in csv.DictReader(f):
        expected[(r["model"], r["task"])] = (r["score"], workdir)
  assert set(merged) == set(expected)
  assert {m for m, _ in merged} == {"melstats", "naive"}
  for key, (score, workdir) in expected.items():
    assert merged[key]["score"] == score and merged[key]["run"] == workdir
  md = (out / "leaderboard.md").read_text()
  assert md.count("\n| melstats |") == md.count("\n| naive |") == 1
  srcs = _img_srcs(out / "leaderboard.html")
  assert "./heatmap.png" in srcs
  for src in srcs:
    _check_png(out / src)


def test_same_model_in_two_runs_is_labelled_by_run(runs, tmp_path):
  other = str(tmp_path / "other")
  _fake_run(other, "naive", "demo_pitch", "demo_pitch-1.0.0-tiny",
            "pitch_acc", 0.9)
  results = merge.merged_results([runs["naive"], other])
  models = {(r.model, r.task) for r in results}
  assert ("naive (other)", "demo_pitch") in models
  assert {m for m, _ in models} == {"naive (other)", "naive (run_naive)"}
  assert len(results) == 2  # naive's run has the event task only


def _fake_run(root, model, task, hear_task, metric, score):
  d = os.path.join(root, model, task)
  os.makedirs(d)
  with open(os.path.join(d, "test.predicted-scores.json"), "w") as f:
    json.dump({"test": {"test_score": score}, "score_mode": "max"}, f)
  with open(os.path.join(d, "compute.json"), "w") as f:
    json.dump({"model": model, "task": task, "hear_task": hear_task,
               "metric": metric}, f)


def test_published_scores_join_only_the_runs_tasks(tmp_path):
  run = str(tmp_path / "run")
  _fake_run(run, "mine", "nsynth_pitch", "nsynth_pitch-v2.2.3-5h",
            "pitch_acc", 0.5)
  _fake_run(run, "mine", "demo_pitch", "demo_pitch-1.0.0-demo", "pitch_acc",
            0.7)
  results = merge.merged_results([run], published=True)
  published = {r.model: r for r in results if r.run.startswith("HEAR 2021")}
  assert published["CREPE (HEAR 2021)"].score == 0.870  # not 50h, not chroma
  assert published["CREPE (HEAR 2021)"].task == "nsynth_pitch"
  assert len(published) == 11  # every model of the open-task table
  assert {r.task for r in results if r.model != "mine"} == {"nsynth_pitch"}
  models, tasks, _, _, average = merge.score_table(results)
  assert sorted(tasks) == ["demo_pitch", "nsynth_pitch"]
  assert models[0] == "CREPE (HEAR 2021)"  # 0.870, the best on NSynth 5h
  nsynth = np.array([r.score for r in results if r.task == "nsynth_pitch"])
  z = (0.5 - nsynth.mean()) / nsynth.std()
  # demo_pitch has one model only: z = 0 there, as StandardScaler gives.
  assert average["mine"] == pytest.approx(np.clip(z, -1, 1) / 2)


def test_metric_of_results_without_compute_json_is_inferred(tmp_path):
  run = tmp_path / "run"
  d = run / "m" / "dcase2016_task2"
  d.mkdir(parents=True)
  (d / "test.predicted-scores.json").write_text(json.dumps({
      "test": {"test_score": 0.7, "test_event_onset_200ms_fms": 0.7,
               "test_event_onset_200ms_fms_f_measure": 0.7,
               "test_segment_1s_er": 0.4},
      "score_mode": "max"}))
  (result,) = task_files.scan_workdir(str(run))
  assert (result.model, result.task) == ("m", "dcase2016_task2")
  assert result.metric == "event_onset_200ms_fms"
  published = merge.published_results([result], merge.read_published())
  assert {p.model: p.score for p in published}["OpenL3 (HEAR 2021)"] == 0.833


def test_published_csv_names_known_metrics_and_sources():
  rows = merge.read_published()
  assert len(rows) > 150
  assert {r.source for r in rows} == {"hear-leaderboard", "hearbenchmark.com"}
  assert all(0 <= r.score <= 1.01 for r in rows)
  with pytest.raises(ValueError, match="not a known metric"):
    merge.read_published("model,hear_task,metric,score,source\n"
                         "x,t-1-full,top_one,0.5,here\n")
  with pytest.raises(ValueError, match="row 1"):
    merge.read_published("model,hear_task,metric,score,source\n"
                         "x,t-1-full,top1_acc,high,here\n")


def test_bad_inputs_are_one_line_errors(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  proc = _python("-m", "hear_jax.report", f"--workdirs={empty}",
                 f"--out={tmp_path / 'out'}")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      f"hear_jax.report: error: {empty}: no results (no <model>/<task>/"
      "test.predicted-scores.json)"]
  run = str(tmp_path / "run")
  _fake_run(run, "m", "t", "t-1-full", "top1_acc", 0.5)
  with open(os.path.join(run, "m", "t", "compute.json"), "w") as f:
    f.write("{broken")
  with pytest.raises(ValueError, match="compute.json: not valid JSON"):
    task_files.scan_workdir(run)


def test_grid_map_draws_heare_eight_point_grid(tmp_path):
  from hear_jax.probe.grid import hear_grid  # pylint: disable=g-import-not-at-top
  import dataclasses  # pylint: disable=g-import-not-at-top
  points = [{"hparams": dataclasses.asdict(h), "best_score": 0.1 * i}
            for i, h in enumerate(hear_grid("default", 8))]
  path = plots.grid_map({"points": points, "selected": 3, "monitor": "mAP",
                         "maximize": True}, str(tmp_path / "grid.png"))
  _check_png(path)
