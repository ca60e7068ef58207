"""Input guards: each test feeds the failing input of a bug report and checks the message.

* a teacher without state features (``features=()``, a static loss) under
  ``memory='checkpointed'`` (was a ZeroDivisionError in the segment reshape), and
  its checkpoints (orbax refuses zero-size arrays);
* NaN/inf in concrete batches given to ``hypergrad.hypergradient`` (was a silent NaN);
* labels out of range and a batch larger than the training split (``classification.run``);
* a workdir that cannot be created (CLI: exit status 2, no traceback);
* round two, the library: teacher sizes, labels of the public functions, loss-form
  shapes and values, non-float inputs, the student's and teacher's optimizer
  (sign, zero, type, Adam constants), integer sizes, dev/test features against train.
"""
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import dlf_jax
from dlf_jax import hypergrad, measures, models, unroll
from dlf_jax import student as student_lib
from dlf_jax import teacher as teacher_lib
from dlf_jax.data import images
from dlf_jax.estimators import ReverseMode
from dlf_jax.teaching import teach
from experiments.tasks import classification
from experiments import workdir as workdir_lib
from experiments.workdir import Checkpoints, InterruptHandler
from experiments.configs import quickstart

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C, T, B = 4, 3, 4


@pytest.fixture(scope="module", autouse=True)
def _fast_compile(fast_compile):
  yield


def _problem(features=(), seed=0):
  """A tiny float32 MLP student and a diagonal attention teacher over ``features``."""
  rng = np.random.default_rng(seed)
  batches = {
      "x": jnp.asarray(rng.normal(size=(T, B, 5)), jnp.float32),
      "y": jnp.asarray(rng.integers(0, C, size=(T, B)))
  }
  dev = {
      "x": jnp.asarray(rng.normal(size=(1, B, 5)), jnp.float32),
      "y": jnp.asarray(rng.integers(0, C, size=(1, B)))
  }
  student = student_lib.Student(
      models.MLP(hidden=(6,), num_classes=C), student_lib.make_optimizer("sgd", 0.1), C)
  teacher = teacher_lib.Teacher(
      teacher_lib.AttentionTeacher(num_classes=C, num_matrices=2, parameterisation="diagonal"),
      features=features,
      total_steps=10)
  theta = teacher.init(jax.random.PRNGKey(1))
  state = student.init(jax.random.PRNGKey(0), {"x": batches["x"][0], "y": batches["y"][0]})
  return student, teacher, theta, state, batches, dev


# ------------------------------------------------------- (1) teacher without state features


def test_checkpointed_hypergradient_without_state_features():
  student, teacher, theta, state, batches, dev = _problem(features=())
  fn = lambda memory, k=None: hypergrad.hypergradient(
      student,
      teacher,
      measures.ExpectedAccuracy(),
      theta,
      state,
      batches,
      dev,
      memory=memory,
      checkpoint_every=k)
  # One program (one compilation); k = 2: one full segment and a remainder of one step.
  got, ref = jax.jit(lambda: (fn("checkpointed", 2), fn("store_all")))()
  for a, b in zip(jax.tree.leaves(got.dtheta), jax.tree.leaves(ref.dtheta)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
  assert np.isfinite(float(got.value)) and got.metrics.loss.shape == (T,)
  assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(got.dtheta))


def test_teach_checkpointed_without_state_features():
  student, teacher, *_ = _problem(features=())
  rng = np.random.default_rng(0)
  data = lambda n: {
      "x": rng.normal(size=(n, 5)).astype(np.float32),
      "y": rng.integers(0, C, size=n)
  }
  result = teach(
      student,
      teacher,
      data(16),
      data(8),
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


def test_ctrl_c_during_a_checkpoint_save_waits_for_it(tmp_path, monkeypatch):
  """SIGINT mid-save: the save completes, then KeyboardInterrupt; no temporary folder left."""
  real_save = ocp.CheckpointManager.save

  def interrupted_save(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as orbax starts writing
    return real_save(self, *args, **kwargs)

  state = {"w": jnp.arange(3.0)}
  ckpt = Checkpoints(str(tmp_path / "ckpt"))
  # Python's own Ctrl-C handler, whatever the test runner set (a background job ignores SIGINT).
  runner_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    ckpt.save(1, state, {"note": "first"})
    monkeypatch.setattr(ocp.CheckpointManager, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
      ckpt.save(2, state, {"note": "second"})
    assert ckpt.latest_step() == 2
    assert ckpt.restore_meta(2) == {"note": "second"}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    # An ignored SIGINT stays ignored: the save runs, nothing is raised.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ckpt.save(3, state, {"note": "third"})
    assert ckpt.latest_step() == 3 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
  finally:
    signal.signal(signal.SIGINT, runner_handler)
    ckpt.close()
  assert sorted(os.listdir(tmp_path / "ckpt")) == ["2", "3"]  # no *.orbax-checkpoint-tmp


# ------------------------------------------------------------- (2) NaN in concrete batches


@pytest.mark.parametrize("which, match",
                         [("batches", r"batches\['x'\] holds 1 NaN/inf value.*nan_to_num"),
                          ("dev_batches", r"dev_batches\['x'\] holds 1 NaN/inf value.*nan_to_num")])
def test_hypergradient_rejects_nan_batches(which, match):
  student, teacher, theta, state, batches, dev = _problem(features=("progress",))
  if which == "batches":
    batches = dict(batches, x=batches["x"].at[1, 0, 2].set(jnp.nan))
  else:
    dev = dict(dev, x=np.asarray(dev["x"]).copy())
    dev["x"][0, 0, 0] = np.inf  # a host (numpy) array works too
  with pytest.raises(ValueError, match=match):
    hypergrad.hypergradient(student, teacher, measures.ExpectedAccuracy(), theta, state, batches,
                            dev)


def test_finite_check_is_skipped_under_jit():
  x = {"x": jnp.array([1.0, jnp.nan]), "y": jnp.array([1, 2])}
  out = jax.jit(lambda b: (unroll.check_finite_inputs(b, "batches"), b["x"].sum())[1])(x)
  assert np.isnan(out)
  unroll.check_finite_inputs({"y": np.array([1, 2]), "x": np.ones(2)}, "batches")  # clean


# ------------------------------------------------------------ (3) data that the config can't use


def _dataset(train_y, dev_y=(0, 1), test_y=(0, 1), num_classes=10):
  split = lambda y: images.Split(
      x=np.zeros((len(y), 28, 28, 1), np.float32), y=np.asarray(y, np.int32))
  return images.ImageDataset(
      name="embedded_mnist",
      source="test",
      train=split(train_y),
      dev=split(dev_y),
      test=split(test_y),
      num_classes=num_classes,
      mean=np.zeros(1, np.float32),
      std=np.ones(1, np.float32),
      notes="")


def _smoke():
  config = quickstart.get_config("smoke")
  config.lock()
  return config


@pytest.mark.parametrize(
    "data, match",
    [(_dataset(np.arange(40) % 10,
               dev_y=(0, 10)), r"dev split .* label 10, outside the valid range \[0, 9\]"),
     (_dataset(np.r_[np.arange(39) % 10,
                     -1]), r"train split .* label -1, outside the valid range \[0, 9\]"),
     (_dataset(np.arange(10) % 10),
      r"student\.batch_size=32 is larger than the training split \(10 examples\).*"
      r"--config\.student\.batch_size <= 10")])
def test_run_rejects_data_the_config_cannot_use(monkeypatch, tmp_path, data, match):
  monkeypatch.setattr(classification, "load_data", lambda config: data)
  with pytest.raises(ValueError, match=match):
    classification.run(_smoke(), str(tmp_path / "work"))
  assert not os.path.exists(tmp_path / "work" / "config.json")  # a fixed rerun is no conflict


def test_a_refused_run_does_not_pin_the_workdir(tmp_path):
  # Refused after config.json was written (the forward-mode size limit is checked
  # when teaching starts): the workdir must not then refuse the suggested fix.
  workdir = str(tmp_path / "work")
  config = quickstart.get_config("smoke")
  config.teach.estimator.name = "forward"
  config.teach.estimator.forward.max_params = 1
  with pytest.raises(ValueError, match=r"max_params=1\b.*estimator='reverse'"):
    classification.run(config, workdir)
  assert not os.path.exists(os.path.join(workdir, "config.json"))
  workdir_lib.check_workdir_config(_smoke(), workdir)  # the fix: no conflict
  # A run that has recorded progress keeps its claim, interrupted or not.
  other = str(tmp_path / "other")
  os.makedirs(other)
  with pytest.raises(KeyboardInterrupt):
    with workdir_lib.claim_workdir(_smoke(), other):
      os.makedirs(os.path.join(other, "runs"))
      with open(os.path.join(other, "runs", "ce_seed0.json"), "w") as f:
        f.write("{}")
      raise KeyboardInterrupt
  with pytest.raises(ValueError, match="different config"):
    workdir_lib.check_workdir_config(config, other)


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
  cmd = [
      sys.executable, "-m", "experiments.main", "--config=experiments/configs/quickstart.py:smoke",
      *flags
  ]
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
    x[:, 0] = 0.0  # an input that is always 0: its weights get exactly zero gradient
  y = rng.integers(0, num_classes, n).astype(np.int32)
  student = dlf_jax.Student(
      models.MLP(hidden=(5,), num_classes=num_classes),
      dlf_jax.make_optimizer("sgd", 0.1),
      num_classes=num_classes)
  teacher = dlf_jax.Teacher(
      dlf_jax.AttentionTeacher(num_classes, num_matrices=2, parameterisation="diagonal"),
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
      dlf_jax.train_student(
          student, dlf_jax.CrossEntropyLoss(), bad, num_steps=2, batch_size=4, progress=False)
  else:
    with pytest.raises(ValueError, match=r"test\['y'\] holds label 3"):
      dlf_jax.train_student(
          student,
          dlf_jax.CrossEntropyLoss(),
          data,
          num_steps=2,
          batch_size=4,
          test=bad,
          progress=False)


def test_teacher_optimizer_that_ascends_is_refused():
  student, teacher, data = _tiny_image_problem()
  with pytest.raises(ValueError, match="ascends its gradient"):
    dlf_jax.teach(
        student,
        teacher,
        data,
        data,
        teacher_optimizer=optax.sgd(-1.0),
        schedule=_SCHEDULE,
        progress=False)


def test_adam_without_eps_root_names_eps_root():
  student, teacher, data = _tiny_image_problem(zero_column=True)
  student = dlf_jax.Student(student.model, optax.adam(1e-2), num_classes=3)
  with pytest.raises(
      FloatingPointError,
      match=r"eps_root >= 1.2e-38 .*e\.g\. 1e-45.*"
      r"make_optimizer\('adam', lr\) \(eps_root=1e-8"):
    dlf_jax.teach(student, teacher, data, data, schedule=_SCHEDULE, progress=False)


# ------------------------------------------------------------------------- round two (library)
# The setup of the issue: a 3-class MLP((8,)) student, 64 training and 32 dev examples of
# 8 float32 features. Every check below fires before anything is compiled.


def _round_two(tx=None):
  rng = np.random.default_rng(0)
  split = lambda n: {
      "x": rng.normal(size=(n, 8)).astype(np.float32),
      "y": rng.integers(0, 3, n).astype(np.int32)
  }
  student = dlf_jax.Student(
      models.MLP((8,), num_classes=3), tx or dlf_jax.make_optimizer("sgd", 0.1), num_classes=3)
  teacher = dlf_jax.Teacher(dlf_jax.AttentionTeacher(3, num_matrices=2), total_steps=8)
  return student, teacher, split(64), split(32)


_SCHEDULE_16 = dlf_jax.Schedule(unroll_steps=2, num_episodes=1, batch_size=16)


def _teach(student, teacher, train, dev, **kw):
  kw.setdefault("schedule", _SCHEDULE_16)
  return dlf_jax.teach(student, teacher, train, dev, progress=False, **kw)


def _train(student, train, **kw):
  kw.setdefault("batch_size", 16)
  kw.setdefault("num_steps", 2)
  return dlf_jax.train_student(student, dlf_jax.CrossEntropyLoss(), train, progress=False, **kw)


@pytest.mark.parametrize("build, match", [
    (lambda: dlf_jax.AttentionTeacher(num_classes=3, num_matrices=0),
     r"AttentionTeacher\.num_matrices must be an integer >= 1, got 0; an empty bank is W = 0"),
    (lambda: dlf_jax.AttentionTeacher(num_classes=3, num_matrices=2.5),
     r"AttentionTeacher\.num_matrices must be an integer >= 1, got 2\.5 \(a float\)"),
    (lambda: dlf_jax.AttentionTeacher(num_classes=0),
     r"AttentionTeacher\.num_classes must be an integer >= 2, got 0; set it to the student's"),
    (lambda: dlf_jax.MLPTeacher(num_classes=3, hidden=0),
     r"MLPTeacher\.hidden must be an integer >= 1, got 0; the MLP's width"),
    (lambda: dlf_jax.MLPTeacher(num_classes=3, parameterisation="low_rank", rank=0),
     r"MLPTeacher\.rank must be an integer >= 1, got 0"),
    (lambda: dlf_jax.Teacher(dlf_jax.MLPTeacher(num_classes=3), features=()),
     r"MLPTeacher reads the state s_t but features=\(\): give it state features"),
    (lambda: dlf_jax.Teacher(dlf_jax.AttentionTeacher(3), total_steps=10.5),
     r"total_steps must be an integer >= 1, got 10\.5"),
])
def test_teacher_sizes_are_refused_at_construction(build, match):
  with pytest.raises(ValueError, match=match):
    build()


def test_hypergradient_checks_concrete_labels_of_both_splits():
  student, teacher, train, dev = _round_two()
  theta = teacher.init(jax.random.PRNGKey(1))
  state = student.init(jax.random.PRNGKey(0), {"x": train["x"][:4], "y": train["y"][:4]})
  batches = {"x": train["x"][:8].reshape(2, 4, 8), "y": train["y"][:8].reshape(2, 4)}
  call = lambda b, d: dlf_jax.hypergradient(student, teacher, dlf_jax.ExpectedAccuracy(), theta,
                                            state, b, d)
  for value in (3, -1):  # C: NaN measure, finite dtheta; -1: read as class C - 1
    dev_batches = {"x": dev["x"][None, :4], "y": dev["y"][None, :4].copy()}
    dev_batches["y"][0, 1] = value
    with pytest.raises(
        ValueError,
        match=rf"dev_batches\['y'\] holds label {value} \(1 bad in "
        r"all\), outside \[0, 2\] for num_classes=3"):
      call(batches, dev_batches)
    with pytest.raises(ValueError, match=rf"batches\['y'\] holds label {value}"):
      unroll.evaluate(student, state.params, state.model_state, dev_batches)
  bad = dict(batches, y=batches["y"].copy())
  bad["y"][1, 3] = -1
  with pytest.raises(ValueError, match=r"batches\['y'\] holds label -1"):
    call(bad, {"x": dev["x"][None, :4], "y": dev["y"][None, :4]})


def test_losses_check_concrete_labels_and_document_traced_ones():
  phi = dlf_jax.losses.identity_loss_params(3)
  logits, bad = jnp.zeros((2, 3)), jnp.array([0, -1])
  with pytest.raises(ValueError, match=r"labels holds label -1 .* outside \[0, 2\]"):
    dlf_jax.parametric_loss(phi, logits, bad)
  with pytest.raises(ValueError, match=r"labels holds label 3 .* outside \[0, 2\]"):
    dlf_jax.losses.cross_entropy(logits, jnp.array([3, 0]))
  # A masked-out (padding) label is not a class id and is not checked.
  padded = dlf_jax.parametric_loss(phi, logits, bad, mask=jnp.array([1, 0]))
  np.testing.assert_allclose(padded, jax.nn.sigmoid(np.log(3.0)), rtol=1e-6)
  # Traced labels cannot be read: under jit the caller (teach, train_student) checks them.
  assert np.isfinite(jax.jit(lambda y: dlf_jax.parametric_loss(phi, logits, y))(bad))


@pytest.mark.parametrize("phi, match", [
    (lambda: dlf_jax.DiagonalW(jnp.ones((3, 3)), jnp.zeros(3)),
     r"DiagonalW\.w must be the diagonal, a \[C\] vector \(for a dense \[C, C\] W use FullW\), "
     r"got shape \(3, 3\)"),
    (lambda: dlf_jax.FullW(jnp.ones(
        (4, 3)), jnp.zeros(3)), r"FullW\.w must be a square \[C, C\] matrix .* got shape \(4, 3\)"),
    (lambda: dlf_jax.losses.LogitOffsetW(jnp.zeros(
        (3, 3)), jnp.zeros(3)), r"LogitOffsetW\.delta must be a \[C\] vector"),
    (lambda: dlf_jax.SoftTargetW(jnp.full(3, 1.5), jnp.zeros(3)),
     r"SoftTargetW\.eps must be in \[0, 1\) .* got 1\.5"),
    (lambda: dlf_jax.SoftTargetW(jnp.full(3, -0.1), jnp.zeros(3)),
     r"SoftTargetW\.eps must be in \[0, 1\) .* got -0\.1"),
    (lambda: dlf_jax.SoftTargetW(jnp.full(3, 0.1), jnp.zeros(3), q=jnp.array([-0.5, 1.0, 0.5])),
     r"SoftTargetW\.q must hold distributions \(non-negative, each column summing to 1\): got "
     r"min -0\.5"),
    (lambda: dlf_jax.SoftTargetW(jnp.full(3, 0.1), jnp.zeros(3), q=jnp.full(
        (3, 3), 0.5)), r"SoftTargetW\.q must hold distributions .* sums \[1\.5, 1\.5, 1\.5\]"),
])
def test_loss_forms_check_shapes_and_values(phi, match):
  with pytest.raises(ValueError, match=match):
    dlf_jax.parametric_loss(phi(), jnp.zeros((2, 3)), jnp.array([0, 1]))


def test_soft_target_create_checks_q_and_a_float_bias_is_a_scalar_bias():
  with pytest.raises(ValueError, match=r"q must hold distributions .* min -0\.5"):
    dlf_jax.SoftTargetW.create(jnp.full(3, 0.1), q=jnp.array([-0.5, 1.0, 0.5]))
  logits, labels = jnp.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]), jnp.array([0, 1])
  with_float = dlf_jax.parametric_loss(dlf_jax.FullW(jnp.eye(3), 0.25), logits, labels)
  with_array = dlf_jax.parametric_loss(dlf_jax.FullW(jnp.eye(3), jnp.asarray(0.25)), logits, labels)
  np.testing.assert_array_equal(with_float, with_array)


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_])
def test_non_float_features_are_refused_with_the_conversion(dtype):
  student, teacher, train, dev = _round_two()
  raw = dict(train, x=(np.random.default_rng(0).integers(0, 256, (64, 8))).astype(dtype))
  match = (rf"train\['x'\] has dtype {np.dtype(dtype).name}: the student's inputs must be float "
           r"features .* x\.astype\(np\.float32\) / 255")
  with pytest.raises(ValueError, match=match):
    _train(student, raw)
  with pytest.raises(ValueError, match=match):
    _teach(student, teacher, raw, dev)
  with pytest.raises(ValueError, match=match.replace("train", "dev")):
    _teach(student, teacher, train, dict(dev, x=raw["x"][:32]))


@pytest.mark.parametrize("tx", [
    lambda: dlf_jax.make_optimizer("sgd", optax.constant_schedule(-0.1)),
    lambda: optax.sgd(-0.1),
    lambda: optax.chain(optax.clip(1.0), optax.sgd(optax.linear_schedule(0.0, -0.1, 10))),
])
def test_student_optimizer_that_ascends_is_refused(tx):
  student, teacher, train, dev = _round_two(tx())
  match = r"student\.tx \(the student's optimizer\) ascends its gradient .* negative learning rate"
  with pytest.raises(ValueError, match=match):
    _train(student, train)
  with pytest.raises(ValueError, match=match):
    _teach(student, teacher, train, dev)


def test_zero_updates_are_refused_and_a_warmup_from_zero_is_not():
  student, teacher, train, dev = _round_two()
  with pytest.raises(
      ValueError,
      match=r"teacher_optimizer's first 2 updates are zero: a "
      r"learning rate of 0 .* never move the teacher"):
    _teach(student, teacher, train, dev, teacher_optimizer=optax.sgd(0.0))
  frozen, *_ = _round_two(optax.sgd(0.0))
  with pytest.raises(ValueError, match=r"student\.tx .* first 2 updates are zero"):
    _train(frozen, train)
  params = {"w": jnp.zeros((8, 3)), "b": jnp.zeros(3)}
  dlf_jax.teaching.check_descent(optax.sgd(optax.linear_schedule(0.0, 0.1, 10)), params)
  dlf_jax.teaching.check_descent(dlf_jax.make_optimizer("adam", 1e-3, weight_decay=1e-4), params)


@pytest.mark.parametrize("kw, match", [
    (dict(name="sgd", learning_rate="0.1"),
     r"learning_rate must be a real number, got '0\.1' \(str\): pass learning_rate=0\.1"),
    (dict(name="sgd", learning_rate=-0.1), r"learning_rate must be > 0, got -0\.1"),
    (dict(name="adam", learning_rate=0.01, eps_root=1e-45),
     r"eps_root=1e-45 is below float32's smallest normal number 1\.18e-38.* use eps_root=1e-8"),
    (dict(name="adam", learning_rate=0.01, eps_root=0.0), r"eps_root must be > 0, got 0\.0"),
    (dict(name="adam", learning_rate=0.01,
          b2=1.5), r"b2 must be in \[0, 1\), got 1\.5; e\.g\. b2=0\.999"),
    (dict(name="adam", learning_rate=0.01, b1=-0.1), r"b1 must be in \[0, 1\), got -0\.1"),
    (dict(name="adam", learning_rate=0.01, eps=-1e-8), r"eps must be >= 0, got -1e-08"),
    (dict(name="momentum", learning_rate=0.1,
          momentum=1.0), r"momentum must be in \[0, 1\), got 1\.0"),
    (dict(name="sgd", learning_rate=0.1,
          weight_decay=-1e-4), r"weight_decay must be >= 0, got -0\.0001"),
])
def test_make_optimizer_refuses_bad_constants(kw, match):
  with pytest.raises(ValueError, match=match):
    dlf_jax.make_optimizer(**kw)


@pytest.mark.parametrize("call, match", [
    (lambda: dlf_jax.Schedule(batch_size=16.5),
     r"Schedule\.batch_size must be an integer >= 1, got 16\.5 \(a float\): round it, e\.g\. "
     r"batch_size=16"),
    (lambda: dlf_jax.Schedule(unroll_steps=0), r"Schedule\.unroll_steps \(T\) must be an integer"),
    (lambda: dlf_jax.Schedule(num_episodes=np.float64(2.0)), r"Schedule\.num_episodes must be"),
    (lambda: dlf_jax.DevSampling(batch_size=2.5), r"DevSampling\.batch_size must be an integer"),
    (lambda: dlf_jax.DevSampling(sample_size=0),
     r"DevSampling\.sample_size must be None or an integer >= 1, got 0"),
    (lambda: dlf_jax.WarmStart(steps=-1), r"WarmStart\.steps must be an integer >= 0, got -1"),
    (lambda: dlf_jax.estimators.ReverseMode(checkpoint_every=1.5),
     r"ReverseMode\.checkpoint_every must be None or an integer >= 1, got 1\.5"),
    (lambda: dlf_jax.estimators.ForwardMode(chunk_steps=-3),
     r"ForwardMode\.chunk_steps must be None or an integer >= 1, got -3"),
    (lambda: dlf_jax.estimators.AntitheticES(population=8.0),
     r"population must be an integer >= 2, got 8\.0"),
    (lambda: dlf_jax.estimators.PES(chunk_size=0), r"chunk_size must be None or an integer >= 1"),
])
def test_sizes_name_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.parametrize("kw, match", [
    (dict(batch_size=16.5), r"^batch_size must be an integer >= 1, got 16\.5"),
    (dict(seed=-1), r"^seed must be an integer >= 0, got -1"),
    (dict(num_steps=2.5), r"^num_steps must be an integer >= 1, got 2\.5"),
    (dict(eval_every=0), r"^eval_every must be an integer >= 1, got 0"),
    (dict(eval_batch_size=True), r"^eval_batch_size must be an integer >= 1, got True"),
])
def test_train_student_sizes_name_the_argument(kw, match):
  student, _, train, _ = _round_two()
  with pytest.raises(ValueError, match=match):
    _train(student, train, **kw)


def test_teach_seed_names_the_argument():
  student, teacher, train, dev = _round_two()
  with pytest.raises(ValueError, match=r"^seed must be an integer >= 0, got -1"):
    _teach(student, teacher, train, dev, seed=-1)


def test_evaluation_splits_are_checked_against_train():
  student, teacher, train, dev = _round_two()
  narrow = dict(dev, x=dev["x"][:, :5])
  with pytest.raises(
      ValueError,
      match=r"dev\['x'\] has examples of shape \(5,\) but the "
      r"training split's are \(8,\)"):
    _teach(student, teacher, train, narrow)
  with pytest.raises(ValueError, match=r"test\['x'\] has examples of shape \(5,\)"):
    _train(student, train, test=narrow)
  short = dict(dev, y=dev["y"][:30])
  with pytest.raises(
      ValueError,
      match=r"The arrays of dev disagree on the number of examples: "
      r"\{'x': 32, 'y': 30\}"):
    _teach(student, teacher, train, short)
  with pytest.raises(ValueError, match=r"The arrays of test disagree"):
    _train(student, train, test=short)
  with pytest.raises(ValueError, match=r"The arrays of train disagree .* \{'x': 64, 'y': 60\}"):
    _train(student, dict(train, y=train["y"][:60]))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost one
def test_a_ctrl_c_lost_in_a_gc_callback_is_raised_at_the_next_save(tmp_path):
  """A SIGINT whose KeyboardInterrupt was swallowed ("Exception ignored in: <function
  _xla_gc_callback>") stops the run at the next checkpoint, before it is written."""
  import gc  # pylint: disable=import-outside-toplevel

  handler = InterruptHandler()
  ckpt = Checkpoints(str(tmp_path / "ckpt"))
  runner_handler = signal.signal(signal.SIGINT, handler)

  def swallowing_callback(phase, info):  # as Python treats an exception in a gc callback
    del info
    if phase == "start":
      os.kill(os.getpid(), signal.SIGINT)

  gc.callbacks.append(swallowing_callback)
  try:
    gc.collect()  # the handler runs inside the callback: its KeyboardInterrupt is lost
    gc.callbacks.remove(swallowing_callback)
    assert handler.received
    with pytest.raises(KeyboardInterrupt):
      ckpt.save(1, {"w": jnp.arange(3.0)}, {"note": "after the lost Ctrl-C"})
    assert ckpt.latest_step() is None  # nothing written after the interrupt
    assert signal.getsignal(signal.SIGINT) is handler
  finally:
    if swallowing_callback in gc.callbacks:
      gc.callbacks.remove(swallowing_callback)
    signal.signal(signal.SIGINT, runner_handler)
    ckpt.close()
