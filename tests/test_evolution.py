"""Tests of dlf_jax.evolution: antithetic ES and persistent ES (PES).

Statistical tests run with fixed seeds (deterministic) and tolerances derived
from the estimators' variances:

* antithetic ES on ``f(x) = -||x - c||^2 / 2 + K``: one estimate with ``n``
  pairs is ``g = 1/n sum_i eps_i eps_i^T v`` (``v`` the true gradient; the
  quadratic and constant terms cancel within a pair), whose component ``j``
  has variance ``(||v||^2 + v_j^2) / n``; the mean of ``S`` estimates must lie
  within 4 standard errors of ``v``;
* PES on a linear dynamical system unrolled over several truncations: the
  full-horizon gradient is ``jax.grad`` of the whole unroll; the mean PES
  estimate must lie within 4 empirical standard errors of it, while truncated
  ES (accumulator reset every truncation) is measurably off (short-horizon bias);
* ES on a tiny student vs the exact reverse hypergradient (float64).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import evolution, hypergrad, measures, unroll

from _numerics import flat
from problems import make_problem


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compile):
  """Tiny programs: XLA without most optimizations compiles faster."""
  yield


def _cos(a, b):
  a, b = flat(a), flat(b)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- antithetic ES on a quadratic -------------------------------------------------------------


def test_antithetic_estimate_is_unbiased_on_a_quadratic(x64):
  dim, population, sigma, seeds = 5, 8, 0.1, 4000
  r = np.random.default_rng(0)
  c, x = jnp.asarray(r.normal(size=dim)), jnp.asarray(r.normal(size=dim))
  f = lambda z: 1e3 - 0.5 * jnp.sum((z - c)**2)
  v = np.asarray(c - x)  # the exact gradient
  keys = jax.random.split(jax.random.PRNGKey(1), seeds)
  g, value, aux = jax.jit(
      jax.vmap(lambda k: evolution.antithetic_estimate(f, x, k, population, sigma)))(
          keys)
  g = np.asarray(g)
  assert aux is None and np.allclose(value, f(x))
  n = population // 2
  var = (v @ v + v**2) / n  # per component, one estimate
  se = np.sqrt(var / seeds)
  assert np.all(np.abs(g.mean(0) - v) < 4 * se), (g.mean(0), v, se)
  # The variance formula behind the tolerance holds (and so does the normalisation).
  np.testing.assert_allclose(g.var(0), var, rtol=0.2)


def test_antithetic_pairs_cancel_the_zeroth_order_term(x64):
  x = jnp.asarray(np.random.default_rng(2).normal(size=4))
  key = jax.random.PRNGKey(3)
  est = lambda f: evolution.antithetic_estimate(f, x, key, 6, 0.05)[0]
  assert np.all(np.asarray(est(lambda z: jnp.asarray(7.25, z.dtype))) == 0.0)
  # Rewards on a coarse dyadic grid: adding 2^10 is exact, so the estimate is bit-identical.
  q = lambda z: jnp.round(64 * jnp.sum(jnp.sin(3 * z))) / 64
  np.testing.assert_array_equal(est(q), est(lambda z: q(z) + 1024.0))
  assert np.any(np.asarray(est(q)) != 0)


def test_bad_population_or_sigma():
  f, x, key = (lambda z: jnp.sum(z)), jnp.zeros(2), jax.random.PRNGKey(0)
  for population in (3, 0, 1, -2, 2.5):
    with pytest.raises(ValueError, match="population"):
      evolution.antithetic_estimate(f, x, key, population, 0.1)
  for sigma in (0.0, -0.1, float("nan")):
    with pytest.raises(ValueError, match="sigma"):
      evolution.antithetic_estimate(f, x, key, 4, sigma)


# --- PES on a linear dynamical system -------------------------------------------------------


def _linear_system():
  """``s_{t+1} = A s_t + B theta``, ``R = -||s - c||^2 / 2``; ``STEPS`` steps per truncation."""
  r = np.random.default_rng(4)
  a = 0.95 * np.linalg.qr(r.normal(size=(3, 3)))[0]  # a damped rotation: memory of theta
  b, c, s0 = r.normal(size=(3, 2)), r.normal(size=3), r.normal(size=3)
  a, b, c, s0 = map(jnp.asarray, (a, b, c, s0))
  steps = 2

  def advance(theta, s, num_steps=steps):
    for _ in range(num_steps):
      s = a @ s + b @ theta
    return s

  reward = lambda s: -0.5 * jnp.sum((s - c)**2)
  return advance, reward, s0, steps


def _run_pes(key, theta, advance, reward, s0, truncations, population, sigma, persistent):
  """The estimate of the last truncation (accumulator reset every truncation if not persistent)."""
  particles = jnp.broadcast_to(s0, (population,) + s0.shape)
  acc = jnp.zeros((population,) + theta.shape, theta.dtype)
  fn = lambda th, s: (reward(advance(th, s)), advance(th, s))
  for k in jax.random.split(key, truncations):
    if not persistent:
      acc = jnp.zeros_like(acc)
    g, particles, acc, _ = evolution.pes_estimate(fn, theta, particles, acc, k, sigma)
  return g, acc


def test_pes_is_unbiased_for_the_full_horizon_gradient(x64):
  advance, reward, s0, steps = _linear_system()
  theta = jnp.asarray([0.3, -0.2])
  truncations, population, sigma, seeds = 4, 8, 0.05, 3000
  full = np.asarray(jax.grad(lambda th: reward(advance(th, s0, truncations * steps)))(theta))
  # Truncated ES sees theta only through the last truncation's steps.
  s_before = advance(theta, s0, (truncations - 1) * steps)
  short = np.asarray(jax.grad(lambda th: reward(advance(th, s_before)))(theta))
  keys = jax.random.split(jax.random.PRNGKey(5), seeds)
  for persistent, target in ((True, full), (False, short)):
    g, acc = jax.jit(
        jax.vmap(lambda k, persistent=persistent: _run_pes(
            k, theta, advance, reward, s0, truncations, population, sigma, persistent)))(
                keys)
    g = np.asarray(g)
    se = g.std(0) / np.sqrt(seeds)
    assert np.all(np.abs(g.mean(0) - target) < 4 * se), (persistent, g.mean(0), target, se)
    np.testing.assert_array_equal(acc[:, population // 2:], -acc[:, :population // 2])
    if not persistent:  # short-horizon bias: truncated ES misses the earlier truncations
      assert np.any(np.abs(g.mean(0) - full) > 10 * se), (g.mean(0), full, se)


# --- ES / PES on a tiny student ---------------------------------------------------------------


def test_es_gradient_on_a_student(x64):
  p = make_problem("mlp", "sgd", "diagonal")
  measure = measures.ExpectedAccuracy()
  fn = evolution.make_es_gradient_fn(p.student, p.teacher, measure, population=4, sigma=1e-3)
  res = fn(p.theta, p.state, p.batches, p.dev, jax.random.PRNGKey(0))
  assert jax.tree.structure(res.dtheta) == jax.tree.structure(p.theta)
  for got, ref in zip(jax.tree.leaves(res.dtheta), jax.tree.leaves(p.theta)):
    assert got.shape == ref.shape and got.dtype == ref.dtype
  assert np.all(np.isfinite(flat(res.dtheta))) and res.dparams0 is None
  final, metrics = jax.jit(lambda th, st, b: unroll.unroll(p.student, p.teacher, th, st, b))(
      p.theta, p.state, p.batches)
  value = unroll.dev_measure(p.student, measure, final.params, final.model_state, p.dev)
  np.testing.assert_allclose(res.value, value, rtol=1e-12)
  np.testing.assert_allclose(flat(res.final_state.params), flat(final.params), rtol=1e-12)
  assert res.metrics.loss.shape == (p.batches["y"].shape[0],)
  np.testing.assert_allclose(res.metrics.loss, metrics.loss, rtol=1e-12)
  # Chunked / sequential evaluation of the members: the same estimate.
  # 5 members in chunks of 2: two vmapped chunks + a remainder of 1 (chunk_size=1: PES test).
  other = evolution.make_es_gradient_fn(
      p.student, p.teacher, measure, population=4, sigma=1e-3, chunk_size=2)(p.theta, p.state,
                                                                             p.batches, p.dev,
                                                                             jax.random.PRNGKey(0))
  np.testing.assert_allclose(flat(other.dtheta), flat(res.dtheta), rtol=1e-8, atol=1e-12)
  np.testing.assert_allclose(other.value, res.value, rtol=1e-12)


def test_es_gradient_agrees_with_the_reverse_hypergradient(x64):
  """Cosine similarity with the exact ``dM~/dtheta``.

  Diagonal W (P = 45 teacher parameters), 512 pairs: for a locally linear
  reward the expected cosine is ``1 / sqrt(1 + (P + 1) / n) = 0.957`` with a
  spread of well under 0.01, and ``sigma = 1e-3`` keeps the smoothing bias
  negligible in float64; 0.9 per seed leaves a wide margin.
  """
  p = make_problem("mlp", "sgd", "diagonal")
  measure = measures.ExpectedAccuracy()
  exact = hypergrad.make_hypergradient_fn(p.student, p.teacher, measure)(p.theta, p.state,
                                                                         p.batches, p.dev)
  fn = evolution.make_es_gradient_fn(p.student, p.teacher, measure, population=1024, sigma=1e-3)
  estimates = [fn(p.theta, p.state, p.batches, p.dev, jax.random.PRNGKey(s)) for s in (0, 1)]
  cosines = [_cos(e.dtheta, exact.dtheta) for e in estimates]
  assert min(cosines) > 0.9, cosines
  mean = jax.tree.map(lambda a, b: (a + b) / 2, estimates[0].dtheta, estimates[1].dtheta)
  assert _cos(mean, exact.dtheta) > max(cosines) - 0.01
  np.testing.assert_allclose(estimates[0].value, exact.value, rtol=1e-12)


def test_es_gradient_with_dev_accuracy_reward(x64):
  p = make_problem("mlp", "sgd", "diagonal")
  reward = evolution.dev_accuracy_reward(p.student)
  res = evolution.es_gradient(
      p.student,
      p.teacher,
      None,
      p.theta,
      p.state,
      p.batches,
      p.dev,
      jax.random.PRNGKey(0),
      population=4,
      sigma=0.5,
      reward=reward)
  assert np.all(np.isfinite(flat(res.dtheta)))
  acc = unroll.evaluate(p.student, res.final_state.params, res.final_state.model_state,
                        p.dev)["accuracy"]
  np.testing.assert_allclose(res.value, acc, rtol=1e-12)
  assert 0.0 <= float(res.value) <= 1.0


def test_es_gradient_rejects_bad_arguments(x64):
  p = make_problem("mlp", "sgd", "diagonal")
  measure = measures.ExpectedAccuracy()
  with pytest.raises(ValueError, match="population"):
    evolution.make_es_gradient_fn(p.student, p.teacher, measure, population=5)
  with pytest.raises(ValueError, match="sigma"):
    evolution.make_es_gradient_fn(p.student, p.teacher, measure, sigma=0.0)
  with pytest.raises(ValueError, match="measure"):
    evolution.make_es_gradient_fn(p.student, p.teacher, None)
  with pytest.raises(ValueError, match="chunk_size"):
    evolution.make_es_gradient_fn(p.student, p.teacher, measure, chunk_size=0)
  with pytest.raises(ValueError, match="population"):
    evolution.init_pes_state(p.state, 7, p.theta)
  with pytest.raises(ValueError, match="sigma"):
    evolution.make_pes_step_fn(p.student, p.teacher, measure, sigma=-1.0)


def test_pes_step_on_a_student(x64):
  p = make_problem("mlp", "sgd", "diagonal", num_steps=4)
  measure, sigma, population = measures.ExpectedAccuracy(), 1e-3, 4
  first = jax.tree.map(lambda x: x[:2], p.batches)
  second = jax.tree.map(lambda x: x[2:], p.batches)
  step = evolution.make_pes_step_fn(p.student, p.teacher, measure, sigma=sigma)
  state = evolution.init_pes_state(p.state, population, p.theta)
  assert state.accumulator.shape == (population, flat(p.theta).size)
  assert state.particles.step.shape == (population,)
  key0, key1 = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
  g0, state1, _ = step(p.theta, state, first, p.dev, key0)
  # From a shared start with an empty accumulator, PES is antithetic ES with the same eps.
  es = evolution.es_gradient(
      p.student,
      p.teacher,
      measure,
      p.theta,
      p.state,
      first,
      p.dev,
      key0,
      population=population,
      sigma=sigma)
  np.testing.assert_allclose(flat(g0), flat(es.dtheta), rtol=1e-9, atol=1e-12)
  g1, state2, value = step(p.theta, state1, second, p.dev, key1)
  seq = evolution.pes_step(
      p.student,
      p.teacher,
      measure,
      p.theta,
      state1,
      second,
      p.dev,
      key1,
      sigma=sigma,
      chunk_size=1)
  np.testing.assert_allclose(flat(seq[0]), flat(g1), rtol=1e-8, atol=1e-12)
  np.testing.assert_allclose(
      flat(seq[1].particles.params), flat(state2.particles.params), rtol=1e-12)
  assert np.all(np.asarray(state2.particles.step) == 4) and np.isfinite(float(value))
  assert np.all(np.isfinite(flat(g1)))
  acc = np.asarray(state2.accumulator)
  np.testing.assert_array_equal(acc[2:], -acc[:2])
  # The accumulator is the sum of both truncations' perturbations sigma * eps.
  eps = [jax.random.normal(k, (2, acc.shape[1]), jnp.float64) for k in (key0, key1)]
  np.testing.assert_allclose(acc[:2], sigma * eps[0] + sigma * eps[1], rtol=1e-12)
  # Each particle continued its own student: the pair's params now differ.
  w = state2.particles.params["head"]["kernel"]
  assert not np.allclose(w[0], w[2])

  reset = evolution.reset_pes_state(state2, p.state)
  assert np.all(np.asarray(reset.accumulator) == 0)
  assert np.all(np.asarray(reset.particles.step) == 0)
  np.testing.assert_array_equal(reset.particles.params["head"]["kernel"][1],
                                p.state.params["head"]["kernel"])
  partial = evolution.reset_pes_state(state2, p.state, pairs=jnp.asarray([True, False]))
  np.testing.assert_array_equal(partial.particles.step, [0, 4, 0, 4])
  pacc = np.asarray(partial.accumulator)
  assert np.all(pacc[[0, 2]] == 0)
  np.testing.assert_array_equal(pacc[[1, 3]], acc[[1, 3]])
  with pytest.raises(ValueError, match="pairs"):
    evolution.reset_pes_state(state2, p.state, pairs=jnp.asarray([True, False, True]))


def test_throughput_benchmark_quick(tmp_path, capsys):
  """The benchmark script stays runnable; its three ES paths agree (checked inside)."""
  from benchmarks import es_throughput
  out = tmp_path / "es.json"
  assert es_throughput.main(["--quick", "--populations", "2", "--steps", "2", "--out",
                             str(out)]) == 0
  import json
  rows = {r["path"]: r for r in json.loads(out.read_text())["rows"]}
  assert {"forward", "reverse", "vmap/2", "map/2", "loop/2"} <= set(rows)
  assert rows["vmap/2"]["students"] == 3 and rows["vmap/2"]["vs_loop_rel_err"] < 5e-2
  assert "speed-up vs loop" in capsys.readouterr().out
