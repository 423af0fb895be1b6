"""One writer per workdir, caches that are never trusted blindly, nothing
unpickled. (Resuming a killed probe: test_probe_resume.py; killing whole
runs: benchmarks/fault_injection.py.)"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import hear_jax
from hear_jax import embed
from hear_jax import run
from hear_jax import workdir_lock
from hear_jax.models.interface import EmbeddingModel

REPO = pathlib.Path(__file__).resolve().parents[1]


# --- the workdir lock ------------------------------------------------------------


def test_second_holder_is_refused_with_the_first_ones_name(tmp_path):
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(workdir_lock.WorkdirBusyError) as e:
      with workdir_lock.hold(str(tmp_path)):
        pass
  message = str(e.value)
  assert "\n" not in message
  assert f"workdir {tmp_path} is in use by process {os.getpid()}" in message
  assert re.search(r"\(started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: ", message)
  with workdir_lock.hold(str(tmp_path)):  # released: free again
    pass


def test_waiting_holder_gets_the_lock_when_it_is_released(tmp_path):
  held, release = threading.Event(), threading.Event()

  def first():
    with workdir_lock.hold(str(tmp_path)):
      held.set()
      release.wait()

  thread = threading.Thread(target=first)
  thread.start()
  held.wait()
  with pytest.raises(workdir_lock.WorkdirBusyError, match="after waiting"):
    with workdir_lock.hold(str(tmp_path), wait_seconds=0.3, poll_seconds=0.1):
      pass
  threading.Timer(0.5, release.set).start()
  start = time.monotonic()
  with workdir_lock.hold(str(tmp_path), wait_seconds=30, poll_seconds=0.1):
    waited = time.monotonic() - start
  thread.join()
  assert 0.3 < waited < 10


def test_killed_holder_leaves_no_stale_lock(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\n"
       "from hear_jax import workdir_lock\n"
       "with workdir_lock.hold(sys.argv[1]):\n"
       "  print('held', flush=True); time.sleep(600)\n", str(tmp_path)],
      cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(workdir_lock.WorkdirBusyError,
                     match=f"process {holder.pid} "):
    with workdir_lock.hold(str(tmp_path)):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with workdir_lock.hold(str(tmp_path)):  # the kernel dropped it
    pass


def _main(workdir, *args, stderr=subprocess.PIPE):
  # The tiny demo config with one model: the lock, not the work, is tested.
  return subprocess.Popen(
      [sys.executable, "-m", "hear_jax.main", "--config=configs/demo.py:tiny",
       "--config.model=melstats", f"--workdir={workdir}", *args], cwd=REPO,
      stdout=subprocess.PIPE, stderr=stderr, text=True,
      env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _lock_holder(workdir):
  try:
    return json.loads((workdir / ".lock").read_text() or "{}").get("pid")
  except (OSError, ValueError):
    return None


def _until(condition, what, seconds=120):
  deadline = time.monotonic() + seconds
  while not condition():
    assert time.monotonic() < deadline, what
    time.sleep(0.1)


def test_two_runs_on_one_workdir(tmp_path):
  """The first runs; a second stops at once naming it; a third waits, then
  finds everything done; the results are whole."""
  workdir = tmp_path / "w"
  first = _main(workdir)
  _until(lambda: _lock_holder(workdir) == first.pid or first.poll(),
         "the first run never took the lock")
  assert first.poll() is None, first.communicate()[1][-2000:]
  # Frozen while it holds the lock, so the others meet it however loaded
  # the machine is.
  first.send_signal(signal.SIGSTOP)
  try:
    second = _main(workdir)
    _, err = second.communicate(timeout=300)
    assert second.returncode != 0
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(
        f"hear_jax: error: workdir {workdir} is in use by process"
        f" {first.pid} on host "), lines[0]
    assert "let it finish or use another --workdir" in lines[0]
    waiter_log = tmp_path / "waiter.err"
    with open(waiter_log, "w") as log:
      waiter = _main(workdir, "--config.lock_wait_seconds=600", stderr=log)
    _until(lambda: "waiting up to 600 s" in waiter_log.read_text(),
           "the waiting run never said it waits")
  finally:
    first.send_signal(signal.SIGCONT)
  out, err = first.communicate(timeout=600)
  assert first.returncode == 0, err[-3000:]
  w_out, _ = waiter.communicate(timeout=600)
  w_err = waiter_log.read_text()
  assert waiter.returncode == 0, w_err[-3000:]
  assert f"is in use by process {first.pid}" in w_err
  table = out[out.index("| model |"):]
  assert w_out[w_out.index("| model |"):] == table  # same leaderboard
  assert w_err.count("rows (cached)") == 9  # 3 tasks x 3 splits, reused
  rows = (workdir / "leaderboard.csv").read_text().splitlines()
  assert len(rows) == 4
  for line in rows[1:]:
    model, task = line.split(",")[:2]
    doc = json.loads((workdir / model / task /
                      "test.predicted-scores.json").read_text())
    assert f"{doc['test']['test_score']:.6f}" == line.split(",")[3]
    assert (workdir / model / task / "prediction-done.json").is_file()
  assert not list(workdir.rglob("*.tmp*"))


# --- the embeddings cache -------------------------------------------------------


def _split(n=3, d=4, seed=0):
  rng = np.random.default_rng(seed)
  return embed.SplitEmbeddings(
      ids=tuple(f"c{i}.wav" for i in range(n)),
      x=rng.normal(size=(n, d)).astype(np.float32),
      labels=tuple((("a",) for _ in range(n))), events=((),) * n)


def test_damaged_cache_is_recomputed_not_fatal(tmp_path, caplog):
  path = str(tmp_path / "train.npz")
  emb = _split()
  embed.save_embeddings(path, emb, "fp")
  size = os.path.getsize(path)
  calls = []

  def compute():
    calls.append(1)
    return emb

  for damage in ("truncate", "flip", "empty"):
    embed.save_embeddings(path, emb, "fp")
    with open(path, "r+b") as f:
      if damage == "truncate":
        f.truncate(size // 2)
      elif damage == "flip":  # a bit flip inside x: the zip CRC catches it
        data = bytearray(f.read())
        offset = data.index(emb.x.tobytes())
        data[offset] ^= 0x01
        f.seek(0)
        f.write(data)
      else:
        f.truncate(0)
    caplog.clear()
    with caplog.at_level("WARNING"):
      got, cached = embed.cached_split_embeddings(path, "fp", compute)
    assert not cached, damage
    assert "damaged embeddings cache" in caplog.text, damage
    assert got.x.tobytes() == emb.x.tobytes()
    # ... and the file was replaced by a good one.
    assert embed.load_embeddings(path, "fp").x.tobytes() == emb.x.tobytes()
  assert len(calls) == 3


def test_inconsistent_cache_is_recomputed(tmp_path):
  path = str(tmp_path / "train.npz")
  bad = _split()
  bad = embed.SplitEmbeddings(bad.ids, bad.x[:2], bad.labels, bad.events)
  embed.save_embeddings(path, bad, "fp")  # 3 ids, 2 rows
  assert embed.load_embeddings(path, "fp") is None


def test_stale_temporary_file_is_never_read(tmp_path):
  path = str(tmp_path / "train.npz")
  # A writer killed before its rename leaves only a temporary file.
  embed.save_embeddings(path, _split(seed=1), "fp")
  os.replace(path, path + ".12345.tmp.npz")
  assert embed.load_embeddings(path, "fp") is None
  got, cached = embed.cached_split_embeddings(path, "fp",
                                              lambda: _split(seed=2))
  assert not cached and got.x.tobytes() == _split(seed=2).x.tobytes()


def test_pickled_cache_is_refused_without_unpickling(tmp_path):
  marker = tmp_path / "unpickled"
  path = tmp_path / "train.npz"
  np.savez(path, x=np.array([_Trap(str(marker))], dtype=object),
           fingerprint=np.array("fp"))
  assert embed.load_embeddings(str(path), "fp") is None
  assert not marker.exists()


class _Trap:
  """Unpickling it would create a file."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, "w"))


def _model(params, name="m"):
  return EmbeddingModel(name=name, sample_rate=16000, scene_embedding_size=4,
                        timestamp_embedding_size=4, params=params,
                        timestamp_embeddings=None, scene_embeddings=None)


def test_cache_fingerprint_covers_version_options_weights_and_data(
    tmp_path, monkeypatch):
  data = {"split": "train", "examples": 3}
  base = embed.cache_fingerprint(_model({"w": np.ones(3, np.float32)}), data,
                                 batch_samples=100)
  assert json.loads(base)["hear_jax"] == hear_jax.__version__
  variants = [
      embed.cache_fingerprint(_model({"w": np.ones(3, np.float32) * 2}),
                              data, batch_samples=100),
      embed.cache_fingerprint(_model({"w": np.ones(3, np.float32)},
                                     name="m(n_mels=64)"), data,
                              batch_samples=100),
      embed.cache_fingerprint(_model({"w": np.ones(3, np.float32)}),
                              {**data, "examples": 4}, batch_samples=100),
      embed.cache_fingerprint(_model({"w": np.ones(3, np.float32)}), data,
                              batch_samples=200),
  ]
  monkeypatch.setattr(hear_jax, "__version__", "9.9.9")
  variants.append(embed.cache_fingerprint(
      _model({"w": np.ones(3, np.float32)}), data, batch_samples=100))
  assert len({base, *variants}) == 6


def test_files_digest_follows_content_and_is_remembered(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  a.write_bytes(b"audio one")
  b.write_bytes(b"audio two")
  memo = str(tmp_path / "memo.json")
  first = embed.files_digest([str(a), str(b)], memo)
  assert embed.files_digest([str(a), str(b)], memo) == first
  remembered = json.loads(pathlib.Path(memo).read_text())
  assert set(remembered) == {str(a), str(b)}
  # Same size, new content and mtime (a rebuilt dataset): a new digest.
  a.write_bytes(b"audio 1!!")
  os.utime(a, ns=(1, 1))
  assert embed.files_digest([str(a), str(b)], memo) != first


def test_unreadable_probe_result_is_recomputed(tmp_path):
  done, scores = tmp_path / "prediction-done.json", tmp_path / "scores.json"
  scores.write_text('{"test": {}}')
  done.write_text('{"fingerprint": "fp"}')
  assert run._finished_probe(str(done), str(scores), "fp") == {"test": {}}
  assert run._finished_probe(str(done), str(scores), "other") is None
  scores.write_text('{"test": ')  # torn by hand or by a full disk
  assert run._finished_probe(str(done), str(scores), "fp") is None
  done.write_text("[]")
  assert run._finished_probe(str(done), str(scores), "fp") is None


# --- nothing is unpickled -----------------------------------------------------


_UNSAFE = [
    (re.compile(r"\bpickle\.(load|loads|Unpickler)\b"), "unpickles"),
    (re.compile(r"\bnp\.load\((?![^)]*allow_pickle=False)"),
     "np.load without allow_pickle=False"),
    (re.compile(r"\btorch\.load\((?![^)]*weights_only=True)"),
     "torch.load without weights_only=True"),
    (re.compile(r"\.extractall\("), "extracts a tar without checks"),
]


def test_no_code_path_unpickles_or_extracts_blindly():
  # Task directories, tarballs, caches and weights are all read by code
  # under hear_jax/ and tasks/; none of it may unpickle (tar members are
  # checked one by one in hear_jax.data.hearpreprocess, see
  # test_hearpreprocess.py::test_unsafe_tarball_members_are_refused).
  found = []
  for root in ("hear_jax", "tasks"):
    for path in sorted((REPO / root).rglob("*.py")):
      text = path.read_text()
      for pattern, what in _UNSAFE:
        for match in pattern.finditer(text):
          line = text[:match.start()].count("\n") + 1
          found.append(f"{path.relative_to(REPO)}:{line}: {what}")
  assert not found, found
