"""Writes hearpreprocess task directories for tests (the real on-disk format)."""

from __future__ import annotations

import json
import pathlib
import tarfile

import soundfile as sf


def write_task(root, name, meta, vocabulary, splits, rate=16000):
  """splits: {split: {wav name: (labels or events, audio)}}.

  `audio` is int16 PCM, or a function of the rate giving it. `rate` may be a
  sequence of rates: one `<rate>/` folder each, as hearpreprocess writes a
  task at several rates (with a function, each rate gets its own audio).
  """
  rates = [rate] if isinstance(rate, int) else list(rate)
  task = pathlib.Path(root) / name
  task.mkdir(parents=True)
  (task / "task_metadata.json").write_text(json.dumps(meta, indent=1))
  (task / "labelvocabulary.csv").write_text(
      "idx,label\n" + "".join(f"{i},{l}\n" for i, l in enumerate(vocabulary)))
  for split, entries in splits.items():
    (task / f"{split}.json").write_text(
        json.dumps({n: v for n, (v, _) in entries.items()}))
    for r in rates:
      audio_dir = task / str(r) / split
      audio_dir.mkdir(parents=True)
      for n, (_, audio) in entries.items():
        sf.write(audio_dir / n, audio(r) if callable(audio) else audio, r,
                 subtype="PCM_16")
  return task


def write_rate_tarballs(task, out_dir, prefix="hear2021-"):
  """One tarball per `<rate>/` folder of `task`, named as the HEAR 2021
  release names them (`<prefix><task dir>-<rate>.tar.gz`, members under
  `<task dir>/`); returns their paths."""
  task = pathlib.Path(task)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = []
  for rate_dir in sorted(p for p in task.iterdir() if p.name.isdigit()):
    path = out_dir / f"{prefix}{task.name}-{rate_dir.name}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
      for member in sorted(task.iterdir()):
        if member.is_file():
          tar.add(member, f"{task.name}/{member.name}")
      tar.add(rate_dir, f"{task.name}/{rate_dir.name}")
    paths.append(path)
  return paths
