"""What one reads off a frozen teacher along a student's run (pure functions, no file I/O).

A student trained with :func:`dlf_jax.train_student` reports one record per evaluation
(``step``, ``dev_accuracy``, ...). :func:`with_teacher_state` adds to such a record the
running statistics the teacher reads at that point (``s_train_loss``, ``s_train_acc``,
``s_dev_acc``: the :class:`~dlf_jax.state_features.RunningStats` of the student's
state); from those, :func:`phi_snapshots` recomputes the loss parameters
``phi_t = mu_theta(s_t)`` (Wu et al. 2018, Sec. 4.1, Eqn. 2) at a few points of the run,
:func:`w_snapshots` their dense ``W_t``, and :func:`smoothing_by_frequency` what a
soft-target teacher does per class (its ``eps_y`` against the class's frequency).

References:
  Wu, Tian, Xia, Fan, Qin, Lai, Liu. Learning to Teach with Dynamic Loss Functions.
  NeurIPS 2018: Eqn. (2) (the loss family), Sec. 4.1 (the teacher's state s_t).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlf_jax import losses
from dlf_jax import state_features

__all__ = ["with_teacher_state", "phi_snapshots", "w_snapshots", "smoothing_by_frequency"]


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
  return dict(record, s_train_loss=float(stats.train_loss),
              s_train_acc=float(stats.train_acc), s_dev_acc=float(stats.dev_acc))


def phi_snapshots(teacher, theta, history: Sequence[dict], num: int = 5,
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
    points.append((int(r["step"]), state_features.RunningStats(
        train_loss=f("s_train_loss"), train_acc=f("s_train_acc"), dev_acc=f("s_dev_acc"))))
  if not points:
    raise ValueError(f"No history record at or after step {first_step}.")
  idx = np.unique(np.linspace(0, len(points) - 1, min(num, len(points))).round().astype(int))
  return [(points[i][0], teacher.phi(theta, teacher.state_features(
      jnp.asarray(points[i][0], jnp.int32), points[i][1]))) for i in idx]


def w_snapshots(teacher, theta, history: Sequence[dict], num: int = 5,
                first_step: int = 0) -> list:
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
  return {"steps": [int(step) for step, _ in snapshots], "mean": eps.mean(1).tolist(),
          "token_mean": (eps @ counts / counts.sum()).tolist(), "min": eps.min(1).tolist(),
          "max": eps.max(1).tolist(),
          "by_frequency": [float(eps[-1, q].mean()) for q in quartiles if len(q)]}
