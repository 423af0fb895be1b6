"""hearpreprocess output -> TFDS: the real spoken_digit fixture, generated
scene/multilabel/event tasks, and every bad input the reader must refuse."""

from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

from hear_jax.data import audio_io
from hear_jax.data import hearpreprocess as hp
from hear_jax.data.task import load_task
from hearpreprocess_dirs import write_task
from tasks.hear2021.hearpreprocess_task import (
    hearpreprocess_task_dataset_builder as hp_builder)

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = pathlib.Path(
    "/work/shared/fixtures/hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz")
FIXTURE_CONFIG = "spoken_digit-1.0.9-small-44100"
FOLDS = ("fold00", "fold01", "fold02", "fold03", "fold04")

needs_fixture = pytest.mark.skipif(not FIXTURE.exists(),
                                   reason="spoken_digit fixture not present")


# --- helpers ------------------------------------------------------------------


def pcm(seed: int, n: int) -> np.ndarray:
  """Full-range int16 noise, so any rescaling or clipping would show."""
  return np.random.default_rng(seed).integers(-32768, 32768, n, dtype=np.int16)


def metadata(**overrides):
  base = {
      "task_name": "toy", "version": "1.0", "embedding_type": "scene",
      "prediction_type": "multiclass", "split_mode": "trainvaltest",
      "sample_duration": 0.25, "evaluation": ["top1_acc", "mAP"],
      "default_mode": "full", "mode": "full",
      "splits": ["train", "valid", "test"],
  }
  base.update(overrides)
  return base


def scene_task(root, name="toy-1.0-full"):
  """Multiclass trainvaltest, string labels, 16 kHz, 0.25 s clips."""
  labels = {"train": [["dog"], ["cat"], ["bird"]], "valid": [["cat"]],
            "test": [["dog"], ["bird"]]}
  splits, seed = {}, 0
  for split, clip_labels in labels.items():
    splits[split] = {}
    for i, lab in enumerate(clip_labels):
      seed += 1
      splits[split][f"{split}_{i}.wav"] = (lab, pcm(seed, 4000))
  return write_task(root, name, metadata(), ["bird", "cat", "dog"], splits)


def build(source, data_dir, **kwargs):
  builder = hp_builder.Builder(source=source, data_dir=data_dir, **kwargs)
  builder.download_and_prepare()
  return builder


def assert_one_line_error(exc_info, *fragments):
  message = str(exc_info.value)
  assert "\n" not in message, message
  for fragment in fragments:
    assert fragment in message, message


# --- the real fixture ---------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
  """The fixture unpacked by our own safe extractor."""
  task_dir, rate = hp.find_task(
      FIXTURE, extract_dir=tmp_path_factory.mktemp("extracted"))
  assert rate == 44100
  return task_dir


@pytest.fixture(scope="module")
def fixture_build(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  return hp.prepare_hearpreprocess_task(FIXTURE, data_dir), data_dir


@needs_fixture
def test_fixture_folds_labels_rate_and_lengths(fixture_build, fixture_dir):
  builder, _ = fixture_build
  assert builder.builder_config.name == FIXTURE_CONFIG
  task = load_task(builder)
  meta = json.loads((fixture_dir / "task_metadata.json").read_text())
  assert task.info.metadata == meta
  assert task.info.splits == FOLDS
  assert task.info.sample_rate == 44100
  assert task.info.label_vocabulary == tuple(str(d) for d in range(10))
  all_ids = set()
  for fold in FOLDS:
    split = task.read_split(fold)
    expected = json.loads((fixture_dir / f"{fold}.json").read_text())
    assert len(split) == 20
    assert split.ids == tuple(sorted(expected))
    # Labels are ints in the json and the same digits as strings here.
    assert split.labels == tuple((str(expected[i][0]),) for i in split.ids)
    assert all(a.dtype == np.int16 and a.shape == (44100,) for a in split.audio)
    assert split.events == ((),) * 20
    all_ids |= set(split.ids)
  assert len(all_ids) == 100
  assert {lab for f in FOLDS for (lab,) in task.read_split(f).labels} == set(
      task.info.label_vocabulary)


@needs_fixture
def test_fixture_audio_is_bit_exact_and_not_bigger(fixture_build, fixture_dir):
  builder, _ = fixture_build
  task = load_task(builder)
  wav_bytes = 0
  for fold in FOLDS:
    split = task.read_split(fold)
    for file_id, audio in zip(split.ids, split.audio):
      path = fixture_dir / "44100" / fold / file_id
      expected, rate = sf.read(path, dtype="int16")
      assert rate == 44100
      np.testing.assert_array_equal(audio, expected)
      wav_bytes += path.stat().st_size
  stored = sum(p.stat().st_size
               for p in pathlib.Path(builder.data_dir).glob("*.array_record*"))
  assert 0 < stored <= wav_bytes


@needs_fixture
def test_fixture_directory_and_tarball_are_the_same_config(
    fixture_build, fixture_dir, tmp_path):
  _, data_dir = fixture_build
  # Unpacked as `tar xzf` would: hear-2021.0.6/tasks/<task>/..., found below.
  with tarfile.open(FIXTURE) as tar:
    tar.extractall(tmp_path, filter="data")
  task_dir = tmp_path / "hear-2021.0.6" / "tasks" / "spoken_digit-1.0.9-small"
  assert hp.find_task(tmp_path) == (task_dir, 44100)
  # Our extractor wrote the same files, and nothing else.
  def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
  assert listing(fixture_dir) == listing(task_dir)
  assert [p.name for p in fixture_dir.parent.iterdir()] == [fixture_dir.name]
  from_dir = hp_builder.Builder(source=tmp_path, data_dir=data_dir)
  assert from_dir.builder_config.name == FIXTURE_CONFIG
  assert from_dir.is_prepared()  # same task -> same data dir, reused


@needs_fixture
def test_prepared_task_reads_back_without_source(fixture_build):
  builder, data_dir = fixture_build
  by_name = hp_builder.Builder(config=FIXTURE_CONFIG, data_dir=data_dir)
  from_files = tfds.builder_from_directory(builder.data_dir)
  for other in (by_name, from_files):
    task = load_task(other)
    assert task.info == load_task(builder).info
    assert task.read_split("fold03").ids == load_task(builder).read_split(
        "fold03").ids
  clone = pickle.loads(pickle.dumps(builder))
  assert clone.data_dir == builder.data_dir
  assert clone.builder_config.name == FIXTURE_CONFIG


@needs_fixture
def test_scan_tarball_reads_metadata_without_extracting():
  task = hp.scan_tarball(FIXTURE)
  assert (task.name, task.sample_rate, task.path) == (
      "spoken_digit-1.0.9-small", 44100, None)
  assert task.config_name == FIXTURE_CONFIG
  assert task.splits == FOLDS


# --- generated tasks ----------------------------------------------------------


def test_scene_trainvaltest_string_labels(tmp_path):
  source = scene_task(tmp_path / "src")
  builder = build(source, tmp_path / "tfds")
  assert builder.builder_config.name == "toy-1.0-full-16000"
  task = load_task(builder)
  assert task.info.label_vocabulary == ("bird", "cat", "dog")
  assert task.info.sample_rate == 16000
  assert task.info.primary_metric == "top1_acc"
  train = task.read_split("train")
  assert train.ids == ("train_0.wav", "train_1.wav", "train_2.wav")
  assert train.labels == (("dog",), ("cat",), ("bird",))
  for file_id, audio in zip(train.ids, train.audio):
    np.testing.assert_array_equal(
        audio, sf.read(source / "16000" / "train" / file_id, dtype="int16")[0])
  assert [len(task.read_split(s)) for s in ("train", "valid", "test")] == [
      3, 1, 2]


def test_multilabel_scene_with_variable_length(tmp_path):
  lengths = {"a.wav": 8000, "b.wav": 12345, "c.wav": 20001}
  labels = {"a.wav": [], "b.wav": ["x", "z"], "c.wav": ["y"]}
  splits = {s: {n: (labels[n], pcm(i, lengths[n]))
                for i, n in enumerate(lengths)}
            for s in ("train", "valid", "test")}
  source = write_task(
      tmp_path, "multi-2.0-full",
      metadata(prediction_type="multilabel", sample_duration=None,
               evaluation=["mAP", "d_prime"]),
      ["x", "y", "z"], splits)
  task = load_task(build(source, tmp_path / "tfds"))
  assert task.info.metadata["sample_duration"] is None
  test = task.read_split("test")
  assert [len(a) for a in test.audio] == [8000, 12345, 20001]
  assert test.labels == ((), ("x", "z"), ("y",))
  np.testing.assert_array_equal(test.audio[1], pcm(1, 12345))


def test_event_task_keeps_events_in_ms(tmp_path):
  events = {
      "e0.wav": [{"label": "knock", "start": 120.5, "end": 480.25},
                 {"label": "cough", "start": 0, "end": 1000}],
      "e1.wav": [],
      "e2.wav": [{"label": 21, "start": 1500.0, "end": 1999.75}],
  }
  splits = {s: {n: (ev, pcm(i + 7, 32000))
                for i, (n, ev) in enumerate(events.items())}
            for s in ("fold00", "fold01", "fold02")}
  source = write_task(
      tmp_path, "ev-1.0-full",
      metadata(embedding_type="event", prediction_type="multilabel",
               split_mode="new_split_kfold", nfolds=3, sample_duration=2.0,
               evaluation=["event_onset_200ms_fms", "segment_1s_er"],
               splits=["fold00", "fold01", "fold02"]),
      ["21", "cough", "knock"], splits)
  task = load_task(build(source, tmp_path / "tfds"))
  assert task.info.embedding_type == "event"
  fold = task.read_split("fold01")
  assert fold.labels == ((), (), ())
  assert fold.events[0] == (
      {"label": "knock", "start": 120.5, "end": 480.25},
      {"label": "cough", "start": 0.0, "end": 1000.0})
  assert fold.events[1] == ()
  assert fold.events[2] == ({"label": "21", "start": 1500.0, "end": 1999.75},)


def test_event_times_keep_float64_precision(tmp_path):
  event = {"label": "knock", "start": 0.1, "end": 1999.999}
  splits = {s: {"e.wav": ([event], pcm(3, 32000))} for s in ("train", "valid",
                                                             "test")}
  source = write_task(
      tmp_path, "ev64-1.0-full",
      metadata(embedding_type="event", prediction_type="multilabel",
               sample_duration=2.0, evaluation=["event_onset_200ms_fms"]),
      ["knock"], splits)
  task = load_task(build(source, tmp_path / "tfds"))
  assert task.read_split("test").events == ((event,),)


def test_float_and_24_bit_wavs_are_rounded_to_16_bits(tmp_path):
  # hearpreprocess leaves float32 wavs at a task's native rate.
  rng = np.random.default_rng(5)
  audio = {"f.wav": ("FLOAT", rng.uniform(-1.2, 1.2, 4000).astype(np.float32)),
           "p.wav": ("PCM_24", rng.uniform(-1, 1, 4000)),
           "s.wav": ("PCM_16", pcm(9, 4000) / 32768)}
  source = write_task(tmp_path, "float-1.0-full", metadata(),
                      ["a"], {s: {} for s in ("train", "valid", "test")})
  json_entries = {name: ["a"] for name in audio}
  for split in ("train", "valid", "test"):
    (source / f"{split}.json").write_text(json.dumps(json_entries))
    for name, (subtype, x) in audio.items():
      sf.write(source / "16000" / split / name, x, 16000, subtype=subtype)
  split = load_task(build(source, tmp_path / "tfds")).read_split("valid")
  for name, stored in zip(split.ids, split.audio):
    in_file = sf.read(source / "16000" / "valid" / name, dtype="float64")[0]
    expected = np.round(np.clip(in_file, -1, 32767 / 32768) * 32768)
    np.testing.assert_array_equal(stored, expected.astype(np.int16))
  np.testing.assert_array_equal(split.audio[2], pcm(9, 4000))


def test_config_names_follow_tfds_rules():
  assert hp.config_name("spoken_digit-1.0.9-small", 44100) == FIXTURE_CONFIG
  assert hp.config_name("my task (v2)!", 16000) == "my_task__v2__-16000"


def test_prepared_data_from_other_metadata_is_not_reused(tmp_path):
  source = scene_task(tmp_path / "src")
  build(source, tmp_path / "tfds")
  meta = json.loads((source / "task_metadata.json").read_text())
  meta["evaluation"] = ["mAP"]
  (source / "task_metadata.json").write_text(json.dumps(meta))
  with pytest.raises(ValueError) as e:
    hp_builder.Builder(source=source, data_dir=tmp_path / "tfds")
  assert_one_line_error(e, "prepared from a different task_metadata.json")


# --- bad task directories -----------------------------------------------------


def _rewrite_json(path, fn):
  path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def _set_entry(split, name, value):
  def mutate(task):
    _rewrite_json(task / f"{split}.json", lambda d: {**d, name: value})
  return mutate


def _write_wav(name, audio, rate, subtype="PCM_16"):
  def mutate(task):
    sf.write(task / "16000" / "train" / name, audio, rate, subtype=subtype)
  return mutate


def _truncate(task):
  path = task / "16000" / "train" / "train_1.wav"
  path.write_bytes(path.read_bytes()[:3000])


BAD_TASKS = {
    "missing metadata": (lambda t: (t / "task_metadata.json").unlink(),
                         ["task_metadata.json", "not found"]),
    "missing vocabulary": (lambda t: (t / "labelvocabulary.csv").unlink(),
                           ["labelvocabulary.csv", "not found"]),
    "missing split json": (lambda t: (t / "valid.json").unlink(),
                           ["valid.json", "not found"]),
    "absent wav": (_set_entry("test", "ghost.wav", ["dog"]),
                   ["16000/test/ghost.wav", "not found"]),
    "label not in vocabulary": (
        _set_entry("train", "train_0.wav", ["zebra"]),
        ["train.json", "'zebra'", "labelvocabulary.csv"]),
    "two labels in a multiclass task": (
        _set_entry("train", "train_0.wav", ["dog", "cat"]),
        ["train.json", "2 labels", "multiclass"]),
    "wrong sample rate": (_write_wav("train_0.wav", pcm(0, 2000), 8000),
                          ["16000/train/train_0.wav", "8000 Hz", "16000"]),
    "wrong length": (_write_wav("train_0.wav", pcm(0, 3000), 16000),
                     ["train_0.wav", "3000 samples", "expected 4000"]),
    "stereo": (
        _write_wav("train_0.wav", np.stack([pcm(0, 4000)] * 2, 1), 16000),
        ["train_0.wav", "2 channels", "mono"]),
    "not linear PCM": (_write_wav("train_0.wav", pcm(0, 4000), 16000, "ULAW"),
                       ["train_0.wav", "ULAW", "expected linear PCM or float"]),
    "truncated wav": (_truncate, ["train_1.wav", "truncated"]),
    "not a wav": (lambda t: (t / "16000/train/train_2.wav").write_text("hi"),
                  ["train_2.wav", "not a WAV file"]),
    "empty split": (lambda t: (t / "valid.json").write_text("{}"),
                    ["valid.json", "empty"]),
    "'..' in a file name": (
        _set_entry("train", "../valid/valid_0.wav", ["cat"]),
        ["train.json", "'../valid/valid_0.wav'", "plain file name"]),
    "absolute file name": (_set_entry("train", "/etc/passwd", ["cat"]),
                           ["train.json", "'/etc/passwd'", "plain file name"]),
    "vocabulary idx gap": (
        lambda t: (t / "labelvocabulary.csv").write_text(
            "idx,label\n0,bird\n1,cat\n3,dog\n"),
        ["labelvocabulary.csv", "idx must be 0..2"]),
    "broken json": (lambda t: (t / "test.json").write_text("{\"a.wav\": ["),
                    ["test.json", "not valid JSON"]),
    "bad event times": (
        _set_entry("train", "train_0.wav", [{"label": "dog", "start": 5,
                                             "end": 1}]),
        ["train.json", "start <= end"]),
    "two sample rates": (lambda t: (t / "48000").mkdir(),
                         ["16000, 48000", "sample_rate="]),
}


@pytest.mark.parametrize("case", sorted(BAD_TASKS))
def test_bad_task_directory_is_refused(tmp_path, case):
  mutate, fragments = BAD_TASKS[case]
  task_dir = scene_task(tmp_path)
  if case == "bad event times":  # an event task is needed for event checks
    _rewrite_json(task_dir / "task_metadata.json",
                  lambda m: {**m, "embedding_type": "event",
                             "prediction_type": "multilabel"})
  mutate(task_dir)
  with pytest.raises(ValueError) as e:
    hp.check_task(hp.open_task(task_dir))
  assert_one_line_error(e, *fragments)


def test_builder_refuses_bad_task_and_writes_nothing(tmp_path):
  task_dir = scene_task(tmp_path / "src")
  _truncate(task_dir)
  builder = hp_builder.Builder(source=task_dir, data_dir=tmp_path / "tfds")
  with pytest.raises(ValueError) as e:
    builder.download_and_prepare()
  assert_one_line_error(e, "train_1.wav", "truncated")
  assert not builder.is_prepared()
  assert not list((tmp_path / "tfds").rglob("*.array_record*"))


# --- bad tarballs -------------------------------------------------------------


def _tarball(path, extra_members=()):
  """A valid task tarball (from scene_task) plus `extra_members`."""
  src = scene_task(path.parent / (path.name + "-src"))
  with tarfile.open(path, "w:gz") as tar:
    tar.add(src, arcname=f"hear-x/tasks/{src.name}")
    for info in extra_members:
      tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
  return path


def _member(name, kind=tarfile.REGTYPE, linkname=""):
  info = tarfile.TarInfo(name)
  info.type = kind
  info.linkname = linkname
  info.size = 1 if kind == tarfile.REGTYPE else 0
  return info


BAD_MEMBERS = {
    "symlink": (_member("hear-x/tasks/evil", tarfile.SYMTYPE, "/etc/passwd"),
                "is a link"),
    "hard link": (_member("hear-x/tasks/hard", tarfile.LNKTYPE, "/etc/passwd"),
                  "is a link"),
    "absolute path": (_member("/tmp/evil.wav"), "absolute path or '..'"),
    "dot-dot": (_member("hear-x/../../evil.wav"), "absolute path or '..'"),
    "device": (_member("hear-x/tasks/dev", tarfile.CHRTYPE),
               "device or special file"),
}


@pytest.mark.parametrize("case", sorted(BAD_MEMBERS))
def test_unsafe_tarball_members_are_refused(tmp_path, case):
  member, problem = BAD_MEMBERS[case]
  tarball = _tarball(tmp_path / "task.tar.gz", [member])
  with pytest.raises(ValueError) as e:
    hp.scan_tarball(tarball)
  assert_one_line_error(e, str(tarball), repr(member.name), problem)
  out = tmp_path / "out"
  with pytest.raises(ValueError) as e:
    hp.find_task(tarball, extract_dir=out)
  assert_one_line_error(e, repr(member.name), problem)
  assert list(out.iterdir()) == []  # the partial extraction is gone
  assert not (tmp_path / "evil.wav").exists()


def _cut_gzip(tarball):
  data = tarball.read_bytes()
  tarball.write_bytes(data[:len(data) * 2 // 3])


def _cut_plain_tar_at_member_boundary(tarball):
  # tarfile itself reads such a tar as complete, minus its last members.
  with tarfile.open(tarball) as tar:
    last = tar.getmembers()[-1]
  with open(tarball, "r+b") as f:
    f.truncate(last.offset)


@pytest.mark.parametrize("suffix, cut, problem", [
    (".tar.gz", _cut_gzip, "truncated or corrupt"),
    (".tar", _cut_plain_tar_at_member_boundary, "no end-of-archive marker"),
    (".tar.gz", lambda t: t.write_bytes(b"not a tarball"), "not a tar archive"),
])
def test_damaged_tarball_is_refused_and_leaves_nothing(tmp_path, suffix, cut,
                                                      problem):
  src = scene_task(tmp_path / "src")
  tarball = tmp_path / f"task{suffix}"
  with tarfile.open(tarball, "w:gz" if suffix == ".tar.gz" else "w") as tar:
    tar.add(src, arcname=f"hear-x/tasks/{src.name}")
  cut(tarball)
  out = tmp_path / "out"
  with pytest.raises(ValueError) as e:
    hp.find_task(tarball, extract_dir=out)
  assert_one_line_error(e, str(tarball), problem)
  assert list(out.iterdir()) == []
  with pytest.raises(ValueError) as e:
    hp.scan_tarball(tarball)
  assert_one_line_error(e, str(tarball), problem)


def test_tarball_with_missing_split_json(tmp_path):
  src = scene_task(tmp_path / "src")
  (src / "test.json").unlink()
  tarball = tmp_path / "t.tar"
  with tarfile.open(tarball, "w") as tar:
    tar.add(src, arcname=src.name)
  with pytest.raises(ValueError) as e:
    hp_builder.Builder(source=tarball, data_dir=tmp_path / "tfds")
  assert_one_line_error(e, f"{tarball}:toy-1.0-full/test.json", "not found")


def test_tarball_builds_like_its_directory(tmp_path):
  tarball = _tarball(tmp_path / "task.tgz")
  tfds_dir = tmp_path / "tfds"
  task = load_task(build(tarball, tfds_dir))
  direct = load_task(build(tmp_path / "task.tgz-src", tmp_path / "tfds2"))
  assert task.info == direct.info
  for split in ("train", "valid", "test"):
    a, b = task.read_split(split), direct.read_split(split)
    assert a.ids == b.ids and a.labels == b.labels
    assert all(np.array_equal(x, y) for x, y in zip(a.audio, b.audio))
  # The temporary extraction next to the dataset is gone.
  assert not list(tfds_dir.glob("hearpreprocess-extract-*"))


# --- interrupted builds -------------------------------------------------------


def test_failure_mid_build_leaves_nothing_prepared(tmp_path, monkeypatch):
  source = scene_task(tmp_path / "src")
  data_dir = tmp_path / "tfds"
  real_read, calls = audio_io.read_pcm16, []

  def crash_on_fourth(*args, **kwargs):
    calls.append(1)
    if len(calls) == 4:
      raise RuntimeError("simulated crash")
    return real_read(*args, **kwargs)

  monkeypatch.setattr(audio_io, "read_pcm16", crash_on_fourth)
  with pytest.raises(RuntimeError, match="simulated crash"):
    build(source, data_dir)
  fresh = hp_builder.Builder(source=source, data_dir=data_dir)
  assert not fresh.is_prepared()
  assert not pathlib.Path(fresh.data_dir).exists()
  monkeypatch.setattr(audio_io, "read_pcm16", real_read)
  fresh.download_and_prepare()
  assert len(load_task(fresh).read_split("train")) == 3


_KILLED_BUILD = """
import os, signal, sys
from hear_jax.data import audio_io, hearpreprocess
real, calls = audio_io.read_pcm16, []
def read(*a, **k):
  calls.append(1)
  if len(calls) == 4:  # a hard kill: no Python cleanup runs
    os.kill(os.getpid(), signal.SIGKILL)
  return real(*a, **k)
audio_io.read_pcm16 = read
hearpreprocess.prepare_hearpreprocess_task(sys.argv[1], sys.argv[2])
"""


def test_killed_build_is_never_taken_for_complete(tmp_path):
  source = scene_task(tmp_path / "src")
  data_dir = tmp_path / "tfds"
  proc = subprocess.run(
      [sys.executable, "-c", _KILLED_BUILD, str(source), str(data_dir)],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, "PYTHONPATH": str(REPO)})
  assert proc.returncode == -9, proc.stderr[-2000:]
  config_dir = data_dir / "hearpreprocess_task" / "toy-1.0-full-16000"
  # TFDS was writing into incomplete.*; the version dir was never created.
  assert [p.name for p in config_dir.iterdir()][0].startswith("incomplete.")
  assert not (config_dir / "1.0.0").exists()
  without_source = hp_builder.Builder(config="toy-1.0-full-16000",
                                      data_dir=data_dir)
  assert not without_source.is_prepared()
  with pytest.raises(ValueError, match="not prepared"):
    without_source.download_and_prepare()
  rebuilt = hp.prepare_hearpreprocess_task(source, data_dir)
  assert [len(load_task(rebuilt).read_split(s))
          for s in ("train", "valid", "test")] == [3, 1, 2]
