"""hear-eval-kit's embeddings layout: read what its runner writes (without
unpickling), write what its predictions runner reads, refuse bad directories
in one line naming the file."""

from __future__ import annotations

import json
import pathlib
import pickle
import random
import shutil

import numpy as np
import pytest

from hear_jax.data import heareval_layout as layout
from hear_jax.data import task_specs
from hear_jax.data.task import TaskInfo
from hear_jax.embed import SplitEmbeddings

D = 6


def scene_info(prediction_type="multiclass", splits=("fold00", "fold01",
                                                      "fold02")):
  meta = {"task_name": "toy", "version": "1.0", "mode": "full",
          "embedding_type": "scene", "prediction_type": prediction_type,
          "split_mode": "new_split_kfold", "nfolds": len(splits),
          "sample_duration": 1.0, "evaluation": ["top1_acc", "mAP"],
          "splits": list(splits)}
  return TaskInfo("toy", meta, ("0", "1", "2"), 16000)


def event_info():
  meta = {"task_name": "toyev", "version": "1.0", "mode": "full",
          "embedding_type": "event", "prediction_type": "multilabel",
          "split_mode": "trainvaltest", "sample_duration": 1.0,
          "evaluation": ["event_onset_200ms_fms"],
          "splits": ["train", "valid", "test"]}
  return TaskInfo("toyev", meta, ("dog", "cat"), 16000)


def scene_splits(info, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for s, split in enumerate(info.splits):
    ids = tuple(f"{split}_{i}.wav" for i in range(4 + s))
    if info.prediction_type == "multiclass":
      labels = tuple((str(i % 3),) for i in range(len(ids)))
    else:
      labels = tuple([(), ("0",), ("1", "2")][i % 3] for i in range(len(ids)))
    out[split] = SplitEmbeddings(
        ids, rng.normal(size=(len(ids), D)).astype(np.float32), labels,
        tuple(() for _ in ids))
  return out


def event_splits(info, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for split in info.splits:
    ids = (f"{split}_a.wav", f"{split}_b.wav")
    frames = (5, 3)
    events = (({"label": "dog", "start": 0.0, "end": 100.0},
               {"label": "cat", "start": 50.0, "end": 200.0}), ())
    out[split] = SplitEmbeddings(
        ids, rng.normal(size=(sum(frames), D)).astype(np.float32),
        ((), ()), events,
        np.repeat(np.arange(2, dtype=np.int32), frames),
        np.concatenate([np.arange(n) * 50.0 for n in frames]))
  return out


def _by_id(emb):
  """{id: (rows, labels, events, timestamps)}, independent of row order."""
  out = {}
  for i, name in enumerate(emb.ids):
    sel = (emb.file_index == i) if emb.file_index is not None else [i]
    out[name] = (emb.x[sel], emb.labels[i], emb.events[i],
                 None if emb.timestamps_ms is None else
                 list(emb.timestamps_ms[sel]))
  return out


def _assert_same(a, b):
  assert set(a) == set(b)
  for name, (x, labels, events, times) in a.items():
    np.testing.assert_array_equal(x, b[name][0])
    assert (labels, events, times) == b[name][1:]


# --- round trip and the files heareval needs ----------------------------------


@pytest.mark.parametrize("prediction_type", ["multiclass", "multilabel"])
def test_scene_export_reads_back_and_matches_heareval_files(tmp_path,
                                                            prediction_type):
  info = scene_info(prediction_type)
  splits = scene_splits(info)
  out = layout.export_task(tmp_path / "m" / "toy-1.0-full", info, splits)
  assert layout.looks_like_embeddings_dir(out)
  assert layout.model_name(out) == "m"

  read_info, read = layout.read_embeddings(out)
  assert read_info.metadata == info.metadata
  assert read_info.label_vocabulary == info.label_vocabulary
  prng = random.Random(0)  # heareval 2021.1.x: one PRNG per task
  for split in info.splits:
    _assert_same(_by_id(read[split]), _by_id(splits[split]))
    order = list(json.loads((out / f"{split}.json").read_text()))
    prng.shuffle(order)
    assert list(read[split].ids) == order
    # The memmap is raw float32 (np.load refuses it), rows in that order.
    path = out / f"{split}.embeddings.npy"
    with pytest.raises(ValueError):
      np.load(path)
    n = len(order)
    assert json.loads((out / f"{split}.embedding-dimensions.json").read_text()
                      ) == [n, D]
    rows = np.memmap(path, dtype=np.float32, mode="r", shape=(n, D))
    for row, name in zip(rows, order):
      i = splits[split].ids.index(name)
      np.testing.assert_array_equal(row, splits[split].x[i])
      np.testing.assert_array_equal(
          np.load(out / split / f"{name}.embedding.npy"), row)
    # Our own file: the labels heareval's predictor unpickles.
    with open(out / f"{split}.target-labels.pkl", "rb") as f:
      assert pickle.load(f) == [
          list(splits[split].labels[splits[split].ids.index(n)])
          for n in order]


def test_event_export_reads_back_with_frame_labels(tmp_path):
  info = event_info()
  splits = event_splits(info)
  out = layout.export_task(tmp_path / "m" / "toyev-1.0-full", info, splits)
  _, read = layout.read_embeddings(out)
  for split in info.splits:
    _assert_same(_by_id(read[split]), _by_id(splits[split]))
    rows = json.loads((out / f"{split}.filename-timestamps.json").read_text())
    assert all(pathlib.Path(f).parent == out / split for f, _ in rows)
    with open(out / f"{split}.target-labels.pkl", "rb") as f:
      frame_labels = pickle.load(f)
    assert len(frame_labels) == len(rows) == 8
    by_frame = dict(zip([(pathlib.Path(f).name, t) for f, t in rows],
                        frame_labels))
    # heareval's rule: an event covers start <= t <= end (+0.0001 ms).
    assert by_frame[(f"{split}_a.wav", 0.0)] == ["dog"]
    assert by_frame[(f"{split}_a.wav", 100.0)] == ["dog", "cat"]
    assert by_frame[(f"{split}_a.wav", 150.0)] == ["cat"]
    assert by_frame[(f"{split}_b.wav", 50.0)] == []
    assert json.loads((out / split / f"{split}_a.wav.timestamps.json"
                       ).read_text()) == [0.0, 50.0, 100.0, 150.0, 200.0]


def test_export_is_skipped_when_nothing_changed(tmp_path):
  info = scene_info()
  out = layout.export_task(tmp_path / "t", info, scene_splits(info),
                           fingerprint="a")
  stamp = (out / "fold00.embeddings.npy").stat().st_mtime_ns
  layout.export_task(out, info, scene_splits(info, seed=1), fingerprint="a")
  assert (out / "fold00.embeddings.npy").stat().st_mtime_ns == stamp
  layout.export_task(out, info, scene_splits(info, seed=1), fingerprint="b")
  _, read = layout.read_embeddings(out)
  _assert_same(_by_id(read["fold00"]), _by_id(scene_splits(info, 1)["fold00"]))
  assert not list(tmp_path.glob(".*incomplete*"))


# --- directories the way heareval's runner leaves them ------------------------


def heareval_scene_dir(root, info, splits, rng):
  """Writes a scene task as heareval's runner does, but with the memmap
  rows in an arbitrary order (older runners used glob order), int labels
  in the json files as spoken_digit has them."""
  root.mkdir(parents=True)
  (root / "task_metadata.json").write_text(json.dumps(info.metadata))
  (root / "labelvocabulary.csv").write_text(
      "idx,label\n" + "".join(f"{i},{l}\n"
                              for i, l in enumerate(info.label_vocabulary)))
  for split, emb in splits.items():
    (root / split).mkdir()
    labels = {n: [int(x) for x in l] for n, l in zip(emb.ids, emb.labels)}
    (root / f"{split}.json").write_text(json.dumps(labels))
    for name, row in zip(emb.ids, emb.x):
      np.save(root / split / f"{name}.embedding.npy", row)
      (root / split / f"{name}.target-labels.json").write_text(
          json.dumps(labels[name]))
    order = rng.permutation(len(emb.ids))
    (root / f"{split}.embedding-dimensions.json").write_text(
        json.dumps([len(order), D]))
    emb.x[order].tofile(root / f"{split}.embeddings.npy")
    with open(root / f"{split}.target-labels.pkl", "wb") as f:
      pickle.dump([labels[emb.ids[i]] for i in order], f)
  return root


def test_reads_any_row_order_by_matching_per_file_embeddings(tmp_path):
  info = scene_info()
  splits = scene_splits(info)
  root = heareval_scene_dir(tmp_path / "emb" / "mymodel" / "toy-1.0-full",
                            info, splits, np.random.default_rng(7))
  # A .pkl that cannot be unpickled proves it is never read.
  for split in info.splits:
    (root / f"{split}.target-labels.pkl").write_bytes(b"not a pickle")
  _, read = layout.read_embeddings(root)
  for split in info.splits:
    _assert_same(_by_id(read[split]), _by_id(splits[split]))
  assert task_specs.spec_for_path(str(root)) == f"heareval:{root}"
  assert task_specs.spec_for_path(str(tmp_path)).startswith("hearpreprocess:")


def test_without_per_file_embeddings_replays_heareval_order(tmp_path):
  info = scene_info()
  splits = scene_splits(info)
  out = layout.export_task(tmp_path / "m" / "t", info, splits)
  for split in info.splits:
    shutil.rmtree(out / split)
  _, read = layout.read_embeddings(out)
  for split in info.splits:
    _assert_same(_by_id(read[split]), _by_id(splits[split]))


# --- bad directories: one line naming the file and the problem ----------------


@pytest.fixture
def scene_dir(tmp_path):
  info = scene_info()
  return layout.export_task(tmp_path / "m" / "toy", info, scene_splits(info))


@pytest.fixture
def event_dir(tmp_path):
  info = event_info()
  return layout.export_task(tmp_path / "m" / "ev", info, event_splits(info))


def _fails(path, *fragments):
  with pytest.raises(ValueError) as e:
    layout.read_embeddings(path)
  message = str(e.value)
  assert "\n" not in message, message
  for fragment in fragments:
    assert fragment in message, message


def test_missing_files(scene_dir):
  (scene_dir / "fold01.embedding-dimensions.json").unlink()
  _fails(scene_dir, "fold01.embedding-dimensions.json: file not found")


def test_missing_memmap(scene_dir):
  (scene_dir / "fold02.embeddings.npy").unlink()
  _fails(scene_dir, "fold02.embeddings.npy: file not found")


def test_missing_metadata(scene_dir):
  (scene_dir / "task_metadata.json").unlink()
  _fails(scene_dir, "task_metadata.json: file not found")


def test_memmap_size_disagrees_with_dimensions(scene_dir):
  (scene_dir / "fold00.embedding-dimensions.json").write_text("[4, 7]")
  _fails(scene_dir, "fold00.embeddings.npy: 96 bytes",
         "[4, 7] float32 = 112 bytes")


def test_bad_dimensions_file(scene_dir):
  (scene_dir / "fold00.embedding-dimensions.json").write_text('{"n": 4}')
  _fails(scene_dir, "fold00.embedding-dimensions.json", "two positive")


def test_nan_rows(scene_dir):
  x = np.fromfile(scene_dir / "fold01.embeddings.npy", np.float32)
  x[D * 2 + 3] = np.nan
  x.tofile(scene_dir / "fold01.embeddings.npy")
  _fails(scene_dir, "fold01.embeddings.npy: 1 row(s) contain NaN or Inf",
         "row 2")


def test_label_not_in_vocabulary(scene_dir):
  name = json.loads((scene_dir / "fold00.json").read_text()).popitem()[0]
  (scene_dir / "fold00" / f"{name}.target-labels.json").write_text('["7"]')
  _fails(scene_dir, f"{name}.target-labels.json", "label '7' is not in"
         " labelvocabulary.csv")


def test_multiclass_row_with_two_labels(scene_dir):
  name = next(iter(json.loads((scene_dir / "fold00.json").read_text())))
  (scene_dir / "fold00" / f"{name}.target-labels.json").write_text(
      '["0", "1"]')
  _fails(scene_dir, f"{name}.target-labels.json", "2 labels")


def test_rows_that_match_no_file(scene_dir):
  name = next(iter(json.loads((scene_dir / "fold02.json").read_text())))
  np.save(scene_dir / "fold02" / f"{name}.embedding.npy",
          np.zeros(D, np.float32))
  _fails(scene_dir, "fold02.embeddings.npy: row", "matches none")


def test_rows_cannot_be_named_without_json_or_per_file(scene_dir):
  (scene_dir / "fold00.json").unlink()
  shutil.rmtree(scene_dir / "fold01")
  _fails(scene_dir, "fold01", "file not found", "never unpickled")


def test_dimension_differs_between_splits(scene_dir):
  dims = scene_dir / "fold01.embedding-dimensions.json"
  n = json.loads(dims.read_text())[0]
  dims.write_text(json.dumps([n * 2, D // 2]))
  _fails(scene_dir, "fold01.embedding-dimensions.json: 3 dimensions",
         "fold00 has 6")


def test_event_label_not_in_vocabulary(event_dir):
  entries = json.loads((event_dir / "valid.json").read_text())
  entries["valid_a.wav"][0]["label"] = "bird"
  (event_dir / "valid.json").write_text(json.dumps(entries))
  _fails(event_dir, "valid.json: 'valid_a.wav'", "label 'bird' is not in")


def test_event_frames_of_unknown_file(event_dir):
  rows = json.loads((event_dir / "test.filename-timestamps.json").read_text())
  first = rows[0][0]
  for row in rows:
    if row[0] == first:
      row[0] = str(pathlib.Path(first).with_name("test_z.wav"))
  (event_dir / "test.filename-timestamps.json").write_text(json.dumps(rows))
  _fails(event_dir, "test.filename-timestamps.json",
         "'test_z.wav' is not in test.json")


def test_event_frames_not_contiguous(event_dir):
  path = event_dir / "train.filename-timestamps.json"
  rows = json.loads(path.read_text())
  names = [pathlib.Path(f).name for f, _ in rows]
  first = names[0]
  last = max(i for i, n in enumerate(names) if n == first)
  rows.append(rows.pop(last))  # move one frame of the first file to the end
  path.write_text(json.dumps(rows))
  _fails(event_dir, "train.filename-timestamps.json",
         f"frames of {first!r} are not contiguous")


def test_event_frame_count_disagrees(event_dir):
  path = event_dir / "train.filename-timestamps.json"
  path.write_text(json.dumps(json.loads(path.read_text())[:-1]))
  _fails(event_dir, "train.filename-timestamps.json: 7 frames", "8 rows")


def test_event_task_needs_its_split_json(event_dir):
  (event_dir / "test.json").unlink()
  _fails(event_dir, "test.json: file not found", "reference events")
