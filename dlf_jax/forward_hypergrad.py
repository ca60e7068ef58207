"""Forward-mode (exact) hypergradients: ``dM~(w_N)/dtheta`` at memory independent of ``N``.

Forward-mode differentiation through the unrolled training run (Forward-HG of
Franceschi et al. 2017). Alongside the student's carry ``z_t = (w_t,
opt_state_t)`` (its float leaves, as in :mod:`dlf_jax.hypergrad`) one
``lax.scan`` carries the tangent matrix ``J_t = dz_t / dtheta``, one tangent
per scalar of ``theta`` (``P`` of them, ``theta`` flattened with
:func:`jax.flatten_util.ravel_pytree`)::

    J_0     = 0                         (the student's start does not depend on theta)
    J_{t+1} = dF/dz_t . J_t + dF/dphi_t . dmu_theta(s_t)/dtheta       (t = 0 .. N-1)
    dtheta  = J_N^T dM~(f_{w_N}, D_dev)/dw_N                          (Eqn. 3, read out)

where ``z_{t+1} = F(z_t, phi_t)`` is the whole optimizer update of Eqn. (1)
and ``phi_t = mu_theta(s_t)``. Each step is one ``jax.jvp`` of ``F`` (the
student's gradient differentiated forward: Hessian-vector products in
``w``, plus the cross term in ``phi``), ``vmap``-ed over the ``P`` tangent
directions; the student's own step is computed once. The sum of Eqn. (5) and
the recursion of Eqn. (4) are thereby accumulated forward in time instead of
backward: the result is the same number as the reverse scan
(:func:`dlf_jax.hypergrad.hypergradient`) up to float rounding.

Conventions as in :mod:`dlf_jax.hypergrad`: the state features ``s_t`` and the
BatchNorm statistics are data (``stop_gradient``), so the three methods --
forward, reverse, ``jax.grad`` through the scan -- compute the same
hypergradient.

In :func:`dlf_jax.teach` this is :class:`dlf_jax.estimators.ForwardMode`:
exact; memory ~``2.5 x |w| x P`` floats, flat in ``N``, and the run is streamed
from the host in chunks (:func:`forward_chunk`), so a whole training run
(thousands of steps) is one hypergradient (no short-horizon bias). Cost grows
linearly with ``P``: for small teachers (``P`` up to a few tens) and long
horizons; otherwise :class:`~dlf_jax.estimators.ReverseMode` (cost independent
of ``P``, memory growing with ``N``). Measured time and memory:
``benchmarks/full_horizon.py`` and ``benchmarks/RESULTS.md``.

``dparams0`` (``dM~/dw_0``) is not available in forward mode (it would need
``|w|`` tangents): :class:`~dlf_jax.hypergrad.HypergradResult` carries
``dparams0=None``.

References:
  Franceschi, Donini, Frasconi, Pontil, "Forward and Reverse Gradient-Based
  Hyperparameter Optimization", ICML 2017 (Forward-HG).
  Wu et al., "Learning to Teach with Dynamic Loss Functions", NeurIPS 2018,
  Eqns. (3)-(5).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.flatten_util import ravel_pytree

from dlf_jax import measures
from dlf_jax.contracts import LossProvider
from dlf_jax.hypergrad import HypergradResult, merge_float_leaves, split_float_leaves
from dlf_jax.student import Student, StudentState
from dlf_jax.unroll import (StepMetrics, apply_step, check_batch_labels, check_finite_inputs,
                            check_unroll_batches, dev_measure)

__all__ = [
    "DEFAULT_MAX_PARAMS", "ForwardCarry", "num_teacher_params", "check_num_params",
    "init_forward_carry", "forward_chunk", "forward_readout", "forward_hypergradient",
    "make_forward_hypergradient_fn", "make_forward_fns"
]

DEFAULT_MAX_PARAMS = 256


@struct.dataclass
class ForwardCarry:
  """What the forward-mode scan carries between steps (and between host chunks).

  Attributes:
    state: the student's :class:`~dlf_jax.student.StudentState` ``z_t``.
    tangents: ``J_t = dz_t / dtheta``: a list with one entry per leaf of
      ``(params, opt_state)`` -- ``[P, *leaf.shape]`` for float leaves, ``None``
      for integer ones (e.g. Adam's step count), ``P`` the size of ``theta``.
  """
  state: StudentState
  tangents: Any


def num_teacher_params(theta: Any) -> int:
  """``P``: the number of scalars in ``theta``."""
  return int(sum(jnp.size(x) for x in jax.tree_util.tree_leaves(theta)))


def check_num_params(theta: Any, max_params: int = DEFAULT_MAX_PARAMS) -> int:
  """Returns ``P`` after checking ``P <= max_params``.

  Raises:
    ValueError: ``P > max_params`` (naming ``P``, the limit and the alternative).
  """
  p = num_teacher_params(theta)
  if p > max_params:
    raise ValueError(
        f"Forward-mode hypergradients carry one tangent per teacher parameter: this teacher "
        f"has P={p} parameters, above the limit max_params={max_params} (cost and memory "
        f"grow ~P x the unroll). Use estimator='reverse' (reverse mode, with "
        f"memory='checkpointed' for long unrolls), a smaller teacher, or raise max_params.")
  return p


def init_forward_carry(theta: Any, state: StudentState) -> ForwardCarry:
  """``(z_0, J_0 = 0)``: the carry at the start of the horizon.

  Args:
    theta: teacher parameters (only the size ``P`` and dtype are used).
    state: the student's carry at the first step of the horizon.

  Returns:
    :class:`ForwardCarry` with zero tangents ``[P, *leaf.shape]``.
  """
  p = num_teacher_params(theta)
  z = split_float_leaves((state.params, state.opt_state))[0]
  tangents = [None if x is None else jnp.zeros((p,) + jnp.shape(x), jnp.result_type(x)) for x in z]
  return ForwardCarry(state=state, tangents=tangents)


def _forward_step(student, teacher, theta, carry: ForwardCarry, batch):
  """One student step and its tangent update ``J_t -> J_{t+1}``."""
  state = carry.state
  flat_theta, unravel = ravel_pytree(theta)
  s = teacher.state_features(state.step, state.stats)  # data: stop_gradient inside
  z, rest, treedef = split_float_leaves((state.params, state.opt_state))
  idx = [i for i, x in enumerate(z) if x is not None]

  def f(zf, th):
    """``z'_float = F(z_float, mu_th(s))``, with the new state and metrics as aux."""
    full = list(z)
    for i, x in zip(idx, zf):
      full[i] = x
    params, opt_state = merge_float_leaves(full, rest, treedef)
    new, metrics = apply_step(student, teacher, teacher.phi(unravel(th), s),
                              state.replace(params=params, opt_state=opt_state), batch)
    z_new = split_float_leaves((new.params, new.opt_state))[0]
    return [z_new[i] for i in idx], (new, metrics)

  zf = [z[i] for i in idx]
  jf = [carry.tangents[i] for i in idx]
  eye = jnp.eye(flat_theta.size, dtype=flat_theta.dtype)

  def one_direction(j, e):
    return jax.jvp(f, (zf, flat_theta), (j, e), has_aux=True)

  # vmap over the P tangent directions; the primal step does not depend on them
  # and is computed once (out_axes=None).
  _, jf_new, (new, metrics) = jax.vmap(one_direction, out_axes=(None, 0, None))(jf, eye)
  tangents = [None] * len(z)
  for i, j in zip(idx, jf_new):
    tangents[i] = j
  return ForwardCarry(state=new, tangents=tangents), metrics


def forward_chunk(student: Student, teacher: LossProvider, theta: Any, carry: ForwardCarry,
                  batches) -> tuple[ForwardCarry, StepMetrics]:
  """Advances the student and its tangents over ``n`` steps (one ``lax.scan``).

  Call it repeatedly on consecutive chunks of a run (each one's host batches in
  turn): the result equals one call on the whole run.

  Args:
    student: the :class:`~dlf_jax.student.Student`.
    teacher: a :class:`~dlf_jax.teacher.Teacher`.
    theta: teacher parameters (``P`` scalars).
    carry: :class:`ForwardCarry` from :func:`init_forward_carry` or a previous chunk.
    batches: training batches, dict of ``[n, B, ...]`` arrays.

  Returns:
    ``(carry after n steps, StepMetrics with [n] leaves)``.

  Raises:
    ValueError: ``n <= 0``, inconsistent leading axes, NaN/inf or labels
      outside ``[0, C)`` in concrete (not traced) ``batches``.
  """
  check_unroll_batches(batches)
  check_finite_inputs(batches, "batches")  # concrete inputs only: skipped under jit
  check_batch_labels(batches, student, "batches")
  return jax.lax.scan(lambda c, b: _forward_step(student, teacher, theta, c, b), carry, batches)


def forward_readout(student: Student, measure: measures.Measure, theta: Any, carry: ForwardCarry,
                    dev_batches) -> tuple[jax.Array, Any]:
  """Eqn. (3) and the read-out ``dtheta = J_N^T dM~/dz_N``.

  Args:
    student: the :class:`~dlf_jax.student.Student`.
    measure: the smoothed dev measure M~.
    theta: teacher parameters (the structure of ``dtheta``).
    carry: the :class:`ForwardCarry` after the last step.
    dev_batches: dev batches, dict of ``[n, B_dev, ...]`` arrays (optional ``mask``).

  Returns:
    ``(M~(f_{w_N}, D_dev) float scalar, dtheta like theta)``.
  """
  final = carry.state
  flat_theta, unravel = ravel_pytree(theta)
  value, dparams = jax.value_and_grad(
      lambda p: dev_measure(student, measure, p, final.model_state, dev_batches))(
          final.params)
  dz = split_float_leaves((dparams, jax.tree_util.tree_map(jnp.zeros_like, final.opt_state)))[0]
  n_params = len(jax.tree_util.tree_leaves(final.params))
  dflat = jnp.zeros(flat_theta.shape, jnp.result_type(value))
  for j, d in zip(carry.tangents[:n_params], dz[:n_params]):  # opt_state: zero cotangent
    if j is not None:
      dflat = dflat + jnp.tensordot(j, d, axes=d.ndim).astype(dflat.dtype)
  return value, unravel(dflat.astype(flat_theta.dtype))


def forward_hypergradient(student: Student,
                          teacher: LossProvider,
                          measure: measures.Measure,
                          theta: Any,
                          state: StudentState,
                          batches,
                          dev_batches,
                          *,
                          max_params: int = DEFAULT_MAX_PARAMS) -> HypergradResult:
  """``dM~(f_{w_N}, D_dev)/dtheta`` over ``N`` unrolled steps by forward-mode differentiation.

  Args:
    student: the :class:`~dlf_jax.student.Student` (any optax optimizer; BatchNorm,
      augmentation and sharded batches are fine).
    teacher: a :class:`~dlf_jax.teacher.Teacher` (``num_classes`` must match).
    measure: the smoothed dev measure M~ (e.g. :class:`~dlf_jax.measures.ExpectedAccuracy`).
    theta: teacher parameters, ``P <= max_params`` scalars.
    state: the student's carry at the first unrolled step.
    batches: training batches, dict of ``[N, B, ...]`` arrays.
    dev_batches: dev batches, dict of ``[n, B_dev, ...]`` arrays (optional 0/1 ``mask``).
    max_params: refuse teachers with more parameters than this.

  Returns:
    :class:`~dlf_jax.hypergrad.HypergradResult` with ``dtheta`` (ascent direction
    if the measure is maximised), ``value``, ``final_state``, ``metrics [N]`` and
    ``dparams0=None`` (forward mode does not compute ``dM~/dw_0``).

  Raises:
    ValueError: ``P > max_params``, ``N <= 0``, class-count mismatch, NaN/inf
      or labels outside ``[0, C)`` in concrete (not traced) ``batches`` /
      ``dev_batches``.

  References:
    Franceschi et al., ICML 2017 (Forward-HG); Wu et al. 2018, Eqns. (3)-(5).
  """
  check_num_params(theta, max_params)
  check_finite_inputs(dev_batches, "dev_batches")
  check_batch_labels(dev_batches, student, "dev_batches")
  if teacher.num_classes is not None and teacher.num_classes != student.num_classes:
    raise ValueError(f"The teacher's loss has C={teacher.num_classes} classes but the student "
                     f"has num_classes={student.num_classes}.")
  carry, metrics = forward_chunk(student, teacher, theta, init_forward_carry(theta, state), batches)
  value, dtheta = forward_readout(student, measure, theta, carry, dev_batches)
  return HypergradResult(
      dtheta=dtheta, dparams0=None, value=value, final_state=carry.state, metrics=metrics)


def make_forward_hypergradient_fn(student: Student,
                                  teacher: LossProvider,
                                  measure: measures.Measure,
                                  *,
                                  max_params: int = DEFAULT_MAX_PARAMS):
  """``jax.jit``-compiled ``fn(theta, state, batches, dev_batches) -> HypergradResult``.

  See :func:`forward_hypergradient`. Compiled once per input shapes (the
  program size does not grow with ``N``).
  """
  return jax.jit(
      functools.partial(forward_hypergradient, student, teacher, measure, max_params=max_params))


def make_forward_fns(student: Student, teacher: LossProvider, measure: measures.Measure):
  """Jitted ``(init, chunk, readout)`` for streaming a long run from the host.

  ``init(theta, state) -> carry``; ``chunk(theta, carry, batches) -> (carry,
  metrics)``; ``readout(theta, carry, dev_batches) -> (value, dtheta)``. Call
  :func:`check_num_params` first. Example::

      init, chunk, readout = make_forward_fns(student, teacher, measure)
      carry = init(theta, state)
      for start in range(0, N, n):
        carry, metrics = chunk(theta, carry, sampler.segment(start, min(n, N - start)))
      value, dtheta = readout(theta, carry, dev_batches)
  """
  init = jax.jit(init_forward_carry)
  chunk = jax.jit(
      lambda theta, carry, batches: forward_chunk(student, teacher, theta, carry, batches))
  readout = jax.jit(lambda theta, carry, dev: forward_readout(student, measure, theta, carry, dev))
  return init, chunk, readout
