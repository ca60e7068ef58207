"""Library objects from a config: the student, its schedule, the teacher, the measures.

Each ``build_*`` reads one section of an experiment config (the keys of
:mod:`experiments.schema`) and returns the :mod:`dlf_jax` object it describes.
``teacher.recipe='paper'`` is applied by :func:`resolve_recipe`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import dlf_jax
from dlf_jax import data as data_lib
from dlf_jax import models
from experiments import corrections, schema

__all__ = [
    "PAPER_RECIPE", "resolve_recipe", "build_student", "build_schedule", "build_mesh",
    "build_teacher", "build_measure", "build_teacher_optimizer", "build_baseline",
    "build_estimator", "build_teach_schedule", "build_teach_args"
]

# What ``teacher.recipe='paper'`` sets: Eqn. (2) as the paper writes it.
PAPER_RECIPE = {
    "teacher.parameterisation": "full",
    "teacher.link": "sigmoid",
    "teacher.anchor": "cross_entropy",
    "teach.measure": "expected_accuracy"
}


def resolve_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` itself for ``teacher.recipe='config'``; with :data:`PAPER_RECIPE` for ``'paper'``.

  For ``'paper'`` it is a copy with the recipe applied (the keys it sets are
  overridden, whatever they say).
  """
  if config.teacher.get("recipe", "config") != "paper":
    return config
  resolved = ml_collections.ConfigDict(config.to_dict())
  for key, value in PAPER_RECIPE.items():
    section, name = key.split(".")
    resolved[section][name] = value
  return resolved


def build_student(config: ml_collections.ConfigDict, num_classes: int) -> dlf_jax.Student:
  """The image classifier of ``config.model`` / ``config.student``."""
  m, s = config.model, config.student
  if m.name == "mlp":
    model = models.MLP(hidden=tuple(m.hidden), num_classes=num_classes)
  elif m.name == "lenet":
    model = models.LeNet(num_classes=num_classes)
  elif m.name == "convbn":
    model = models.ConvBN(num_classes=num_classes, width=m.width, conv_impl=m.conv_impl)
  elif m.name == "resnet":
    model = models.ResNet(
        depth=m.depth, num_classes=num_classes, width=m.width, conv_impl=m.conv_impl)
  elif m.name == "wrn":
    model = models.WideResNet(
        depth=m.depth, widen=m.widen, num_classes=num_classes, conv_impl=m.conv_impl)
  else:
    schema.fail("model.name", m.name, f"one of {schema.MODELS}")
  tx = dlf_jax.make_optimizer(
      s.optimizer, build_schedule(config), momentum=s.momentum, weight_decay=s.weight_decay)
  return dlf_jax.Student(
      model=model,
      tx=tx,
      num_classes=num_classes,
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
  """A data-parallel mesh over all devices if ``config.data_parallel`` and >1 device, else None.

  Raises:
    ValueError: a batch size that is not a multiple of the device count.
  """
  if not config.data_parallel or jax.device_count() == 1:
    return None
  n = jax.device_count()
  for key in ("student.batch_size", "student.eval_batch_size", "teach.dev_batch_size"):
    if schema.get(config, key) % n:
      schema.fail(
          key, schema.get(config, key), f"a multiple of the {n} devices for data "
          "parallelism (or set data_parallel=False)")
  return dlf_jax.parallel.make_mesh()


def build_teacher(config: ml_collections.ConfigDict,
                  num_classes: int,
                  anchor_transition=None) -> dlf_jax.Teacher:
  """``mu_theta`` of ``config.teacher``; ``total_steps = config.student.num_steps``.

  Args:
    config: the experiment config.
    num_classes: ``C``.
    anchor_transition: float ``[C, C]`` row-stochastic, the ``T`` a ``forward_correction``
      teacher starts at; required by ``teacher.anchor='glc'`` (GLC's estimate from the
      cross-entropy student of ``config.seed``:
      :meth:`experiments.correction_phases.DataBaselines.teacher_anchor`), refused otherwise.

  Raises:
    ValueError: ``teacher.anchor='glc'`` without ``anchor_transition``, or
      ``anchor_transition`` with another anchor.
  """
  t = resolve_recipe(config).teacher
  anchor = t.anchor
  if anchor == "glc":
    if anchor_transition is None:
      raise ValueError("config.teacher.anchor='glc' starts the teacher at GLC's estimate of "
                       "T: pass build_teacher(..., anchor_transition=T_hat) (the image runner "
                       "computes it: experiments.correction_phases.DataBaselines."
                       "teacher_anchor).")
    anchor = "cross_entropy"  # the form starts at anchor_transition instead
    anchor_transition = tuple(map(tuple, np.asarray(anchor_transition, np.float64).tolist()))
  elif anchor_transition is not None:
    raise ValueError(f"anchor_transition is for config.teacher.anchor='glc' (got "
                     f"anchor={anchor!r}).")
  family = dict(
      link=t.link,
      anchor=anchor,
      anchor_smoothing=t.anchor_smoothing,
      target=t.target,
      anchor_transition=anchor_transition)
  if t.kind == "attention":
    module = dlf_jax.AttentionTeacher(
        num_classes=num_classes,
        num_matrices=t.num_matrices,
        parameterisation=t.parameterisation,
        rank=t.rank,
        per_class_bias=t.per_class_bias,
        init_scale=t.init_scale,
        **family)
  elif t.kind == "mlp":
    module = dlf_jax.MLPTeacher(
        num_classes=num_classes,
        parameterisation=t.parameterisation,
        rank=t.rank,
        per_class_bias=t.per_class_bias,
        hidden=t.hidden,
        init_scale=t.init_scale,
        **family)
  else:
    schema.fail("teacher.kind", t.kind, f"one of {schema.TEACHERS}")
  return dlf_jax.Teacher(
      module=module,
      features=tuple(t.features),
      total_steps=config.student.num_steps,
      ema_decay=t.ema_decay)


def build_measure(config: ml_collections.ConfigDict) -> dlf_jax.measures.Measure:
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


def build_baseline(config: ml_collections.ConfigDict, method: str) -> dlf_jax.losses.FixedLoss:
  """The fixed loss of a baseline ``method`` (a key of :data:`dlf_jax.losses.BASELINES`).

  Built with ``config.baselines``' constants (each baseline takes its own).

  Raises:
    ValueError: a baseline built from the data
      (:data:`experiments.corrections.DATA_BASELINES`: see
      :func:`experiments.corrections.build_data_baseline`), or an unknown name.
  """
  if method in corrections.DATA_BASELINES:
    raise ValueError(f"method {method!r} is built from the data: use "
                     "experiments.corrections.build_data_baseline(config, data, method, "
                     "context) and pass its loss to the student phases.")
  b = config.baselines
  return dlf_jax.baseline_loss(
      method,
      smoothing=b.smoothing,
      margin=b.margin,
      beta=b.beta,
      beta_min=b.beta_min,
      beta_gamma=b.beta_gamma,
      beta_power=b.beta_power)


def build_estimator(config: ml_collections.ConfigDict,
                    student: dlf_jax.Student) -> dlf_jax.HypergradEstimator:
  """The hypergradient estimator of ``config.teach.estimator`` (its ``name`` and section).

  A ``reward`` named in the section (``'dev_accuracy'``) becomes
  :func:`dlf_jax.evolution.dev_accuracy_reward` of ``student``.

  Raises:
    ConfigError: an unknown name or setting (:func:`experiments.schema.estimator_settings`).
  """
  name, settings = schema.estimator_settings(config)
  if settings.get("reward") == "dev_accuracy":
    settings["reward"] = dlf_jax.evolution.dev_accuracy_reward(student)
  elif settings.get("reward") is not None:
    schema.fail(f"teach.estimator.{name}.reward", settings["reward"],
                f"None or one of {schema.REWARDS}")
  return dlf_jax.estimators.get(name, **settings)


def build_teach_schedule(config: ml_collections.ConfigDict) -> dlf_jax.Schedule:
  """The :class:`dlf_jax.Schedule` of ``config.teach``.

  The segments are resolved by the schedule against the teacher's
  ``total_steps = student.num_steps`` when None.
  """
  t = config.teach
  return dlf_jax.Schedule(
      mode=t.mode,
      unroll_steps=t.unroll_steps,
      num_episodes=t.num_episodes,
      segments_per_episode=t.segments_per_episode,
      pretrain_steps=t.pretrain_steps,
      batch_size=config.student.batch_size)


def build_teach_args(config: ml_collections.ConfigDict, student: dlf_jax.Student) -> dict:
  """The keyword arguments of :func:`dlf_jax.teach` that ``config`` decides.

  The teacher optimizer, the schedule, the estimator, dev sampling, seed, progress bar and the
  data-parallel mesh (:func:`build_mesh`). The one wiring of every runner that teaches
  (the experiment phases and the ablation); callers add the measure, ``init_state`` and
  ``callback``.
  """
  t = config.teach
  return dict(
      teacher_optimizer=build_teacher_optimizer(config),
      schedule=build_teach_schedule(config),
      estimator=build_estimator(config, student),
      dev_sampling=dlf_jax.DevSampling(batch_size=t.dev_batch_size, sample_size=t.dev_sample_size),
      seed=config.seed,
      progress=config.progress,
      mesh=build_mesh(config))
