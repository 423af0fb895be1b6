"""TensorBoard event files without TensorFlow: scalars only.

  with EventFileWriter(log_dir) as events:
    events.add_scalar("loss/train", 0.71, step=3)

TensorBoard reads `events.out.tfevents.*` files: TFRecord framing (length,
masked CRC-32C of the length, payload, masked CRC-32C of the payload) around
serialized `tensorflow.Event` protocol buffers. A scalar needs four fields
(Event.wall_time/step/summary, Summary.Value.tag/simple_value), so they are
encoded here by hand rather than pulling in TensorFlow, `tensorboard`
(grpcio, werkzeug, ...) or tensorboardX (which imports torch whenever it is
installed, +1.3 s and a few hundred MB of resident memory that would then
show up in the compute report's peak memory).

Field numbers are those of tensorboard/compat/proto/event.proto and
summary.proto; the file name must contain "tfevents" for TensorBoard to
find it.
"""

from __future__ import annotations

import os
import socket
import struct
import time

_CRC32C_POLY = 0x82F63B78  # Castagnoli, bit-reversed


def _crc32c_table() -> tuple[int, ...]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
    table.append(crc)
  return tuple(table)


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masking (rotate right 15, add a constant)."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(payload: bytes) -> bytes:
  length = struct.pack("<Q", len(payload))
  return (length + struct.pack("<I", masked_crc32c(length)) + payload
          + struct.pack("<I", masked_crc32c(payload)))


def _varint(value: int) -> bytes:
  if value < 0:
    value += 1 << 64  # int64 two's complement, as protobuf encodes it
  out = bytearray()
  while True:
    bits = value & 0x7F
    value >>= 7
    if value:
      out.append(bits | 0x80)
    else:
      out.append(bits)
      return bytes(out)


def _length_delimited(field: int, data: bytes) -> bytes:
  return _varint(field << 3 | 2) + _varint(len(data)) + data


def event_bytes(wall_time: float, *, step: int = 0,
                file_version: str | None = None,
                scalars: dict[str, float] | None = None) -> bytes:
  """One serialized `Event` (with a `Summary` of simple values)."""
  out = _varint(1 << 3 | 1) + struct.pack("<d", wall_time)  # wall_time
  if step:
    out += _varint(2 << 3 | 0) + _varint(int(step))  # step
  if file_version is not None:
    out += _length_delimited(3, file_version.encode())  # file_version
  if scalars:
    summary = b"".join(
        _length_delimited(1, _length_delimited(1, tag.encode())  # Value.tag
                          + _varint(2 << 3 | 5)  # Value.simple_value, float
                          + struct.pack("<f", float(value)))
        for tag, value in scalars.items())
    out += _length_delimited(5, summary)  # summary
  return out


class EventFileWriter:
  """Appends scalar events to a new events.out.tfevents.* file."""

  def __init__(self, log_dir: str, *, filename_suffix: str = ".hear_jax"):
    os.makedirs(log_dir, exist_ok=True)
    name = (f"events.out.tfevents.{int(time.time())}."
            f"{socket.gethostname()}.{os.getpid()}{filename_suffix}")
    self.path = os.path.join(log_dir, name)
    self._file = open(self.path, "wb")
    self._file.write(tfrecord(event_bytes(time.time(),
                                          file_version="brain.Event:2")))

  def add_scalars(self, scalars: dict[str, float], step: int) -> None:
    self._file.write(tfrecord(event_bytes(time.time(), step=step,
                                          scalars=scalars)))

  def add_scalar(self, tag: str, value: float, step: int) -> None:
    self.add_scalars({tag: value}, step)

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()

  def __enter__(self) -> EventFileWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
