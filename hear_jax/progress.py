"""Progress with rate and ETA, one line per finished stage, peak memory.

  with Progress("embed melstats / esc50 / fold00", total=7200.0,
                unit="s audio") as bar:
    for seconds in batches:
      bar.update(seconds)

On a terminal the bar (`[#####.....]` with counts, rate and ETA) is one
line redrawn in place (carriage return) at most ten times a second and
erased when it closes. Written to a file or a pipe it prints nothing for
short stages and one full line every `line_every_s` seconds (30 by default)
for long ones, so logs of long runs stay readable:

  embed melstats / esc50 / fold00: 3012/7200 s audio (42%), 88.1 s audio/s, ETA 0:47

Stages and the end-of-run summary:

  times = RunTimes()
  with times.stage("embed", "esc50", "melstats") as stage:
    stage.detail = "7200 s audio in 3 splits"
  # -> "hear_jax: embed  melstats / esc50: 7200 s audio in 3 splits (81.7 s)"
  times.print_summary()
  # -> "hear_jax: summary esc50: data 1.2 s | melstats embed 81.7 s, probe
  #     40.1 s (12 compiles 9.3 s, 2 cached) | peak memory 1.9 GB"

Peak memory is the process's resident-set high-water mark
(`resource.getrusage`'s ru_maxrss). On Linux a stage that asks for it
(`reset_peak=True`) resets the mark first (/proc/self/clear_refs), so each
model x task gets its own peak; elsewhere it is the process's peak so far.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sized
from typing import IO, Any

from hear_jax import compile_cache

PREFIX = "hear_jax: "


def format_duration(seconds: float) -> str:
  """ETA style: 0:07, 3:12, 1:02:03; '?' when unknown."""
  if not math.isfinite(seconds) or seconds < 0:
    return "?"
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}:{minutes:02d}:{secs:02d}"
  return f"{minutes}:{secs:02d}"


def format_bytes(n: float | None) -> str:
  if n is None:
    return "?"
  for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
    if n >= size:
      return f"{n / size:.1f} {unit}"
  return f"{int(n)} B"


def _number(x: float) -> str:
  """Counts print as integers, fractional amounts with one decimal."""
  return f"{x:.0f}" if abs(x - round(x)) < 1e-9 or abs(x) >= 1000 else (
      f"{x:.1f}")


def is_terminal(stream: IO[str]) -> bool:
  isatty = getattr(stream, "isatty", None)
  return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


class Progress:
  """A progress bar on a terminal; quiet periodic lines anywhere else.

  `update(n)` adds `n` units of work done; `total` may be raised later with
  `add_total` (work discovered on the way). Done never counts past total.
  """

  def __init__(self, label: str, total: float, unit: str, *,
               stream: IO[str] | None = None,
               interactive: bool | None = None,
               line_every_s: float = 30.0,
               redraw_every_s: float = 0.1,
               clock: Callable[[], float] = time.monotonic):
    if total < 0:
      raise ValueError(f"Progress {label!r}: total must be >= 0, got {total}")
    self.label, self.total, self.unit = label, float(total), unit
    self.done = 0.0
    self._stream = stream if stream is not None else sys.stderr
    self._interactive = (is_terminal(self._stream) if interactive is None
                         else interactive)
    self._line_every = line_every_s
    self._redraw_every = redraw_every_s
    self._clock = clock
    self._start = clock()
    self._last_output = self._start
    self._drawn = 0  # characters of the bar now on screen (terminal mode)
    self._closed = False

  def add_total(self, n: float) -> None:
    self.total += n

  def update(self, n: float = 1.0) -> None:
    self.done = min(self.total, self.done + n)
    now = self._clock()
    every = self._redraw_every if self._interactive else self._line_every
    if now - self._last_output >= every:
      self._last_output = now
      self._write(self.text(now, bar_width=20 if self._interactive else 0))

  def rate(self, now: float | None = None) -> float:
    elapsed = (self._clock() if now is None else now) - self._start
    return self.done / elapsed if elapsed > 0 else math.nan

  def eta(self, now: float | None = None) -> float:
    """Seconds left at the mean rate so far (NaN before any work)."""
    rate = self.rate(now)
    if not rate > 0:
      return math.nan
    return (self.total - self.done) / rate

  def text(self, now: float | None = None, *, bar_width: int = 0) -> str:
    """The status line; with `bar_width`, a drawn bar after the label."""
    now = self._clock() if now is None else now
    fraction = self.done / self.total if self.total else 1.0
    rate = self.rate(now)
    rate_text = f"{rate:.1f} {self.unit}/s" if math.isfinite(rate) else "?"
    filled = int(round(fraction * bar_width))
    bar = f" [{'#' * filled}{'.' * (bar_width - filled)}]" if bar_width else ""
    return (f"{self.label}:{bar} {_number(self.done)}/{_number(self.total)} "
            f"{self.unit} ({100 * fraction:.0f}%), {rate_text}, "
            f"ETA {format_duration(self.eta(now))}")

  def _write(self, text: str) -> None:
    if not self._interactive:
      self._stream.write(text + "\n")
    else:
      width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
      text = text[:width]
      # Pad over the previous, possibly longer, text instead of relying on
      # terminal escape codes.
      self._stream.write("\r" + text.ljust(self._drawn))
      self._drawn = len(text)
    self._stream.flush()

  def close(self) -> None:
    """Erases the bar (terminal); prints nothing in line mode."""
    if self._closed:
      return
    self._closed = True
    if self._interactive and self._drawn:
      self._stream.write("\r" + " " * self._drawn + "\r")
      self._stream.flush()

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def peak_memory_bytes() -> int:
  """The process's peak resident memory (ru_maxrss: kB on Linux, B on mac)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_memory() -> bool:
  """Restarts the peak-memory mark at the current size (Linux >= 4.0).

  Returns False where the mark cannot be reset, so the caller knows that
  `peak_memory_bytes` then still covers everything the process did so far.
  """
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")  # 5: reset the resident-set high-water mark
    return True
  except OSError:
    return False


def device_peak_memory_bytes() -> int | None:
  """Peak accelerator memory of the first local device, where JAX reports
  it (GPU/TPU); None on CPU or when JAX is not in use."""
  jax = sys.modules.get("jax")
  if jax is None:
    return None
  try:
    stats = jax.local_devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    # Backends without memory statistics raise various errors; the report
    # then just has no device number.
    return None
  return int(stats["peak_bytes_in_use"]) if stats and (
      "peak_bytes_in_use" in stats) else None


def examples_detail(sources: Mapping[str, Sized]) -> str:
  """The data stage's line: "144 examples in 3 splits"."""
  n = sum(len(s) for s in sources.values())
  return f"{n} examples in {len(sources)} splits"


def embed_detail(splits: Mapping[str, Any], stage: Stage) -> str:
  """The embed stage's line from `SplitEmbeddings` and the stage's counts:
  "144 clips, 72 s audio, 90x real time" or "..., cached"."""
  clips = sum(len(s.ids) for s in splits.values())
  audio = sum(s.audio_seconds for s in splits.values())
  text = f"{clips} clips, {_number(audio)} s audio"
  embedded, seconds = (stage.counts.get("embedded_audio_s", 0.0),
                       stage.counts.get("embed_s", 0.0))
  if not embedded:
    return text + ", cached"
  if embedded < 0.999 * audio:
    text += f" ({_number(embedded)} s embedded, the rest cached)"
  return text + (f", {embedded / seconds:.0f}x real time" if seconds > 0
                 else "")


@dataclasses.dataclass
class Stage:
  """One finished (or running) stage; `detail` and `counts` are filled in by
  the code inside the `with` block."""

  name: str
  task: str
  model: str | None = None
  detail: str = ""
  seconds: float = 0.0
  peak_memory: int | None = None  # bytes, when the stage measured it
  peak_is_own: bool = False  # True when the mark was reset at its start
  counts: dict[str, float] = dataclasses.field(default_factory=dict)
  # XLA programs compiled (or loaded from the persistent cache) during it.
  compiled: compile_cache.CompileTotals | None = None

  def count(self, name: str, value: float) -> None:
    self.counts[name] = self.counts.get(name, 0.0) + value

  @property
  def subject(self) -> str:
    return f"{self.model} / {self.task}" if self.model else self.task

  def line(self) -> str:
    detail = f"{self.detail} " if self.detail else ""
    return f"{PREFIX}{self.name:<6} {self.subject}: {detail}({self.seconds:.1f} s)"


def _compiled_text(compiled: compile_cache.CompileTotals | None) -> str:
  """' (3 compiles 4.1 s, 9 cached)' for a stage that compiled anything."""
  if compiled is None or not compiled.programs:
    return ""
  text = f"{compiled.compiles} compiles {compiled.compile_seconds:.1f} s"
  if compiled.cache_hits:
    text += f", {compiled.cache_hits} cached"
  return f" ({text})"


class RunTimes:
  """Times every stage of a run, prints a line as each one finishes and a
  one-line summary per task at the end."""

  def __init__(self, stream: IO[str] | None = None):
    self._stream = stream
    self.stages: list[Stage] = []

  @property
  def stream(self) -> IO[str]:
    return self._stream if self._stream is not None else sys.stderr

  @contextlib.contextmanager
  def stage(self, name: str, task: str, model: str | None = None, *,
            reset_peak: bool = False, track: bool = True) -> Iterator[Stage]:
    """Times the block; prints its line when it finishes without error.

    `stage.task` may be changed inside the block (the data stage learns the
    task's name only after building it). `track=False`: the line only, not
    part of the summary (e.g. the report at the end).
    """
    record = Stage(name, task, model)
    if reset_peak:
      record.peak_is_own = reset_peak_memory()
    start = time.perf_counter()
    compiled_before = compile_cache.totals()
    yield record
    record.seconds = time.perf_counter() - start
    record.compiled = compile_cache.totals() - compiled_before
    record.peak_memory = peak_memory_bytes()
    if track:
      self.stages.append(record)
    print(record.line(), file=self.stream, flush=True)

  def tasks(self) -> list[str]:
    return list(dict.fromkeys(s.task for s in self.stages))

  def peak_memory(self, task: str, model: str | None = None) -> int | None:
    """The task's peak (all its stages), or one model's on it."""
    peaks = [s.peak_memory for s in self.stages if s.task == task
             and (model is None or s.model == model)
             and s.peak_memory is not None]
    return max(peaks) if peaks else None

  def summary_line(self, task: str) -> str:
    parts, models = [], {}
    for s in self.stages:
      if s.task != task:
        continue
      text = f"{s.name} {s.seconds:.1f} s" + _compiled_text(s.compiled)
      if s.model is None:
        parts.append(text)
      else:
        models.setdefault(s.model, []).append(text)
    for model, stages in models.items():
      parts.append(f"{model} {', '.join(stages)}")
    parts.append(f"peak memory {format_bytes(self.peak_memory(task))}")
    return f"{PREFIX}summary {task}: " + " | ".join(parts)

  def print_summary(self) -> None:
    for task in self.tasks():
      print(self.summary_line(task), file=self.stream, flush=True)
