"""HEAR 2021's hyperparameter grids for the downstream shallow head.

hear-eval-kit builds `sklearn.model_selection.ParameterGrid(grid)` (keys
sorted, last key varying fastest), shuffles the list with Python's `random`
right after `seed_everything(42)`, and trains the first `grid_points`
configurations. `hear_grid` replays exactly that, without sklearn:

  points = hear_grid()                      # the 8 default points, in order
  points = hear_grid("faster", grid_points=1)
  points = hear_grid(check_val_every_n_epoch=10)   # DCASE's override
  points[0]  # HParams(lr=0.0001, hidden_layers=1,
             #         initialization='xavier_normal', ...)

Single-valued overrides do not change the order, so the default grid gives
the same 8 points for every task (hear-reference.md §5.2).

`linear_grid()` is the linear probe's grid (`config.probe.kind = "linear"`,
not part of HEAR): hidden_layers=0 at four learning rates.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

INITIALIZATIONS = ("xavier_uniform", "xavier_normal")


@dataclasses.dataclass(frozen=True)
class HParams:
  """One grid point: the numbers that define one probe training run.

  Fixed HEAR entries that never vary (BatchNorm1d before dropout/ReLU,
  Identity embedding norm, Adam) are built into the trainer, not stored here.
  """

  lr: float
  hidden_layers: int
  initialization: str = "xavier_normal"  # one of INITIALIZATIONS
  hidden_dim: int = 1024
  dropout: float = 0.1
  batch_size: int = 1024
  max_epochs: int = 500
  check_val_every_n_epoch: int = 3
  patience: int = 20

  def __post_init__(self):
    if self.initialization not in INITIALIZATIONS:
      raise ValueError(
          f"HParams.initialization: {self.initialization!r} is not one of "
          f"{INITIALIZATIONS}")
    if not self.lr > 0:
      raise ValueError(f"HParams.lr: must be > 0, got {self.lr}")
    if self.hidden_layers < 0:
      raise ValueError(
          f"HParams.hidden_layers: must be >= 0, got {self.hidden_layers}")
    for name in ("hidden_dim", "batch_size", "max_epochs",
                 "check_val_every_n_epoch", "patience"):
      if getattr(self, name) < 1:
        raise ValueError(
            f"HParams.{name}: must be >= 1, got {getattr(self, name)}")
    if not 0 <= self.dropout < 1:
      raise ValueError(
          f"HParams.dropout: must be in [0, 1), got {self.dropout}")
    if self.max_epochs < self.check_val_every_n_epoch:
      # Lightning would train without a single validation check, and
      # hear-eval-kit then fails with "No score None for this model".
      raise ValueError(
          f"HParams.max_epochs ({self.max_epochs}) is smaller than "
          f"check_val_every_n_epoch ({self.check_val_every_n_epoch}): no "
          "validation check would ever run")

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


# Value lists in hear-eval-kit's order (task_predictions.py, v2021.1.x).
# Entries with a single fixed value that is not an HParams field
# (hidden_norm, norm_after_activation, embedding_norm, optim) are omitted:
# a single-valued key cannot change the ParameterGrid order.
_DEFAULT_GRID: dict[str, list[Any]] = {
    "hidden_layers": [1, 2],
    "hidden_dim": [1024],
    "dropout": [0.1],
    "lr": [3.2e-3, 1e-3, 3.2e-4, 1e-4],
    "patience": [20],
    "max_epochs": [500],
    "check_val_every_n_epoch": [3],
    "batch_size": [1024],
    "initialization": ["xavier_uniform", "xavier_normal"],
}

GRIDS: dict[str, dict[str, list[Any]]] = {
    "default": _DEFAULT_GRID,
    "fast": {**_DEFAULT_GRID,
             "max_epochs": [10, 50],
             "check_val_every_n_epoch": [3, 10]},
    "faster": {**_DEFAULT_GRID,
               "hidden_layers": [0, 1],
               "hidden_dim": [64, 128],
               "patience": [1, 3],
               "max_epochs": [10],
               "check_val_every_n_epoch": [1]},
}

# hear-eval-kit's TASK_SPECIFIC_PARAM_GRID, keyed by task_name; sed_eval is
# slow, so DCASE validates only every 10 epochs.
TASK_SPECIFIC_OVERRIDES: dict[str, dict[str, list[Any]]] = {
    "dcase2016_task2": {"check_val_every_n_epoch": [10]},
}


def parameter_grid(grid: Mapping[str, Sequence[Any]]
                   ) -> Iterator[dict[str, Any]]:
  """Yields dicts in sklearn ParameterGrid order: keys sorted, last fastest."""
  keys = sorted(grid)
  for key in keys:
    values = grid[key]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
      raise ValueError(f"grid[{key!r}]: expected a list of values, got "
                       f"{grid[key]!r}")
  for values in itertools.product(*(grid[k] for k in keys)):
    yield dict(zip(keys, values))


def task_overrides(metadata: Mapping[str, Any]) -> dict[str, list[Any]]:
  """Grid overrides for a task, applied in hear-eval-kit's order.

  The global TASK_SPECIFIC_OVERRIDES entry first, then
  `evaluation_params.task_specific_param_grid` from task_metadata.json.
  """
  task = metadata.get("task_name", "")
  overrides = dict(TASK_SPECIFIC_OVERRIDES.get(task, {}))
  params = metadata.get("evaluation_params") or {}
  overrides.update(params.get("task_specific_param_grid") or {})
  return overrides


def hear_grid(name: str = "default", grid_points: int = 8, *,
              seed: int = 42, **overrides: Any) -> list[HParams]:
  """The grid points hear-eval-kit trains, in its training order.

  Args:
    name: "default", "fast" or "faster" (hear-eval-kit's `--grid`).
    grid_points: how many shuffled points to keep (`--grid-points`).
    seed: Python `random` seed; HEAR's `seed_everything(42)`.
    **overrides: grid entries to replace, as a list of values or a single
      value (e.g. `check_val_every_n_epoch=10`), like HEAR's task-specific
      parameter grids. Names are HParams fields.

  Returns:
    `grid_points` HParams (fewer if the grid is smaller).
  """
  if name not in GRIDS:
    raise ValueError(f"hear_grid: unknown grid {name!r}; expected one of "
                     f"{sorted(GRIDS)}")
  if grid_points < 1:
    raise ValueError(f"hear_grid: grid_points must be >= 1, got {grid_points}")
  grid = _with_overrides(GRIDS[name], overrides, "hear_grid")
  confs = list(parameter_grid(grid))
  # hear-eval-kit shuffles with the global `random` just after
  # random.seed(42); a private Random(42) draws the same permutation
  # without touching the caller's global state.
  random.Random(seed).shuffle(confs)
  return [HParams(**conf) for conf in confs[:grid_points]]


def _with_overrides(grid: Mapping[str, Sequence[Any]],
                    overrides: Mapping[str, Any], where: str
                    ) -> dict[str, list[Any]]:
  """`grid` with entries replaced by `overrides` (a list of values or one)."""
  fields = {f.name for f in dataclasses.fields(HParams)}
  grid = dict(grid)
  for key, value in overrides.items():
    if key not in fields:
      raise ValueError(f"{where}: override {key!r} is not an HParams field "
                       f"({sorted(fields)})")
    is_list = isinstance(value, Sequence) and not isinstance(value, str)
    grid[key] = list(value) if is_list else [value]
  return grid


# What config.probe.kind may name: HEAR's MLP grid (the default), the
# linear probe (`linear_grid`), the k-NN probe (`hear_jax.probe.knn`) and
# the closed-form ridge probe (`hear_jax.probe.ridge`).
PROBE_KINDS = ("hear", "linear", "knn", "ridge")
# The kinds fitted without training (no grid of heads, no randomness).
CLOSED_FORM_KINDS = ("knn", "ridge")

# The linear probe's learning rates (config.probe.kind = "linear"), largest
# first: the range starts above HEAR's largest (3.2e-3) because a single
# Linear layer on raw embeddings often needs larger Adam steps than a head
# with BatchNorm, and four points keep the grid one program's group.
LINEAR_LEARNING_RATES = (1e-2, 3.2e-3, 1e-3, 3.2e-4)

_LINEAR_GRID: dict[str, list[Any]] = {
    **{key: values for key, values in _DEFAULT_GRID.items()
       if key not in ("hidden_layers", "lr", "initialization", "dropout")},
    "hidden_layers": [0],
    "lr": list(LINEAR_LEARNING_RATES),
    "initialization": ["xavier_normal"],
    "dropout": [0.0],  # a head without hidden layers has no dropout
}


def linear_grid(**overrides: Any) -> list[HParams]:
  """The linear probe: one Linear layer (`hidden_layers=0`: softmax or
  sigmoid of x @ W + b) trained with Adam like HEAR's heads, one point per
  learning rate of LINEAR_LEARNING_RATES (in that order), HEAR's other fixed
  entries (500 epochs at most, validation every 3, patience 20, batch 1024).

    points = linear_grid()                        # 4 points, lr 1e-2 first
    points = linear_grid(max_epochs=50, lr=[1e-3])

  `overrides` as for `hear_grid` (task-specific grids, config overrides);
  `hidden_layers` cannot be overridden: it is what makes the probe linear.
  """
  if "hidden_layers" in overrides:
    raise ValueError("linear_grid: hidden_layers cannot be overridden (a"
                     " linear probe has none); use the HEAR grid instead")
  grid = _with_overrides(_LINEAR_GRID, overrides, "linear_grid")
  return [HParams(**conf) for conf in parameter_grid(grid)]
