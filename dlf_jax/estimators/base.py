"""The estimator interface: :class:`HypergradEstimator` and what one outer step hands it.

:func:`dlf_jax.teach` does not know which estimator it runs: every outer step
it builds an :class:`EstimateContext` (the student, teacher, measure, the
segment's place in the run, its dev batches, a PRNG key) and calls
``estimator.estimate(ctx, theta, state, student_state)``. An estimator draws the
segment's training batches itself (:meth:`EstimateContext.batches`): all ``T``
at once (reverse, ES, PES) or chunk by chunk (forward mode).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax

from dlf_jax import measures, parallel
from dlf_jax.contracts import HypergradEstimator, LossProvider
from dlf_jax.student import Student

__all__ = ["HypergradEstimator", "EstimateContext"]


@dataclasses.dataclass(frozen=True)
class EstimateContext:
  """One outer step's segment, as an estimator sees it.

  Attributes:
    student: the :class:`~dlf_jax.student.Student`.
    teacher: the loss provider whose ``theta`` is being taught.
    measure: the smoothed dev measure M~.
    mesh: the data-parallel mesh (None: one device); batches from
      :meth:`batches` are already sharded over it.
    rng: this outer step's PRNG key (``fold_in(PRNGKey(seed), 3_000_000 +
      update)``), e.g. for ES perturbations.
    sampler: the episode's batch sampler (``segment(start, count) -> [count, B, ...]``).
    start: the student step the segment starts at.
    num_steps: ``T``, the segment's length.
    update: the outer step's index.
    dev_batches: dev batches ``[n, B_dev, ...]`` for ``dw_T``, prepared by the
      measure and sharded.
  """
  student: Student
  teacher: LossProvider
  measure: measures.Measure
  mesh: Any
  rng: jax.Array
  sampler: Any
  start: int
  num_steps: int
  update: int
  dev_batches: Any

  def batches(self, offset: int = 0, count: Optional[int] = None):
    """Training batches ``[count, B, ...]`` for steps ``start + offset ..`` (default: all ``T``).

    Batch ``i`` is a pure function of the run's seed and ``i``, so drawing a
    segment whole or in chunks gives the same batches.
    """
    count = self.num_steps - offset if count is None else count
    return parallel.shard_batches(self.sampler.segment(self.start + offset, count), self.mesh)
