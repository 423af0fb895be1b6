"""Several processes, one evaluation: start-up, shares of work, meeting points.

Every process of a multi-host run executes the same command (launch/ starts
them); this module makes them one job:

  distributed.initialize(timeout_seconds=3600, heartbeat_seconds=60)
  i, n = distributed.process_index(), distributed.process_count()
  mine = distributed.share(len(examples), i, n)     # a contiguous range
  distributed.barrier("embedded train", timeout_seconds=3600)
  digest = distributed.from_main("files digest", compute, timeout_seconds=60)
  if distributed.is_main():
    ...                                            # only process 0 writes

`initialize` reads the launch scripts' environment variables:

  HEAR_JAX_COORDINATOR=host:port  HEAR_JAX_NUM_PROCESSES=P
  HEAR_JAX_PROCESS_ID=i           (launch/local.sh sets all three)
  HEAR_JAX_DISTRIBUTED=auto       (TPU pods, SLURM, Open MPI: JAX finds the
                                   coordinator and the process ids itself)

With none of them set the run is one process and every function here is
trivial. A process that fails (`fail`) tells the others before it exits:
each prints one line naming it and why, and exits too, wherever it was
(even inside a collective with the failed process). A process that dies (killed, crashed, host lost) stops sending
heartbeats; JAX's coordination service then stops every other process with a
message naming it, within `heartbeat_seconds`. A process that is alive but
never arrives at a meeting point (stuck, or on another code path) makes the
others fail after `timeout_seconds` with a `DistributedError` naming the
meeting point, instead of hanging.

The meeting points use the coordination service (its barrier and key-value
store), not device collectives: they work before any device computation,
carry no arrays, and have a timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import socket
import sys
import threading
import time
from typing import Callable, ContextManager, Iterator, Mapping, TypeVar

import jax

ENV_COORDINATOR = "HEAR_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "HEAR_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "HEAR_JAX_PROCESS_ID"
ENV_DISTRIBUTED = "HEAR_JAX_DISTRIBUTED"

_ERROR_PREFIX = "error:"

T = TypeVar("T")


class DistributedError(RuntimeError):
  """Another process failed, or did not arrive at a meeting point in time."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to join the job; None fields are left to JAX's auto-detection."""

  coordinator: str | None
  num_processes: int | None
  process_id: int | None


def settings_from_env(env: Mapping[str, str]) -> Settings | None:
  """The launch scripts' variables as `Settings`; None for a one-process run.

  Raises:
    ValueError: a variable is malformed or only some of the explicit three
      are set (one line naming the variable).
  """
  explicit = {name: env.get(name, "").strip() for name in
              (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)}
  mode = env.get(ENV_DISTRIBUTED, "").strip()
  if mode not in ("", "auto"):
    raise ValueError(f"{ENV_DISTRIBUTED}={mode!r}: must be 'auto' or unset")
  if not any(explicit.values()):
    return Settings(None, None, None) if mode == "auto" else None
  missing = [name for name, value in explicit.items() if not value]
  if missing:
    raise ValueError(f"{', '.join(missing)}: not set, but"
                     f" {', '.join(n for n in explicit if n not in missing)}"
                     " is; a multi-process run needs all three")
  host, _, port = explicit[ENV_COORDINATOR].rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"{ENV_COORDINATOR}={explicit[ENV_COORDINATOR]!r}: must"
                     " be host:port")
  numbers = {}
  for name in (ENV_NUM_PROCESSES, ENV_PROCESS_ID):
    try:
      numbers[name] = int(explicit[name])
    except ValueError:
      raise ValueError(f"{name}={explicit[name]!r}: not an integer") from None
  count, index = numbers[ENV_NUM_PROCESSES], numbers[ENV_PROCESS_ID]
  if count < 1:
    raise ValueError(f"{ENV_NUM_PROCESSES}={count}: must be >= 1")
  if not 0 <= index < count:
    raise ValueError(f"{ENV_PROCESS_ID}={index}: must be in [0, {count})")
  return Settings(explicit[ENV_COORDINATOR], count, index)


def initialize(*, timeout_seconds: float, heartbeat_seconds: float,
               env: Mapping[str, str] | None = None) -> bool:
  """Joins the multi-process job the environment describes (before any JAX
  computation); returns whether there is one.

  `timeout_seconds` bounds the wait for the other processes to connect and,
  at exit, to finish; `heartbeat_seconds` is how soon a silent process is
  declared dead (which stops all the others).
  """
  settings = settings_from_env(os.environ if env is None else env)
  if settings is None:
    return False
  if timeout_seconds <= 0 or heartbeat_seconds <= 0:
    raise ValueError("distributed timeouts must be > 0 s, got"
                     f" {timeout_seconds:g} and {heartbeat_seconds:g}")
  # CPU processes exchange arrays through gloo (the default in current JAX;
  # set so an older default or a user's JAX_* setting cannot pick MPI). It
  # only concerns the CPU client, so it is harmless on TPU and GPU.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
        coordinator_address=settings.coordinator,
        num_processes=settings.num_processes,
        process_id=settings.process_id,
        initialization_timeout=max(1, int(timeout_seconds)),
        heartbeat_timeout_seconds=max(1, int(heartbeat_seconds)),
        shutdown_timeout_seconds=max(1, int(timeout_seconds)))
  except (jax.errors.JaxRuntimeError, RuntimeError, ValueError) as e:
    who = (f"process {settings.process_id}/{settings.num_processes}"
           if settings.process_id is not None else "this process")
    raise DistributedError(
        f"{who}: could not join the job (coordinator"
        f" {settings.coordinator or 'auto-detected'}) within"
        f" {timeout_seconds:g} s: {_first_line(e)}") from None
  logging.info("process %d/%d on %s: %d local of %d devices (%s)",
               jax.process_index(), jax.process_count(), socket.gethostname(),
               jax.local_device_count(), jax.device_count(),
               jax.devices()[0].platform)
  _start_failure_watch()
  return True


def leave(status: int) -> None:
  """Ends this process with `status` now. In a multi-process job a failed
  process must not wait in JAX's exit handshake for peers that wait for it
  at a meeting point: it exits at once (after `fail` has told them)."""
  if not _joined():
    sys.exit(status)
  _exit(status)


def _exit(status: int) -> None:
  sys.stdout.flush()
  sys.stderr.flush()
  logging.shutdown()
  os._exit(status)  # pylint: disable=protected-access


# How a failure reaches every process. The failed process writes one line
# under _FAILURE_KEY in the coordination service's key-value store; a thread
# in every process waits for that key, prints the line, acknowledges it and
# exits. The failed process waits (up to _ACK_SECONDS) for the
# acknowledgements before it exits, and process 0 always exits last: it
# hosts the coordination service, whose end makes every process still
# connected abort natively, with a stack dump instead of a line.
_FAILURE_KEY = "hear_jax/failure"
_ACK_KEY = "hear_jax/failure_seen/{}"
_POLL_SECONDS = 0.25
_ACK_SECONDS = 10.0
_leaving = threading.Event()  # this process is on its way out


def fail(message: str, status: int) -> None:
  """Reports `message` as this run's one error line and ends the process.

  In a multi-process job the other processes are told first: each prints
  `hear_jax: error: process i/n failed: <message>` and exits with 1. A
  process already leaving because another failed prints nothing more."""
  line = " ".join(message.split())
  if _joined() and _leaving.is_set():
    # Another process failed first; the watch thread is printing its line
    # and ends this process.
    threading.Event().wait()
  _leaving.set()
  print(f"hear_jax: error: {line}", file=sys.stderr, flush=True)
  if _joined() and process_count() > 1:
    _tell_the_others(line)
  leave(status)


def _tell_the_others(line: str) -> None:
  client = _client()
  try:
    client.key_value_set(_FAILURE_KEY, f"{_where()} failed: {line}")
  except jax.errors.JaxRuntimeError:
    pass  # another process failed at the same time and told everyone
  # This process knows of a failure too (its own, or the other's it raced):
  # whoever waits for acknowledgements must not wait for it. Process 0
  # still waits for everyone else's before it exits: its end ends the
  # coordination service under them.
  try:
    client.key_value_set(_ACK_KEY.format(jax.process_index()), "")
  except jax.errors.JaxRuntimeError:
    pass
  _wait_for_acknowledgements(client)


def _wait_for_acknowledgements(client) -> None:
  others = [i for i in range(jax.process_count())
            if i != jax.process_index()]
  deadline = time.monotonic() + _ACK_SECONDS
  while others and time.monotonic() < deadline:
    waiting = []
    for i in others:
      try:
        client.key_value_try_get(_ACK_KEY.format(i))
      except jax.errors.JaxRuntimeError:
        waiting.append(i)
    others = waiting
    time.sleep(0.02)
  if jax.process_index() == 0:
    time.sleep(2 * _POLL_SECONDS)  # the others' exits, after their acks


def _start_failure_watch() -> None:
  client = _client()

  def watch() -> None:
    while not _leaving.is_set():
      try:
        line = client.blocking_key_value_get(_FAILURE_KEY,
                                             int(_POLL_SECONDS * 1000))
      except jax.errors.JaxRuntimeError:
        # No failure yet, or the service is going away at a normal exit.
        _leaving.wait(_POLL_SECONDS / 5)
        continue
      if _leaving.is_set():
        return  # this process is the one that failed
      _leaving.set()
      print(f"hear_jax: error: {line}", file=sys.stderr, flush=True)
      try:
        client.key_value_set(_ACK_KEY.format(jax.process_index()), "")
      except jax.errors.JaxRuntimeError:
        pass
      if jax.process_index() == 0:
        _wait_for_acknowledgements(client)
      _exit(1)

  threading.Thread(target=watch, name="hear_jax failure watch",
                   daemon=True).start()
  # A normal exit stops the watch before JAX's own exit handler shuts the
  # client down (atexit runs handlers last-registered first).
  import atexit  # pylint: disable=g-import-not-at-top
  atexit.register(_leaving.set)


def _joined() -> bool:
  """Whether this process is part of a multi-process job (by `initialize`
  or by its caller's own `jax.distributed.initialize`). Asked without
  starting JAX's backends, so a one-process run that stops early (a busy
  workdir, a bad config) never initialises them."""
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  return jax_distributed.global_state.client is not None


def process_index() -> int:
  return jax.process_index() if _joined() else 0


def process_count() -> int:
  return jax.process_count() if _joined() else 1


def is_main() -> bool:
  """Whether this is process 0, the one that writes results and reports."""
  return process_index() == 0


def share(n_items: int, index: int, count: int) -> range:
  """Process `index`'s contiguous part of `n_items` items out of `count`
  processes: sizes differ by at most one and the parts tile [0, n_items)."""
  if count < 1 or not 0 <= index < count or n_items < 0:
    raise ValueError(f"share: process {index} of {count}, {n_items} items")
  return range(n_items * index // count, n_items * (index + 1) // count)


class _Meetings:
  """Numbers the meeting points: every process passes them in the same order,
  so the n-th one has the same id everywhere, and a process on another code
  path shows up as a timeout naming the point, not as a silent mismatch."""

  def __init__(self):
    self.count = 0

  def next_id(self, name: str) -> str:
    self.count += 1
    return f"hear_jax/{self.count}/{name}"


_MEETINGS = _Meetings()


def _client():
  # The coordination service's client; jax.distributed keeps it in its
  # global state (there is no public accessor in JAX 0.10).
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  client = jax_distributed.global_state.client
  if client is None:
    raise DistributedError("jax.distributed is not initialised")
  return client


def _where() -> str:
  return f"process {jax.process_index()}/{jax.process_count()}"


def _first_line(error: Exception) -> str:
  return " ".join(str(error).split("\n")[0].split())[:300]


def _raise_dead(error: Exception, name: str) -> None:
  """A wait that failed because a process stopped sending heartbeats: say
  which one died, rather than blaming the timeout."""
  text = str(error)
  if "heartbeat" not in text and "UNAVAILABLE" not in text:
    return
  dead = sorted(set(re.findall(r"[Tt]ask (\d+) heartbeat timeout", text)))
  who = (f"process {', '.join(dead)}" if dead else
         "process 0 (the coordinator)" if "coordination service" in text
         else "another process")
  raise DistributedError(
      f"{_where()}: {who} stopped answering (killed, crashed or its host"
      f" lost; no heartbeat for config.distributed_heartbeat_seconds) while"
      f" the others waited at {name!r}; see its log ({_first_line(error)})"
  ) from None


def barrier(name: str, *, timeout_seconds: float) -> None:
  """Waits until every process has arrived at `name` (no-op for one).

  Raises:
    DistributedError: not every process arrived within `timeout_seconds`.
  """
  if process_count() == 1:
    return
  meeting = _MEETINGS.next_id(name)
  try:
    _client().wait_at_barrier(meeting, int(timeout_seconds * 1000))
  except jax.errors.JaxRuntimeError as e:
    _raise_dead(e, name)
    raise DistributedError(
        f"{_where()}: the other processes did not all reach {name!r} within"
        f" {timeout_seconds:g} s (config.distributed_timeout_seconds); one of"
        f" them failed or is stuck, see its log ({_first_line(e)})") from None


def from_main(name: str, compute: Callable[[], str], *,
              timeout_seconds: float) -> str:
  """Process 0's `compute()` on every process: process 0 computes it, the
  others receive it. If process 0's `compute` raises, every process raises
  (process 0 its own exception, the others a `DistributedError` quoting it),
  so one failure stops the job at once instead of at a timeout."""
  if process_count() == 1:
    return compute()
  key = _MEETINGS.next_id(name)
  client = _client()
  if is_main():
    try:
      value = compute()
    except BaseException as e:
      client.key_value_set(key, f"{_ERROR_PREFIX}{type(e).__name__}: {e}")
      raise
    client.key_value_set(key, "ok:" + value)
    return value
  try:
    value = client.blocking_key_value_get(key, int(timeout_seconds * 1000))
  except jax.errors.JaxRuntimeError as e:
    _raise_dead(e, name)
    raise DistributedError(
        f"{_where()}: no word from process 0 about {name!r} within"
        f" {timeout_seconds:g} s (config.distributed_timeout_seconds);"
        f" it failed or is stuck, see its log ({_first_line(e)})") from None
  if value.startswith(_ERROR_PREFIX):
    raise DistributedError(f"{_where()}: process 0 failed at {name!r}:"
                           f" {value[len(_ERROR_PREFIX):].strip()}")
  return value[len("ok:"):]


def main_first(name: str, fn: Callable[[], T], *,
               timeout_seconds: float) -> T:
  """`fn()` on process 0, then on the others once it succeeded (e.g.
  preparing a dataset on a shared disk: one writer, then readers). A
  failure on process 0 stops the others too (`from_main`)."""
  if process_count() == 1:
    return fn()
  result = []
  def on_main() -> str:
    result.append(fn())
    return ""
  from_main(name, on_main, timeout_seconds=timeout_seconds)
  return result[0] if is_main() else fn()


@contextlib.contextmanager
def held_by_main(name: str, make_context: Callable[[], ContextManager[object]],
                 *, timeout_seconds: float) -> Iterator[None]:
  """Process 0 holds `make_context()` (e.g. the workdir lock) for the block;
  the others enter the block once it holds it, or raise if it could not."""
  if process_count() == 1:
    with make_context():
      yield
    return
  with contextlib.ExitStack() as stack:
    def enter() -> str:
      stack.enter_context(make_context())
      return ""
    from_main(name, enter if is_main() else lambda: "",
              timeout_seconds=timeout_seconds)
    yield
