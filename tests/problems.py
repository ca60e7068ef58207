"""Tiny teaching problems shared by the test modules (not a test module).

* :func:`make_problem`: a float64 MLP or BatchNorm conv-net student on ``C`` classes,
  a teacher of any W form, ``T`` training batches and a padded dev set (the
  hypergradient, estimator, evolution, forward-mode and loss-family tests);
* :func:`resnet_problem`: a ResNet-8 / ConvBN student with momentum, weight decay,
  a step schedule and augmentation (the model and data-parallel tests);
* :func:`count_eqns`: the size of a jaxpr, sub-jaxprs included.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import dlf_jax
from dlf_jax import models
from dlf_jax import student as student_lib
from dlf_jax import teacher as teacher_lib
from dlf_jax.data import augment as augment_lib

C, T, B, B_DEV = 5, 5, 8, 6
LEARNING_RATES = {"sgd": 0.3, "momentum": 0.1, "nesterov": 0.1, "adam": 0.02}


@dataclasses.dataclass
class Problem:
  student: student_lib.Student
  teacher: teacher_lib.Teacher
  theta: dict
  state: student_lib.StudentState
  batches: dict
  dev: dict


def make_model(kind, dtype=jnp.float64):
  if kind == "mlp":
    return models.MLP(hidden=(12,), num_classes=C, activation=jnp.tanh, dtype=dtype)
  return models.ConvBN(num_classes=C, width=4, activation=jnp.tanh, dtype=dtype)


def make_teacher_module(kind, parameterisation, num_classes=C):
  if kind == "attention":
    return teacher_lib.AttentionTeacher(
        num_classes, num_matrices=3, parameterisation=parameterisation, rank=2, init_scale=0.1)
  return teacher_lib.MLPTeacher(
      num_classes, parameterisation=parameterisation, rank=2, hidden=6, init_scale=0.1)


def make_problem(model="mlp",
                 opt="sgd",
                 parameterisation="full",
                 *,
                 teacher="attention",
                 features=teacher_lib.STATE_FEATURES,
                 num_steps=T,
                 tx=None,
                 seed=0,
                 dtype=jnp.float64):
  """A tiny student/teacher pair with ``num_steps`` training batches and a padded dev set."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_steps, B, 6, 6, 1))
  y = rng.integers(0, C, size=(num_steps, B))
  dev_mask = np.ones((2, B_DEV))
  dev_mask[1, -2:] = 0.0  # two padded dev examples
  dev = {
      "x": jnp.asarray(rng.normal(size=(2, B_DEV, 6, 6, 1)), dtype),
      "y": jnp.asarray(rng.integers(0, C, size=(2, B_DEV))),
      "mask": jnp.asarray(dev_mask, dtype)
  }
  batches = {"x": jnp.asarray(x, dtype), "y": jnp.asarray(y)}
  tx = student_lib.make_optimizer(opt, LEARNING_RATES[opt]) if tx is None else tx
  student = student_lib.Student(make_model(model, dtype), tx, C)
  teacher_ = teacher_lib.Teacher(
      make_teacher_module(teacher, parameterisation), features=features, total_steps=20)
  theta = jax.tree.map(lambda a: a.astype(dtype), teacher_.init(jax.random.PRNGKey(seed + 1)))
  state = student.init(jax.random.PRNGKey(seed), {"x": batches["x"][0], "y": batches["y"][0]})
  state = state.replace(stats=jax.tree.map(lambda a: a.astype(dtype), state.stats))
  return Problem(student, teacher_, theta, state, batches, dev)


def count_eqns(jaxpr):
  """Equations of a jaxpr and of every sub-jaxpr (scan bodies, pjit, custom_jvp, ...)."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  n = 0
  for eqn in jaxpr.eqns:
    n += 1
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (list, tuple)) else (param,)):
        if hasattr(sub, "eqns"):
          n += count_eqns(sub)
  return n


def resnet_problem(num_steps=3, batch=4, weight_decay=1e-4, augment=True, net="resnet8"):
  """A float64 BatchNorm student (``net``: ResNet-8 or the smaller ``convbn``), momentum
  with weight decay and a step schedule, crop/flip augmentation, and a 2-loss teacher."""
  model = (
      models.ResNet(8, 10, width=4, dtype=jnp.float64) if net == "resnet8" else models.ConvBN(
          num_classes=10, width=4, dtype=jnp.float64))
  tx = dlf_jax.make_optimizer(
      "momentum", lambda t: 0.1 * jnp.where(t >= 2, 0.1, 1.0), weight_decay=weight_decay)
  student = dlf_jax.Student(
      model, tx, 10, augment=augment_lib.make_augment("crop_flip", padding=1) if augment else None)
  teacher = teacher_lib.Teacher(teacher_lib.AttentionTeacher(10, num_matrices=2), total_steps=10)
  theta = jax.tree.map(lambda a: a.astype(jnp.float64), teacher.init(jax.random.PRNGKey(1)))
  rng = np.random.default_rng(0)
  batches = {
      "x": jnp.asarray(rng.normal(size=(num_steps, batch, 8, 8, 3))),
      "y": jnp.asarray(rng.integers(0, 10, (num_steps, batch)))
  }
  dev = {
      "x": jnp.asarray(rng.normal(size=(1, 6, 8, 8, 3))),
      "y": jnp.asarray(rng.integers(0, 10, (1, 6)))
  }
  state = student.init(jax.random.PRNGKey(0), {"x": batches["x"][0], "y": batches["y"][0]})
  state = state.replace(stats=jax.tree.map(lambda a: a.astype(jnp.float64), state.stats))
  return student, teacher, theta, state, batches, dev
