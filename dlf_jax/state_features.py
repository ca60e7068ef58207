"""The teacher's state ``s_t``: the student's progress, carried in the unroll (Sec. 3.2).

The state is built from the student's progress: ``progress = t / total_steps``,
running averages of the training cross-entropy and accuracy, and the last
measured dev accuracy. The running averages ride in :class:`RunningStats`
inside the unroll carry (:class:`~dlf_jax.student.StudentState`); the dev
accuracy is written in by the host after each evaluation
(:func:`with_dev_accuracy`). The running averages depend on the student's
parameters, but are recorded as data in the forward pass and treated as
constants in the reverse (as in the authors' demo): every value here is
``stop_gradient``-ed.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import struct

__all__ = [
    "STATE_FEATURES", "DEFAULT_EMA_DECAY", "RunningStats", "init_running_stats",
    "update_running_stats", "with_dev_accuracy", "state_vector"
]

STATE_FEATURES = ("progress", "train_loss", "train_acc", "dev_acc")
# Decay of the running training loss / accuracy (a Teacher's ``ema_decay`` default).
DEFAULT_EMA_DECAY = 0.9


@struct.dataclass
class RunningStats:
  """Running training statistics that feed the teacher's state (float32 scalars).

  Attributes:
    train_loss: exponential moving average of the batch cross-entropy (nats).
    train_acc: exponential moving average of the batch accuracy, in [0, 1].
    dev_acc: the last measured dev accuracy, in [0, 1].
  """
  train_loss: jax.Array
  train_acc: jax.Array
  dev_acc: jax.Array


def init_running_stats(num_classes: int) -> RunningStats:
  """Stats of an untrained student: CE = log C, accuracy = 1/C (float32 scalars)."""
  f = lambda v: jnp.asarray(v, jnp.float32)
  return RunningStats(f(math.log(num_classes)), f(1.0 / num_classes), f(1.0 / num_classes))


def update_running_stats(stats: RunningStats, batch_loss: jax.Array, batch_acc: jax.Array,
                         decay: float) -> RunningStats:
  """EMA update ``v <- decay v + (1 - decay) x``; inputs are ``stop_gradient``-ed.

  Args:
    stats: the running statistics at step ``t``.
    batch_loss: float scalar, the batch cross-entropy of step ``t``.
    batch_acc: float scalar, the batch accuracy of step ``t``.
    decay: in ``[0, 1)``.

  Returns:
    :class:`RunningStats` at step ``t + 1`` (``dev_acc`` unchanged).
  """
  sg = lambda x: jax.lax.stop_gradient(x).astype(stats.train_loss.dtype)
  return dataclasses.replace(
      stats,
      train_loss=decay * stats.train_loss + (1 - decay) * sg(batch_loss),
      train_acc=decay * stats.train_acc + (1 - decay) * sg(batch_acc))


def with_dev_accuracy(stats: RunningStats, accuracy) -> RunningStats:
  """``stats`` with ``dev_acc`` set to a measured dev accuracy (host write-back).

  Args:
    stats: the student's running statistics.
    accuracy: float scalar in ``[0, 1]``, cast to ``dev_acc``'s dtype.

  Returns:
    :class:`RunningStats` whose ``dev_acc`` feeds the teacher's ``dev_acc`` feature.
  """
  return dataclasses.replace(stats, dev_acc=jnp.asarray(accuracy, stats.dev_acc.dtype))


def state_vector(features: Sequence[str], step: jax.Array, total_steps: int,
                 stats: RunningStats) -> jax.Array:
  """The teacher's input ``s_t``: float32 ``[len(features)]``.

  Args:
    features: names from :data:`STATE_FEATURES`, in order.
    step: int scalar, the student's step ``t``.
    total_steps: the length of the student's whole training run (normalises
      ``progress = t / total_steps``).
    stats: :class:`RunningStats`.

  Returns:
    float32 ``[len(features)]``, ``stop_gradient``-ed (``[0]`` for no features).

  Raises:
    ValueError: an unknown feature name.
  """
  values = {
      "progress": lambda: jnp.asarray(step, jnp.float32) / float(total_steps),
      "train_loss": lambda: stats.train_loss,
      "train_acc": lambda: stats.train_acc,
      "dev_acc": lambda: stats.dev_acc,
  }
  out = []
  for name in features:
    if name not in values:
      raise ValueError(f"Unknown state feature {name!r}; choose from {STATE_FEATURES}.")
    out.append(jnp.asarray(values[name](), jnp.float32))
  return jax.lax.stop_gradient(jnp.stack(out)) if out else jnp.zeros((0,), jnp.float32)
