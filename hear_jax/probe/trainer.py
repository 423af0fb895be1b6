"""Fits HEAR's shallow heads, many at once, on fixed embeddings.

hear-eval-kit trains one PyTorch-Lightning model per grid point and fold.
Here every head is a *member*; members that share an architecture
(hidden_layers, hidden_dim, batch_size, check_val_every_n_epoch) are one
program: learning rate (in the optimizer state via
`optax.inject_hyperparams`), initialization, dropout rate, patience,
max_epochs, PRNG key and the rows of the embedding matrix a member trains
and validates on are per-member numbers. The task's embeddings are on the
devices once (`stack_rows`); grid points share their rows, the folds of a
k-fold task are other rows. Members are spread over a "members" mesh of
every device (`placement`), each device training its members one after the
other, so a member's numbers are the same on any mesh and any number of
processes. The epochs between two validation checks run inside one jitted
`lax.scan`; only the validation predictions come back to the host, where
each member's `score_fn` scores them and early stopping (per member)
decides. A stopped member's epochs are skipped; on several devices the
running members also move into a smaller program (power-of-two sizes) when
a chunk of epochs is worth the compile, so the devices share them.

  results = fit_probes(train_x, train_y, valid_x, valid_y, hear_grid(),
                       multilabel=False, score_fn=top1, maximize=True,
                       key=jax.random.key(0))
  best = max(results, key=lambda r: r.best_score)      # HEAR's selection
  probs = predict(best, test_x)                        # [N, C] numpy
  # Any members on one matrix, e.g. one point on every fold at once:
  results = fit_members(x, y, [Member(hp, key_i, train_rows_i, valid_rows_i,
                                      score_fn_i) for ...], ...)

`score_fn(probs[N, C]) -> float`, or `-> (float, extra)` where `extra`
(e.g. the chosen event post-processing) is kept with the best checkpoint
(`FitResult.best_extra`). It is called once per still-running member per
validation check, on that member's float32 validation probabilities (softmax
or sigmoid). With `score_fn=None` the monitor is the validation loss
(`maximize=False`), as for MAESTRO's `use_scoring_for_early_stopping=False`.

A member may also name its monitor as the device computes it
(`Member.device_metric`: a scene metric of `device_metrics.SCENE`, or
"valid_loss"). When every member of a group does, the checks run inside
the training program (`program.train_checks`): each member trains,
validates, scores itself and applies the checkpoint and early-stopping rules
below on the device, for as many checks as fit in about two seconds of work
per dispatch, with no host round trip between them. The epochs, checkpoints
and stop reasons are those of the host loop; the reported best score is
the `score_fn`'s float64 value of the best checkpoint.

Protocol (hear-reference.md §5.3), with the choices this port makes:

- Batches of `batch_size` in data order; the last partial batch is kept
  (with shape buckets a step of the next multiple of 128 rows, its padding
  masked; `program._epochs_fn`). A last batch of exactly one row is dropped
  when the head has BatchNorm (PyTorch raises on it; a single row has no
  unbiased variance).
- The Linear bias before each BatchNorm is kept out of the batch statistics
  (it cancels there) and enters only the running mean: its gradient is
  exactly zero, where PyTorch's rounding noise, rescaled by Adam, makes it
  drift at random (`mlp.apply_mlp`). Same function in exact arithmetic.
- Dropout masks come from a counter-based hash of each step's key, at
  16-bit resolution (`mlp.dropout_noise`): the drop rate is rounded to a
  multiple of 2^-16 (0.1 -> 0.1000061).
- No reshuffling by default (hear-eval-kit's k-fold-era behaviour);
  `shuffle_train=True` draws a new permutation every epoch from the member's
  key.
- Validation every `check_val_every_n_epoch` epochs on the whole split in
  eval mode. Monitor improvements are strict (a tie keeps the earlier
  checkpoint, min_delta 0); patience counts validation checks; a non-finite
  monitored value stops the member at that check (Lightning's
  `check_finite`; NaN never becomes the best unless it is the first check,
  where it is stored as the worst value, -inf for max / +inf for min, as
  Lightning's ModelCheckpoint does). `best_epoch` is the number of epochs
  trained at the best check (3, 6, ...), the checkpoint epoch hear-eval-kit
  reported under Lightning < 1.6 (Lightning 1.6 stores one less).
- Epochs after a member's last possible validation check (e.g. epochs 499
  and 500 with max_epochs=500, check every 3) cannot change its best
  checkpoint and are not run.
- The next chunk of epochs is dispatched before the current check is scored
  (host scoring overlaps device training); a member that stops at check k has
  thus trained one chunk more, which is discarded. Stopped members are frozen
  (jnp.where on a mask) and never evaluated again.

The modules: `members` (heads, keys, the mesh and placing arrays on it),
`program` (the compiled epochs and validation), `driver` (the host loop:
dispatch, early stopping, compaction, checkpoints, progress),
`prediction` and `buckets` (the sizes programs are compiled for); this
module checks the inputs, pads them to the buckets and groups the members.

Keys: member i uses `fold_in(key, i)` (see `member_keys`); pass a batch of
M keys instead to control each member's key, e.g. to refit one member alone.
Its init, dropout and shuffle streams are `fold_in(member_key, 0/1/2)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hear_jax.probe import buckets
from hear_jax.probe import checkpoint as checkpoint_lib
from hear_jax.probe import mlp  # noqa: F401  (callers reach it as trainer.mlp)
from hear_jax.probe import program
from hear_jax.probe.driver import (  # noqa: F401  (this module's public names)
    COMPACT_MIN_FLOPS,
    GroupFit,
)
from hear_jax.probe.early_stopping import (  # noqa: F401
    EarlyStoppingState,
    FitResult,
    ValidationCheck,
    early_stopping_init,
    early_stopping_step,
)
from hear_jax.probe.grid import HParams
from hear_jax.probe.members import (  # noqa: F401
    Member,
    Placement,
    ScoreFn,
    init_members,
    member_keys,
    placement,
    stack_rows,
)
from hear_jax.probe.prediction import (  # noqa: F401
    SplitPredictions,
    predict,
    predict_split,
)

# The names this module had before it was split, for tests and benchmarks
# that reach into it (and patch `_COMPACT_MIN_FLOPS`, read at each fit).
_COMPACT_MIN_FLOPS = COMPACT_MIN_FLOPS
_GroupFit = GroupFit
_init_members = init_members
_train_chunk = program.train_chunk


def _check_rows(name: str, n_x: int, y, rows: np.ndarray, multilabel: bool):
  """Raises unless `rows` index x's `n_x` rows and (multiclass) have one
  label each."""
  if rows.ndim != 1 or len(rows) == 0:
    raise ValueError(f"fit_members: {name} rows are empty")
  if rows.min() < 0 or rows.max() >= n_x:
    raise ValueError(f"fit_members: {name} rows must index x's {n_x}"
                     f" rows; got {rows.min()}..{rows.max()}")
  padded = np.zeros(max(len(rows), y.shape[0]), np.int32)
  padded[:len(rows)] = rows
  if not multilabel and not program.one_label_each(y, padded, len(rows)):
    raise ValueError(f"fit_probes: {name}_y must have exactly one label per "
                     "row for a multiclass task")


def _group_key(hp: HParams):
  return (hp.hidden_layers, hp.hidden_dim, hp.batch_size,
          hp.check_val_every_n_epoch)


def fit_probes(train_x, train_y, valid_x, valid_y, hparams: Sequence[HParams],
               *, multilabel: bool, score_fn: ScoreFn | None, maximize: bool,
               key: jax.Array, shuffle_train: bool = False,
               stop_on_non_finite: bool = True,
               eval_batch_size: int = 4096,
               on_check: Callable[[int], None] | None = None,
               checkpoint: checkpoint_lib.ProbeCheckpoint | None = None,
               devices: Sequence[jax.Device] | None = None,
               shape_buckets: bool | None = None) -> list[FitResult]:
  """Trains one head per `hparams` entry on one split; results in order.

  Args:
    train_x, valid_x: embeddings [N, D] (numpy or jax).
    train_y, valid_y: one-hot (multiclass) or multi-hot targets [N, C].
    hparams: the grid points; entries sharing an architecture are trained
      together as one program.
    multilabel: sigmoid + BCE (multilabel and event tasks) instead of
      softmax + cross-entropy.
    score_fn: host callback scoring one member's validation probabilities,
      or None to monitor the validation loss.
    maximize: the monitor's mode (False for losses and `segment_1s_er`).
    key: one PRNG key (member i uses fold_in(key, i)) or one key per member.
    Others: as `fit_members`.
  """
  if not hparams:
    raise ValueError("fit_probes: hparams is empty")
  for name, (a, b) in (("train", (train_x, train_y)),
                       ("valid", (valid_x, valid_y))):
    if np.ndim(a) != 2 or np.ndim(b) != 2 or np.shape(a)[0] != np.shape(b)[0]:
      raise ValueError(f"fit_probes: {name}_x {np.shape(a)} and {name}_y "
                       f"{np.shape(b)} must be [N, D] and [N, C] with the "
                       "same N")
    if np.shape(a)[0] == 0:
      raise ValueError(f"fit_probes: {name} split is empty")
  if (np.shape(train_x)[1] != np.shape(valid_x)[1]
      or np.shape(train_y)[1] != np.shape(valid_y)[1]):
    raise ValueError(f"fit_probes: train ({np.shape(train_x)[1]} dims, "
                     f"{np.shape(train_y)[1]} labels) and valid "
                     f"({np.shape(valid_x)[1]} dims, {np.shape(valid_y)[1]}"
                     " labels) disagree")
  n_train = np.shape(train_x)[0]
  cat = np.concatenate if isinstance(train_x, np.ndarray) else jnp.concatenate
  x = cat([train_x, valid_x]).astype(np.float32)
  y = cat([train_y, valid_y]).astype(np.float32)
  train_rows = np.arange(n_train)
  valid_rows = np.arange(n_train, x.shape[0])
  keys = member_keys(key, len(hparams))
  return fit_members(
      x, y, [Member(hp, keys[i], train_rows, valid_rows, score_fn)
             for i, hp in enumerate(hparams)],
      multilabel=multilabel, maximize=maximize, shuffle_train=shuffle_train,
      stop_on_non_finite=stop_on_non_finite, eval_batch_size=eval_batch_size,
      on_check=on_check, checkpoint=checkpoint, devices=devices,
      shape_buckets=shape_buckets)


def fit_members(x, y, members: Sequence[Member], *, multilabel: bool,
                maximize: bool, shuffle_train: bool = False,
                stop_on_non_finite: bool = True, eval_batch_size: int = 4096,
                on_check: Callable[[int], None] | None = None,
                checkpoint: checkpoint_lib.ProbeCheckpoint | None = None,
                devices: Sequence[jax.Device] | None = None,
                shape_buckets: bool | None = None) -> list[FitResult]:
  """Trains every member's head; results in the same order.

  All members index one embedding matrix, placed on the devices once: a
  k-fold task's folds are rows of it, so the best grid point retrained on
  every other split is one program of k - 1 members, with no copy of the
  embeddings per split.

  Args:
    x: every row any member trains or validates on [N, D] (numpy or jax).
    y: the targets of those rows [N, C].
    members: what to train (`Member`); members sharing an architecture run
      as one program, spread over `devices` (`placement`).
    multilabel, maximize: as `fit_probes`; the monitor (score_fn or the
      validation loss) must be the same kind for every member.
    shuffle_train: reshuffle each member's training rows every epoch.
    stop_on_non_finite: Lightning's check_finite (see module docstring).
    eval_batch_size: rows per chunk of the eval-mode forward pass (fewer
      when a chunk's gathered rows and activations would pass 8 MB).
    on_check: progress callback, called after every validation check with
      the member-epochs it completed; a member that stops counts its
      remaining epochs as done, so the calls add up to
      sum(m.hparams.max_epochs for m in members).
    checkpoint: where each group saves its training state as it goes and
      resumes from, bit-identically (`hear_jax.probe.checkpoint`); on resume
      `on_check` is called once with the member-epochs already done. Not
      used when the devices span several processes (logged).
    devices: the devices to spread members and batches over (default: all
      devices of all processes).
    shape_buckets: pad rows, classes and members to `buckets`, so that
      another task in the same buckets reuses the compiled programs (rows
      of x past every member's are padding already: pass x padded to
      `buckets.rows` to save a copy). Numbers change only by rounding.
      None: on for accelerators, off on a CPU (`buckets.enabled`).
  """
  if not members:
    raise ValueError("fit_members: no members")
  monitors = {m.score_fn is None for m in members}
  if len(monitors) > 1:
    raise ValueError("fit_members: either every member has a score_fn or "
                     "none has (the validation-loss monitor)")
  if monitors == {True} and maximize:
    raise ValueError("fit_probes: score_fn=None monitors the validation loss, "
                     "which needs maximize=False")
  if np.ndim(x) != 2 or np.ndim(y) != 2 or np.shape(x)[0] != np.shape(y)[0]:
    raise ValueError(f"fit_members: x {np.shape(x)} and y {np.shape(y)} must "
                     "be [N, D] and [N, C] with the same N")
  devices = list(jax.devices() if devices is None else devices)
  if checkpoint is not None and len({d.process_index for d in devices}) > 1:
    logging.info("probe checkpoints are not used across %d processes",
                 len({d.process_index for d in devices}))
    checkpoint = None
  # One copy of the embeddings on the devices, shared by every group
  # (`stack_rows` makes it; an array already there is used as is).
  n_labels, n_x = int(np.shape(y)[1]), int(np.shape(x)[0])
  shape_buckets = buckets.enabled(shape_buckets, devices)
  if shape_buckets:
    n_rows = buckets.rows(np.shape(x)[0], 4 * np.shape(x)[1])
    pad_rows = n_rows - np.shape(x)[0]
    pad_classes = buckets.classes(n_labels) - n_labels
    if pad_rows and not isinstance(x, jax.Array):
      x = stack_rows([np.asarray(x, np.float32),
                      np.zeros((pad_rows, np.shape(x)[1]), np.float32)],
                     devices)
    elif pad_rows:
      x = jnp.pad(x.astype(jnp.float32), ((0, pad_rows), (0, 0)))
    if pad_rows or pad_classes:
      # On the devices when it is there already: a y replicated over
      # several processes cannot come back to one host.
      pad = ((0, pad_rows), (0, pad_classes))
      y = (jnp.pad(y.astype(jnp.float32), pad) if isinstance(y, jax.Array)
           else np.pad(np.asarray(y, np.float32), pad))
  if not isinstance(x, jax.Array) or x.dtype != jnp.float32:
    x = stack_rows([np.asarray(x)], devices)
  if not isinstance(y, jax.Array) or y.dtype != jnp.float32:
    y = stack_rows([np.asarray(y)], devices)
  spread = placement(devices)
  x, y = (a if a.sharding.is_equivalent_to(spread.replicated, a.ndim)
          else jax.device_put(a, spread.replicated) for a in (x, y))
  if not program.all_finite(x):
    bad = int(np.flatnonzero(~np.isfinite(np.asarray(x)).all(axis=1))[0])
    name = next((n for m in members for n, r in (("train", m.train_rows),
                                                 ("valid", m.valid_rows))
                 if bad in np.asarray(r)), "test")
    raise ValueError(f"fit_probes: {name}_x contains NaN or inf (row {bad} "
                     "of the embeddings)")
  checked = set()
  for m in members:
    for name, rows in (("train", m.train_rows), ("valid", m.valid_rows)):
      rows = np.asarray(rows)
      if (name, rows.tobytes()) not in checked:
        _check_rows(name, n_x, y, rows, multilabel)
        checked.add((name, rows.tobytes()))

  groups: dict[tuple, list[int]] = {}
  for i, m in enumerate(members):
    groups.setdefault(_group_key(m.hparams), []).append(i)
  results: list[FitResult | None] = [None] * len(members)
  for g, indices in enumerate(groups.values()):
    group = GroupFit(
        [members[i] for i in indices], x, y, multilabel=multilabel,
        maximize=maximize, shuffle=shuffle_train,
        stop_on_non_finite=stop_on_non_finite, eval_batch_size=eval_batch_size,
        on_check=on_check, devices=devices,
        compact_min_flops=_COMPACT_MIN_FLOPS, n_labels=n_labels,
        bucketed=shape_buckets)
    group.checkpoint, group.group_index = checkpoint, g
    for i, result in zip(indices, group.run()):
      results[i] = result
  return results
