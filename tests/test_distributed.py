"""Scale-out: one evaluation on 1 device, 8 devices and 2 processes x 2 devices.

The tiny demo (configs/demo.py:tiny, melstats, 3 epochs) runs through the real
entry point three ways and must give the same scores; in the multi-process run
(launch/local.sh) every process embeds its own share and only process 0
writes; a process killed mid-run fails the run at once with a message naming
it, and a rerun resumes from the cache. The building blocks (shares, shard
merge and reuse, dead or stuck peers) are checked directly.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hear_jax import distributed
from hear_jax import embed
from hear_jax.config import check_config, default_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ("demo_pitch", "demo_spoken_commands", "demo_sound_events")
SPLITS = ("train", "valid", "test")
TIMEOUT = 60  # config.distributed_timeout_seconds of these runs
_EMBED_LINE = re.compile(r"^\[p(\d+)\] .*process (\d+)/(\d+): (embedding|"
                         r"reusing its shard,) (\d+) of (\d+) examples of"
                         r" (.+)$")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  """One prepared TFDS directory and one JAX compilation cache for every run
  (the runs compare embedding and probe, not dataset generation)."""
  root = tmp_path_factory.mktemp("scale_out")
  return {"data_dir": str(root / "tfds"), "jax_cache": str(root / "jax")}


def _args(workdir, shared):
  return ["--config=configs/demo.py:tiny", "--config.model=melstats",
          "--config.probe.max_epochs=3", f"--config.data_dir={shared['data_dir']}",
          f"--config.distributed_timeout_seconds={TIMEOUT}",
          "--config.distributed_heartbeat_seconds=5", f"--workdir={workdir}"]


def _env(shared, devices=None):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("HEAR_JAX_", "XLA_FLAGS"))}
  env.update(PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=shared["jax_cache"])
  if devices:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _main(workdir, shared, devices=None):
  proc = subprocess.run(
      [sys.executable, "-m", "hear_jax.main", *_args(workdir, shared)],
      cwd=REPO, env=_env(shared, devices), capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _local(workdir, shared):
  return ["launch/local.sh", "--processes", "2", "--devices-per-process", "2",
          "--python", sys.executable, "--", *_args(workdir, shared)]


def _run_local(workdir, shared):
  proc = subprocess.run(_local(workdir, shared), cwd=REPO, env=_env(shared),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  return proc


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, shared):
  workdir = str(tmp_path_factory.mktemp("one_device"))
  return workdir, _main(workdir, shared)


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory, shared, one_device):
  workdir = str(tmp_path_factory.mktemp("eight_devices"))
  return workdir, _main(workdir, shared, devices=8)


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory, shared, one_device):
  workdir = str(tmp_path_factory.mktemp("two_by_two"))
  return workdir, _run_local(workdir, shared)


def _scores(workdir):
  out = {}
  for task in TASKS:
    with open(os.path.join(workdir, "melstats", task,
                           "test.predicted-scores.json")) as f:
      out[task] = json.load(f)["test"]
  return out


def _assert_same_scores(a, b):
  for task in TASKS:
    for key, value in a[task].items():
      if key == "time_in_min":
        continue
      if key == "test_loss":
        # A mean over rows summed in another order on more devices: float32
        # rounding of a value near 6 (measured 2e-4 apart on 8 devices).
        assert b[task][key] == pytest.approx(value, rel=1e-4), (task, key)
      else:
        assert b[task][key] == pytest.approx(value, abs=1e-4), (task, key)


def _assert_same_embeddings(a, b):
  for task in TASKS:
    for split in SPLITS:
      path = os.path.join("melstats", task, "embeddings", f"{split}.npz")
      with np.load(os.path.join(a, path)) as x, np.load(
          os.path.join(b, path)) as y:
        assert list(x["ids"]) == list(y["ids"])
        np.testing.assert_allclose(x["x"], y["x"], atol=1e-4, rtol=0)


def test_same_scores_on_1_device_8_devices_and_2_processes(
    one_device, eight_devices, two_by_two):
  reference = _scores(one_device[0])
  assert set(reference) == set(TASKS)
  for workdir, _ in (eight_devices, two_by_two):
    _assert_same_embeddings(one_device[0], workdir)
    _assert_same_scores(reference, _scores(workdir))
  with open(os.path.join(one_device[0], "leaderboard.csv")) as f:
    board = f.read()
  for workdir, _ in (eight_devices, two_by_two):
    with open(os.path.join(workdir, "leaderboard.csv")) as f:
      assert f.read() == board


def _embedding_lines(output):
  """{(model / task / split): {process: (kind, k, n)}} from the log."""
  out = {}
  for line in output.splitlines():
    m = _EMBED_LINE.match(line)
    if m:
      prefix, index, count, kind, k, n, label = m.groups()
      assert prefix == index and count == "2", line
      out.setdefault(label.strip(), {})[int(index)] = (kind, int(k), int(n))
  return out


def test_every_process_embeds_its_own_share_and_one_writes(two_by_two):
  workdir, proc = two_by_two
  lines = _embedding_lines(proc.stdout)
  assert set(lines) == {f"melstats / {t} / {s}" for t in TASKS
                        for s in SPLITS}
  for label, per_process in lines.items():
    _, task, split = label.split(" / ")
    with np.load(os.path.join(workdir, "melstats", task, "embeddings",
                              f"{split}.npz")) as f:
      clips = len(f["ids"])
      assert len(set(f["ids"])) == clips  # the shares were disjoint
    assert sorted(per_process) == [0, 1], label
    assert {n for _, _, n in per_process.values()} == {clips}, label
    assert sum(k for _, k, _ in per_process.values()) == clips, label
    assert all(kind == "embedding" for kind, _, _ in per_process.values())
  # One set of results: written by process 0 alone, the table printed once,
  # no shard or temporary file left behind.
  with open(os.path.join(workdir, ".lock")) as f:
    holder = json.load(f)["pid"]
  pids = dict(re.findall(r"process (\d+): pid (\d+)", proc.stderr))
  assert str(holder) == pids["0"]
  assert proc.stdout.count("| model | task | metric | score |") == 1
  assert "[p0] | model | task | metric | score |" in proc.stdout
  assert "[p1] hear_jax: report" not in proc.stdout
  assert len(glob.glob(os.path.join(workdir, "**", "*.predicted-scores.json"),
                       recursive=True)) == len(TASKS)
  leftovers = [p for p in glob.glob(os.path.join(workdir, "**", "*"),
                                    recursive=True)
               if ".shard-" in p or ".tmp" in p]
  assert not leftovers
  assert "all 2 processes finished" in proc.stderr


def test_killed_process_fails_the_run_and_rerun_resumes(
    tmp_path, shared, one_device):
  workdir = str(tmp_path / "killed")
  log = tmp_path / "run.log"
  with open(log, "w") as out:  # the child keeps a copy
    proc = subprocess.Popen(_local(workdir, shared), cwd=REPO,
                            env=_env(shared), stdout=out,
                            stderr=subprocess.STDOUT, text=True)
  try:
    # Kill process 1 once it has moved on to the second split: the first is
    # merged by then (a cache to resume from) and the run is unfinished.
    deadline = time.monotonic() + 300
    while True:
      text = log.read_text()
      if "process 1/2: embedding 18 of 36 examples of melstats / demo_pitch" \
         " / valid" in text:
        break
      assert proc.poll() is None, text[-3000:]
      assert time.monotonic() < deadline, text[-3000:]
      time.sleep(0.05)
    victim = int(re.search(r"process 1: pid (\d+)", text).group(1))
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    status = proc.wait(timeout=TIMEOUT)
    waited = time.monotonic() - killed_at
  finally:
    if proc.poll() is None:
      proc.kill()
  text = log.read_text()
  assert status != 0
  assert waited < 30, text[-2000:]
  assert (f"launch/local.sh: process 1 (pid {victim}) was killed by signal 9"
          in text), text[-2000:]
  assert "stopping the other processes" in text
  assert not os.path.exists(os.path.join(workdir, "leaderboard.csv"))

  again = _run_local(workdir, shared)
  assert "melstats / demo_pitch / train: 72 rows (cached)" in again.stdout
  lines = _embedding_lines(again.stdout)
  assert "melstats / demo_pitch / train" not in lines  # not embedded again
  assert len(lines) == len(TASKS) * len(SPLITS) - 1
  _assert_same_embeddings(one_device[0], workdir)
  _assert_same_scores(_scores(one_device[0]), _scores(workdir))


_PEER = textwrap.dedent("""
    import sys, time
    from hear_jax import distributed
    distributed.initialize(timeout_seconds=float(sys.argv[2]),
                           heartbeat_seconds=3)
    distributed.barrier("start", timeout_seconds=30)
    print("ready", flush=True)
    if distributed.process_index() == 1:
      time.sleep(120)  # stuck (or killed by the test)
    try:
      distributed.barrier("next step", timeout_seconds=float(sys.argv[2]))
    except distributed.DistributedError as e:
      print(e, flush=True)
      distributed.leave(1)
    """)


def _peers(tmp_path, timeout):
  port = subprocess.run(
      [sys.executable, "-c", "import socket; s = socket.socket(); s.bind(("
       "'127.0.0.1', 0)); print(s.getsockname()[1])"],
      capture_output=True, text=True, check=True).stdout.strip()
  procs = []
  for i in range(2):
    env = dict(os.environ, HEAR_JAX_COORDINATOR=f"127.0.0.1:{port}",
               HEAR_JAX_NUM_PROCESSES="2", HEAR_JAX_PROCESS_ID=str(i),
               JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    with open(tmp_path / f"p{i}.log", "w") as out:  # the child keeps a copy
      procs.append(subprocess.Popen(
          [sys.executable, "-c", _PEER, str(i), str(timeout)], cwd=REPO,
          env=env, stdout=out, stderr=subprocess.STDOUT))
  deadline = time.monotonic() + 60
  while "ready" not in (tmp_path / "p1.log").read_text():
    assert time.monotonic() < deadline, (tmp_path / "p1.log").read_text()
    time.sleep(0.05)
  return procs


def test_a_stuck_peer_fails_the_others_after_the_timeout(tmp_path):
  procs = _peers(tmp_path, timeout=4)
  start = time.monotonic()
  try:
    assert procs[0].wait(timeout=30) == 1
    waited = time.monotonic() - start
  finally:
    for p in procs:
      p.kill()
      p.wait()
  out = (tmp_path / "p0.log").read_text()
  assert 3 < waited < 20, out
  assert ("process 0/2: the other processes did not all reach 'next step'"
          " within 4 s") in out


def test_a_dead_peer_stops_the_others_within_the_heartbeat(tmp_path):
  procs = _peers(tmp_path, timeout=100)
  procs[1].kill()
  start = time.monotonic()
  try:
    status = procs[0].wait(timeout=60)
    waited = time.monotonic() - start
  finally:
    procs[0].kill()
    procs[0].wait()
  out = (tmp_path / "p0.log").read_text()
  assert status != 0
  assert waited < 20, out  # heartbeat 3 s, not the 100 s barrier timeout
  # Our wait names the dead process, unless JAX's own abort comes first.
  assert ("process 0/2: process 1 stopped answering" in out
          or "Task 1 heartbeat timeout" in out), out


_FAILING = textwrap.dedent("""
    import sys, time
    import numpy as np
    from jax.experimental import multihost_utils
    from hear_jax import distributed
    distributed.initialize(timeout_seconds=60, heartbeat_seconds=60)
    distributed.barrier("start", timeout_seconds=30)
    if sys.argv[1] == "all" or distributed.process_index() == int(sys.argv[1]):
      time.sleep(1)  # the others are inside the collective by then
      with open(sys.argv[2], "w") as f:
        f.write(repr(time.time()))
      distributed.fail("bad clip x.wav: 3 channels", 1)
    # A collective the failed process never joins.
    multihost_utils.process_allgather(np.ones(3))
    time.sleep(120)
    """)


# "all": every process fails at once (e.g. the same bad input), so the
# processes that tell the others race, process 0 among them.
@pytest.mark.parametrize("processes,failing",
                         [(2, 1), (2, 0), (3, 1), (2, "all"), (3, "all")])
def test_a_failure_is_one_line_on_every_process(tmp_path, processes,
                                                failing):
  port = subprocess.run(
      [sys.executable, "-c", "import socket; s = socket.socket(); s.bind(("
       "'127.0.0.1', 0)); print(s.getsockname()[1])"],
      capture_output=True, text=True, check=True).stdout.strip()
  procs = []
  for i in range(processes):
    env = dict(os.environ, HEAR_JAX_COORDINATOR=f"127.0.0.1:{port}",
               HEAR_JAX_NUM_PROCESSES=str(processes),
               HEAR_JAX_PROCESS_ID=str(i), JAX_PLATFORMS="cpu",
               PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    with open(tmp_path / f"p{i}.log", "w") as out:  # the child keeps a copy
      procs.append(subprocess.Popen(
          [sys.executable, "-c", _FAILING, str(failing),
           str(tmp_path / "failed_at")], cwd=REPO, env=env, stdout=out,
          stderr=subprocess.STDOUT))
  try:
    statuses = [p.wait(timeout=120) for p in procs]
    ended = time.time()
  finally:
    for p in procs:
      p.kill()
      p.wait()
  # At once, not after the 60 s heartbeat or a timeout.
  waited = ended - float((tmp_path / "failed_at").read_text())
  for i in range(processes):
    out = (tmp_path / f"p{i}.log").read_text()
    lines = [l for l in out.splitlines() if l.strip()
             and not l.startswith("[Gloo]")]
    own = "hear_jax: error: bad clip x.wav: 3 channels"
    told = (f"hear_jax: error: process {failing}/{processes} failed: bad clip"
            " x.wav: 3 channels")
    # One line, no native abort or stack dump.
    if failing == "all":  # its own line, or another's that came first
      assert len(lines) == 1 and (lines[0] == own or re.fullmatch(
          rf"hear_jax: error: process \d/{processes} failed: bad clip x.wav:"
          r" 3 channels", lines[0])), out
    else:
      assert lines == [own if i == failing else told], out
    assert statuses[i] == 1, out
  assert waited < 20


def test_shares_tile_the_examples():
  for n in (0, 1, 5, 72, 1001):
    for count in (1, 2, 3, 8):
      parts = [distributed.share(n, i, count) for i in range(count)]
      assert [i for p in parts for i in p] == list(range(n))
      assert max(map(len, parts)) - min(map(len, parts)) <= 1
  with pytest.raises(ValueError):
    distributed.share(5, 2, 2)


@pytest.mark.parametrize("env, message", [
    ({"HEAR_JAX_COORDINATOR": "127.0.0.1:1"}, "HEAR_JAX_NUM_PROCESSES"),
    ({"HEAR_JAX_COORDINATOR": "nohost", "HEAR_JAX_NUM_PROCESSES": "2",
      "HEAR_JAX_PROCESS_ID": "0"}, "must be host:port"),
    ({"HEAR_JAX_COORDINATOR": "h:1", "HEAR_JAX_NUM_PROCESSES": "2",
      "HEAR_JAX_PROCESS_ID": "2"}, "must be in [0, 2)"),
    ({"HEAR_JAX_DISTRIBUTED": "yes"}, "must be 'auto'"),
])
def test_bad_launch_environment_is_one_line(env, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    distributed.settings_from_env(env)


def test_launch_environment():
  assert distributed.settings_from_env({}) is None
  assert distributed.settings_from_env({"HEAR_JAX_DISTRIBUTED": "auto"}) == (
      distributed.Settings(None, None, None))
  assert distributed.settings_from_env({
      "HEAR_JAX_COORDINATOR": "10.0.0.1:1234", "HEAR_JAX_NUM_PROCESSES": "4",
      "HEAR_JAX_PROCESS_ID": "3"}) == distributed.Settings(
          "10.0.0.1:1234", 4, 3)


def test_config_refuses_non_positive_timeouts():
  config = default_config()
  config.tasks = ["demo/pitch/tiny"]
  config.distributed_timeout_seconds = 0.0
  with pytest.raises(ValueError, match="config.distributed_timeout_seconds"):
    check_config(config)


def _split(ids, frames=None, width=3, seed=0):
  rng = np.random.default_rng(seed)
  labels = tuple((f"l{i}",) for i in range(len(ids)))
  events = tuple(({"label": "a", "start": float(i), "end": i + 1.0},)
                 for i in range(len(ids)))
  if frames is None:
    return embed.SplitEmbeddings(tuple(ids), rng.normal(
        size=(len(ids), width)).astype(np.float32), labels, events,
                                 audio_seconds=float(len(ids)))
  file_index = np.repeat(np.arange(len(ids), dtype=np.int32), frames)
  timestamps = np.concatenate([np.arange(f) * 50.0 for f in frames])
  return embed.SplitEmbeddings(
      tuple(ids), rng.normal(size=(len(file_index), width)).astype(np.float32),
      labels, events, file_index, timestamps, audio_seconds=float(len(ids)))


def _take(split, clips):
  """The split restricted to `clips` (indices), as a process's part."""
  if split.file_index is None:
    return embed.SplitEmbeddings(
        tuple(split.ids[c] for c in clips), split.x[clips],
        tuple(split.labels[c] for c in clips),
        tuple(split.events[c] for c in clips), audio_seconds=len(clips))
  rows = np.concatenate([np.flatnonzero(split.file_index == c) for c in clips]
                        + [np.zeros(0, np.int64)])
  return embed.SplitEmbeddings(
      tuple(split.ids[c] for c in clips), split.x[rows],
      tuple(split.labels[c] for c in clips),
      tuple(split.events[c] for c in clips),
      np.repeat(np.arange(len(clips), dtype=np.int32),
                [np.sum(split.file_index == c) for c in clips]),
      split.timestamps_ms[rows], audio_seconds=len(clips))


def _assert_equal_splits(a, b):
  assert a.ids == b.ids and a.labels == b.labels and a.events == b.events
  np.testing.assert_array_equal(a.x, b.x)
  if a.file_index is None:
    assert b.file_index is None
  else:
    np.testing.assert_array_equal(a.file_index, b.file_index)
    np.testing.assert_array_equal(a.timestamps_ms, b.timestamps_ms)


@pytest.mark.parametrize("frames", [None, [3, 1, 4, 1, 5, 2, 6]])
def test_merged_parts_are_the_whole_split(frames):
  whole = _split([f"c{i}" for i in range(7)], frames)
  # Parts as processes see them: data-source order is not id order.
  parts = [_take(whole, [5, 0, 3]), _take(whole, []), _take(whole, [6, 1]),
           _take(whole, [4, 2])]
  parts = [_take(p, list(np.argsort(p.ids))) if p.ids else p for p in parts]
  merged = embed.merge_embeddings(parts)
  _assert_equal_splits(merged, whole)
  assert merged.audio_seconds == 7
  with pytest.raises(ValueError, match="'c0' is in two parts"):
    embed.merge_embeddings([parts[0], parts[0]])


class _Job:
  """`distributed` as seen by process `index` of 2, for one process at a
  time; a process 'killed' after writing its shard stops at the meeting."""

  class Killed(Exception):
    pass

  def __init__(self, monkeypatch, index, killed=False):
    self.index, self.killed = index, killed
    monkeypatch.setattr(distributed, "process_index", lambda: self.index)
    monkeypatch.setattr(distributed, "process_count", lambda: 2)
    monkeypatch.setattr(distributed, "barrier", self.barrier)
    monkeypatch.setattr(distributed, "from_main", self.from_main)

  def barrier(self, name, timeout_seconds):
    if self.killed:
      raise self.Killed(name)

  def from_main(self, name, compute, timeout_seconds):
    return compute() if self.index == 0 else ""


def test_shards_are_reused_merged_once_and_removed(tmp_path, monkeypatch):
  whole = _split([f"c{i}" for i in range(5)], [2, 3, 1, 2, 2])
  path = str(tmp_path / "train.npz")
  calls = []

  def compute(rows):
    calls.append(rows)
    return _take(whole, list(rows))

  def run(index, killed=False):
    _Job(monkeypatch, index, killed)
    return embed.sharded_split_embeddings(path, "fp", compute, 5,
                                          label="m / t / train",
                                          timeout_seconds=1)

  with pytest.raises(_Job.Killed):  # process 1 writes its shard, then dies
    run(1, killed=True)
  assert calls == [range(2, 5)]
  assert os.path.exists(embed.shard_path(path, 1, 2))
  # The rerun: process 1 reuses its shard, process 0 embeds and merges.
  with pytest.raises(_Job.Killed):
    run(1, killed=True)
  assert calls == [range(2, 5)]
  merged, cached = run(0)
  assert calls == [range(2, 5), range(0, 2)] and not cached
  _assert_equal_splits(merged, whole)
  assert sorted(os.listdir(tmp_path)) == ["train.npz"]
  # A complete cache serves any process count, with no work.
  _Job(monkeypatch, 1)
  merged, cached = embed.sharded_split_embeddings(
      path, "fp", compute, 5, label="m / t / train", timeout_seconds=1)
  assert cached and len(calls) == 2
  _assert_equal_splits(merged, embed.load_embeddings(path, "fp"))
  # Another fingerprint's shard is not reused.
  embed.save_embeddings(embed.shard_path(str(tmp_path / "valid.npz"), 1, 2),
                        _take(whole, [2, 3, 4]),
                        embed.shard_fingerprint("old", 1, 2))
  _Job(monkeypatch, 1, killed=True)
  with pytest.raises(_Job.Killed):
    embed.sharded_split_embeddings(str(tmp_path / "valid.npz"), "fp", compute,
                                   5, label="m / t / valid",
                                   timeout_seconds=1)
  assert calls[-1] == range(2, 5) and len(calls) == 3
