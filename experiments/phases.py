r"""The resumable phases of an experiment: teach, select, train the students.

Every outer step of the teacher and every evaluation of a student is
checkpointed with orbax (the pytree state plus, in the same checkpoint, the
history so far as JSON); a finished student run is marked by
``runs/<method>_seed<s>.json``. Batches are pure functions of ``(seed, step)``,
so a phase killed at any point and called again with the same config and
workdir restores the latest checkpoint and reproduces the uninterrupted run's
numbers exactly. The phases serve both the image protocol
(:mod:`experiments.tasks.classification`) and translation
(:mod:`experiments.tasks.translation`):
``data`` is anything with ``train`` / ``dev`` / ``test`` splits (image
:class:`~dlf_jax.data.Split`\ s, or dicts and a sampler).
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Optional

from absl import logging
import jax
import ml_collections
import numpy as np
# clu's metric writers import TensorFlow; tensorboardX writes the same event files
# without it.
import tensorboardX

import dlf_jax
from dlf_jax.analysis import with_teacher_state
from dlf_jax.data.batching import make_eval_batches
# ``dlf_jax.teach`` is the function (the package re-exports it over the submodule's
# name), so the module's names are imported from the submodule directly.
from dlf_jax.teaching import TeachState
from experiments import io
from experiments import splits
from experiments import summaries
from experiments.builders import (build_baseline, build_estimator, build_measure, build_mesh,
                                  build_teach_args, build_teach_schedule)
from experiments.selection import pick_by_validation
from experiments.workdir import Checkpoints, InputError, run_path

__all__ = [
    "CheckpointHook", "SELECTION_SEEDS", "TEACHER_METHODS", "untaught_anchor", "teacher_thetas",
    "train_method_student", "teach_state_template", "teach_phase", "maybe_teach", "student_phase",
    "student_phases", "validation_scores", "select_teacher", "choose_teacher"
]

CheckpointHook = Callable[[str, int], None]
SELECTION_SEEDS = (1000, 1001)  # students that select; never among the reported seeds
# Students trained by a frozen teacher after the warm start: the taught one, and the
# untaught anchor (the teacher's initial theta) as its control.
TEACHER_METHODS = ("l2t_dlf", "l2t_dlf_anchor")


def untaught_anchor(config: ml_collections.ConfigDict, teacher: dlf_jax.Teacher) -> Any:
  """The teacher's theta before its first outer step: the loss family at its anchor.

  As :func:`dlf_jax.teach` initialises it from ``config.seed``.
  """
  return teacher.init(jax.random.fold_in(jax.random.PRNGKey(config.seed), 0))


def teacher_thetas(config: ml_collections.ConfigDict, teacher: dlf_jax.Teacher,
                   taught: Optional[dict], with_anchor: bool) -> dict:
  """The frozen teacher of each teacher-driven method (:data:`TEACHER_METHODS`).

  Args:
    config: the run's config (its ``seed`` fixes the untaught anchor).
    teacher: the run's teacher.
    taught: the teaching phase's result (``theta``), or None when nothing was taught.
    with_anchor: add ``l2t_dlf_anchor``, the teacher at its anchor before any outer step.

  Returns:
    ``{method: theta}``, with ``l2t_dlf`` only when ``taught`` is given.
  """
  thetas = {} if taught is None else {"l2t_dlf": taught["theta"]}
  if with_anchor:
    thetas["l2t_dlf_anchor"] = untaught_anchor(config, teacher)
  return thetas


def _arrays(split):
  """An image :class:`~dlf_jax.data.Split` as ``{'x', 'y'}``; dicts and samplers pass through."""
  if isinstance(split, dict) or isinstance(split, dlf_jax.BatchSampler):
    return split
  return {"x": split.x, "y": split.y}


def _example_batch(data) -> dict:
  """A two-example batch that fixes the student's input shapes (restoring checkpoints)."""
  if hasattr(data, "example_batch"):
    return data.example_batch
  return {"x": data.train.x[:2], "y": data.train.y[:2]}


def _scalars(record: dict) -> dict:
  return {
      k: v
      for k, v in record.items()
      if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
  }


class _Session:
  """The bookkeeping of one resumable phase in ``workdir``.

  ``checkpoints/<path>/`` holds its checkpoints and ``tensorboard/<path>/`` its
  scalars; :meth:`record` appends to the history, saves ``(state, meta)`` with
  the history and the wall time so far, and calls ``on_checkpoint(name, step)``.
  """

  def __init__(self,
               workdir: str,
               path: tuple,
               name: str,
               on_checkpoint: Optional[CheckpointHook],
               prefix: str = ""):
    self.ckpt_dir = os.path.join(workdir, "checkpoints", *path)
    self.ckpt = Checkpoints(self.ckpt_dir)
    self.tensorboard_dir = os.path.join(workdir, "tensorboard", *path)
    self.name, self.on_checkpoint, self.prefix = name, on_checkpoint, prefix
    self.history, self.elapsed, self.latest = [], 0.0, self.ckpt.latest_step()
    self.writer, self.start = None, None

  def restore(self, template: Callable[[dict], Any]) -> Any:
    """The latest checkpoint's state (None if there is none); ``template(meta)`` its shape."""
    if self.latest is None:
      return None
    meta = self.ckpt.restore_meta(self.latest)
    state = self.ckpt.restore_state(self.latest, template(meta))
    self.history, self.elapsed = list(meta["history"]), float(meta["elapsed"])
    logging.info("%s: resuming from the checkpoint at step %d in %s", self.name, self.latest,
                 self.ckpt_dir)
    return state

  def begin(self) -> None:
    self.writer = tensorboardX.SummaryWriter(self.tensorboard_dir)
    self.start = time.time()

  def seconds(self) -> float:
    """Wall time of the phase: earlier sessions (to their last checkpoint) plus this one."""
    return self.elapsed + time.time() - self.start

  def record(self, step: int, state: Any, record: dict, **meta) -> None:
    self.history.append(record)
    self.ckpt.save(step, state, {**meta, "history": self.history, "elapsed": self.seconds()})
    for k, v in _scalars(record).items():
      self.writer.add_scalar(self.prefix + k, float(v), step)
    self.writer.flush()
    if self.on_checkpoint is not None:
      self.on_checkpoint(self.name, step)

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
    self.ckpt.close()


# ------------------------------------------------------------------------- teach


def teach_state_template(meta: dict, teacher: dlf_jax.Teacher, tx, estimator,
                         example_student: Callable[[], dlf_jax.StudentState]) -> dict:
  """The fields of a teach checkpoint's :class:`~dlf_jax.teaching.TeachState` to restore into.

  A dict of example pytrees with their shapes, for orbax.

  ``meta`` is the checkpoint's metadata: ``has_student`` says whether a student is
  mid-episode, ``has_estimator_state`` whether the estimator's state (e.g. PES
  particles) was saved. Checkpoints written before ``TeachState.estimator_state``
  existed lack that key and that field (every estimator was stateless then): their
  template has no ``estimator_state``, and ``TeachState(**restored)`` defaults it to None.
  """
  theta = teacher.init(jax.random.PRNGKey(0))
  example = (example_student() if meta["has_student"] or meta.get("has_estimator_state") else None)
  fields = {
      "theta": theta,
      "opt_state": tx.init(theta),
      "student": example if meta["has_student"] else None
  }
  if "has_estimator_state" in meta:
    fields["estimator_state"] = (
        estimator.init_state(theta, example) if meta["has_estimator_state"] else None)
  return fields


def teach_phase(config: ml_collections.ConfigDict,
                data,
                student: dlf_jax.Student,
                teacher: dlf_jax.Teacher,
                workdir: str,
                *,
                on_checkpoint: Optional[CheckpointHook] = None,
                measure: Optional[dlf_jax.measures.Measure] = None) -> dict:
  """Algorithm 1 with a checkpoint after every outer step; resumes from the latest.

  Args:
    config: the experiment config.
    data: the dataset (train for the unroll, dev for the measure).
    student, teacher: from :func:`~experiments.builders.build_student` /
      :func:`~experiments.builders.build_teacher`.
    workdir: the experiment's directory.
    on_checkpoint: called as ``on_checkpoint('teach', update)`` after each save
      (tests use it to interrupt the run).
    measure: the smoothed dev measure (default:
      :func:`~experiments.builders.build_measure`).

  Returns:
    dict with ``theta`` (the learned teacher), ``history`` (one record per outer
    step, across resumptions) and ``seconds`` (wall time of the phase, summed
    over sessions up to the last checkpoint).
  """
  args = build_teach_args(config, student)
  tx = args["teacher_optimizer"]
  session = _Session(workdir, ("teach",), "teach", on_checkpoint, prefix="teach/")

  template = lambda meta: teach_state_template(
      meta, teacher, tx, args["estimator"], lambda: student.init(
          jax.random.PRNGKey(0), _example_batch(data)))

  def callback(state: TeachState, record: dict) -> None:
    session.record(
        state.update,
        state,
        dict(record),
        update=state.update,
        has_student=state.student is not None,
        has_estimator_state=state.estimator_state is not None)

  try:
    restored = session.restore(template)
    init_state = None if restored is None else TeachState(**restored, update=session.latest)
    session.begin()
    result = dlf_jax.teach(
        student,
        teacher,
        _arrays(data.train),
        _arrays(data.dev),
        measure=measure or build_measure(config),
        init_state=init_state,
        callback=callback,
        **args)
  finally:
    session.close()
  seconds = session.seconds() if result.history else session.elapsed
  logging.info("teach: %d outer steps, %.1f s", len(session.history), seconds)
  return {"theta": result.theta, "history": session.history, "seconds": seconds}


def maybe_teach(config: ml_collections.ConfigDict,
                data,
                student: dlf_jax.Student,
                teacher: dlf_jax.Teacher,
                workdir: str,
                *,
                on_checkpoint: Optional[CheckpointHook] = None,
                measure: Optional[dlf_jax.measures.Measure] = None) -> Optional[dict]:
  """:func:`teach_phase` if ``l2t_dlf`` is among ``config.methods``, else None.

  Raises:
    InputError: a teacher the estimator refuses (e.g. ``teach.estimator.name='forward'``
      with a teacher larger than ``teach.estimator.forward.max_params``).
  """
  if "l2t_dlf" not in config.methods:
    return None
  try:
    build_estimator(config, student).check(teacher.init(jax.random.PRNGKey(0)))
  except ValueError as e:
    raise InputError(f"config.teach.estimator.name={config.teach.estimator.name!r}: {e}") from e
  return teach_phase(
      config, data, student, teacher, workdir, on_checkpoint=on_checkpoint, measure=measure)


# ---------------------------------------------------------------------- students


def train_method_student(config: ml_collections.ConfigDict,
                         data,
                         student: dlf_jax.Student,
                         method: str,
                         seed: int,
                         *,
                         teacher: Optional[dlf_jax.Teacher] = None,
                         theta: Any = None,
                         desc: Optional[str] = None,
                         init_state: Optional[dlf_jax.StudentState] = None,
                         loss: Optional[dlf_jax.LossProvider] = None,
                         **kwargs) -> dlf_jax.StudentState:
  """One student of ``method`` by :func:`dlf_jax.train_student`, from ``init_state`` (or fresh).

  A baseline trains with its fixed loss throughout. An ``l2t_dlf`` (or
  ``l2t_dlf_anchor``) student is trained as the teacher was taught: the teach
  schedule's :class:`~dlf_jax.WarmStart` (cross-entropy for the first
  ``config.teach.pretrain_steps`` steps), the frozen teacher ``theta`` after --
  the library call of README's "From code" recipe.

  Args:
    config: the experiment config (``student`` section: steps, batch, evaluation).
    data: the dataset (train; dev feeds the teacher's ``dev_acc``).
    student: from :func:`~experiments.builders.build_student`.
    method: a ``config.methods`` entry.
    seed: the student's seed (init, batch order).
    teacher, theta: the frozen teacher (:data:`TEACHER_METHODS` only).
    desc: the progress bar's label (default ``'<method> seed <seed>'``).
    init_state: resume from this carry.
    loss: a baseline's loss provider, for the baselines built from the data
      (:data:`experiments.corrections.DATA_BASELINES`); default
      :func:`~experiments.builders.build_baseline` of ``method``.
    **kwargs: more keyword arguments of :func:`dlf_jax.train_student` (``test``,
      ``callback``).

  Returns:
    the trained :class:`~dlf_jax.StudentState`.

  Raises:
    ValueError: a method of :data:`TEACHER_METHODS` without ``teacher`` and ``theta``.
  """
  s = config.student
  if method in TEACHER_METHODS:
    if teacher is None or theta is None:
      raise ValueError(f"method {method!r} needs the frozen teacher and its theta.")
    loss, warm_start = teacher, build_teach_schedule(config).warm_start
  else:
    loss = build_baseline(config, method) if loss is None else loss
    warm_start, theta = None, None
  return dlf_jax.train_student(
      student,
      loss,
      _arrays(data.train),
      theta=theta,
      num_steps=s.num_steps,
      batch_size=s.batch_size,
      seed=seed,
      eval_every=s.eval_every,
      dev=_arrays(data.dev),
      eval_batch_size=s.eval_batch_size,
      warm_start=warm_start,
      init_state=init_state,
      progress=config.progress,
      desc=desc or f"{method} seed {seed}",
      mesh=build_mesh(config),
      **kwargs).state


def student_phase(config: ml_collections.ConfigDict,
                  data,
                  student: dlf_jax.Student,
                  method: str,
                  seed: int,
                  workdir: str,
                  *,
                  teacher: Optional[dlf_jax.Teacher] = None,
                  theta: Any = None,
                  on_checkpoint: Optional[CheckpointHook] = None,
                  tag: Optional[str] = None,
                  loss: Optional[dlf_jax.LossProvider] = None) -> dict:
  """Trains one student (``method``, ``seed``), checkpointing at every evaluation.

  A finished run is read back from ``runs/<method>_seed<seed>.json``; an
  unfinished one resumes from its latest checkpoint. The student is trained by
  :func:`train_method_student` (for ``l2t_dlf``: the warm start, then the teacher).

  Args:
    config: the experiment config.
    data: the dataset (train, dev and test are all used).
    student: from :func:`~experiments.builders.build_student`.
    method: a ``config.methods`` entry; those of :data:`TEACHER_METHODS` need
      ``teacher`` and ``theta``.
    seed: the student's seed (init, batch order).
    workdir: the experiment's directory.
    teacher, theta: the frozen teacher (``l2t_dlf`` only).
    on_checkpoint: called as ``on_checkpoint('<tag>/seed_<seed>', step)``
      after each save.
    tag: names the run's files (``runs/<tag>_seed<s>.json``,
      ``checkpoints/<tag>/``); default ``method``. Two students of one method with
      different constants (e.g. label smoothing's eps) need different tags.
    loss: a data-built baseline's loss provider (see :func:`train_method_student`).

  Returns:
    dict: ``method, seed, test_error, dev_error`` (%, at the last step),
    ``test_error_at_best_dev``, ``best_dev_step``, ``seconds`` and ``history``
    (one record per evaluation, with the state features ``s_train_loss``,
    ``s_train_acc``, ``s_dev_acc`` the teacher saw after it); for a long-tailed
    training split also the balanced errors of :func:`experiments.summaries.final_numbers`
    (the best dev evaluation is then the one of the best balanced dev accuracy).
  """
  tag = tag or method
  done_path = run_path(workdir, tag, seed)
  metric = splits.headline_metric(config)
  if os.path.exists(done_path):
    with open(done_path) as f:
      result = json.load(f)
    if metric != "accuracy" and summaries.error_key("test", metric) not in result:
      result.update(summaries.final_numbers(result["history"], metric))  # an older run file
    return result
  if method in TEACHER_METHODS and (teacher is None or theta is None):
    raise ValueError(f"method {method!r} needs the frozen teacher and its theta.")
  name = f"{tag}/seed_{seed}"
  session = _Session(workdir, (tag, f"seed_{seed}"), name, on_checkpoint)

  def callback(state: dlf_jax.StudentState, record: dict) -> None:
    session.record(int(state.step), state, with_teacher_state(record, state))

  try:
    state = session.restore(
        lambda meta: student.init(jax.random.PRNGKey(seed), _example_batch(data)))
    session.begin()
    train_method_student(
        config,
        data,
        student,
        method,
        seed,
        teacher=teacher,
        theta=theta,
        init_state=state,
        loss=loss,
        test=_arrays(data.test),
        callback=callback)
    seconds = session.seconds()
  finally:
    session.close()
  result = {
      "method": method,
      "seed": seed,
      "seconds": seconds,
      **summaries.final_numbers(session.history, metric), "history": session.history
  }
  logging.info("%s: test error %.2f%%, dev error %.2f%% (%.1f s)", name, result["test_error"],
               result["dev_error"], seconds)
  io.write_json(done_path, result)
  return result


def student_phases(config: ml_collections.ConfigDict,
                   data,
                   student: dlf_jax.Student,
                   workdir: str,
                   *,
                   teacher: Optional[dlf_jax.Teacher] = None,
                   theta: Any = None,
                   on_checkpoint: Optional[CheckpointHook] = None,
                   after: Optional[Callable[[str, int], None]] = None,
                   methods: Optional[tuple] = None,
                   thetas: Optional[dict] = None,
                   tags: Optional[dict] = None,
                   loss_for: Optional[Callable[[str, int], Any]] = None) -> list:
  """:func:`student_phase` for every method and seed, in that order.

  The methods are ``methods`` (default ``config.methods``), the seeds
  ``config.seed + i`` (``i < config.num_seeds``); ``after(method, seed)`` is called
  after each (e.g. to decode its test set).
  ``thetas`` (method -> theta) overrides ``theta`` per method; ``tags`` (method ->
  tag) names a method's files (see :func:`student_phase`); ``loss_for(method, seed)``
  gives a data-built baseline's loss provider (None for the other methods; e.g.
  :meth:`experiments.correction_phases.DataBaselines.loss`). Returns the runs.
  """
  runs = []
  for method in config.methods if methods is None else methods:
    for i in range(config.num_seeds):
      seed = config.seed + i
      runs.append(
          student_phase(
              config,
              data,
              student,
              method,
              seed,
              workdir,
              teacher=teacher,
              theta=(thetas or {}).get(method, theta),
              on_checkpoint=on_checkpoint,
              tag=(tags or {}).get(method),
              loss=None if loss_for is None else loss_for(method, seed)))
      if after is not None:
        after(method, seed)
  return runs


# ------------------------------------------------------------------------ select


def select_teacher(config: ml_collections.ConfigDict, data, val, student: dlf_jax.Student,
                   teacher: dlf_jax.Teacher, candidates: dict, workdir: str) -> dict:
  """Picks the teacher whose fresh students have the lowest validation error.

  One student per candidate and seed of :data:`SELECTION_SEEDS`, trained as an
  ``l2t_dlf`` student (warm start, then the frozen candidate), scored on ``val``
  only (the test split is not read). The error is that of
  :func:`experiments.splits.headline_metric`: the balanced error
  (``1 - balanced accuracy``) for a long-tailed training split, the plain error
  otherwise. The result is cached in ``selection.json``.

  Args:
    candidates: name -> theta (e.g. the untaught anchor and the taught teacher).

  Returns:
    dict: ``chosen`` (a candidate name), ``val_error`` (name -> mean %, seeds),
    ``seeds``, ``val_size``; ``metric`` (``'balanced_accuracy'``) when the error is
    the balanced one.
  """
  path = os.path.join(workdir, "selection.json")
  metric = splits.headline_metric(config)
  if os.path.exists(path):
    with open(path) as f:
      cached = json.load(f)
    if cached.get("metric", "accuracy") == metric:  # else: chosen by another metric, redo
      return cached
  scores = validation_scores(
      config,
      data,
      val,
      student, {
          name: dict(method="l2t_dlf", teacher=teacher, theta=theta)
          for name, theta in candidates.items()
      },
      prefix="select")
  chosen, errors = pick_by_validation(scores, metric)
  for name, error in errors.items():
    logging.info("select: %s -> validation %s error %.2f%%", name,
                 "balanced" if metric != "accuracy" else "plain", error)
  out = {
      "chosen": chosen,
      "val_error": errors,
      "seeds": list(SELECTION_SEEDS),
      "val_size": len(val),
      **({} if metric == "accuracy" else {
             "metric": metric
         })
  }
  io.write_json(path, out)
  return out


def validation_scores(config: ml_collections.ConfigDict,
                      data,
                      val,
                      student: dlf_jax.Student,
                      candidates: dict,
                      *,
                      prefix: str = "select") -> dict:
  """One fresh student per candidate and seed of :data:`SELECTION_SEEDS`, scored on ``val``.

  The students are trained by :func:`train_method_student` (the test split is not
  read) and evaluated on the validation split: the scores that
  :func:`pick_by_validation` ranks.

  Args:
    config: the experiment config.
    data: the dataset (train; dev feeds a teacher's ``dev_acc``).
    val: the validation split (an image :class:`~dlf_jax.data.Split`).
    student: from :func:`~experiments.builders.build_student`.
    candidates: name -> keyword arguments of :func:`train_method_student` (``method``
      and, as the method needs, ``teacher`` / ``theta`` or ``loss``).
    prefix: the progress bars' label (``'<prefix> <name> seed <s>'``).

  Returns:
    name -> one :func:`dlf_jax.unroll.evaluate` output per seed (host dicts).
  """
  evaluate = jax.jit(lambda p, m, b: dlf_jax.unroll.evaluate(student, p, m, b))
  val_batches = make_eval_batches({"x": val.x, "y": val.y}, config.student.eval_batch_size)
  scores = {}
  for name, kwargs in candidates.items():
    scores[name] = []
    kwargs = dict(kwargs)
    method = kwargs.pop("method")
    for seed in SELECTION_SEEDS:
      state = train_method_student(
          config, data, student, method, seed, desc=f"{prefix} {name} seed {seed}", **kwargs)
      scores[name].append(jax.device_get(evaluate(state.params, state.model_state, val_batches)))
  return scores


def choose_teacher(config: ml_collections.ConfigDict, data, val, student: dlf_jax.Student,
                   teacher: dlf_jax.Teacher, taught: dict, workdir: str) -> dict:
  """:func:`select_teacher` between the untaught anchor and ``taught['theta']``.

  Sets ``taught['theta']`` to the chosen one; returns the selection record.
  """
  candidates = {"anchor (untaught)": untaught_anchor(config, teacher), "taught": taught["theta"]}
  selection = select_teacher(config, data, val, student, teacher, candidates, workdir)
  taught["theta"] = candidates[selection["chosen"]]
  return selection
