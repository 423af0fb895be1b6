"""The protocol on every layer of a multi-layer model's embeddings.

  outcomes = run_task_layers(info, splits, probe_config, key,
                             embedding_path="")  # splits' x: [L, rows, D]
  outcomes[i].doc   # layer i's test.predicted-scores.json document

Each layer's result is what `protocol.run_task` gives for that layer
alone, with the same task key. For the ridge probe the layers share the
work: per data split one vmapped program factorises every layer's training
rows and one scores every layer's validation rows per alpha
(`ridge.fit_ridge_layers`); each layer then takes its own alpha and is
tested. For the trained probes (HEAR's MLP grid, the linear probe) every
layer's heads are members of the same programs (`protocol.run_layers`):
the layers' embeddings are stacked into one matrix, a layer is a set of its
rows, and each member trains alone on its device, so a layer's numbers are
those of the layer probed alone, bit for bit. kNN goes layer after layer.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import ml_collections
import numpy as np

from hear_jax.data.task import TaskInfo
from hear_jax.embed import SplitEmbeddings
from hear_jax.probe import protocol
from hear_jax.probe import ridge


def layer_splits(splits: Mapping[str, SplitEmbeddings], layer: int
                 ) -> dict[str, SplitEmbeddings]:
  """Layer `layer`'s embeddings of every split ([rows, D], contiguous)."""
  return {name: dataclasses.replace(s, x=np.ascontiguousarray(s.x[layer]))
          for name, s in splits.items()}


def run_task_layers(info: TaskInfo, splits: Mapping[str, SplitEmbeddings],
                    probe_config: ml_collections.ConfigDict, key: jax.Array,
                    *, embedding_path: str) -> list[protocol.TaskOutcome]:
  """`protocol.run_task` on each layer of `splits` (x [L, rows, D])."""
  layers = next(iter(splits.values())).x.shape[0]
  kind = protocol.probe_kind(probe_config)
  if kind != "ridge":
    return protocol.run_layers(
        info, [layer_splits(splits, i) for i in range(layers)], probe_config,
        key, embedding_path=embedding_path)
  # pylint: disable=protected-access
  one = layer_splits(splits, 0)  # targets are the same in every layer
  multilabel, maximize = protocol._multilabel(info), protocol._maximize(info)
  per_plan = []
  for plan in protocol.data_splits(info):
    train = protocol._examples(info, [one[s] for s in plan.train])
    valid = protocol._examples(info, [one[plan.valid]])
    per_plan.append(ridge.fit_ridge_layers(
        np.concatenate([splits[s].x for s in plan.train], axis=-2),
        train.y, splits[plan.valid].x, valid.y,
        list(ridge.DEFAULT_ALPHAS_PER_ROW), multilabel=multilabel,
        score_fn=(protocol._score_fn(info, valid)
                  if protocol._monitors_score(info) else None),
        maximize=maximize))
  return [protocol._run_protocol(
      info, layer_splits(splits, i), probe_config, key, kind,
      embedding_path=embedding_path, trained=None,
      ridge_fits=[fits[i] for fits in per_plan]) for i in range(layers)]
