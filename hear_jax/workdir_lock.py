"""One writer per workdir: an exclusive lock held for a whole evaluation.

  with workdir_lock.hold(workdir):          # a second process: WorkdirBusy
    ...
  with workdir_lock.hold(workdir, wait_seconds=600):   # or it waits
    ...

The lock is `fcntl.flock` on `<workdir>/.lock`. The kernel drops it when the
holding process exits, however it exits (SIGKILL included), so a killed run
never leaves a stale lock behind and the next run simply takes it. The file
itself stays; it records the holder (pid, host, start time, command) so that
the process that finds it busy can say who holds it, in one line:

  workdir runs/demo is in use by process 4242 on host h (started
  2024-05-01 10:00:00: python -m hear_jax.main ...)

flock works on local file systems and on NFSv4 (where Linux maps it to a
byte-range lock); a file system without locks fails loudly (OSError) rather
than letting two writers in.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from typing import Iterator

LOCK_FILE = ".lock"


class WorkdirBusyError(RuntimeError):
  """Another process holds the workdir (the message names it)."""


def _holder(path: str) -> str:
  """Who holds the lock, as far as its file says."""
  try:
    with open(path) as f:
      info = json.loads(f.read() or "{}")
  except (OSError, ValueError):
    info = {}
  if not isinstance(info, dict) or "pid" not in info:
    return "another process"  # it holds the lock but has not written yet
  started = time.strftime("%Y-%m-%d %H:%M:%S",
                          time.localtime(info.get("started", 0)))
  return (f"process {info['pid']} on host {info.get('host', '?')} (started"
          f" {started}: {info.get('command', '?')})")


def _try_lock(fd: int) -> bool:
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except OSError as e:
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      return False
    raise


@contextlib.contextmanager
def hold(workdir: str, *, wait_seconds: float = 0.0,
         poll_seconds: float = 0.5) -> Iterator[None]:
  """Holds `<workdir>/.lock` exclusively for the `with` block.

  Args:
    workdir: the run's directory (created if missing).
    wait_seconds: how long to wait for a busy workdir; 0 raises at once.
    poll_seconds: how often to retry while waiting.

  Raises:
    WorkdirBusyError: another process still holds it after `wait_seconds`.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    deadline = time.monotonic() + wait_seconds
    told = False
    while not _try_lock(fd):
      holder = _holder(path)
      if time.monotonic() >= deadline:
        waited = f" after waiting {wait_seconds:g} s" if wait_seconds else ""
        raise WorkdirBusyError(
            f"workdir {workdir} is in use by {holder}{waited}; let it finish"
            " or use another --workdir")
      if not told:
        logging.warning("workdir %s is in use by %s; waiting up to %g s",
                        workdir, holder, wait_seconds)
        told = True
      time.sleep(poll_seconds)
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.time(), "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    yield
  finally:
    # Closing the descriptor releases the lock; the file stays (removing it
    # would let a waiter lock a file no one else can see).
    os.close(fd)
