"""Input guards: each test feeds the failing input of a bug report and checks the message.

* a teacher without state features (``features=()``, a static loss) under
  ``memory='checkpointed'`` (was a ZeroDivisionError in the segment reshape), and
  its checkpoints (orbax refuses zero-size arrays);
* NaN/inf in concrete batches given to ``hypergrad.hypergradient`` (was a silent NaN);
* labels out of range and a batch larger than the training split (``classification.run``);
* a workdir that cannot be created (CLI: exit status 2, no traceback).
"""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dlf_jax
from dlf_jax import hypergrad, measures, models, unroll
from dlf_jax import student as student_lib
from dlf_jax import teacher as teacher_lib
from dlf_jax.data import images
from dlf_jax.estimators import ReverseMode
from dlf_jax.teaching import teach
from experiments.tasks import classification
from experiments.workdir import Checkpoints
from experiments.configs import quickstart

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C, T, B = 4, 3, 4


@pytest.fixture(scope="module", autouse=True)
def _fast_compile(fast_compile):
  yield


def _problem(features=(), seed=0):
  """A tiny float32 MLP student and a diagonal attention teacher over ``features``."""
  rng = np.random.default_rng(seed)
  batches = {"x": jnp.asarray(rng.normal(size=(T, B, 5)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, C, size=(T, B)))}
  dev = {"x": jnp.asarray(rng.normal(size=(1, B, 5)), jnp.float32),
         "y": jnp.asarray(rng.integers(0, C, size=(1, B)))}
  student = student_lib.Student(models.MLP(hidden=(6,), num_classes=C),
                                student_lib.make_optimizer("sgd", 0.1), C)
  teacher = teacher_lib.Teacher(
      teacher_lib.AttentionTeacher(num_classes=C, num_matrices=2, parameterisation="diagonal"),
      features=features, total_steps=10)
  theta = teacher.init(jax.random.PRNGKey(1))
  state = student.init(jax.random.PRNGKey(0), {"x": batches["x"][0], "y": batches["y"][0]})
  return student, teacher, theta, state, batches, dev


# ------------------------------------------------------- (1) teacher without state features


def test_checkpointed_hypergradient_without_state_features():
  student, teacher, theta, state, batches, dev = _problem(features=())
  fn = lambda memory, k=None: hypergrad.hypergradient(
      student, teacher, measures.ExpectedAccuracy(), theta, state, batches, dev,
      memory=memory, checkpoint_every=k)
  # One program (one compilation); k = 2: one full segment and a remainder of one step.
  got, ref = jax.jit(lambda: (fn("checkpointed", 2), fn("store_all")))()
  for a, b in zip(jax.tree.leaves(got.dtheta), jax.tree.leaves(ref.dtheta)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
  assert np.isfinite(float(got.value)) and got.metrics.loss.shape == (T,)
  assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(got.dtheta))


def test_teach_checkpointed_without_state_features():
  student, teacher, *_ = _problem(features=())
  rng = np.random.default_rng(0)
  data = lambda n: {"x": rng.normal(size=(n, 5)).astype(np.float32),
                    "y": rng.integers(0, C, size=n)}
  result = teach(student, teacher, data(16), data(8),
                 schedule=dlf_jax.Schedule(unroll_steps=3, num_episodes=1, batch_size=B),
                 dev_sampling=dlf_jax.DevSampling(batch_size=8),
                 estimator=ReverseMode(memory="checkpointed", checkpoint_every=2),
                 progress=False)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(result.theta))
  assert len(result.history) == 1


def test_checkpoints_keep_zero_size_arrays(tmp_path):
  """The score kernel of a ``features=()`` teacher is ``[0, M]``: saved and restored."""
  state = {"kernel": jnp.zeros((0, 2)), "w": jnp.arange(3.0)}
  ckpt = Checkpoints(str(tmp_path / "ckpt"))
  try:
    ckpt.save(1, state, {"note": "x"})
    got = ckpt.restore_state(1, {"kernel": jnp.zeros((0, 2)), "w": jnp.zeros(3)})
  finally:
    ckpt.close()
  assert got["kernel"].shape == (0, 2)
  np.testing.assert_array_equal(got["w"], [0.0, 1.0, 2.0])


# ------------------------------------------------------------- (2) NaN in concrete batches


@pytest.mark.parametrize("which, match", [
    ("batches", r"batches\['x'\] holds 1 NaN/inf value.*nan_to_num"),
    ("dev_batches", r"dev_batches\['x'\] holds 1 NaN/inf value.*nan_to_num")])
def test_hypergradient_rejects_nan_batches(which, match):
  student, teacher, theta, state, batches, dev = _problem(features=("progress",))
  if which == "batches":
    batches = dict(batches, x=batches["x"].at[1, 0, 2].set(jnp.nan))
  else:
    dev = dict(dev, x=np.asarray(dev["x"]).copy())
    dev["x"][0, 0, 0] = np.inf                   # a host (numpy) array works too
  with pytest.raises(ValueError, match=match):
    hypergrad.hypergradient(student, teacher, measures.ExpectedAccuracy(), theta, state,
                            batches, dev)


def test_finite_check_is_skipped_under_jit():
  x = {"x": jnp.array([1.0, jnp.nan]), "y": jnp.array([1, 2])}
  out = jax.jit(lambda b: (unroll.check_finite_inputs(b, "batches"), b["x"].sum())[1])(x)
  assert np.isnan(out)
  unroll.check_finite_inputs({"y": np.array([1, 2]), "x": np.ones(2)}, "batches")   # clean


# ------------------------------------------------------------ (3) data that the config can't use


def _dataset(train_y, dev_y=(0, 1), test_y=(0, 1), num_classes=10):
  split = lambda y: images.Split(x=np.zeros((len(y), 28, 28, 1), np.float32),
                                 y=np.asarray(y, np.int32))
  return images.ImageDataset(name="embedded_mnist", source="test", train=split(train_y),
                             dev=split(dev_y), test=split(test_y), num_classes=num_classes,
                             mean=np.zeros(1, np.float32), std=np.ones(1, np.float32), notes="")


def _smoke():
  config = quickstart.get_config("smoke")
  config.lock()
  return config


@pytest.mark.parametrize("data, match", [
    (_dataset(np.arange(40) % 10, dev_y=(0, 10)),
     r"dev split .* label 10, outside the valid range \[0, 9\]"),
    (_dataset(np.r_[np.arange(39) % 10, -1]),
     r"train split .* label -1, outside the valid range \[0, 9\]"),
    (_dataset(np.arange(10) % 10),
     r"student\.batch_size=32 is larger than the training split \(10 examples\).*"
     r"--config\.student\.batch_size <= 10")])
def test_run_rejects_data_the_config_cannot_use(monkeypatch, tmp_path, data, match):
  monkeypatch.setattr(classification, "load_data", lambda config: data)
  with pytest.raises(ValueError, match=match):
    classification.run(_smoke(), str(tmp_path / "work"))
  assert not os.path.exists(tmp_path / "work" / "config.json")   # a fixed rerun is no conflict


def test_run_names_a_workdir_that_cannot_be_created(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(ValueError, match=r"cannot create workdir .*file.sub: Not a directory"):
    classification.run(_smoke(), str(tmp_path / "file" / "sub"))
  with pytest.raises(ValueError, match=r"cannot create workdir .*file: a file of that name"):
    classification.run(_smoke(), str(tmp_path / "file"))


# -------------------------------------------------------------------------------- CLI


def _cli(*flags):
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  cmd = [sys.executable, "-m", "experiments.main",
         "--config=experiments/configs/quickstart.py:smoke", *flags]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cli_batch_larger_than_the_training_split(tmp_path):
  done = _cli(f"--workdir={tmp_path / 'work'}", "--config.student.batch_size=100000")
  assert done.returncode == 2, done.stderr[-2000:]
  assert "Traceback" not in done.stderr, done.stderr[-2000:]
  assert ("config.student.batch_size=100000 is larger than the training split (500 examples)"
          in done.stderr), done.stderr[-2000:]


def test_cli_workdir_under_a_regular_file(tmp_path):
  (tmp_path / "file").write_text("")
  workdir = tmp_path / "file" / "work"
  done = _cli(f"--workdir={workdir}")
  assert done.returncode == 2, done.stderr[-2000:]
  assert "Traceback" not in done.stderr, done.stderr[-2000:]
  assert f"cannot create workdir {workdir}: Not a directory" in done.stderr, done.stderr[-2000:]


# ------------------------------------------------------------------------- teach / train_student


_SCHEDULE = dlf_jax.Schedule(unroll_steps=2, num_episodes=1, batch_size=4)


def _tiny_image_problem(num_classes=3, n=24, zero_column=False):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  if zero_column:
    x[:, 0] = 0.0          # an input that is always 0: its weights get exactly zero gradient
  y = rng.integers(0, num_classes, n).astype(np.int32)
  student = dlf_jax.Student(models.MLP(hidden=(5,), num_classes=num_classes),
                            dlf_jax.make_optimizer("sgd", 0.1), num_classes=num_classes)
  teacher = dlf_jax.Teacher(dlf_jax.AttentionTeacher(num_classes, num_matrices=2,
                                                     parameterisation="diagonal"),
                            total_steps=8)
  return student, teacher, {"x": x, "y": y}


@pytest.mark.parametrize("split,value", [("train", 3), ("train", -1), ("dev", 3)])
def test_teach_names_labels_outside_the_classes(split, value):
  student, teacher, data = _tiny_image_problem()
  bad = {"x": data["x"], "y": data["y"].copy()}
  bad["y"][5] = value
  train, dev = (bad, data) if split == "train" else (data, bad)
  with pytest.raises(ValueError, match=rf"{split}\['y'\] holds label {value} .* outside \[0, 2\]"):
    dlf_jax.teach(student, teacher, train, dev, schedule=_SCHEDULE, progress=False)
  if split == "train":
    with pytest.raises(ValueError, match=rf"train\['y'\] holds label {value}"):
      dlf_jax.train_student(student, dlf_jax.CrossEntropyLoss(), bad, num_steps=2, batch_size=4,
                            progress=False)
  else:
    with pytest.raises(ValueError, match=r"test\['y'\] holds label 3"):
      dlf_jax.train_student(student, dlf_jax.CrossEntropyLoss(), data, num_steps=2, batch_size=4,
                            test=bad, progress=False)


def test_teacher_optimizer_that_ascends_is_refused():
  student, teacher, data = _tiny_image_problem()
  with pytest.raises(ValueError, match="ascends its gradient"):
    dlf_jax.teach(student, teacher, data, data, teacher_optimizer=optax.sgd(-1.0),
                  schedule=_SCHEDULE, progress=False)


def test_adam_without_eps_root_names_eps_root():
  student, teacher, data = _tiny_image_problem(zero_column=True)
  student = dlf_jax.Student(student.model, optax.adam(1e-2), num_classes=3)
  with pytest.raises(FloatingPointError, match="eps_root"):
    dlf_jax.teach(student, teacher, data, data, schedule=_SCHEDULE, progress=False)
