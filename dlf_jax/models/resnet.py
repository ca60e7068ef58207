"""CIFAR ResNets (He et al., 2016) and Wide ResNets (Zagoruyko & Komodakis, 2016).

Both return ``(logits [B, C], features [B, D])`` and keep BatchNorm statistics
in the ``batch_stats`` collection (the unroll carries them as data). Under
``jax.sharding`` data parallelism the BatchNorm mean/variance are reductions
over the sharded batch axis, i.e. the global batch's statistics (computed by
XLA with a cross-device all-reduce); no ``axis_name`` is needed.

Convolutions are :class:`~dlf_jax.models.layers.Conv` (``conv_impl='auto'``:
im2col on CPU, where XLA's convolution is slow inside ``lax.scan``).
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from dlf_jax.models.layers import Conv

__all__ = ["ResNet", "WideResNet", "resnet_depth_blocks"]

_he_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _layers(module, train: bool):
  """``(conv, norm)`` constructors shared by both families (He init, no conv bias, BN)."""
  kw = dict(dtype=module.dtype, param_dtype=module.dtype)
  conv = partial(Conv, use_bias=False, impl=module.conv_impl, kernel_init=_he_init, **kw)
  norm = partial(
      nn.BatchNorm, use_running_average=not train, momentum=module.bn_momentum, epsilon=1e-5, **kw)
  return conv, norm


def resnet_depth_blocks(depth: int) -> int:
  """Blocks per stage ``n`` of a CIFAR ResNet of ``depth = 6n + 2`` (8, 20, 32, 44, 56, 110).

  Raises:
    ValueError: ``depth`` is not ``6n + 2`` with ``n >= 1``.
  """
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(f"A CIFAR ResNet has depth 6n+2 (8, 20, 32, 44, 56, 110); got {depth}.")
  return (depth - 2) // 6


class _BasicBlock(nn.Module):
  """Post-activation basic block: conv-BN-ReLU-conv-BN (+ shortcut) - ReLU."""
  features: int
  strides: int
  shortcut: str
  norm: Callable
  conv: Callable
  activation: Callable

  @nn.compact
  def __call__(self, x):
    h = self.activation(self.norm()(self.conv(self.features, (3, 3), self.strides)(x)))
    h = self.norm()(self.conv(self.features, (3, 3), 1)(h))
    if x.shape != h.shape:
      if self.shortcut == "A":  # parameter-free: subsample + zero-pad channels
        x = x[:, ::self.strides, ::self.strides, :]
        pad = self.features - x.shape[-1]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (pad // 2, pad - pad // 2)))
      else:  # 1x1 projection + BN
        x = self.norm()(self.conv(self.features, (1, 1), self.strides, name="proj")(x))
    return self.activation(h + x)


class ResNet(nn.Module):
  """CIFAR ResNet-``depth``: conv3x3(16) then 3 stages of ``n`` blocks (16/32/64 channels).

  ResNet-8/20/32 have n = 1/3/5; ResNet-20 has 0.27M and ResNet-32 0.46M
  parameters with the paper's option-A (parameter-free) shortcuts.

  Attributes:
    depth: ``6n + 2``.
    num_classes: ``C``.
    width: channels of the first stage (16 in the paper).
    shortcut: ``A`` (zero-pad identity, the paper's CIFAR choice) or ``B``
      (1x1 projection where the shape changes).
    conv_impl: see :class:`~dlf_jax.models.layers.Conv`.
    bn_momentum: BatchNorm running-average momentum.

  ``x [B, 32, 32, 3] -> (logits [B, C], features [B, 4 width])``.
  """
  depth: int = 20
  num_classes: int = 10
  width: int = 16
  shortcut: str = "A"
  conv_impl: str = "auto"
  bn_momentum: float = 0.9
  activation: Callable = nn.relu
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False):
    n = resnet_depth_blocks(self.depth)
    if self.shortcut not in ("A", "B"):
      raise ValueError(f"shortcut must be 'A' or 'B', got {self.shortcut!r}.")
    conv, norm = _layers(self, train)
    h = self.activation(norm()(conv(self.width, (3, 3))(x.astype(self.dtype))))
    for stage in range(3):
      for block in range(n):
        strides = 2 if stage > 0 and block == 0 else 1
        h = _BasicBlock(self.width * 2**stage, strides, self.shortcut, norm, conv, self.activation)(
            h)
    h = jnp.mean(h, axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.dtype, name="head")(h)
    return logits, h


class _WideBlock(nn.Module):
  """Pre-activation wide block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 (+ shortcut)."""
  features: int
  strides: int
  norm: Callable
  conv: Callable
  activation: Callable

  @nn.compact
  def __call__(self, x):
    o = self.activation(self.norm()(x))
    h = self.conv(self.features, (3, 3), self.strides)(o)
    h = self.conv(self.features, (3, 3), 1)(self.activation(self.norm()(h)))
    if x.shape != h.shape:
      x = self.conv(self.features, (1, 1), self.strides, name="proj")(o)
    return h + x


class WideResNet(nn.Module):
  """WRN-``depth``-``widen`` (depth = 6n + 4): stages of 16k/32k/64k channels.

  WRN-28-10 has 36.5M parameters, WRN-16-4 2.7M (no dropout).

  Attributes:
    depth: ``6n + 4``.
    widen: the widening factor ``k``.
    num_classes: ``C``.
    conv_impl: see :class:`~dlf_jax.models.layers.Conv`.
    bn_momentum: BatchNorm running-average momentum.

  ``x [B, 32, 32, 3] -> (logits [B, C], features [B, 64 widen])``.
  """
  depth: int = 28
  widen: int = 10
  num_classes: int = 10
  conv_impl: str = "auto"
  bn_momentum: float = 0.9
  activation: Callable = nn.relu
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False):
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f"A Wide ResNet has depth 6n+4 (10, 16, 22, 28, 40); got {self.depth}.")
    n = (self.depth - 4) // 6
    conv, norm = _layers(self, train)
    h = conv(16, (3, 3))(x.astype(self.dtype))
    for stage in range(3):
      for block in range(n):
        strides = 2 if stage > 0 and block == 0 else 1
        h = _WideBlock(16 * self.widen * 2**stage, strides, norm, conv, self.activation)(h)
    h = jnp.mean(self.activation(norm()(h)), axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.dtype, name="head")(h)
    return logits, h
