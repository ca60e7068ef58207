"""Antithetic evolution strategies over one segment (:func:`dlf_jax.evolution.es_gradient`)."""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Optional

from dlf_jax import evolution

__all__ = ["AntitheticES"]


@dataclasses.dataclass(frozen=True)
class AntitheticES:
  """A zero-order estimate from ``population`` perturbed students (``population / 2`` pairs).

  Forward unrolls only: any scalar reward (``reward``; e.g.
  :func:`dlf_jax.evolution.dev_accuracy_reward`), memory flat in ``T``; a noisy
  estimate whose error grows as ``(P + 1) / (population / 2)``. The students
  share the segment's batches and start state; a fresh perturbation per outer
  step (the context's ``rng``). Stateless.

  Attributes:
    population: even number of perturbed students.
    sigma: perturbation scale of ``theta``, > 0.
    reward: ``reward(params, model_state, dev_batches) -> scalar`` (None: the
      measure's dev mean).
    chunk_size: None: the population as one ``vmap``; ``k``: ``k`` at a time
      (``1``: one after another, one student's memory).

  Raises:
    ValueError: odd or too small population, ``sigma <= 0``, ``chunk_size < 1``.

  References:
    Salimans et al. 2017 (antithetic ES).
  """
  name: ClassVar[str] = "es"
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

  def init_state(self, theta, student_state) -> None:
    del theta, student_state

  def estimate(self, ctx, theta, state, student_state):
    """The ES estimate of the segment; ``final_state`` is the unperturbed student's."""
    fn = _compiled(self, ctx.student, ctx.teacher, ctx.measure)
    return fn(theta, student_state, ctx.batches(), ctx.dev_batches, ctx.rng), state


@functools.lru_cache(maxsize=32)
def _compiled(est: AntitheticES, student, teacher, measure):
  return evolution.make_es_gradient_fn(
      student,
      teacher,
      measure,
      population=est.population,
      sigma=est.sigma,
      reward=est.reward,
      chunk_size=est.chunk_size)
