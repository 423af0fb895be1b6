"""The members of a probe fit and where their arrays live.

A *member* is one head (`Member`: grid point, key, rows, monitor); members
that share an architecture are stacked along a leading axis (`TrainState`,
`MemberNumbers`, `init_members`), spread over a "members" mesh of every
device (`placement`) and computed one after the other on each device
(`map_members`), so a member's numbers never depend on the mesh. Every
host input of a program on a mesh is placed on that mesh first
(`to_device`), and a new member layout is made with explicit output
shardings (`take`), so the probe runs on any mesh.
The task's embeddings go to the devices once (`stack_rows`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hear_jax import aligned_rows
from hear_jax.probe import mlp
from hear_jax.probe.grid import HParams

ScoreFn = Callable[[np.ndarray], "float | tuple[float, Any]"]


class Member(NamedTuple):
  """One head for `fit_members`: its grid point, PRNG key, the rows of `x`
  it trains and validates on, and its validation monitor (see `ScoreFn`;
  None monitors the validation loss).

  `device_metric` names the same monitor computed on the device (a
  `device_metrics.SCENE` name, or "valid_loss" with score_fn None): when
  every member of a group has it, validation checks, checkpoints and early
  stopping run inside the training program, many checks per dispatch
  (`program.train_checks`), with the same rules and the same epochs."""

  hparams: HParams
  key: jax.Array  # one typed PRNG key
  train_rows: np.ndarray  # int indices into x, in training order
  valid_rows: np.ndarray
  score_fn: ScoreFn | None
  device_metric: str | None = None


class Placement(NamedTuple):
  """Where a group's arrays live: a one-axis ("members") mesh over every
  device of every process. Member-stacked state is split over it, each
  device looping over its own members (`map_members`); the embeddings and
  the outputs the host reads are replicated. No batch is ever split: a
  member's every step is then the same program on any mesh, so its numbers
  do not depend on the device count."""

  members: jax.sharding.NamedSharding  # leading member axis
  replicated: jax.sharding.NamedSharding

  @property
  def mesh(self) -> jax.sharding.Mesh:
    return self.members.mesh


def placement(devices: Sequence[jax.Device] | None = None) -> Placement:
  """The mesh over `devices` (default: all of them, every process's), one
  device included. A member stack placed on it has a multiple of the device
  count (`padded_count`).

  On one device too every array a group places is committed to it: a
  program compiled for uncommitted inputs is compiled again when its own
  (committed) outputs come back as inputs, which doubled the compiles of
  every fit's training program."""
  devices = list(jax.devices() if devices is None else devices)
  mesh = jax.sharding.Mesh(np.array(devices), ("members",))
  spec = jax.sharding.PartitionSpec
  return Placement(
      members=jax.sharding.NamedSharding(mesh, spec("members")),
      replicated=jax.sharding.NamedSharding(mesh, spec()))


def padded_count(n_members: int, place: Placement | None) -> int:
  """Slots for `n_members` on `place`: the next multiple of its devices."""
  if place is None:
    return n_members
  d = place.mesh.size
  return -(-n_members // d) * d


def map_members(fn, place: Placement | None, per_member, shared=()):
  """`fn(member, shared)` for each member of the member-stacked pytree
  `per_member`, stacked again: a `lax.map` (members one after the other),
  on a mesh inside `shard_map`, each device mapping its own members.

  One member's computation is then the same program whatever the member
  count or the mesh, bit for bit; a vmap over members changes its matmuls'
  rounding with the member count, and a batch split over devices the order
  of its sums. `fn`'s outputs all have the member axis first."""
  def local(per_member, shared):
    return jax.lax.map(lambda member: fn(member, shared), per_member)
  if place is None or place.mesh.size == 1:
    return local(per_member, shared)
  spec = jax.sharding.PartitionSpec
  return jax.shard_map(local, mesh=place.mesh,
                       in_specs=(spec("members"), spec()),
                       out_specs=spec("members"),
                       check_vma=False)(per_member, shared)


def constrain(tree, sharding):
  """`tree` laid out by `sharding` inside a program (as is without one)."""
  if sharding is None:
    return tree
  return jax.lax.with_sharding_constraint(tree, sharding)


def to_device(a: np.ndarray, sharding) -> jax.Array:
  """A host array, whole on every device of `sharding` (or the default).

  Every host input of a program on a mesh goes through here: one left on
  the host gets a layout XLA picks, which jit reads back against the mesh
  of the program's first input, and that mesh may not express it (e.g. 4
  tiles on a mesh whose one axis has 8 devices)."""
  if sharding is None:
    return jax.device_put(a)
  # Built shard by shard so it also works when the mesh spans processes
  # (each process supplies its own devices' copies).
  a = np.asarray(a)
  return jax.make_array_from_callback(a.shape, sharding, lambda i: a[i])


_STACK_CHUNK_BYTES = 32 << 20


@functools.partial(jax.jit, donate_argnums=0)
def _write_rows(out, part, start):
  return jax.lax.dynamic_update_slice_in_dim(out, part, start, axis=0)


def stack_rows(parts: Sequence[np.ndarray],
               devices: Sequence[jax.Device] | None = None) -> jax.Array:
  """`np.concatenate(parts)` as float32 on every device (`devices`, default
  all), without a second host copy of the whole.

  On CPU devices the device array is host memory: the parts' own buffer
  when they are `aligned_rows.packed_rows` views in order (no copy at all),
  else a packed copy, and on several CPU devices (simulated ones, or a
  host's share of a multi-process mesh) every device's replica is that same
  buffer, so the embeddings are in memory once, not once per device. On
  another single device the parts are written one after the other into a
  donated buffer, so the extra host memory is the largest slice."""
  parts = [np.asarray(p) for p in parts]
  shape = (sum(len(p) for p in parts),) + parts[0].shape[1:]
  place = placement(devices)
  one = place.mesh.size == 1
  local = [d for d in place.replicated.mesh.devices.flat
           if d.process_index == jax.process_index()]
  if all(d.platform == "cpu" for d in local):
    whole = aligned_rows.end_to_end(parts)
    if whole is None:
      whole = aligned_rows.end_to_end(aligned_rows.packed_rows(parts))
    if one:
      return jax.device_put(whole, local[0])
    # Each local device aliases the aligned buffer (read-only: nothing
    # donates or writes these arrays).
    return jax.make_array_from_single_device_arrays(
        whole.shape, place.replicated,
        [jax.device_put(whole, d) for d in local])
  if not one:
    # Across accelerators (or processes) the array is made shard by shard.
    return to_device(np.concatenate(parts).astype(np.float32),
                     place.replicated)
  device = local[0]
  out = jnp.zeros(shape, jnp.float32, device=device)
  row_bytes = 4 * max(1, math.prod(shape[1:]))
  step = max(1, _STACK_CHUNK_BYTES // row_bytes)
  start = 0
  for p in parts:
    # In slices, so the transfer buffer stays small next to the result.
    for i in range(0, len(p), step):
      piece = p[i:i + step].astype(np.float32, copy=False)
      out = _write_rows(out, jax.device_put(piece, out.sharding),
                        np.int32(start + i))
    start += len(p)
  return out


class MemberNumbers(NamedTuple):
  """Per-member numbers a group's program reads, each with leading dim M."""

  dropout: jax.Array  # float32
  dropout_key: jax.Array
  shuffle_key: jax.Array
  n_labels: jax.Array  # int32: the real classes of a class bucket


class TrainState(NamedTuple):
  params: mlp.Params
  bn_state: mlp.BatchNormState
  opt_state: optax.OptState
  step: jax.Array  # int32 optimizer steps taken; indexes the dropout stream


def adam() -> optax.GradientTransformation:
  """PyTorch's Adam defaults with the learning rate in the state."""
  # Only the learning rate is injected; PyTorch Adam's other constants are
  # fixed so they stay out of the member-stacked state.
  return optax.inject_hyperparams(
      optax.adam, static_args=("b1", "b2", "eps", "eps_root"))(
          learning_rate=0.0, b1=0.9, b2=0.999, eps=1e-8)


def member_keys(key: jax.Array, n_members: int) -> jax.Array:
  """M typed keys: `fold_in(key, i)` for a single key, else checked as is."""
  if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(jnp.asarray(key))
  if key.ndim == 0:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(
        jnp.arange(n_members))
  if key.shape != (n_members,):
    raise ValueError(f"fit_probes: key has shape {key.shape}; expected one key "
                     f"or {n_members} keys (one per hparams entry)")
  return key


@functools.partial(jax.jit, static_argnames=("shape", "impl", "place"))
def init_members(key_data, xavier_normal, learning_rate, dropout, n_labels,
                 *, shape, impl, place):
  """Stacked train state and per-member numbers for one group (`n_labels`:
  the real classes of `shape.n_labels`, see `mlp.init_mlp`)."""
  def one(member, _):
    data, normal, lr, rate, labels = member
    key = jax.random.wrap_key_data(data, impl=impl)
    params, bn_state = mlp.init_mlp(jax.random.fold_in(key, 0), shape, normal,
                                    labels)
    opt_state = adam().init(params)
    opt_state = opt_state._replace(
        hyperparams={**opt_state.hyperparams, "learning_rate": lr})
    return (TrainState(params, bn_state, opt_state, jnp.zeros((), jnp.int32)),
            MemberNumbers(rate, jax.random.fold_in(key, 1),
                          jax.random.fold_in(key, 2), labels))
  return map_members(one, place,
                     (key_data, xavier_normal, learning_rate, dropout,
                      n_labels))


@jax.jit
def select(mask, new, old):
  """Per member (leading axis): `new` where `mask`, else `old`."""
  def pick(a, b):
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)
  return jax.tree.map(pick, new, old)


def take(tree, positions, *, sharding=None):
  """Members `positions` of a member-stacked pytree (a new layout), laid
  out by `sharding`."""
  source = jax.tree.leaves(tree)[0].sharding
  if isinstance(source, jax.sharding.NamedSharding):
    # A host input would get a layout XLA picks, read back against the
    # tree's mesh; placed whole on that mesh it needs none.
    positions = jax.device_put(np.asarray(positions, np.int32),
                               source.update(spec=jax.sharding.PartitionSpec()))
  return take_into(sharding)(tree, positions)


@functools.cache
def take_into(sharding):
  # The output's layout is given as out_shardings, not constrained inside:
  # a layout of another member count lives on another mesh, and jit reads
  # an inferred output sharding back against its first input's mesh, which
  # cannot express it (e.g. 2 members split in 2 on a 4 x 1 mesh).
  return jax.jit(lambda tree, positions: jax.tree.map(
      lambda a: a[positions], tree), out_shardings=sharding)


def rows_on_device(rows: Sequence[np.ndarray], place: Placement,
                   width: int = 0):
  """Shared rows [N] when every member has the same, else [M, N], padded
  with row 0 to at least `width`, and the counts [M]."""
  rows = [np.asarray(r, np.int32) for r in rows]
  counts = np.array([len(r) for r in rows], np.int32)
  replicated = place.replicated
  width = max(width, int(counts.max()))
  if all(len(r) == len(rows[0]) and np.array_equal(r, rows[0])
         for r in rows):
    shared = np.zeros(width, np.int32)
    shared[:len(rows[0])] = rows[0]
    return to_device(shared, replicated), to_device(counts, replicated)
  padded = np.zeros((len(rows), width), np.int32)
  for i, r in enumerate(rows):
    padded[i, :len(r)] = r
  return to_device(padded, replicated), to_device(counts, replicated)


@functools.partial(jax.jit, static_argnames=("replicated",))
def member_at(tree, i, *, replicated=None):
  """Member `i` of a member-stacked pytree, laid out `replicated`."""
  return constrain(jax.tree.map(lambda a: a[i], tree), replicated)
