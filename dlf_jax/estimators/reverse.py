"""Reverse mode (Eqns. 3-5): the hand-written reverse scan of :mod:`dlf_jax.hypergrad`."""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Optional

from dlf_jax import checks, hypergrad
from dlf_jax.contracts import Memory, Method

__all__ = ["ReverseMode"]


@dataclasses.dataclass(frozen=True)
class ReverseMode:
  """The exact hypergradient by the reverse scan (:func:`dlf_jax.hypergrad.hypergradient`).

  Cost ~3-6x the forward unroll whatever the teacher's size; memory grows with
  ``T`` (``store_all``) or as ``sqrt(T)`` (``checkpointed``). The default of
  :func:`dlf_jax.teach`. Stateless.

  Attributes:
    method: ``auto`` | ``vjp`` | ``eqn45`` | ``autodiff`` (:data:`dlf_jax.hypergrad.METHODS`).
    memory: ``store_all`` | ``checkpointed`` (:data:`dlf_jax.hypergrad.MEMORY_POLICIES`).
    checkpoint_every: ``k`` of ``checkpointed`` (None: ``ceil(sqrt(T))``).

  Raises:
    ValueError: an unknown method or memory policy, ``checkpoint_every`` not
      None or an integer >= 1.

  References:
    Wu et al. 2018, Eqns. (3)-(5).
  """
  name: ClassVar[str] = "reverse"
  method: Method = "auto"
  memory: Memory = "store_all"
  checkpoint_every: Optional[int] = None

  def __post_init__(self):
    if self.method not in hypergrad.METHODS:
      raise ValueError(f"Unknown hypergradient method {self.method!r}; choose one of "
                       f"{hypergrad.METHODS}.")
    if self.memory not in hypergrad.MEMORY_POLICIES:
      raise ValueError(f"Unknown memory policy {self.memory!r}; choose one of "
                       f"{hypergrad.MEMORY_POLICIES}.")
    checks.check_int("ReverseMode.checkpoint_every", self.checkpoint_every, 1, allow_none=True)

  def check(self, theta) -> None:
    del theta

  def init_state(self, theta, student_state) -> None:
    del theta, student_state

  def estimate(self, ctx, theta, state, student_state):
    """The segment's exact hypergradient; the estimator state stays None."""
    fn = _compiled(self, ctx.student, ctx.teacher, ctx.measure)
    return fn(theta, student_state, ctx.batches(), ctx.dev_batches), state


@functools.lru_cache(maxsize=32)
def _compiled(est: ReverseMode, student, teacher, measure):
  return hypergrad.make_hypergradient_fn(
      student,
      teacher,
      measure,
      method=est.method,
      memory=est.memory,
      checkpoint_every=est.checkpoint_every)
