"""Task spec strings -> prepared TFDS builders.

  builder = prepare_task("demo/pitch", data_dir)        # tasks/demo/pitch
  builder = prepare_task("demo/pitch/tiny", data_dir)   # its "tiny" config
  builder = prepare_task("hearpreprocess:/data/esc50-v2.0.0-full", data_dir)

A builder spec names a TFDS folder under the `tasks` package, found by module
name (`tasks/<group>/<name>/<name>_dataset_builder.py`, class `Builder`);
no registry. Preparing is idempotent: TFDS writes into an `incomplete.*`
directory and renames it when done, so a finished dataset is reused and an
interrupted one is rebuilt.
"""

from __future__ import annotations

import importlib
import os

import tensorflow_datasets as tfds

HEARPREPROCESS_PREFIX = "hearpreprocess:"


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


def prepare_task(spec: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """Builds the task's dataset once under `data_dir`; returns its builder."""
  if spec.startswith(HEARPREPROCESS_PREFIX):
    from hear_jax.data import hearpreprocess  # pylint: disable=g-import-not-at-top
    path = os.path.expanduser(spec[len(HEARPREPROCESS_PREFIX):])
    return hearpreprocess.prepare_hearpreprocess_task(path, data_dir)
  cls, config = builder_class(spec)
  if config is not None:
    names = [c.name for c in getattr(cls, "BUILDER_CONFIGS", [])]
    if config not in names:
      raise ValueError(f"task spec {spec!r}: unknown config {config!r}"
                       f" (available: {', '.join(names) or 'none'})")
  builder = cls(config=config, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  return builder
