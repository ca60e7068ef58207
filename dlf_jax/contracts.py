"""Typed contracts shared by the library: loss provider, hypergradient estimator, option names.

A *loss provider* is what the student's inner step (Eqn. 1) calls for its
training loss: a learned :class:`~dlf_jax.teacher.Teacher` (``phi_t =
mu_theta(s_t)``, Eqn. 2) or a fixed loss of :mod:`dlf_jax.losses.baselines`
(cross-entropy, label smoothing, Large-Margin Softmax, ...). Both implement
:class:`LossProvider`, so baselines and learned losses share one training step,
one unroll and one training loop.

A *hypergradient estimator* (:class:`HypergradEstimator`) is what
:func:`dlf_jax.teach` calls once per outer step for ``dM~/dtheta`` of a segment:
the reverse scan, forward mode, ES or PES (:mod:`dlf_jax.estimators`, one class
each, chosen by value, not by a string).

A *batch sampler* (:class:`BatchSampler`) is training data that draws its own
batches: :func:`dlf_jax.teach` and :func:`dlf_jax.train_student` take one
wherever they take ``{'x', 'y'}`` arrays (e.g.
:class:`~dlf_jax.data.SegmentSampler`, the length-bucketed
:class:`~dlf_jax.data.BucketSampler` of translation, or a class of your own).

The option names of the library's string-valued arguments are ``Literal``
types here; the runtime tuples (``hypergrad.METHODS``, ``teaching.MODES``,
...) are derived from them with ``typing.get_args``; the names of the loss
forms and links are the keys of the registries ``dlf_jax.losses.FORMS`` and
``dlf_jax.losses.core.LINK_FUNCTIONS``, which check at import that they equal
:data:`Parameterisation` and :data:`Link`.
"""
from __future__ import annotations

from typing import (TYPE_CHECKING, Any, ClassVar, Literal, Mapping, Optional, Protocol,
                    runtime_checkable)

import jax

if TYPE_CHECKING:  # annotations only: these modules import this one
  from dlf_jax.estimators.base import EstimateContext
  from dlf_jax.hypergrad import HypergradResult
  from dlf_jax.state_features import RunningStats
  from dlf_jax.student import StudentOutputs, StudentState

__all__ = [
    "LossProvider", "HypergradEstimator", "BatchSampler", "Method", "Memory", "Mode",
    "Parameterisation", "Link"
]

# Hypergradient method of the reverse estimator (:func:`dlf_jax.hypergrad.hypergradient`).
Method = Literal["auto", "eqn45", "vjp", "autodiff"]
# What the reverse scan keeps of the forward pass.
Memory = Literal["store_all", "checkpointed"]
# Teaching schedule of :func:`dlf_jax.teach`.
Mode = Literal["episodes", "online"]
# Structure of W in Eqn. (2): the keys of dlf_jax.losses.FORMS (checked there at import).
Parameterisation = Literal["full", "diagonal", "low_rank", "soft_target", "weighted_soft_target",
                           "forward_correction", "logit_adjustment"]
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

  def loss(self,
           phi: Any,
           outputs: StudentOutputs,
           labels: jax.Array,
           mask: Optional[jax.Array] = None) -> jax.Array:
    """Float scalar: the (masked) mean training loss of ``outputs`` for ``labels``."""


@runtime_checkable
class HypergradEstimator(Protocol):
  """What :func:`dlf_jax.teach` needs of a hypergradient estimator (one per outer step).

  Implemented by :class:`~dlf_jax.estimators.ReverseMode` (Eqns. 3-5),
  :class:`~dlf_jax.estimators.ForwardMode`, :class:`~dlf_jax.estimators.AntitheticES`
  and :class:`~dlf_jax.estimators.PES`; the names of the registered ones are
  the keys of :data:`dlf_jax.estimators.ESTIMATORS`. Instances must be hashable
  and immutable (frozen dataclasses): compiled functions are cached per
  ``(student, teacher, measure, estimator)``.

  Attributes:
    name: what the history records of :func:`~dlf_jax.teach` call it (a class attribute).
  """

  name: ClassVar[str]

  def check(self, theta: Any) -> None:
    """Raises ValueError if this estimator cannot serve a teacher ``theta`` (e.g. too big)."""

  def init_state(self, theta: Any, student_state: StudentState) -> Any:
    """The estimator's state at the start of an episode (a new student): a pytree, or None.

    Called by :func:`~dlf_jax.teach` whenever a fresh student starts, with that
    student's carry; the state then rides in :class:`~dlf_jax.teaching.TeachState`
    (``estimator_state``) across the episode's segments and checkpoints.
    """

  def estimate(self, ctx: EstimateContext, theta: Any, state: Any,
               student_state: StudentState) -> tuple[HypergradResult, Any]:
    """``(result, new state)`` for the segment ``ctx`` describes, starting at ``student_state``.

    ``result.dtheta`` is the estimate of ``dM~/dtheta`` (the ascent direction of
    the measure, as :func:`~dlf_jax.hypergrad.hypergradient`); ``result.final_state``
    the (unperturbed) student after the segment's ``T`` steps, which the next
    segment continues; ``result.metrics`` its ``[T]`` step metrics;
    ``result.value`` the measure at the end.
    """


@runtime_checkable
class BatchSampler(Protocol):
  """Training data that draws its own batches: batch ``i`` a pure function of ``(seed, i)``.

  What :func:`dlf_jax.teach` and :func:`dlf_jax.train_student` need of a
  ``train`` that is not arrays. Implemented by
  :class:`~dlf_jax.data.SegmentSampler` and
  :class:`~dlf_jax.data.BucketSampler`; any class with these members is
  accepted (``isinstance(x, BatchSampler)`` checks that they exist).

  Because no iterator state exists, a resumed run asks for the same global
  batch indices and gets the same batches: checkpoints need only the step.

  Attributes:
    batch_size: ``B``, the examples of every batch (must equal the
      ``batch_size`` / ``Schedule.batch_size`` the sampler is used with).
    segment_steps: optional (not part of the ``isinstance`` check): an int
      asks :func:`~dlf_jax.train_student` to cut its scans at multiples of it
      (the length block of a bucketed sampler, so one scan has one padded
      width); absent or None: any scan length.
  """

  batch_size: int

  def segment(self, start: int, count: int) -> Mapping[str, Any]:
    """Global batches ``start .. start + count - 1`` stacked: name -> ``[count, B, ...]``."""

  def reseeded(self, seed: int) -> BatchSampler:
    """The same sampler with another shuffling seed.

    ``train_student`` uses ``reseeded(seed)``, episode ``e`` of ``teach``
    ``reseeded(seed * 1000003 + e)``.
    """
