"""The teacher mu_theta: training state s_t -> loss parameters phi_t (Sec. 3.2).

Two teacher modules map a state vector ``s_t`` to :class:`~dlf_jax.losses.LossParams`:

* :class:`AttentionTeacher` (default; the paper's Figure 2): attention over a
  bank of ``K`` learnable loss matrices,
  ``Phi_t = sum_k a_k W_k``, ``a = softmax(V s_t)``. With structured ``W``
  the bank holds structured matrices; a mixture of ``K`` low-rank matrices of
  rank ``r`` is represented exactly with rank ``K r``.
* :class:`MLPTeacher`: ``W_t = W_0 + Delta W(s_t)`` with a small MLP.

Both are initialised at an *anchor* loss with a small **non-zero**
perturbation (an exactly-zero dynamic part is a saddle at which every teacher
gradient vanishes): ``cross_entropy`` (``W ~ I``, ``b ~ 0``; the paper's
initialisation) or ``label_smoothing`` with ``anchor_smoothing = eps``
(``W ~ (1 - eps) I + eps / C``; ``full`` and ``soft_target`` W only).
With ``parameterisation='soft_target'`` the teacher outputs per-class smoothing
weights ``eps_y = 0.99 sigmoid(e_y)`` in ``(0, 0.99)`` and soft targets
``q_y = softmax(a_y)`` (``target``: ``uniform`` | ``shared`` | ``class``), so
every ``W`` it can produce has columns on the simplex; its cross-entropy anchor
is ``eps = 1e-3`` (a sigmoid cannot reach 0 with a non-zero gradient).

The state ``s_t`` (:func:`~dlf_jax.state_features.state_vector`) is built from
the student's progress: ``progress = t / total_steps``, running averages of the
training cross-entropy and accuracy, and the last measured dev accuracy, carried
in :class:`~dlf_jax.state_features.RunningStats` inside the unroll (module
:mod:`dlf_jax.state_features`; its names are re-exported here). The running
averages depend on the student's parameters, but are recorded as data in the
forward pass and treated as constants in the reverse (as in the authors' demo).
:class:`Teacher` implements :class:`~dlf_jax.contracts.LossProvider`.
"""
from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlf_jax import losses
from dlf_jax.contracts import Link, Parameterisation
# The state features live in their own module; re-exported here for compatibility.
from dlf_jax.state_features import (DEFAULT_EMA_DECAY, STATE_FEATURES, RunningStats,
                                    init_running_stats, state_vector, update_running_stats)

__all__ = [
    "STATE_FEATURES", "RunningStats", "init_running_stats", "update_running_stats",
    "state_vector", "AttentionTeacher", "MLPTeacher", "Teacher", "CE_ANCHOR_EPS",
]


def _logit(p: float) -> float:
  return math.log(p) - math.log1p(-p)


def _perturbed(base_fn, scale):
  def init(rng, shape, dtype=jnp.float32):
    return base_fn(shape, dtype) + scale * jax.random.normal(rng, shape, dtype)
  return init


def _eye_bank(shape, dtype):          # [K, C, C] of identities
  return jnp.broadcast_to(jnp.eye(shape[-1], dtype=dtype), shape)


# eps of the soft-target cross-entropy anchor: 1e-3 (CE up to 0.1%).
CE_ANCHOR_EPS = 1e-3
# eps = EPS_MAX sigmoid(e) < 1 even where float32's sigmoid rounds to 1.
EPS_MAX = 0.99


def _check_module(module) -> None:
  """Trace-time checks shared by both teacher modules (names the bad field and the fix)."""
  if module.parameterisation not in losses.PARAMETERISATIONS:
    raise ValueError(f"Unknown W parameterisation {module.parameterisation!r}; "
                     f"choose one of {losses.PARAMETERISATIONS}.")
  if module.link not in losses.LINKS:
    raise ValueError(f"Unknown link {module.link!r}; choose one of {losses.LINKS}.")
  if module.anchor not in losses.ANCHORS:
    raise ValueError(f"Unknown anchor {module.anchor!r}; choose one of {losses.ANCHORS}.")
  if module.target not in losses.TARGETS:
    raise ValueError(f"Unknown soft-target structure {module.target!r}; choose one of "
                     f"{losses.TARGETS}.")
  if not 0.0 <= module.anchor_smoothing < 1.0:
    raise ValueError(f"anchor_smoothing must be in [0, 1), got {module.anchor_smoothing}.")
  if module.parameterisation == "soft_target" and module.anchor_smoothing >= EPS_MAX:
    raise ValueError(f"anchor_smoothing must be below {EPS_MAX} for a soft-target teacher "
                     f"(eps = {EPS_MAX} sigmoid(e)); got {module.anchor_smoothing}.")
  if not module.init_scale > 0:
    raise ValueError(f"init_scale must be > 0 (got {module.init_scale}): at 0 the teacher "
                     "sits on a saddle where every hypergradient vanishes; use e.g. 1e-2.")
  if (module.anchor == "label_smoothing" and module.anchor_smoothing > 0
      and module.parameterisation in ("diagonal", "low_rank")):
    raise ValueError(f"A {module.parameterisation!r} W cannot start at label smoothing (it has "
                     "no off-diagonal mass): use parameterisation='soft_target' or 'full', or "
                     "anchor='cross_entropy'.")


def _anchor_eps(module) -> float:
  """``eps`` of the anchor (soft-target and full W)."""
  if module.anchor == "label_smoothing":
    return module.anchor_smoothing
  return CE_ANCHOR_EPS if module.parameterisation == "soft_target" else 0.0


def _anchor_full_bank(eps: float):
  """``[K, C, C]`` of ``(1 - eps) I + eps / C`` (the identity when ``eps = 0``)."""
  def init(shape, dtype):
    c = shape[-1]
    return jnp.broadcast_to((1 - eps) * jnp.eye(c, dtype=dtype) + eps / c, shape)
  return init


def _eps_logit(module) -> float:
  """``e`` with ``EPS_MAX sigmoid(e)`` = the anchor's eps."""
  return _logit(_anchor_eps(module) / EPS_MAX)


def _constant(value: float):
  return lambda shape, dtype: jnp.full(shape, value, dtype)


def _soft_target_phi(eps_logit, target_logits, b, link) -> losses.LossParams:
  """``soft_target`` LossParams from ``e [C]`` and target logits (None, ``[C]``, ``[C, C]``)."""
  q = None if target_logits is None else jax.nn.softmax(target_logits, axis=0)
  return losses.LossParams(EPS_MAX * jax.nn.sigmoid(eps_logit), b, q=q,
                           parameterisation="soft_target", link=link)


class AttentionTeacher(nn.Module):
  """``Phi_t = sum_k softmax(V s_t)_k W_k`` (the paper's Fig. 2 teacher).

  With ``soft_target`` the bank holds ``K`` smoothing logits ``e_k [C]`` and
  soft-target logits ``a_k`` (``[C]`` shared or ``[C, C]`` per class); the
  attention mixes them, ``eps = 0.99 sigmoid(sum_k a_k e_k)``,
  ``q_y = softmax(sum_k a_k a_k[:, y])`` (a mixture in parameter space, so that
  every mixture is again a soft target on the simplex).

  Attributes:
    num_classes: ``C``.
    num_matrices: ``K``, the size of the bank.
    parameterisation: ``full`` | ``diagonal`` | ``low_rank`` | ``soft_target``.
    rank: ``r`` per bank entry (``low_rank``).
    per_class_bias: bias ``[C]`` (else scalar).
    init_scale: std of the non-zero perturbation around the anchor and of the
      attention scores' weights; must be > 0.
    link: ``sigmoid`` (Eqn. 2) | ``identity`` (:data:`dlf_jax.losses.LINKS`).
    anchor: ``cross_entropy`` | ``label_smoothing``: the loss at initialisation.
    anchor_smoothing: ``eps`` of the label-smoothing anchor, in ``[0, 1)``.
    target: ``soft_target`` only: ``uniform`` | ``shared`` | ``class``.

  Input ``s``: float ``[S]``. Output: :class:`~dlf_jax.losses.LossParams`.

  Raises:
    ValueError (at ``init``): an unknown parameterisation, link, anchor or
      target; ``init_scale <= 0``; a label-smoothing anchor for a diagonal or
      low-rank W.
  """
  num_classes: int
  num_matrices: int = 8
  parameterisation: Parameterisation = "full"
  rank: int = 4
  per_class_bias: bool = True
  init_scale: float = 1e-2
  link: Link = "sigmoid"
  anchor: str = "cross_entropy"
  anchor_smoothing: float = 0.1
  target: str = "class"

  @nn.compact
  def __call__(self, s: jax.Array) -> losses.LossParams:
    _check_module(self)
    c, k, eps = self.num_classes, self.num_matrices, self.init_scale
    scores = nn.Dense(k, kernel_init=nn.initializers.normal(eps),
                      bias_init=nn.initializers.normal(eps), name="scores")(s)
    a = jax.nn.softmax(scores)                                         # [K]
    b_shape = (k, c) if self.per_class_bias else (k,)
    b = jnp.einsum("k,k...->...", a, self.param("b_bank", nn.initializers.normal(eps), b_shape))
    if self.parameterisation == "soft_target":
      e = a @ self.param("eps_bank", _perturbed(_constant(_eps_logit(self)), eps), (k, c))
      t_shape = {"uniform": None, "shared": (k, c), "class": (k, c, c)}[self.target]
      t = None if t_shape is None else jnp.einsum(
          "k,k...->...", a, self.param("target_bank", nn.initializers.normal(eps), t_shape))
      return _soft_target_phi(e, t, b, self.link)
    if self.parameterisation == "full":
      w = self.param("w_bank", _perturbed(_anchor_full_bank(_anchor_eps(self)), eps), (k, c, c))
      return losses.LossParams(jnp.einsum("k,kij->ij", a, w), b, parameterisation="full",
                               link=self.link)
    w = self.param("w_bank", _perturbed(jnp.ones, eps), (k, c))
    w = a @ w
    if self.parameterisation == "diagonal":
      return losses.LossParams(w, b, parameterisation="diagonal", link=self.link)
    u = self.param("u_bank", nn.initializers.normal(eps), (k, c, self.rank))
    v = self.param("v_bank", nn.initializers.normal(eps), (k, c, self.rank))
    # sum_k a_k U_k V_k^T = [a_1 U_1 .. a_K U_K] [V_1 .. V_K]^T, rank K r.
    u = jnp.moveaxis(a[:, None, None] * u, 0, 1).reshape(c, k * self.rank)
    v = jnp.moveaxis(v, 0, 1).reshape(c, k * self.rank)
    return losses.LossParams(w, b, u, v, parameterisation="low_rank", link=self.link)


class MLPTeacher(nn.Module):
  """``W_t = W_0 + Delta W(s_t)``, ``b_t = b_0 + Delta b(s_t)`` with a small MLP.

  ``W_0`` starts at the anchor (+ perturbation); the MLP's output layer is
  initialised small but non-zero. For ``low_rank`` the MLP drives the diagonal
  and the bias, ``U, V`` are learned static factors; for ``soft_target`` it
  drives the smoothing logits ``e_y`` and the bias, the soft-target logits are
  learned static parameters.

  Attributes: as :class:`AttentionTeacher` (``hidden``: the MLP's width).

  Input ``s``: float ``[S]``. Output: :class:`~dlf_jax.losses.LossParams`.
  """
  num_classes: int
  parameterisation: Parameterisation = "full"
  rank: int = 4
  per_class_bias: bool = True
  hidden: int = 32
  init_scale: float = 1e-2
  link: Link = "sigmoid"
  anchor: str = "cross_entropy"
  anchor_smoothing: float = 0.1
  target: str = "class"

  @nn.compact
  def __call__(self, s: jax.Array) -> losses.LossParams:
    _check_module(self)
    c, eps = self.num_classes, self.init_scale
    w_shape = (c, c) if self.parameterisation == "full" else (c,)
    b_shape = (c,) if self.per_class_bias else ()
    n_w, n_b = math.prod(w_shape), math.prod(b_shape)
    h = jnp.tanh(nn.Dense(self.hidden, name="hidden")(s))
    delta = nn.Dense(n_w + n_b, kernel_init=nn.initializers.normal(eps),
                     bias_init=nn.initializers.zeros, name="delta")(h)
    if self.parameterisation == "full":
      base = lambda sh, dt: _anchor_full_bank(_anchor_eps(self))((1,) + sh, dt)[0]
    elif self.parameterisation == "soft_target":
      base = _constant(_eps_logit(self))
    else:
      base = jnp.ones
    w = self.param("w0", _perturbed(base, eps), w_shape) + delta[:n_w].reshape(w_shape)
    b = self.param("b0", nn.initializers.normal(eps), b_shape) + delta[n_w:].reshape(b_shape)
    if self.parameterisation == "soft_target":
      t_shape = {"uniform": None, "shared": (c,), "class": (c, c)}[self.target]
      t = None if t_shape is None else self.param("target0", nn.initializers.normal(eps),
                                                  t_shape)
      return _soft_target_phi(w, t, b, self.link)
    if self.parameterisation == "low_rank":
      u = self.param("u", nn.initializers.normal(eps), (c, self.rank))
      v = self.param("v", nn.initializers.normal(eps), (c, self.rank))
      return losses.LossParams(w, b, u, v, parameterisation="low_rank", link=self.link)
    return losses.LossParams(w, b, parameterisation=self.parameterisation, link=self.link)


@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
  """mu_theta together with its state features: what the student step calls.

  A :class:`~dlf_jax.contracts.LossProvider`: ``theta`` is the module's flax
  params, ``phi_t`` a :class:`~dlf_jax.losses.LossParams`.

  Attributes:
    module: :class:`AttentionTeacher` or :class:`MLPTeacher` (any flax module
      mapping ``s [S]`` to :class:`~dlf_jax.losses.LossParams`).
    features: state feature names (subset of :data:`STATE_FEATURES`).
    total_steps: length of the student's whole run; normalises ``progress``.
    ema_decay: decay of the running training loss / accuracy, in [0, 1).
  """
  module: nn.Module
  features: tuple = STATE_FEATURES
  total_steps: int = 1000
  ema_decay: float = DEFAULT_EMA_DECAY

  def __post_init__(self):
    for name in self.features:
      if name not in STATE_FEATURES:
        raise ValueError(f"Unknown state feature {name!r}; choose from {STATE_FEATURES}.")
    if self.total_steps <= 0:
      raise ValueError(f"total_steps must be > 0, got {self.total_steps}.")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")

  @property
  def num_classes(self) -> int:
    """``C`` of the module's loss."""
    return self.module.num_classes

  def init(self, rng: jax.Array):
    """theta: the teacher's flax params (a pytree)."""
    return self.module.init(rng, jnp.zeros((len(self.features),), jnp.float32))["params"]

  def state_features(self, step, stats: RunningStats) -> jax.Array:
    """``s_t``: float32 ``[S]`` (constant w.r.t. the student's parameters)."""
    return state_vector(self.features, step, self.total_steps, stats)

  def phi(self, theta, s: jax.Array) -> losses.LossParams:
    """``phi_t = mu_theta(s_t)``."""
    return self.module.apply({"params": theta}, s)

  def loss(self, phi: losses.LossParams, outputs, labels, mask=None) -> jax.Array:
    """Eqn. (2) on ``outputs.logits [..., C]``; see :func:`~dlf_jax.losses.parametric_loss`."""
    return losses.parametric_loss(phi, outputs.logits, labels, mask)
