"""One experiment: teach -> freeze -> students x methods x seeds -> evaluate -> report.

The protocol of the L2T family (Wu et al. 2018, Sec. 5): the teacher ``mu_theta``
is learned on a dev set carved from the training data (Algorithm 1,
:func:`dlf_jax.teach`), then frozen; fresh students are trained with it and with
each baseline loss (:func:`dlf_jax.train_student`) for every seed, and evaluated
on the official test split. :func:`run` reports the test error (%) of every
method as mean +- std over seeds.

Resuming: every outer step of the teacher and every evaluation of a student is
checkpointed with orbax (the pytree state plus, in the same checkpoint, the
history so far as JSON); a finished student run is marked by
``runs/<method>_seed<s>.json``. Batches are pure functions of ``(seed, step)``,
so killing :func:`run` at any point and calling it again with the same config
and workdir restores the latest checkpoints and reproduces the uninterrupted
run's numbers exactly.

Workdir layout::

  config.json                              the config (a resume must match it)
  checkpoints/teach/<update>/              TeachState + {history, elapsed} (last 2)
  checkpoints/<method>/seed_<s>/<step>/    StudentState + {history, elapsed} (last 2)
  runs/<method>_seed<s>.json               a finished student run
  selection.json                           the teacher chosen on the validation split
  tensorboard/{teach,<method>/seed_<s>}/   tensorboardX event files
  metrics.csv                              long format: phase,method,seed,step,metric,value
  results.json, results.md                 the table, wall times, data, config
  plots/*.png                              W_t heatmaps, phi statistics, curves
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
# clu's metric writers import TensorFlow; tensorboardX writes the same event files
# without it.
import tensorboardX

import dlf_jax
from dlf_jax import data as data_lib
from dlf_jax.data.batching import make_eval_batches
from dlf_jax import hypergrad, losses, models, student as student_lib
from dlf_jax import teacher as teacher_lib
# ``dlf_jax.teach`` is the function (the package re-exports it over the submodule's
# name), so the module's names are imported from the submodule directly.
from dlf_jax.teaching import MODES as TEACH_MODES
from dlf_jax.teaching import TeachState
from experiments import reporting

__all__ = [
    "METHODS", "MODELS", "TEACHERS", "MEASURES", "TEACHER_OPTIMIZERS",
    "validate_config", "load_data", "build_student", "build_teacher", "build_measure",
    "build_baseline", "build_teacher_optimizer", "build_schedule", "build_mesh",
    "teach_phase", "student_phase", "carve_validation", "check_disjoint", "select_teacher",
    "with_teacher_state", "run",
]

METHODS = losses.BASELINES + ("l2t_dlf",)
MODELS = ("mlp", "lenet", "convbn", "resnet", "wrn")
SCHEDULES = ("constant", "step", "inverse_sqrt")
TEACHERS = ("attention", "mlp")
MEASURES = ("expected_accuracy", "sigmoid_error", "cross_entropy")
RECIPES = ("config", "paper")
ESTIMATORS = ("reverse", "forward", "es")
TEACHER_OPTIMIZERS = ("adam", "sgd", "momentum")
# Config keys that may change between a run and its resumption.
_RESUMABLE_KEYS = ("progress", "methods", "num_seeds")

CheckpointHook = Callable[[str, int], None]


# ----------------------------------------------------------------------- config


def _fail(key: str, value: Any, expected: str) -> None:
  raise ValueError(f"config.{key}={value!r} is invalid: expected {expected}.")


def _check_choice(config, key: str, options) -> None:
  value = _get(config, key)
  if value not in options:
    _fail(key, value, f"one of {tuple(options)}")


def _check_int(config, key: str, minimum: int = 1, allow_none: bool = False) -> None:
  value = _get(config, key)
  if value is None and allow_none:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    _fail(key, value, f"an integer >= {minimum}" + (" or None" if allow_none else ""))


def _check_positive(config, key: str) -> None:
  value = _get(config, key)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    _fail(key, value, "a number > 0")


def _get(config, key: str):
  for part in key.split("."):
    config = config[part]
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every value of an experiment config before any work is done.

  Args:
    config: an experiment config (see ``experiments/configs/common.py``).

  Raises:
    ValueError: naming the offending key, its value and the valid options.
    KeyError: a required key is missing.
  """
  _check_choice(config, "data.name", data_lib.DATASETS)
  _check_choice(config, "data.source", data_lib.SOURCES)
  _check_choice(config, "data.dev_split", ("random", "tail"))
  for key in ("data.dev_size", "data.train_size", "data.test_size"):
    _check_int(config, key, allow_none=True)
  _check_int(config, "data.seed", minimum=0)

  _check_choice(config, "model.name", MODELS)
  hidden = config.model.hidden
  if (not isinstance(hidden, (tuple, list)) or not hidden
      or not all(isinstance(h, int) and h >= 1 for h in hidden)):
    _fail("model.hidden", hidden, "a non-empty tuple of integer widths >= 1")
  _check_int(config, "model.width")
  _check_int(config, "model.depth")
  _check_int(config, "model.widen")
  _check_choice(config, "model.conv_impl", models.layers.CONV_IMPLS)
  if config.model.name == "resnet" and (config.model.depth < 8 or (config.model.depth - 2) % 6):
    _fail("model.depth", config.model.depth, "6n+2 for a CIFAR ResNet (8, 20, 32, 44, 56, 110)")
  if config.model.name == "wrn" and (config.model.depth < 10 or (config.model.depth - 4) % 6):
    _fail("model.depth", config.model.depth, "6n+4 for a Wide ResNet (10, 16, 22, 28, 40)")
  _check_choice(config, "data.augment", data_lib.AUGMENTATIONS)

  _check_choice(config, "student.optimizer", student_lib.OPTIMIZERS)
  _check_positive(config, "student.learning_rate")
  if not 0 <= config.student.momentum < 1:
    _fail("student.momentum", config.student.momentum, "a number in [0, 1)")
  if config.student.weight_decay < 0:
    _fail("student.weight_decay", config.student.weight_decay, "a number >= 0")
  for key in ("student.batch_size", "student.num_steps", "student.eval_every",
              "student.eval_batch_size"):
    _check_int(config, key)
  _check_choice(config, "student.schedule", SCHEDULES)
  bounds = config.student.schedule_boundaries
  if (not isinstance(bounds, (tuple, list))
      or not all(isinstance(b, (int, float)) and 0 < b < 1 for b in bounds)
      or list(bounds) != sorted(bounds)):
    _fail("student.schedule_boundaries", bounds,
          "an increasing tuple of fractions of student.num_steps in (0, 1), e.g. (0.5, 0.75)")
  _check_positive(config, "student.schedule_factor")
  if config.data_parallel not in (True, False):
    _fail("data_parallel", config.data_parallel, "True or False")

  _check_choice(config, "teacher.kind", TEACHERS)
  _check_choice(config, "teacher.parameterisation", losses.PARAMETERISATIONS)
  for key in ("teacher.num_matrices", "teacher.rank", "teacher.hidden"):
    _check_int(config, key)
  _check_positive(config, "teacher.init_scale")
  features = config.teacher.features
  if not isinstance(features, (tuple, list)) or any(
      f not in teacher_lib.STATE_FEATURES for f in features):
    _fail("teacher.features", features,
          f"a tuple of names from {teacher_lib.STATE_FEATURES}")
  if not 0 <= config.teacher.ema_decay < 1:
    _fail("teacher.ema_decay", config.teacher.ema_decay, "a number in [0, 1)")
  _check_choice(config, "teacher.recipe", RECIPES)
  _check_choice(config, "teacher.link", losses.LINKS)
  _check_choice(config, "teacher.anchor", losses.ANCHORS)
  _check_choice(config, "teacher.target", losses.TARGETS)
  if not 0 <= config.teacher.anchor_smoothing < 1:
    _fail("teacher.anchor_smoothing", config.teacher.anchor_smoothing,
          "a number in [0, 1) (0 = cross-entropy)")
  if (config.teacher.recipe == "config" and config.teacher.anchor == "label_smoothing"
      and config.teacher.anchor_smoothing > 0
      and config.teacher.parameterisation in ("diagonal", "low_rank")):
    _fail("teacher.anchor", config.teacher.anchor,
          "'cross_entropy' for a diagonal/low-rank W (it cannot represent label smoothing), "
          "or set teacher.parameterisation='soft_target'")

  _check_choice(config, "teach.mode", TEACH_MODES)
  for key in ("teach.unroll_steps", "teach.num_episodes", "teach.dev_batch_size"):
    _check_int(config, key)
  for key in ("teach.segments_per_episode", "teach.dev_sample_size", "teach.checkpoint_every"):
    _check_int(config, key, allow_none=True)
  _check_int(config, "teach.pretrain_steps", minimum=0)
  if config.teach.pretrain_steps + config.teach.unroll_steps > config.student.num_steps:
    _fail("teach.unroll_steps", config.teach.unroll_steps,
          f"at most student.num_steps - teach.pretrain_steps = {config.student.num_steps} - "
          f"{config.teach.pretrain_steps} (T steps of the run the teacher will teach)")
  _check_choice(config, "teach.optimizer", TEACHER_OPTIMIZERS)
  _check_positive(config, "teach.learning_rate")
  _check_choice(config, "teach.method", hypergrad.METHODS)
  _check_choice(config, "teach.memory", hypergrad.MEMORY_POLICIES)
  _check_choice(config, "teach.measure", MEASURES)
  _check_positive(config, "teach.measure_k")
  _check_int(config, "data.val_size", minimum=0, allow_none=True)
  if config.teach.select not in (True, False):
    _fail("teach.select", config.teach.select, "True or False")
  if config.teach.select and not config.data.val_size:
    _fail("teach.select", True, "False, or set data.val_size (the validation split that "
          "selects the teacher)")
  _check_choice(config, "teach.estimator", ESTIMATORS)
  _check_int(config, "teach.chunk_steps", allow_none=True)
  _check_int(config, "teach.forward_max_params")
  _check_int(config, "teach.es_population", minimum=2)
  if config.teach.es_population % 2:
    _fail("teach.es_population", config.teach.es_population,
          "an even number (antithetic pairs)")
  _check_positive(config, "teach.es_sigma")

  methods = config.methods
  if (not isinstance(methods, (tuple, list)) or not methods
      or any(m not in METHODS for m in methods) or len(set(methods)) != len(methods)):
    _fail("methods", methods, f"a non-empty tuple of distinct names from {METHODS}")
  if not 0 <= config.baselines.smoothing < 1:
    _fail("baselines.smoothing", config.baselines.smoothing, "a number in [0, 1)")
  _check_int(config, "baselines.margin")
  for key in ("baselines.beta", "baselines.beta_min", "baselines.beta_gamma",
              "baselines.beta_power"):
    if _get(config, key) < 0:
      _fail(key, _get(config, key), "a number >= 0")
  _check_int(config, "num_seeds")
  _check_int(config, "seed", minimum=0)


# ----------------------------------------------------------------- components


def load_data(config: ml_collections.ConfigDict) -> data_lib.ImageDataset:
  """The train / dev / test splits of ``config.data``.

  Raises:
    FileNotFoundError: the library's message (every place looked in, and the fix).
  """
  d = config.data
  try:
    return data_lib.load_image_dataset(
        d.name, source=d.source, data_dir=d.data_dir, dev_size=d.dev_size,
        dev_split=d.dev_split, train_size=d.train_size, test_size=d.test_size, seed=d.seed)
  except ValueError as e:                   # sizes the data cannot satisfy: a config problem
    raise InputError(f"config.data: {e}") from e


def build_student(config: ml_collections.ConfigDict, num_classes: int) -> dlf_jax.Student:
  """The student of ``config.model`` / ``config.student``."""
  m, s = config.model, config.student
  if m.name == "mlp":
    model = models.MLP(hidden=tuple(m.hidden), num_classes=num_classes)
  elif m.name == "lenet":
    model = models.LeNet(num_classes=num_classes)
  elif m.name == "convbn":
    model = models.ConvBN(num_classes=num_classes, width=m.width, conv_impl=m.conv_impl)
  elif m.name == "resnet":
    model = models.ResNet(depth=m.depth, num_classes=num_classes, width=m.width,
                          conv_impl=m.conv_impl)
  elif m.name == "wrn":
    model = models.WideResNet(depth=m.depth, widen=m.widen, num_classes=num_classes,
                              conv_impl=m.conv_impl)
  else:
    raise ValueError(f"config.model.name={m.name!r} is invalid: expected one of {MODELS}.")
  tx = dlf_jax.make_optimizer(s.optimizer, build_schedule(config), momentum=s.momentum,
                              weight_decay=s.weight_decay)
  return dlf_jax.Student(model=model, tx=tx, num_classes=num_classes,
                         augment=data_lib.make_augment(config.data.augment))


def build_schedule(config: ml_collections.ConfigDict):
  """The student's learning rate: a float (``constant``) or an optax schedule.

  ``step``: ``learning_rate``, multiplied by ``schedule_factor`` (0.1) at each
  fraction in ``schedule_boundaries`` of ``num_steps`` -- ResNet's 0.1, /10 at
  50% and 75% of training (He et al., 2016). ``inverse_sqrt``: linear warm-up
  over ``student.warmup_steps`` to ``learning_rate``, then ``1 / sqrt(step)``
  decay (Vaswani et al., 2017). The schedule is a function of the
  optimizer's step count, which the unroll differentiates through as data.
  """
  s = config.student
  if s.schedule == "constant":
    return s.learning_rate
  if s.schedule == "inverse_sqrt":
    warmup = max(1, int(s.get("warmup_steps", 1)))
    return lambda step: s.learning_rate * jnp.minimum(
        (step + 1) / warmup, jnp.sqrt(warmup / jnp.maximum(step + 1, 1)))
  return optax.piecewise_constant_schedule(
      s.learning_rate, {int(b * s.num_steps): s.schedule_factor for b in s.schedule_boundaries})


def build_mesh(config: ml_collections.ConfigDict):
  """A data-parallel mesh over all devices if ``config.data_parallel`` and >1 device, else None."""
  if not config.data_parallel or jax.device_count() == 1:
    return None
  n = jax.device_count()
  for key in ("student.batch_size", "student.eval_batch_size", "teach.dev_batch_size"):
    if _get(config, key) % n:
      _fail(key, _get(config, key), f"a multiple of the {n} devices for data parallelism "
            "(or set data_parallel=False)")
  return dlf_jax.parallel.make_mesh()


# What ``teacher.recipe='paper'`` sets: Eqn. (2) as the paper writes it.
PAPER_RECIPE = {"teacher.parameterisation": "full", "teacher.link": "sigmoid",
                "teacher.anchor": "cross_entropy", "teach.measure": "expected_accuracy"}


def resolve_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` itself for ``teacher.recipe='config'``; a copy with :data:`PAPER_RECIPE`
  applied for ``'paper'`` (the keys it sets are overridden, whatever they say)."""
  if config.teacher.get("recipe", "config") != "paper":
    return config
  resolved = ml_collections.ConfigDict(config.to_dict())
  for key, value in PAPER_RECIPE.items():
    section, name = key.split(".")
    resolved[section][name] = value
  return resolved


def build_teacher(config: ml_collections.ConfigDict, num_classes: int) -> dlf_jax.Teacher:
  """``mu_theta`` of ``config.teacher``; ``total_steps = config.student.num_steps``."""
  t = resolve_recipe(config).teacher
  family = dict(link=t.link, anchor=t.anchor, anchor_smoothing=t.anchor_smoothing,
                target=t.target)
  if t.kind == "attention":
    module = dlf_jax.AttentionTeacher(
        num_classes=num_classes, num_matrices=t.num_matrices,
        parameterisation=t.parameterisation, rank=t.rank,
        per_class_bias=t.per_class_bias, init_scale=t.init_scale, **family)
  elif t.kind == "mlp":
    module = dlf_jax.MLPTeacher(
        num_classes=num_classes, parameterisation=t.parameterisation, rank=t.rank,
        per_class_bias=t.per_class_bias, hidden=t.hidden, init_scale=t.init_scale, **family)
  else:
    raise ValueError(f"config.teacher.kind={t.kind!r} is invalid: expected one of {TEACHERS}.")
  return dlf_jax.Teacher(module=module, features=tuple(t.features),
                         total_steps=config.student.num_steps, ema_decay=t.ema_decay)


def build_measure(config: ml_collections.ConfigDict):
  """The smoothed dev measure M~ of ``config.teach.measure`` (after the recipe)."""
  measure = resolve_recipe(config).teach.measure
  if measure == "expected_accuracy":
    return dlf_jax.ExpectedAccuracy()
  if measure == "cross_entropy":
    return dlf_jax.CrossEntropy()
  return dlf_jax.SigmoidSmoothedError(k=config.teach.measure_k)


def build_teacher_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The optax transformation of theta (``config.teach.optimizer``)."""
  name, lr = config.teach.optimizer, config.teach.learning_rate
  if name == "adam":
    return optax.adam(lr)
  if name == "momentum":
    return optax.sgd(lr, momentum=0.9)
  return optax.sgd(lr)


def build_baseline(config: ml_collections.ConfigDict, method: str) -> dlf_jax.BaselineLoss:
  """The fixed loss of a baseline ``method`` with ``config.baselines``' constants."""
  b = config.baselines
  return dlf_jax.BaselineLoss(kind=method, smoothing=b.smoothing, margin=b.margin,
                              beta=b.beta, beta_min=b.beta_min, beta_gamma=b.beta_gamma,
                              beta_power=b.beta_power)


def _arrays(split):
  """An image :class:`~dlf_jax.data.Split` as ``{'x', 'y'}``; dicts and samplers pass through."""
  if isinstance(split, dict) or hasattr(split, "segment"):
    return split
  return {"x": split.x, "y": split.y}


def _example_batch(data) -> dict:
  """A two-example batch that fixes the student's input shapes (restoring checkpoints)."""
  if hasattr(data, "example_batch"):
    return data.example_batch
  return {"x": data.train.x[:2], "y": data.train.y[:2]}


# ---------------------------------------------------------------- checkpoints


class _Checkpoints:
  """Synchronous orbax checkpoints of ``(pytree state, JSON meta)`` pairs, last 2 kept.

  Saves are synchronous so that a checkpoint on disk is complete when the
  callback returns; orbax writes to a temporary directory and renames it, so a
  kill mid-save leaves the previous checkpoint as the latest.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  @staticmethod
  def _fill_empty(tree: Any) -> Any:
    """Zero-size arrays (orbax refuses them; e.g. the score kernel of a teacher with
    ``features=()``) -> a one-element stand-in; :meth:`restore_state` puts them back."""
    return jax.tree_util.tree_map(
        lambda x: jnp.zeros((1,), x.dtype) if getattr(x, "size", 1) == 0 else x, tree)

  def save(self, step: int, state: Any, meta: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(self._fill_empty(state)), meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()

  def restore_meta(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]

  def restore_state(self, step: int, template: Any) -> Any:
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(self._fill_empty(template))))["state"]
    return jax.tree_util.tree_map(lambda t, r: t if getattr(t, "size", 1) == 0 else r,
                                  template, restored)

  def close(self) -> None:
    self._manager.close()


def _scalars(record: dict) -> dict:
  return {k: v for k, v in record.items()
          if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}


def _write_scalars(writer: Optional[tensorboardX.SummaryWriter], record: dict, step: int,
                   prefix: str = "") -> None:
  if writer is None:
    return
  for k, v in _scalars(record).items():
    writer.add_scalar(prefix + k, float(v), step)
  writer.flush()


# ---------------------------------------------------------------------- phases


def teach_phase(config: ml_collections.ConfigDict, data: data_lib.ImageDataset,
                student: dlf_jax.Student, teacher: dlf_jax.Teacher, workdir: str, *,
                on_checkpoint: Optional[CheckpointHook] = None,
                measure: Optional[dlf_jax.measures.Measure] = None) -> dict:
  """Algorithm 1 with a checkpoint after every outer step; resumes from the latest.

  Args:
    config: the experiment config.
    data: the dataset (train for the unroll, dev for the measure).
    student, teacher: from :func:`build_student` / :func:`build_teacher`.
    workdir: the experiment's directory.
    on_checkpoint: called as ``on_checkpoint('teach', update)`` after each save
      (tests use it to interrupt the run).
    measure: the smoothed dev measure (default: :func:`build_measure`).

  Returns:
    dict with ``theta`` (the learned teacher), ``history`` (one record per outer
    step, across resumptions) and ``seconds`` (wall time of the phase, summed
    over sessions up to the last checkpoint).
  """
  t = config.teach
  tx = build_teacher_optimizer(config)
  segments = t.segments_per_episode
  if segments is None and t.mode == "online":   # the rest of the run after the warm start
    segments = max(1, (config.student.num_steps - t.pretrain_steps) // t.unroll_steps)
  ckpt = _Checkpoints(os.path.join(workdir, "checkpoints", "teach"))
  init_state, history, elapsed = None, [], 0.0
  latest = ckpt.latest_step()
  if latest is not None:
    meta = ckpt.restore_meta(latest)
    theta = teacher.init(jax.random.PRNGKey(0))
    template = TeachState(
        theta=theta, opt_state=tx.init(theta),
        student=(student.init(jax.random.PRNGKey(0), _example_batch(data))
                 if meta["has_student"] else None),
        update=meta["update"])
    init_state = ckpt.restore_state(latest, template)
    history, elapsed = list(meta["history"]), float(meta["elapsed"])
    logging.info("teach: resuming after outer step %d from %s", latest, workdir)
  writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard", "teach"))
  start = time.time()

  def callback(state: TeachState, record: dict) -> None:
    history.append(dict(record))
    ckpt.save(state.update, state, {
        "update": state.update, "has_student": state.student is not None,
        "history": history, "elapsed": elapsed + time.time() - start})
    _write_scalars(writer, record, state.update, prefix="teach/")
    if on_checkpoint is not None:
      on_checkpoint("teach", state.update)

  try:
    result = dlf_jax.teach(
        student, teacher, _arrays(data.train), _arrays(data.dev),
        measure=measure or build_measure(config), teacher_optimizer=tx,
        unroll_steps=t.unroll_steps, num_episodes=t.num_episodes, mode=t.mode,
        segments_per_episode=segments, pretrain_steps=t.pretrain_steps,
        batch_size=config.student.batch_size, dev_batch_size=t.dev_batch_size,
        dev_sample_size=t.dev_sample_size, method=t.method, memory=t.memory,
        checkpoint_every=t.checkpoint_every, seed=config.seed, init_state=init_state,
        callback=callback, progress=config.progress, mesh=build_mesh(config),
        estimator=t.estimator, chunk_steps=t.chunk_steps,
        forward_max_params=t.forward_max_params, es_population=t.es_population,
        es_sigma=t.es_sigma)
  finally:
    writer.close()
    ckpt.close()
  seconds = elapsed + (time.time() - start if result.history else 0.0)
  logging.info("teach: %d outer steps, %.1f s", len(history), seconds)
  return {"theta": result.theta, "history": history, "seconds": seconds}


def with_teacher_state(record: dict, state: dlf_jax.StudentState) -> dict:
  """``record`` plus the running statistics the teacher reads after this evaluation.

  Adds ``s_train_loss``, ``s_train_acc`` and ``s_dev_acc`` (the
  :class:`~dlf_jax.teacher.RunningStats` of ``state``, with the fresh dev accuracy),
  from which :func:`experiments.reporting.w_snapshots` recomputes ``phi_t``.
  """
  stats = jax.device_get(state.stats)
  return dict(record, s_train_loss=float(stats.train_loss),
              s_train_acc=float(stats.train_acc), s_dev_acc=float(stats.dev_acc))


def _run_path(workdir: str, method: str, seed: int) -> str:
  return os.path.join(workdir, "runs", f"{method}_seed{seed}.json")


def student_phase(config: ml_collections.ConfigDict, data: data_lib.ImageDataset,
                  student: dlf_jax.Student, method: str, seed: int, workdir: str, *,
                  teacher: Optional[dlf_jax.Teacher] = None, theta: Any = None,
                  on_checkpoint: Optional[CheckpointHook] = None) -> dict:
  """Trains one student (``method``, ``seed``), checkpointing at every evaluation.

  A finished run is read back from ``runs/<method>_seed<seed>.json``; an
  unfinished one resumes from its latest checkpoint. An ``l2t_dlf`` student is
  trained as the teacher was taught: cross-entropy for the first
  ``config.teach.pretrain_steps`` steps (the warm start), the frozen teacher after.

  Args:
    config: the experiment config.
    data: the dataset (train, dev and test are all used).
    student: from :func:`build_student`.
    method: a :data:`METHODS` entry; ``l2t_dlf`` needs ``teacher`` and ``theta``.
    seed: the student's seed (init, batch order).
    workdir: the experiment's directory.
    teacher, theta: the frozen teacher (``l2t_dlf`` only).
    on_checkpoint: called as ``on_checkpoint('<method>/seed_<seed>', step)``
      after each save.

  Returns:
    dict: ``method, seed, test_error, dev_error`` (%, at the last step),
    ``test_error_at_best_dev``, ``best_dev_step``, ``seconds`` and ``history``
    (one record per evaluation, with the state features ``s_train_loss``,
    ``s_train_acc``, ``s_dev_acc`` the teacher saw after it).
  """
  done_path = _run_path(workdir, method, seed)
  if os.path.exists(done_path):
    with open(done_path) as f:
      return json.load(f)
  s = config.student
  if method == "l2t_dlf":
    if teacher is None or theta is None:
      raise ValueError("method 'l2t_dlf' needs the frozen teacher and its theta.")
    # As while teaching: cross-entropy for the warm-start steps, then the teacher.
    warm = min(config.teach.pretrain_steps, s.num_steps)
    stages = [(build_baseline(config, "cross_entropy"), None, warm)] if warm else []
    stages.append((teacher, theta, s.num_steps))
  else:
    stages = [(build_baseline(config, method), None, s.num_steps)]
  name = f"{method}/seed_{seed}"
  ckpt = _Checkpoints(os.path.join(workdir, "checkpoints", method, f"seed_{seed}"))
  init_state, history, elapsed = None, [], 0.0
  latest = ckpt.latest_step()
  if latest is not None:
    meta = ckpt.restore_meta(latest)
    template = student.init(jax.random.PRNGKey(seed), _example_batch(data))
    init_state = ckpt.restore_state(latest, template)
    history, elapsed = list(meta["history"]), float(meta["elapsed"])
    logging.info("%s: resuming at step %d", name, latest)
  writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard", method,
                                                   f"seed_{seed}"))
  start = time.time()

  def callback(state: dlf_jax.StudentState, record: dict) -> None:
    record = with_teacher_state(record, state)
    history.append(record)
    step = int(state.step)
    ckpt.save(step, state, {"history": history, "elapsed": elapsed + time.time() - start})
    _write_scalars(writer, record, step)
    if on_checkpoint is not None:
      on_checkpoint(name, step)

  try:
    state = init_state
    for loss, stage_theta, end in stages:
      if state is not None and int(state.step) >= end:
        continue
      state = dlf_jax.train_student(
          student, loss, _arrays(data.train), theta=stage_theta, num_steps=end,
          batch_size=s.batch_size, seed=seed, eval_every=s.eval_every,
          dev=_arrays(data.dev), test=_arrays(data.test),
          eval_batch_size=s.eval_batch_size, init_state=state, callback=callback,
          progress=config.progress, desc=f"{method} seed {seed}",
          mesh=build_mesh(config)).state
    seconds = elapsed + time.time() - start
  finally:
    writer.close()
    ckpt.close()
  result = {"method": method, "seed": seed, "seconds": seconds,
            **reporting.final_numbers(history), "history": history}
  logging.info("%s: test error %.2f%%, dev error %.2f%% (%.1f s)", name,
               result["test_error"], result["dev_error"], seconds)
  reporting.write_json(done_path, result)
  return result


# ------------------------------------------------------------------------- run


def _config_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


class WorkdirConfigError(ValueError):
  """The workdir holds a run of a different config (the message names the keys)."""


class InputError(ValueError):
  """The data or the workdir cannot serve this config (the message names it and the fix)."""


def make_workdir(workdir: str) -> str:
  """Creates ``workdir`` (and its parents); returns its absolute path.

  Raises:
    InputError: it cannot be created or written (under a regular file, read-only, ...).
  """
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    reason = ("a file of that name exists" if isinstance(e, FileExistsError)
              else e.strerror or str(e))
    raise InputError(f"cannot create workdir {workdir}: {reason}; pass a --workdir that can "
                     "be created as a directory and written.") from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise InputError(f"cannot create workdir {workdir}: it is not writable; pass a --workdir "
                     "that can be created as a directory and written.")
  return workdir


SELECTION_SEEDS = (1000, 1001)     # students that select; never among the reported seeds


def carve_validation(data: data_lib.ImageDataset, val_size: int, seed: int):
  """Splits ``val_size`` random training examples off into a validation split.

  The validation split *selects* (the teacher among its candidates; label
  smoothing's eps in :mod:`experiments.ablation`); the dev split rewards the
  teacher; the test split is only read for the final table.

  Args:
    data: the loaded dataset.
    val_size: examples to move from ``data.train`` to the validation split.
    seed: seeds the choice (``config.data.seed``: the same split for every method).

  Returns:
    ``(data with the smaller train split, val Split)``.

  Raises:
    InputError: ``val_size`` not in ``[1, len(train) - 1]``.
  """
  n = len(data.train)
  if not 1 <= val_size < n:
    raise InputError(f"config.data.val_size={val_size} must be in [1, {n - 1}] (the training "
                     f"split has {n} examples).")
  perm = np.random.default_rng([seed, 31337]).permutation(n)
  take = lambda idx: dataclasses.replace(
      data.train, x=data.train.x[idx], y=data.train.y[idx],
      index=None if data.train.index is None else data.train.index[idx])
  val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
  return dataclasses.replace(data, train=take(train_idx)), take(val_idx)


def check_disjoint(splits: dict) -> None:
  """Raises if two splits share examples (byte-identical inputs).

  Args:
    splits: name -> a split with ``.x`` or a dict with ``'x'``.

  Raises:
    InputError: naming the two splits and how many examples they share.
  """
  def rows(split):
    x = np.asarray(split["x"] if isinstance(split, dict) else split.x)
    return {row.tobytes() for row in x.reshape(len(x), -1)}
  hashes = {k: rows(v) for k, v in splits.items()}
  names = list(splits)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      shared = len(hashes[a] & hashes[b])
      # Real datasets hold a few byte-identical images (MNIST does); more is an overlap.
      if shared > max(5, len(hashes[a]) // 1000):
        raise InputError(f"The {a} and {b} splits share {shared} examples: the validation "
                         "split must be disjoint from dev and test; carve it from the "
                         "training split only.")


def select_teacher(config: ml_collections.ConfigDict, data: data_lib.ImageDataset, val,
                   student: dlf_jax.Student, teacher: dlf_jax.Teacher, candidates: dict,
                   workdir: str) -> dict:
  """Picks the teacher whose fresh students have the lowest validation error.

  One student per candidate and seed of :data:`SELECTION_SEEDS`, trained as an
  ``l2t_dlf`` student (warm start, then the frozen candidate), scored on ``val``
  only (the test split is not read). The result is cached in
  ``selection.json``.

  Args:
    candidates: name -> theta (e.g. the untaught anchor and the taught teacher).

  Returns:
    dict: ``chosen`` (a candidate name), ``val_error`` (name -> mean %, seeds).
  """
  path = os.path.join(workdir, "selection.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  s = config.student
  evaluate = jax.jit(lambda p, m, b: dlf_jax.unroll.evaluate(student, p, m, b))
  val_batches = make_eval_batches({"x": val.x, "y": val.y}, s.eval_batch_size)
  warm = min(config.teach.pretrain_steps, s.num_steps)
  errors = {}
  for name, theta in candidates.items():
    errs = []
    for seed in SELECTION_SEEDS:
      state = None
      stages = ([(build_baseline(config, "cross_entropy"), None, warm)] if warm else []) + [
          (teacher, theta, s.num_steps)]
      for loss, stage_theta, end in stages:
        state = dlf_jax.train_student(
            student, loss, _arrays(data.train), theta=stage_theta, num_steps=end,
            batch_size=s.batch_size, seed=seed, eval_every=s.eval_every,
            dev=_arrays(data.dev), eval_batch_size=s.eval_batch_size, init_state=state,
            progress=config.progress, desc=f"select {name} seed {seed}",
            mesh=build_mesh(config)).state
      acc = float(evaluate(state.params, state.model_state, val_batches)["accuracy"])
      errs.append(100.0 * (1.0 - acc))
    errors[name] = float(np.mean(errs))
    logging.info("select: %s -> validation error %.2f%%", name, errors[name])
  # Errors are multiples of 100 / len(val): compare them rounded, so that a tie goes to the
  # first candidate (the untaught anchor) instead of to float noise.
  out = {"chosen": min(errors, key=lambda k: round(errors[k], 6)), "val_error": errors,
         "seeds": list(SELECTION_SEEDS), "val_size": len(val)}
  reporting.write_json(path, out)
  return out


def check_data(config: ml_collections.ConfigDict, data: data_lib.ImageDataset) -> None:
  """Host-side checks of the loaded splits against the config (once, before any step).

  Raises:
    InputError: a label outside ``[0, num_classes)``, or ``student.batch_size`` larger
      than the training split.
  """
  for name in ("train", "dev", "test"):
    y = np.asarray(getattr(data, name).y)
    if y.size and (y.min() < 0 or y.max() >= data.num_classes):
      bad = int(y.min()) if y.min() < 0 else int(y.max())
      raise InputError(
          f"The {name} split of data.name={config.data.name!r} has label {bad}, outside the "
          f"valid range [0, {data.num_classes - 1}] of its {data.num_classes} classes; fix "
          "the labels of the data files (or the dataset's class count).")
  if config.student.batch_size > len(data.train):
    raise InputError(
        f"config.student.batch_size={config.student.batch_size} is larger than the training "
        f"split ({len(data.train)} examples); set --config.student.batch_size <= "
        f"{len(data.train)} or a larger config.data.train_size.")


def _flatten(tree: dict, prefix: str = "") -> dict:
  """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (config.json keys as ``--config.`` paths)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _check_workdir_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes ``config.json``; if one exists, the experiment-defining keys must match."""
  path = os.path.join(workdir, "config.json")
  current = _config_json(config)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    strip = lambda c: {k: v for k, v in c.items() if k not in _RESUMABLE_KEYS}
    if strip(saved) != strip(current):
      old, new = _flatten(strip(saved)), _flatten(strip(current))
      diff = [f"{k} = {old.get(k, '<absent>')!r} there, {new.get(k, '<absent>')!r} now"
              for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
      raise WorkdirConfigError(
          f"{workdir} holds a run of a different config (differs in: {'; '.join(diff)}); "
          "resume with the same config or use a fresh --workdir.")
  reporting.write_json(path, current)


def run(config: ml_collections.ConfigDict, workdir: str, *,
        on_checkpoint: Optional[CheckpointHook] = None) -> dict:
  """Runs (or resumes) one experiment and writes its report into ``workdir``.

  Steps: validate the config; load the data; learn the teacher (if ``l2t_dlf``
  is among ``config.methods``); train a fresh student per method and seed
  (``config.seed + i``, ``i < config.num_seeds``); write ``results.json``,
  ``results.md``, ``metrics.csv`` and ``plots/``; print the table.

  Args:
    config: an experiment config (``experiments/configs/*.py``).
    workdir: output directory (created); re-running with the same config resumes.
    on_checkpoint: optional ``fn(phase, step)`` called after every checkpoint
      (``phase`` is ``'teach'`` or ``'<method>/seed_<s>'``); an exception from it
      aborts the run as a kill would (tests use this).

  Returns:
    The ``results.json`` content (dict).

  Raises:
    ValueError: an invalid config value (naming the key), or a workdir that
      holds a different experiment (:class:`WorkdirConfigError`, a ValueError
      naming every differing key); data or a workdir this config cannot use
      (:class:`InputError`: labels out of range, a batch larger than the
      training split, a workdir that cannot be created).
    FileNotFoundError: the dataset is not available (the library's message).
  """
  validate_config(config)
  config = resolve_recipe(config)            # config.json records what actually runs
  workdir = make_workdir(workdir)
  t_start = time.time()
  data = load_data(config)
  check_data(config, data)                   # before config.json: a fixed rerun is no conflict
  val = None
  if config.data.val_size:
    data, val = carve_validation(data, config.data.val_size, config.data.seed)
    check_data(config, data)                 # the batch size against the smaller train split
    check_disjoint({"dev": data.dev, "val": val, "test": data.test})
  _check_workdir_config(config, workdir)
  logging.info("data %s from %s: train %d, dev %d, val %d, test %d", data.name, data.source,
               len(data.train), len(data.dev), 0 if val is None else len(val), len(data.test))
  student = build_student(config, data.num_classes)
  teacher = build_teacher(config, data.num_classes)

  taught, selection = None, None
  if "l2t_dlf" in config.methods and config.teach.estimator == "forward":
    try:
      dlf_jax.forward_hypergrad.check_num_params(teacher.init(jax.random.PRNGKey(0)),
                                                 config.teach.forward_max_params)
    except ValueError as e:
      raise InputError(f"config.teach.estimator='forward': {e}") from e
  if "l2t_dlf" in config.methods:
    taught = teach_phase(config, data, student, teacher, workdir,
                         on_checkpoint=on_checkpoint)
    if config.teach.select:
      anchor = teacher.init(jax.random.fold_in(jax.random.PRNGKey(config.seed), 0))
      candidates = {"anchor (untaught)": anchor, "taught": taught["theta"]}
      selection = select_teacher(config, data, val, student, teacher, candidates, workdir)
      taught["theta"] = candidates[selection["chosen"]]
  runs = []
  for method in config.methods:
    for i in range(config.num_seeds):
      runs.append(student_phase(
          config, data, student, method, config.seed + i, workdir, teacher=teacher,
          theta=None if taught is None else taught["theta"], on_checkpoint=on_checkpoint))

  summary = reporting.summarize(runs, config.methods)
  wall = {"teach": None if taught is None else taught["seconds"],
          "methods": {m: summary[m]["seconds"] for m in config.methods}}
  wall["total"] = (wall["teach"] or 0.0) + sum(wall["methods"].values())
  teach_history = [] if taught is None else taught["history"]
  results = {
      "config": _config_json(config),
      "data": {"name": data.name, "source": data.source, "notes": data.notes,
               "num_classes": data.num_classes, "train": len(data.train),
               "dev": len(data.dev), "val": 0 if val is None else len(val),
               "test": len(data.test)},
      "selection": selection,
      "methods": summary,
      "runs": [{k: v for k, v in r.items() if k != "history"} for r in runs],
      "teach": reporting.teach_summary(teach_history),
      "wall_seconds": wall,
      "session_seconds": time.time() - t_start,
      "environment": {"jax": jax.__version__, "backend": jax.default_backend(),
                      "devices": [str(d) for d in jax.devices()]},
  }
  reporting.write_json(os.path.join(workdir, "results.json"), results)
  markdown = reporting.results_markdown(results)
  reporting.write_text(os.path.join(workdir, "results.md"), markdown)
  reporting.write_metrics_csv(os.path.join(workdir, "metrics.csv"),
                              reporting.metric_rows(runs, teach_history, config.seed))
  snapshots = None
  l2t_runs = [r for r in runs if r["method"] == "l2t_dlf"]
  if taught is not None and l2t_runs:
    snapshots = reporting.w_snapshots(teacher, taught["theta"], l2t_runs[0]["history"],
                                      first_step=config.teach.pretrain_steps)
  reporting.write_plots(os.path.join(workdir, "plots"), runs=runs,
                        teach_history=teach_history, snapshots=snapshots,
                        soft_targets=config.teacher.parameterisation == "soft_target")
  print(reporting.results_table(results))
  return results
