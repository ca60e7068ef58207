"""Fixed (non-learned) training losses: the baselines, as loss providers.

Pure functions (cross-entropy, label smoothing of Szegedy et al. 2016, Large-Margin
Softmax of Liu et al. 2016) and one :class:`~dlf_jax.contracts.LossProvider` class
per baseline, so that a baseline stands wherever a
:class:`dlf_jax.teacher.Teacher` is expected and baselines and learned losses share
one training step. A baseline is chosen by name from :data:`BASELINES`
(:func:`baseline_loss`); a new one is one :class:`FixedLoss` subclass and one entry
there.

Every loss takes an optional ``mask`` (``1`` for real examples / tokens, ``0``
for padding) and returns the masked mean over all leading axes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from dlf_jax.losses.core import check_labels, label_log_prob, masked_mean
from dlf_jax.losses.family import ForwardCorrectionW, FullW, LogitOffsetW, parametric_loss
from dlf_jax.state_features import DEFAULT_EMA_DECAY

__all__ = [
    "cross_entropy",
    "label_smoothing",
    "large_margin_logits",
    "large_margin_softmax",
    "FixedLoss",
    "CrossEntropyLoss",
    "LabelSmoothingLoss",
    "LargeMarginLoss",
    "SigmoidCrossEntropyLoss",
    "BASELINES",
    "baseline_loss",
    "ForwardCorrectionLoss",
    "LogitAdjustedLoss",
    "ClassBalancedLoss",
    "class_balanced_weights",
]


def cross_entropy(logits: jax.Array,
                  labels: jax.Array,
                  mask: Optional[jax.Array] = None) -> jax.Array:
  """Masked mean cross-entropy ``-log p_y``; logits ``[..., C]``, labels int ``[...]``."""
  check_labels(logits, labels, mask)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  return masked_mean(nll, mask)


def label_smoothing(logits: jax.Array,
                    labels: jax.Array,
                    smoothing: float = 0.1,
                    mask: Optional[jax.Array] = None) -> jax.Array:
  """Cross-entropy against ``(1 - eps) e_y + eps / C`` (Szegedy et al., 2016).

  Args:
    logits: float ``[..., C]``; labels: int ``[...]``; mask: optional ``[...]``.
    smoothing: ``eps`` in ``[0, 1)``.

  Raises:
    ValueError: ``smoothing`` outside ``[0, 1)`` or shape mismatch.
  """
  if not 0.0 <= smoothing < 1.0:
    raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}.")
  check_labels(logits, labels, mask)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  uniform = -jnp.mean(log_probs, axis=-1)
  return masked_mean((1.0 - smoothing) * nll + smoothing * uniform, mask)


def _chebyshev(m: int, x: jax.Array) -> jax.Array:
  """``cos(m theta)`` as the Chebyshev polynomial ``T_m(cos theta)`` (smooth in x)."""
  t_prev, t = jnp.ones_like(x), x
  if m == 0:
    return t_prev
  for _ in range(m - 1):
    t_prev, t = t, 2 * x * t - t_prev
  return t


def large_margin_logits(features: jax.Array,
                        kernel: jax.Array,
                        labels: jax.Array,
                        margin: int = 2,
                        beta: float = 0.0) -> jax.Array:
  """Logits of Large-Margin Softmax (L-Softmax), target logit replaced.

  ``f_j = ||W_j|| ||x|| cos(theta_j)`` for ``j != y`` and, for the target,
  ``f_y = (beta ||W_y|| ||x|| cos(theta_y) + ||W_y|| ||x|| psi(theta_y)) / (1 + beta)``
  with ``psi(theta) = (-1)^k cos(m theta) - 2k`` on ``[k pi/m, (k+1) pi/m]``.
  ``cos(m theta)`` is the Chebyshev polynomial ``T_m(cos theta)`` (no arccos in
  the differentiated path); ``k`` is computed under ``stop_gradient``.

  Args:
    features: float ``[..., D]``, penultimate activations ``x``.
    kernel: float ``[D, C]``, the last layer's weights ``W`` (bias unused,
      as in the original L-Softmax).
    labels: int ``[...]``.
    margin: integer ``m >= 1`` (``m = 1`` gives the plain softmax logits).
    beta: annealing weight ``beta >= 0`` (float or traced scalar; Liu et al.
      anneal it from ~1000 towards 0).

  Returns:
    float ``[..., C]``.

  Raises:
    ValueError: ``margin < 1``, ``beta < 0`` or shape mismatch.

  References:
    Liu, Wen, Yu, Yang, "Large-Margin Softmax Loss for Convolutional Neural
    Networks", ICML 2016, Eqns. (4)-(6).
  """
  if int(margin) != margin or margin < 1:
    raise ValueError(f"L-Softmax margin must be an integer >= 1, got {margin}.")
  if isinstance(beta, (int, float)) and beta < 0:
    raise ValueError(f"L-Softmax beta must be >= 0, got {beta}.")
  if features.shape[-1] != kernel.shape[0]:
    raise ValueError(f"features [..., {features.shape[-1]}] do not match the head kernel "
                     f"{tuple(kernel.shape)} ([D, C]).")
  logits = features @ kernel
  w_norm = jnp.linalg.norm(kernel, axis=0)  # [C]
  x_norm = jnp.sqrt(jnp.sum(features**2, axis=-1) + 1e-12)  # [...]
  w_y = jnp.take(w_norm, labels)
  f_y = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
  cos = jnp.clip(f_y / (w_y * x_norm + 1e-12), -1.0, 1.0)
  theta = jax.lax.stop_gradient(jnp.arccos(cos))
  k = jnp.floor(theta * margin / math.pi)
  psi = (-1.0)**k * _chebyshev(int(margin), cos) - 2.0 * k
  target = (beta * f_y + w_y * x_norm * psi) / (1.0 + beta)
  onehot = jax.nn.one_hot(labels, kernel.shape[1], dtype=logits.dtype)
  return logits + onehot * (target - f_y)[..., None]


def large_margin_softmax(features: jax.Array,
                         kernel: jax.Array,
                         labels: jax.Array,
                         margin: int = 2,
                         beta: float = 0.0,
                         mask: Optional[jax.Array] = None) -> jax.Array:
  """L-Softmax loss: cross-entropy of :func:`large_margin_logits` (masked mean)."""
  return cross_entropy(large_margin_logits(features, kernel, labels, margin, beta), labels, mask)


@struct.dataclass
class FixedLoss:
  """Base of the fixed losses: the :class:`~dlf_jax.contracts.LossProvider` parts.

  Its "state" is the step ``t`` (``s_t = [t]``), ``theta = {}`` and ``phi = None``
  unless a subclass anneals something (:class:`LargeMarginLoss`). Subclasses are
  ``flax.struct`` dataclasses with static fields (hashable: jitted functions are
  cached per provider) and implement :meth:`loss`.
  """
  name: ClassVar[str] = ""
  # A fixed loss has no parameters: train_student needs no theta for it.
  needs_theta: ClassVar[bool] = False

  @property
  def num_classes(self) -> Optional[int]:
    """None: the loss works for any ``C``."""
    return None

  @property
  def ema_decay(self) -> float:
    """Decay of the student's running statistics (carried, though no baseline reads them)."""
    return DEFAULT_EMA_DECAY

  def init(self, rng: jax.Array) -> dict:
    """``theta = {}``: a fixed loss has no parameters."""
    del rng
    return {}

  def state_features(self, step: jax.Array, stats: Any) -> jax.Array:
    """``[t]`` as float32 ``[1]`` (drives annealing, where there is any)."""
    del stats
    return jnp.asarray(step, jnp.float32)[None]

  def phi(self, theta: Any, s: jax.Array) -> Optional[jax.Array]:
    """None: nothing is annealed."""
    del theta, s
    return None

  def loss(self,
           phi: Any,
           outputs: Any,
           labels: jax.Array,
           mask: Optional[jax.Array] = None) -> jax.Array:
    """Scalar loss of ``outputs`` (``outputs.logits [..., C]``) for int ``labels [...]``."""
    raise NotImplementedError


@struct.dataclass
class CrossEntropyLoss(FixedLoss):
  """Cross-entropy ``-log p_y`` (:func:`cross_entropy`)."""
  name: ClassVar[str] = "cross_entropy"

  def loss(self, phi, outputs, labels, mask=None):
    del phi
    return cross_entropy(outputs.logits, labels, mask)


@struct.dataclass
class LabelSmoothingLoss(FixedLoss):
  """Label smoothing with ``smoothing = eps`` in ``[0, 1)`` (:func:`label_smoothing`).

  Raises:
    ValueError: ``smoothing`` outside ``[0, 1)``.
  """
  smoothing: float = struct.field(pytree_node=False, default=0.1)
  name: ClassVar[str] = "label_smoothing"

  def __post_init__(self):
    if not 0.0 <= self.smoothing < 1.0:
      raise ValueError(f"label smoothing must be in [0, 1), got {self.smoothing}.")

  def loss(self, phi, outputs, labels, mask=None):
    del phi
    return label_smoothing(outputs.logits, labels, self.smoothing, mask)


@struct.dataclass
class SigmoidCrossEntropyLoss(FixedLoss):
  """``sigmoid(CE)``: Eqn. (2) with ``W = I, b = 0`` and the sigmoid link."""
  name: ClassVar[str] = "sigmoid_cross_entropy"

  def loss(self, phi, outputs, labels, mask=None):
    del phi
    c, dtype = outputs.logits.shape[-1], outputs.logits.dtype
    w = FullW.cross_entropy(c, b=jnp.zeros((c,), dtype), link="sigmoid", dtype=dtype)
    return parametric_loss(w, outputs.logits, labels, mask)


@struct.dataclass
class LargeMarginLoss(FixedLoss):
  """Large-Margin Softmax with Liu et al.'s annealing of ``beta`` (:func:`large_margin_softmax`).

  Needs the student's penultimate ``features`` and ``head_kernel``; its ``phi``
  is the annealed ``beta_t = max(beta_min, beta (1 + beta_gamma t)^-beta_power)``
  of Liu et al.'s code, without which L-Softmax does not train from scratch.

  Attributes:
    margin: integer ``m >= 1``.
    beta, beta_min: ``beta_t``'s start and floor, ``>= 0``.
    beta_gamma, beta_power: its decay.

  Raises:
    ValueError: a non-integer or ``< 1`` margin, a negative ``beta`` or ``beta_min``.
  """
  margin: int = struct.field(pytree_node=False, default=2)
  beta: float = struct.field(pytree_node=False, default=1000.0)
  beta_min: float = struct.field(pytree_node=False, default=0.0)
  beta_gamma: float = struct.field(pytree_node=False, default=2.5e-5)
  beta_power: float = struct.field(pytree_node=False, default=35.0)
  name: ClassVar[str] = "large_margin"

  def __post_init__(self):
    if (int(self.margin) != self.margin or self.margin < 1 or self.beta < 0 or self.beta_min < 0):
      raise ValueError(f"L-Softmax needs an integer margin >= 1 and beta, beta_min >= 0; got "
                       f"margin={self.margin}, beta={self.beta}, beta_min={self.beta_min}.")

  def phi(self, theta, s):
    """``beta_t`` (float32 scalar)."""
    del theta
    decayed = self.beta * (1.0 + self.beta_gamma * s[0])**(-self.beta_power)
    return jnp.maximum(self.beta_min, decayed)

  def loss(self, phi, outputs, labels, mask=None):
    if outputs.features is None or outputs.head_kernel is None:
      raise ValueError("large_margin needs the student's penultimate features and last-layer "
                       "kernel: the model must return (logits, features) and the Student's "
                       "head_path must name the last Dense kernel.")
    beta = self.beta_min if phi is None else phi
    return large_margin_softmax(outputs.features, outputs.head_kernel, labels, self.margin, beta,
                                mask)


def _static(values, name: str, ndim: int) -> tuple:
  """``values`` as nested tuples of floats (hashable, static), checked to have ``ndim``."""
  arr = np.asarray(values, np.float64)
  if arr.ndim != ndim or arr.size == 0:
    raise ValueError(f"{name} must be a non-empty array with {ndim} axes, got shape "
                     f"{arr.shape}.")
  return tuple(map(tuple, arr.tolist())) if ndim == 2 else tuple(arr.tolist())


@struct.dataclass
class _DataFixedLoss(FixedLoss):
  """A fixed loss built from the training data's statistics: it knows ``C``."""

  @property
  def num_classes(self) -> int:
    raise NotImplementedError


@struct.dataclass
class ForwardCorrectionLoss(_DataFixedLoss):
  """Forward correction with a given ``T``: ``-log((p^T T)_y)`` (Patrini et al., CVPR 2017).

  Attributes:
    transition: ``[C, C]`` row-stochastic, ``T[i, j] = P(observed j | true i)``
      (the noise model, or GLC's estimate from trusted data; Hendrycks et al. 2018).

  Raises:
    ValueError: ``T`` not square, negative, or with rows not summing to 1.
  """
  transition: tuple = struct.field(pytree_node=False, default=())

  def __post_init__(self):
    object.__setattr__(self, "transition", _static(self.transition, "transition", 2))
    ForwardCorrectionW.create(np.asarray(self.transition))  # the checks

  @property
  def num_classes(self) -> int:
    return len(self.transition)

  def loss(self, phi, outputs, labels, mask=None):
    del phi
    t = jnp.asarray(self.transition, outputs.logits.dtype)
    return parametric_loss(ForwardCorrectionW.create(t), outputs.logits, labels, mask)


@struct.dataclass
class LogitAdjustedLoss(_DataFixedLoss):
  """Logit adjustment: ``-log softmax(z + tau log pi)_y`` (Menon et al., ICLR 2021).

  Attributes:
    class_priors: ``[C]``, positive (normalised here): the training label frequencies.
    tau: the temperature (1 in the paper).

  Raises:
    ValueError: priors not a positive ``[C]`` vector.
  """
  class_priors: tuple = struct.field(pytree_node=False, default=())
  tau: float = struct.field(pytree_node=False, default=1.0)

  def __post_init__(self):
    object.__setattr__(self, "class_priors", _static(self.class_priors, "class_priors", 1))
    LogitOffsetW.create(np.asarray(self.class_priors), self.tau)  # the checks

  @property
  def num_classes(self) -> int:
    return len(self.class_priors)

  def loss(self, phi, outputs, labels, mask=None):
    del phi
    pi = jnp.asarray(self.class_priors, outputs.logits.dtype)
    return parametric_loss(LogitOffsetW.create(pi, self.tau), outputs.logits, labels, mask)


def class_balanced_weights(class_counts, beta: float) -> np.ndarray:
  """Cui et al.'s weights ``w_y = (1 - beta) / (1 - beta^{n_y})``, scaled to mean 1.

  Args:
    class_counts: ``[C]`` positive training counts ``n_y``.
    beta: in ``[0, 1)`` (0: every weight 1; towards 1: inverse frequency).

  Returns:
    float64 ``[C]``.

  Raises:
    ValueError: ``beta`` outside ``[0, 1)`` or a count ``<= 0``.

  References:
    Cui, Jia, Lin, Song, Belongie, "Class-Balanced Loss Based on Effective Number of
    Samples", CVPR 2019, Eqn. (5)-(6).
  """
  counts = np.asarray(class_counts, np.float64)
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"beta must be in [0, 1), got {beta}.")
  if counts.ndim != 1 or (counts <= 0).any():
    raise ValueError(f"class_counts must be a [C] vector of positive counts, got "
                     f"{counts.tolist()}.")
  weights = (1.0 - beta) / (1.0 - beta**counts)
  return weights * len(counts) / weights.sum()


@struct.dataclass
class ClassBalancedLoss(_DataFixedLoss):
  """Class-balanced cross-entropy: ``w_y (-log p_y)`` with :func:`class_balanced_weights`.

  The masked mean of the weighted per-example losses (weights of mean 1 over the
  classes), as Cui et al.'s code.

  Attributes:
    class_counts: ``[C]`` positive training counts.
    beta: in ``[0, 1)``.

  Raises:
    ValueError: bad counts or ``beta``.
  """
  class_counts: tuple = struct.field(pytree_node=False, default=())
  beta: float = struct.field(pytree_node=False, default=0.999)

  def __post_init__(self):
    object.__setattr__(self, "class_counts", _static(self.class_counts, "class_counts", 1))
    class_balanced_weights(self.class_counts, self.beta)  # the checks

  @property
  def num_classes(self) -> int:
    return len(self.class_counts)

  def loss(self, phi, outputs, labels, mask=None):
    del phi
    logits = outputs.logits
    check_labels(logits, labels, mask)
    weights = jnp.asarray(class_balanced_weights(self.class_counts, self.beta), logits.dtype)
    nll = -label_log_prob(jax.nn.log_softmax(logits, axis=-1), labels)
    return masked_mean(jnp.take(weights, labels) * nll, mask)


# The baselines by name (configs' ``methods``). A new baseline is one FixedLoss subclass
# and one entry here. The losses built from training-data statistics (forward correction,
# logit adjustment, class-balanced) are not listed: they need T, priors or counts.
BASELINES: dict[str, type[FixedLoss]] = {
    cls.name: cls
    for cls in (CrossEntropyLoss, LabelSmoothingLoss, LargeMarginLoss, SigmoidCrossEntropyLoss)
}


def baseline_loss(name: str, **options) -> FixedLoss:
  """The baseline ``name`` (a key of :data:`BASELINES`) with its ``options``.

  One set of options can serve every baseline (a config's ``baselines`` section):
  options that belong to another baseline are left out, e.g.
  ``baseline_loss('cross_entropy', smoothing=0.1)`` is plain cross-entropy.

  Raises:
    ValueError: unknown name, or an option no baseline has (naming both).
  """
  if name not in BASELINES:
    raise ValueError(f"Unknown baseline loss {name!r}; choose one of {tuple(BASELINES)}.")
  known = {f.name for cls in BASELINES.values() for f in dataclasses.fields(cls)}
  unknown = sorted(set(options) - known)
  if unknown:
    raise ValueError(f"Unknown baseline option(s) {unknown}; the baselines take "
                     f"{sorted(known)}.")
  cls = BASELINES[name]
  own = {f.name for f in dataclasses.fields(cls)}
  return cls(**{k: v for k, v in options.items() if k in own})
