"""Deterministic, stateless batching: batch i is a pure function of (seed, i).

Because no iterator state exists, a resumed run asks for the same global batch
indices and receives bit-identical batches; checkpoints need only the step.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["SegmentSampler", "make_eval_batches"]


class SegmentSampler:
  """Epoch-wise shuffled mini-batches, stacked into unroll segments ``[T, B, ...]``.

  A :class:`~dlf_jax.contracts.BatchSampler` (scans of any length:
  ``segment_steps`` is None).

  Epoch ``e`` uses the permutation ``np.random.default_rng([seed, e])``; the
  last incomplete batch of every epoch is dropped, so all batches have exactly
  ``batch_size`` examples (static shapes for ``jax.jit``).

  Args:
    arrays: mapping name -> array with a shared leading axis ``N`` (e.g.
      ``{'x': float32[N, H, W, C], 'y': int32[N]}``).
    batch_size: examples per batch ``B``; must satisfy ``1 <= B <= N``.
    seed: integer seed of the shuffling.

  Raises:
    ValueError: if the arrays disagree on ``N``, are empty, or ``B`` is not in
      ``[1, N]``.
  """

  segment_steps = None  # no preferred scan length

  def __init__(self, arrays: Mapping[str, np.ndarray], batch_size: int, seed: int = 0):
    if not arrays:
      raise ValueError("SegmentSampler needs at least one array, got none.")
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"All arrays must share the leading axis; got sizes {sizes}.")
    n = next(iter(sizes.values()))
    if not 1 <= batch_size <= n:
      raise ValueError(f"batch_size={batch_size} must be in [1, {n}] (the number of examples); "
                       "lower the batch size or provide more data.")
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    self.batch_size = int(batch_size)
    self.seed = int(seed)
    self.num_examples = n
    self.batches_per_epoch = n // batch_size
    self._perm_cache: dict[int, np.ndarray] = {}

  def reseeded(self, seed: int) -> "SegmentSampler":
    """The same sampler with another shuffling seed (shares the arrays)."""
    other = object.__new__(SegmentSampler)
    other.__dict__.update(self.__dict__, seed=int(seed), _perm_cache={})
    return other

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._perm_cache:
      if len(self._perm_cache) > 4:
        self._perm_cache.clear()
      rng = np.random.default_rng([self.seed, epoch])
      self._perm_cache[epoch] = rng.permutation(self.num_examples)
    return self._perm_cache[epoch]

  def indices(self, start: int, count: int) -> np.ndarray:
    """Example indices of global batches ``start .. start+count-1``: int64 ``[count, B]``."""
    if start < 0 or count < 0:
      raise ValueError(f"start and count must be >= 0, got start={start}, count={count}.")
    out = np.empty((count, self.batch_size), dtype=np.int64)
    for j in range(count):
      epoch, pos = divmod(start + j, self.batches_per_epoch)
      out[j] = self._perm(epoch)[pos * self.batch_size:(pos + 1) * self.batch_size]
    return out

  def segment(self, start: int, count: int) -> dict[str, np.ndarray]:
    """Global batches ``start .. start+count-1`` stacked: each array ``[count, B, ...]``."""
    idx = self.indices(start, count)
    return {k: v[idx] for k, v in self.arrays.items()}


def make_eval_batches(arrays: Mapping[str, np.ndarray],
                      batch_size: int,
                      mask_key: str = "mask") -> dict[str, np.ndarray]:
  """All examples in order as ``[n, B, ...]`` batches, the last one zero-padded.

  A 0/1 float32 ``mask [n, B]`` (key ``mask_key``) marks real examples, so a
  masked mean over the batches equals the mean over the data exactly.

  Args:
    arrays: name -> array with shared leading axis ``N >= 1``.
    batch_size: ``B >= 1`` (clipped to ``N``).

  Raises:
    ValueError: empty data, mismatched leading axes, or ``B < 1``.
  """
  sizes = {k: len(v) for k, v in arrays.items()}
  if not sizes or len(set(sizes.values())) != 1 or min(sizes.values()) == 0:
    raise ValueError(f"Evaluation data must be non-empty arrays of one length; got sizes {sizes}.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  n = next(iter(sizes.values()))
  b = min(batch_size, n)
  nb = -(-n // b)
  out: dict[str, np.ndarray] = {}
  for k, v in arrays.items():
    v = np.asarray(v)
    pad = np.zeros((nb * b - n,) + v.shape[1:], v.dtype)
    out[k] = np.concatenate([v, pad]).reshape((nb, b) + v.shape[1:])
  mask = np.zeros(nb * b, np.float32)
  mask[:n] = 1.0
  if mask_key in arrays:  # combine with an existing (token) mask
    out[mask_key] = out[mask_key] * mask.reshape((nb, b) + (1,) * (out[mask_key].ndim - 2))
  else:
    out[mask_key] = mask.reshape(nb, b)
  return out
