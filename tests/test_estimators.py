"""The estimator interface of ``teach`` (``dlf_jax.estimators``) and the teach wiring of
the experiments (one builder for the phases and the ablation).

* a toy estimator defined here (one class) runs in ``teach`` through the public
  protocol: the reverse-mode result scaled, checked against ``ReverseMode`` itself;
* PES runs from ``teach`` and from a config, and a run stopped mid-episode and resumed
  from its ``TeachState`` gives bit-identical theta (float64);
* ``teach`` takes at most 14 parameters; the schema's estimator names are the registry's;
* the ablation's teach call honours ``data_parallel`` (a mesh over 2 CPU devices, in a
  subprocess) and an explicit ``teach.segments_per_episode``;
* checkpoints written before ``TeachState.estimator_state`` existed still restore.
"""
import dataclasses
import inspect
import json
import os
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import optax
import pytest
from flax import struct

import dlf_jax
from dlf_jax import estimators, evolution
from dlf_jax.estimators import PES, ReverseMode
from dlf_jax.teaching import DevSampling, Schedule, TeachState, teach
from experiments import ablation, builders, phases, schema, workdir
from experiments.configs import mnist_mlp
from experiments.workdir import Checkpoints

from _numerics import rel_err
from problems import B, C, make_problem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEDULE = Schedule(
    mode="online", unroll_steps=3, num_episodes=2, segments_per_episode=2, batch_size=B)


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compile):
  yield


def _data(seed=0, n_train=32, n_dev=12):
  rng = np.random.default_rng(seed)
  train = {"x": rng.normal(size=(n_train, 6, 6, 1)), "y": rng.integers(0, C, n_train)}
  dev = {"x": rng.normal(size=(n_dev, 6, 6, 1)), "y": rng.integers(0, C, n_dev)}
  return train, dev


def _teach(problem, estimator, init_state=None, callback=None, schedule=SCHEDULE):
  train, dev = _data()
  tx = optax.sgd(0.5)
  if init_state is None:
    init_state = TeachState(theta=problem.theta, opt_state=tx.init(problem.theta), student=None)
  return teach(
      problem.student,
      problem.teacher,
      train,
      dev,
      teacher_optimizer=tx,
      schedule=schedule,
      estimator=estimator,
      dev_sampling=DevSampling(batch_size=6),
      init_state=init_state,
      callback=callback,
      progress=False)


@dataclasses.dataclass(frozen=True)
class ScaledReverse:
  """A toy estimator: ``scale`` x the reverse-mode hypergradient; counts its episodes."""
  name = "scaled_reverse"
  scale: float = 2.0

  def check(self, theta):
    del theta

  def init_state(self, theta, student_state):
    return np.zeros((), np.int32)  # outer steps taken in this episode

  def estimate(self, ctx, theta, state, student_state):
    res, _ = ReverseMode().estimate(ctx, theta, None, student_state)
    dtheta = jax.tree_util.tree_map(lambda g: self.scale * g, res.dtheta)
    return res.replace(dtheta=dtheta), state + 1


def test_a_toy_estimator_runs_in_teach(x64):
  problem = make_problem("mlp", "sgd", "diagonal")
  assert isinstance(ScaledReverse(), dlf_jax.HypergradEstimator)
  toy = _teach(problem, ScaledReverse(2.0))
  # With plain SGD of theta at lr 0.5, scaling the gradient by 2 is lr 1.0.
  train, dev = _data()
  tx = optax.sgd(1.0)
  ref = teach(
      problem.student,
      problem.teacher,
      train,
      dev,
      teacher_optimizer=tx,
      schedule=SCHEDULE,
      dev_sampling=DevSampling(batch_size=6),
      progress=False,
      init_state=TeachState(theta=problem.theta, opt_state=tx.init(problem.theta), student=None))
  assert rel_err(ref.theta, problem.theta) > 1e-6
  assert rel_err(toy.theta, ref.theta) < 1e-12
  assert [r["estimator"] for r in toy.history] == ["scaled_reverse"] * 4
  # Its state rode along: reset at each new student, None after an episode's last segment.
  assert toy.state.estimator_state is None
  states = []
  _teach(problem, ScaledReverse(2.0), callback=lambda s, r: states.append(s.estimator_state))
  assert [None if s is None else int(s) for s in states] == [1, None, 1, None]


def test_pes_runs_from_teach_and_resumes_mid_episode(x64):
  problem = make_problem("mlp", "momentum", "diagonal")
  pes = PES(population=2, sigma=0.05)
  whole = _teach(problem, pes)
  assert [r["estimator"] for r in whole.history] == ["pes"] * 4
  assert rel_err(whole.theta, problem.theta) > 1e-8
  assert all(np.isfinite(r["hypergrad_norm"]) and r["hypergrad_norm"] > 0 for r in whole.history)
  saved = {}

  class Stop(Exception):
    pass

  def stop_after(k):

    def callback(state, record):
      if state.update == k:
        saved["state"] = state
        raise Stop

    return callback

  for k in (1, 3):  # mid-episode in the first and the second episode
    with pytest.raises(Stop):
      _teach(problem, pes, callback=stop_after(k))
    state = saved["state"]
    assert isinstance(state.estimator_state, evolution.PESState)
    assert state.estimator_state.accumulator.shape[0] == 2
    resumed = _teach(problem, pes, init_state=state)
    assert resumed.history[0]["update"] == k
    for a, b in zip(
        jax.tree_util.tree_leaves(resumed.theta), jax.tree_util.tree_leaves(whole.theta)):
      assert np.array_equal(a, b)
  # Resuming PES mid-episode without its particles is refused.
  with pytest.raises(ValueError, match="PES needs its particles"):
    _teach(problem, pes, init_state=saved["state"].replace(estimator_state=None))


def test_teach_takes_at_most_14_parameters_and_names_come_from_the_registry():
  assert len(inspect.signature(teach).parameters) <= 14
  assert schema.ESTIMATORS == tuple(estimators.ESTIMATORS) == ("reverse", "forward", "es", "pes")
  assert estimators.get("pes", population=4) == PES(population=4)
  with pytest.raises(ValueError, match=r"Unknown hypergradient estimator 'adjoint'.*'pes'"):
    estimators.get("adjoint")
  with pytest.raises(ValueError, match=r"'reverse' takes no population.*'method'"):
    estimators.get("reverse", population=4)
  with pytest.raises(ValueError, match="online.*segments_per_episode"):
    Schedule(mode="online").segments(None)
  assert Schedule(mode="online", unroll_steps=10, pretrain_steps=5).segments(60) == 5


# ----------------------------------------------------------------------------- configs


def _config(**teach):
  config = mnist_mlp.get_config("smoke")
  for key, value in teach.items():
    *parents, leaf = key.split(".")
    schema.get(config, ".".join(["teach", *parents]))[leaf] = value
  return config


def test_config_estimator_section_and_moved_keys():
  config = _config(**{
      "estimator.name": "pes",
      "estimator.pes.population": 2,
      "estimator.pes.reward": "dev_accuracy"
  })
  schema.validate(config, schema.CLASSIFICATION)
  student = builders.build_student(config, 3)
  est = builders.build_estimator(config, student)
  assert isinstance(est, PES) and est.population == 2
  assert est.reward is evolution.dev_accuracy_reward(student)
  bad = ml_collections.ConfigDict(config.to_dict())
  bad.teach.estimator.pes.sigma2 = 0.1
  with pytest.raises(ValueError, match=r"teach\.estimator\.pes\.sigma2=0\.1 .*takes "):
    schema.validate(bad, schema.CLASSIFICATION)
  old = ml_collections.ConfigDict(_config().to_dict())
  old.teach.method = "vjp"
  with pytest.raises(
      ValueError,
      match=r"config\.teach\.method is no longer a key: set "
      r"config\.teach\.estimator\.reverse\.method"):
    schema.validate(old, schema.CLASSIFICATION)


def _splits(n=64, seed=0):
  rng = np.random.default_rng(seed)
  make = lambda m: {"x": rng.normal(size=(m, 4)).astype(np.float32), "y": rng.integers(0, 3, m)}
  return {"train": make(n), "dev": make(32), "val": make(16), "test": make(16)}


def _captured_teach(monkeypatch):
  calls = []

  class Stop(Exception):
    pass

  def fake_teach(student, teacher, train, dev, **kwargs):
    calls.append(kwargs)
    raise Stop

  monkeypatch.setattr(dlf_jax, "teach", fake_teach)
  return calls, Stop


def test_ablation_honours_an_explicit_segments_per_episode(tmp_path, monkeypatch):
  config = _config()
  assert config.teach.segments_per_episode == 3 and config.teach.mode == "online"
  cfg = ablation.apply_overrides(config, {"teach.learning_rate": 0.1}, tuned_eps=0.1)
  assert cfg.teach.segments_per_episode == 3
  # The full-horizon row asks for one segment of the whole run.
  full = ablation.apply_overrides(cfg, ablation.VARIANTS["full_horizon"][1], tuned_eps=0.1)
  assert full.teach.segments_per_episode is None
  assert full.teach.estimator.reverse.memory == "checkpointed"
  runner = ablation.Runner(cfg, str(tmp_path), _splits(), 3)
  calls, stop = _captured_teach(monkeypatch)
  for c in (cfg, full):
    with pytest.raises(stop):
      runner.teach(c)
  teacher = builders.build_teacher(cfg, 3)
  assert calls[0]["schedule"].num_updates(teacher.total_steps) == 2 * 3
  assert calls[1]["schedule"].num_updates(teacher.total_steps) == 8 * 1
  assert calls[1]["estimator"] == ReverseMode(memory="checkpointed")
  # The same arguments as the experiment phases build (one builder).
  assert calls[0].keys() - {"measure", "callback"} == builders.build_teach_args(
      cfg, runner.student).keys()


def test_ablation_runs_pes_from_a_config(tmp_path):
  config = _config(
      **{
          "estimator.name": "pes",
          "estimator.pes.population": 2,
          "num_episodes": 1,
          "segments_per_episode": 2
      })
  runner = ablation.Runner(config, str(tmp_path), _splits(), 3)
  taught = runner.teach(config)
  assert taught["updates"] == [0, 1, 2]
  assert len(taught["history"]) == 2
  assert rel_err(taught["snapshots"][-1], taught["snapshots"][0]) > 0


def test_ablation_teach_gets_a_mesh_when_data_parallel(tmp_path):
  script = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
      import jax
      assert jax.device_count() == 2, jax.devices()
      import dlf_jax
      from test_estimators import _config, _splits
      from experiments import ablation
      calls = []
      def fake_teach(student, teacher, train, dev, **kwargs):
        calls.append(kwargs)
        raise KeyboardInterrupt
      dlf_jax.teach = fake_teach
      for parallel in (True, False):
        config = _config()
        config.data_parallel = parallel
        runner = ablation.Runner(config, {str(tmp_path)!r}, _splits(), 3)
        try:
          runner.teach(config)
        except KeyboardInterrupt:
          pass
      mesh = calls[0]["mesh"]
      assert mesh is not None and mesh.devices.size == 2, mesh
      assert calls[1]["mesh"] is None
      print("OK")
  """)
  env = dict(
      os.environ,
      XLA_FLAGS="--xla_force_host_platform_device_count=2",
      JAX_PLATFORMS="cpu",
      PYTHONPATH=ROOT)
  done = subprocess.run([sys.executable, "-c", script],
                        cwd=ROOT,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=300)
  assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]


# ------------------------------------------------------------------------- checkpoints


@struct.dataclass
class _TeachStateBefore:
  """``TeachState`` as checkpoints were written before ``estimator_state`` existed."""
  theta: object
  opt_state: object
  student: object
  update: int = struct.field(pytree_node=False, default=0)


@pytest.mark.parametrize("kind", ["before", "stateless", "pes"])
def test_teach_checkpoints_restore_with_and_without_estimator_state(tmp_path, kind):
  """Checkpoints of before ``estimator_state`` existed, of a stateless estimator and of PES
  mid-episode restore through the phases' template."""
  config = _config()
  teacher = builders.build_teacher(config, 3)
  student = builders.build_student(config, 3)
  tx, pes = optax.adam(1e-2), PES(population=2)
  theta = jax.tree_util.tree_map(lambda a: a + 1.0, teacher.init(jax.random.PRNGKey(0)))
  example = lambda: student.init(
      jax.random.PRNGKey(3), {
          "x": np.ones((2, 4), np.float32),
          "y": np.zeros(2, np.int32)
      })
  if kind == "before":
    state = _TeachStateBefore(theta=theta, opt_state=tx.init(theta), student=None, update=2)
    meta = {"update": 2, "has_student": False}
  else:
    est_state = pes.init_state(theta, example()) if kind == "pes" else None
    state = TeachState(
        theta=theta,
        opt_state=tx.init(theta),
        student=example() if kind == "pes" else None,
        estimator_state=est_state,
        update=2)
    meta = {"update": 2, "has_student": kind == "pes", "has_estimator_state": kind == "pes"}
  ckpt = Checkpoints(str(tmp_path / "ckpt"))
  try:
    ckpt.save(2, state, meta)
    meta = ckpt.restore_meta(2)
    template = phases.teach_state_template(meta, teacher, tx, pes, example)
    got = TeachState(**ckpt.restore_state(2, template), update=meta["update"])
  finally:
    ckpt.close()
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(state)):
    assert np.array_equal(a, b)
  assert (got.estimator_state is None) == (kind != "pes")
  if kind == "pes":
    assert isinstance(got.estimator_state, evolution.PESState)


def _old_config_json(config, memory="store_all"):
  """``config.json`` as runs wrote it before ``teach.estimator`` became a sub-config."""
  saved = json.loads(config.to_json_best_effort())
  saved["teach"].pop("estimator")
  saved["teach"].update(
      estimator="reverse",
      method="auto",
      memory=memory,
      checkpoint_every=None,
      chunk_steps=None,
      forward_max_params=256,
      es_population=8,
      es_sigma=0.01)
  return saved


@pytest.mark.parametrize("memory", ["store_all", "checkpointed"])
def test_a_workdir_written_before_the_estimator_section_resumes(tmp_path, memory):
  config = _config()
  with open(tmp_path / "config.json", "w") as f:
    json.dump(_old_config_json(config, memory), f)
  if memory == "store_all":
    workdir.check_workdir_config(config, str(tmp_path))
  else:
    with pytest.raises(
        workdir.WorkdirConfigError,
        match=r"teach\.estimator\.reverse\.memory = 'checkpointed' there, "
        r"'store_all' now"):
      workdir.check_workdir_config(config, str(tmp_path))


def test_cli_names_the_new_key_of_a_moved_one(tmp_path):
  cmd = [
      sys.executable, "-m", "experiments.main", "--config=experiments/configs/quickstart.py:smoke",
      f"--workdir={tmp_path}", "--config.teach.method=vjp"
  ]
  done = subprocess.run(
      cmd,
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=120,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert done.returncode == 2
  assert ("--config.teach.method is no longer a key: use "
          "--config.teach.estimator.reverse.method") in done.stderr
