"""Eqn. (2) and its family: one ``flax.struct`` pytree per form of ``W``.

The parametric ("bilinear") loss of L2T-DLF (Wu et al., 2018, Eqn. 2) for one
example with probabilities ``p`` over ``C`` classes and integer label ``y``:

    L_phi(p, y) = link(-log(p)^T W e_y + b_y),        phi = {W, b}

``link = sigmoid`` is the paper's Eqn. (2) (the authors' demo writes the
equivalent ``-sigmoid(log p^T W y + b)``); with ``W = I`` and ``b = 0`` it is
``sigmoid(CE)``. Column ``y`` of ``W`` weights every class's log-probability for
target ``y``: ``W[y, y] > 0`` is the likelihood term, ``W[i, y] > 0`` smooths
toward class ``i`` and ``W[i, y] < 0`` pushes away from it.

Each form of ``W`` is one class here (a pytree ``phi``) and one entry of
:data:`FORMS`, keyed by the name the teacher modules and configs use:

* :class:`FullW` (``full``): a dense ``[C, C]`` matrix;
* :class:`DiagonalW` (``diagonal``): ``W = diag(w)``, ``w`` of shape ``[C]``;
* :class:`LowRankW` (``low_rank``): ``W = diag(w) + U V^T`` with ``U, V`` of
  shape ``[C, r]``; the score ``w_y log p_y + (log(p)^T U) . V[y]`` never forms
  ``W`` (memory ``O(C r)``), which a vocabulary-sized ``C`` needs;
* :class:`SoftTargetW` (``soft_target``; ours, not the paper's): every column of
  ``W`` on the simplex, ``W[:, y] = (1 - eps_y) e_y + eps_y q_y`` with ``eps_y``
  in ``[0, 1)`` and a target distribution ``q_y`` (uniform, one ``q`` shared by
  every class -- ``O(C)`` -- or one per class, ``[C, C]``). ``W`` never has a
  negative entry, so the student cannot lower the loss by pushing a wrong class
  to ``p -> 0``.

The forms that contain the known noisy-label / class-imbalance fixes (Patrini et
al. 2017; Cui et al. 2019; Menon et al. 2021), each exactly cross-entropy at its
anchor (identity link):

* :class:`WeightedSoftTargetW` (``weighted_soft_target``): a soft-target ``W`` with
  per-class loss weights ``c_y`` (class-balanced reweighting, Cui et al. 2019);
  a teacher outputs ``c = C softmax(.)``, positive with mean 1;
* :class:`ForwardCorrectionW` (``forward_correction``): ``-log((p^T T)_y)`` with
  ``T`` row-stochastic (Patrini et al. 2017); a teacher outputs the row-softmax
  of learned logits, started at ``T ~ I``, or seeded at a given ``T``;
* :class:`LogitOffsetW` (``logit_adjustment``): ``-log softmax(z + delta)_y``
  (Menon et al. 2021); ``delta = 0`` is cross-entropy, ``tau log pi`` logit
  adjustment.

The **link** (:data:`~dlf_jax.losses.core.LINKS`) wraps the score: ``sigmoid``
or ``identity``, ``L = -log(p)^T W e_y + b_y``. With the identity link ``W = I``
is exactly cross-entropy, a soft-target ``W`` with uniform ``q`` is exactly label
smoothing with ``eps`` (Szegedy et al., 2016), and a class-conditional ``q_y`` is
a class-conditional soft target (cf. Online Label Smoothing, Zhang et al., 2021).
The identity link is bounded below only for a non-negative ``W`` (soft target,
or diagonal with ``w >= 0``). With the sigmoid link, ``W = I`` is ``sigmoid(CE)``,
whose logit gradient is cross-entropy's times ``sigmoid'(CE) <= 1/4``: at
initialisation (``CE ~ log C``) that is ``~0.08`` for 10 classes, and ``~e^-CE``
on hard examples, which are starved; a student trained on it from scratch needs a
warm start or a larger learning rate.

**What a teacher needs of a form.** A teacher module (:mod:`dlf_jax.teacher`)
never branches on the form: it asks the form class for its raw parameters
(:meth:`LossForm.raw_params`, given a static :class:`TeacherSpec`: shapes, anchor
initialisers and the parameter names of each teacher), mixes the attention bank
with :meth:`LossForm.mix` and maps raw parameters to ``phi`` with
:meth:`LossForm.from_raw`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar, NamedTuple, Optional, cast, get_args

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from dlf_jax.contracts import Parameterisation
from dlf_jax.losses import core

__all__ = [
    "LossForm",
    "FullW",
    "DiagonalW",
    "LowRankW",
    "SoftTargetW",
    "WeightedSoftTargetW",
    "ForwardCorrectionW",
    "LogitOffsetW",
    "FORMS",
    "PARAMETERISATIONS",
    "TARGETS",
    "ANCHORS",
    "CE_ANCHOR_EPS",
    "EPS_MAX",
    "TeacherSpec",
    "RawParam",
    "form",
    "parametric_loss",
    "identity_loss_params",
    "anchor_loss_params",
    "soft_target_params",
    "dense_w",
    "bilinear_score",
    "phi_statistics",
]

# Structure of the soft targets q_y of SoftTargetW: uniform (label smoothing), one
# learned distribution shared by all classes ([C]), one per class ([C, C]).
TARGETS = ("uniform", "shared", "class")
# The loss a teacher starts from (LossForm.cross_entropy / LossForm.label_smoothing).
ANCHORS = ("cross_entropy", "label_smoothing")
# eps of a soft-target teacher's cross-entropy anchor: 1e-3 (CE up to 0.1%; a sigmoid
# cannot reach 0 with a non-zero gradient).
CE_ANCHOR_EPS = 1e-3
# A teacher's eps = EPS_MAX sigmoid(e) < 1 even where float32's sigmoid rounds to 1.
EPS_MAX = 0.99


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
  """What a teacher module tells a form about the loss it builds (static, hashable).

  Attributes:
    num_classes: ``C``.
    rank: ``r`` of a low-rank part (per bank entry of the attention teacher).
    target: soft-target structure, one of :data:`TARGETS`.
    anchor: one of :data:`ANCHORS`, the loss at initialisation.
    anchor_smoothing: ``eps`` of the label-smoothing anchor, in ``[0, 1)``.
    init_scale: std of the non-zero perturbation around the anchor (> 0).
    anchor_transition: None, or a row-stochastic ``T`` as a ``C``-tuple of ``C``-tuples
      of floats (static, hashable): a ``forward_correction`` teacher then starts at
      forward correction with this ``T`` (e.g. GLC's estimate, Hendrycks et al. 2018)
      instead of at ``anchor``.
  """
  num_classes: int
  rank: int = 4
  target: str = "class"
  anchor: str = "cross_entropy"
  anchor_smoothing: float = 0.1
  init_scale: float = 1e-2
  anchor_transition: Optional[tuple] = None

  @property
  def starts_smoothed(self) -> bool:
    """True if the anchor is label smoothing with ``eps > 0``."""
    return self.anchor == "label_smoothing" and self.anchor_smoothing > 0


class RawParam(NamedTuple):
  """One raw teacher parameter of a form (before :meth:`LossForm.from_raw`).

  Attributes:
    key: its key in the dict that :meth:`LossForm.mix` / :meth:`LossForm.from_raw` read.
    shape: its shape for one loss (the attention teacher's bank adds a leading ``K``).
    init: flax initialiser ``init(rng, shape, dtype)`` for any leading shape.
    bank: the attention teacher's parameter name (``[K, *shape]``).
    single: the MLP teacher's parameter name (``shape``).
  """
  key: str
  shape: tuple
  init: Callable
  bank: str
  single: str


def _perturbed(base_fn, scale):
  """``base_fn(shape) + scale N(0, 1)``: an anchor with a small non-zero perturbation."""

  def init(rng, shape, dtype=jnp.float32):
    return base_fn(shape, dtype) + scale * jax.random.normal(rng, shape, dtype)

  return init


def _constant(value: float):
  return lambda shape, dtype: jnp.full(shape, value, dtype)


def _logit(p: float) -> float:
  return math.log(p) - math.log1p(-p)


def _label_smoothing_w(eps: float):
  """``(1 - eps) I + eps / C`` broadcast to ``shape [..., C, C]`` (``I`` when ``eps = 0``)."""

  def init(shape, dtype):
    c = shape[-1]
    return jnp.broadcast_to((1 - eps) * jnp.eye(c, dtype=dtype) + eps / c, shape)

  return init


class LossForm:
  """Base of the forms of ``W``: the shared parts of Eqn. (2) (bias, link, checks).

  A subclass is a ``flax.struct`` dataclass with fields ``b`` (float ``[]`` or
  ``[C]``) and ``link`` (static, one of :data:`~dlf_jax.losses.core.LINKS`) and
  implements ``num_classes``, ``_score``, ``dense``, ``statistics``,
  ``cross_entropy``, ``raw_params``, ``mix`` and ``from_raw``. Forms whose loss
  is not a bilinear score of ``log p`` override :meth:`per_example`.

  Class attributes:
    name: the key in :data:`FORMS`.
    represents_label_smoothing: True if :meth:`label_smoothing` exists.
    scales_to_vocabulary: True if memory is ``O(C)`` / ``O(C r)`` (translation).
    takes_anchor_transition: True if a teacher can start at a given ``T``
      (:attr:`TeacherSpec.anchor_transition`).
  """
  name: ClassVar[str] = ""
  represents_label_smoothing: ClassVar[bool] = False
  scales_to_vocabulary: ClassVar[bool] = True
  # True if a teacher of this form can start at a given transition matrix
  # (TeacherSpec.anchor_transition): forward correction only.
  takes_anchor_transition: ClassVar[bool] = False

  # The fields every subclass declares, for the shared methods below. LossForm is not a
  # dataclass, so these annotations add no fields: each subclass's pytree is its own fields.
  b: jax.Array
  link: str

  # ----------------------------------------------------------------- the loss

  @property
  def num_classes(self) -> int:
    """``C``."""
    raise NotImplementedError

  def _w_text(self) -> str:
    return f"the {self.name} W"

  def check(self, c: int) -> None:
    """Trace-time shape checks of the fields against ``C`` (names field and fix).

    Raises:
      ValueError: a class count other than ``c`` or a field of the wrong shape.
    """
    if self.num_classes != c:
      raise ValueError(f"The loss has C={self.num_classes} classes ({self._w_text()}) "
                       f"but the student outputs C={c}; build the teacher with num_classes={c}.")
    if np.shape(self.b) not in ((), (c,)):
      raise ValueError(f"The bias b must be a scalar or [C] = [{c}], got shape "
                       f"{tuple(np.shape(self.b))}.")

  def _check_rank(self, field: str, ndim: int, what: str) -> None:
    """Raises if the array field ``field`` is not of rank ``ndim`` (square if 2).

    The message names the class, the field, its shape and ``what`` it should be
    (checked before the class count, which is read off that field).
    """
    shape = tuple(np.shape(getattr(self, field)))
    if len(shape) != ndim or (ndim == 2 and shape[0] != shape[1]):
      raise ValueError(f"{type(self).__name__}.{field} must be {what}, got shape {shape}.")

  def _score(self, log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    raise NotImplementedError

  def score(self, log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """``log(p)^T W e_y`` for every example, without forming ``W`` when structured.

    Args:
      log_probs: float ``[..., C]``, log-probabilities (``log_softmax`` of logits).
      labels: int ``[...]``, class ids in ``[0, C)``.

    Returns:
      float ``[...]``.

    Raises:
      ValueError: ``C`` of the loss differs from ``C`` of ``log_probs``, or a field
        has the wrong shape.
    """
    self.check(log_probs.shape[-1])
    return self._score(log_probs, labels)

  def per_example(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``link(-log(p)^T W e_y + b_y)`` per example: float ``[...]`` (Eqn. 2).

    Args:
      logits: float ``[..., C]`` (``p = softmax(logits)``).
      labels: int ``[...]``.
    """
    core.check_link(self.link)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    score = self.score(log_probs, labels)
    b = self.b if jnp.ndim(self.b) == 0 else jnp.take(self.b, labels)
    return core.apply_link(self.link, -score + b)

  def dense(self) -> jax.Array:
    """The dense ``[C, C]`` matrix ``W`` (for tests and plots; forms it)."""
    raise NotImplementedError

  def statistics(self, max_dense: int = 1024) -> dict:
    """Scalar summaries for logs and plots (jit-able).

    ``b_mean``, ``w_diag_mean``, ``w_offdiag_mean`` (when cheap or
    ``C <= max_dense``), and form-specific ones.
    """
    raise NotImplementedError

  # ----------------------------------------------------------------- anchors

  @classmethod
  def cross_entropy(cls,
                    num_classes: int,
                    *,
                    rank: int = 0,
                    b: jax.Array,
                    link: str,
                    dtype=jnp.float32) -> "LossForm":
    """``W = I`` with bias ``b``: CE (identity link) or ``sigmoid(CE)`` (sigmoid link)."""
    raise NotImplementedError

  @classmethod
  def label_smoothing(cls,
                      num_classes: int,
                      smoothing: float,
                      *,
                      b: jax.Array,
                      link: str,
                      dtype=jnp.float32) -> "LossForm":
    """``W = (1 - eps) I + eps / C 1 1^T``: label smoothing under the identity link.

    Raises:
      ValueError: the form has no off-diagonal mass to represent it.
    """
    del num_classes, smoothing, b, link, dtype
    raise ValueError(f"A {cls.name!r} W cannot represent label smoothing (it has no "
                     "off-diagonal mass): use parameterisation='soft_target' or 'full'.")

  # ----------------------------------------------------------------- teachers

  @classmethod
  def check_teacher(cls, spec: TeacherSpec) -> None:
    """Raises ``ValueError`` if the form cannot start at ``spec``'s anchor."""
    if spec.starts_smoothed and not cls.represents_label_smoothing:
      raise ValueError(f"A {cls.name!r} W cannot start at label smoothing (it has "
                       "no off-diagonal mass): use parameterisation='soft_target' or 'full', "
                       "or anchor='cross_entropy'.")
    if spec.anchor_transition is not None:
      if not cls.takes_anchor_transition:
        raise ValueError(f"A {cls.name!r} teacher cannot start at a given transition "
                         "matrix (anchor_transition): use "
                         "parameterisation='forward_correction', or anchor_transition=None.")
      if spec.anchor != "cross_entropy":
        raise ValueError(f"anchor_transition replaces the anchor: leave anchor="
                         f"'cross_entropy' (got anchor={spec.anchor!r}).")
      t = np.asarray(spec.anchor_transition, np.float64)
      if t.shape != (spec.num_classes, spec.num_classes):
        raise ValueError(f"anchor_transition must be [C, C] = [{spec.num_classes}, "
                         f"{spec.num_classes}], got shape {t.shape}.")
      if (t < 0).any() or not np.allclose(t.sum(-1), 1.0, atol=1e-6):
        raise ValueError("anchor_transition T[i, j] = P(observed j | true i) must be "
                         "non-negative with rows summing to 1; got row sums "
                         f"{t.sum(-1).round(6).tolist()}.")

  @classmethod
  def raw_params(cls, spec: TeacherSpec) -> tuple[RawParam, ...]:
    """The raw parameters a teacher learns; the first is the one an MLP teacher drives."""
    raise NotImplementedError

  @classmethod
  def mix(cls, a: jax.Array, banks: dict) -> dict:
    """``sum_k a_k raw_k`` in raw-parameter space: ``a [K]``, ``banks[key] [K, *shape]``."""
    raise NotImplementedError

  @classmethod
  def from_raw(cls, raw: dict, b: jax.Array, link: str) -> "LossForm":
    """``phi`` from raw parameters (``raw[key]`` of :meth:`raw_params`' keys) and ``b``."""
    raise NotImplementedError


def _check_distribution(q, name: str, axis: int = 0) -> None:
  """Raises if a concrete ``q`` (``[C]`` or ``[C, C]``, columns) is off the simplex.

  A negative entry or a column that does not sum to 1 is refused; ``None`` and
  traced values pass.
  """
  if q is None:
    return
  try:
    values = np.asarray(q, np.float64)
  except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return
  sums = values.sum(axis=axis)
  if (values < 0).any() or not np.allclose(sums, 1.0, atol=1e-5):
    raise ValueError(f"{name} must hold distributions (non-negative, each column summing to "
                     f"1): got min {values.min():.3g} and sums {np.round(sums, 6).tolist()}; "
                     f"normalise it, e.g. jax.nn.softmax(logits, axis={axis}).")


def _zero_rank_factors(c, rank, dtype):
  z = jnp.zeros((c, rank), dtype)
  return z, z


@struct.dataclass
class FullW(LossForm):
  """A dense ``W``.

  Attributes:
    w: float ``[C, C]``; column ``y`` is used for label ``y``.
    b: bias, float ``[]`` or ``[C]``.
    link: static, one of :data:`~dlf_jax.losses.core.LINKS`.
  """
  w: jax.Array
  b: jax.Array
  link: str = struct.field(pytree_node=False, default="sigmoid")

  name: ClassVar[str] = "full"
  represents_label_smoothing: ClassVar[bool] = True
  scales_to_vocabulary: ClassVar[bool] = False

  def _w_text(self) -> str:
    return f"W of shape {tuple(self.w.shape)}"

  @property
  def num_classes(self) -> int:
    return self.w.shape[-1]

  def check(self, c: int) -> None:
    self._check_rank("w", 2, "a square [C, C] matrix (column y for label y)")
    super().check(c)

  def _score(self, log_probs, labels):
    # Column y of W, as rows of W^T: [..., C].
    cols = jnp.take(self.w.T, labels, axis=0)
    return jnp.sum(log_probs * cols, axis=-1)

  def dense(self):
    return self.w

  def statistics(self, max_dense: int = 1024) -> dict:
    c = self.num_classes
    diag = jnp.diag(self.w)
    out = {"b_mean": jnp.mean(self.b), "w_diag_mean": jnp.mean(diag)}
    if c <= max_dense and c > 1:
      out["w_offdiag_mean"] = (jnp.sum(self.w) - jnp.sum(diag)) / (c * (c - 1))
    return out

  @classmethod
  def cross_entropy(cls, num_classes, *, rank=0, b, link, dtype=jnp.float32):
    del rank
    return cls(jnp.eye(num_classes, dtype=dtype), b, link=link)

  @classmethod
  def label_smoothing(cls, num_classes, smoothing, *, b, link, dtype=jnp.float32):
    return cls(
        (1 - smoothing) * jnp.eye(num_classes, dtype=dtype) + smoothing / num_classes, b, link=link)

  @classmethod
  def raw_params(cls, spec):
    eps = spec.anchor_smoothing if spec.anchor == "label_smoothing" else 0.0
    return (RawParam("w", (spec.num_classes, spec.num_classes),
                     _perturbed(_label_smoothing_w(eps), spec.init_scale), "w_bank", "w0"),)

  @classmethod
  def mix(cls, a, banks):
    return {"w": jnp.einsum("k,kij->ij", a, banks["w"])}

  @classmethod
  def from_raw(cls, raw, b, link):
    return cls(raw["w"], b, link=link)


@struct.dataclass
class DiagonalW(LossForm):
  """``W = diag(w)``.

  Attributes:
    w: float ``[C]``, the diagonal.
    b: bias, float ``[]`` or ``[C]``.
    link: static, one of :data:`~dlf_jax.losses.core.LINKS`.
  """
  w: jax.Array
  b: jax.Array
  link: str = struct.field(pytree_node=False, default="sigmoid")

  name: ClassVar[str] = "diagonal"

  def _w_text(self) -> str:
    return f"W of shape {tuple(self.w.shape)}"

  @property
  def num_classes(self) -> int:
    return self.w.shape[-1]

  def check(self, c: int) -> None:
    self._check_rank("w", 1, "the diagonal, a [C] vector (for a dense [C, C] W use FullW)")
    super().check(c)

  def _score(self, log_probs, labels):
    return jnp.take(self.w, labels) * core.label_log_prob(log_probs, labels)

  def dense(self):
    return jnp.diag(self.w)

  def statistics(self, max_dense: int = 1024) -> dict:
    del max_dense
    return {
        "b_mean": jnp.mean(self.b),
        "w_diag_mean": jnp.mean(self.w),
        "w_offdiag_mean": jnp.zeros((), self.w.dtype)
    }

  @classmethod
  def cross_entropy(cls, num_classes, *, rank=0, b, link, dtype=jnp.float32):
    del rank
    return cls(jnp.ones((num_classes,), dtype), b, link=link)

  @classmethod
  def raw_params(cls, spec):
    return (RawParam("w", (spec.num_classes,), _perturbed(jnp.ones, spec.init_scale), "w_bank",
                     "w0"),)

  @classmethod
  def mix(cls, a, banks):
    return {"w": a @ banks["w"]}

  @classmethod
  def from_raw(cls, raw, b, link):
    return cls(raw["w"], b, link=link)


@struct.dataclass
class LowRankW(LossForm):
  """``W = diag(w) + U V^T``, never formed in the loss.

  Attributes:
    w: float ``[C]``, the diagonal part.
    u, v: float ``[C, r]``, the low-rank factors.
    b: bias, float ``[]`` or ``[C]``.
    link: static, one of :data:`~dlf_jax.losses.core.LINKS`.
  """
  w: jax.Array
  u: jax.Array
  v: jax.Array
  b: jax.Array
  link: str = struct.field(pytree_node=False, default="sigmoid")

  name: ClassVar[str] = "low_rank"

  def _w_text(self) -> str:
    return f"W of shape {tuple(self.w.shape)}"

  @property
  def num_classes(self) -> int:
    return self.w.shape[-1]

  def check(self, c: int) -> None:
    self._check_rank("w", 1, "the diagonal part, a [C] vector")
    super().check(c)
    if self.u is None or self.v is None:
      raise ValueError("A low_rank W needs both factors u and v of shape [C, r].")
    if self.u.ndim != 2 or self.u.shape[0] != c or self.v.shape != self.u.shape:
      raise ValueError(f"The low-rank factors u and v must both be [C, r] with C={c}; got u "
                       f"{tuple(self.u.shape)} and v {tuple(self.v.shape)}.")

  def _score(self, log_probs, labels):
    score = jnp.take(self.w, labels) * core.label_log_prob(log_probs, labels)
    return score + jnp.sum((log_probs @ self.u) * jnp.take(self.v, labels, axis=0), axis=-1)

  def dense(self):
    return jnp.diag(self.w) + self.u @ self.v.T

  def statistics(self, max_dense: int = 1024) -> dict:
    c = self.num_classes
    diag = self.w + jnp.sum(self.u * self.v, axis=-1)
    out = {"b_mean": jnp.mean(self.b), "w_diag_mean": jnp.mean(diag)}
    if c <= max_dense and c > 1:
      out["w_offdiag_mean"] = (jnp.sum(self.dense()) - jnp.sum(diag)) / (c * (c - 1))
    return out

  @classmethod
  def cross_entropy(cls, num_classes, *, rank=0, b, link, dtype=jnp.float32):
    u, v = _zero_rank_factors(num_classes, rank, dtype)
    return cls(jnp.ones((num_classes,), dtype), u, v, b, link=link)

  @classmethod
  def raw_params(cls, spec):
    c, r, scale = spec.num_classes, spec.rank, spec.init_scale
    normal = jax.nn.initializers.normal(scale)
    return (RawParam("w", (c,), _perturbed(jnp.ones, scale), "w_bank",
                     "w0"), RawParam("u", (c, r), normal, "u_bank",
                                     "u"), RawParam("v", (c, r), normal, "v_bank", "v"))

  @classmethod
  def mix(cls, a, banks):
    u, v = banks["u"], banks["v"]
    k, c, r = u.shape
    # sum_k a_k U_k V_k^T = [a_1 U_1 .. a_K U_K] [V_1 .. V_K]^T, rank K r.
    return {
        "w": a @ banks["w"],
        "u": jnp.moveaxis(a[:, None, None] * u, 0, 1).reshape(c, k * r),
        "v": jnp.moveaxis(v, 0, 1).reshape(c, k * r)
    }

  @classmethod
  def from_raw(cls, raw, b, link):
    return cls(raw["w"], raw["u"], raw["v"], b, link=link)


@struct.dataclass
class SoftTargetW(LossForm):
  """Columns on the simplex: ``W[:, y] = (1 - eps_y) e_y + eps_y q_y``.

  Attributes:
    eps: float ``[C]`` in ``[0, 1)``, the smoothing weight of each target class.
    b: bias, float ``[]`` or ``[C]``.
    q: the target distributions: ``None`` (uniform: label smoothing), float
      ``[C]`` (one distribution for every class) or ``[C, C]`` (column ``y`` is
      ``q_y``); non-negative, summing to 1 (over axis 0).
    link: static, one of :data:`~dlf_jax.losses.core.LINKS`.
  """
  eps: jax.Array
  b: jax.Array
  q: Optional[jax.Array] = None
  link: str = struct.field(pytree_node=False, default="identity")

  name: ClassVar[str] = "soft_target"
  represents_label_smoothing: ClassVar[bool] = True

  @property
  def num_classes(self) -> int:
    return self.eps.shape[-1]

  def _w_text(self) -> str:
    return f"eps of shape {tuple(self.eps.shape)}"

  def check(self, c: int) -> None:
    """As :meth:`LossForm.check`, and (when concrete) ``eps`` in ``[0, 1)``, ``q`` a simplex."""
    self._check_rank("eps", 1, "a [C] vector of smoothing weights")
    super().check(c)
    if self.q is not None and self.q.shape not in ((c,), (c, c)):
      raise ValueError(f"The soft targets q must be None, [C] or [C, C] with C={c}; got shape "
                       f"{tuple(self.q.shape)}.")
    core.check_eps(self.eps, f"{type(self).__name__}.eps")
    _check_distribution(self.q, f"{type(self).__name__}.q")

  def _score(self, log_probs, labels):
    # (1 - eps_y) log p_y + eps_y q_y^T log p, never forming W.
    log_py = core.label_log_prob(log_probs, labels)
    if self.q is None:
      soft = jnp.mean(log_probs, axis=-1)
    elif self.q.ndim == 1:
      soft = log_probs @ self.q
    else:
      soft = jnp.sum(log_probs * jnp.take(self.q.T, labels, axis=0), axis=-1)
    eps = jnp.take(self.eps, labels)
    return (1 - eps) * log_py + eps * soft

  def dense(self):
    c = self.num_classes
    if self.q is None:
      q = jnp.full((c, c), 1.0 / c, self.eps.dtype)
    elif self.q.ndim == 1:
      q = jnp.broadcast_to(self.q[:, None], (c, c))
    else:
      q = self.q
    return jnp.diag(1 - self.eps) + q * self.eps[None, :]

  def statistics(self, max_dense: int = 1024) -> dict:
    del max_dense
    c, eps = self.num_classes, self.eps
    if self.q is None:
      q_yy = jnp.full_like(eps, 1.0 / c)
    else:
      q_yy = self.q if self.q.ndim == 1 else jnp.diag(self.q)
    diag = 1 - eps + eps * q_yy
    # Every column sums to 1: the mean off-diagonal entry follows from the diagonal.
    return {
        "b_mean": jnp.mean(self.b),
        "eps_mean": jnp.mean(eps),
        "w_diag_mean": jnp.mean(diag),
        "w_offdiag_mean": (c - jnp.sum(diag)) / max(c * (c - 1), 1)
    }

  @classmethod
  def create(cls, eps, q=None, b=None, *, link: str = "identity") -> "SoftTargetW":
    """A checked soft-target ``phi`` from ``eps [C]``, ``q`` and ``b`` (default zeros ``[C]``).

    Raises:
      ValueError: ``eps`` outside ``[0, 1)`` (when concrete) or not ``[C]``, ``q``
        of the wrong shape or (when concrete) not on the simplex, unknown link.
    """
    core.check_link(link)
    core.check_eps(eps)
    eps = jnp.asarray(eps)
    c = eps.shape[-1] if eps.ndim else None
    if eps.ndim != 1:
      raise ValueError(f"eps must be a [C] vector, got shape {tuple(eps.shape)}.")
    if q is not None:
      q = jnp.asarray(q, eps.dtype)
      if q.shape not in ((c,), (c, c)):
        raise ValueError(f"q must be None, [C] or [C, C] with C={c}; got shape "
                         f"{tuple(q.shape)}.")
      _check_distribution(q, "q")
    b = jnp.zeros((c,), eps.dtype) if b is None else jnp.asarray(b, eps.dtype)
    return cls(eps, b, q=q, link=link)

  @classmethod
  def cross_entropy(cls, num_classes, *, rank=0, b, link, dtype=jnp.float32):
    del rank
    return cls(jnp.zeros((num_classes,), dtype), b, link=link)

  @classmethod
  def label_smoothing(cls, num_classes, smoothing, *, b, link, dtype=jnp.float32):
    return cls(jnp.full((num_classes,), smoothing, dtype), b, link=link)

  @classmethod
  def check_teacher(cls, spec):
    super().check_teacher(spec)
    if spec.anchor_smoothing >= EPS_MAX:
      raise ValueError(f"anchor_smoothing must be below {EPS_MAX} for a soft-target teacher "
                       f"(eps = {EPS_MAX} sigmoid(e)); got {spec.anchor_smoothing}.")

  @classmethod
  def anchor_eps_logit(cls, spec: TeacherSpec) -> float:
    """``e`` with ``EPS_MAX sigmoid(e)`` = the anchor's eps (CE: :data:`CE_ANCHOR_EPS`)."""
    eps = spec.anchor_smoothing if spec.anchor == "label_smoothing" else CE_ANCHOR_EPS
    return _logit(eps / EPS_MAX)

  @classmethod
  def raw_params(cls, spec):
    c, scale = spec.num_classes, spec.init_scale
    params = (RawParam("w", (c,), _perturbed(_constant(cls.anchor_eps_logit(spec)), scale),
                       "eps_bank", "w0"),)
    t_shape = {"uniform": None, "shared": (c,), "class": (c, c)}[spec.target]
    if t_shape is not None:
      params += (RawParam("target", t_shape, jax.nn.initializers.normal(scale), "target_bank",
                          "target0"),)
    return params

  @classmethod
  def mix(cls, a, banks):
    # A mixture in parameter space, so that every mixture is again a soft target.
    out = {"w": a @ banks["w"]}
    if "target" in banks:
      out["target"] = jnp.einsum("k,k...->...", a, banks["target"])
    return out

  @classmethod
  def from_raw(cls, raw, b, link):
    """``eps = EPS_MAX sigmoid(raw['w'])``, ``q = softmax(raw['target'], axis=0)``."""
    target = raw.get("target")
    q = None if target is None else jax.nn.softmax(target, axis=0)
    return cls(EPS_MAX * jax.nn.sigmoid(raw["w"]), b, q=q, link=link)


@struct.dataclass
class WeightedSoftTargetW(SoftTargetW):
  """A soft-target ``W`` with per-class weights: ``L = c_y link(-log(p)^T W e_y + b_y)``.

  Class-balanced reweighting (Cui et al., CVPR 2019) learned by the teacher: a
  teacher outputs ``c = C softmax(raw)`` (positive, mean 1); ``c = 1`` (the anchor)
  is :class:`SoftTargetW`, so with ``eps = 0`` and the identity link it is exactly
  cross-entropy.

  Attributes:
    eps, b, q, link: as :class:`SoftTargetW`.
    class_weights: float ``[C]``, positive (mean 1 from a teacher); ``None`` = 1.
  """
  class_weights: Optional[jax.Array] = None

  name: ClassVar[str] = "weighted_soft_target"

  def check(self, c: int) -> None:
    super().check(c)
    if self.class_weights is not None and self.class_weights.shape != (c,):
      raise ValueError(f"The class weights must be [C] = [{c}], got shape "
                       f"{tuple(self.class_weights.shape)}.")

  def per_example(self, logits, labels):
    value = super().per_example(logits, labels)
    if self.class_weights is None:
      return value
    return jnp.take(self.class_weights, labels) * value

  def statistics(self, max_dense: int = 1024) -> dict:
    out = super().statistics(max_dense)
    if self.class_weights is not None:
      out["class_weight_min"] = jnp.min(self.class_weights)
      out["class_weight_max"] = jnp.max(self.class_weights)
    return out

  @classmethod
  def raw_params(cls, spec):
    c, scale = spec.num_classes, spec.init_scale
    return super().raw_params(spec) + (RawParam("weights", (c,), jax.nn.initializers.normal(scale),
                                                "weight_bank", "weight0"),)

  @classmethod
  def mix(cls, a, banks):
    out = super().mix(a, banks)
    out["weights"] = a @ banks["weights"]
    return out

  @classmethod
  def from_raw(cls, raw, b, link):
    """As :meth:`SoftTargetW.from_raw`, and ``class_weights = C softmax(raw['weights'])``."""
    phi = super().from_raw(raw, b, link)
    weights = raw["weights"]
    return phi.replace(class_weights=weights.shape[-1] * jax.nn.softmax(weights))


@struct.dataclass
class ForwardCorrectionW(LossForm):
  """Forward correction: ``L = link(-log((p^T T)_y) + b_y)``, ``T`` row-stochastic.

  ``T[i, j] = P(observed label j | true class i)`` (Patrini et al., CVPR 2017); with
  the true ``T`` the loss is proper for the clean posterior. ``T`` sits *outside*
  the log (Eqn. 2's identity-link family puts ``W`` inside it). ``T = I`` is
  exactly cross-entropy (identity link). Held as ``log T`` (rows log-softmax), so
  that the score ``logsumexp_i(log p_i + log T[i, y])`` is stable.

  Attributes:
    log_transition: float ``[C, C]``, ``log T`` (``-inf`` where ``T`` is 0).
    b: bias, float ``[]`` or ``[C]``.
    link: static, one of :data:`~dlf_jax.losses.core.LINKS`.
  """
  log_transition: jax.Array
  b: jax.Array
  link: str = struct.field(pytree_node=False, default="identity")

  name: ClassVar[str] = "forward_correction"
  scales_to_vocabulary: ClassVar[bool] = False
  takes_anchor_transition: ClassVar[bool] = True
  # The cross-entropy anchor of a teacher: T[i, i] = 1 - CE_ANCHOR_EPS.
  anchor_eps: ClassVar[float] = CE_ANCHOR_EPS

  @property
  def num_classes(self) -> int:
    return self.log_transition.shape[-1]

  def _w_text(self) -> str:
    return f"T of shape {tuple(self.log_transition.shape)}"

  def check(self, c: int) -> None:
    self._check_rank("log_transition", 2, "a square [C, C] matrix (log T)")
    super().check(c)

  def _score(self, log_probs, labels):
    # log (p^T T)_y = logsumexp_i (log p_i + log T[i, y]).
    cols = jnp.take(self.log_transition.T, labels, axis=0)
    return jax.nn.logsumexp(log_probs + cols, axis=-1)

  def dense(self):
    """``T`` (float ``[C, C]``, rows on the simplex)."""
    return jnp.exp(self.log_transition)

  def statistics(self, max_dense: int = 1024) -> dict:
    del max_dense
    c = self.num_classes
    diag = jnp.exp(jnp.diagonal(self.log_transition))
    # Every row sums to 1: the mean off-diagonal entry follows from the diagonal.
    return {
        "b_mean": jnp.mean(self.b),
        "w_diag_mean": jnp.mean(diag),
        "w_offdiag_mean": (c - jnp.sum(diag)) / max(c * (c - 1), 1)
    }

  @classmethod
  def create(cls, transition, b=None, *, link: str = "identity") -> "ForwardCorrectionW":
    """From a given row-stochastic ``T [C, C]`` (e.g. GLC's estimate), bias default 0.

    Raises:
      ValueError: ``T`` not square, or (when concrete) with a negative entry or a row
        that does not sum to 1.
    """
    core.check_link(link)
    t = jnp.asarray(transition)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
      raise ValueError(f"The transition matrix must be [C, C], got shape {tuple(t.shape)}.")
    try:
      values = np.asarray(t, np.float64)
    except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
      values = None
    if values is not None and ((values < 0).any() or
                               not np.allclose(values.sum(-1), 1.0, atol=1e-6)):
      raise ValueError("The transition matrix T[i, j] = P(observed j | true i) must be "
                       f"non-negative with rows summing to 1; got row sums "
                       f"{values.sum(-1).round(6).tolist()}.")
    c = t.shape[-1]
    b = jnp.zeros((c,), t.dtype) if b is None else jnp.asarray(b, t.dtype)
    return cls(jnp.log(t), b, link=link)

  @classmethod
  def cross_entropy(cls, num_classes, *, rank=0, b, link, dtype=jnp.float32):
    del rank
    return cls(jnp.log(jnp.eye(num_classes, dtype=dtype)), b, link=link)

  @classmethod
  def raw_from_transition(cls, transition, floor: float = 1e-6) -> jax.Array | np.ndarray:
    """Raw teacher logits ``log max(T, floor)`` whose row-softmax is ~``T`` (float ``[C, C]``).

    Seeds a teacher at a given ``T`` (e.g. GLC's estimate): a teacher module with
    ``anchor_transition=T`` starts every bank entry ``theta['w_bank'][k]`` (attention)
    or ``theta['w0']`` (MLP) there (plus the usual ``init_scale`` perturbation); or
    write it into an existing theta by hand.

    Args:
      transition: ``[C, C]`` row-stochastic: a jax array (the result is one, in its
        dtype) or anything else array-like (nested tuples: the result is float64 numpy,
        computed on the host, so a teacher module can use it while being traced).
      floor: the smallest entry kept (``log 0`` is ``-inf``).
    """
    if isinstance(transition, jax.Array):
      return jnp.log(jnp.maximum(transition, floor))
    return np.log(np.maximum(np.asarray(transition, np.float64), floor))

  @classmethod
  def anchor_logit(cls, spec: TeacherSpec) -> float:
    """The diagonal logit with ``T[i, i] = 1 - anchor_eps`` (off-diagonal logits 0)."""
    c = spec.num_classes
    return _logit(1 - cls.anchor_eps) + math.log(max(c - 1, 1))

  @classmethod
  def raw_params(cls, spec):
    """Raw logits ``[C, C]`` (row-softmax: ``T``) at the cross-entropy anchor or ``T``.

    ``T`` is :meth:`raw_from_transition` of ``spec.anchor_transition`` when given.
    """
    c = spec.num_classes
    if spec.anchor_transition is not None:
      raw = cls.raw_from_transition(spec.anchor_transition)  # host float64
      base = lambda shape, dtype: jnp.broadcast_to(jnp.asarray(raw, dtype), shape)
    else:
      logit = cls.anchor_logit(spec)
      base = lambda shape, dtype: jnp.broadcast_to(logit * jnp.eye(c, dtype=dtype), shape)
    return (RawParam("w", (c, c), _perturbed(base, spec.init_scale), "w_bank", "w0"),)

  @classmethod
  def mix(cls, a, banks):
    return {"w": jnp.einsum("k,kij->ij", a, banks["w"])}

  @classmethod
  def from_raw(cls, raw, b, link):
    """``log T = log_softmax(raw['w'], axis=-1)`` (rows on the simplex)."""
    return cls(jax.nn.log_softmax(raw["w"], axis=-1), b, link=link)


@struct.dataclass
class LogitOffsetW(LossForm):
  """Per-class logit offsets: ``L = link(-log softmax(z + delta)_y + b_y)``.

  Logit adjustment (Menon et al., ICLR 2021) with ``delta = tau log pi`` (class
  priors ``pi``), learned by the teacher; ``delta = 0`` is exactly cross-entropy
  (identity link). Shift-invariance lets the score use ``log p`` in place of ``z``.
  Its ``W`` (:meth:`dense`) is ``I``: the offsets act on the logits.

  Attributes:
    delta: float ``[C]``, the offsets.
    b: bias, float ``[]`` or ``[C]``.
    link: static, one of :data:`~dlf_jax.losses.core.LINKS`.
  """
  delta: jax.Array
  b: jax.Array
  link: str = struct.field(pytree_node=False, default="identity")

  name: ClassVar[str] = "logit_adjustment"

  @property
  def num_classes(self) -> int:
    return self.delta.shape[-1]

  def check(self, c: int) -> None:
    self._check_rank("delta", 1, "a [C] vector of logit offsets")
    super().check(c)

  def _w_text(self) -> str:
    return f"delta of shape {tuple(self.delta.shape)}"

  def _score(self, log_probs, labels):
    return core.label_log_prob(jax.nn.log_softmax(log_probs + self.delta, axis=-1), labels)

  def dense(self):
    return jnp.eye(self.num_classes, dtype=self.delta.dtype)

  def statistics(self, max_dense: int = 1024) -> dict:
    del max_dense
    return {
        "b_mean": jnp.mean(self.b),
        "w_diag_mean": jnp.ones((), self.delta.dtype),
        "w_offdiag_mean": jnp.zeros((), self.delta.dtype),
        "delta_min": jnp.min(self.delta),
        "delta_max": jnp.max(self.delta)
    }

  @classmethod
  def create(cls,
             class_priors,
             tau: float = 1.0,
             b=None,
             *,
             link: str = "identity") -> "LogitOffsetW":
    """``delta = tau log pi`` from class priors ``pi [C]`` (positive; normalised here).

    Raises:
      ValueError: ``class_priors`` not a ``[C]`` vector or (when concrete) not positive.
    """
    core.check_link(link)
    pi = jnp.asarray(class_priors)
    if pi.ndim != 1:
      raise ValueError(f"class_priors must be a [C] vector, got shape {tuple(pi.shape)}.")
    try:
      positive = bool((np.asarray(pi) > 0).all())
    except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
      positive = True
    if not positive:
      raise ValueError(f"class_priors must be positive, got {np.asarray(pi).tolist()}.")
    b = jnp.zeros(pi.shape, pi.dtype) if b is None else jnp.asarray(b, pi.dtype)
    return cls(tau * jnp.log(pi / jnp.sum(pi)), b, link=link)

  @classmethod
  def cross_entropy(cls, num_classes, *, rank=0, b, link, dtype=jnp.float32):
    del rank
    return cls(jnp.zeros((num_classes,), dtype), b, link=link)

  @classmethod
  def raw_params(cls, spec):
    return (RawParam("w", (spec.num_classes,), _perturbed(jnp.zeros, spec.init_scale), "w_bank",
                     "w0"),)

  @classmethod
  def mix(cls, a, banks):
    return {"w": a @ banks["w"]}

  @classmethod
  def from_raw(cls, raw, b, link):
    return cls(raw["w"], b, link=link)


# The forms of W by name: the teacher modules' and the configs' ``parameterisation``.
# A new form is one LossForm subclass and one entry here (and its name in
# ``contracts.Parameterisation``).
FORMS: dict[str, type[LossForm]] = {
    "full": FullW,
    "diagonal": DiagonalW,
    "low_rank": LowRankW,
    "soft_target": SoftTargetW,
    "weighted_soft_target": WeightedSoftTargetW,
    "forward_correction": ForwardCorrectionW,
    "logit_adjustment": LogitOffsetW,
}
# The keys are the Parameterisation names; the check below makes sure of it.
PARAMETERISATIONS: tuple[Parameterisation, ...] = cast("tuple[Parameterisation, ...]", tuple(FORMS))
if PARAMETERISATIONS != get_args(Parameterisation) or any(
    cls.name != name for name, cls in FORMS.items()):
  raise ImportError(f"dlf_jax.losses.FORMS {PARAMETERISATIONS} and contracts.Parameterisation "
                    f"{get_args(Parameterisation)} must name the same forms, each class's "
                    "name its key.")


def form(name: str) -> type[LossForm]:
  """The form class of ``name`` (a key of :data:`FORMS`).

  Raises:
    ValueError: unknown name, naming the choices.
  """
  if name not in FORMS:
    raise ValueError(f"Unknown W parameterisation {name!r}; choose one of "
                     f"{PARAMETERISATIONS}.")
  return FORMS[name]


def parametric_loss(phi: LossForm,
                    logits: jax.Array,
                    labels: jax.Array,
                    mask: Optional[jax.Array] = None) -> jax.Array:
  """Eqn. (2): masked mean of ``phi.per_example`` (``link(-log(p)^T W e_y + b_y)``).

  ``link = sigmoid`` is the paper's Eqn. (2); ``identity`` gives the
  cross-entropy family (``W = I``: CE; a soft target with uniform ``q``: label
  smoothing).

  Args:
    phi: any :class:`LossForm` (W and b).
    logits: float ``[..., C]`` (``p = softmax(logits)``).
    labels: int ``[...]``.
    mask: optional ``[...]`` of 0/1 (0 = padding, ignored).

  Returns:
    Scalar loss, dtype of ``logits``.

  Raises:
    ValueError / TypeError: shape, dtype or class-count mismatch; unknown link.

  References:
    Wu et al., "Learning to Teach with Dynamic Loss Functions", NeurIPS 2018, Eqn. (2).
  """
  core.check_labels(logits, labels, mask)
  return core.masked_mean(phi.per_example(logits, labels), mask)


def identity_loss_params(num_classes: int,
                         parameterisation: Parameterisation = "full",
                         rank: int = 0,
                         per_class_bias: bool = True,
                         dtype=jnp.float32,
                         link: str = "sigmoid") -> LossForm:
  """Phi with ``W = I`` and ``b = 0``: ``sigmoid(CE)`` (sigmoid link) or CE (identity).

  Args:
    num_classes: ``C``.
    parameterisation: a key of :data:`FORMS` (soft target: ``eps = 0``).
    rank: ``r`` of the low-rank part (``low_rank`` only; ``U = V = 0``).
    per_class_bias: bias of shape ``[C]`` if True, else a scalar.
    dtype: floating dtype.
    link: one of :data:`~dlf_jax.losses.core.LINKS`.

  Raises:
    ValueError: unknown parameterisation or link.
  """
  cls = form(parameterisation)
  core.check_link(link)
  b = jnp.zeros((num_classes,) if per_class_bias else (), dtype)
  return cls.cross_entropy(num_classes, rank=rank, b=b, link=link, dtype=dtype)


def anchor_loss_params(num_classes: int,
                       anchor: str = "cross_entropy",
                       smoothing: float = 0.1,
                       parameterisation: Parameterisation = "soft_target",
                       link: str = "identity",
                       dtype=jnp.float32) -> LossForm:
  """The loss a teacher starts from (its *anchor*), as a :class:`LossForm`.

  ``cross_entropy``: ``W = I`` (CE with the identity link). ``label_smoothing``:
  ``W = (1 - eps) I + eps / C 1 1^T`` (label smoothing with ``eps`` under the
  identity link), for the forms that can represent it.

  Raises:
    ValueError: unknown anchor or form, ``smoothing`` outside ``[0, 1)``, or label
      smoothing with a form that cannot represent it (no off-diagonal mass).
  """
  if anchor not in ANCHORS:
    raise ValueError(f"Unknown anchor {anchor!r}; choose one of {ANCHORS}.")
  core.check_eps(smoothing, "the anchor's smoothing")
  cls = form(parameterisation)
  core.check_link(link)
  b = jnp.zeros((num_classes,), dtype)
  if anchor == "cross_entropy" or smoothing == 0:
    return cls.cross_entropy(num_classes, rank=0, b=b, link=link, dtype=dtype)
  return cls.label_smoothing(num_classes, smoothing, b=b, link=link, dtype=dtype)


def soft_target_params(eps, q=None, b=None, *, link: str = "identity") -> SoftTargetW:
  """A soft-target phi, ``W[:, y] = (1 - eps_y) e_y + eps_y q_y`` (:meth:`SoftTargetW.create`)."""
  return SoftTargetW.create(eps, q, b, link=link)


def dense_w(phi: LossForm) -> jax.Array:
  """The dense ``[C, C]`` matrix ``W`` that ``phi`` represents (for tests/plots)."""
  return phi.dense()


def bilinear_score(phi: LossForm, log_probs: jax.Array, labels: jax.Array) -> jax.Array:
  """``log(p)^T W e_y`` for every example (:meth:`LossForm.score`)."""
  return phi.score(log_probs, labels)


def phi_statistics(phi: Any, max_dense: int = 1024) -> dict:
  """Scalar summaries of ``phi`` for logs and plots (jit-able; :meth:`LossForm.statistics`).

  Returns:
    dict with ``w_diag_mean``, ``w_offdiag_mean`` (only if cheap or ``C <=
    max_dense``: it may form ``W``), ``b_mean`` and form-specific entries; empty
    for anything that is not a :class:`LossForm` (``phi = None`` of the baselines).
  """
  if not isinstance(phi, LossForm):
    return {}
  return phi.statistics(max_dense)
