"""Typed contracts shared by the library: the loss provider and the option names.

A *loss provider* is what the student's inner step (Eqn. 1) calls for its
training loss: a learned :class:`~dlf_jax.teacher.Teacher` (``phi_t =
mu_theta(s_t)``, Eqn. 2) or a fixed loss of :mod:`dlf_jax.losses.baselines`
(cross-entropy, label smoothing, Large-Margin Softmax, ...). Both implement
:class:`LossProvider`, so baselines and learned losses share one training step,
one unroll and one training loop.

The option names of the library's string-valued arguments are ``Literal``
types here; the runtime tuples (``hypergrad.METHODS``, ``teaching.MODES``,
...) are derived from them with ``typing.get_args``; the names of the loss
forms and links are the keys of the registries ``dlf_jax.losses.FORMS`` and
``dlf_jax.losses.core.LINK_FUNCTIONS``, which check at import that they equal
:data:`Parameterisation` and :data:`Link`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional, Protocol, runtime_checkable

import jax

if TYPE_CHECKING:   # annotations only: these modules import this one
  from dlf_jax.state_features import RunningStats
  from dlf_jax.student import StudentOutputs

__all__ = ["LossProvider", "Method", "Memory", "Mode", "Estimator", "Parameterisation",
           "Link"]

# Hypergradient method of the reverse estimator (:func:`dlf_jax.hypergrad.hypergradient`).
Method = Literal["auto", "eqn45", "vjp", "autodiff"]
# What the reverse scan keeps of the forward pass.
Memory = Literal["store_all", "checkpointed"]
# Teaching schedule of :func:`dlf_jax.teach`.
Mode = Literal["episodes", "online"]
# How :func:`dlf_jax.teach` estimates the hypergradient of a segment.
Estimator = Literal["reverse", "forward", "es"]
# Structure of W in Eqn. (2): the keys of dlf_jax.losses.FORMS (checked there at import).
Parameterisation = Literal["full", "diagonal", "low_rank", "soft_target",
                           "weighted_soft_target", "forward_correction", "logit_adjustment"]
# What wraps the bilinear score of Eqn. (2): the paper's sigmoid or the identity (the
# keys of dlf_jax.losses.core.LINK_FUNCTIONS, checked there at import).
Link = Literal["sigmoid", "identity"]


@runtime_checkable
class LossProvider(Protocol):
  """What the student's step needs of a loss: ``s_t -> phi_t -> L_phi`` (Eqns. 1-2).

  Implemented by :class:`~dlf_jax.teacher.Teacher` (``theta`` its flax params,
  ``phi`` a :class:`~dlf_jax.losses.LossForm`) and the fixed losses of
  :mod:`dlf_jax.losses.baselines` (``theta = {}``, ``phi`` None or the
  Large-Margin annealing weight ``beta_t``). Instances are hashed by identity
  (jitted functions are cached per provider) and are static under ``jax.jit``.
  """

  @property
  def num_classes(self) -> Optional[int]:
    """``C`` the loss is built for, or None if it works for any ``C``."""

  @property
  def needs_theta(self) -> bool:
    """True if the loss is learned (``train_student`` then needs its frozen ``theta``)."""

  @property
  def ema_decay(self) -> float:
    """Decay of the running training loss / accuracy the student carries, in [0, 1)."""

  def init(self, rng: jax.Array) -> Any:
    """``theta``: the provider's parameters (a pytree; ``{}`` for a fixed loss)."""

  def state_features(self, step: jax.Array, stats: RunningStats) -> jax.Array:
    """``s_t``: float32 ``[S]`` from the step ``t`` and the running statistics."""

  def phi(self, theta: Any, s: jax.Array) -> Any:
    """``phi_t = mu_theta(s_t)``: the loss's parameters at step ``t`` (a pytree or None)."""

  def loss(self, phi: Any, outputs: StudentOutputs, labels: jax.Array,
           mask: Optional[jax.Array] = None) -> jax.Array:
    """Float scalar: the (masked) mean training loss of ``outputs`` for ``labels``."""
