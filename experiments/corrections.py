"""The closed-form baselines built from the data: noise correction and long-tail losses.

The fixed losses of :data:`dlf_jax.losses.BASELINES` are named by a config alone; the
ones here need the data (a transition matrix, class priors or counts), so each is a
*builder* ``builder(config, data, context) -> LossProvider`` in :data:`DATA_BASELINES`,
and a config lists it in ``methods`` like any other baseline:

* ``glc``: forward correction (Patrini et al. 2017) with GLC's estimate ``T^``
  (Hendrycks et al. 2018) -- the cross-entropy student of the same seed, trained on the
  noisy labels, gives its softmax over the trusted (clean) dev set, and
  :func:`dlf_jax.data.estimate_transition_glc` averages it per true class. ``T^`` is
  written to ``glc/transition_seed<s>.json`` of the workdir (it is part of what was
  learned). GLC's paper also adds cross-entropy on the trusted examples; this variant,
  as the project's probe, trains on the noisy training split only (every method sees
  the same training data; the dev set rewards the teacher and estimates ``T^``, and no
  student trains on it).
* ``forward_oracle``: forward correction with the *true* ``T``, the matrix the noisy
  labels were drawn from (:func:`experiments.splits.noise_transition`). An oracle, not
  a competitor: no method may know ``T``; it bounds what forward correction can do.
* ``logit_adjusted``: ``-log softmax(z + tau log pi)_y`` with ``pi`` the class priors of
  the (observed) training labels and ``tau = config.baselines.logit_tau`` (Menon et al.
  2021).
* ``class_balanced``: cross-entropy weighted by ``(1 - beta) / (1 - beta^{n_y})``, ``n_y``
  the training label counts, ``beta = config.baselines.cb_beta`` (Cui et al. 2019).

``baselines.logit_tau_grid`` / ``baselines.cb_beta_grid`` (default ``()``) tune ``tau`` /
``beta`` on the clean validation split (:mod:`experiments.correction_phases`). This
module depends on :mod:`dlf_jax` only (the schema reads its registry); the runner's side
-- the cross-entropy student's softmax, the tuning -- is
:mod:`experiments.correction_phases`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Optional

import ml_collections
import numpy as np

from dlf_jax import data as data_lib
from dlf_jax import losses

__all__ = [
    "Context", "DATA_BASELINES", "NOISE_METHODS", "TUNED_CONSTANTS", "METHOD_NAMES", "glc_path",
    "glc_transition", "build_glc", "build_forward_oracle", "build_logit_adjusted",
    "build_class_balanced", "build_data_baseline", "with_constant"
]


@dataclasses.dataclass(frozen=True)
class Context:
  """What a data-built baseline may need beyond the config and the data.

  Attributes:
    seed: the student's seed (GLC's ``T^`` comes from the cross-entropy student of it).
    dev_probs: ``dev_probs(seed)`` -> float ``[N_dev, C]``: the softmax of the
      cross-entropy student of ``seed`` (trained on the noisy training labels) over the
      dev split, in the dev split's order. Needed by ``glc`` only (unless its ``T^`` is
      already recorded in ``workdir``).
    workdir: where ``glc`` records ``T^`` (:func:`glc_path`); None: not recorded.
  """
  seed: int
  dev_probs: Optional[Callable[[int], np.ndarray]] = None
  workdir: Optional[str] = None


def glc_path(workdir: str, seed: int) -> str:
  """``glc/transition_seed<seed>.json``: GLC's ``T^`` from the cross-entropy student of ``seed``."""
  return os.path.join(workdir, "glc", f"transition_seed{seed}.json")


def _num_classes(data) -> int:
  return int(data.num_classes)


def glc_transition(config: ml_collections.ConfigDict, data, context: Context) -> np.ndarray:
  """GLC's estimate ``T^`` for ``context.seed`` (read back from the workdir if recorded).

  ``T^[i, :]`` is the mean softmax of the noisy-trained cross-entropy student over the
  dev examples of true class ``i`` (:func:`dlf_jax.data.estimate_transition_glc`); the
  dev split is clean (the trusted set). With ``context.workdir`` the estimate is written
  to :func:`glc_path` with the dev size, the true ``T`` and the mean absolute error
  ``|T^ - T|`` (JSON floats round-trip float64 exactly, so a resumed run reads back the
  same ``T^``).

  Args:
    config: the experiment config (``data.noise``: the true ``T``, recorded beside).
    data: the dataset (``dev.y``: the trusted labels; ``num_classes``).
    context: ``seed``, ``dev_probs`` and ``workdir``.

  Returns:
    float64 ``[C, C]``, row-stochastic.

  Raises:
    ValueError: no ``context.dev_probs`` and no recorded estimate; probs that are not a
      softmax over the dev split (:func:`dlf_jax.data.estimate_transition_glc`).

  References:
    Hendrycks, Mazeika, Wilson, Gimpel, "Using Trusted Data to Train Deep Networks on
    Labels Corrupted by Severe Noise", NeurIPS 2018, Sec. 3 (GLC).
  """
  path = None if context.workdir is None else glc_path(context.workdir, context.seed)
  if path is not None and os.path.exists(path):
    with open(path) as f:
      return np.asarray(json.load(f)["transition"], np.float64)
  if context.dev_probs is None:
    raise ValueError("method 'glc' needs the cross-entropy student's softmax over the dev "
                     "split: pass Context(dev_probs=...) (the image runner does).")
  c = _num_classes(data)
  probs = np.asarray(context.dev_probs(context.seed), np.float64)
  t_hat = data_lib.estimate_transition_glc(probs, np.asarray(data.dev.y), c)
  if path is not None:
    from experiments import io, splits  # noqa: PLC0415 (schema -> here -> splits)
    true_t = splits.noise_transition(config, c)
    record = {
        "seed": int(context.seed),
        "transition": t_hat.tolist(),
        "estimated_from": "softmax of the cross_entropy student of this seed (trained "
                          "on the noisy training labels) over the clean dev split",
        "dev_size": int(len(data.dev.y)),
        "dev_class_counts": np.bincount(np.asarray(data.dev.y), minlength=c).tolist()
    }
    if true_t is not None:
      record["true_transition"] = true_t.tolist()
      record["mean_abs_error"] = float(np.mean(np.abs(t_hat - true_t)))
    io.write_json(path, record)
  return t_hat


def build_glc(config: ml_collections.ConfigDict, data,
              context: Context) -> losses.ForwardCorrectionLoss:
  """``glc``: :class:`~dlf_jax.losses.ForwardCorrectionLoss` with :func:`glc_transition`.

  Raises:
    ValueError: as :func:`glc_transition`.
  """
  return losses.ForwardCorrectionLoss(glc_transition(config, data, context))


def build_forward_oracle(config: ml_collections.ConfigDict, data,
                         context: Context) -> losses.ForwardCorrectionLoss:
  """``forward_oracle``: forward correction with the true ``T`` of ``config.data.noise``.

  Raises:
    ValueError: ``data.noise.kind='none'`` (there is no ``T``; the schema refuses it first).
  """
  del context
  from experiments import splits  # noqa: PLC0415 (schema -> here -> splits)
  t = splits.noise_transition(config, _num_classes(data))
  if t is None:
    raise ValueError("method 'forward_oracle' needs label noise: set config.data.noise.kind "
                     "to 'symmetric', 'pair' or 'matrix'.")
  return losses.ForwardCorrectionLoss(t)


def _train_counts(data) -> np.ndarray:
  """Counts of the training labels trained on (the observed, possibly noisy, ones)."""
  return np.bincount(np.asarray(data.train.y), minlength=_num_classes(data))


def _check_all_present(counts: np.ndarray, method: str) -> None:
  missing = np.flatnonzero(counts == 0).tolist()
  if missing:
    raise ValueError(f"method {method!r} needs every class in the training labels; classes "
                     f"{missing} have none (lower config.data.imbalance.ratio or raise "
                     "config.data.train_size).")


def build_logit_adjusted(config: ml_collections.ConfigDict, data,
                         context: Context) -> losses.LogitAdjustedLoss:
  """``logit_adjusted``: :class:`~dlf_jax.losses.LogitAdjustedLoss` from the training labels.

  With the priors of the training labels (:func:`dlf_jax.data.class_priors`) and
  ``tau = baselines.logit_tau``.

  Raises:
    ValueError: a class without training labels (its prior would be 0).
  """
  del context
  _check_all_present(_train_counts(data), "logit_adjusted")
  priors = data_lib.class_priors(np.asarray(data.train.y), _num_classes(data))
  return losses.LogitAdjustedLoss(priors, tau=float(config.baselines.logit_tau))


def build_class_balanced(config: ml_collections.ConfigDict, data,
                         context: Context) -> losses.ClassBalancedLoss:
  """``class_balanced``: :class:`~dlf_jax.losses.ClassBalancedLoss` from the training labels.

  With the counts of the training labels and ``beta = baselines.cb_beta``.

  Raises:
    ValueError: a class without training labels.
  """
  del context
  counts = _train_counts(data)
  _check_all_present(counts, "class_balanced")
  return losses.ClassBalancedLoss(counts, beta=float(config.baselines.cb_beta))


# The data-built baselines by name (configs' ``methods``, beside dlf_jax.losses.BASELINES).
DATA_BASELINES: dict[str, Callable] = {
    "glc": build_glc,
    "forward_oracle": build_forward_oracle,
    "logit_adjusted": build_logit_adjusted,
    "class_balanced": build_class_balanced,
}
# The methods that need label noise on the training split (a T to estimate or know).
NOISE_METHODS = ("glc", "forward_oracle")
# method -> (its constant in config.baselines, the grid that tunes it on validation).
TUNED_CONSTANTS = {
    "logit_adjusted": ("logit_tau", "logit_tau_grid"),
    "class_balanced": ("cb_beta", "cb_beta_grid")
}
# The rows of the results tables.
METHOD_NAMES = {
    "glc": "GLC (forward correction, T estimated on dev)",
    "forward_oracle": "Forward correction (true T, oracle)",
    "logit_adjusted": "Logit adjustment",
    "class_balanced": "Class-balanced cross-entropy",
}


def with_constant(config: ml_collections.ConfigDict, method: str,
                  value: float) -> ml_collections.ConfigDict:
  """A copy of ``config`` whose constant of ``method`` (:data:`TUNED_CONSTANTS`) is ``value``."""
  key, _ = TUNED_CONSTANTS[method]
  out = ml_collections.ConfigDict(config.to_dict())
  out.baselines[key] = float(value)
  return out


def build_data_baseline(config: ml_collections.ConfigDict, data, method: str, context: Context):
  """The loss provider of the data-built baseline ``method`` (a key of :data:`DATA_BASELINES`).

  Args:
    config: the experiment config (``baselines`` constants, ``data.noise``).
    data: the dataset after the noise and the long tail (``train.y``: the labels trained
      on; ``dev``: the trusted split; ``num_classes``).
    method: a key of :data:`DATA_BASELINES`.
    context: :class:`Context`.

  Returns:
    a :class:`~dlf_jax.losses.FixedLoss` (a :class:`~dlf_jax.contracts.LossProvider`).

  Raises:
    ValueError: an unknown method (naming the choices), or what its builder raises.
  """
  if method not in DATA_BASELINES:
    raise ValueError(f"Unknown data-built baseline {method!r}; choose one of "
                     f"{tuple(DATA_BASELINES)}.")
  return DATA_BASELINES[method](config, data, context)
