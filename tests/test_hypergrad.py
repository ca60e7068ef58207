"""Tests of dlf_jax.hypergrad: the hand-written reverse of Eqns. (3)-(5).

Numerical truth, in float64:

* ``jax.grad`` through the forward ``lax.scan`` (``method='autodiff'``), for every
  memory policy, over a grid that covers every W parameterisation, student optimizer
  and student model (``CASES``);
* central finite differences of the forward unroll + dev measure;
* a literal step-by-step implementation of Eqns. (4)-(5) written here.

Convention under test (hypergrad module docstring): the state features s_t and the
BatchNorm statistics are data recorded in the forward pass. Finite differences see
every dependence on theta, so they use state features that do not depend on the
student (``progress``, ``dev_acc``) and hold the final BatchNorm statistics fixed.

Compilation dominates the run time: autodiff references are computed once per
(model, optimizer, parameterisation) and shared between memory policies.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import hypergrad, losses, measures, unroll
from dlf_jax import student as student_lib
from dlf_jax import teacher as teacher_lib

from _numerics import flat, hypergradients_together, leaf_central_difference, rel_err
from problems import C, T, count_eqns, make_problem, make_teacher_module

SEGMENT = 2  # does not divide T: 2 full segments + 1 step
OPTIMIZERS = ("sgd", "momentum", "adam")
# The paper's W forms under Eqn. (2)'s sigmoid link; the soft-target W and the identity
# link are checked against autodiff and finite differences in test_loss_family.py.
PARAMETERISATIONS = ("full", "diagonal", "low_rank")
# Compilation dominates (~15 s per case on the MLP, ~35 s on the BatchNorm conv net). The
# optimizer (the student update and its HVP) and the W form (the loss) enter the reverse
# pass through separate code, so the grid is covered, not crossed: on the MLP each W form
# under SGD (with the literal Eqns. 4-5) or a stateful optimizer, each optimizer under two
# forms; on the conv net momentum (Adam through BatchNorm: test_forward_hypergrad.py).
CASES = [("mlp", "sgd", "full"), ("mlp", "sgd", "low_rank"), ("mlp", "momentum", "diagonal"),
         ("mlp", "momentum", "low_rank"), ("mlp", "adam", "full"), ("mlp", "adam", "diagonal"),
         ("convbn", "momentum", "diagonal")]

_REFERENCES = {}  # results(): shared between tests
MAX_REL_ERR = {"autodiff": 0.0, "finite_diff": 0.0, "eqn45": 0.0}


@pytest.fixture(scope="module", autouse=True)
def _fast_compile_and_report(fast_compile):
  """The programs here are tiny: XLA without most optimizations (``fast_compile``).

  ``test_sgd_reverse_is_eqns_4_5`` runs with XLA's default optimizations instead (the
  setting of real runs; one such program is enough, each compiles ~2x slower).
  """
  yield
  print("\nmax relative errors observed:", MAX_REL_ERR)


def _record(kind, err):
  MAX_REL_ERR[kind] = max(MAX_REL_ERR[kind], float(err))


def run(problem, measure=None, **kw):
  measure = measures.ExpectedAccuracy() if measure is None else measure
  fn = hypergrad.make_hypergradient_fn(problem.student, problem.teacher, measure, **kw)
  return fn(problem.theta, problem.state, problem.batches, problem.dev)


def results(model, opt, parameterisation):
  """(problem, {autodiff, store_all, checkpointed}) per (model, optimizer, parameterisation).

  The three variants are compiled as one program (cheaper than three compilations);
  each output is still computed by its own path.
  """
  key = (model, opt, parameterisation)
  if key not in _REFERENCES:
    problem = make_problem(model, opt, parameterisation)
    variants = {
        "autodiff": dict(method="autodiff", memory="store_all"),
        "store_all": dict(method="auto", memory="store_all"),
        "checkpointed": dict(method="auto", memory="checkpointed", checkpoint_every=SEGMENT)
    }
    if opt == "sgd":  # the literal Eqns. (4)-(5) as well
      variants["eqn45/store_all"] = dict(method="eqn45", memory="store_all")
      variants["eqn45/checkpointed"] = dict(
          method="eqn45", memory="checkpointed", checkpoint_every=SEGMENT)
    _REFERENCES[key] = (problem,
                        hypergradients_together(problem.student, problem.teacher,
                                                measures.ExpectedAccuracy(), variants,
                                                problem.theta, problem.state, problem.batches,
                                                problem.dev))
  return _REFERENCES[key]


def reference(model, opt, parameterisation):
  """``jax.grad`` through the scan (``method='autodiff'``), cached."""
  return results(model, opt, parameterisation)[1]["autodiff"]


def assert_same_result(got, ref, tol=1e-8, kind="autodiff"):
  assert jax.tree.structure(got.dtheta) == jax.tree.structure(ref.dtheta)
  assert jax.tree.structure(got.dparams0) == jax.tree.structure(ref.dparams0)
  assert np.linalg.norm(flat(ref.dtheta)) > 0
  err_theta = rel_err(got.dtheta, ref.dtheta)
  err_params = rel_err(got.dparams0, ref.dparams0)
  _record(kind, max(err_theta, err_params))
  assert err_theta <= tol, err_theta
  assert err_params <= tol, err_params
  np.testing.assert_allclose(got.value, ref.value, rtol=1e-12)
  assert rel_err(got.final_state.params, ref.final_state.params) <= 1e-12
  for a, b in zip(
      jax.tree.leaves(got.final_state.model_state), jax.tree.leaves(ref.final_state.model_state)):
    # flax keeps BatchNorm statistics in float32 even for a float64 model.
    tol = 1e-12 if a.dtype == jnp.float64 else 1e-6
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 1e-2)
  np.testing.assert_allclose(got.metrics.loss, ref.metrics.loss, rtol=1e-12)
  assert got.metrics.loss.shape == (T,)


# ----------------------------------------------------------------------------- (1) vs autodiff


@pytest.mark.parametrize("model,opt,parameterisation", CASES)
@pytest.mark.parametrize("memory", hypergrad.MEMORY_POLICIES)
def test_hand_written_matches_autodiff(x64, model, opt, parameterisation, memory):
  problem, out = results(model, opt, parameterisation)
  got, ref = out[memory], out["autodiff"]
  assert got.dtheta["w_bank"].dtype == jnp.float64
  assert_same_result(got, ref)
  # The trajectory really moved and the hypergradient has the shape of theta, with a
  # non-zero gradient for every leaf of the (attention) teacher: no saddle at init.
  assert rel_err(got.final_state.params, problem.state.params) > 1e-3
  for a, b in zip(jax.tree.leaves(got.dtheta), jax.tree.leaves(problem.theta)):
    assert a.shape == b.shape
    assert np.linalg.norm(np.asarray(a)) > 0


@pytest.mark.parametrize("model,parameterisation", [(m, w) for m, o, w in CASES if o == "sgd"])
@pytest.mark.parametrize("memory", hypergrad.MEMORY_POLICIES)
def test_eqn45_matches_autodiff(x64, model, parameterisation, memory):
  _, out = results(model, "sgd", parameterisation)
  assert_same_result(out[f"eqn45/{memory}"], out["autodiff"])


@pytest.mark.parametrize("checkpoint_every", [1, 3, 5, 8])
def test_checkpoint_intervals(x64, checkpoint_every):
  """Segments of 1, of 3 (remainder 2), of exactly T and longer than T."""
  ref = reference("mlp", "momentum", "full")
  got = run(
      make_problem("mlp", "momentum", "full"),
      method="vjp",
      memory="checkpointed",
      checkpoint_every=checkpoint_every)
  assert_same_result(got, ref)


def test_autodiff_with_remat_matches(x64):
  ref = reference("mlp", "adam", "low_rank")
  got = run(make_problem("mlp", "adam", "low_rank"), method="autodiff", memory="checkpointed")
  assert_same_result(got, ref, tol=1e-12)


def test_nesterov_mlp_teacher_and_sigmoid_error(x64):
  problem = make_problem("mlp", "nesterov", "low_rank", teacher="mlp")
  measure = measures.SigmoidSmoothedError(k=5.0)
  ref = run(problem, measure, method="autodiff")
  for memory in hypergrad.MEMORY_POLICIES:
    assert_same_result(
        run(problem, measure, method="auto", memory=memory, checkpoint_every=SEGMENT), ref)


def test_sgd_with_schedule_and_weight_decay(x64):
  """Memoryless beyond an integer count: Eqns. (4)-(5) apply and stay exact."""
  tx = student_lib.make_optimizer("sgd", lambda t: 0.3 / (1.0 + t), weight_decay=0.05)
  problem = make_problem("mlp", "sgd", "diagonal", tx=tx)
  ref = run(problem, method="autodiff")
  for method in ("eqn45", "vjp"):
    assert_same_result(
        run(problem, method=method, memory="checkpointed", checkpoint_every=SEGMENT), ref)


def test_resolve_method():
  problem = make_problem("mlp", "momentum", "full", dtype=jnp.float32)
  assert hypergrad.resolve_method("auto", problem.state.opt_state) == "vjp"
  sgd = make_problem("mlp", "sgd", "full", dtype=jnp.float32)
  assert hypergrad.resolve_method("auto", sgd.state.opt_state) == "vjp"
  assert hypergrad.resolve_method("eqn45", sgd.state.opt_state) == "eqn45"
  with pytest.raises(ValueError, match="use method='vjp'"):
    hypergrad.resolve_method("eqn45", problem.state.opt_state)
  assert hypergrad.default_checkpoint_every(30) == 6
  assert hypergrad.default_checkpoint_every(1) == 1


# ----------------------------------------------------------------------------- (2) finite diff

FD_CASES = [("mlp", "sgd", "full"), ("mlp", "adam", "low_rank"), ("convbn", "momentum", "diagonal")]


@pytest.mark.parametrize("model,opt,parameterisation", FD_CASES)
def test_finite_differences(x64, model, opt, parameterisation):
  problem = make_problem(model, opt, parameterisation, features=("progress", "dev_acc"))
  measure = measures.ExpectedAccuracy()
  got = run(problem, measure, method="auto", memory="store_all")
  model_state_t = got.final_state.model_state  # BatchNorm statistics: data

  @jax.jit
  def value(theta):
    final, _ = unroll.unroll(problem.student, problem.teacher, theta, problem.state,
                             problem.batches)
    return unroll.dev_measure(problem.student, measure, final.params, model_state_t, problem.dev)

  # Not 1e-12: flax keeps BatchNorm running statistics in float32 and eval mode takes
  # rsqrt(var + eps) in float32, so two compilations of the dev measure differ by ~1e-9.
  np.testing.assert_allclose(value(problem.theta), got.value, rtol=1e-8)
  grads = jax.tree.leaves(got.dtheta)
  paths = [
      jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(problem.theta)[0]
  ]
  wanted = ["w_bank", "b_bank", "'scores']['kernel", "u_bank"]
  checked = 0
  h = 1e-5
  for i, path in enumerate(paths):
    if not any(w in path for w in wanted):
      continue
    g = np.asarray(grads[i])
    idx = np.unravel_index(np.argmax(np.abs(g)), g.shape)  # the best-conditioned entry
    fd = leaf_central_difference(value, problem.theta, i, idx, h)
    err = abs(fd - g[idx]) / abs(g[idx])
    _record("finite_diff", err)
    assert abs(g[idx]) > 1e-7, (path, g[idx])
    assert err <= 1e-5, (path, fd, g[idx], err)
    checked += 1
  assert checked == (4 if parameterisation == "low_rank" else 3)


# ----------------------------------------------------------------------------- (3) Eqns. (4)-(5)


def test_sgd_reverse_is_eqns_4_5(x64, xla_optimized):
  eta = 0.3
  problem = make_problem("mlp", "sgd", "full", tx=student_lib.make_optimizer("sgd", eta))
  student, teacher_, theta = problem.student, problem.teacher, problem.theta
  model = student.model
  measure = measures.ExpectedAccuracy()

  def train_loss(omega, theta, s, x, y):
    """Eqn. (2) written out with a dense W: mean sigmoid(-log p^T W e_y + b_y)."""
    phi = teacher_.phi(theta, s)
    log_p = jax.nn.log_softmax(model.apply({"params": omega}, x)[0])
    score = jnp.einsum("bi,ib->b", log_p, phi.dense()[:, y])
    return jnp.mean(jax.nn.sigmoid(-score + phi.b[y]))

  grad_omega = jax.grad(train_loss)

  @jax.jit
  def reverse_terms(omega, theta, s, x, y, domega):
    hvp = jax.jvp(lambda w: grad_omega(w, theta, s, x, y), (omega,), (domega,))[1]

    def inner(th):
      g = grad_omega(omega, th, s, x, y)
      return sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(domega)))

    return hvp, jax.grad(inner)(theta)

  # Forward: omega_t stored by running the library's inner step in a Python loop.
  step = jax.jit(lambda state, batch: unroll.inner_step(student, teacher_, theta, state, batch)[0])
  states = [problem.state]
  for t in range(T):
    states.append(step(states[-1], jax.tree.map(lambda a, t=t: a[t], problem.batches)))
  svec = [teacher_.state_features(st.step, st.stats) for st in states]
  # The written-out loss is the one the student descends: omega_{t+1} = omega_t - eta g_t.
  for t in range(T):
    g = grad_omega(states[t].params, theta, svec[t], problem.batches["x"][t],
                   problem.batches["y"][t])
    expected = jax.tree.map(lambda w, d: w - eta * d, states[t].params, g)
    assert rel_err(states[t + 1].params, expected) < 1e-13

  # Eqn. (3), then Eqns. (5) and (4) for t = T-1 .. 0.
  domega = jax.grad(lambda p: unroll.dev_measure(student, measure, p, {}, problem.dev))(
      states[T].params)
  dtheta = jax.tree.map(jnp.zeros_like, theta)
  for t in reversed(range(T)):
    hvp, cross = reverse_terms(states[t].params, theta, svec[t], problem.batches["x"][t],
                               problem.batches["y"][t], domega)
    dtheta = jax.tree.map(lambda a, b: a - eta * b, dtheta, cross)  # (5)
    domega = jax.tree.map(lambda a, b: a - eta * b, domega, hvp)  # (4)

  paths = [("eqn45", "store_all"), ("vjp", "store_all"), ("eqn45", "checkpointed")]
  variants = {p: dict(method=p[0], memory=p[1], checkpoint_every=SEGMENT) for p in paths}
  outs = hypergradients_together(student, teacher_, measure, variants, problem.theta, problem.state,
                                 problem.batches, problem.dev)
  for (method, memory), got in outs.items():
    err = max(rel_err(got.dtheta, dtheta), rel_err(got.dparams0, domega))
    _record("eqn45", err)
    assert err <= 1e-10, (method, memory, err)


# ----------------------------------------------------------------------------- (4) no saddle


# The attention teacher's leaves are checked in test_hand_written_matches_autodiff.
@pytest.mark.parametrize("parameterisation", PARAMETERISATIONS)
def test_mlp_teacher_gradient_nonzero_at_init(x64, parameterisation):
  problem = make_problem("mlp", "sgd", parameterisation, teacher="mlp")
  got = run(problem, method="auto")
  norms = {
      jax.tree_util.keystr(p): float(jnp.linalg.norm(g))
      for p, g in jax.tree_util.tree_flatten_with_path(got.dtheta)[0]
  }
  assert len(norms) >= 4
  assert all(np.isfinite(v) and v > 0 for v in norms.values()), norms


# ----------------------------------------------------------------------------- (5) compile once


def jaxpr_size(num_steps, opt, **kw):
  problem = make_problem("mlp", opt, "low_rank", num_steps=num_steps, dtype=jnp.float32)
  fn = functools.partial(hypergrad.hypergradient, problem.student, problem.teacher,
                         measures.ExpectedAccuracy(), **kw)
  jaxpr = jax.make_jaxpr(fn)(problem.theta, problem.state, problem.batches, problem.dev)
  return count_eqns(jaxpr)


@pytest.mark.parametrize(
    "opt,kw,steps",
    [
        ("sgd", dict(method="eqn45", memory="store_all"), (3, 30)),
        ("momentum", dict(method="vjp", memory="store_all"), (3, 30)),
        ("adam", dict(method="autodiff", memory="store_all"), (3, 30)),
        ("adam", dict(method="autodiff", memory="checkpointed"), (3, 30)),
        # Default segments: T=3 -> 1 x 2 + 1, T=31 -> 5 x 6 + 1; T=4 -> 2 x 2, T=36 -> 6 x 6.
        ("momentum", dict(method="vjp", memory="checkpointed"), (3, 31)),
        ("sgd", dict(method="eqn45", memory="checkpointed"), (4, 36)),
        ("sgd", dict(method="eqn45", memory="checkpointed", checkpoint_every=2), (3, 31)),
    ])
def test_program_size_does_not_grow_with_t(opt, kw, steps):
  small, large = (jaxpr_size(n, opt, **kw) for n in steps)
  assert small > 50
  assert small == large, (small, large)


def test_jitted_fn_compiles_once():
  problem = make_problem("mlp", "momentum", "diagonal", dtype=jnp.float32)
  other = make_problem("mlp", "momentum", "diagonal", dtype=jnp.float32, seed=3)
  fn = hypergrad.make_hypergradient_fn(
      problem.student, problem.teacher, measures.ExpectedAccuracy(), memory="checkpointed")
  first = fn(problem.theta, problem.state, problem.batches, problem.dev)
  second = fn(other.theta, other.state, other.batches, other.dev)
  assert fn._cache_size() == 1
  assert not np.allclose(flat(first.dtheta), flat(second.dtheta))
  assert np.all(np.isfinite(flat(second.dtheta)))


# ----------------------------------------------------------------------------- (6) bad input


def test_labels_shape_mismatch():
  with pytest.raises(ValueError, match=r"labels must have the shape of logits"):
    losses.parametric_loss(
        losses.identity_loss_params(C), jnp.zeros((4, C)), jnp.zeros((4, 2), jnp.int32))


def test_non_integer_labels():
  with pytest.raises(TypeError, match="labels must be integer class ids"):
    losses.parametric_loss(
        losses.identity_loss_params(C), jnp.zeros((4, C)), jnp.zeros((4,), jnp.float32))


def call(problem, **kw):
  return hypergrad.hypergradient(problem.student, problem.teacher, measures.ExpectedAccuracy(),
                                 problem.theta, problem.state, problem.batches, problem.dev, **kw)


def test_class_count_mismatch():
  problem = make_problem("mlp", "sgd", "full", dtype=jnp.float32)
  wrong = teacher_lib.Teacher(make_teacher_module("attention", "full", num_classes=C + 2))
  problem = dataclasses.replace(problem, teacher=wrong, theta=wrong.init(jax.random.PRNGKey(0)))
  with pytest.raises(ValueError, match="classes"):
    call(problem)


def test_zero_steps():
  problem = make_problem("mlp", "sgd", "full", dtype=jnp.float32)
  empty = jax.tree.map(lambda a: a[:0], problem.batches)
  with pytest.raises(ValueError, match="T must be >= 1, got T=0"):
    call(dataclasses.replace(problem, batches=empty))
  with pytest.raises(ValueError, match="T must be >= 1"):
    unroll.unroll(problem.student, problem.teacher, problem.theta, problem.state, empty)


def test_inconsistent_unroll_axis():
  problem = make_problem("mlp", "sgd", "full", dtype=jnp.float32)
  bad = {"x": problem.batches["x"], "y": problem.batches["y"][:2]}
  with pytest.raises(ValueError, match="same leading unroll axis T"):
    call(dataclasses.replace(problem, batches=bad))


def test_unknown_parameterisation():
  with pytest.raises(ValueError, match="Unknown W parameterisation 'sparse'"):
    losses.identity_loss_params(C, "sparse")
  module = teacher_lib.AttentionTeacher(C, parameterisation="sparse")
  with pytest.raises(ValueError, match="Unknown W parameterisation 'sparse'"):
    teacher_lib.Teacher(module).init(jax.random.PRNGKey(0))


def test_unknown_method_and_memory():
  problem = make_problem("mlp", "sgd", "full", dtype=jnp.float32)
  with pytest.raises(ValueError, match="Unknown hypergradient method 'forward'"):
    call(problem, method="forward")
  with pytest.raises(ValueError, match="Unknown memory policy 'disk'"):
    call(problem, memory="disk")
  with pytest.raises(ValueError, match="checkpoint_every must be None or an integer >= 1, got 0"):
    call(problem, memory="checkpointed", checkpoint_every=0)


@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_eqn45_rejects_stateful_optimizer(opt):
  problem = make_problem("mlp", opt, "full", dtype=jnp.float32)
  with pytest.raises(ValueError, match="method='eqn45'.*use method='vjp'"):
    call(problem, method="eqn45")


def test_nan_in_unroll_names_the_step():
  problem = make_problem("mlp", "sgd", "full", num_steps=6, dtype=jnp.float32)
  x = np.asarray(problem.batches["x"]).copy()
  x[3:] = np.nan
  batches = {"x": jnp.asarray(x), "y": problem.batches["y"]}
  _, metrics = unroll.unroll(problem.student, problem.teacher, problem.theta, problem.state,
                             batches)
  with pytest.raises(FloatingPointError, match=r"inner step 3\b"):
    unroll.check_finite(metrics, first_step=0)
  with pytest.raises(FloatingPointError, match=r"inner step 103\b"):
    unroll.check_finite(metrics, first_step=100)
  _, clean = unroll.unroll(problem.student, problem.teacher, problem.theta, problem.state,
                           problem.batches)
  unroll.check_finite(clean, first_step=0)  # no error
