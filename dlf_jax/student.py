"""The student contract: a flax model, an optax optimizer, and the unroll carry.

A :class:`Student` wraps

* ``model``: a flax linen module called as ``model.apply(variables, *inputs,
  train=bool)``; it returns ``logits [..., C]`` or ``(logits, features)`` where
  ``features [..., D]`` are the penultimate activations (needed by
  Large-Margin Softmax). Non-parameter collections (BatchNorm's
  ``batch_stats``) are the model state: updated in the carry in train mode,
  never differentiated.
* ``tx``: any optax ``GradientTransformation`` that is differentiable in its
  inputs (for Adam use ``eps_root > 0``; see :func:`make_optimizer`).

Batches are dicts: inputs under ``input_keys`` (default ``('x',)``), integer
labels under ``'y'`` (``[B]`` for classification, ``[B, L]`` for tokens) and an
optional 0/1 ``'mask'`` of the labels' shape (padding).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from dlf_jax import checks, state_features

__all__ = [
    "StudentOutputs", "StudentState", "Student", "make_optimizer", "OPTIMIZERS", "MIN_EPS_ROOT"
]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
# The smallest eps_root of a differentiated Adam: float32's smallest normal number
# (smaller values are flushed to zero, and d sqrt(x)/dx is infinite at 0).
MIN_EPS_ROOT = float(np.finfo(np.float32).tiny)


@struct.dataclass
class StudentOutputs:
  """What the losses see of a student's forward pass.

  Attributes:
    logits: float ``[..., C]``.
    features: float ``[..., D]`` penultimate activations, or None.
    head_kernel: float ``[D, C]`` last-layer weights, or None.
  """
  logits: jax.Array
  features: Optional[jax.Array] = None
  head_kernel: Optional[jax.Array] = None


@struct.dataclass
class StudentState:
  """The unroll carry (one student at step ``t``).

  Attributes:
    params: the student's weights omega_t (differentiated).
    opt_state: the optax state (its float leaves are differentiated).
    model_state: non-parameter collections, e.g. ``{'batch_stats': ...}``
      (not differentiated).
    rng: PRNG key; step ``t`` uses ``fold_in(rng, t)``.
    step: int32 scalar ``t``.
    stats: :class:`~dlf_jax.state_features.RunningStats` for the teacher's state.
  """
  params: Any
  opt_state: Any
  model_state: Any
  rng: jax.Array
  step: jax.Array
  stats: state_features.RunningStats


def make_optimizer(name: str,
                   learning_rate,
                   *,
                   momentum: float = 0.9,
                   weight_decay: float = 0.0,
                   b1: float = 0.9,
                   b2: float = 0.999,
                   eps: float = 1e-8,
                   eps_root: float = 1e-8) -> optax.GradientTransformation:
  """A student optimizer that is differentiable end to end.

  Args:
    name: ``sgd`` (plain SGD, Eqn. 1) | ``momentum`` | ``nesterov`` | ``adam``.
    learning_rate: a real number > 0 or an optax schedule (step -> float; its
      sign is checked when :func:`dlf_jax.teach` / :func:`dlf_jax.train_student`
      probe the optimizer).
    momentum: heavy-ball / Nesterov coefficient, in ``[0, 1)``.
    weight_decay: L2 coefficient added to the gradient (coupled, as in ResNet
      training), ``>= 0``.
    b1, b2: Adam's decay rates, in ``[0, 1)``.
    eps: Adam's ``eps``, ``>= 0``.
    eps_root: Adam's ``eps_root``; must be at least :data:`MIN_EPS_ROOT` (float32's
      smallest normal number) so that ``sqrt`` has a finite derivative at zero
      when differentiating through the update (smaller values are flushed to 0).

  Raises:
    ValueError: unknown name; a learning rate that is neither a schedule nor a
      real number > 0 (e.g. the string ``'0.1'``); a constant outside its range
      (names it, its value and the range); Adam with ``eps_root <
      MIN_EPS_ROOT``.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"Unknown student optimizer {name!r}; choose one of {OPTIMIZERS}.")
  if not callable(learning_rate):
    checks.check_real(
        "learning_rate",
        learning_rate,
        low=0.0,
        low_inclusive=False,
        fix="the student learning rate must be > 0 (a negative rate ascends "
        "the loss, zero never moves the student): a float or an optax "
        "schedule")
  checks.check_real("weight_decay", weight_decay, low=0.0)
  if name in ("momentum", "nesterov"):
    checks.check_real("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
  if name == "adam":
    checks.check_real("b1", b1, low=0.0, high=1.0, high_inclusive=False)
    checks.check_real(
        "b2", b2, low=0.0, high=1.0, high_inclusive=False, fix="e.g. b2=0.999 (Adam's default)")
    checks.check_real("eps", eps, low=0.0, fix="e.g. eps=1e-8 (Adam's default)")
    checks.check_real(
        "eps_root",
        eps_root,
        low=0.0,
        low_inclusive=False,
        fix="Adam differentiated through needs eps_root > 0, e.g. 1e-8")
    if eps_root < MIN_EPS_ROOT:
      raise ValueError(f"eps_root={eps_root!r} is below float32's smallest normal number "
                       f"{MIN_EPS_ROOT:.3g}: it is flushed to 0 and the hypergradient through "
                       "sqrt(nu + eps_root) becomes NaN for any weight with zero gradient; use "
                       "eps_root=1e-8 (the default).")
  if name == "sgd":
    tx = optax.sgd(learning_rate)
  elif name == "momentum":
    tx = optax.sgd(learning_rate, momentum=momentum)
  elif name == "nesterov":
    tx = optax.sgd(learning_rate, momentum=momentum, nesterov=True)
  else:
    tx = optax.adam(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
  if weight_decay:
    tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
  return tx


@dataclasses.dataclass(frozen=True, eq=False)
class Student:
  """A student family: model + optimizer + how to read a batch.

  Attributes:
    model: flax linen module (see module docstring for the call convention).
    tx: optax transformation of the student.
    num_classes: ``C`` of the logits.
    input_keys: batch keys passed positionally to the model.
    label_key: batch key of the integer labels.
    mask_key: batch key of the optional 0/1 padding mask.
    head_path: path in ``params`` of the last layer's ``[D, C]`` kernel
      (Large-Margin Softmax); ``None`` if the model has no such layer.
    augment: optional ``(rng, batch) -> batch`` applied to every training batch
      inside the jitted step (e.g. :func:`dlf_jax.data.make_augment`); data,
      not differentiated.
  """
  model: nn.Module
  tx: optax.GradientTransformation
  num_classes: int
  input_keys: tuple = ("x",)
  label_key: str = "y"
  mask_key: str = "mask"
  head_path: Optional[tuple] = ("head", "kernel")
  augment: Optional[Callable] = None

  def inputs(self, batch):
    missing = [k for k in self.input_keys + (self.label_key,) if k not in batch]
    if missing:
      raise KeyError(f"batch lacks keys {missing}; it has {sorted(batch)}.")
    return tuple(batch[k] for k in self.input_keys)

  def labels(self, batch):
    return batch[self.label_key]

  def mask(self, batch):
    return batch.get(self.mask_key)

  def init(
      self,
      rng: jax.Array,
      batch,
      stats: Optional[state_features.RunningStats] = None,
  ) -> StudentState:
    """A fresh :class:`StudentState` at step 0 (``batch`` gives the input shapes)."""
    init_rng, rng = jax.random.split(rng)
    variables = self.model.init(init_rng, *self.inputs(batch), train=False)
    variables = dict(variables)
    params = variables.pop("params")
    # Non-parameter state in the parameters' float dtype (flax keeps BatchNorm
    # statistics in float32 even for float64 models).
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    variables = jax.tree_util.tree_map(
        lambda v: v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v, variables)
    if stats is None:
      stats = state_features.init_running_stats(self.num_classes)
    return StudentState(
        params=params,
        opt_state=self.tx.init(params),
        model_state=variables,
        rng=rng,
        step=jnp.zeros((), jnp.int32),
        stats=stats)

  def apply(self,
            params,
            model_state,
            batch,
            *,
            train: bool,
            rng: Optional[jax.Array] = None) -> tuple[StudentOutputs, Any]:
    """Runs the model.

    Args:
      params: student parameters.
      model_state: non-parameter collections (may be empty).
      batch: dict with the input keys.
      train: train mode (BatchNorm uses batch statistics and updates the
        running ones; dropout on).
      rng: dropout key (train mode).

    Returns:
      ``(StudentOutputs, new_model_state)``; ``new_model_state`` is
      ``model_state`` unchanged in eval mode.

    Raises:
      ValueError: the logits' class axis differs from ``num_classes``.
    """
    variables = {"params": params, **model_state}
    rngs = {"dropout": rng} if (train and rng is not None) else None
    if train and model_state:
      out, new_state = self.model.apply(
          variables, *self.inputs(batch), train=True, rngs=rngs, mutable=list(model_state))
      # Keep the carry's dtypes (flax keeps BatchNorm statistics in float32).
      new_state = jax.tree_util.tree_map(
          lambda new, old: jax.lax.stop_gradient(new).astype(old.dtype), dict(new_state),
          dict(model_state))
    else:
      out = self.model.apply(variables, *self.inputs(batch), train=train, rngs=rngs)
      new_state = model_state
    logits, features = out if isinstance(out, tuple) else (out, None)
    if logits.shape[-1] != self.num_classes:
      raise ValueError(f"The model outputs {logits.shape[-1]} classes but the Student "
                       f"declares num_classes={self.num_classes}.")
    kernel = None
    if features is not None and self.head_path is not None:
      kernel = params
      for key in self.head_path:
        kernel = kernel[key]
    return StudentOutputs(logits, features, kernel), new_state
