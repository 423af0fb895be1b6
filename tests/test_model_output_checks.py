"""A model that breaks its contract is stopped, with a message naming it.

Each case is a small fake EmbeddingModel (numpy, not jitted) whose output is
wrong in one way; `embed_split` must raise a one-line ValueError that names
the model, the task, the batch and the problem.
"""

from __future__ import annotations

import numpy as np
import pytest

from hear_jax.embed import embed_split
from hear_jax.data.task import SplitAudio, TaskInfo
from hear_jax.models.interface import EmbeddingModel

RATE, D = 16000, 4
HOP_MS = 100.0
# Two lengths, so there are two batches: batch 0 (0.5 s clips) and batch 1
# (1 s clips); the faults below are injected into batch 1 only.
LENGTHS = (8000, 8000, 16000)


def _task(kind: str) -> TaskInfo:
  return TaskInfo(name=f"toy_{kind}", metadata={"embedding_type": kind},
                  label_vocabulary=("a",), sample_rate=RATE)


def _split() -> SplitAudio:
  ids = tuple(f"clip{i}.wav" for i in range(len(LENGTHS)))
  audio = tuple(np.full(n, 1000, np.int16) for n in LENGTHS)
  return SplitAudio(ids=ids, audio=audio, labels=(("a",),) * len(ids),
                    events=((),) * len(ids))


def _good_timestamps(audio):
  b, t = audio.shape
  frames = int(t * 1000 / RATE // HOP_MS) + 1  # 0, 100, ..., length
  times = np.arange(frames) * HOP_MS
  emb = np.ones((b, frames, D), np.float32)
  return emb, np.broadcast_to(times, (b, frames)).astype(np.float32)


def _good_scene(audio):
  return np.ones((audio.shape[0], D), np.float32)


def _model(name: str, timestamp_fn=_good_timestamps, scene_fn=_good_scene,
           size: int = D) -> EmbeddingModel:
  return EmbeddingModel(name=name, sample_rate=RATE, scene_embedding_size=size,
                        timestamp_embedding_size=size, params={},
                        timestamp_embeddings=lambda p, a: timestamp_fn(a),
                        scene_embeddings=lambda p, a: scene_fn(a),
                        jittable=False)


def _in_batch1(fault):
  """`fault(emb or (emb, ts))` applied to the 1 s clips' batch only."""
  def wrap(good):
    def fn(audio):
      out = good(audio)
      return fault(out) if audio.shape[1] == LENGTHS[-1] else out
    return fn
  return wrap


def _embed(model, kind):
  # 16000 samples a batch: the two 0.5 s clips are batch 0, the 1 s clip batch 1.
  return embed_split(model, _task(kind), _split(), batch_samples=16000)


def _assert_stopped(model, kind, *fragments):
  with pytest.raises(ValueError) as e:
    _embed(model, kind)
  message = str(e.value)
  assert "\n" not in message, message
  for fragment in (f"model {model.name!r}", f"task 'toy_{kind}'", "batch 1",
                   *fragments):
    assert fragment in message, message


def test_well_behaved_models_pass():
  scene = _embed(_model("good"), "scene")
  assert scene.x.shape == (3, D)
  event = _embed(_model("good"), "event")
  # 6 frames for each 0.5 s clip, 11 for the 1 s clip.
  assert event.x.shape == (6 + 6 + 11, D)
  assert event.timestamps_ms[-1] == 1000.0


def _with_nan(x):
  x = np.array(x)
  x.flat[0] = np.nan
  return x


SCENE_FAULTS = {
    "nan": (lambda e: _with_nan(e), "contain NaN or Inf (clip 'clip2.wav')"),
    "inf": (lambda e: e * np.inf, "contain NaN or Inf"),
    "float64": (lambda e: e.astype(np.float64), "are float64, not float32"),
    "size": (lambda e: e[:, :2], "have size 2, but the model declares 4"),
    "rank": (lambda e: e[:, None, :], "have shape (1, 1, 4), expected [B, D]"),
    "rows": (lambda e: np.concatenate([e, e]),
             "have 2 rows for a batch of 1 clips"),
}


@pytest.mark.parametrize("case", sorted(SCENE_FAULTS))
def test_bad_scene_output_is_stopped(case):
  fault, problem = SCENE_FAULTS[case]
  model = _model(f"bad_{case}", scene_fn=_in_batch1(fault)(_good_scene))
  _assert_stopped(model, "scene", "scene embeddings", problem)


def _ts(fn):
  return lambda out: (out[0], fn(out[1]))


def _emb(fn):
  return lambda out: (fn(out[0]), out[1])


def _swap(t):
  t = np.array(t)
  t[:, [3, 4]] = t[:, [4, 3]]
  return t


EVENT_FAULTS = {
    "nan embeddings": (_emb(_with_nan), "timestamp embeddings contain NaN"),
    "float16": (_emb(lambda e: e.astype(np.float16)),
                "are float16, not float32"),
    "size": (_emb(lambda e: e[..., :3]), "have size 3, but the model declares"),
    "rank": (_emb(lambda e: e[:, 0]), "expected [B, F, D]"),
    "batch dim": (_emb(lambda e: e[:0]), "have 0 rows for a batch of 1"),
    "no frames": (lambda out: (out[0][:, :0], out[1][:, :0]),
                  "no frames (F = 0) for a 1000 ms clip"),
    "timestamp shape": (_ts(lambda t: t[:, :-1]),
                        "timestamps have shape (1, 10), expected [B, F]"),
    "timestamp rank": (_ts(lambda t: t[0]), "timestamps have shape (11,)"),
    "timestamps int": (_ts(lambda t: t.astype(np.int32)),
                       "timestamps are int32, not float"),
    "timestamps nan": (_ts(_with_nan),
                       "timestamps of clip 'clip2.wav' contain NaN"),
    "not increasing": (_ts(_swap), "timestamps of clip 'clip2.wav' do not"
                       " increase (400 ms then 300 ms at frame 4)"),
    "repeated": (_ts(lambda t: np.minimum(t, 500.0)), "do not increase"),
    "past the clip": (_ts(lambda t: t + 10.0),
                      "run from 10 to 1010 ms, outside the 1000 ms clip"),
    "negative": (_ts(lambda t: t - 50.0), "run from -50 to 950 ms, outside"),
    "seconds not ms": (_ts(lambda t: t * 1000.0), "outside the 1000 ms clip"),
}


@pytest.mark.parametrize("case", sorted(EVENT_FAULTS))
def test_bad_timestamp_output_is_stopped(case):
  fault, problem = EVENT_FAULTS[case]
  model = _model(f"bad_{case.replace(' ', '_')}",
                 timestamp_fn=_in_batch1(fault)(_good_timestamps))
  _assert_stopped(model, "event", problem)


def test_declared_size_is_checked_against_every_batch():
  # The model declares 8 but always returns 4: caught at the first batch.
  model = _model("undersized", size=8)
  with pytest.raises(ValueError, match=r"batch 0: scene embeddings have size"
                     r" 4, but the model declares 8"):
    _embed(model, "scene")


def test_padding_rows_are_not_judged():
  # Batches are padded with silence up to the batch size; a model may do
  # anything there (e.g. log(0)), as those rows are dropped.
  def nan_on_silence(audio):
    out = _good_scene(audio)
    out[~np.any(audio != 0, axis=1)] = np.nan
    return out
  split = embed_split(_model("log_of_silence", scene_fn=nan_on_silence),
                      _task("scene"), _split(), batch_samples=48000)
  assert np.all(np.isfinite(split.x))
