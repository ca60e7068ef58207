"""What one reads off a frozen teacher along a student's run (pure functions, no file I/O).

A student trained with :func:`dlf_jax.train_student` reports one record per evaluation
(``step``, ``dev_accuracy``, ...). :func:`with_teacher_state` adds to such a record the
running statistics the teacher reads at that point (``s_train_loss``, ``s_train_acc``,
``s_dev_acc``: the :class:`~dlf_jax.state_features.RunningStats` of the student's
state); from those, :func:`phi_snapshots` recomputes the loss parameters
``phi_t = mu_theta(s_t)`` (Wu et al. 2018, Sec. 4.1, Eqn. 2) at a few points of the run,
:func:`w_snapshots` their dense ``W_t``, and :func:`smoothing_by_frequency` what a
soft-target teacher does per class (its ``eps_y`` against the class's frequency).

What a noise-aware or class-aware ``phi`` has learned, in the units of the data's
corruption: :func:`learned_transition` (a ``[C, C]`` matrix in the orientation of the
noise matrix ``T[i, j] = P(observed j | true i)``), :func:`noise_posterior` (what a
soft target should match: ``P(true i | observed j)``), :func:`class_weights` and
:func:`logit_offsets` (per-class vectors, against the class counts).

References:
  Wu, Tian, Xia, Fan, Qin, Lai, Liu. Learning to Teach with Dynamic Loss Functions.
  NeurIPS 2018: Eqn. (2) (the loss family), Sec. 4.1 (the teacher's state s_t).
  Patrini et al. Making Deep Neural Networks Robust to Label Noise: a Loss Correction
  Approach. CVPR 2017 (forward correction, ``T``).
  Cui et al. Class-Balanced Loss Based on Effective Number of Samples. CVPR 2019.
  Menon et al. Long-tail learning via logit adjustment. ICLR 2021.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlf_jax import losses
from dlf_jax import state_features

__all__ = [
    "with_teacher_state", "phi_snapshots", "w_snapshots", "smoothing_by_frequency",
    "learned_transition", "noise_posterior", "class_weights", "logit_offsets"
]


def with_teacher_state(record: dict, state: Any) -> dict:
  """``record`` plus the running statistics the teacher reads after this evaluation.

  Args:
    record: one evaluation record of a student run (a dict; not modified).
    state: the :class:`dlf_jax.StudentState` after that evaluation (its ``stats``
      hold the fresh dev accuracy).

  Returns:
    A new dict: ``record`` with ``s_train_loss``, ``s_train_acc`` and ``s_dev_acc``
    (Python floats), from which :func:`phi_snapshots` recomputes ``phi_t``.
  """
  stats = jax.device_get(state.stats)
  return dict(
      record,
      s_train_loss=float(stats.train_loss),
      s_train_acc=float(stats.train_acc),
      s_dev_acc=float(stats.dev_acc))


def phi_snapshots(teacher,
                  theta,
                  history: Sequence[dict],
                  num: int = 5,
                  first_step: int = 0) -> list:
  """The teacher's ``phi_t`` at ``num`` evenly spaced points of a student's run.

  ``phi_t = teacher.phi(theta, teacher.state_features(t, stats_t))`` with the
  state recorded in the run's history (``s_train_loss``, ``s_train_acc``,
  ``s_dev_acc`` after the evaluation at ``step``, as :func:`with_teacher_state`
  adds them), plus step 0 with an untrained student's statistics when
  ``first_step == 0``.

  Args:
    teacher: the :class:`dlf_jax.Teacher` the run was trained with.
    theta: its frozen parameters (a pytree).
    history: the run's records (dicts with int ``step`` and float ``s_train_loss``,
      ``s_train_acc``, ``s_dev_acc``).
    num: number of snapshots (fewer if the run has fewer points).
    first_step: the step from which the teacher drove the student (the end of a
      cross-entropy warm start); earlier records are skipped.

  Returns:
    list of ``(step, phi)`` with ``phi`` a :class:`dlf_jax.losses.LossForm` (its
    arrays over ``C = teacher.num_classes`` classes).

  Raises:
    ValueError: no record at or after ``first_step``.
  """
  points = []
  if first_step == 0:
    points.append((0, state_features.init_running_stats(teacher.num_classes)))
  for r in history:
    if r["step"] < first_step:
      continue
    f = lambda k, r=r: jnp.asarray(r[k], jnp.float32)
    points.append((int(r["step"]),
                   state_features.RunningStats(
                       train_loss=f("s_train_loss"),
                       train_acc=f("s_train_acc"),
                       dev_acc=f("s_dev_acc"))))
  if not points:
    raise ValueError(f"No history record at or after step {first_step}.")
  idx = np.unique(np.linspace(0, len(points) - 1, min(num, len(points))).round().astype(int))
  return [(points[i][0],
           teacher.phi(theta,
                       teacher.state_features(jnp.asarray(points[i][0], jnp.int32), points[i][1])))
          for i in idx]


def w_snapshots(teacher, theta, history: Sequence[dict], num: int = 5, first_step: int = 0) -> list:
  """The teacher's dense ``W_t`` at the points of :func:`phi_snapshots` (same arguments).

  Returns:
    list of ``(step, W)`` with ``W`` float32 numpy ``[C, C]`` (column ``y`` weights
    ``log p`` for label ``y``, Eqn. 2).

  Raises:
    ValueError: no record at or after ``first_step``.
  """
  return [(step, np.asarray(losses.dense_w(phi), np.float32))
          for step, phi in phi_snapshots(teacher, theta, history, num, first_step)]


def smoothing_by_frequency(snapshots: Sequence, counts: np.ndarray) -> dict:
  """What a soft-target teacher does per class: ``eps_y`` against the class's frequency.

  Args:
    snapshots: ``[(step, phi), ...]`` from :func:`phi_snapshots` of a
      ``soft_target`` teacher (:class:`dlf_jax.losses.SoftTargetW`; ``phi.eps`` float ``[C]``).
    counts: int ``[C]``, each class's (target token's) count in the training split.

  Returns:
    dict: ``steps``; per snapshot ``mean`` (over classes), ``token_mean`` (weighted by
    ``counts``: the eps an average training token gets), ``min``, ``max``; and
    ``by_frequency``: for the last snapshot, the mean eps of the classes in each
    frequency quartile (of the classes that occur), most frequent last.

  Raises:
    ValueError: a snapshot that is not ``soft_target``, or ``counts`` of another length.
  """
  rows = []
  for _, phi in snapshots:
    if not isinstance(phi, losses.SoftTargetW):
      raise ValueError("smoothing_by_frequency needs a soft_target teacher, got "
                       f"{getattr(phi, 'name', type(phi).__name__)!r}.")
    rows.append(np.asarray(phi.eps, np.float64))
  eps = np.stack(rows)
  counts = np.asarray(counts, np.float64)
  if counts.shape != eps.shape[1:]:
    raise ValueError(f"counts has shape {counts.shape}; expected ({eps.shape[1]},).")
  seen = np.flatnonzero(counts > 0)
  quartiles = np.array_split(seen[np.argsort(counts[seen], kind="stable")], 4)
  return {
      "steps": [int(step) for step, _ in snapshots],
      "mean": eps.mean(1).tolist(),
      "token_mean": (eps @ counts / counts.sum()).tolist(),
      "min": eps.min(1).tolist(),
      "max": eps.max(1).tolist(),
      "by_frequency": [float(eps[-1, q].mean()) for q in quartiles if len(q)]
  }


def learned_transition(phi: losses.LossForm) -> np.ndarray:
  """The ``[C, C]`` label-noise matrix a noise-aware ``phi`` implies, oriented as ``T``.

  Rows index the true class ``i``, columns the observed (training) label ``j``, as in
  the noise matrix ``T[i, j] = P(observed j | true i)`` of ``label_noise.json``, so
  that the two can be drawn side by side:

  * :class:`~dlf_jax.losses.ForwardCorrectionW`: its ``T`` (``phi.dense()``, rows on
    the simplex). The loss ``-log((p^T T)_y)`` is proper for the clean posterior
    when ``T`` is the true noise matrix (Patrini et al. 2017): compare entry by entry
    with the true ``T``.
  * :class:`~dlf_jax.losses.SoftTargetW` and
    :class:`~dlf_jax.losses.WeightedSoftTargetW`: the dense ``W`` itself. Column ``j``
    of ``W`` (row ``j`` of ``W.T``) is the soft target an example *labelled* ``j``
    is trained towards, so ``W[i, j]`` estimates ``P(true i | observed j)`` (columns
    on the simplex). Its ideal value is the Bayes inverse of ``T``,
    :func:`noise_posterior`; for class priors that are uniform and a ``T`` whose
    columns sum to 1 (symmetric and pair-flip noise) that inverse *is* ``T``
    entry by entry, which is why ``W`` -- not ``W.T`` -- sits beside ``T``.
    (``W.T`` would mirror a pair flip ``i -> i + 1`` into ``j -> j - 1``.)

  Args:
    phi: a :class:`~dlf_jax.losses.LossForm` of one of the forms above, its arrays
      over ``C`` classes (e.g. the last entry of :func:`phi_snapshots`).

  Returns:
    float64 numpy ``[C, C]``, rows = true class, columns = observed label.

  Raises:
    ValueError: another form (its ``W`` is not a distribution over classes), naming
      it and the forms that have one.
  """
  if isinstance(phi, (losses.ForwardCorrectionW, losses.SoftTargetW)):
    return np.asarray(jax.device_get(phi.dense()), np.float64)
  raise ValueError(
      f"learned_transition needs a forward_correction, soft_target or weighted_soft_target "
      f"phi; got {getattr(phi, 'name', '') or type(phi).__name__!r}, whose W is not a "
      "distribution over classes. Teach with teacher.parameterisation set to one of those.")


def noise_posterior(transition, priors=None) -> np.ndarray:
  """``P(true i | observed j)`` from ``T`` and the class priors: a soft target's ideal ``W``.

  ``post[i, j] = pi_i T[i, j] / sum_k pi_k T[k, j]`` (Bayes' rule), oriented as ``T``
  (rows: true class, columns: observed label; columns on the simplex). With uniform
  ``pi`` and columns of ``T`` summing to 1 it equals ``T``.

  Args:
    transition: float ``[C, C]``, ``T[i, j] = P(observed j | true i)`` (rows on the simplex).
    priors: float ``[C]``, the true classes' frequencies (e.g. ``class_counts['train']``
      of ``label_noise.json``; normalised here); None = uniform.

  Returns:
    float64 numpy ``[C, C]``; a column no class is observed as (all zero) stays zero.

  Raises:
    ValueError: ``transition`` not square, a negative entry, or ``priors`` not a
      non-negative ``[C]`` vector.
  """
  t = np.asarray(transition, np.float64)
  if t.ndim != 2 or t.shape[0] != t.shape[1]:
    raise ValueError(f"transition must be [C, C], got shape {t.shape}.")
  if (t < 0).any():
    raise ValueError("transition must be non-negative (T[i, j] = P(observed j | true i)).")
  c = t.shape[0]
  pi = np.full(c, 1.0 / c) if priors is None else np.asarray(priors, np.float64)
  if pi.shape != (c,) or (pi < 0).any() or pi.sum() <= 0:
    raise ValueError(f"priors must be a non-negative [C] = [{c}] vector with a positive "
                     f"sum; got {pi.tolist()}.")
  joint = pi[:, None] * t
  mass = joint.sum(0, keepdims=True)
  return np.divide(joint, mass, out=np.zeros_like(joint), where=mass > 0)


def class_weights(phi: losses.LossForm) -> np.ndarray:
  """The per-class loss weights ``c_y`` of a :class:`~dlf_jax.losses.WeightedSoftTargetW`.

  ``L = c_y link(-log(p)^T W e_y + b_y)`` (class-balanced reweighting, Cui et al.
  2019, learned); a teacher outputs ``c = C softmax(.)`` (mean 1).

  Args:
    phi: a ``weighted_soft_target`` phi over ``C`` classes.

  Returns:
    float64 numpy ``[C]`` (ones when ``phi.class_weights`` is None).

  Raises:
    ValueError: ``phi`` of another form, naming it.
  """
  if not isinstance(phi, losses.WeightedSoftTargetW):
    raise ValueError(f"class_weights needs a weighted_soft_target phi; got "
                     f"{getattr(phi, 'name', '') or type(phi).__name__!r}.")
  if phi.class_weights is None:
    return np.ones(phi.num_classes)
  return np.asarray(jax.device_get(phi.class_weights), np.float64)


def logit_offsets(phi: losses.LossForm) -> np.ndarray:
  """The per-class logit offsets ``delta`` of a :class:`~dlf_jax.losses.LogitOffsetW`.

  ``L = -log softmax(z + delta)_y`` (logit adjustment, Menon et al. 2021, with
  ``delta = tau log pi`` there; learned here). Only differences between classes
  matter (softmax is shift-invariant).

  Args:
    phi: a ``logit_adjustment`` phi over ``C`` classes.

  Returns:
    float64 numpy ``[C]``.

  Raises:
    ValueError: ``phi`` of another form, naming it.
  """
  if not isinstance(phi, losses.LogitOffsetW):
    raise ValueError(f"logit_offsets needs a logit_adjustment phi; got "
                     f"{getattr(phi, 'name', '') or type(phi).__name__!r}.")
  return np.asarray(jax.device_get(phi.delta), np.float64)
