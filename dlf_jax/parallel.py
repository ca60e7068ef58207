"""Data parallelism over all local (or global) devices with ``jax.sharding``.

One 1-D :class:`jax.sharding.Mesh` with a ``batch`` axis. Training and dev
batches ``[T, B, ...]`` / ``[n, B, ...]`` are split along ``B``; the student's
carry and the teacher's ``theta`` are replicated. The jitted unroll, reverse
scan and evaluation are then partitioned by XLA (GSPMD): the same code runs on
1 or N devices and computes the same numbers (up to float summation order).
Batch means -- the loss, BatchNorm's mean and variance, the dev measure -- are
reductions over the sharded axis, so they are the *global* batch's (XLA inserts
the cross-device all-reduce); BatchNorm running statistics are therefore
identical on every device.

Multi-host: call :func:`initialize_distributed` (``jax.distributed.initialize``)
first in every process; :func:`shard_batches` builds global arrays from the
global batch every process holds (the samplers are deterministic), each process
supplying only its addressable shards.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = [
    "BATCH_AXIS", "make_mesh", "shard_batches", "replicate", "initialize_distributed",
    "num_batch_shards"
]

BATCH_AXIS = "batch"


def initialize_distributed(**kwargs) -> None:
  """``jax.distributed.initialize(**kwargs)`` for multi-host runs (call once, first)."""
  jax.distributed.initialize(**kwargs)


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh ``('batch',)`` over ``devices`` (default: all of ``jax.devices()``)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("make_mesh needs at least one device.")
  return Mesh(np.array(devices), (BATCH_AXIS,))


def num_batch_shards(mesh: Optional[Mesh]) -> int:
  """Devices along the batch axis (1 without a mesh)."""
  return 1 if mesh is None else mesh.shape[BATCH_AXIS]


def _put(x, sharding):
  x = np.asarray(x) if not isinstance(x, jax.Array) else x
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_batches(tree: Any, mesh: Optional[Mesh], axis: int = 1) -> Any:
  """Places every array of ``tree`` split along ``axis`` (the batch axis) over ``mesh``.

  Args:
    tree: pytree of arrays, e.g. ``{'x': [T, B, ...], 'y': [T, B]}``.
    mesh: from :func:`make_mesh`; ``None`` returns ``tree`` unchanged.
    axis: the batch axis: 1 for stacked ``[T, B, ...]`` batches (the default),
      0 for a single batch ``{'x': [B, ...], 'y': [B]}``. Scalars are replicated.

  Raises:
    ValueError: an array has no ``axis`` (e.g. a single batch with the default
      ``axis=1``), or its batch size is not divisible by the number of devices
      (the message names the array, its size and the fix).
  """
  if mesh is None:
    return tree
  n = num_batch_shards(mesh)

  def put(path, x):
    if np.ndim(x) == 0:
      return _put(x, NamedSharding(mesh, P()))
    if np.ndim(x) <= axis:
      raise ValueError(
          f"Batch array {jax.tree_util.keystr(path)} has shape {np.shape(x)}, no batch axis "
          f"{axis}: pass axis=0 for a single batch, axis=1 for stacked [T, B, ...] batches.")
    if np.shape(x)[axis] % n:
      raise ValueError(
          f"Batch array {jax.tree_util.keystr(path)} has {np.shape(x)[axis]} examples on axis "
          f"{axis}, not divisible by the {n} devices of the mesh: use a batch size that is a "
          f"multiple of {n}.")
    spec = [None] * np.ndim(x)
    spec[axis] = BATCH_AXIS
    return _put(x, NamedSharding(mesh, P(*spec)))

  return jax.tree_util.tree_map_with_path(put, tree)


def replicate(tree: Any, mesh: Optional[Mesh]) -> Any:
  """Places every array of ``tree`` on every device of ``mesh`` (``None``: unchanged)."""
  if mesh is None:
    return tree
  sharding = NamedSharding(mesh, P())
  return jax.tree_util.tree_map(lambda x: _put(x, sharding), tree)
