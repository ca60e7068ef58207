"""Layers for students that run inside the unroll's ``lax.scan``.

:class:`Conv` is a drop-in for ``flax.linen.Conv`` (same parameter names,
shapes and initialisers) with a choice of implementation. On CPU, XLA's
``conv_general_dilated`` inside a while loop (which is what ``lax.scan``
compiles to) falls off its fast path: a LeNet SGD step measured 44 ms/step
inside the scan vs 7 ms as a standalone jitted step (jax 0.10, 2 cores; see
https://github.com/jax-ml/jax/issues/12868). Writing the convolution as
patches (shifted slices) times a matrix keeps every op a ``dot_general``,
which stays fast inside the loop (3 ms/step). ``impl='auto'`` picks
``im2col`` on CPU and XLA's convolution elsewhere.

:func:`max_pool` likewise uses strided slices and ``max`` instead of
``reduce_window`` (whose gradient, ``select_and_scatter``, is slow in loops).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["Conv", "CONV_IMPLS", "conv_im2col", "max_pool", "resolve_conv_impl"]

CONV_IMPLS = ("auto", "im2col", "xla")


def resolve_conv_impl(impl: str) -> str:
  """``auto`` -> ``im2col`` on the CPU backend, else ``xla``.

  Raises:
    ValueError: unknown ``impl``.
  """
  if impl not in CONV_IMPLS:
    raise ValueError(f"Unknown convolution implementation {impl!r}; choose one of {CONV_IMPLS}.")
  if impl == "auto":
    return "im2col" if jax.default_backend() == "cpu" else "xla"
  return impl


def _padding(padding, kernel_size, strides, spatial):
  """Explicit ``[(lo, hi)] * 2`` padding, as XLA's ``SAME`` / ``VALID`` define it."""
  if isinstance(padding, str):
    if padding == "VALID":
      return [(0, 0)] * len(kernel_size)
    if padding != "SAME":
      raise ValueError(f"padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}.")
    out = []
    for n, k, s in zip(spatial, kernel_size, strides):
      total = max((-(-n // s) - 1) * s + k - n, 0)
      out.append((total // 2, total - total // 2))
    return out
  return [(int(lo), int(hi)) for lo, hi in padding]


def conv_im2col(x: jax.Array,
                kernel: jax.Array,
                strides: Sequence[int] = (1, 1),
                padding: Union[str, Sequence[tuple[int, int]]] = "SAME") -> jax.Array:
  """2-D convolution (cross-correlation, NHWC / HWIO) as patches @ kernel.

  Args:
    x: float ``[B, H, W, C_in]``.
    kernel: float ``[kh, kw, C_in, C_out]``.
    strides: ``(sh, sw)``.
    padding: ``'SAME'`` | ``'VALID'`` | ``[(lo, hi), (lo, hi)]``.

  Returns:
    ``[B, H', W', C_out]``, equal to ``lax.conv_general_dilated`` with the
    same arguments (up to float summation order).
  """
  kh, kw, cin, cout = kernel.shape
  if x.shape[-1] != cin:
    raise ValueError(f"Input has {x.shape[-1]} channels but the kernel expects {cin}.")
  sh, sw = strides
  (pt, pb), (pl, pr) = _padding(padding, (kh, kw), (sh, sw), x.shape[1:3])
  x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  if kh == kw == 1:
    cols = x[:, :(ho - 1) * sh + 1:sh, :(wo - 1) * sw + 1:sw, :]
  else:
    cols = jnp.concatenate([
        x[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :]
        for i in range(kh)
        for j in range(kw)
    ],
                           axis=-1)
  return jnp.einsum("bhwk,ko->bhwo", cols, kernel.reshape(kh * kw * cin, cout))


class Conv(nn.Module):
  """``flax.linen.Conv`` (2-D, NHWC) with a selectable implementation.

  Parameters ``kernel [kh, kw, C_in, C_out]`` and ``bias [C_out]`` have the
  same names, shapes and default initialisers as ``nn.Conv``, so checkpoints
  and parameter counts are interchangeable. Unlike ``nn.Conv`` (which infers
  it), the computation dtype defaults to float32; set ``dtype`` explicitly.

  Attributes:
    features: ``C_out``.
    kernel_size: ``(kh, kw)``.
    strides: int or ``(sh, sw)``.
    padding: ``'SAME'`` | ``'VALID'`` | explicit pairs.
    use_bias: add a bias.
    impl: ``auto`` | ``im2col`` | ``xla`` (module docstring).
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Union[int, Sequence[int]] = 1
  padding: Any = "SAME"
  use_bias: bool = True
  impl: str = "auto"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    impl = resolve_conv_impl(self.impl)
    strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features),
                        self.param_dtype)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if impl == "im2col":
      y = conv_im2col(x, kernel, strides, self.padding)
    else:
      pad = self.padding if isinstance(self.padding, str) else [tuple(p) for p in self.padding]
      y = jax.lax.conv_general_dilated(
          x, kernel, strides, pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", self.bias_init,
                         (self.features,), self.param_dtype).astype(self.dtype)
    return y


def max_pool(x: jax.Array, window: int = 2) -> jax.Array:
  """Non-overlapping ``window x window`` max pooling (stride = window, VALID), NHWC.

  Same values as ``nn.max_pool(x, (w, w), (w, w))``; written with slices and
  ``jnp.maximum`` so that its gradient stays cheap inside ``lax.scan`` on CPU.
  """
  b, h, w, c = x.shape
  ho, wo = h // window, w // window
  x = x[:, :ho * window, :wo * window, :].reshape(b, ho, window, wo, window, c)
  return jnp.max(x, axis=(2, 4))
