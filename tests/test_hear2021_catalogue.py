"""The HEAR 2021 catalogue: every task's TFDS config builds from a stand-in
of its hearpreprocess tarball, mismatched metadata is refused in one line
naming task and field, and the configs cover the 19 tasks."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import tarfile

import numpy as np
import pytest
import soundfile as sf
import tensorflow_datasets as tfds

import hearpreprocess_dirs
from hear_jax import config as hear_config
from hear_jax import run
from hear_jax.data import hear2021_catalogue as catalogue
from hear_jax.data import hearpreprocess
from hear_jax.data import task_specs
from hear_jax.data.task import load_task
from tasks.hear2021.hear2021 import hear2021_dataset_builder as hear2021

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = pathlib.Path(
    "/work/shared/fixtures/hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz")
needs_fixture = pytest.mark.skipif(not FIXTURE.exists(),
                                   reason="spoken_digit fixture not present")

tfds.disable_progress_bar()


# --- hearpreprocess stand-ins (also used by test_hear_entry.py) ---------------


def write_task(root, name, metadata, vocabulary, splits, rate=16000):
  """A hearpreprocess task directory. `splits`: {split: {wav: (labels or
  events, n_samples)}}; audio is quiet noise (seeded by the file name)."""
  def audio(wav, n):
    rng = np.random.default_rng(sum(wav.encode()))
    # Mostly silence (tarballs compress it to nothing), a short burst of
    # noise so clips differ.
    clip = np.zeros(n, np.int16)
    clip[:min(n, 800)] = rng.integers(-3000, 3000, min(n, 800))
    return clip
  return hearpreprocess_dirs.write_task(
      root, name, metadata, vocabulary,
      {split: {wav: (value, audio(wav, n)) for wav, (value, n) in
               entries.items()} for split, entries in splits.items()}, rate)


def tar_task(task_dir, tarball):
  """hearpreprocess's tarball layout: hear-<ver>/tasks/<task dir>/..."""
  with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
    tar.add(task_dir, arcname=f"hear-2021.0.6/tasks/{task_dir.name}")
  return tarball


def stand_in_metadata(entry, **overrides):
  meta = {
      "task_name": entry.task_name, "version": entry.version,
      "embedding_type": entry.embedding_type,
      "prediction_type": entry.prediction_type,
      "split_mode": entry.split_mode,
      "sample_duration": entry.sample_durations[0],
      "evaluation": list(entry.evaluation), "default_mode": entry.default_mode,
      "mode": entry.mode, "splits": list(entry.splits),
  }
  if entry.nfolds is not None:
    meta["nfolds"] = entry.nfolds
  meta.update(overrides)
  return meta


def stand_in_labels(entry):
  """Pitch and digit tasks have integer labels (as hearpreprocess writes
  them), the rest strings."""
  if entry.task_name in ("nsynth_pitch", "nsynth_pitch_kfold"):
    return list(range(21, 21 + entry.num_labels))
  if entry.task_name == "spoken_digit":
    return list(range(entry.num_labels))
  return [f"class{i:03d}" for i in range(entry.num_labels)]


def stand_in(entry, root, rate=16000, clips_per_split=1, **overrides):
  """A tiny task directory with `entry`'s metadata: real clip duration,
  a few clips per split, labels of the right kind."""
  meta = stand_in_metadata(entry, **overrides)
  labels = stand_in_labels(entry)
  duration = meta["sample_duration"]
  splits, k = {}, 0
  for split in meta["splits"]:
    splits[split] = {}
    for _ in range(clips_per_split):
      # Variable-length tasks (FSD50K) get clips of different lengths.
      seconds = duration if duration is not None else 0.3 + 0.2 * (k % 3)
      n = int(round(seconds * rate))
      if meta["embedding_type"] == "event":
        value = [{"label": labels[k % len(labels)], "start": 100.0,
                  "end": 400.0},
                 {"label": labels[(k + 1) % len(labels)], "start": 250.0,
                  "end": 900.0}]
      elif meta["prediction_type"] == "multilabel":
        value = [[], [labels[k % len(labels)]],
                 [labels[k % len(labels)], labels[(k + 1) % len(labels)]]][
                     k % 3]
      else:
        value = [labels[k % len(labels)]]
      splits[split][f"{split}_{k:03d}.wav"] = (value, n)
      k += 1
  return write_task(root, catalogue.TASKS[entry.task_dir].task_dir, meta,
                    sorted(labels), splits, rate=rate)


# --- every catalogue entry builds ---------------------------------------------

ENTRIES = catalogue.HEAR2021_TASKS + catalogue.DEVELOPMENT_TASKS


def test_catalogue_holds_19_hear_tasks_and_2_development_tasks():
  assert len(catalogue.HEAR2021_TASKS) == 19
  assert len(set(catalogue.HEAR2021_TASKS)) == 19
  names = {catalogue.TASKS[t].task_name for t in catalogue.HEAR2021_TASKS}
  assert {"dcase2016_task2", "nsynth_pitch", "speech_commands", "esc50",
          "fsd50k", "maestro", "vocal_imitation"} <= names
  # Modes the table reports twice are two of the 19.
  assert {"nsynth_pitch-v2.2.3-5h", "nsynth_pitch-v2.2.3-50h",
          "speech_commands-v0.0.2-5h", "speech_commands-v0.0.2-full"} <= set(
              catalogue.HEAR2021_TASKS)
  for task_dir in ENTRIES:
    entry = catalogue.TASKS[task_dir]
    assert entry.task_dir == task_dir
    assert entry.evaluation[0] in {
        "top1_acc", "pitch_acc", "mAP", "aucroc", "event_onset_200ms_fms",
        "event_onset_50ms_fms"}
    assert (entry.nfolds is None) == (entry.split_mode == "trainvaltest")
  configs = {c.name for c in hear2021.Builder.BUILDER_CONFIGS}
  assert "esc50-v2.0.0-full-48000" in configs
  assert len(configs) == len(catalogue.TASKS) * 5


@pytest.mark.parametrize("task_dir", ENTRIES)
def test_builder_prepares_a_stand_in_of_every_task(task_dir, tmp_path,
                                                   monkeypatch):
  entry = catalogue.TASKS[task_dir]
  if max(d or 0 for d in entry.sample_durations) > 120:
    # Test-only override: beehive's full mode has 600 s clips (58 MB per
    # three clips at 16 kHz). The stand-in and the catalogue both use 30 s
    # here; the duration check itself is tested with the real value below.
    entry = dataclasses.replace(entry, sample_durations=(30.0,))
    monkeypatch.setitem(catalogue.TASKS, task_dir, entry)
  source = stand_in(entry, tmp_path / "src")
  tarball = tar_task(source, tmp_path / entry.tarball_name(16000))

  builder = hear2021.prepare(task_dir, tarball, tmp_path / "tfds")

  assert builder.info.full_name == f"hear2021/{task_dir}-16000/1.0.0"
  task = load_task(builder)
  assert task.info.sample_rate == 16000
  assert task.info.splits == entry.splits
  assert task.info.evaluation == entry.evaluation
  assert len(task.info.label_vocabulary) == entry.num_labels
  written = json.loads((source / "task_metadata.json").read_text())
  assert task.info.metadata == written
  for split in entry.splits:
    clips = task.read_split(split)
    expected = json.loads((source / f"{split}.json").read_text())
    assert list(clips.ids) == sorted(expected)
    for wav, audio, labels, events in zip(clips.ids, clips.audio,
                                          clips.labels, clips.events):
      stored, _ = sf.read(source / "16000" / split / wav, dtype="int16")
      np.testing.assert_array_equal(audio, stored)
      if entry.embedding_type == "event":
        assert [e["label"] for e in events] == [
            str(e["label"]) for e in expected[wav]]
        assert [e["start"] for e in events] == [
            e["start"] for e in expected[wav]]
      else:
        assert list(labels) == [str(x) for x in expected[wav]]
  # A second prepare reuses the dataset without reading the tarball.
  tarball.unlink()
  again = hear2021.prepare(task_dir, tarball.with_name(tarball.name),
                           tmp_path / "tfds")
  assert again.is_prepared() and again.data_dir == builder.data_dir


@needs_fixture
def test_real_fixture_builds_as_its_catalogue_task(tmp_path):
  builder = task_specs.prepare_task(
      f"hear2021:spoken_digit-1.0.9-small:{FIXTURE}", str(tmp_path))
  assert builder.builder_config.name == "spoken_digit-1.0.9-small-44100"
  task = load_task(builder)
  assert task.info.splits == tuple(f"fold{i:02d}" for i in range(5))
  assert task.info.label_vocabulary == tuple(str(d) for d in range(10))
  assert sum(len(task.read_split(s)) for s in task.info.splits) == 100
  # int16 as in the wavs, stored no larger than the source audio.
  prepared = sum(p.stat().st_size for p in pathlib.Path(
      builder.data_dir).glob("*.array_record*"))
  with tarfile.open(FIXTURE) as tar:
    wavs = sum(m.size for m in tar if m.name.endswith(".wav"))
  assert 0 < prepared <= wavs


def test_manual_dir_holds_the_tarball_or_the_task_directory(tmp_path):
  entry = catalogue.TASKS["tfds_gtzan_music_speech-1.0.0-full"]
  entry = dataclasses.replace(entry, sample_durations=(30.0,))
  source = stand_in(entry, tmp_path / "src", rate=22050)
  manual = tmp_path / "manual"
  manual.mkdir()
  tar_task(source, manual / f"hear2021-{entry.task_dir}-22050.tar.gz")
  builder = hear2021.Builder(config=f"{entry.task_dir}-22050",
                             data_dir=tmp_path / "tfds")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual))
  assert len(load_task(builder).read_split("fold09")) == 1
  # The unpacked directory, as the tarball unpacks (hear-2021.0.6/tasks/).
  unpacked = tmp_path / "manual2" / "hear-2021.0.6" / "tasks"
  unpacked.mkdir(parents=True)
  source.rename(unpacked / source.name)
  builder = hear2021.Builder(config=f"{entry.task_dir}-22050",
                             data_dir=tmp_path / "tfds2")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=tmp_path / "manual2"))
  assert builder.is_prepared()


def test_missing_manual_data_says_what_to_download(tmp_path):
  builder = hear2021.Builder(config="esc50-v2.0.0-full-48000",
                             data_dir=tmp_path)
  with pytest.raises(ValueError) as e:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=tmp_path / "empty"))
  message = str(e.value)
  assert "\n" not in message
  assert "hear2021-esc50-v2.0.0-full-48000.tar.gz" in message
  assert "zenodo" in message


# --- mismatches: one line naming the task and the field -----------------------


@pytest.fixture(scope="module")
def esc50_source(tmp_path_factory):
  """A valid ESC-50 stand-in (5 folds of one 5 s clip at 16 kHz)."""
  return stand_in(catalogue.TASKS["esc50-v2.0.0-full"],
                  tmp_path_factory.mktemp("esc50"))


def _edited(source, tmp_path, metadata=None, vocabulary=None):
  """A copy of `source` with edited metadata fields or vocabulary."""
  import shutil  # pylint: disable=g-import-not-at-top
  copy = tmp_path / source.name
  shutil.copytree(source, copy)
  meta = json.loads((copy / "task_metadata.json").read_text())
  meta.update(metadata or {})
  (copy / "task_metadata.json").write_text(json.dumps(meta))
  if vocabulary is not None:
    (copy / "labelvocabulary.csv").write_text(
        "idx,label\n" + "".join(f"{i},{l}\n" for i, l in enumerate(vocabulary)))
  return copy


MISMATCHES = [
    ({"embedding_type": "event"}, None, "embedding_type is 'event'"),
    ({"prediction_type": "multilabel"}, None, "prediction_type"),
    ({"split_mode": "new_split_kfold"}, None, "split_mode"),
    ({"nfolds": 4}, None, "nfolds is 4"),
    ({"splits": ["fold00", "fold01", "fold02", "fold03"]}, None, "splits"),
    ({"sample_duration": 4.0}, None, "sample_duration is 4.0"),
    ({"evaluation": ["mAP", "top1_acc", "d_prime", "aucroc"]}, None,
     "evaluation"),
    (None, [f"class{i:03d}" for i in range(49)], "49 labels"),
    ({"version": "v1.0.0"}, None, "version is 'v1.0.0'"),
    ({"mode": "small"}, None, "mode is 'small'"),
]


@pytest.mark.parametrize("metadata, vocabulary, fragment", MISMATCHES)
def test_mismatched_metadata_is_one_line_naming_task_and_field(
    esc50_source, tmp_path, metadata, vocabulary, fragment):
  source = _edited(esc50_source, tmp_path, metadata, vocabulary)
  with pytest.raises(ValueError) as e:
    hear2021.prepare("esc50-v2.0.0-full", source, tmp_path / "tfds")
  message = str(e.value)
  assert "\n" not in message
  assert "esc50-v2.0.0-full" in message and fragment in message, message
  assert not (tmp_path / "tfds" / "hear2021").exists() or not any(
      (tmp_path / "tfds" / "hear2021").glob("esc50*/1.0.0/*.array_record*"))


def test_beehive_full_mode_needs_600_second_clips(tmp_path):
  entry = catalogue.TASKS["beehive_states_fold0-v2-full"]
  task = hearpreprocess.HearTask(
      name=entry.task_dir, sample_rate=16000,
      metadata=stand_in_metadata(entry, sample_duration=30.0),
      label_vocabulary=("NOQUEEN", "QUEEN"), source="beehive", path=None)
  with pytest.raises(ValueError, match=r"sample_duration is 30\.0.*600\.0"):
    catalogue.check_task(task, entry.task_dir)
  ok = dataclasses.replace(task, metadata=stand_in_metadata(entry))
  assert catalogue.check_task(ok, entry.task_dir) is entry


def test_tarball_of_another_task_names_both(esc50_source, tmp_path):
  tarball = tar_task(esc50_source, tmp_path / "x.tar.gz")
  with pytest.raises(ValueError) as e:
    task_specs.prepare_task(f"hear2021:fsd50k-v1.0-full:{tarball}",
                            str(tmp_path / "tfds"))
  assert "\n" not in str(e.value)
  assert "esc50-v2.0.0-full" in str(e.value)
  assert "fsd50k-v1.0-full" in str(e.value)


def test_builder_config_rate_must_match_the_data(esc50_source, tmp_path):
  builder = hear2021.Builder(config="esc50-v2.0.0-full-48000",
                             data_dir=tmp_path, source=esc50_source)
  with pytest.raises(ValueError, match="no 48000/ audio directory"):
    builder.download_and_prepare()


def test_unknown_task_and_small_mode_label_bound():
  with pytest.raises(ValueError, match="'esc51-v2.0.0-full' is not a HEAR"):
    catalogue.entry("esc51-v2.0.0-full")
  small = catalogue.TASKS["esc50-v2.0.0-small"]
  task = hearpreprocess.HearTask(
      name=small.task_dir, sample_rate=44100,
      metadata=stand_in_metadata(small), label_vocabulary=("a", "b"),
      source="s", path=None)
  assert catalogue.check_task(task) is small  # found from its metadata
  too_many = dataclasses.replace(task, label_vocabulary=tuple(
      str(i) for i in range(51)))
  with pytest.raises(ValueError, match="51 labels.*at most 50"):
    catalogue.check_task(too_many)
  unknown = dataclasses.replace(task, metadata={**task.metadata,
                                                "task_name": "mystery"})
  with pytest.raises(ValueError, match="mystery-v2.0.0-small is not in"):
    catalogue.check_task(unknown)


# --- configs ------------------------------------------------------------------


def _load_config(name):
  spec = importlib.util.spec_from_file_location(
      f"config_{name}", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_hear2021_config_lists_all_19_tasks():
  module = _load_config("hear2021")
  config = module.get_config("/nowhere")
  keys = [task_specs.hear2021_spec(s)[0] for s in config.tasks]
  assert keys == list(catalogue.HEAR2021_TASKS)
  for key in keys:
    assert key in module.__doc__
  with pytest.raises(FileNotFoundError) as e:
    run._check_task_paths(config)  # pylint: disable=protected-access
  assert "dcase2016_task2-hear2021-full" in str(e.value)


def test_every_task_has_a_config_naming_its_command_and_file():
  seen = set()
  for path in sorted((REPO / "configs").glob("*.py")):
    if "hear_task_config(" not in path.read_text():
      continue  # not a per-task config (hear2021.py, hear.py, demo.py, ...)
    module = _load_config(path.stem)
    config = module.get_config(None)
    (spec,) = config.tasks
    key, data = task_specs.hear2021_spec(spec)
    entry = catalogue.TASKS[key]
    seen.add(key)
    assert f"--config=configs/{path.stem}.py" in module.__doc__
    assert entry.tarball_name() in module.__doc__
    assert data.startswith(hear_config.HEAR_DATA_DIR) and key in data
    # No data: the one-line "task data not found ... download" error.
    with pytest.raises(FileNotFoundError) as e:
      run._check_task_paths(config)  # pylint: disable=protected-access
    message = str(e.value)
    assert "\n" not in message and message.startswith("task data not found")
    assert key in message and "download" in message
  assert seen == set(ENTRIES)


def test_task_config_takes_a_path_or_another_mode(tmp_path):
  nsynth = _load_config("nsynth")
  assert nsynth.get_config(str(tmp_path)).tasks == [
      f"hear2021:nsynth_pitch-v2.2.3-5h:{tmp_path}"]
  assert nsynth.get_config("nsynth_pitch-v2.2.3-50h").tasks == [
      "hear2021:nsynth_pitch-v2.2.3-50h:data/hear2021/nsynth_pitch-v2.2.3-50h"]
  beehive = _load_config("beehive_states")
  assert task_specs.hear2021_spec(beehive.get_config(
      "beehive_states_fold1-v2-5h").tasks[0])[0] == "beehive_states_fold1-v2-5h"
  # A tarball in the data directory is found when the directory is absent.
  (tmp_path / "hear2021-esc50-v2.0.0-full-48000.tar.gz").write_bytes(b"")
  assert hear_config.hear_data_path("esc50-v2.0.0-full", str(tmp_path)) == str(
      tmp_path / "hear2021-esc50-v2.0.0-full-48000.tar.gz")


def test_folder_of_tarballs_at_several_rates_prepares_the_asked_rate(tmp_path):
  """Zenodo-style tarballs of one task at two rates, beside another task's
  tarball in the same data folder: each rate is its own dataset."""
  task_dir = "esc50-v2.0.0-full"
  entry = catalogue.TASKS[task_dir]
  data = tmp_path / "data"
  for rate in (16000, 48000):
    source = stand_in(entry, tmp_path / f"src{rate}", rate=rate)
    hearpreprocess_dirs.write_rate_tarballs(source, data)
  (data / "hear2021-fsd50k-v1.0-full-48000.tar.gz").write_bytes(b"")
  assert hear_config.hear_data_path(task_dir, str(data)) == str(data)
  low = hear2021.prepare(task_dir, data, tmp_path / "tfds", sample_rate=16000)
  assert load_task(low).info.sample_rate == 16000
  high = hear2021.prepare(task_dir, data, tmp_path / "tfds")  # the highest
  assert high.builder_config.name == f"{task_dir}-48000"
  assert load_task(high).info.sample_rate == 48000
  with pytest.raises(ValueError, match=r"no esc50-v2.0.0-full audio at 22050"
                     r" Hz \(rates present: 16000, 48000\)"):
    hear2021.prepare(task_dir, data, tmp_path / "tfds", sample_rate=22050)
