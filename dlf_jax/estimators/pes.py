"""Persistent evolution strategies across an episode's segments.

See :func:`dlf_jax.evolution.pes_step`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Optional

import jax

from dlf_jax import evolution
from dlf_jax.hypergrad import HypergradResult
from dlf_jax.unroll import unroll

__all__ = ["PES"]


@dataclasses.dataclass(frozen=True)
class PES:
  """Persistent ES: each particle continues its own student across the episode's segments.

  The estimator state is a :class:`dlf_jax.evolution.PESState` (``population``
  particles and their accumulated perturbations); :meth:`init_state` starts it
  afresh whenever :func:`dlf_jax.teach` starts a new student (all particles at
  the new student, accumulators zero, as :func:`~dlf_jax.evolution.reset_pes_state`),
  and it rides in ``TeachState.estimator_state`` between segments, so a run
  resumed mid-episode continues the same particles. The estimate at segment
  ``k`` reaches every step since the episode began (unbiased for the full
  horizon; no short-horizon truncation), at more variance than
  :class:`~dlf_jax.estimators.AntitheticES`. The unperturbed student (the one
  ``teach`` carries and reports) is unrolled alongside; ``value`` is its reward.

  Attributes:
    population: even number of particles (``population / 2`` antithetic pairs).
    sigma: perturbation scale, > 0 (fixed within an episode).
    reward, chunk_size: as :class:`~dlf_jax.estimators.AntitheticES`.

  Raises:
    ValueError: odd or too small population, ``sigma <= 0``, ``chunk_size < 1``.

  References:
    Vicol, Metz, Sohl-Dickstein, ICML 2021.
  """
  name: ClassVar[str] = "pes"
  population: int = 8
  sigma: float = 0.01
  reward: Optional[evolution.Reward] = None
  chunk_size: Optional[int] = None

  def __post_init__(self):
    evolution.check_population(self.population)
    evolution.check_sigma(self.sigma)
    evolution.check_chunk_size(self.chunk_size)

  def check(self, theta) -> None:
    del theta

  def init_state(self, theta, student_state) -> evolution.PESState:
    """``population`` copies of the episode's first student, zero accumulators."""
    return evolution.init_pes_state(student_state, self.population, theta)

  def estimate(self, ctx, theta, state, student_state):
    """One PES truncation (the segment) and the unperturbed student's unroll.

    Raises:
      ValueError: ``state`` is None mid-episode (resume from a ``TeachState``
        that carries ``estimator_state``).
    """
    if state is None:
      raise ValueError("PES needs its particles (TeachState.estimator_state) to continue an "
                       "episode; resume from the TeachState that teach returned or "
                       "checkpointed, or start at a new episode.")
    fn = _compiled(self, ctx.student, ctx.teacher, ctx.measure)
    return fn(theta, state, student_state, ctx.batches(), ctx.dev_batches, ctx.rng)


@functools.lru_cache(maxsize=32)
def _compiled(est: PES, student, teacher, measure):
  reward_fn = evolution.resolve_reward(student, measure, est.reward)

  @jax.jit
  def step(theta, pes_state, student_state, batches, dev_batches, rng):
    dtheta, pes_state, _ = evolution.pes_step(
        student,
        teacher,
        measure,
        theta,
        pes_state,
        batches,
        dev_batches,
        rng,
        sigma=est.sigma,
        reward=est.reward,
        chunk_size=est.chunk_size)
    final, metrics = unroll(student, teacher, theta, student_state, batches)
    value = reward_fn(final.params, final.model_state, dev_batches)
    return HypergradResult(
        dtheta=dtheta, dparams0=None, value=value, final_state=final, metrics=metrics), pes_state

  return step
