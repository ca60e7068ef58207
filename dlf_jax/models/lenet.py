"""Convolutional students: LeNet (the authors' demo) and a tiny BatchNorm conv net."""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlf_jax.models.layers import Conv, max_pool


class LeNet(nn.Module):
  """LeNet as in the authors' demo: conv 5x5x20 -> pool -> conv 5x5x50 -> pool -> fc 500.

  ``x [B, H, W, C_in] -> (logits [B, C], features [B, 500])``. ``conv_impl``:
  see :class:`~dlf_jax.models.layers.Conv` (``auto`` = im2col on CPU).
  """
  num_classes: int = 10
  activation: Callable = nn.relu
  dtype: jnp.dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False):
    del train
    kw: dict[str, Any] = dict(dtype=self.dtype, param_dtype=self.dtype)
    conv = lambda n, name: Conv(n, (5, 5), padding="VALID", impl=self.conv_impl, **kw, name=name)
    h = x.astype(self.dtype)
    h = max_pool(self.activation(conv(20, "Conv_0")(h)))
    h = max_pool(self.activation(conv(50, "Conv_1")(h)))
    h = self.activation(nn.Dense(500, **kw, name="fc")(h.reshape((h.shape[0], -1))))
    return nn.Dense(self.num_classes, **kw, name="head")(h), h


class ConvBN(nn.Module):
  """A small conv net with BatchNorm (tests, quick CPU runs).

  conv 3x3 (``width``) -> BN -> act -> conv 3x3 stride 2 -> BN -> act -> mean pool -> head.
  BatchNorm statistics live in the ``batch_stats`` collection.
  """
  num_classes: int = 10
  width: int = 8
  activation: Callable = nn.relu
  dtype: jnp.dtype = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False):
    kw: dict[str, Any] = dict(dtype=self.dtype, param_dtype=self.dtype)
    h = x.astype(self.dtype)
    for i, stride in enumerate((1, 2)):
      h = Conv(
          self.width, (3, 3),
          strides=stride,
          use_bias=False,
          impl=self.conv_impl,
          **kw,
          name=f"conv{i}")(
              h)
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, **kw, name=f"bn{i}")(h)
      h = self.activation(h)
    h = jnp.mean(h, axis=(1, 2))
    return nn.Dense(self.num_classes, **kw, name="head")(h), h
