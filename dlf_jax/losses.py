"""Losses: the parametric loss of Eqn. (2) and the baselines it is compared with.

The parametric ("bilinear") loss of L2T-DLF (Wu et al., 2018, Eqn. 2) for one
example with probabilities ``p`` over ``C`` classes and integer label ``y``:

    L_phi(p, y) = sigmoid(-log(p)^T W e_y + b_y),        phi = {W, b}

Convention: we use the paper's sign (the minimised loss is a sigmoid of a
negated score; the authors' demo writes the equivalent ``-sigmoid(log p^T W y +
b)``). With ``W = I`` and ``b = 0`` this is ``sigmoid(CE)``. Column ``y`` of
``W`` weights every class's log-probability for target ``y``: ``W[y, y] > 0``
is the likelihood term, ``W[i, y] > 0`` smooths toward class ``i`` and
``W[i, y] < 0`` pushes away from it.

``W`` comes in four parameterisations (:class:`LossParams`):

* ``full``: a dense ``[C, C]`` matrix;
* ``diagonal``: ``W = diag(w)``, ``w`` of shape ``[C]``;
* ``low_rank``: ``W = diag(w) + U V^T`` with ``U, V`` of shape ``[C, r]``;
  the score ``log(p)^T W e_y = w_y log p_y + (log(p)^T U) . V[y]`` is computed
  without forming ``W`` (memory ``O(C r)``), which is what a vocabulary-sized
  ``C`` (translation) needs;
* ``soft_target`` (ours, not the paper's): every column of ``W`` on the simplex,
  ``W[:, y] = (1 - eps_y) e_y + eps_y q_y`` with ``eps_y`` in ``[0, 1)`` and a
  target distribution ``q_y`` (uniform, one distribution ``q`` shared by every
  class -- ``O(C)``, for vocabularies -- or one per class, ``[C, C]``). ``W``
  never has a negative entry, so the student cannot lower the loss by pushing a
  wrong class to ``p -> 0``.

The **link** wraps the score: ``sigmoid`` (the paper's Eqn. 2, above) or
``identity``, ``L = -log(p)^T W e_y + b_y``. With the identity link, ``W = I``
is exactly cross-entropy, a ``soft_target`` ``W`` with uniform ``q`` is exactly
label smoothing with ``eps`` (Szegedy et al., 2016), and a class-conditional
``q_y`` is a class-conditional soft target (cf. Online Label Smoothing, Zhang et
al., 2021). The identity link is bounded below only for a non-negative ``W``
(``soft_target``, or ``diagonal`` with ``w >= 0``): with a negative entry the
student can lower it without limit by pushing that class to ``p -> 0``. With the sigmoid link, ``W = I`` is ``sigmoid(CE)``, whose logit
gradient is cross-entropy's times ``sigmoid'(CE) <= 1/4``: at initialisation
(``CE ~ log C``) that is ``~0.08`` for 10 classes, a 12x smaller step, and
``~e^-CE`` on hard examples, which are starved. A student trained on it from
scratch needs a warm start or a larger learning rate.

Baselines: cross-entropy, label smoothing (Szegedy et al., 2016) and
Large-Margin Softmax (Liu et al., ICML 2016).

Every loss takes an optional ``mask`` (``1`` for real examples / tokens, ``0``
for padding) and returns the masked mean over all leading axes.
"""
from __future__ import annotations

import math
from typing import Any, Optional, get_args

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from dlf_jax.contracts import Link, Parameterisation
from dlf_jax.state_features import DEFAULT_EMA_DECAY

__all__ = [
    "PARAMETERISATIONS", "LINKS", "TARGETS", "ANCHORS", "LossParams", "identity_loss_params",
    "soft_target_params", "anchor_loss_params", "bilinear_score",
    "parametric_loss", "dense_w", "cross_entropy", "label_smoothing",
    "large_margin_softmax", "large_margin_logits", "masked_mean",
    "check_labels", "BASELINES", "BaselineLoss", "phi_statistics",
]

PARAMETERISATIONS: tuple[Parameterisation, ...] = get_args(Parameterisation)
LINKS: tuple[Link, ...] = get_args(Link)
# Structure of the soft targets q_y of ``soft_target``: uniform (label smoothing),
# one learned distribution shared by all classes ([C]), one per class ([C, C]).
TARGETS = ("uniform", "shared", "class")
# The loss a teacher starts from (see :func:`anchor_loss_params`).
ANCHORS = ("cross_entropy", "label_smoothing")


@struct.dataclass
class LossParams:
  """phi = {W, b} of Eqn. (2), in one of four parameterisations, and the link.

  Attributes:
    w: ``full``: float ``[C, C]`` (column ``y`` used for label ``y``);
      ``diagonal`` / ``low_rank``: the diagonal, float ``[C]``;
      ``soft_target``: the smoothing weights ``eps``, float ``[C]`` in ``[0, 1)``.
    b: bias, float ``[]`` (scalar) or ``[C]`` (per class, ``b_y`` used).
    u: ``low_rank`` only: float ``[C, r]``; ``None`` otherwise.
    v: ``low_rank`` only: float ``[C, r]``; ``None`` otherwise.
    q: ``soft_target`` only: the target distributions, ``None`` (uniform),
      float ``[C]`` (one distribution for every class) or ``[C, C]`` (column
      ``y`` is ``q_y``); non-negative, summing to 1 (over axis 0).
    parameterisation: one of :data:`PARAMETERISATIONS` (static).
    link: one of :data:`LINKS` (static): ``sigmoid`` (Eqn. 2) or ``identity``.
  """
  w: jax.Array
  b: jax.Array
  u: Optional[jax.Array] = None
  v: Optional[jax.Array] = None
  q: Optional[jax.Array] = None
  parameterisation: Parameterisation = struct.field(pytree_node=False, default="full")
  link: Link = struct.field(pytree_node=False, default="sigmoid")

  @property
  def num_classes(self) -> int:
    return self.w.shape[-1]


def _check_parameterisation(parameterisation: str) -> None:
  if parameterisation not in PARAMETERISATIONS:
    raise ValueError(
        f"Unknown W parameterisation {parameterisation!r}; choose one of "
        f"{PARAMETERISATIONS}.")


def _check_link(link: str) -> None:
  if link not in LINKS:
    raise ValueError(f"Unknown link {link!r}; choose one of {LINKS} ('sigmoid' is the "
                     "paper's Eqn. 2, 'identity' makes W = I exactly cross-entropy).")


def _check_eps(eps, name: str = "eps") -> None:
  """Raises if a concrete ``eps`` has an entry outside ``[0, 1)`` (traced values pass)."""
  try:
    values = np.asarray(eps, np.float64)
  except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return
  if values.size and not ((values >= 0) & (values < 1)).all():
    bad = values[~((values >= 0) & (values < 1))].ravel()[0]
    raise ValueError(f"{name} must be in [0, 1) (0 = cross-entropy, 1 would drop the "
                     f"label); got {bad}.")


def identity_loss_params(num_classes: int, parameterisation: Parameterisation = "full",
                         rank: int = 0, per_class_bias: bool = True,
                         dtype=jnp.float32, link: Link = "sigmoid") -> LossParams:
  """phi with ``W = I`` and ``b = 0``: ``sigmoid(CE)`` (sigmoid link) or CE (identity).

  Args:
    num_classes: ``C``.
    parameterisation: one of :data:`PARAMETERISATIONS` (``soft_target``: ``eps = 0``).
    rank: ``r`` of the low-rank part (``low_rank`` only; ``U = V = 0``).
    per_class_bias: bias of shape ``[C]`` if True, else a scalar.
    dtype: floating dtype.
    link: one of :data:`LINKS`.

  Raises:
    ValueError: unknown parameterisation or link.
  """
  _check_parameterisation(parameterisation)
  _check_link(link)
  b = jnp.zeros((num_classes,) if per_class_bias else (), dtype)
  if parameterisation == "full":
    return LossParams(jnp.eye(num_classes, dtype=dtype), b, parameterisation="full", link=link)
  if parameterisation == "soft_target":
    return LossParams(jnp.zeros((num_classes,), dtype), b, parameterisation="soft_target",
                      link=link)
  w = jnp.ones((num_classes,), dtype)
  if parameterisation == "diagonal":
    return LossParams(w, b, parameterisation="diagonal", link=link)
  z = jnp.zeros((num_classes, rank), dtype)
  return LossParams(w, b, z, z, parameterisation="low_rank", link=link)


def soft_target_params(eps, q=None, b=None, *, link: Link = "identity") -> LossParams:
  """A ``soft_target`` phi: ``W[:, y] = (1 - eps_y) e_y + eps_y q_y``.

  Args:
    eps: float ``[C]`` in ``[0, 1)`` (checked when concrete).
    q: ``None`` (uniform: label smoothing), float ``[C]`` (shared) or ``[C, C]``
      (column ``y`` is ``q_y``); each distribution non-negative, summing to 1.
    b: bias ``[]`` or ``[C]`` (default: zeros ``[C]``).
    link: one of :data:`LINKS` (default ``identity``: the cross-entropy family).

  Raises:
    ValueError: ``eps`` outside ``[0, 1)``, ``q`` of the wrong shape, unknown link.
  """
  _check_link(link)
  _check_eps(eps)
  eps = jnp.asarray(eps)
  c = eps.shape[-1] if eps.ndim else None
  if eps.ndim != 1:
    raise ValueError(f"eps must be a [C] vector, got shape {tuple(eps.shape)}.")
  if q is not None:
    q = jnp.asarray(q, eps.dtype)
    if q.shape not in ((c,), (c, c)):
      raise ValueError(f"q must be None, [C] or [C, C] with C={c}; got shape {tuple(q.shape)}.")
  b = jnp.zeros((c,), eps.dtype) if b is None else jnp.asarray(b, eps.dtype)
  return LossParams(eps, b, q=q, parameterisation="soft_target", link=link)


def anchor_loss_params(num_classes: int, anchor: str = "cross_entropy",
                       smoothing: float = 0.1, parameterisation: Parameterisation = "soft_target",
                       link: Link = "identity", dtype=jnp.float32) -> LossParams:
  """The loss a teacher starts from (its *anchor*), as :class:`LossParams`.

  ``cross_entropy``: ``W = I`` (CE with the identity link). ``label_smoothing``:
  ``W = (1 - eps) I + eps / C 1 1^T`` (label smoothing with ``eps`` under the
  identity link); representable by ``soft_target`` (uniform ``q``) and ``full``.

  Raises:
    ValueError: unknown anchor, ``smoothing`` outside ``[0, 1)``, or label
      smoothing with a ``diagonal`` / ``low_rank`` W (it needs off-diagonal mass).
  """
  if anchor not in ANCHORS:
    raise ValueError(f"Unknown anchor {anchor!r}; choose one of {ANCHORS}.")
  _check_eps(smoothing, "the anchor's smoothing")
  phi = identity_loss_params(num_classes, parameterisation, rank=0, dtype=dtype, link=link)
  if anchor == "cross_entropy" or smoothing == 0:
    return phi
  if parameterisation == "soft_target":
    return phi.replace(w=jnp.full((num_classes,), smoothing, dtype))
  if parameterisation == "full":
    return phi.replace(w=(1 - smoothing) * jnp.eye(num_classes, dtype=dtype)
                       + smoothing / num_classes)
  raise ValueError(f"A {parameterisation!r} W cannot represent label smoothing (it has no "
                   "off-diagonal mass): use parameterisation='soft_target' or 'full'.")


def _soft_target_columns(phi: LossParams, labels: jax.Array) -> jax.Array:
  """``q_y`` for every label: ``[..., C]`` (``soft_target`` with a per-class ``q``)."""
  return jnp.take(phi.q.T, labels, axis=0)


def dense_w(phi: LossParams) -> jax.Array:
  """The dense ``[C, C]`` matrix ``W`` that ``phi`` represents (for tests/plots)."""
  if phi.parameterisation == "full":
    return phi.w
  if phi.parameterisation == "soft_target":
    c = phi.num_classes
    if phi.q is None:
      q = jnp.full((c, c), 1.0 / c, phi.w.dtype)
    elif phi.q.ndim == 1:
      q = jnp.broadcast_to(phi.q[:, None], (c, c))
    else:
      q = phi.q
    return jnp.diag(1 - phi.w) + q * phi.w[None, :]
  w = jnp.diag(phi.w)
  if phi.parameterisation == "low_rank":
    w = w + phi.u @ phi.v.T
  return w


def check_labels(logits: jax.Array, labels: jax.Array,
                 mask: Optional[jax.Array] = None) -> None:
  """Checks ``logits [..., C]`` against ``labels [...]`` and ``mask [...]`` (trace time).

  Raises:
    ValueError: shape mismatch, naming both shapes.
    TypeError: non-integer labels.
  """
  if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
    raise ValueError(
        f"labels must have the shape of logits without the class axis: logits "
        f"{tuple(logits.shape)} expects labels {tuple(logits.shape[:-1])}, got "
        f"{tuple(labels.shape)}. Pass integer class ids, not one-hot vectors.")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integer class ids, got dtype {labels.dtype}.")
  if mask is not None and mask.shape != labels.shape:
    raise ValueError(
        f"mask shape {tuple(mask.shape)} must equal labels shape {tuple(labels.shape)}.")


def _check_shapes(phi: LossParams, c: int) -> None:
  """Trace-time shape checks of ``phi``'s other fields against ``C`` (names field and fix)."""
  if phi.b.shape not in ((), (c,)):
    raise ValueError(f"The bias b must be a scalar or [C] = [{c}], got shape "
                     f"{tuple(phi.b.shape)}.")
  if phi.parameterisation == "low_rank":
    if phi.u is None or phi.v is None:
      raise ValueError("A low_rank W needs both factors u and v of shape [C, r].")
    if phi.u.ndim != 2 or phi.u.shape[0] != c or phi.v.shape != phi.u.shape:
      raise ValueError(f"The low-rank factors u and v must both be [C, r] with C={c}; got u "
                       f"{tuple(phi.u.shape)} and v {tuple(phi.v.shape)}.")
  if phi.parameterisation == "soft_target" and phi.q is not None and phi.q.shape not in (
      (c,), (c, c)):
    raise ValueError(f"The soft targets q must be None, [C] or [C, C] with C={c}; got shape "
                     f"{tuple(phi.q.shape)}.")


def masked_mean(values: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
  """Mean of ``values [...]`` over entries with ``mask == 1`` (all if ``mask`` is None).

  An all-zero mask gives 0 (not NaN).
  """
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1)


def bilinear_score(phi: LossParams, log_probs: jax.Array, labels: jax.Array) -> jax.Array:
  """``log(p)^T W e_y`` for every example, without forming ``W`` when structured.

  Args:
    phi: loss parameters; ``phi.num_classes`` must equal ``C``.
    log_probs: float ``[..., C]``, log-probabilities (``log_softmax`` of logits).
    labels: int ``[...]``, class ids in ``[0, C)``.

  Returns:
    float ``[...]``.

  Raises:
    ValueError: ``C`` of ``phi`` differs from ``C`` of ``log_probs``, or the
      parameterisation is unknown.
  """
  _check_parameterisation(phi.parameterisation)
  c = log_probs.shape[-1]
  if phi.num_classes != c or (phi.parameterisation == "full" and phi.w.shape != (c, c)):
    raise ValueError(
        f"The loss has C={phi.num_classes} classes (W of shape {tuple(phi.w.shape)}) "
        f"but the student outputs C={c}; build the teacher with num_classes={c}.")
  _check_shapes(phi, c)
  if phi.parameterisation == "full":
    # Column y of W, as rows of W^T: [..., C].
    cols = jnp.take(phi.w.T, labels, axis=0)
    return jnp.sum(log_probs * cols, axis=-1)
  log_py = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  if phi.parameterisation == "soft_target":
    # (1 - eps_y) log p_y + eps_y q_y^T log p, never forming W.
    if phi.q is None:
      soft = jnp.mean(log_probs, axis=-1)
    elif phi.q.ndim == 1:
      soft = log_probs @ phi.q
    else:
      soft = jnp.sum(log_probs * _soft_target_columns(phi, labels), axis=-1)
    eps = jnp.take(phi.w, labels)
    return (1 - eps) * log_py + eps * soft
  score = jnp.take(phi.w, labels) * log_py
  if phi.parameterisation == "low_rank":
    score = score + jnp.sum((log_probs @ phi.u) * jnp.take(phi.v, labels, axis=0), axis=-1)
  return score


def parametric_loss(phi: LossParams, logits: jax.Array, labels: jax.Array,
                    mask: Optional[jax.Array] = None) -> jax.Array:
  """Eqn. (2): masked mean of ``link(-log(p)^T W e_y + b_y)``.

  ``link = sigmoid`` is the paper's Eqn. (2); ``identity`` gives the
  cross-entropy family (``W = I``: CE; ``soft_target`` with uniform ``q``:
  label smoothing).

  Args:
    phi: :class:`LossParams` (W and b).
    logits: float ``[..., C]`` (``p = softmax(logits)``).
    labels: int ``[...]``.
    mask: optional ``[...]`` of 0/1 (0 = padding, ignored).

  Returns:
    Scalar loss, dtype of ``logits``.

  Raises:
    ValueError / TypeError: shape, dtype or class-count mismatch.

  References:
    Wu et al., "Learning to Teach with Dynamic Loss Functions", NeurIPS 2018, Eqn. (2).
  """
  check_labels(logits, labels, mask)
  _check_link(phi.link)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  score = bilinear_score(phi, log_probs, labels)
  b = phi.b if phi.b.ndim == 0 else jnp.take(phi.b, labels)
  value = -score + b
  return masked_mean(jax.nn.sigmoid(value) if phi.link == "sigmoid" else value, mask)


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  mask: Optional[jax.Array] = None) -> jax.Array:
  """Masked mean cross-entropy ``-log p_y``; logits ``[..., C]``, labels int ``[...]``."""
  check_labels(logits, labels, mask)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  return masked_mean(nll, mask)


def label_smoothing(logits: jax.Array, labels: jax.Array, smoothing: float = 0.1,
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


def large_margin_logits(features: jax.Array, kernel: jax.Array, labels: jax.Array,
                        margin: int = 2, beta: float = 0.0) -> jax.Array:
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
    raise ValueError(
        f"features [..., {features.shape[-1]}] do not match the head kernel "
        f"{tuple(kernel.shape)} ([D, C]).")
  logits = features @ kernel
  w_norm = jnp.linalg.norm(kernel, axis=0)                       # [C]
  x_norm = jnp.sqrt(jnp.sum(features ** 2, axis=-1) + 1e-12)      # [...]
  w_y = jnp.take(w_norm, labels)
  f_y = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
  cos = jnp.clip(f_y / (w_y * x_norm + 1e-12), -1.0, 1.0)
  theta = jax.lax.stop_gradient(jnp.arccos(cos))
  k = jnp.floor(theta * margin / math.pi)
  psi = (-1.0) ** k * _chebyshev(int(margin), cos) - 2.0 * k
  target = (beta * f_y + w_y * x_norm * psi) / (1.0 + beta)
  onehot = jax.nn.one_hot(labels, kernel.shape[1], dtype=logits.dtype)
  return logits + onehot * (target - f_y)[..., None]


def large_margin_softmax(features: jax.Array, kernel: jax.Array, labels: jax.Array,
                         margin: int = 2, beta: float = 0.0,
                         mask: Optional[jax.Array] = None) -> jax.Array:
  """L-Softmax loss: cross-entropy of :func:`large_margin_logits` (masked mean)."""
  return cross_entropy(large_margin_logits(features, kernel, labels, margin, beta),
                       labels, mask)


BASELINES = ("cross_entropy", "label_smoothing", "large_margin", "sigmoid_cross_entropy")


@struct.dataclass
class BaselineLoss:
  """A fixed (non-learned) training loss with the teacher interface.

  A :class:`~dlf_jax.contracts.LossProvider`: it can stand wherever a
  :class:`dlf_jax.teacher.Teacher` is expected (``num_classes``, ``ema_decay``,
  ``init``, ``state_features``, ``phi``, ``loss``), so baselines and learned
  losses share one training step. Its "state" is the step ``t`` and its
  ``phi`` is the L-Softmax annealing weight ``beta_t`` (None otherwise).

  Attributes:
    kind: one of :data:`BASELINES`: ``cross_entropy``; ``label_smoothing``
      (``smoothing`` = eps); ``large_margin`` (L-Softmax, needs the student's
      penultimate ``features`` and ``head_kernel``; margin ``m`` and the
      annealed ``beta_t = max(beta_min, beta (1 + beta_gamma t)^-beta_power)``
      of Liu et al.'s code, without which L-Softmax does not train from
      scratch); ``sigmoid_cross_entropy`` (Eqn. 2 with ``W = I, b = 0``).
  """
  kind: str = struct.field(pytree_node=False, default="cross_entropy")
  smoothing: float = struct.field(pytree_node=False, default=0.1)
  margin: int = struct.field(pytree_node=False, default=2)
  beta: float = struct.field(pytree_node=False, default=1000.0)
  beta_min: float = struct.field(pytree_node=False, default=0.0)
  beta_gamma: float = struct.field(pytree_node=False, default=2.5e-5)
  beta_power: float = struct.field(pytree_node=False, default=35.0)

  def __post_init__(self):
    if self.kind not in BASELINES:
      raise ValueError(f"Unknown baseline loss {self.kind!r}; choose one of {BASELINES}.")
    if self.kind == "label_smoothing" and not 0.0 <= self.smoothing < 1.0:
      raise ValueError(f"label smoothing must be in [0, 1), got {self.smoothing}.")
    if self.kind == "large_margin" and (int(self.margin) != self.margin or self.margin < 1
                                        or self.beta < 0 or self.beta_min < 0):
      raise ValueError(f"L-Softmax needs an integer margin >= 1 and beta, beta_min >= 0; got "
                       f"margin={self.margin}, beta={self.beta}, beta_min={self.beta_min}.")

  @property
  def num_classes(self) -> None:
    """None: a baseline works for any ``C``."""
    return None

  @property
  def ema_decay(self) -> float:
    """Decay of the student's running statistics (carried, though no baseline reads them)."""
    return DEFAULT_EMA_DECAY

  def init(self, rng: jax.Array) -> dict:
    """``theta = {}``: a baseline has no parameters."""
    del rng
    return {}

  def state_features(self, step: jax.Array, stats: Any) -> jax.Array:
    """``[t]`` as float32 ``[1]`` (drives the L-Softmax annealing)."""
    del stats
    return jnp.asarray(step, jnp.float32)[None]

  def phi(self, theta: Any, s: jax.Array) -> Optional[jax.Array]:
    """``beta_t`` (float32 scalar) for ``large_margin``, else None."""
    del theta
    if self.kind != "large_margin":
      return None
    decayed = self.beta * (1.0 + self.beta_gamma * s[0]) ** (-self.beta_power)
    return jnp.maximum(self.beta_min, decayed)

  def loss(self, phi: Optional[jax.Array], outputs: Any, labels: jax.Array,
           mask: Optional[jax.Array] = None) -> jax.Array:
    """Scalar loss of ``outputs`` (logits ``[..., C]``; features/head_kernel for L-Softmax)."""
    if self.kind == "cross_entropy":
      return cross_entropy(outputs.logits, labels, mask)
    if self.kind == "label_smoothing":
      return label_smoothing(outputs.logits, labels, self.smoothing, mask)
    if self.kind == "sigmoid_cross_entropy":
      c = outputs.logits.shape[-1]
      return parametric_loss(identity_loss_params(c, dtype=outputs.logits.dtype),
                             outputs.logits, labels, mask)
    if outputs.features is None or outputs.head_kernel is None:
      raise ValueError(
          "large_margin needs the student's penultimate features and last-layer "
          "kernel: the model must return (logits, features) and the Student's "
          "head_path must name the last Dense kernel.")
    beta = self.beta_min if phi is None else phi
    return large_margin_softmax(outputs.features, outputs.head_kernel, labels,
                                self.margin, beta, mask)


def phi_statistics(phi: Any, max_dense: int = 1024) -> dict:
  """Scalar summaries of ``phi`` for logs and plots (jit-able).

  Returns:
    dict with ``w_diag_mean``, ``w_offdiag_mean`` (only if ``C <= max_dense``:
    it forms ``W``) and ``b_mean``; empty for ``phi = None`` (baselines).
  """
  if not isinstance(phi, LossParams):
    return {}
  c = phi.num_classes
  out = {"b_mean": jnp.mean(phi.b)}
  if phi.parameterisation == "full":
    diag = jnp.diag(phi.w)
  elif phi.parameterisation == "diagonal":
    diag = phi.w
  elif phi.parameterisation == "soft_target":
    out["eps_mean"] = jnp.mean(phi.w)
    if phi.q is None:
      q_yy = jnp.full_like(phi.w, 1.0 / c)
    else:
      q_yy = phi.q if phi.q.ndim == 1 else jnp.diag(phi.q)
    diag = 1 - phi.w + phi.w * q_yy
    # Every column sums to 1: the mean off-diagonal entry follows from the diagonal.
    out["w_diag_mean"] = jnp.mean(diag)
    out["w_offdiag_mean"] = (c - jnp.sum(diag)) / max(c * (c - 1), 1)
    return out
  else:
    diag = phi.w + jnp.sum(phi.u * phi.v, axis=-1)
  out["w_diag_mean"] = jnp.mean(diag)
  if c <= max_dense and c > 1 and phi.parameterisation != "diagonal":
    w = dense_w(phi)
    out["w_offdiag_mean"] = (jnp.sum(w) - jnp.sum(diag)) / (c * (c - 1))
  elif phi.parameterisation == "diagonal":
    out["w_offdiag_mean"] = jnp.zeros((), diag.dtype)
  return out
