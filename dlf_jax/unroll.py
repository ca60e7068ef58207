"""Eqn. (1): the student's inner steps and their forward unroll (``lax.scan``).

One inner step at time ``t``::

    s_t     = state features (progress, running train loss/accuracy, dev accuracy)
    phi_t   = mu_theta(s_t)
    g_t     = grad_w L_{phi_t}(f_{w_t}, B_t)
    z_{t+1} = optimizer update of z_t = (w_t, opt_state_t) with g_t

For plain SGD the update is ``w_{t+1} = w_t - eta_t g_t`` (Eqn. 1). BatchNorm
statistics, the PRNG key, the step counter and the running statistics ride in
the carry (:class:`~dlf_jax.student.StudentState`) under ``stop_gradient``.

The loss-provider argument ``teacher`` is a
:class:`~dlf_jax.contracts.LossProvider` (``state_features``, ``phi``,
``loss``, ``ema_decay``): a :class:`~dlf_jax.teacher.Teacher` or a fixed
loss of :mod:`dlf_jax.losses.baselines` (e.g. :class:`~dlf_jax.losses.CrossEntropyLoss`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from dlf_jax import checks, losses, measures, state_features
from dlf_jax.contracts import LossProvider
from dlf_jax.student import Student, StudentState

__all__ = [
    "StepMetrics", "apply_step", "inner_step", "unroll", "dev_measure", "evaluate", "check_finite",
    "check_unroll_batches", "check_finite_inputs", "check_batch_labels"
]


@struct.dataclass
class StepMetrics:
  """Per-step diagnostics (float scalars; ``[T]`` after a scan).

  Attributes:
    loss: the training loss that was minimised (teacher's or baseline's).
    cross_entropy: the batch cross-entropy (nats), whatever the loss.
    accuracy: the batch accuracy in [0, 1].
    grad_norm: global L2 norm of the student gradient.
  """
  loss: jax.Array
  cross_entropy: jax.Array
  accuracy: jax.Array
  grad_norm: jax.Array


def apply_step(student: Student, teacher: LossProvider, phi: Any, state: StudentState,
               batch) -> tuple[StudentState, StepMetrics]:
  """One optimizer step of the student with a given ``phi_t`` (Eqn. 1).

  Args:
    student: the :class:`~dlf_jax.student.Student`.
    teacher: the loss provider (``teacher.loss(phi, outputs, labels, mask)``).
    phi: loss parameters ``phi_t`` (None for baselines).
    state: the carry at step ``t``.
    batch: one batch ``B_t`` (dict of ``[B, ...]`` arrays).

  Returns:
    ``(state at t + 1, StepMetrics)``. ``stats`` and ``model_state`` of the new
    state are ``stop_gradient``-ed: they are data, not functions of ``w``.
  """
  rng = jax.random.fold_in(state.rng, state.step)
  if student.augment is not None:
    batch = jax.lax.stop_gradient(student.augment(jax.random.fold_in(rng, 1), batch))
  labels, mask = student.labels(batch), student.mask(batch)

  def loss_fn(params):
    outputs, new_model_state = student.apply(params, state.model_state, batch, train=True, rng=rng)
    return teacher.loss(phi, outputs, labels, mask), (outputs.logits, new_model_state)

  (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = student.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  logits = jax.lax.stop_gradient(logits)
  ce = losses.cross_entropy(logits, labels, mask)
  acc = measures.accuracy(logits, labels, mask)
  stats = state_features.update_running_stats(state.stats, ce, acc, teacher.ema_decay)
  metrics = StepMetrics(
      loss=jax.lax.stop_gradient(loss),
      cross_entropy=ce,
      accuracy=acc,
      grad_norm=jax.lax.stop_gradient(optax.tree.norm(grads)))
  new_state = dataclasses.replace(
      state,
      params=params,
      opt_state=opt_state,
      model_state=new_model_state,
      step=state.step + 1,
      stats=stats)
  return new_state, metrics


def inner_step(student: Student, teacher: LossProvider, theta: Any, state: StudentState,
               batch) -> tuple[StudentState, StepMetrics]:
  """``phi_t = mu_theta(s_t)``, then :func:`apply_step`."""
  phi = teacher.phi(theta, teacher.state_features(state.step, state.stats))
  return apply_step(student, teacher, phi, state, batch)


def check_unroll_batches(batches) -> int:
  """Returns ``T`` of batches with a leading ``[T, B, ...]`` axis.

  Raises:
    ValueError: no arrays, ``T <= 0``, or leaves disagreeing on ``T``.
  """
  leaves = jax.tree_util.tree_leaves(batches)
  if not leaves:
    raise ValueError("The unroll got no batches: pass a dict of [T, B, ...] arrays.")
  ts = {int(np.shape(x)[0]) if np.ndim(x) else 0 for x in leaves}
  if len(ts) != 1:
    raise ValueError(f"All batch arrays need the same leading unroll axis T; got {sorted(ts)}.")
  t = ts.pop()
  if t <= 0:
    raise ValueError(f"The number of unrolled steps T must be >= 1, got T={t}.")
  return t


def check_finite_inputs(tree, name: str) -> None:
  """Raises if a concrete float leaf of ``tree`` holds NaN/inf; skips traced leaves (jit).

  Args:
    tree: a pytree of arrays (e.g. the ``[T, B, ...]`` training batches).
    name: how the caller calls ``tree`` (``'batches'``), for the message.

  Raises:
    ValueError: naming the first bad leaf (e.g. ``batches['x']``) and the fix.
  """
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if isinstance(x, jax.core.Tracer) or not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
      continue
    xp = jnp if isinstance(x, jax.Array) else np  # device arrays stay on device
    with jax.ensure_compile_time_eval():  # a concrete array closed over by a jit trace
      if bool(xp.all(xp.isfinite(x))):
        continue
      bad = int(np.size(x)) - int(xp.sum(xp.isfinite(x)))
    raise ValueError(f"{name}{jax.tree_util.keystr(path)} holds {bad} NaN/inf value(s) of "
                     f"{int(np.size(x))}: the result would be NaN. Remove or impute them (e.g. "
                     "np.nan_to_num) before the call.")


def check_batch_labels(tree, student: Student, name: str) -> None:
  """Raises if the concrete labels of batches are outside ``[0, C)``; skips traced ones (jit).

  The host check of the public functions that take ready batches
  (:func:`unroll`, :func:`evaluate`, :func:`dev_measure`,
  :func:`dlf_jax.hypergradient`, :mod:`dlf_jax.forward_hypergrad`,
  :mod:`dlf_jax.evolution`): out of range, a label ``C`` gives a NaN measure
  with a finite hypergradient and ``-1`` is read as class ``C - 1``. Under
  ``jit`` (e.g. :func:`~dlf_jax.hypergrad.make_hypergradient_fn`) the labels
  are traced and cannot be read: :func:`dlf_jax.teach` and
  :func:`dlf_jax.train_student` check every split before tracing.

  Args:
    tree: a batch dict (``[T, B, ...]`` or ``[n, B, ...]`` arrays) with the
      student's ``label_key`` (and optional ``mask_key``: masked-out entries are
      not checked).
    student: gives ``C``, the label key and the mask key.
    name: how the caller calls ``tree`` (``'dev_batches'``), for the message.

  Raises:
    ValueError: naming ``name``, the key, the first bad label and the range.
  """
  if not isinstance(tree, dict) or student.label_key not in tree:
    return
  checks.check_label_values(
      tree[student.label_key],
      student.num_classes,
      f"{name}[{student.label_key!r}]",
      tree.get(student.mask_key),
      fix="fix the labels or the student's num_classes")


def unroll(
    student: Student,
    teacher: LossProvider,
    theta: Any,
    state: StudentState,
    batches,
) -> tuple[StudentState, StepMetrics]:
  """Eqn. (1) for ``t = 0 .. T-1`` as one ``lax.scan`` (compiled once, any T).

  Args:
    student, teacher, theta: as in :func:`inner_step`.
    state: the carry at the first step.
    batches: dict of ``[T, B, ...]`` arrays.

  Returns:
    ``(final state, StepMetrics with [T] leaves)``.

  Raises:
    ValueError: ``T <= 0`` or inconsistent leading axes; concrete (not traced)
      labels outside ``[0, C)`` (:func:`check_batch_labels`).
  """
  check_unroll_batches(batches)
  check_batch_labels(batches, student, "batches")
  return jax.lax.scan(lambda s, b: inner_step(student, teacher, theta, s, b), state, batches)


def dev_measure(student: Student, measure: measures.Measure, params: Any, model_state: Any,
                dev_batches) -> jax.Array:
  """M~(f_w, D_dev): the measure's exact mean over ``[n, B, ...]`` (masked) dev batches.

  Differentiable in ``params``; this is the source of ``dw_T`` (Eqn. 3).

  Raises:
    ValueError: concrete (not traced) labels outside ``[0, C)`` (:func:`check_batch_labels`).
  """
  check_batch_labels(dev_batches, student, "dev_batches")
  dtype = jax.tree_util.tree_leaves(params)[0].dtype

  def body(carry, batch):
    total, count = measure.batch_sums(student, params, model_state, batch)
    return (carry[0] + total.astype(dtype), carry[1] + count.astype(dtype)), None

  zero = jnp.zeros((), dtype)
  (total, count), _ = jax.lax.scan(body, (zero, zero), dev_batches)
  return total / jnp.maximum(count, 1)


def evaluate(student: Student,
             params: Any,
             model_state: Any,
             batches,
             measure: measures.Measure | None = None) -> dict:
  """Accuracy, cross-entropy (and the measure) over ``[n, B, ...]`` masked batches, eval mode.

  For a classification student (labels ``[B]``, one per example) it also reports the
  balanced accuracy, the mean over classes of the per-class recall::

      balanced_accuracy = mean_{c : n_c > 0} correct_c / n_c,

  from ``C``-length sums of correct and (masked) counts per class; classes absent
  from the batches are left out of the mean. Token-level students (labels
  ``[B, L]``, e.g. translation) do not get it: a recall per vocabulary entry is not a
  measure anyone reports there.

  Returns:
    dict of float scalars: ``accuracy``, ``cross_entropy``, ``balanced_accuracy``
    (labels ``[B]`` only) and, if given, ``measure``.

  Raises:
    ValueError: concrete (not traced) labels outside ``[0, C)`` (:func:`check_batch_labels`).

  References:
    Brodersen et al., "The balanced accuracy and its posterior distribution", ICPR
    2010; Cao et al. 2019 and Menon et al. 2021 report balanced error on long tails.
  """
  check_batch_labels(batches, student, "batches")
  dtype = jax.tree_util.tree_leaves(params)[0].dtype
  per_class = jnp.ndim(student.labels(batches)) == 2  # [n, B]: one label per example
  num_classes = student.num_classes

  def body(carry, batch):
    outputs = student.apply(params, model_state, batch, train=False)[0]
    labels, mask = student.labels(batch), student.mask(batch)
    logits = outputs.logits.astype(dtype)
    m = jnp.ones(labels.shape, dtype) if mask is None else mask.astype(dtype)
    log_p = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    correct = (jnp.argmax(logits, -1) == labels).astype(dtype)
    out = {"accuracy": jnp.sum(correct * m), "cross_entropy": jnp.sum(nll * m), "count": jnp.sum(m)}
    if per_class:
      onehot = jax.nn.one_hot(labels, num_classes, dtype=dtype) * m[:, None]  # [B, C]
      out["class_correct"] = correct @ onehot
      out["class_count"] = jnp.sum(onehot, 0)
    if measure is not None:
      out["measure"] = measure.batch_sums(student, params, model_state, batch)[0].astype(dtype)
    return jax.tree_util.tree_map(jnp.add, carry, out), None

  keys = ["accuracy", "cross_entropy", "count"] + (["measure"] if measure is not None else [])
  zeros = {k: jnp.zeros((), dtype) for k in keys}
  if per_class:
    zeros.update(
        class_correct=jnp.zeros((num_classes,), dtype),
        class_count=jnp.zeros((num_classes,), dtype))
  sums, _ = jax.lax.scan(body, zeros, batches)
  out = {}
  if per_class:
    class_correct, class_count = sums.pop("class_correct"), sums.pop("class_count")
    present = class_count > 0
    recall = jnp.where(present, class_correct / jnp.maximum(class_count, 1), 0)
    out["balanced_accuracy"] = jnp.sum(recall) / jnp.maximum(jnp.sum(present), 1)
  count = jnp.maximum(sums.pop("count"), 1)
  return {**{k: v / count for k, v in sums.items()}, **out}


def check_finite(metrics: StepMetrics, first_step: int) -> None:
  """Raises if any step's loss or gradient norm is NaN/inf (host side).

  Args:
    metrics: :class:`StepMetrics` with ``[T]`` leaves (device or host arrays).
    first_step: global step index of ``metrics[0]``.

  Raises:
    FloatingPointError: naming the first bad global step and what to try.
  """
  loss = np.asarray(metrics.loss)
  grad = np.asarray(metrics.grad_norm)
  bad = ~(np.isfinite(loss) & np.isfinite(grad))
  if bad.any():
    i = int(np.argmax(bad))
    raise FloatingPointError(
        f"Non-finite student loss/gradient at inner step {first_step + i} "
        f"(loss={loss[i]}, grad_norm={grad[i]}). Lower the student learning rate, "
        "check the inputs for NaN, or lower the teacher learning rate.")
