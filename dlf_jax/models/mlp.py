"""Multi-layer perceptron student (e.g. MNIST 784-500-300-10)."""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """``x [B, ...] -> (logits [B, C], features [B, D])``; flattens the input.

  Attributes:
    hidden: widths of the hidden layers.
    num_classes: ``C``.
    activation: e.g. ``nn.relu`` (autodiff checks) or ``jnp.tanh`` (smooth,
      for finite differences).
    dtype: parameter/computation dtype.
  """
  hidden: Sequence[int] = (500, 300)
  num_classes: int = 10
  activation: Callable = nn.relu
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False):
    del train
    h = x.reshape((x.shape[0], -1)).astype(self.dtype)
    for i, width in enumerate(self.hidden):
      h = self.activation(
          nn.Dense(width, dtype=self.dtype, param_dtype=self.dtype, name=f"dense{i}")(h))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.dtype, name="head")(h)
    return logits, h
