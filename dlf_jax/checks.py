"""Argument checks shared by the library: each names the argument, the value and the fix.

The checks run on the host, once per call, before any jitted work; values that
are traced (inside ``jax.jit`` / ``vmap`` / ``grad``) cannot be read and are let
through -- whoever calls the jitted function checks its concrete inputs (e.g.
:func:`dlf_jax.teach` and :func:`dlf_jax.train_student` check every split).

This module imports nothing of ``dlf_jax``: every other module may use it.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Literal, Optional, overload

import jax
import numpy as np

__all__ = ["check_int", "check_real", "is_concrete", "check_label_values"]


@overload
def check_int(name: str,
              value: Any,
              minimum: int = 0,
              *,
              allow_none: Literal[False] = False,
              fix: str = "") -> int:
  ...


@overload
def check_int(name: str,
              value: Any,
              minimum: int = 0,
              *,
              allow_none: bool,
              fix: str = "") -> Optional[int]:
  ...


def check_int(name: str,
              value: Any,
              minimum: int = 0,
              *,
              allow_none: bool = False,
              fix: str = "") -> Optional[int]:
  """``value`` as a Python int, after checking that it is an integer ``>= minimum``.

  Integers of any kind (``int``, ``np.int64``, a scalar integer array) pass;
  ``bool``, floats (also ``16.0``) and strings do not, so that a size computed
  as a float (``n / 2``) is caught where it is passed, not deep inside numpy
  ("seed must be integer").

  Args:
    name: the argument's name as the caller spells it (``'batch_size'``,
      ``'Schedule.unroll_steps'``).
    value: the value to check.
    minimum: the smallest allowed value.
    allow_none: let ``None`` through (returned as ``None``).
    fix: an extra hint appended to the message.

  Returns:
    ``int(value)`` (or ``None``).

  Raises:
    ValueError: not an integer (suggests ``int(...)`` for a float), or below
      ``minimum``; the message reads ``{name} must be an integer >= {minimum},
      got {value!r}``.
  """
  if value is None and allow_none:
    return None
  expected = ("None or " if allow_none else "") + f"an integer >= {minimum}"
  hint = f"; {fix}" if fix else ""
  try:
    if isinstance(value, (bool, np.bool_)):
      raise TypeError
    number = operator.index(value)
  except TypeError:
    if (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and
        math.isfinite(value)):
      hint = (f" (a {type(value).__name__}): round it, e.g. {name.split('.')[-1]}="
              f"{int(float(value))}" + hint)
    raise ValueError(f"{name} must be {expected}, got {value!r}{hint}.") from None
  if number < minimum:
    raise ValueError(f"{name} must be {expected}, got {number}{hint}.")
  return number


def check_real(name: str,
               value: Any,
               *,
               low: Optional[float] = None,
               high: Optional[float] = None,
               low_inclusive: bool = True,
               high_inclusive: bool = True,
               fix: str = "") -> float:
  """``value`` as a finite Python float in the given range.

  Args:
    name: the argument's name.
    value: a real number (not a string or a bool).
    low, high: bounds (None: unbounded).
    low_inclusive, high_inclusive: whether the bounds are allowed.
    fix: an extra hint appended to the message.

  Returns:
    ``float(value)``.

  Raises:
    ValueError: not a real number (e.g. the string ``'0.1'``), not finite, or
      outside the range (names the range).
  """
  if isinstance(value, (str, bytes, bool, np.bool_)) or not isinstance(
      value, (numbers.Real, np.ndarray, jax.Array)) or getattr(value, "ndim", 0) != 0:
    raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})" +
                     (f": pass {name}={float(value)}" if _parses(value) else "") +
                     (f"; {fix}" if fix else "") + ".")
  number = float(value)
  lo_ok = low is None or (number >= low if low_inclusive else number > low)
  hi_ok = high is None or (number <= high if high_inclusive else number < high)
  if not (math.isfinite(number) and lo_ok and hi_ok):
    if high is None and low is not None:
      where = (">= " if low_inclusive else "> ") + f"{low:g}"
    elif low is None and high is not None:
      where = ("<= " if high_inclusive else "< ") + f"{high:g}"
    elif low is None:
      where = "finite"
    else:
      where = (f"in {'[' if low_inclusive else '('}{low:g}, "
               f"{high:g}{']' if high_inclusive else ')'}")
    raise ValueError(f"{name} must be {where}, got {value!r}" + (f"; {fix}" if fix else "") + ".")
  return number


def _parses(value) -> bool:
  if not isinstance(value, (str, bytes)):
    return False
  try:
    float(value)
  except ValueError:
    return False
  return True


def is_concrete(x) -> bool:
  """True if ``x`` holds values the host can read (not a tracer of jit / vmap / grad)."""
  return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_label_values(labels, num_classes: int, name: str, mask=None, *, fix: str = "") -> None:
  """Host check that concrete ``labels`` are class ids in ``[0, num_classes)``.

  Out-of-range labels do not fail inside JAX: a gather reads ``-1`` as class
  ``C - 1`` and a label ``C`` as NaN, far from the cause. Traced labels (under
  ``jit``) cannot be read and pass; the caller that holds them concretely
  checks them.

  Args:
    labels: int ``[...]`` class ids (numpy or JAX array).
    num_classes: ``C``.
    name: how the caller calls the labels (``"dev['y']"``), for the message.
    mask: optional 0/1 ``[...]`` of the labels' shape; masked-out entries
      (padding) are not checked.
    fix: the fix to suggest (default: fix the labels or ``num_classes``).

  Raises:
    ValueError: naming ``name``, the first bad value, how many are bad and the
      valid range.
  """
  if not is_concrete((labels, mask)):
    return
  values = np.asarray(labels)
  if not np.issubdtype(values.dtype, np.integer):
    return
  if mask is not None:
    values = values[np.asarray(mask) > 0]
  bad = values[(values < 0) | (values >= num_classes)]
  if bad.size:
    raise ValueError(f"{name} holds label {int(bad.flat[0])} ({bad.size} bad in all), outside "
                     f"[0, {num_classes - 1}] for num_classes={num_classes}: " +
                     (fix or "fix the labels or num_classes") + ".")
