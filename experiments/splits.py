"""The image splits of an experiment: loading, the validation carve, checks.

``train`` trains every student; ``dev`` (carved from the training data by the
loader) rewards the teacher; ``val`` (carved from ``train`` here, when
``config.data.val_size`` is set) *selects* -- the teacher among its candidates,
label smoothing's eps in :mod:`experiments.ablation`; ``test`` is only read for
the final table.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import ml_collections
import numpy as np

from dlf_jax import data as data_lib
from experiments.workdir import InputError

__all__ = ["load_data", "carve_validation", "check_disjoint", "check_data", "prepare"]


def load_data(config: ml_collections.ConfigDict) -> data_lib.ImageDataset:
  """The train / dev / test splits of ``config.data``.

  Raises:
    FileNotFoundError: the library's message (every place looked in, and the fix).
    InputError: sizes the data cannot satisfy.
  """
  d = config.data
  try:
    return data_lib.load_image_dataset(
        d.name, source=d.source, data_dir=d.data_dir, dev_size=d.dev_size,
        dev_split=d.dev_split, train_size=d.train_size, test_size=d.test_size, seed=d.seed)
  except ValueError as e:                   # sizes the data cannot satisfy: a config problem
    raise InputError(f"config.data: {e}") from e


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
  take = lambda idx: dataclasses.replace(
      data.train, x=data.train.x[idx], y=data.train.y[idx],
      index=None if data.train.index is None else data.train.index[idx])
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


def prepare(config: ml_collections.ConfigDict, data: data_lib.ImageDataset
            ) -> tuple[data_lib.ImageDataset, Optional[data_lib.Split]]:
  """Checks the loaded ``data`` and carves the validation split of ``config.data.val_size``.

  Returns:
    ``(data, val)``: ``val`` is None without a validation split; else it has been
    taken from ``data.train`` and is checked disjoint from dev and test.

  Raises:
    InputError: as :func:`check_data` (before and after the carve),
      :func:`carve_validation` and :func:`check_disjoint`.
  """
  check_data(config, data)
  val = None
  if config.data.val_size:
    data, val = carve_validation(data, config.data.val_size, config.data.seed)
    check_data(config, data)                 # the batch size against the smaller train split
    check_disjoint({"dev": data.dev, "val": val, "test": data.test})
  return data, val
