"""Eqns. (3)-(5): the teacher's hypergradient by a hand-written reverse scan.

Forward: the unroll of Eqn. (1) (:mod:`dlf_jax.unroll`). Reverse
(reverse-mode differentiation through the trajectory, Maclaurin et al. 2015)::

    dw_T = dM~(f_{w_T}, D_dev) / dw_T                                     (3)
    for t = T-1 .. 0:
        dtheta += -eta_t d^2 L_{mu_theta(s_t)}(f_{w_t}, B_t) / dtheta dw_t . dw_{t+1}   (5)
        dw_t    = dw_{t+1} - eta_t d^2 L_{mu_theta(s_t)}(f_{w_t}, B_t) / dw_t^2 . dw_{t+1}  (4)

Both hand-written methods work per step in ``phi_t`` (the loss parameters),
not in ``theta``: the reverse emits ``dphi_t = d z_{t+1} / d phi_t ^T dz_{t+1}``
for every ``t``, and the chain rule through the teacher,
``dtheta = sum_t (d mu_theta(s_t) / d theta)^T dphi_t`` (the outer sum of Eqn. 5),
is one batched (``vmap``) VJP after the reverse scan instead of ``T`` small
ones inside it.

Methods (``method=``):

* ``vjp`` (``auto``) -- any differentiable optax optimizer: the carry is
  ``z_t = (w_t, opt_state_t)`` (float leaves) and each reverse step is one VJP
  of the whole update ``z_{t+1} = F(z_t, phi_t)``, giving ``dz_t`` (Eqn. 4) and
  ``dphi_t`` (Eqn. 5) together -- both second-order terms from one VJP of the
  student gradient. The forward pass stores that VJP's residuals, reduced by a
  ``jax.checkpoint`` policy to matmul/convolution outputs (elementwise work is
  redone in the reverse), so nothing the forward computed is recomputed in full.
* ``eqn45`` -- literally (4)-(5) for memoryless optimizers (plain SGD, with
  or without coupled weight decay or a learning-rate schedule), as a reference
  form: the forward keeps ``z_t``; the reverse recomputes the step, takes the
  HVP as a ``jax.jvp`` of the ``jax.grad``-based update (forward-over-reverse)
  and the cross term as a VJP in ``phi``. It assumes the update's Jacobian in
  ``w`` is symmetric, which holds for ``w - eta (grad L + lambda w)``; use
  ``vjp`` for anything else (e.g. gradient clipping). Slower than ``vjp``.
* ``autodiff`` -- the reference: ``jax.grad`` through the same ``lax.scan``.

The two hand-written methods are :class:`Recorder` s -- what each forward step
records (``vjp``: :func:`_record_vjp_residuals`; ``eqn45``:
:func:`_record_carry`) and how the reverse step consumes it
(:func:`_eqn45_vjp_reverse_step`, :func:`_eqn45_hvp_reverse_step`) -- composed
with a *memory schedule* (:data:`MEMORY_SCHEDULES`) that decides which records
exist when. A new reverse-mode variant is a new :class:`Recorder` in
:data:`RECORDERS`; a new hypergradient *estimator* (another way to get
``dM~/dtheta``) is a new class in :mod:`dlf_jax.estimators` (this module's is
:class:`~dlf_jax.estimators.ReverseMode`).

Memory policies (``memory=``): ``store_all`` keeps every step's record
(``vjp``: the residuals above, ``eqn45``: the carry ``z_t``), ``T`` of them;
``checkpointed`` keeps the carry at the start of every chunk of ``k`` steps
(``k = ceil(sqrt(T))`` by default) and recomputes each chunk's records in the
reverse (``T/k`` carries + ``k`` records, one extra forward pass).
For ``autodiff``, ``checkpointed`` wraps each step in ``jax.checkpoint``.

State features that depend on ``w`` (running training loss/accuracy) are
recorded in the forward pass and treated as constants in the reverse, as in
the authors' demo; the reference path applies ``stop_gradient`` to them, so
all methods compute the same number. BatchNorm statistics are likewise data.

What the hypergradient reaches: ``dparams0 = dM~/dw_0`` (the student's
weights at the start of the segment) is computed and returned but not used by
:func:`dlf_jax.teach`; online teaching truncates the hypergradient at teaching-segment
boundaries (each outer step differentiates its own ``T`` steps only, the
student carried over from the previous segment is data).

Which estimator (``teach(..., estimator=...)``, :mod:`dlf_jax.estimators`):
``ReverseMode`` (this module) is exact at any teacher size P, its memory grows
with T (``store_all``) or as sqrt(T) (``checkpointed``): the default.
``ForwardMode`` (:mod:`dlf_jax.forward_hypergrad`) is exact with memory flat in
T at ~P x the unroll's cost: small teachers over long horizons.
``AntitheticES`` / ``PES`` (:mod:`dlf_jax.evolution`) take any reward at a noisy
estimate. Measured costs: ``benchmarks/hypergrad.py``, ``benchmarks/full_horizon.py``
and ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple, Optional, get_args

import jax
import jax.numpy as jnp
from flax import struct

from dlf_jax import checks, measures
from dlf_jax.contracts import LossProvider, Memory, Method
from dlf_jax.student import Student, StudentState
from dlf_jax.unroll import (StepMetrics, apply_step, check_batch_labels, check_finite_inputs,
                            check_unroll_batches, dev_measure, inner_step)

__all__ = [
    "METHODS", "MEMORY_POLICIES", "HypergradResult", "hypergradient", "make_hypergradient_fn",
    "default_checkpoint_every", "resolve_method", "split_float_leaves", "merge_float_leaves",
    "Recorder", "RECORDERS", "MEMORY_SCHEDULES"
]

METHODS: tuple[Method, ...] = get_args(Method)
MEMORY_POLICIES: tuple[Memory, ...] = get_args(Memory)


@struct.dataclass
class HypergradResult:
  """Output of :func:`hypergradient`.

  Attributes:
    dtheta: ``dM~/dtheta``, a pytree like ``theta`` (ascent direction if the
      measure is maximised).
    dparams0: ``dM~/dw_0``, a pytree like the student's params.
    value: ``M~(f_{w_T}, D_dev)``, float scalar.
    final_state: the student's carry after ``T`` steps.
    metrics: :class:`~dlf_jax.unroll.StepMetrics` with ``[T]`` leaves.
  """
  dtheta: Any
  dparams0: Any
  value: jax.Array
  final_state: StudentState
  metrics: StepMetrics


def _is_float(x) -> bool:
  return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def split_float_leaves(tree):
  """``(float leaves, other leaves, treedef)`` of ``tree``.

  The differentiated part of a carry: float leaves (integer leaves replaced by
  None) and the rest (float leaves replaced by None). Inverse:
  :func:`merge_float_leaves`.
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  diff = [x if _is_float(x) else None for x in leaves]
  rest = [None if _is_float(x) else x for x in leaves]
  return diff, rest, treedef


def merge_float_leaves(diff, rest, treedef):
  """Inverse of :func:`split_float_leaves`."""
  return treedef.unflatten([d if d is not None else r for d, r in zip(diff, rest)])


def resolve_method(method: str, opt_state: Any) -> Method:
  """``auto`` -> ``vjp`` (exact for every optimizer and the fastest path).

  Raises:
    ValueError: unknown method, or ``eqn45`` with an optimizer that has state.
  """
  if method not in METHODS:
    raise ValueError(f"Unknown hypergradient method {method!r}; choose one of {METHODS}.")
  memoryless = not any(_is_float(x) for x in jax.tree_util.tree_leaves(opt_state))
  if method == "auto":
    return "vjp"
  if method == "eqn45" and not memoryless:
    raise ValueError("method='eqn45' is Eqns. (4)-(5) for plain SGD; this student's "
                     "optimizer carries state (momentum/Adam): use method='vjp'.")
  return method


def default_checkpoint_every(num_steps: int) -> int:
  """``k = ceil(sqrt(T))``, the memory-optimal checkpoint spacing."""
  return max(1, math.ceil(math.sqrt(num_steps)))


def _save_matmuls(prim, *_, **__) -> bool:
  """``jax.checkpoint`` policy: keep matmul/convolution outputs, recompute the rest."""
  return prim.name in ("dot_general", "conv_general_dilated")


def _transition(student, teacher, state: StudentState, batch):
  """``G(z_diff, phi) -> (z'_diff, (new state, metrics))`` of one step, the rest fixed."""
  z, rest, treedef = split_float_leaves((state.params, state.opt_state))

  def g(z, phi):
    params, opt_state = merge_float_leaves(z, rest, treedef)
    new, metrics = apply_step(student, teacher, phi,
                              state.replace(params=params, opt_state=opt_state), batch)
    return split_float_leaves((new.params, new.opt_state))[0], (new, metrics)

  return g, z


def _teacher_output(teacher: LossProvider, theta, state: StudentState):
  """``(s_t, phi_t = mu_theta(s_t))``."""
  s = teacher.state_features(state.step, state.stats)
  return s, teacher.phi(theta, s)


def _plain_step(student, teacher, theta, state, batch):
  """Forward step that keeps only ``s_t`` (for the batched teacher VJP), no record."""
  s, phi = _teacher_output(teacher, theta, state)
  new, metrics = apply_step(student, teacher, phi, state, batch)
  return new, (s, metrics)


def _record_vjp_residuals(student, teacher, theta, state, batch):
  """``vjp`` forward step: also returns its VJP in ``(z_t, phi_t)`` and ``s_t``.

  The VJP is a pytree of residuals (storable in a scan). Under the
  :func:`_save_matmuls` policy it keeps only matmul/convolution outputs (and the
  inputs those need); elementwise work is redone in the reverse, which is cheaper
  than writing and reading it back (measured: -35% memory, -5% time on the MLP).
  """
  s, phi = _teacher_output(teacher, theta, state)
  g, z = _transition(student, teacher, state, batch)
  g = jax.checkpoint(g, policy=_save_matmuls)
  _, vjp_fn, (new, metrics) = jax.vjp(g, z, phi, has_aux=True)
  return new, ((vjp_fn, s), metrics)


def _eqn45_vjp_reverse_step(student, teacher, theta, dz, record, batch):
  """Eqns. (4)-(5) for one step as one VJP of the update: ``dz_{t+1} -> (dz_t, dphi_t)``.

  The recorded VJP of ``z_{t+1} = F(z_t, phi_t)`` applied to ``dz_{t+1}`` gives
  ``dz_t`` (Eqn. 4: ``dw_{t+1} - eta H dw_{t+1}`` for plain SGD) and ``dphi_t``
  (Eqn. 5 before the chain rule through ``mu_theta``) together, for any optax
  optimizer. Nothing is recomputed but the elementwise work the residuals left out.
  """
  del student, teacher, theta, batch
  vjp_fn, _ = record
  return vjp_fn(dz)


def _record_carry(student, teacher, theta, state, batch):
  """``eqn45`` forward step: keeps ``(z_t's state, s_t)`` for a recomputing reverse."""
  s, phi = _teacher_output(teacher, theta, state)
  new, metrics = apply_step(student, teacher, phi, state, batch)
  return new, ((state, s), metrics)


def _eqn45_hvp_reverse_step(student, teacher, theta, dz, record, batch):
  """Eqns. (4)-(5) literally, as two products: ``dz_{t+1} -> (dz_t, dphi_t)``.

  Recomputes the step from the recorded carry; Eqn. (4)'s Hessian-vector
  product is a ``jax.jvp`` of the gradient-based update (forward-over-reverse),
  Eqn. (5)'s cross term ``-eta d^2 L_phi / dphi dw . dw_{t+1}`` a VJP in
  ``phi`` (before the chain rule through ``mu_theta``, which
  :func:`hypergradient` applies for all ``t`` at once).
  """
  state, s = record
  phi = teacher.phi(theta, s)
  g_aux, z = _transition(student, teacher, state, batch)
  g = lambda z_, phi_: g_aux(z_, phi_)[0]
  # Eqn. (4): dw_t = dw_{t+1} - eta H dw_{t+1}, as a jvp of the grad-based update.
  dz_prev = jax.jvp(lambda z_: g(z_, phi), (z,), (dz,))[1]
  # Eqn. (5): -eta d^2L/dphi dw . dw_{t+1}, a vjp in phi.
  dphi = jax.vjp(lambda p: g(z, p), phi)[1](dz)[0]
  return dz_prev, dphi


@dataclasses.dataclass(frozen=True)
class Recorder:
  """A hand-written reverse method: what the forward records, how the reverse uses it.

  Attributes:
    record: ``(student, teacher, theta, state_t, batch_t) -> (state_{t+1},
      ((payload_t, s_t), metrics_t))``, the forward step and what it keeps.
    reverse: ``(student, teacher, theta, dz_{t+1}, (payload_t, s_t), batch_t)
      -> (dz_t, dphi_t)``, Eqns. (4)-(5) for one step, ``dz`` over the float
      leaves of ``(params, opt_state)``.
  """
  record: Callable
  reverse: Callable


RECORDERS = {
    "vjp": Recorder(record=_record_vjp_residuals, reverse=_eqn45_vjp_reverse_step),
    "eqn45": Recorder(record=_record_carry, reverse=_eqn45_hvp_reverse_step),
}


class _Steps(NamedTuple):
  """A recorder's step functions with ``(student, teacher, theta)`` bound."""
  record: Callable  # (state_t, batch_t) -> (state_{t+1}, ((payload_t, s_t), metrics_t))
  reverse: Callable  # (dz_{t+1}, (payload_t, s_t), batch_t) -> (dz_t, dphi_t)
  plain: Callable  # (state_t, batch_t) -> (state_{t+1}, (s_t, metrics_t))


def _slice_steps(batches, start, length):
  """``batches[start:start + length]`` along the unroll axis (``start`` may be traced)."""
  return jax.tree_util.tree_map(lambda x: jax.lax.dynamic_slice_in_dim(x, start, length), batches)


def _join_chunks(tree):
  """``[n, k, ...] -> [n * k, ...]`` for every leaf.

  The size is explicit: a leaf may be empty, e.g. the state features of a teacher
  with ``features=()``.
  """
  return jax.tree_util.tree_map(lambda x: x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]), tree)


def _concat_steps(a, b):
  return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y]), a, b)


def _reverse_scan(reverse, dz, records, batches):
  """Reverse scan over one stretch of steps: ``dz_end -> (dz_start, dphi [len])``."""
  return jax.lax.scan(lambda d, xs: reverse(d, *xs), dz, (records, batches), reverse=True)


def _store_all_schedule(steps: _Steps, state, batches, num_steps: int, k: int):
  """``store_all``: the forward keeps all ``T`` records; the reverse scans them.

  Returns:
    ``(final state, s [T, S], metrics [T], reverse)`` with ``reverse(dz_T) ->
    (dz_0, dphi [T])``.
  """
  del num_steps, k
  final, (records, metrics) = jax.lax.scan(steps.record, state, batches)
  feats = records[1]
  reverse = lambda dz: _reverse_scan(steps.reverse, dz, records, batches)
  return final, feats, metrics, reverse


def _checkpointed_schedule(steps: _Steps, state, batches, num_steps: int, k: int):
  """``checkpointed``: keep the carry every ``k`` steps, recompute records in the reverse.

  The forward runs plain steps in chunks of ``k`` (``T // k`` chunks and a tail
  of ``T mod k``), keeping each chunk's starting carry; the reverse re-runs
  each chunk's recording forward before scanning it backwards, last chunk first.

  Returns:
    as :func:`_store_all_schedule`.
  """
  # Chunk starts every k steps; the batches are sliced inside the loop (no copy).
  n_full, rem = divmod(num_steps, k)

  def seg_fwd(s, i):
    new, (feats, metrics) = jax.lax.scan(steps.plain, s, _slice_steps(batches, i * k, k))
    return new, (s, feats, metrics)

  mid, (seg_starts, feats, metrics) = jax.lax.scan(seg_fwd, state, jnp.arange(n_full))
  feats, metrics = _join_chunks(feats), _join_chunks(metrics)
  final = mid
  if rem:
    tail = _slice_steps(batches, n_full * k, rem)
    final, (tail_feats, metrics_tail) = jax.lax.scan(steps.plain, mid, tail)
    feats, metrics = _concat_steps(feats, tail_feats), _concat_steps(metrics, metrics_tail)

  def rev_recompute(dz, start, seg_batches):
    _, (records, _) = jax.lax.scan(steps.record, start, seg_batches)
    return _reverse_scan(steps.reverse, dz, records, seg_batches)

  def reverse(dz):
    dphis_tail = None
    if rem:
      dz, dphis_tail = rev_recompute(dz, mid, _slice_steps(batches, n_full * k, rem))
    dz0, dphis = jax.lax.scan(
        lambda d, xs: rev_recompute(d, xs[0], _slice_steps(batches, xs[1] * k, k)),
        dz, (seg_starts, jnp.arange(n_full)),
        reverse=True)
    dphis = _join_chunks(dphis)
    if dphis_tail is not None:
      dphis = _concat_steps(dphis, dphis_tail)
    return dz0, dphis

  return final, feats, metrics, reverse


MEMORY_SCHEDULES = {"store_all": _store_all_schedule, "checkpointed": _checkpointed_schedule}


def _check_arguments(student, teacher, state, batches, dev_batches, method, memory,
                     checkpoint_every) -> tuple[int, Method, int]:
  """``(T, resolved method, k)`` after the checks :func:`hypergradient` documents."""
  num_steps = check_unroll_batches(batches)
  check_finite_inputs(batches, "batches")  # concrete inputs only: skipped under jit
  check_finite_inputs(dev_batches, "dev_batches")
  if memory not in MEMORY_POLICIES:
    raise ValueError(f"Unknown memory policy {memory!r}; choose one of {MEMORY_POLICIES}.")
  check_batch_labels(batches, student, "batches")  # concrete labels only: skipped under jit
  check_batch_labels(dev_batches, student, "dev_batches")
  if teacher.num_classes is not None and teacher.num_classes != student.num_classes:
    raise ValueError(f"The teacher's loss has C={teacher.num_classes} classes but the student "
                     f"has num_classes={student.num_classes}.")
  method = resolve_method(method, state.opt_state)
  k = checks.check_int("checkpoint_every", checkpoint_every, 1, allow_none=True)
  k = default_checkpoint_every(num_steps) if k is None else k
  return num_steps, method, min(k, num_steps)


def _dev_cotangent(objective, final: StudentState):
  """Eqn. (3): ``(M~, dz_T)``, ``dw_T`` from the dev measure, zero for the optimizer state."""
  value, dparams_t = jax.value_and_grad(objective)(final.params, final.model_state)
  dz = split_float_leaves((dparams_t, jax.tree_util.tree_map(jnp.zeros_like, final.opt_state)))[0]
  return value, dz


def _teacher_chain_rule(teacher: LossProvider, theta, feats, dphis):
  """Eqn. (5)'s chain rule through the teacher, for all ``t`` in one batched VJP.

  ``dtheta = sum_t (d phi_t / d theta)^T dphi_t`` with ``phi_t = mu_theta(s_t)``,
  ``feats`` the recorded ``s [T, S]``.
  """
  _, teacher_vjp = jax.vjp(lambda th: jax.vmap(lambda s: teacher.phi(th, s))(feats), theta)
  return teacher_vjp(dphis)[0]


def hypergradient(student: Student,
                  teacher: LossProvider,
                  measure: measures.Measure,
                  theta: Any,
                  state: StudentState,
                  batches,
                  dev_batches,
                  *,
                  method: Method = "auto",
                  memory: Memory = "store_all",
                  checkpoint_every: Optional[int] = None) -> HypergradResult:
  """Unrolls ``T`` student steps and returns ``dM~/dtheta`` (Algorithm 1, inner part).

  Args:
    student: the :class:`~dlf_jax.student.Student`.
    teacher: a :class:`~dlf_jax.teacher.Teacher` (``num_classes`` must match).
    measure: the smoothed dev measure M~ (e.g. :class:`~dlf_jax.measures.ExpectedAccuracy`).
    theta: teacher parameters.
    state: the student's carry at the first unrolled step.
    batches: training batches, dict of ``[T, B, ...]`` arrays.
    dev_batches: dev batches, dict of ``[n, B_dev, ...]`` arrays (optional
      0/1 ``mask`` for padding); ``dw_T`` is the gradient of their mean.
    method: ``auto`` | ``eqn45`` | ``vjp`` | ``autodiff`` (module docstring).
    memory: ``store_all`` | ``checkpointed``.
    checkpoint_every: ``k`` of ``checkpointed`` (default ``ceil(sqrt(T))``).

  Returns:
    :class:`HypergradResult`.

  Raises:
    ValueError: unknown method/memory, ``T <= 0``, ``checkpoint_every < 1``,
      ``eqn45`` with a stateful optimizer, class-count mismatch, NaN/inf or
      labels outside ``[0, C)`` in concrete (not traced) ``batches`` /
      ``dev_batches`` (under ``jit``, e.g. :func:`make_hypergradient_fn`, the
      caller checks them: :func:`dlf_jax.teach` does).

  References:
    Wu et al. 2018, Eqns. (3)-(5) and Algorithm 1; Maclaurin, Duvenaud, Adams,
    "Gradient-based Hyperparameter Optimization through Reversible Learning", 2015.
  """
  num_steps, method, k = _check_arguments(student, teacher, state, batches, dev_batches, method,
                                          memory, checkpoint_every)
  objective = lambda params, model_state: dev_measure(student, measure, params, model_state,
                                                      dev_batches)
  if method == "autodiff":
    return _autodiff(student, teacher, theta, state, batches, objective, memory == "checkpointed")

  recorder = RECORDERS[method]
  bind = lambda fn: functools.partial(fn, student, teacher, theta)
  steps = _Steps(
      record=bind(recorder.record), reverse=bind(recorder.reverse), plain=bind(_plain_step))
  final, feats, metrics, reverse = MEMORY_SCHEDULES[memory](steps, state, batches, num_steps, k)
  value, dz = _dev_cotangent(objective, final)  # Eqn. (3)
  dz0, dphis = reverse(dz)  # Eqns. (4)-(5), per step
  dtheta = _teacher_chain_rule(teacher, theta, feats, dphis)  # Eqn. (5), through mu

  _, rest, treedef = split_float_leaves((state.params, state.opt_state))
  dparams0 = merge_float_leaves(dz0, rest, treedef)[0]
  return HypergradResult(
      dtheta=dtheta, dparams0=dparams0, value=value, final_state=final, metrics=metrics)


def _autodiff(student, teacher, theta, state, batches, objective, remat):
  """Reference: ``jax.grad`` through the forward ``lax.scan``."""

  def run(theta, params0):
    step = lambda s, b: inner_step(student, teacher, theta, s, b)
    if remat:
      step = jax.checkpoint(step)
    final, metrics = jax.lax.scan(step, state.replace(params=params0), batches)
    return objective(final.params, final.model_state), (final, metrics)

  (value, (final, metrics)), (dtheta, dparams0) = jax.value_and_grad(
      run, argnums=(0, 1), has_aux=True)(theta, state.params)
  return HypergradResult(
      dtheta=dtheta, dparams0=dparams0, value=value, final_state=final, metrics=metrics)


def make_hypergradient_fn(student: Student,
                          teacher: LossProvider,
                          measure: measures.Measure,
                          *,
                          method: Method = "auto",
                          memory: Memory = "store_all",
                          checkpoint_every: Optional[int] = None):
  """``jax.jit``-compiled ``fn(theta, state, batches, dev_batches) -> HypergradResult``.

  Compiled once per input shapes; the unroll is a scan, so compile time does not
  grow with ``T``. See :func:`hypergradient` for the arguments.
  """
  fn = functools.partial(
      hypergradient,
      student,
      teacher,
      measure,
      method=method,
      memory=memory,
      checkpoint_every=checkpoint_every)
  return jax.jit(fn)
