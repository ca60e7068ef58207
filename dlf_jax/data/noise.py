"""Label noise and class imbalance of a training split, and what a trusted set can measure.

Noise model (Patrini et al. 2017): an observed label ``y~`` of an example of true class
``i`` is drawn from row ``i`` of a row-stochastic transition matrix ``T``::

    T[i, j] = P(y~ = j | y = i),   T >= 0,   sum_j T[i, j] = 1.

* symmetric noise at rate ``r``: ``T = (1 - r) I + r / (C - 1) (1 1^T - I)`` (a label
  is changed with probability ``r``, to any other class uniformly);
* pair flip at rate ``r``: ``y~ = (i + 1) mod C`` with probability ``r``, else ``i``;
* any row-stochastic ``T`` given as a matrix.

Long-tailed training split (Cao et al. 2019): ``n_i = n_max * rho^(-i / (C - 1))``
examples of class ``i`` (class 0 the head, class ``C - 1`` the tail, ``rho`` the
imbalance ratio ``n_0 / n_{C-1}``).

GLC (Hendrycks et al. 2018): with a model trained on the noisy labels, the mean of its
softmax over the trusted examples of true class ``i`` estimates row ``i`` of ``T``.

Every function here is numpy on the host (data preparation, not the differentiated
unroll); all randomness comes from ``np.random.default_rng(seed)``.

References:
  Patrini et al., "Making Deep Neural Networks Robust to Label Noise: a Loss
  Correction Approach", CVPR 2017 (transition matrices, forward correction).
  Hendrycks et al., "Using Trusted Data to Train Deep Networks on Labels Corrupted by
  Severe Noise", NeurIPS 2018 (GLC).
  Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
  Loss", NeurIPS 2019 (the exponential long-tail profile).
  Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019
  (long-tailed splits; class priors for class-balanced weights).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "symmetric_transition", "pair_flip_transition", "check_transition", "corrupt_labels",
    "transition_counts", "realised_transition", "noise_rate", "long_tail_counts",
    "long_tail_subsample", "class_priors", "estimate_transition_glc"
]

# Rows of a transition matrix must sum to 1 within this (float64 sums of decimals).
ROW_SUM_TOL = 1e-6


def _check_num_classes(num_classes) -> int:
  if (isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or
      num_classes < 2):
    raise ValueError(f"num_classes={num_classes!r} is invalid: expected an integer >= 2.")
  return int(num_classes)


def _check_rate(rate, upper: float, closed: bool, what: str) -> float:
  ok_type = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
  if not ok_type or not np.isfinite(rate) or rate < 0 or (rate > upper
                                                          if closed else rate >= upper):
    bound = f"[0, {upper:g}]" if closed else f"[0, {upper:g})"
    raise ValueError(f"rate={rate!r} is invalid for {what}: expected a number in {bound}.")
  return float(rate)


def symmetric_transition(num_classes: int, rate: float) -> np.ndarray:
  """Symmetric (uniform) label noise: ``T = (1 - r) I + r / (C - 1) (1 1^T - I)``.

  A label keeps its class with probability ``1 - r`` and moves to each of the other
  ``C - 1`` classes with probability ``r / (C - 1)``; ``r`` is the probability that a
  label is wrong (the expected noise rate), not ``r / C`` of some other conventions.

  Args:
    num_classes: ``C >= 2``.
    rate: ``r`` in ``[0, (C - 1) / C]``. At ``(C - 1) / C`` every row is uniform (the
      labels carry no information); beyond it a wrong class would be likelier than the
      true one, which is refused.

  Returns:
    float64 ``[C, C]`` row-stochastic ``T``, ``T[i, j] = P(y~ = j | y = i)``.

  Raises:
    ValueError: ``num_classes`` not an integer >= 2, or ``rate`` outside
      ``[0, (C - 1) / C]``.

  References:
    Patrini et al. 2017.
  """
  c = _check_num_classes(num_classes)
  r = _check_rate(
      rate, (c - 1) / c,
      closed=True,
      what=f"symmetric noise over {c} classes (at (C-1)/C the labels are uniform)")
  t = np.full((c, c), r / (c - 1), np.float64)
  np.fill_diagonal(t, 1.0 - r)
  return t


def pair_flip_transition(num_classes: int, rate: float) -> np.ndarray:
  """Pair-flip label noise: ``y~ = pi(i) = (i + 1) mod C`` with probability ``r``.

  Args:
    num_classes: ``C >= 2``.
    rate: ``r`` in ``[0, 1)``. From ``r = 0.5`` on the flipped class is the likelier
      label (then only a known ``T`` or trusted data tells the classes apart).

  Returns:
    float64 ``[C, C]``: ``T[i, i] = 1 - r``, ``T[i, (i + 1) mod C] = r``, zero elsewhere.

  Raises:
    ValueError: ``num_classes`` not an integer >= 2, or ``rate`` outside ``[0, 1)``.

  References:
    Patrini et al. 2017; Han et al., "Co-teaching", NeurIPS 2018.
  """
  c = _check_num_classes(num_classes)
  r = _check_rate(rate, 1.0, closed=False, what="pair-flip noise")
  t = (1.0 - r) * np.eye(c, dtype=np.float64)
  t[np.arange(c), (np.arange(c) + 1) % c] += r
  return t


def check_transition(transition,
                     num_classes: int | None = None,
                     name: str = "transition") -> np.ndarray:
  """Validates a transition matrix; returns it as float64 ``[C, C]``.

  Args:
    transition: array-like ``[C, C]`` (nested lists are fine).
    num_classes: if given, ``C`` must equal it.
    name: how the caller calls the argument, for the messages.

  Returns:
    float64 ``[C, C]`` copy of ``transition``.

  Raises:
    ValueError: not a square 2-D matrix of finite numbers with ``C >= 2``, a negative
      entry, a row whose sum differs from 1 by more than ``ROW_SUM_TOL``, or
      ``C != num_classes``.
  """
  try:
    t = np.array(transition, dtype=np.float64)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a square [C, C] matrix of numbers; got "
                     f"{transition!r}.") from None
  if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 2:
    raise ValueError(f"{name} must be a square [C, C] matrix with C >= 2; got shape "
                     f"{t.shape}.")
  if num_classes is not None and t.shape[0] != num_classes:
    raise ValueError(f"{name} is {t.shape[0]} x {t.shape[0]} but the data have "
                     f"{num_classes} classes; give a {num_classes} x {num_classes} matrix.")
  if not np.all(np.isfinite(t)):
    raise ValueError(f"{name} holds NaN/inf entries; every entry must be a probability.")
  if np.any(t < 0):
    i, j = np.argwhere(t < 0)[0]
    raise ValueError(f"{name}[{i}, {j}]={float(t[i, j])!r} is negative; entries are "
                     "probabilities P(noisy = j | true = i) >= 0.")
  sums = t.sum(1)
  bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOL)
  if bad.size:
    raise ValueError(f"{name} is not row-stochastic: row {bad[0]} sums to "
                     f"{float(sums[bad[0]])!r}; "
                     "every row T[i, :] = P(noisy label | true class i) must sum to 1.")
  return t


def _check_labels(labels, num_classes: int, name: str) -> np.ndarray:
  y = np.asarray(labels)
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{name} must be a 1-D integer array [N]; got dtype {y.dtype}, shape "
                     f"{y.shape}.")
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    bad = int(y.min()) if y.min() < 0 else int(y.max())
    raise ValueError(f"{name} holds label {bad}, outside [0, {num_classes}) of the "
                     f"{num_classes} classes.")
  return y


def corrupt_labels(labels, transition, seed: int) -> np.ndarray:
  """Draws a noisy label for every example from row ``T[y]`` of the transition matrix.

  The draw, exactly: ``u = np.random.default_rng(seed).random(N)`` (one uniform per
  example, in order, whatever ``T``), and ``y~_n`` is the smallest ``j`` with
  ``u_n < sum_{k <= j} T[y_n, k]`` (the inverse CDF of row ``y_n``; the last column
  with positive probability is taken as reaching exactly 1, so a class of probability
  0 is never drawn). Deterministic given ``seed``; ``T = I`` returns ``labels``
  unchanged; for symmetric or pair-flip noise a higher rate flips a superset of the
  examples a lower rate flips (the same ``u``).

  Args:
    labels: int ``[N]`` clean labels in ``[0, C)``.
    transition: float ``[C, C]`` row-stochastic ``T`` (:func:`check_transition`).
    seed: seeds the draw.

  Returns:
    int ``[N]`` noisy labels, same dtype as ``labels``.

  Raises:
    ValueError: an invalid ``transition`` (see :func:`check_transition`), or
      ``labels`` not 1-D integers in ``[0, C)``.

  References:
    Patrini et al. 2017 (the class-conditional noise model).
  """
  t = check_transition(transition)
  y = _check_labels(labels, t.shape[0], "labels")
  cdf = np.cumsum(t, axis=1)
  for i in range(t.shape[0]):
    cdf[i, np.flatnonzero(t[i] > 0)[-1]:] = 1.0
  u = np.random.default_rng(seed).random(len(y))  # y is 1-D: len(y) == N.
  noisy = np.sum(cdf[y] <= u[:, None], axis=1)
  return noisy.astype(y.dtype)


def transition_counts(clean, noisy, num_classes: int) -> np.ndarray:
  """int64 ``[C, C]``: ``counts[i, j]`` = examples of clean class ``i`` labelled ``j``."""
  c = _check_num_classes(num_classes)
  y = _check_labels(clean, c, "clean")
  z = _check_labels(noisy, c, "noisy")
  if y.shape != z.shape:
    raise ValueError(f"clean and noisy must have the same length; got {y.shape[0]} and "
                     f"{z.shape[0]}.")
  return np.bincount(y.astype(np.int64) * c + z, minlength=c * c).reshape(c, c)


def realised_transition(clean, noisy, num_classes: int) -> np.ndarray:
  """The empirical transition matrix of a corrupted split.

  Args:
    clean: int ``[N]`` true labels in ``[0, C)``.
    noisy: int ``[N]`` observed labels in ``[0, C)``.
    num_classes: ``C``.

  Returns:
    float64 ``[C, C]``: row ``i`` is the distribution of ``noisy`` over the examples
    with ``clean == i``. A class absent from ``clean`` gets the identity row ``e_i``
    (nothing was corrupted; the record's class counts show it is absent), so every
    row is on the simplex.

  Raises:
    ValueError: labels not 1-D integers in ``[0, C)``, different lengths, or
      ``num_classes < 2``.

  References:
    Patrini et al. 2017.
  """
  counts = transition_counts(clean, noisy, num_classes).astype(np.float64)
  n = counts.sum(1, keepdims=True)
  out = np.where(n > 0, counts / np.maximum(n, 1), np.eye(counts.shape[0]))
  return out


def noise_rate(clean, noisy) -> float:
  """The fraction of examples whose observed label differs from the true one.

  Args:
    clean, noisy: int ``[N]`` labels, ``N >= 1``.

  Returns:
    ``mean(clean != noisy)`` in ``[0, 1]``.

  Raises:
    ValueError: shapes differ, not 1-D, or ``N = 0``.
  """
  y, z = np.asarray(clean), np.asarray(noisy)
  if y.ndim != 1 or y.shape != z.shape or not y.size:
    raise ValueError(f"clean and noisy must be non-empty 1-D label arrays of one length; "
                     f"got shapes {y.shape} and {z.shape}.")
  return float(np.mean(y != z))


def long_tail_counts(max_per_class: int, num_classes: int, imbalance_ratio: float) -> np.ndarray:
  """The exponential long-tail profile: ``n_i = int(n_max * (1 / rho)^(i / (C - 1)))``.

  Computed as Cao et al.'s code does (``img_max * (imb_factor ** (i / (C - 1.0)))``
  with ``imb_factor = 1 / rho``, truncated), so CIFAR-10-LT with ``n_max = 5000`` and
  ``rho = 100`` gives 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50.

  Args:
    max_per_class: ``n_max = n_0 >= 1``, the head class's count.
    num_classes: ``C >= 2``.
    imbalance_ratio: ``rho = n_0 / n_{C-1} >= 1`` (1: balanced).

  Returns:
    int64 ``[C]``, non-increasing, ``n_0 = n_max``.

  Raises:
    ValueError: ``rho < 1`` (or not finite), ``n_max < 1``, ``C < 2``, or a class
      that would keep no example (``n_max / rho < 1``: lower ``rho`` or raise
      ``n_max``).

  References:
    Cao et al. 2019 (LDAM), Sec. 4; Cui et al. 2019.
  """
  c = _check_num_classes(num_classes)
  if (isinstance(max_per_class, bool) or not isinstance(max_per_class, (int, np.integer)) or
      max_per_class < 1):
    raise ValueError(f"max_per_class={max_per_class!r} is invalid: expected an integer >= 1.")
  ok = (
      isinstance(imbalance_ratio, (int, float, np.integer, np.floating)) and
      not isinstance(imbalance_ratio, bool) and np.isfinite(imbalance_ratio) and
      imbalance_ratio >= 1)
  if not ok:
    raise ValueError(f"imbalance_ratio={imbalance_ratio!r} is invalid: expected a number "
                     ">= 1 (n_head / n_tail; 1 is balanced).")
  imb_factor = 1.0 / float(imbalance_ratio)
  counts = np.array([int(int(max_per_class) * (imb_factor**(i / (c - 1.0)))) for i in range(c)],
                    np.int64)
  if counts[-1] < 1:
    raise ValueError(f"imbalance_ratio={imbalance_ratio!r} with max_per_class="
                     f"{max_per_class} leaves class {c - 1} no example "
                     f"({max_per_class} / {imbalance_ratio:g} < 1); lower the ratio or "
                     "raise max_per_class.")
  return counts


def long_tail_subsample(labels,
                        imbalance_ratio: float,
                        seed: int,
                        *,
                        num_classes: int | None = None,
                        max_per_class: int | None = None) -> np.ndarray:
  """Indices of a long-tailed subset: the first ``n_i`` of class ``i`` in a permutation.

  ``perm = np.random.default_rng(seed).permutation(N)``; class ``i`` keeps the first
  ``n_i`` (:func:`long_tail_counts`) of its examples in ``perm`` order.

  Args:
    labels: int ``[N]`` labels in ``[0, C)``.
    imbalance_ratio: ``rho >= 1``.
    seed: seeds the permutation.
    num_classes: ``C`` (default ``max(labels) + 1``).
    max_per_class: ``n_max``, the head class's count (default: the count of the
      rarest class of ``labels``, so that every class can supply its ``n_i``).

  Returns:
    int64 ``[sum_i n_i]`` indices into ``labels``, increasing (the split keeps its
    order).

  Raises:
    ValueError: ``rho < 1``, labels not 1-D integers in ``[0, C)``, or a class with
      fewer than ``n_i`` examples (naming it, its count and ``n_i``).

  References:
    Cao et al. 2019; Cui et al. 2019.
  """
  y = np.asarray(labels)
  if num_classes is None:
    if y.ndim != 1 or not y.size:
      raise ValueError("labels must be a non-empty 1-D integer array [N].")
    num_classes = int(y.max()) + 1
  c = _check_num_classes(num_classes)
  y = _check_labels(y, c, "labels")
  have = np.bincount(y, minlength=c)
  if max_per_class is None:
    max_per_class = int(have.min())
    if max_per_class < 1:
      raise ValueError(f"class {int(np.argmin(have))} has no example in labels; a long "
                       "tail needs every class present (or pass max_per_class).")
  want = long_tail_counts(max_per_class, c, imbalance_ratio)
  short = np.flatnonzero(have < want)
  if short.size:
    i = short[0]
    raise ValueError(f"class {i} has {have[i]} examples, fewer than the {want[i]} the long "
                     f"tail (max_per_class={max_per_class}, imbalance_ratio="
                     f"{imbalance_ratio:g}) asks of it; lower max_per_class.")
  perm = np.random.default_rng(seed).permutation(y.shape[0])
  keep = [perm[y[perm] == i][:want[i]] for i in range(c)]
  return np.sort(np.concatenate(keep)).astype(np.int64)


def class_priors(labels, num_classes: int) -> np.ndarray:
  """The empirical class distribution ``pi_i = n_i / N``.

  Args:
    labels: int ``[N]`` in ``[0, C)``, ``N >= 1``.
    num_classes: ``C``.

  Returns:
    float64 ``[C]`` summing to 1 (zero for absent classes).

  Raises:
    ValueError: empty or out-of-range labels, ``C < 2``.

  References:
    Menon et al., "Long-tail learning via logit adjustment", ICLR 2021 (the prior
    ``pi``); Cui et al. 2019 (counts ``n_y`` of class-balanced weights).
  """
  c = _check_num_classes(num_classes)
  y = _check_labels(labels, c, "labels")
  if not y.size:
    raise ValueError("labels is empty: class priors need at least one example.")
  return np.bincount(y, minlength=c).astype(np.float64) / y.shape[0]


def estimate_transition_glc(probs, labels, num_classes: int) -> np.ndarray:
  """GLC's estimate of ``T`` from a model trained on the noisy labels.

  ``T^[i, :] = mean of probs[n, :] over the trusted examples n with labels[n] = i``:
  the model's softmax estimates ``P(y~ | x)``, and averaging it over examples of true
  class ``i`` estimates ``P(y~ | y = i)``.

  Args:
    probs: float ``[N, C]`` softmax outputs of the noisy-trained model on the trusted
      examples (non-negative, rows summing to 1 within 1e-3).
    labels: int ``[N]`` their trusted (clean) labels in ``[0, C)``.
    num_classes: ``C``.

  Returns:
    float64 ``[C, C]``. A class with no trusted example gets the identity row ``e_i``
    (no evidence of corruption: forward correction then leaves that class's
    probability as it is).

  Raises:
    ValueError: ``probs`` not ``[N, C]`` with ``C = num_classes``, NaN/inf or
      negative entries, rows not summing to 1 (pass softmax outputs, not logits),
      ``labels`` not ``[N]`` integers in ``[0, C)``.

  References:
    Hendrycks et al. 2018 (GLC), Sec. 3.
  """
  c = _check_num_classes(num_classes)
  p = np.asarray(probs, np.float64)
  if p.ndim != 2 or p.shape[1] != c:
    raise ValueError(f"probs must be [N, {c}] (num_classes={c}); got shape {p.shape}.")
  if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(np.abs(p.sum(1) - 1) > 1e-3):
    raise ValueError("probs must be softmax outputs: finite, non-negative, rows summing to "
                     "1; apply jax.nn.softmax to the logits first.")
  y = _check_labels(labels, c, "labels")
  if y.shape[0] != p.shape[0]:
    raise ValueError(f"probs has {p.shape[0]} rows but labels has {y.shape[0]} entries.")
  sums = np.zeros((c, c), np.float64)
  np.add.at(sums, y, p)
  n = np.bincount(y, minlength=c)[:, None]
  return np.where(n > 0, sums / np.maximum(n, 1), np.eye(c))
