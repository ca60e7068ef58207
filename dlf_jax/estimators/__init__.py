"""Hypergradient estimators for :func:`dlf_jax.teach`: one class per estimator, one interface.

=================  ====================================================================
``ReverseMode``    Eqns. (3)-(5): the reverse scan (:mod:`dlf_jax.hypergrad`); exact
``ForwardMode``    forward mode (:mod:`dlf_jax.forward_hypergrad`); exact, memory flat in T
``AntitheticES``   antithetic ES (:func:`dlf_jax.evolution.es_gradient`); any reward
``PES``            persistent ES (:func:`dlf_jax.evolution.pes_step`); its particles are
                   the estimator state, carried across an episode's segments
=================  ====================================================================

Each implements :class:`~dlf_jax.contracts.HypergradEstimator` (``name``,
``check``, ``init_state``, ``estimate``) and is a frozen dataclass, so it is
hashable and compiled functions are cached per estimator. :data:`ESTIMATORS`
maps the names configs use to the classes; :func:`get` builds one by name.

Adding an estimator: one module here with one frozen dataclass implementing the
protocol, and one line in :data:`ESTIMATORS` (configs, the schema and the
command line pick it up from there).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from dlf_jax.estimators.base import EstimateContext, HypergradEstimator
from dlf_jax.estimators.es import AntitheticES
from dlf_jax.estimators.forward import ForwardMode
from dlf_jax.estimators.pes import PES
from dlf_jax.estimators.reverse import ReverseMode

__all__ = [
    "HypergradEstimator", "EstimateContext", "ReverseMode", "ForwardMode", "AntitheticES", "PES",
    "ESTIMATORS", "get"
]

# name -> class: the one list of estimator names (configs, the schema, the command line).
ESTIMATORS: dict[str, type] = {
    ReverseMode.name: ReverseMode,
    ForwardMode.name: ForwardMode,
    AntitheticES.name: AntitheticES,
    PES.name: PES,
}


def get(name: str, **kwargs: Any) -> HypergradEstimator:
  """The estimator registered as ``name``, built with ``kwargs``.

  Raises:
    ValueError: an unknown name (naming the known ones), or a keyword the
      estimator does not take (naming the ones it does).
  """
  if name not in ESTIMATORS:
    raise ValueError(f"Unknown hypergradient estimator {name!r}; choose one of "
                     f"{tuple(ESTIMATORS)}.")
  cls = ESTIMATORS[name]
  fields = tuple(f.name for f in dataclasses.fields(cls))
  unknown = sorted(set(kwargs) - set(fields))
  if unknown:
    raise ValueError(f"Estimator {name!r} takes no {', '.join(unknown)}; its settings are "
                     f"{fields}.")
  return cls(**kwargs)
