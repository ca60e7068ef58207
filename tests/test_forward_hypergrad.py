"""Tests of dlf_jax.forward_hypergrad (forward mode) and the estimators of ``teach``.

Numerical truth, in float64: the reverse scan (``hypergrad.hypergradient``,
``method='vjp'``), ``jax.grad`` through the scan (``method='autodiff'``) and
central finite differences (state features that do not depend on the student).
The tiny problems come from ``test_hypergrad.make_problem``.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlf_jax import forward_hypergrad as fh
from dlf_jax import hypergrad, measures, unroll
from dlf_jax.estimators import AntitheticES, ForwardMode, ReverseMode
from dlf_jax.teaching import DevSampling, Schedule, TeachState, teach

from _numerics import leaf_central_difference, rel_err
from problems import B, C, T, count_eqns, make_problem

MAX_REL_ERR = {"reverse": 0.0, "autodiff": 0.0, "chunked": 0.0, "finite_diff": 0.0, "teach": 0.0}
_CACHE = {}
SCHEDULE = Schedule(
    mode="online", unroll_steps=4, num_episodes=1, segments_per_episode=2, batch_size=B)


@pytest.fixture(scope="module", autouse=True)
def _fast_compile_and_report(fast_compile):
  yield
  print("\nmax relative errors observed:", MAX_REL_ERR)


def _record(kind, err):
  MAX_REL_ERR[kind] = max(MAX_REL_ERR[kind], float(err))
  return err


# Compilation dominates: ``jax.grad`` through the scan (the costliest program) is the
# reference for every case here (``AUTODIFF_CASES``); a case outside it would compare
# with the reverse scan only, which test_hypergrad checks against autodiff.
AUTODIFF_CASES = {("mlp", "sgd"), ("mlp", "momentum"), ("mlp", "adam"), ("convbn", "adam")}


def results(model, opt):
  """(problem, {forward, reverse[, autodiff]}) computed by one compiled program."""
  if (model, opt) not in _CACHE:
    problem = make_problem(model, opt, "full")
    m = measures.ExpectedAccuracy()
    fns = {
        "forward":
            functools.partial(fh.forward_hypergradient, problem.student, problem.teacher, m),
        "reverse":
            functools.partial(
                hypergrad.hypergradient, problem.student, problem.teacher, m, method="vjp")
    }
    if (model, opt) in AUTODIFF_CASES:
      fns["autodiff"] = functools.partial(
          hypergrad.hypergradient, problem.student, problem.teacher, m, method="autodiff")
    together = jax.jit(lambda *a: {k: f(*a) for k, f in fns.items()})
    _CACHE[model, opt] = problem, together(problem.theta, problem.state, problem.batches,
                                           problem.dev)
  return _CACHE[model, opt]


# Every optimizer on the MLP; on the BatchNorm net (a compile is ~10-20 s) Adam, the
# costliest update (forward mode's tangents do not depend on the model otherwise).
@pytest.mark.parametrize("model, opt", [("mlp", "sgd"), ("mlp", "momentum"), ("mlp", "adam"),
                                        ("convbn", "adam")])
def test_forward_equals_reverse_and_autodiff(x64, model, opt):
  problem, out = results(model, opt)
  got = out["forward"]
  assert got.dparams0 is None
  assert got.dtheta["w_bank"].dtype == jnp.float64
  assert jax.tree.structure(got.dtheta) == jax.tree.structure(problem.theta)
  assert ("autodiff" in out) == ((model, opt) in AUTODIFF_CASES)
  for kind in ("reverse", "autodiff"):
    if kind not in out:
      continue
    ref = out[kind]
    assert np.linalg.norm(np.ravel(ref.dtheta["w_bank"])) > 0
    assert _record(kind, rel_err(got.dtheta, ref.dtheta)) <= 1e-8
    np.testing.assert_allclose(got.value, ref.value, rtol=1e-12)
    assert rel_err(got.final_state.params, ref.final_state.params) <= 1e-12
    np.testing.assert_allclose(got.metrics.loss, ref.metrics.loss, rtol=1e-12)
  assert got.metrics.loss.shape == (T,)
  assert rel_err(got.final_state.params, problem.state.params) > 1e-3  # it moved


def test_two_chunks_equal_one_call(x64):
  problem, out = results("mlp", "adam")
  init, chunk, readout = fh.make_forward_fns(problem.student, problem.teacher,
                                             measures.ExpectedAccuracy())
  carry = init(problem.theta, problem.state)
  assert carry.tangents[0].shape[0] == fh.num_teacher_params(problem.theta)
  parts = []
  for lo, hi in [(0, 2), (2, T)]:
    carry, m = chunk(problem.theta, carry,
                     jax.tree.map(lambda a, lo=lo, hi=hi: a[lo:hi], problem.batches))
    parts.append(m.loss)
  value, dtheta = readout(problem.theta, carry, problem.dev)
  one = out["forward"]
  assert _record("chunked", rel_err(dtheta, one.dtheta)) <= 1e-12
  np.testing.assert_allclose(value, one.value, rtol=1e-12)
  np.testing.assert_allclose(np.concatenate(parts), one.metrics.loss, rtol=1e-12)
  assert int(carry.state.step) == T


def test_finite_differences(x64):
  problem = make_problem("mlp", "momentum", "low_rank", features=("progress", "dev_acc"))
  measure = measures.ExpectedAccuracy()
  got = fh.make_forward_hypergradient_fn(problem.student, problem.teacher,
                                         measure)(problem.theta, problem.state, problem.batches,
                                                  problem.dev)

  @jax.jit
  def value(theta):
    final, _ = unroll.unroll(problem.student, problem.teacher, theta, problem.state,
                             problem.batches)
    return unroll.dev_measure(problem.student, measure, final.params, {}, problem.dev)

  np.testing.assert_allclose(value(problem.theta), got.value, rtol=1e-12)
  grads = jax.tree.leaves(got.dtheta)
  h = 1e-5
  for i, g in enumerate(grads):
    g = np.asarray(g)
    idx = np.unravel_index(np.argmax(np.abs(g)), g.shape)  # the best-conditioned entry
    fd = leaf_central_difference(value, problem.theta, i, idx, h)
    assert abs(g[idx]) > 1e-7, (i, g[idx])
    assert _record("finite_diff", abs(fd - g[idx]) / abs(g[idx])) <= 1e-5, (i, fd, g[idx])
  assert len(grads) == 6  # b_bank, scores kernel/bias, u_bank, v_bank, w_bank


def test_program_size_does_not_grow_with_n():
  problem = make_problem("mlp", "adam", "diagonal", dtype=jnp.float32)
  fn = functools.partial(fh.forward_hypergradient, problem.student, problem.teacher,
                         measures.ExpectedAccuracy())
  sizes = []
  for n in (10, 10_000):
    batches = {
        k: jax.ShapeDtypeStruct((n,) + v.shape[1:], v.dtype) for k, v in problem.batches.items()
    }
    sizes.append(count_eqns(jax.make_jaxpr(fn)(problem.theta, problem.state, batches, problem.dev)))
  assert sizes[0] > 50
  assert sizes[0] == sizes[1], sizes


def test_too_many_params_is_refused():
  problem = make_problem("mlp", "sgd", "full", dtype=jnp.float32)
  p = fh.num_teacher_params(problem.theta)
  assert p == sum(np.size(a) for a in jax.tree.leaves(problem.theta))
  with pytest.raises(
      ValueError, match=rf"P={p} .*max_params=10\b.*estimator='reverse'.*"
      r"memory='checkpointed'"):
    fh.forward_hypergradient(
        problem.student,
        problem.teacher,
        measures.ExpectedAccuracy(),
        problem.theta,
        problem.state,
        problem.batches,
        problem.dev,
        max_params=10)
  assert fh.check_num_params(problem.theta, p) == p


# ----------------------------------------------------------------------------- teach wiring


def _teach_data(seed=0, n_train=40, n_dev=12):
  rng = np.random.default_rng(seed)
  train = {"x": rng.normal(size=(n_train, 6, 6, 1)), "y": rng.integers(0, C, n_train)}
  dev = {"x": rng.normal(size=(n_dev, 6, 6, 1)), "y": rng.integers(0, C, n_dev)}
  return train, dev


def _teach(problem, estimator, **kw):
  train, dev = _teach_data()
  tx = optax.sgd(0.5)
  init = TeachState(theta=problem.theta, opt_state=tx.init(problem.theta), student=None, update=0)
  return teach(
      problem.student,
      problem.teacher,
      train,
      dev,
      teacher_optimizer=tx,
      schedule=SCHEDULE,
      dev_sampling=DevSampling(batch_size=6),
      init_state=init,
      progress=False,
      estimator=estimator,
      **kw)


def _teach_problem_and_reverse():
  """The tiny teach problem and its ``ReverseMode()`` run (cached)."""
  if "teach" not in _CACHE:
    problem = make_problem("mlp", "momentum", "diagonal")
    _CACHE["teach"] = problem, _teach(problem, ReverseMode())
  return _CACHE["teach"]


def test_teach_forward_equals_reverse(x64):
  problem, rev = _teach_problem_and_reverse()
  fwd = _teach(problem, ForwardMode(chunk_steps=2))  # two chunks per segment
  assert rel_err(rev.theta, problem.theta) > 1e-6  # theta moved
  assert _record("teach", rel_err(fwd.theta, rev.theta)) <= 1e-10
  assert [r["estimator"] for r in fwd.history] == ["forward", "forward"]
  assert [r["estimator"] for r in rev.history] == ["reverse", "reverse"]
  for a, b in zip(fwd.history, rev.history):
    assert set(a) == set(b)
    for k in ("dev_measure", "train_loss", "hypergrad_norm", "dev_accuracy"):
      np.testing.assert_allclose(a[k], b[k], rtol=1e-9, err_msg=k)
    assert a["student_step"] == b["student_step"]


def test_teach_es_runs(x64):
  """``AntitheticES`` with the real :mod:`dlf_jax.evolution`: theta moves, all finite."""
  problem, rev = _teach_problem_and_reverse()
  es = _teach(problem, AntitheticES(population=2, sigma=0.01))
  assert [r["estimator"] for r in es.history] == ["es", "es"]
  assert rel_err(es.theta, problem.theta) > 1e-8
  assert all(np.isfinite(r["hypergrad_norm"]) and r["hypergrad_norm"] > 0 for r in es.history)
  # Same student trajectory as reverse (ES reports the unperturbed student).
  np.testing.assert_allclose(es.history[0]["train_loss"], rev.history[0]["train_loss"], rtol=1e-12)


def test_teach_rejects_bad_estimator_and_big_teacher():
  problem = make_problem("mlp", "sgd", "full", dtype=jnp.float32)
  with pytest.raises(
      TypeError,
      match=r"estimator must be a HypergradEstimator.*"
      r"dlf_jax\.estimators\.get\('forward'\)"):
    _teach(problem, "forward")
  with pytest.raises(
      ValueError, match=r"ForwardMode\.chunk_steps must be None or an integer >= 1, got 0"):
    ForwardMode(chunk_steps=0)
  with pytest.raises(ValueError, match=r"P=\d+ .*max_params=8\b"):
    _teach(problem, ForwardMode(max_params=8))


@pytest.mark.parametrize(
    "estimator",
    [ForwardMode(chunk_steps=3), AntitheticES(population=2, sigma=0.01)])
def test_teach_resumes_mid_episode_with_the_same_numbers(x64, estimator):
  """Stop after the first outer step (the student mid-episode), resume: same theta."""
  problem, _ = _teach_problem_and_reverse()
  whole = _teach(problem, estimator)
  train, dev = _teach_data()
  tx = optax.sgd(0.5)
  # The state after update 1, from a run cut short by its callback.
  saved = {}

  class Stop(Exception):
    pass

  def stop_after_one(state, record):
    saved["state"] = state
    raise Stop

  with pytest.raises(Stop):
    teach(
        problem.student,
        problem.teacher,
        train,
        dev,
        teacher_optimizer=tx,
        schedule=SCHEDULE,
        dev_sampling=DevSampling(batch_size=6),
        progress=False,
        estimator=estimator,
        init_state=TeachState(
            theta=problem.theta, opt_state=tx.init(problem.theta), student=None, update=0),
        callback=stop_after_one)
  assert saved["state"].update == 1 and saved["state"].student is not None
  resumed = teach(
      problem.student,
      problem.teacher,
      train,
      dev,
      teacher_optimizer=tx,
      schedule=SCHEDULE,
      dev_sampling=DevSampling(batch_size=6),
      progress=False,
      estimator=estimator,
      init_state=saved["state"])
  assert rel_err(resumed.theta, whole.theta) == 0.0
  assert resumed.history[0]["update"] == 1
