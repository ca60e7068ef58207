"""The image runner's side of the data-built baselines (:mod:`experiments.corrections`).

:class:`DataBaselines` gives the student phases the loss provider of every data-built
method (``loss_for`` of :func:`experiments.phases.student_phases`) and the teacher its
GLC anchor:

* GLC's ``T^`` of seed ``s`` comes from the ``cross_entropy`` student of seed ``s`` --
  the very run that the results table reports, trained on the noisy labels by
  :func:`experiments.phases.student_phase` (read back when it is finished) -- whose final
  state is restored from its last checkpoint (or, where that is gone, retrained: the
  run is a pure function of its seed) and evaluated on the dev split;
  :func:`experiments.corrections.glc_transition` records ``T^`` in
  ``glc/transition_seed<s>.json``.
* ``teacher.anchor='glc'``: the ``forward_correction`` teacher starts at ``T^`` of
  ``config.seed`` (:meth:`DataBaselines.teacher_anchor`); the untaught anchor
  (:func:`experiments.phases.untaught_anchor`) is then GLC up to the teacher's
  ``init_scale`` perturbation, so the L2T-DLF row against it measures what teaching
  adds over GLC.
* ``baselines.logit_tau_grid`` / ``baselines.cb_beta_grid``: ``tau`` / ``beta`` chosen on
  the clean validation split -- one fresh student per value and seed of
  :data:`experiments.phases.SELECTION_SEEDS` (never a reported seed), the lowest mean
  validation error (balanced for a long tail) wins, a tie going to the smaller value
  (:func:`experiments.selection.pick_by_validation`, as the teacher selection). Cached in
  ``tuning/<method>.json``.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from absl import logging
import jax
import ml_collections
import numpy as np

import dlf_jax
from dlf_jax.data.batching import make_eval_batches
from experiments import corrections, io, phases, splits
from experiments.selection import pick_by_validation
from experiments.workdir import Checkpoints, run_path

__all__ = ["DataBaselines", "student_softmax"]


def student_softmax(student: dlf_jax.Student, state: dlf_jax.StudentState, x: np.ndarray,
                    batch_size: int) -> np.ndarray:
  """The student's softmax over the inputs ``x`` (eval mode), in order.

  Args:
    student: the classifier.
    state: its trained :class:`~dlf_jax.StudentState`.
    x: inputs ``[N, ...]``.
    batch_size: examples per forward pass.

  Returns:
    float64 ``[N, C]``.
  """
  n = len(x)
  batches = make_eval_batches({"x": np.asarray(x), "y": np.zeros((n,), np.int32)}, batch_size)
  dtype = jax.tree_util.tree_leaves(state.params)[0].dtype  # the logits in it
  apply = jax.jit(lambda p, m, b: jax.nn.softmax(
      student.apply(p, m, b, train=False)[0].logits.astype(dtype), axis=-1))
  probs = [
      np.asarray(apply(state.params, state.model_state, {
          k: v[i] for k, v in batches.items()
      })) for i in range(len(batches["x"]))
  ]
  return np.concatenate(probs)[:n].astype(np.float64)


class DataBaselines:
  """Loss providers of the data-built baselines and the GLC anchor, for one image run.

  Args:
    config: the experiment config.
    data: the dataset after :func:`experiments.splits.prepare` (noisy / long-tailed train,
      clean dev and test).
    val: the clean validation split (None without ``data.val_size``; tuning needs it).
    student: from :func:`~experiments.builders.build_student`.
    workdir: the experiment's directory.
    on_checkpoint: passed to the cross-entropy student phases it runs.
  """

  def __init__(self,
               config: ml_collections.ConfigDict,
               data,
               val,
               student: dlf_jax.Student,
               workdir: str,
               *,
               on_checkpoint: Optional[phases.CheckpointHook] = None):
    self.config, self.data, self.val, self.student = config, data, val, student
    self.workdir, self.on_checkpoint = workdir, on_checkpoint
    self._tuned: dict = {}

  # ------------------------------------------------------------------- GLC

  def cross_entropy_state(self, seed: int) -> dlf_jax.StudentState:
    """The final state of the ``cross_entropy`` student of ``seed`` (trained if need be).

    The student phase runs (or reads back) the reported cross-entropy run; its last
    checkpoint is the state after ``student.num_steps`` steps. Without that checkpoint
    (deleted), the run is repeated in memory: it is a pure function of the seed.
    """
    config, data = self.config, self.data
    phases.student_phase(
        config,
        data,
        self.student,
        "cross_entropy",
        seed,
        self.workdir,
        on_checkpoint=self.on_checkpoint)
    ckpt = Checkpoints(os.path.join(self.workdir, "checkpoints", "cross_entropy", f"seed_{seed}"))
    try:
      step = ckpt.latest_step()
      if step == config.student.num_steps:
        example = {"x": data.train.x[:2], "y": data.train.y[:2]}
        return ckpt.restore_state(step, self.student.init(jax.random.PRNGKey(seed), example))
    finally:
      ckpt.close()
    logging.info("glc: no final checkpoint of cross_entropy seed %d; retraining it", seed)
    return phases.train_method_student(
        config, data, self.student, "cross_entropy", seed, desc=f"glc: cross_entropy seed {seed}")

  def dev_probs(self, seed: int) -> np.ndarray:
    """float64 ``[N_dev, C]``: the cross-entropy student of ``seed``'s softmax over dev."""
    state = self.cross_entropy_state(seed)
    return student_softmax(self.student, state, self.data.dev.x,
                           self.config.student.eval_batch_size)

  def context(self, seed: int) -> corrections.Context:
    """The :class:`~experiments.corrections.Context` of the students of ``seed``."""
    return corrections.Context(seed=seed, dev_probs=self.dev_probs, workdir=self.workdir)

  def glc_transition(self, seed: int) -> np.ndarray:
    """GLC's ``T^`` of ``seed`` (float64 ``[C, C]``; recorded in the workdir)."""
    return corrections.glc_transition(self.config, self.data, self.context(seed))

  def teacher_anchor(self) -> Optional[np.ndarray]:
    """``T^`` of ``config.seed`` for ``teacher.anchor='glc'`` (None for any other anchor).

    It is the ``anchor_transition`` of :func:`~experiments.builders.build_teacher`.
    """
    if self.config.teacher.anchor != "glc":
      return None
    t_hat = self.glc_transition(self.config.seed)
    logging.info("glc: the teacher starts at T^ of seed %d (diagonal mean %.3f)", self.config.seed,
                 float(np.mean(np.diag(t_hat))))
    return t_hat

  # ---------------------------------------------------------------- tuning

  def tuned_config(self, method: str) -> ml_collections.ConfigDict:
    """``config`` with ``method``'s constant chosen on validation (itself without a grid).

    Raises:
      ValueError: a grid without a validation split (the schema refuses it first).
    """
    if method not in corrections.TUNED_CONSTANTS:
      return self.config
    key, grid_key = corrections.TUNED_CONSTANTS[method]
    grid = sorted(float(v) for v in self.config.baselines[grid_key])
    if not grid:
      return self.config
    if method not in self._tuned:
      self._tuned[method] = self._tune(method, key, grid_key, grid)["chosen"]
    return corrections.with_constant(self.config, method, self._tuned[method])

  def _tune(self, method: str, key: str, grid_key: str, grid: list) -> dict:
    path = os.path.join(self.workdir, "tuning", f"{method}.json")
    metric = splits.headline_metric(self.config)
    if os.path.exists(path):
      with open(path) as f:
        cached = json.load(f)
      if cached.get("grid") == grid and cached.get("metric") == metric:
        return cached
    if self.val is None:
      raise ValueError(f"config.baselines.{grid_key}={tuple(grid)} tunes {key} on the "
                       "validation split: set config.data.val_size.")
    names = {f"{value:g}": value for value in grid}
    candidates = {}
    for name, value in names.items():
      cfg = corrections.with_constant(self.config, method, value)
      loss = corrections.build_data_baseline(cfg, self.data, method, self.context(self.config.seed))
      candidates[name] = dict(method=method, loss=loss)
    scores = phases.validation_scores(
        self.config, self.data, self.val, self.student, candidates, prefix=f"tune {method} {key}")
    chosen, errors = pick_by_validation(scores, metric)
    logging.info("tune: %s %s -> validation error %s; chosen %s", method, key, errors, chosen)
    out = {
        "method": method,
        "key": f"baselines.{key}",
        "grid": grid,
        "chosen": names[chosen],
        "val_error": errors,
        "seeds": list(phases.SELECTION_SEEDS),
        "val_size": len(self.val),
        "metric": metric
    }
    io.write_json(path, out)
    return out

  # ------------------------------------------------------------------ loss

  def loss(self, method: str, seed: int) -> Optional[Any]:
    """The loss provider of a data-built ``method`` for the student of ``seed``.

    None for every other method (``loss_for`` of :func:`experiments.phases.student_phases`).

    A run already finished is not rebuilt: its record is read back by the phase, so
    nothing (no cross-entropy student, no tuning) is needed for it.
    """
    if method not in corrections.DATA_BASELINES:
      return None
    if os.path.exists(run_path(self.workdir, method, seed)):
      return None
    return corrections.build_data_baseline(
        self.tuned_config(method), self.data, method, self.context(seed))
