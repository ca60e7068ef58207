"""Choosing on the validation split: one rule for every selection of the experiments.

Every choice an experiment makes -- the teacher among its candidates (the untaught
anchor and the taught teacher, :func:`experiments.phases.select_teacher` and the
translation task's ``select_on_validation``), label smoothing's eps (the translation
task's ``tune_smoothing``, the ablation), a teaching checkpoint (the ablation's
``select`` rows) -- is :func:`select`: the candidate with the best score, scores
compared rounded to ``decimals`` (validation errors are multiples of ``100 / len(val)``,
so rounding keeps float noise from breaking a tie), a tie going to the **earliest**
candidate in the order given. The callers order their candidates so that the earliest
is the conservative one: the untaught anchor before the taught teacher, the smaller eps
first, the earlier checkpoint first.

Two roundings exist because two were in use and every choice must stay what it was:
``'python'`` (``round(x, decimals)``, exact decimal rounding: every caller but one) and
``'numpy'`` (``np.round``, scale-and-round-half-even: the ablation's checkpoint
selection). They differ only for scores within float error of a rounding midpoint
(``3.3585575`` rounds to ``3.358557`` and to ``3.358558``).
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping, Sequence, Union

import numpy as np

__all__ = ["GOALS", "ROUNDINGS", "select", "pick_by_validation"]

GOALS = ("min", "max")
ROUNDINGS = ("python", "numpy")


def select(candidates: Union[Sequence[Hashable], Mapping[Hashable, Any]],
           score: Union[Callable[[Any], float], Mapping[Any, float]],
           *,
           best: str = "min",
           decimals: int = 6,
           rounding: str = "python") -> Any:
  """The candidate with the best score; a tie (after rounding) goes to the earliest.

  Args:
    candidates: the candidates in tie-breaking order (a sequence, or a mapping whose
      keys are the candidates, in insertion order).
    score: candidate -> float score (a function, or a mapping holding every candidate).
    best: ``'min'`` (errors) or ``'max'`` (BLEU).
    decimals: scores are compared rounded to this many decimals.
    rounding: ``'python'`` (``round``) or ``'numpy'`` (``np.round``); see the module
      docstring.

  Returns:
    The chosen candidate (an element of ``candidates``).

  Raises:
    ValueError: no candidates, or an unknown ``best`` / ``rounding``.
    KeyError: a mapping ``score`` without a candidate.
  """
  if best not in GOALS:
    raise ValueError(f"select: best={best!r} is not one of {GOALS}.")
  if rounding not in ROUNDINGS:
    raise ValueError(f"select: rounding={rounding!r} is not one of {ROUNDINGS}.")
  candidates = list(candidates)
  if not candidates:
    raise ValueError("select: no candidates to choose from.")
  fn = score.__getitem__ if isinstance(score, Mapping) else score
  if rounding == "numpy":
    rounded = np.round([fn(c) for c in candidates], decimals)
    return candidates[int(np.argmin(rounded) if best == "min" else np.argmax(rounded))]
  key = lambda c: round(fn(c), decimals)
  return min(candidates, key=key) if best == "min" else max(candidates, key=key)


def pick_by_validation(scores: dict, metric: str = "accuracy") -> tuple[str, dict]:
  """The candidate with the lowest mean validation error under ``metric``.

  Args:
    scores: candidate name -> one :func:`dlf_jax.unroll.evaluate` output per student
      (dicts of float scalars with ``accuracy`` and, for classification students,
      ``balanced_accuracy``), in the order that breaks ties.
    metric: :func:`experiments.splits.headline_metric` of the config:
      ``'balanced_accuracy'`` for a long-tailed training split, else ``'accuracy'``.

  Returns:
    ``(chosen, errors)``: ``errors`` maps each name to its mean error,
    ``100 (1 - metric)`` %, over its students. The choice is :func:`select`'s
    (errors rounded to 6 decimals -- multiples of ``100 / len(val)`` for the plain
    accuracy --, a tie to the earlier candidate: the untaught anchor).

  Raises:
    ValueError: no candidates, a candidate without students, or outputs without
      ``metric``.
  """
  if not scores or not all(scores.values()):
    raise ValueError(f"pick_by_validation needs at least one student per candidate; got "
                     f"{ {k: len(v) for k, v in scores.items()} }.")
  missing = sorted(k for k, v in scores.items() if any(metric not in m for m in v))
  if missing:
    raise ValueError(f"pick_by_validation(metric={metric!r}): the evaluations of "
                     f"{missing} have no {metric!r} (only classification students report "
                     "'balanced_accuracy'); use metric='accuracy'.")
  errors = {
      name: float(np.mean([100.0 * (1.0 - float(m[metric])) for m in ms]))
      for name, ms in scores.items()
  }
  return select(errors, errors), errors
