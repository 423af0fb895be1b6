"""TFDS builder for any hearpreprocess task (directory or tarball).

  builder = Builder(
      source="hear-2021.0.6-spoken_digit-1.0.9-small-44100.tar.gz",
      data_dir="tfds")          # sample_rate=None: the only rate present
  builder.download_and_prepare()
  # -> tfds/hearpreprocess_task/spoken_digit-1.0.9-small-44100/1.0.0
  task = hear_jax.data.task.load_task(builder)

  # Later, without the source (reads what was prepared):
  Builder(config="spoken_digit-1.0.9-small-44100", data_dir="tfds")

One class serves every task, so the task is a constructor argument: its
config is named `<task dir name>-<sample rate>` and each task gets its own
data directory. Examples follow `hear_jax.data.hear_features` (id = wav file
name, int16 PCM as stored). Every split json and wav header is checked
before anything is written; TFDS writes into an `incomplete.*` directory and
renames it only when every split is done, so an interrupted build is never
taken for a finished one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

import tensorflow_datasets as tfds

from hear_jax.data import hear_features
from hear_jax.data import hearpreprocess


class Builder(tfds.core.GeneratorBasedBuilder):
  """A hearpreprocess task as a TFDS dataset (config = task dir + rate)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "hearpreprocess task, int16 audio as stored."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Pass the hearpreprocess output as `Builder(source=...)`: a task directory
  (holding task_metadata.json) or its tarball, e.g.
  hear2021-<task>-<version>-<mode>-48000.tar.gz from the HEAR 2021 Zenodo
  release (https://zenodo.org/record/5887964).
  """

  def __init__(
      self,
      *,
      source: str | os.PathLike | None = None,
      sample_rate: int | None = None,
      config: str | tfds.core.BuilderConfig | None = None,
      file_format: str | None = "array_record",
      **kwargs: Any,
  ):
    """`source`: task dir or tarball; or only `config` for prepared data."""
    self._source = None if source is None else os.fspath(source)
    if self._source is not None:
      # Reads the metadata only (a tarball is scanned, not extracted).
      self._task = hearpreprocess.describe_task(self._source, sample_rate)
      name = self._task.config_name
      given = getattr(config, "name", config)
      if given is not None and given != name:
        raise ValueError(f"{self._source}: is task config {name!r}, not"
                         f" {given!r}")
      config = tfds.core.BuilderConfig(
          name=name,
          description=f"{self._task.name} at {self._task.sample_rate} Hz")
      self._hear_metadata = hear_features.task_metadata(
          self._task.metadata, self._task.label_vocabulary,
          self._task.sample_rate)
    else:
      if config is None:
        raise ValueError("hearpreprocess_task: pass source= (a task directory"
                         " or tarball) or config= (a prepared task's name)")
      self._task = None
      if isinstance(config, str):
        config = tfds.core.BuilderConfig(name=config)
      # Empty until TFDS loads the prepared dataset's metadata.json.
      self._hear_metadata = tfds.core.MetadataDict()
    super().__init__(config=config, file_format=file_format, **kwargs)
    # DatasetBuilder pickles itself by re-running __init__ on this dict.
    self._original_state.update(source=self._source, sample_rate=sample_rate)
    if self._task is not None and self.is_prepared():
      prepared = dict(self.info.metadata).get("hear_task")
      if prepared != self._task.metadata:
        raise ValueError(f"{self.data_dir}: prepared from a different"
                         f" {hearpreprocess.METADATA_FILE} than"
                         f" {self._task.source}; delete it to rebuild")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=hear_features.task_features(),
        metadata=self._hear_metadata,
        homepage="https://hearbenchmark.com",
    )

  def _download_and_prepare(self, dl_manager, download_config=None) -> None:
    if self._task is None:
      raise ValueError(f"{self.data_dir}: not prepared, and no source= was"
                       " given to build it from")
    with contextlib.ExitStack() as stack:
      task = self._task
      if task.path is None:
        # A tarball: extract next to the dataset (same disk), drop afterwards.
        tmp = stack.enter_context(tempfile.TemporaryDirectory(
            prefix="hearpreprocess-extract-", dir=self.data_dir_root))
        task_dir = hearpreprocess.extract_task_tarball(self._source, tmp)
        task = hearpreprocess.open_task(task_dir, task.sample_rate,
                                        source=task.source)
        if task.metadata != self._task.metadata:
          raise ValueError(f"{self._source}: changed while being read")
      self._clips = hearpreprocess.check_task(task)
      self._prepared_task = task
      super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager):
    del dl_manager  # the source comes from the constructor
    return {split: self._generate_examples(split)
            for split in self._prepared_task.splits}

  def _generate_examples(self, split: str):
    yield from hearpreprocess.split_examples(
        self._prepared_task, split, self._clips[split])
