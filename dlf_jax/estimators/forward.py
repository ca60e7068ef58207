"""Forward mode: the exact hypergradient at memory flat in ``T``.

See :mod:`dlf_jax.forward_hypergrad`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Optional

import jax
import jax.numpy as jnp

from dlf_jax import checks, forward_hypergrad
from dlf_jax import unroll as unroll_lib
from dlf_jax.hypergrad import HypergradResult

__all__ = ["ForwardMode", "DEFAULT_MAX_CHUNK_STEPS"]

DEFAULT_MAX_CHUNK_STEPS = 200


@dataclasses.dataclass(frozen=True)
class ForwardMode:
  """Forward-mode hypergradients, the segment streamed from the host in chunks.

  The same number as :class:`~dlf_jax.estimators.ReverseMode` up to rounding;
  memory independent of ``T`` (one chunk of batches on the device), cost ~``P``
  x the unroll: for small teachers (``P`` up to a few tens) and long horizons
  (a whole training run). Stateless.

  Attributes:
    chunk_steps: batches are drawn and processed in chunks of this many steps
      (None: ``min(T, 200)``).
    max_params: teachers with more parameters are refused (:meth:`check`).

  Raises:
    ValueError: ``chunk_steps`` not None or an integer >= 1; ``max_params`` not
      an integer >= 1.

  References:
    Franceschi et al., ICML 2017 (Forward-HG).
  """
  name: ClassVar[str] = "forward"
  chunk_steps: Optional[int] = None
  max_params: int = forward_hypergrad.DEFAULT_MAX_PARAMS

  def __post_init__(self):
    checks.check_int("ForwardMode.chunk_steps", self.chunk_steps, 1, allow_none=True)
    checks.check_int("ForwardMode.max_params", self.max_params, 1)

  def check(self, theta) -> None:
    """Raises ValueError if ``theta`` has more than ``max_params`` numbers."""
    forward_hypergrad.check_num_params(theta, self.max_params)

  def init_state(self, theta, student_state) -> None:
    del theta, student_state

  def estimate(self, ctx, theta, state, student_state):
    """The segment's hypergradient, its ``T`` steps drawn ``chunk_steps`` at a time."""
    init, chunk, readout = _compiled(ctx.student, ctx.teacher, ctx.measure)
    n_chunk = (
        min(ctx.num_steps, DEFAULT_MAX_CHUNK_STEPS)
        if self.chunk_steps is None else self.chunk_steps)
    carry = init(theta, student_state)
    parts = []
    for done in range(0, ctx.num_steps, n_chunk):
      carry, m = chunk(theta, carry, ctx.batches(done, min(n_chunk, ctx.num_steps - done)))
      unroll_lib.check_finite(m, ctx.start + done)
      parts.append(m)
    value, dtheta = readout(theta, carry, ctx.dev_batches)
    metrics = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *parts)
    return HypergradResult(
        dtheta=dtheta, dparams0=None, value=value, final_state=carry.state, metrics=metrics), state


_compiled = functools.lru_cache(maxsize=32)(forward_hypergrad.make_forward_fns)
