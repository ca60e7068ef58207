"""The image splits of an experiment: loading, the validation carve, checks.

``train`` trains every student; ``dev`` (carved from the training data by the
loader) rewards the teacher; ``val`` (carved from ``train`` here, when
``config.data.val_size`` is set) *selects* -- the teacher among its candidates,
label smoothing's eps in :mod:`experiments.ablation`; ``test`` is only read for
the final table.

Label noise and a long tail (``config.data.noise``, ``config.data.imbalance``) touch
the training split only, after dev and val are carved (:func:`corrupt_train`): dev
and val stay clean (the trusted sets), test stays as loaded. The training split keeps
its true labels in ``clean_y`` (never trained on); :func:`label_record` is what the
runner writes to ``label_noise.json``.

:func:`headline_metric` is the one place that says which accuracy an experiment
selects and reports by: the balanced accuracy (mean per-class recall) when the training
split is long-tailed, the accuracy otherwise.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import ml_collections
import numpy as np

from dlf_jax import data as data_lib
from experiments.workdir import InputError

__all__ = [
    "load_data", "carve_validation", "check_disjoint", "check_data", "noise_transition",
    "corrupt_train", "label_record", "prepare", "headline_metric", "METRICS"
]

# What :func:`headline_metric` returns: keys of :func:`dlf_jax.unroll.evaluate`'s output.
METRICS = ("accuracy", "balanced_accuracy")


def load_data(config: ml_collections.ConfigDict) -> data_lib.ImageDataset:
  """The train / dev / test splits of ``config.data``.

  Raises:
    FileNotFoundError: the library's message (every place looked in, and the fix).
    InputError: sizes the data cannot satisfy.
  """
  d = config.data
  try:
    return data_lib.load_image_dataset(
        d.name,
        source=d.source,
        data_dir=d.data_dir,
        dev_size=d.dev_size,
        dev_split=d.dev_split,
        train_size=d.train_size,
        test_size=d.test_size,
        seed=d.seed)
  except ValueError as e:  # sizes the data cannot satisfy: a config problem
    raise InputError(f"config.data: {e}") from e


def _take(split: data_lib.Split, idx: np.ndarray) -> data_lib.Split:
  """The examples ``idx`` of ``split`` (every per-example array)."""
  pick = lambda a: None if a is None else a[idx]
  return dataclasses.replace(
      split, x=split.x[idx], y=split.y[idx], index=pick(split.index), clean_y=pick(split.clean_y))


def carve_validation(data: data_lib.ImageDataset, val_size: int, seed: int):
  """Splits ``val_size`` random training examples off into a validation split.

  The validation split *selects* (the teacher among its candidates; label
  smoothing's eps in :mod:`experiments.ablation`); the dev split rewards the
  teacher; the test split is only read for the final table.

  Args:
    data: the loaded dataset.
    val_size: examples to move from ``data.train`` to the validation split.
    seed: seeds the choice (``config.data.seed``: the same split for every method).

  Returns:
    ``(data with the smaller train split, val Split)``.

  Raises:
    InputError: ``val_size`` not in ``[1, len(train) - 1]``.
  """
  n = len(data.train)
  if not 1 <= val_size < n:
    raise InputError(f"config.data.val_size={val_size} must be in [1, {n - 1}] (the training "
                     f"split has {n} examples).")
  perm = np.random.default_rng([seed, 31337]).permutation(n)
  take = lambda idx: _take(data.train, idx)
  val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])
  return dataclasses.replace(data, train=take(train_idx)), take(val_idx)


def check_disjoint(splits: dict) -> None:
  """Raises if two splits share examples (byte-identical inputs).

  Args:
    splits: name -> a split with ``.x`` or a dict with ``'x'``.

  Raises:
    InputError: naming the two splits and how many examples they share.
  """

  def rows(split):
    x = np.asarray(split["x"] if isinstance(split, dict) else split.x)
    return {row.tobytes() for row in x.reshape(len(x), -1)}

  hashes = {k: rows(v) for k, v in splits.items()}
  names = list(splits)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      shared = len(hashes[a] & hashes[b])
      # Real datasets hold a few byte-identical images (MNIST does); more is an overlap.
      if shared > max(5, len(hashes[a]) // 1000):
        raise InputError(f"The {a} and {b} splits share {shared} examples: the validation "
                         "split must be disjoint from dev and test; carve it from the "
                         "training split only.")


def check_data(config: ml_collections.ConfigDict, data: data_lib.ImageDataset) -> None:
  """Host-side checks of the loaded splits against the config (once, before any step).

  Raises:
    InputError: a label outside ``[0, num_classes)``, or ``student.batch_size`` larger
      than the training split.
  """
  for name in ("train", "dev", "test"):
    y = np.asarray(getattr(data, name).y)
    if y.size and (y.min() < 0 or y.max() >= data.num_classes):
      bad = int(y.min()) if y.min() < 0 else int(y.max())
      raise InputError(
          f"The {name} split of data.name={config.data.name!r} has label {bad}, outside the "
          f"valid range [0, {data.num_classes - 1}] of its {data.num_classes} classes; fix "
          "the labels of the data files (or the dataset's class count).")
  if config.student.batch_size > len(data.train):
    raise InputError(
        f"config.student.batch_size={config.student.batch_size} is larger than the training "
        f"split ({len(data.train)} examples); set --config.student.batch_size <= "
        f"{len(data.train)} or a larger config.data.train_size.")


def _noise_active(config: ml_collections.ConfigDict) -> bool:
  return config.data.noise.kind != "none"


def _imbalance_active(config: ml_collections.ConfigDict) -> bool:
  return config.data.imbalance.ratio is not None


def headline_metric(config) -> str:
  """The accuracy that selects (on the validation split) and heads the tables.

  A long-tailed training split (``config.data.imbalance.ratio`` set) is judged by the
  balanced accuracy, the mean per-class recall (Cao et al. 2019; Menon et al. 2021
  report balanced error): plain accuracy would reward a student that ignores the
  tail. Everything else, label noise included, keeps the plain accuracy.

  Args:
    config: an experiment config (``ml_collections.ConfigDict`` or a plain dict, e.g.
      ``results.json``'s ``config``); configs without ``data.imbalance`` (translation,
      workdirs older than the key) count as not long-tailed.

  Returns:
    ``'balanced_accuracy'`` or ``'accuracy'`` (a key of
    :func:`dlf_jax.unroll.evaluate`'s output and, prefixed by the split, of a
    student's history records).

  References:
    Cao et al. 2019; Menon et al. 2021 (class imbalance: report balanced error).
  """
  data = config.get("data")
  imbalance = None if data is None else data.get("imbalance")
  ratio = None if imbalance is None else imbalance.get("ratio")
  return "accuracy" if ratio is None else "balanced_accuracy"


def noise_transition(config: ml_collections.ConfigDict, num_classes: int) -> Optional[np.ndarray]:
  """The transition matrix ``T`` of ``config.data.noise`` (None for kind 'none').

  Returns:
    float64 ``[C, C]`` row-stochastic, ``T[i, j] = P(noisy j | true i)``.

  Raises:
    InputError: a rate or matrix that does not fit ``num_classes`` (naming the key).
  """
  n = config.data.noise
  try:
    if n.kind == "symmetric":
      return data_lib.symmetric_transition(num_classes, n.rate)
    if n.kind == "pair":
      return data_lib.pair_flip_transition(num_classes, n.rate)
    if n.kind == "matrix":
      return data_lib.check_transition(n.matrix, num_classes, name="config.data.noise.matrix")
  except ValueError as e:
    raise InputError(f"config.data.noise: {e}") from e
  return None


def corrupt_train(config: ml_collections.ConfigDict,
                  data: data_lib.ImageDataset) -> data_lib.ImageDataset:
  """The long tail, then the label noise, of ``config.data`` on the training split.

  1. ``data.imbalance.ratio`` (if set): keep :func:`dlf_jax.data.long_tail_subsample`
     of the training split (``n_max`` = its rarest class's count, seeded by
     ``data.imbalance.seed``).
  2. ``data.noise`` (if ``kind != 'none'``): replace the training labels with
     :func:`dlf_jax.data.corrupt_labels` of them (seeded by ``data.noise.seed``); the
     true labels stay in ``train.clean_y``.

  Dev and test (and the validation split, already carved) are not touched.

  Returns:
    ``data`` with the new training split (unchanged if both are off).

  Raises:
    InputError: a long tail the training split cannot supply, or a noise rate or
      matrix that does not fit the dataset (naming the key and the fix).
  """
  train = data.train
  if _imbalance_active(config):
    try:
      keep = data_lib.long_tail_subsample(
          train.y,
          config.data.imbalance.ratio,
          config.data.imbalance.seed,
          num_classes=data.num_classes)
    except ValueError as e:
      raise InputError(f"config.data.imbalance.ratio={config.data.imbalance.ratio!r}: {e}") from e
    train = _take(train, keep)
  t = noise_transition(config, data.num_classes)
  if t is not None:
    clean = train.y if train.clean_y is None else train.clean_y
    noisy = data_lib.corrupt_labels(clean, t, config.data.noise.seed)
    train = dataclasses.replace(train, y=noisy, clean_y=clean)
  return dataclasses.replace(data, train=train)


def label_record(config: ml_collections.ConfigDict,
                 data: data_lib.ImageDataset,
                 val: Optional[data_lib.Split] = None) -> Optional[dict]:
  """What the training labels went through: the ``label_noise.json`` of the workdir.

  Returns:
    None when neither noise nor a long tail is configured; else a JSON-able dict:
    ``noise`` (None, or ``kind``, ``rate``, ``seed``, ``transition`` -- the ``T``
    the labels were drawn from --, ``realised_transition`` ``[C][C]`` (rows of absent
    classes: identity), ``realised_rate`` (fraction of wrong training labels) and
    ``counts`` ``[C][C]``: examples of true class i labelled j), ``imbalance`` (None,
    or ``ratio``, ``seed``, ``max_per_class``), and ``class_counts`` per split
    (``train`` by true label, ``train_observed`` by the label trained on, ``dev``,
    ``val``, ``test``).
  """
  if not (_noise_active(config) or _imbalance_active(config)):
    return None
  c = data.num_classes
  train = data.train
  clean = train.y if train.clean_y is None else train.clean_y
  counts = lambda y: np.bincount(np.asarray(y), minlength=c).tolist()
  record = {
      "noise": None,
      "imbalance": None,
      "num_classes": c,
      "class_counts": {
          "train": counts(clean),
          "train_observed": counts(train.y),
          "dev": counts(data.dev.y),
          **({} if val is None else {
                 "val": counts(val.y)
             }), "test": counts(data.test.y)
      }
  }
  if _noise_active(config):
    n = config.data.noise
    record["noise"] = {
        "kind": n.kind,
        "rate": float(n.rate),
        "seed": int(n.seed),
        "transition": noise_transition(config, c).tolist(),
        "realised_transition": data_lib.realised_transition(clean, train.y, c).tolist(),
        "realised_rate": data_lib.noise_rate(clean, train.y),
        "counts": data_lib.transition_counts(clean, train.y, c).tolist()
    }
  if _imbalance_active(config):
    record["imbalance"] = {
        "ratio": float(config.data.imbalance.ratio),
        "seed": int(config.data.imbalance.seed),
        "max_per_class": int(np.max(counts(clean)))
    }
  return record


def prepare(
    config: ml_collections.ConfigDict,
    data: data_lib.ImageDataset,
    val_size: Optional[int] = None) -> tuple[data_lib.ImageDataset, Optional[data_lib.Split]]:
  """Checks the loaded ``data`` and carves the validation split of ``config.data.val_size``.

  ``val_size``, if given, replaces ``config.data.val_size`` (the ablation's
  ``--val_size``); the carve is seeded by ``config.data.seed`` either way.

  Then applies ``config.data.imbalance`` and ``config.data.noise`` to the training
  split (:func:`corrupt_train`): after the carve, so dev and val stay clean.

  Returns:
    ``(data, val)``: ``val`` is None without a validation split; else it has been
    taken from ``data.train`` and is checked disjoint from dev and test.

  Raises:
    InputError: as :func:`check_data` (before and after the carve and the long tail),
      :func:`carve_validation`, :func:`check_disjoint` and :func:`corrupt_train`.
  """
  check_data(config, data)
  val = None
  val_size = config.data.val_size if val_size is None else val_size
  if val_size:
    data, val = carve_validation(data, val_size, config.data.seed)
    check_data(config, data)  # the batch size against the smaller train split
    check_disjoint({"dev": data.dev, "val": val, "test": data.test})
  if _noise_active(config) or _imbalance_active(config):
    data = corrupt_train(config, data)
    check_data(config, data)  # a long tail shrinks the training split
  return data, val
