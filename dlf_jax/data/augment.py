"""On-device image augmentation for the unroll (pure, jit-able, deterministic given a key).

The student applies its ``augment`` to every training batch inside the jitted
step, keyed by ``fold_in(fold_in(state.rng, step), 1)``, so augmentation is part of the
compiled unroll (no host input pipeline to wait for), is reproducible from the
seed, and is resumed exactly from a checkpoint. It is data: the hypergradient
does not differentiate through it.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

__all__ = ["AUGMENTATIONS", "random_crop_flip", "make_augment"]

AUGMENTATIONS = ("none", "crop_flip")


def random_crop_flip(rng: jax.Array,
                     x: jax.Array,
                     *,
                     padding: int = 4,
                     flip: bool = True) -> jax.Array:
  """Pad by ``padding`` pixels, take a random ``H x W`` crop, flip left-right w.p. 1/2.

  The standard CIFAR augmentation (He et al., 2016). Padding is with zeros of
  the *normalised* images (i.e. the per-channel mean colour).

  Args:
    rng: PRNG key.
    x: float ``[B, H, W, C]`` (normalised images).
    padding: pixels of padding on each side (4 for CIFAR).
    flip: also flip horizontally with probability 1/2.

  Returns:
    float ``[B, H, W, C]``; a pure function of ``(rng, x)``.

  Raises:
    ValueError: ``x`` is not 4-D or ``padding < 0``.
  """
  if x.ndim != 4:
    raise ValueError(f"random_crop_flip expects [B, H, W, C] images, got shape {x.shape}.")
  if padding < 0:
    raise ValueError(f"padding must be >= 0, got {padding}.")
  b, h, w, c = x.shape
  k_y, k_x, k_f = jax.random.split(rng, 3)
  if padding:
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    oy = jax.random.randint(k_y, (b,), 0, 2 * padding + 1)
    ox = jax.random.randint(k_x, (b,), 0, 2 * padding + 1)
    x = jax.vmap(lambda img, i, j: jax.lax.dynamic_slice(img, (i, j, 0), (h, w, c)))(xp, oy, ox)
  if flip:
    mirror = jax.random.bernoulli(k_f, 0.5, (b,))
    x = jnp.where(mirror[:, None, None, None], x[:, :, ::-1, :], x)
  return x


def make_augment(kind: str,
                 *,
                 key: str = "x",
                 padding: int = 4) -> Optional[Callable[[jax.Array, dict], dict]]:
  """``(rng, batch) -> batch`` for :class:`~dlf_jax.student.Student` ``augment``.

  Args:
    kind: ``none`` (returns None) or ``crop_flip`` (:func:`random_crop_flip`).
    key: the batch entry holding the images.
    padding: pixels of zero padding before the random crop (4 for CIFAR).

  Raises:
    ValueError: unknown ``kind``.
  """
  if kind not in AUGMENTATIONS:
    raise ValueError(f"Unknown augmentation {kind!r}; choose one of {AUGMENTATIONS}.")
  if kind == "none":
    return None

  def augment(rng, batch):
    return dict(batch, **{key: random_crop_flip(rng, batch[key], padding=padding)})

  return augment
