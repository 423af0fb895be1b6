"""Writes hearpreprocess task directories for tests (the real on-disk format)."""

from __future__ import annotations

import json
import pathlib

import soundfile as sf


def write_task(root, name, meta, vocabulary, splits, rate=16000):
  """splits: {split: {wav name: (labels or events, int16 audio)}}."""
  task = pathlib.Path(root) / name
  task.mkdir(parents=True)
  (task / "task_metadata.json").write_text(json.dumps(meta, indent=1))
  (task / "labelvocabulary.csv").write_text(
      "idx,label\n" + "".join(f"{i},{l}\n" for i, l in enumerate(vocabulary)))
  for split, entries in splits.items():
    (task / f"{split}.json").write_text(
        json.dumps({n: v for n, (v, _) in entries.items()}))
    audio_dir = task / str(rate) / split
    audio_dir.mkdir(parents=True)
    for n, (_, audio) in entries.items():
      sf.write(audio_dir / n, audio, rate, subtype="PCM_16")
  return task
