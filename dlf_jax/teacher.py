"""The teacher mu_theta: training state s_t -> loss parameters phi_t (Sec. 3.2).

Two teacher modules map a state vector ``s_t`` to :class:`~dlf_jax.losses.LossForm`:

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
(``W ~ (1 - eps) I + eps / C``; ``full`` and ``soft_target`` W only). A
``forward_correction`` teacher can instead start at a given transition matrix
(``anchor_transition``, e.g. GLC's estimate of ``T``; Hendrycks et al. 2018).
With ``parameterisation='soft_target'`` the teacher outputs per-class smoothing
weights ``eps_y = 0.99 sigmoid(e_y)`` in ``(0, 0.99)`` and soft targets
``q_y = softmax(a_y)`` (``target``: ``uniform`` | ``shared`` | ``class``), so
every ``W`` it can produce has columns on the simplex; its cross-entropy anchor
is ``eps = 1e-3`` (a sigmoid cannot reach 0 with a non-zero gradient).

Neither module branches on the form of ``W``: ``parameterisation`` names a class of
:data:`dlf_jax.losses.FORMS`, which gives the raw parameters (names, shapes, anchor
initialisers: :meth:`~dlf_jax.losses.LossForm.raw_params`), mixes an attention bank
in raw-parameter space (:meth:`~dlf_jax.losses.LossForm.mix`) and maps raw
parameters to ``phi`` (:meth:`~dlf_jax.losses.LossForm.from_raw`). The parameter
names (``scores``, ``b_bank``, ``w_bank``, ``eps_bank``, ``target_bank``, ``u_bank``,
``v_bank``; ``hidden``, ``delta``, ``w0``, ``b0``, ``target0``, ``u``, ``v``) are
those of the forms' raw parameters.

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
from typing import Optional, cast

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlf_jax import checks, losses
from dlf_jax.contracts import Link, Parameterisation
# The state features live in their own module; re-exported here for compatibility.
from dlf_jax.state_features import (DEFAULT_EMA_DECAY, STATE_FEATURES, RunningStats,
                                    init_running_stats, state_vector, update_running_stats)

__all__ = [
    "STATE_FEATURES",
    "RunningStats",
    "init_running_stats",
    "update_running_stats",
    "state_vector",
    "AttentionTeacher",
    "MLPTeacher",
    "Teacher",
    "CE_ANCHOR_EPS",
]

# Re-exported from the loss family (they belong to the soft-target form).
CE_ANCHOR_EPS = losses.CE_ANCHOR_EPS
EPS_MAX = losses.EPS_MAX


def _form(module) -> type[losses.LossForm]:
  """The module's form class after the checks shared by both teacher modules.

  Raises:
    ValueError: unknown form, link, anchor or target; ``anchor_smoothing`` outside
      ``[0, 1)``; ``init_scale <= 0``; an anchor the form cannot start at.
  """
  form = losses.form(module.parameterisation)
  if module.link not in losses.LINKS:
    raise ValueError(f"Unknown link {module.link!r}; choose one of {losses.LINKS}.")
  if module.anchor not in losses.ANCHORS:
    raise ValueError(f"Unknown anchor {module.anchor!r}; choose one of {losses.ANCHORS}.")
  if module.target not in losses.TARGETS:
    raise ValueError(f"Unknown soft-target structure {module.target!r}; choose one of "
                     f"{losses.TARGETS}.")
  if not 0.0 <= module.anchor_smoothing < 1.0:
    raise ValueError(f"anchor_smoothing must be in [0, 1), got {module.anchor_smoothing}.")
  if not module.init_scale > 0:
    raise ValueError(f"init_scale must be > 0 (got {module.init_scale}): at 0 the teacher "
                     "sits on a saddle where every hypergradient vanishes; use e.g. 1e-2.")
  form.check_teacher(_spec(module))
  return form


def _check_sizes(module, **sizes) -> None:
  """Construction-time checks of a teacher module's sizes, naming the module, field and value.

  Checks ``num_classes >= 2`` and ``sizes``, each ``name=(value, minimum, fix)``.

  Raises:
    ValueError: a size that is not an integer or below its minimum.
  """
  kind = type(module).__name__
  checks.check_int(
      f"{kind}.num_classes", module.num_classes, 2, fix="set it to the student's number of classes")
  for name, (value, minimum, fix) in sizes.items():
    checks.check_int(f"{kind}.{name}", value, minimum, fix=fix)


def _spec(module) -> losses.TeacherSpec:
  return losses.TeacherSpec(
      num_classes=module.num_classes,
      rank=module.rank,
      target=module.target,
      anchor=module.anchor,
      anchor_smoothing=module.anchor_smoothing,
      init_scale=module.init_scale,
      anchor_transition=module.anchor_transition)


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
    parameterisation: a key of :data:`dlf_jax.losses.FORMS` (``full``, ``diagonal``,
      ``low_rank``, ``soft_target``, ``weighted_soft_target``, ``forward_correction``,
      ``logit_adjustment``).
    rank: ``r`` per bank entry (``low_rank``).
    per_class_bias: bias ``[C]`` (else scalar).
    init_scale: std of the non-zero perturbation around the anchor and of the
      attention scores' weights; must be > 0.
    link: ``sigmoid`` (Eqn. 2) | ``identity`` (:data:`dlf_jax.losses.LINKS`).
    anchor: ``cross_entropy`` | ``label_smoothing``: the loss at initialisation.
    anchor_smoothing: ``eps`` of the label-smoothing anchor, in ``[0, 1)``.
    target: ``soft_target`` only: ``uniform`` | ``shared`` | ``class``.

  Input ``s``: float ``[S]``. Output: :class:`~dlf_jax.losses.LossForm`.

  Raises:
    ValueError (at construction): ``num_classes < 2``, ``num_matrices < 1``
      (an empty bank is ``W = 0, b = 0``: a constant loss whose hypergradient
      is 0), ``rank < 1``, or a size that is not an integer.
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
  anchor_transition: Optional[tuple] = None

  def __post_init__(self):
    _check_sizes(
        self,
        num_matrices=(self.num_matrices, 1, "an empty bank is W = 0, b = 0, a "
                      "constant loss the teacher cannot learn; e.g. 8"),
        rank=(self.rank, 1, ""))
    super().__post_init__()

  @nn.compact
  def __call__(self, s: jax.Array) -> losses.LossForm:
    form = _form(self)
    c, k, eps = self.num_classes, self.num_matrices, self.init_scale
    scores = nn.Dense(
        k,
        kernel_init=nn.initializers.normal(eps),
        bias_init=nn.initializers.normal(eps),
        name="scores")(
            s)
    a = jax.nn.softmax(scores)  # [K]
    b_shape = (k, c) if self.per_class_bias else (k,)
    b = jnp.einsum("k,k...->...", a, self.param("b_bank", nn.initializers.normal(eps), b_shape))
    specs = form.raw_params(_spec(self))
    banks = {p.key: self.param(p.bank, p.init, (k,) + p.shape) for p in specs}
    return form.from_raw(form.mix(a, banks), b, self.link)


class MLPTeacher(nn.Module):
  """``W_t = W_0 + Delta W(s_t)``, ``b_t = b_0 + Delta b(s_t)`` with a small MLP.

  ``W_0`` starts at the anchor (+ perturbation); the MLP's output layer is
  initialised small but non-zero. The MLP drives the form's first raw parameter
  (:meth:`~dlf_jax.losses.LossForm.raw_params`) and the bias; the others are
  learned static parameters: for ``low_rank`` it drives the diagonal (``U, V``
  static), for ``soft_target`` the smoothing logits ``e_y`` (the soft-target
  logits static; for ``weighted_soft_target`` the class-weight logits too).

  Attributes: as :class:`AttentionTeacher` (``hidden``: the MLP's width;
  ``anchor_transition`` seeds ``w0``).

  Input ``s``: float ``[S]`` with ``S >= 1`` (the MLP reads the state; a
  :class:`Teacher` with ``features=()`` is refused). Output:
  :class:`~dlf_jax.losses.LossForm`.

  Raises:
    ValueError (at construction): ``num_classes < 2``, ``hidden < 1``,
      ``rank < 1``, or a size that is not an integer; at ``init``: as
      :class:`AttentionTeacher`.
  """
  needs_state = True  # its MLP reads s_t: a Teacher with features=() is refused
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
  anchor_transition: Optional[tuple] = None

  def __post_init__(self):
    _check_sizes(self, hidden=(self.hidden, 1, "the MLP's width, e.g. 32"), rank=(self.rank, 1, ""))
    super().__post_init__()

  @nn.compact
  def __call__(self, s: jax.Array) -> losses.LossForm:
    form = _form(self)
    c, eps = self.num_classes, self.init_scale
    driven, *static = form.raw_params(_spec(self))
    w_shape = driven.shape
    b_shape = (c,) if self.per_class_bias else ()
    n_w, n_b = math.prod(w_shape), math.prod(b_shape)
    h = jnp.tanh(nn.Dense(self.hidden, name="hidden")(s))
    delta = nn.Dense(
        n_w + n_b,
        kernel_init=nn.initializers.normal(eps),
        bias_init=nn.initializers.zeros,
        name="delta")(
            h)
    w = self.param("w0", driven.init, w_shape) + delta[:n_w].reshape(w_shape)
    b = self.param("b0", nn.initializers.normal(eps), b_shape) + delta[n_w:].reshape(b_shape)
    raw = {driven.key: w, **{p.key: self.param(p.single, p.init, p.shape) for p in static}}
    return form.from_raw(raw, b, self.link)


@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
  """mu_theta together with its state features: what the student step calls.

  A :class:`~dlf_jax.contracts.LossProvider`: ``theta`` is the module's flax
  params, ``phi_t`` a :class:`~dlf_jax.losses.LossForm`.

  Attributes:
    module: :class:`AttentionTeacher` or :class:`MLPTeacher` (any flax module
      mapping ``s [S]`` to :class:`~dlf_jax.losses.LossForm`).
    features: state feature names (subset of :data:`STATE_FEATURES`); ``()``
      gives a static loss (an attention teacher's fixed mixture), refused for
      a module that reads the state (:class:`MLPTeacher`).
    total_steps: length of the student's whole run (an integer >= 1);
      normalises ``progress``.
    ema_decay: decay of the running training loss / accuracy, in [0, 1).

  Raises:
    ValueError: an unknown feature, ``features=()`` for an :class:`MLPTeacher`,
      ``total_steps`` not an integer >= 1, ``ema_decay`` outside ``[0, 1)``.
  """
  module: nn.Module
  features: tuple = STATE_FEATURES
  total_steps: int = 1000
  ema_decay: float = DEFAULT_EMA_DECAY
  # A learned loss: train_student needs its frozen theta (a class attribute, not a field).
  needs_theta = True

  def __post_init__(self):
    for name in self.features:
      if name not in STATE_FEATURES:
        raise ValueError(f"Unknown state feature {name!r}; choose from {STATE_FEATURES}.")
    if not self.features and getattr(self.module, "needs_state", False):
      raise ValueError(f"{type(self.module).__name__} reads the state s_t but features=(): "
                       "give it state features (e.g. features=('progress',), or leave "
                       "features out for all of them), or use AttentionTeacher for a static "
                       "loss.")
    checks.check_int("total_steps", self.total_steps, 1, fix="the length of the student's run")
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

  def phi(self, theta, s: jax.Array) -> losses.LossForm:
    """``phi_t = mu_theta(s_t)``."""
    # ``apply`` is typed for any module output; this module returns one LossForm.
    return cast(losses.LossForm, self.module.apply({"params": theta}, s))

  def loss(self, phi: losses.LossForm, outputs, labels, mask=None) -> jax.Array:
    """Eqn. (2) on ``outputs.logits [..., C]``; see :func:`~dlf_jax.losses.parametric_loss`."""
    return losses.parametric_loss(phi, outputs.logits, labels, mask)
