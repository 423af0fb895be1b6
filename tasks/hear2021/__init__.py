"""TFDS builders for HEAR 2021 tasks, read from hearpreprocess output.

  from tasks.hear2021.hearpreprocess_task import (
      hearpreprocess_task_dataset_builder as hp)
  builder = hp.Builder(source="spoken_digit-1.0.9-small", data_dir="tfds")
  builder.download_and_prepare()

`hear_jax.data.hearpreprocess.prepare_hearpreprocess_task(path, data_dir)`
does both steps; the pipeline reaches it through "hearpreprocess:<path>"
task specs.
"""
