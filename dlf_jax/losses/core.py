"""What every loss shares: label and mask checks, the masked mean, the links.

Every loss takes an optional ``mask`` (``1`` for real examples / tokens, ``0``
for padding) and returns the masked mean over all leading axes.
"""
from __future__ import annotations

from typing import Callable, Optional, cast, get_args

import jax
import jax.numpy as jnp
import numpy as np

from dlf_jax import checks
from dlf_jax.contracts import Link

__all__ = [
    "LINKS", "LINK_FUNCTIONS", "check_link", "apply_link", "check_labels", "masked_mean",
    "check_eps", "label_log_prob"
]

# What wraps the (negated) score of Eqn. (2): the paper's sigmoid or the identity. A new
# link is one entry here (and its name in ``contracts.Link``).
LINK_FUNCTIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda value: value,
}
# The keys are the Link names; the check below makes sure of it.
LINKS: tuple[Link, ...] = cast("tuple[Link, ...]", tuple(LINK_FUNCTIONS))
if LINKS != get_args(Link):
  raise ImportError(f"dlf_jax.losses.LINK_FUNCTIONS {LINKS} and contracts.Link "
                    f"{get_args(Link)} must name the same links.")


def check_link(link: str) -> None:
  """Raises ``ValueError`` naming the choices if ``link`` is not in :data:`LINKS`."""
  if link not in LINK_FUNCTIONS:
    raise ValueError(f"Unknown link {link!r}; choose one of {LINKS} ('sigmoid' is the "
                     "paper's Eqn. 2, 'identity' makes W = I exactly cross-entropy).")


def apply_link(link: str, value: jax.Array) -> jax.Array:
  """``link(value)``, elementwise; ``link`` one of :data:`LINKS`.

  Raises:
    ValueError: unknown link.
  """
  check_link(link)
  return LINK_FUNCTIONS[link](value)


def check_eps(eps, name: str = "eps") -> None:
  """Raises if a concrete ``eps`` has an entry outside ``[0, 1)`` (traced values pass)."""
  try:
    values = np.asarray(eps, np.float64)
  except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return
  if values.size and not ((values >= 0) & (values < 1)).all():
    bad = values[~((values >= 0) & (values < 1))].ravel()[0]
    raise ValueError(f"{name} must be in [0, 1) (0 = cross-entropy, 1 would drop the "
                     f"label); got {bad}.")


def check_labels(logits: jax.Array, labels: jax.Array, mask: Optional[jax.Array] = None) -> None:
  """Checks ``logits [..., C]`` against ``labels [...]`` and ``mask [...]``.

  Shapes and dtypes are checked at trace time. The label *values* are checked
  (on the host, :func:`dlf_jax.checks.check_label_values`) only when they are
  concrete, i.e. when a loss or measure is called outside ``jit``; inside a
  jitted unroll they are traced and cannot be read: :func:`dlf_jax.teach`,
  :func:`dlf_jax.train_student` and :func:`dlf_jax.hypergradient` check them
  before tracing.

  Raises:
    ValueError: shape mismatch, naming both shapes; a concrete label outside
      ``[0, C)`` (an unmasked one), naming the value.
    TypeError: non-integer labels.
  """
  if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
    raise ValueError(f"labels must have the shape of logits without the class axis: logits "
                     f"{tuple(logits.shape)} expects labels {tuple(logits.shape[:-1])}, got "
                     f"{tuple(labels.shape)}. Pass integer class ids, not one-hot vectors.")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"labels must be integer class ids, got dtype {labels.dtype}.")
  if mask is not None and mask.shape != labels.shape:
    raise ValueError(
        f"mask shape {tuple(mask.shape)} must equal labels shape {tuple(labels.shape)}.")
  checks.check_label_values(
      labels,
      logits.shape[-1],
      "labels",
      mask,
      fix="labels must be class ids of the logits' class axis")


def masked_mean(values: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
  """Mean of ``values [...]`` over entries with ``mask == 1`` (all if ``mask`` is None).

  An all-zero mask gives 0 (not NaN).
  """
  if mask is None:
    return jnp.mean(values)
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1)


def label_log_prob(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
  """``log p_y``: float ``[...]`` from ``log_probs [..., C]`` and int ``labels [...]``."""
  return jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
