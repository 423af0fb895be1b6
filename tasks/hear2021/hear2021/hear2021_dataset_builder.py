"""TFDS builder for the HEAR 2021 tasks: one config per task x mode x rate.

  builder = Builder(config="esc50-v2.0.0-full-48000", data_dir="tfds",
                    source="hear2021-esc50-v2.0.0-full-48000.tar.gz")
  builder.download_and_prepare()
  # or TFDS's manual-download way: the tarball or unpacked task directory
  # in the manual dir (default <data_dir>/downloads/manual):
  builder = Builder(config="esc50-v2.0.0-full-48000", data_dir="tfds")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir="~/hear"))
  # or, picking the config from the data's rate:
  builder = prepare("esc50-v2.0.0-full", "hear2021-esc50-...tar.gz", "tfds")

Configs come from `hear_jax.data.hear2021_catalogue` (the 19 HEAR 2021 tasks,
the development tasks, their other modes) at every HEAR rate, named
`<task dir>-<rate>`. Before anything is extracted, the task's metadata is
checked against its catalogue entry (embedding and prediction type, split
mode and folds, clip duration, metrics, label count): a tarball of another
task, mode or release stops with one line naming the task and the field.
Then every split json and wav header is checked (`hearpreprocess.check_task`)
and the clips are stored as `hear_jax.data.hear_features` examples: int16
PCM as in the wavs, so the dataset is no larger than the source.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import tempfile
from typing import Any

import tensorflow_datasets as tfds

from hear_jax.data import hear2021_catalogue as catalogue
from hear_jax.data import hear_features
from hear_jax.data import hearpreprocess

_TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2")


@dataclasses.dataclass(eq=False)
class HearTaskConfig(tfds.core.BuilderConfig):
  """A catalogue task (hearpreprocess task directory name) at one rate."""

  task_dir: str = ""
  sample_rate: int = 0


def _configs() -> list[HearTaskConfig]:
  return [
      HearTaskConfig(
          name=e.config_name(rate), task_dir=e.task_dir, sample_rate=rate,
          description=f"{e.title} ({e.mode} mode) at {rate} Hz")
      for e in catalogue.TASKS.values() for rate in catalogue.SAMPLE_RATES
  ]


def find_source(manual_dir: str | os.PathLike, task_dir: str,
                sample_rate: int) -> pathlib.Path:
  """The task directory or tarball for `task_dir` at `sample_rate` inside
  `manual_dir`: `<task dir>/` (also one or two levels down, as in an
  unpacked `hear-2021.0.6/tasks/` tree) holding `<rate>/`, else a tarball
  named `*<task dir>-<rate>.tar.gz` (Zenodo's `hear2021-...`, hearpreprocess's
  `hear-<version>-...`)."""
  root = pathlib.Path(manual_dir).expanduser()
  for pattern in (task_dir, f"*/{task_dir}", f"*/*/{task_dir}"):
    for candidate in sorted(root.glob(pattern)):
      if (candidate / str(sample_rate)).is_dir():
        return candidate
  tarballs = sorted(p for suffix in _TARBALL_SUFFIXES
                    for p in root.glob(f"*{task_dir}-{sample_rate}{suffix}"))
  if tarballs:
    if len(tarballs) > 1:
      logging.info("%s: several tarballs for %s; using %s", root, task_dir,
                   tarballs[0].name)
    return tarballs[0]
  entry = catalogue.entry(task_dir)
  raise ValueError(
      f"{root}: no hearpreprocess data for {task_dir} at {sample_rate} Hz —"
      f" put {entry.tarball_name(sample_rate)} or the unpacked {task_dir}/"
      f" there ({catalogue.download_hint(task_dir)}), or pass source=")


class Builder(tfds.core.GeneratorBasedBuilder):
  """The HEAR 2021 tasks from hearpreprocess output, checked against the
  catalogue (config = `<task dir>-<rate>`)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "HEAR 2021 catalogue, int16 audio as stored."}
  BUILDER_CONFIGS = _configs()
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the task's hearpreprocess tarball, e.g.
  hear2021-esc50-v2.0.0-full-48000.tar.gz from the HEAR 2021 release
  (https://zenodo.org/record/5887964; other rates from the hear2021-archive
  buckets or built with hearpreprocess), and put it, or the unpacked task
  directory (esc50-v2.0.0-full/ holding task_metadata.json and 48000/), in
  the manual directory. Or pass Builder(source=<tarball or directory>).
  """

  def __init__(self, *, source: str | os.PathLike | None = None,
               described: hearpreprocess.HearTask | None = None,
               file_format: str | None = "array_record", **kwargs: Any):
    """`source`: the task dir or tarball (None: look in the manual dir).

    `described`: `hearpreprocess.describe_task(source)` if the caller has
    already read it (saves another pass over a large tarball).
    `file_format`: array_record (the default) reads without TensorFlow.
    """
    self._source = None if source is None else os.fspath(source)
    self._described = described
    super().__init__(file_format=file_format, **kwargs)
    # DatasetBuilder pickles itself by re-running __init__ on this dict.
    self._original_state.update(source=self._source)

  def _info(self) -> tfds.core.DatasetInfo:
    # Filled from task_metadata.json when the dataset is prepared, restored
    # from the prepared directory's metadata.json when it is read.
    return self.dataset_info_from_configs(
        features=hear_features.task_features(),
        metadata=tfds.core.MetadataDict(),
        homepage="https://hearbenchmark.com",
    )

  def _download_and_prepare(self, dl_manager, download_config=None) -> None:
    config = self.builder_config
    source = self._source
    if source is None:
      try:
        manual_dir = dl_manager.manual_dir
      except AssertionError:  # TFDS: manual dir missing or empty
        manual_dir = dl_manager._manual_dir  # pylint: disable=protected-access
      source = os.fspath(find_source(manual_dir, config.task_dir,
                                     config.sample_rate))
    task = self._described or hearpreprocess.describe_task(
        source, config.sample_rate)
    if task.sample_rate != config.sample_rate:
      raise ValueError(f"{task.source}: audio is at {task.sample_rate} Hz,"
                       f" config {config.name} is at {config.sample_rate} Hz")
    catalogue.check_task(task, config.task_dir)
    with contextlib.ExitStack() as stack:
      if task.path is None:
        # A tarball: extract next to the dataset (same disk), drop afterwards.
        tmp = stack.enter_context(tempfile.TemporaryDirectory(
            prefix="hear2021-extract-", dir=self.data_dir_root))
        task_dir = hearpreprocess.extract_task_tarball(source, tmp)
        extracted = hearpreprocess.open_task(task_dir, task.sample_rate,
                                             source=task.source)
        if extracted.metadata != task.metadata:
          raise ValueError(f"{source}: changed while being read")
        task = extracted
      self._clips = hearpreprocess.check_task(task)
      self._task = task
      self.info.metadata.update(hear_features.task_metadata(
          task.metadata, task.label_vocabulary, task.sample_rate))
      super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager):
    del dl_manager  # the source was found in _download_and_prepare
    return {split: self._generate_examples(split)
            for split in self._task.splits}

  def _generate_examples(self, split: str):
    yield from hearpreprocess.split_examples(self._task, split,
                                             self._clips[split])


def prepare(task_dir: str, path: str | os.PathLike, data_dir: str | os.PathLike,
            *, sample_rate: int | None = None,
            file_format: str = "array_record") -> Builder:
  """Builds (once) catalogue task `task_dir` at one rate from its data.

  `path`: the task directory, a tarball, or a folder holding the unpacked
  task and/or its `*<task dir>-<rate>.tar.gz` tarballs
  (`hearpreprocess.rate_sources`). `sample_rate` None: the highest rate
  there. The config is `<task_dir>-<rate>`; a dataset already prepared at
  that rate is reused without reading the source again.
  """
  entry = catalogue.entry(task_dir)  # unknown task: fail before reading
  data_dir = os.fspath(data_dir)
  rate = sample_rate
  if rate is None and not os.path.isdir(path):
    rate = hearpreprocess.tarball_rate(path)  # by its name: nothing read
  if rate is not None:
    builder = Builder(config=entry.config_name(rate), data_dir=data_dir,
                      file_format=file_format)
    if builder.is_prepared():
      return builder
  sources = hearpreprocess.rate_sources(path, task_dir=task_dir)
  rate = max(sources) if rate is None else int(rate)
  if rate not in sources:
    raise ValueError(f"{path}: no {task_dir} audio at {rate} Hz (rates"
                     f" present: {', '.join(map(str, sources))})")
  builder = Builder(config=entry.config_name(rate), data_dir=data_dir,
                    file_format=file_format)
  if builder.is_prepared():
    return builder
  described = hearpreprocess.describe_task(sources[rate], rate)
  entry = catalogue.check_task(described, task_dir)
  builder = Builder(config=entry.config_name(described.sample_rate),
                    source=sources[rate], described=described,
                    data_dir=data_dir, file_format=file_format)
  builder.download_and_prepare()
  return builder
