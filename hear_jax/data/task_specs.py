"""Task spec strings -> prepared TFDS builders.

  builder = prepare_task("demo/pitch", data_dir)        # tasks/demo/pitch
  builder = prepare_task("demo/pitch/tiny", data_dir)   # its "tiny" config
  builder = prepare_task("hearpreprocess:/data/esc50-v2.0.0-full", data_dir)
  # a HEAR 2021 catalogue task, checked against its expected metadata:
  builder = prepare_task("hear2021:esc50-v2.0.0-full:/data/hear2021-esc50-"
                         "v2.0.0-full-48000.tar.gz", data_dir)
  spec = spec_for_path(path)  # "hearpreprocess:..." or "heareval:..."
  audio_rates("hearpreprocess:/data/esc50")  # (16000, 48000): rates held
  builder = prepare_task("hearpreprocess:/data/esc50", data_dir, 16000)

A hearpreprocess task may hold several rates (`<rate>/` folders, or one
tarball per rate in a folder): `audio_rates` lists them, and each model reads
its own (`hearpreprocess.rate_for_model`), prepared as its own dataset.

"heareval:<dir>" names embeddings written by hear-eval-kit's runner
(`hear_jax.data.heareval_layout`); run.py reads them instead of building a
dataset, so `prepare_task` does not take it.

A builder spec names a TFDS folder under the `tasks` package, found by module
name (`tasks/<group>/<name>/<name>_dataset_builder.py`, class `Builder`);
no registry. Preparing is idempotent: TFDS writes into an `incomplete.*`
directory and renames it when done, so a finished dataset is reused and an
interrupted one is rebuilt.
"""

from __future__ import annotations

import importlib
import os
import re

import tensorflow_datasets as tfds

HEARPREPROCESS_PREFIX = "hearpreprocess:"
HEAR2021_PREFIX = "hear2021:"
HEAREVAL_PREFIX = "heareval:"
_CATALOGUE_KEY = re.compile(r"^[\w.+-]+$")


def hear2021_spec(spec: str) -> tuple[str, str]:
  """"hear2021:<task dir>:<path>" -> (catalogue task dir, data path)."""
  key, sep, path = spec[len(HEAR2021_PREFIX):].partition(":")
  if not sep or not _CATALOGUE_KEY.match(key) or not path:
    raise ValueError(f"task spec {spec!r}: expected 'hear2021:<task dir>:"
                     "<path>', e.g. 'hear2021:esc50-v2.0.0-full:data/hear2021/"
                     "esc50-v2.0.0-full'")
  return key, path


def data_path(spec: str) -> str | None:
  """The task directory, tarball or embeddings directory a spec reads (None
  for builder specs, whose data the builder makes or finds itself)."""
  if spec.startswith(HEARPREPROCESS_PREFIX):
    path = spec[len(HEARPREPROCESS_PREFIX):]
  elif spec.startswith(HEAREVAL_PREFIX):
    path = spec[len(HEAREVAL_PREFIX):]
  elif spec.startswith(HEAR2021_PREFIX):
    path = hear2021_spec(spec)[1]
  else:
    return None
  return os.path.expanduser(path)


def spec_for_path(path: str) -> str:
  """A path -> its task spec: a hear-eval-kit embeddings directory (it has
  `<split>.embedding-dimensions.json` files) -> "heareval:", anything else (a
  hearpreprocess task directory or tarball, or nothing yet) ->
  "hearpreprocess:"."""
  expanded = os.path.expanduser(path)
  if os.path.isdir(expanded) and any(
      name.endswith(".embedding-dimensions.json")
      for name in os.listdir(expanded)):
    return HEAREVAL_PREFIX + path
  return HEARPREPROCESS_PREFIX + path


def builder_class(spec: str) -> tuple[type, str | None]:
  """"demo/pitch[/config]" -> (the Builder class, the config name or None)."""
  parts = spec.strip("/").split("/")
  if len(parts) not in (2, 3) or not all(parts):
    raise ValueError(f"task spec {spec!r}: expected 'group/name' or"
                     " 'group/name/config' (e.g. 'demo/pitch')")
  group, name = parts[0], parts[1]
  module_name = f"tasks.{group}.{name}.{name}_dataset_builder"
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if not (e.name and module_name.startswith(e.name)):
      raise
    raise ValueError(f"task spec {spec!r}: no TFDS builder tasks/{group}/"
                     f"{name}/{name}_dataset_builder.py") from None
  return module.Builder, (parts[2] if len(parts) == 3 else None)


def audio_rates(spec: str) -> tuple[int, ...]:
  """The rates whose audio a hearpreprocess or catalogue spec holds, in
  increasing order; () for a builder spec (its builder has one rate). Cheap
  except for a tarball whose name shows no rate (read through once)."""
  from hear_jax.data import hearpreprocess  # pylint: disable=g-import-not-at-top
  if spec.startswith(HEARPREPROCESS_PREFIX):
    return tuple(hearpreprocess.rate_sources(data_path(spec)))
  if spec.startswith(HEAR2021_PREFIX):
    return tuple(hearpreprocess.rate_sources(
        data_path(spec), task_dir=hear2021_spec(spec)[0]))
  return ()


def check_task_spec(spec: str, sample_rate: int | None = None) -> None:
  """What can be known of a spec without building anything: the builder and
  its config exist, a catalogue task is in the catalogue, a hearpreprocess
  task directory's metadata and vocabulary parse, and a forced
  `sample_rate` is one the data holds (a tarball: the rate its name shows,
  if any; its members are checked when it is built). One-line ValueErrors.
  """
  if spec.startswith(HEAREVAL_PREFIX):
    return
  if spec.startswith(HEAR2021_PREFIX):
    from hear_jax.data import hear2021_catalogue  # pylint: disable=g-import-not-at-top
    hear2021_catalogue.entry(hear2021_spec(spec)[0])
  elif not spec.startswith(HEARPREPROCESS_PREFIX):
    cls, config = builder_class(spec)
    if sample_rate is not None:
      raise ValueError(f"config.task_sample_rate={sample_rate}: only"
                       " hearpreprocess: and hear2021: task specs take a"
                       f" rate; task spec {spec!r} is a TFDS builder")
    _check_builder_config(spec, cls, config)
    return
  from hear_jax.data import hearpreprocess  # pylint: disable=g-import-not-at-top
  path = data_path(spec)
  if not os.path.isdir(path):
    # A tarball: its name, if it shows a rate, is all that is cheap to read.
    hinted = hearpreprocess.tarball_rate(path)
    if sample_rate is not None and hinted and hinted != sample_rate:
      raise ValueError(f"{path}: holds {hinted} Hz audio (by its name),"
                       f" not config.task_sample_rate={sample_rate}")
    return
  sources = hearpreprocess.rate_sources(
      path, task_dir=(hear2021_spec(spec)[0]
                      if spec.startswith(HEAR2021_PREFIX) else None))
  if sample_rate is not None and sample_rate not in sources:
    raise ValueError(f"{path}: no {sample_rate}/ audio directory or"
                     f" -{sample_rate} tarball (rates present:"
                     f" {', '.join(map(str, sources))};"
                     f" config.task_sample_rate={sample_rate})")
  task_dirs = sorted({(p, r) for r, p in sources.items() if p.is_dir()})
  if task_dirs and spec.startswith(HEARPREPROCESS_PREFIX):
    # The metadata and vocabulary (catalogue tasks: checked when built).
    hearpreprocess.open_task(*task_dirs[0])


def _check_builder_config(spec: str, cls: type, config: str | None) -> None:
  if config is not None:
    names = [c.name for c in getattr(cls, "BUILDER_CONFIGS", [])]
    if config not in names:
      raise ValueError(f"task spec {spec!r}: unknown config {config!r}"
                       f" (available: {', '.join(names) or 'none'})")


def prepare_task(spec: str, data_dir: str, sample_rate: int | None = None
                 ) -> tfds.core.DatasetBuilder:
  """Builds the task's dataset once under `data_dir`; returns its builder.
  `sample_rate` picks a hearpreprocess task's audio rate (None: its only
  rate; a catalogue task: its highest)."""
  if spec.startswith(HEARPREPROCESS_PREFIX):
    from hear_jax.data import hearpreprocess  # pylint: disable=g-import-not-at-top
    path = os.path.expanduser(spec[len(HEARPREPROCESS_PREFIX):])
    return hearpreprocess.prepare_hearpreprocess_task(
        path, data_dir, sample_rate=sample_rate)
  if spec.startswith(HEAR2021_PREFIX):
    from hear_jax.data import hear2021_catalogue  # pylint: disable=g-import-not-at-top
    task_dir, _ = hear2021_spec(spec)
    return hear2021_catalogue.prepare_catalogue_task(
        task_dir, data_path(spec), data_dir, sample_rate)
  if spec.startswith(HEAREVAL_PREFIX):
    raise ValueError(f"task spec {spec!r}: embeddings, not a dataset (read"
                     " them with hear_jax.data.heareval_layout)")
  cls, config = builder_class(spec)
  _check_builder_config(spec, cls, config)
  builder = cls(config=config, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  return builder
