"""Smoothed dev measures M~ (Sec. 4): the teacher's differentiable reward.

For a measure ``M(y', y)`` the smoothed measure is
``M~(f_w(x), y) = sum_{y'} M(y', y) p_w(y'|x)``. With 0-1 accuracy this is the
expected accuracy ``p_w(y|x)`` (:class:`ExpectedAccuracy`). The authors' demo
minimises a sigmoid-smoothed error instead (:class:`SigmoidSmoothedError`). The
dev cross-entropy (:class:`CrossEntropy`, minimised; ours, not the paper's) is a
proper scoring rule: unlike expected accuracy, which is largest for a student
that puts all its mass on one class and so rewards over-confidence, it rewards
calibrated probabilities, and it keeps a gradient on every example.

A :class:`Measure` is evaluated batch by batch: ``batch_sums`` returns the sum
of per-example values and the number of (unmasked) examples, so a dev set in
padded batches gives an exact mean. Sequence measures (expected sentence BLEU
over a candidate set, with the BLEU values as constant weights and the
probabilities renormalised over the candidates) implement the same
``batch_sums`` contract, reading the candidates and their BLEU from the batch.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import struct

from dlf_jax import losses

__all__ = [
    "expected_accuracy", "sigmoid_smoothed_error", "accuracy", "Measure", "ExpectedAccuracy",
    "SigmoidSmoothedError", "CrossEntropy"
]


def _p_target(logits, labels):
  p = jax.nn.softmax(logits, axis=-1)
  return p, jnp.take_along_axis(p, labels[..., None], axis=-1)[..., 0]


def expected_accuracy(logits: jax.Array,
                      labels: jax.Array,
                      mask: Optional[jax.Array] = None) -> jax.Array:
  """Masked mean of ``p_w(y|x)``: logits float ``[..., C]``, labels int ``[...]``.

  References: Wu et al. 2018, Sec. 4 (smoothed 0-1 accuracy).
  """
  losses.check_labels(logits, labels, mask)
  return losses.masked_mean(_p_target(logits, labels)[1], mask)


def sigmoid_smoothed_error(logits: jax.Array,
                           labels: jax.Array,
                           k: float = 50.0,
                           mask: Optional[jax.Array] = None) -> jax.Array:
  """Masked mean of ``2 sigmoid(k (max_i p_i - p_y)) - 1`` in [0, 1) (the demo's error).

  Args:
    logits: float ``[..., C]``; labels: int ``[...]``; mask: optional ``[...]``.
    k: steepness > 0.

  Raises:
    ValueError: ``k <= 0``.
  """
  if k <= 0:
    raise ValueError(f"steepness k must be > 0, got {k}.")
  losses.check_labels(logits, labels, mask)
  p, p_y = _p_target(logits, labels)
  return losses.masked_mean(2.0 * jax.nn.sigmoid(k * (jnp.max(p, -1) - p_y)) - 1.0, mask)


def accuracy(logits: jax.Array, labels: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
  """Masked 0-1 accuracy (not differentiable); logits ``[..., C]``, labels ``[...]``."""
  losses.check_labels(logits, labels, mask)
  return losses.masked_mean((jnp.argmax(logits, -1) == labels).astype(logits.dtype), mask)


class Measure:
  """A dev measure evaluated in batches.

  Attributes:
    maximize: True if larger is better (the teacher ascends it).
  """
  maximize: bool = True

  def prepare(self, student, state, dev_batches: dict, rng) -> dict:
    """Host-side hook before each outer step: returns the dev batches to score.

    Called by :func:`dlf_jax.teach` with the student's carry at the start of
    the unrolled segment; measures that need data drawn from the student (e.g.
    sampled candidate translations) add it here. Default: unchanged.
    """
    del student, state, rng
    return dev_batches

  def batch_sums(self, student, params, model_state, batch) -> tuple[jax.Array, jax.Array]:
    """``(sum of per-example values, number of examples)`` on one batch (eval mode)."""
    raise NotImplementedError


@struct.dataclass
class _ClassificationMeasure(Measure):

  def per_example(self, logits, labels):
    raise NotImplementedError

  def batch_sums(self, student, params, model_state, batch):
    outputs = student.apply(params, model_state, batch, train=False)[0]
    labels = student.labels(batch)
    mask = student.mask(batch)
    losses.check_labels(outputs.logits, labels, mask)
    values = self.per_example(outputs.logits, labels)
    if mask is None:
      return jnp.sum(values), jnp.asarray(values.size, values.dtype)
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask), jnp.sum(mask)


@struct.dataclass
class ExpectedAccuracy(_ClassificationMeasure):
  """``M~ = E[p_w(y|x)]`` (maximised)."""
  maximize: bool = struct.field(pytree_node=False, default=True)

  def per_example(self, logits, labels):
    return _p_target(logits, labels)[1]


@struct.dataclass
class SigmoidSmoothedError(_ClassificationMeasure):
  """``M~ = E[2 sigmoid(k (max p - p_y)) - 1]`` (minimised; the demo's ``k = 50``)."""
  k: float = struct.field(pytree_node=False, default=50.0)
  maximize: bool = struct.field(pytree_node=False, default=False)

  def __post_init__(self):
    if self.k <= 0:
      raise ValueError(f"steepness k must be > 0, got {self.k}.")

  def per_example(self, logits, labels):
    p, p_y = _p_target(logits, labels)
    return 2.0 * jax.nn.sigmoid(self.k * (jnp.max(p, -1) - p_y)) - 1.0


@struct.dataclass
class CrossEntropy(_ClassificationMeasure):
  """``M~ = E[-log p_w(y|x)]`` in nats (minimised): the dev cross-entropy."""
  maximize: bool = struct.field(pytree_node=False, default=False)

  def per_example(self, logits, labels):
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
