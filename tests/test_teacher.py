"""Tests of dlf_jax.teacher: mu_theta at init, the attention mixture, the state s_t.

The mixtures are recomputed here from the raw flax parameters with numpy.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import losses
from dlf_jax import teacher as teacher_lib

C, K, R = 5, 3, 2

# The paper's W forms (the teacher perturbs W = I); the soft-target W (perturbed around
# its anchor, eps = 0.001 or label smoothing) is tested in test_loss_family.py.
PAPER_FORMS = ("full", "diagonal", "low_rank")


def np_softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max())
  return e / e.sum()


def make_teacher(kind, parameterisation, per_class_bias=True, init_scale=1e-2, **kw):
  if kind == "attention":
    module = teacher_lib.AttentionTeacher(
        C,
        num_matrices=K,
        parameterisation=parameterisation,
        rank=R,
        per_class_bias=per_class_bias,
        init_scale=init_scale)
  else:
    module = teacher_lib.MLPTeacher(
        C,
        parameterisation=parameterisation,
        rank=R,
        per_class_bias=per_class_bias,
        hidden=6,
        init_scale=init_scale)
  return teacher_lib.Teacher(module, total_steps=100, **kw)


def some_state(teacher, step=17):
  stats = teacher_lib.RunningStats(jnp.float32(1.3), jnp.float32(0.4), jnp.float32(0.55))
  return teacher.state_features(jnp.asarray(step, jnp.int32), stats)


# ----------------------------------------------------------------------------- init


@pytest.mark.parametrize("kind", ["attention", "mlp"])
@pytest.mark.parametrize("parameterisation", losses.PARAMETERISATIONS)
def test_phi_at_init_is_near_but_not_exactly_identity(kind, parameterisation):
  teacher = make_teacher(kind, parameterisation)
  theta = teacher.init(jax.random.PRNGKey(0))
  for step in [0, 50]:
    phi = teacher.phi(theta, some_state(teacher, step))
    assert type(phi) is losses.FORMS[parameterisation]
    assert type(phi).name == parameterisation
    w = np.asarray(losses.dense_w(phi), np.float64)
    assert w.shape == (C, C)
    dev = np.abs(w - np.eye(C))
    assert dev.max() < 0.1, dev.max()  # W ~ I ...
    if isinstance(phi, losses.LogitOffsetW):  # (its W is I: the offsets move)
      assert 0 < np.abs(np.asarray(phi.delta)).max() < 0.1
    else:
      assert dev.max() > 1e-5, dev.max()  # ... but not exactly I
    b = np.asarray(phi.b)
    assert b.shape == (C,)
    assert 0 < np.abs(b).max() < 0.1
    if parameterisation == "low_rank":  # non-zero U and V (no saddle)
      assert np.abs(np.asarray(phi.u)).max() > 0 and np.abs(np.asarray(phi.v)).max() > 0
    # The sigmoid(CE) loss it starts from: close to the identity loss.
    logits = jax.random.normal(jax.random.PRNGKey(1), (6, C))
    labels = jnp.arange(6) % C
    near = losses.parametric_loss(phi, logits, labels)
    ident = losses.parametric_loss(losses.identity_loss_params(C), logits, labels)
    assert abs(float(near) - float(ident)) < 0.05


@pytest.mark.parametrize("kind", ["attention", "mlp"])
@pytest.mark.parametrize("parameterisation", PAPER_FORMS)
def test_init_scale_controls_the_perturbation(kind, parameterisation):
  devs = []
  for scale in [1e-3, 1e-1]:
    teacher = make_teacher(kind, parameterisation, init_scale=scale)
    phi = teacher.phi(teacher.init(jax.random.PRNGKey(0)), some_state(teacher))
    devs.append(np.abs(np.asarray(losses.dense_w(phi)) - np.eye(C)).max())
  assert devs[0] < 0.1 * devs[1]


@pytest.mark.parametrize("kind", ["attention", "mlp"])
@pytest.mark.parametrize("parameterisation", losses.PARAMETERISATIONS)
def test_scalar_bias(kind, parameterisation):
  teacher = make_teacher(kind, parameterisation, per_class_bias=False)
  phi = teacher.phi(teacher.init(jax.random.PRNGKey(0)), some_state(teacher))
  assert phi.b.shape == ()


# ----------------------------------------------------------------------------- mixtures


def attention_weights(theta, s):
  scores = np.asarray(s, np.float64) @ np.asarray(theta["scores"]["kernel"], np.float64)
  return np_softmax(scores + np.asarray(theta["scores"]["bias"], np.float64))


@pytest.mark.parametrize("parameterisation", PAPER_FORMS)
def test_attention_phi_is_softmax_mixture_of_bank(x64, parameterisation):
  teacher = make_teacher("attention", parameterisation, init_scale=0.5)
  theta = jax.tree.map(lambda a: a.astype(jnp.float64), teacher.init(jax.random.PRNGKey(3)))
  s = some_state(teacher)
  phi = teacher.phi(theta, s)
  a = attention_weights(theta, s)
  assert a.shape == (K,) and np.all(a > 0) and abs(a.sum() - 1) < 1e-12
  assert np.ptp(a) > 1e-3  # a genuinely non-uniform mixture
  bank = np.asarray(theta["w_bank"], np.float64)
  mix = np.tensordot(a, bank, axes=1)
  np.testing.assert_allclose(phi.w, mix, rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(phi.b, a @ np.asarray(theta["b_bank"]), rtol=1e-12, atol=1e-14)
  if parameterisation == "full":
    assert bank.shape == (K, C, C)
    np.testing.assert_allclose(losses.dense_w(phi), mix, rtol=1e-12, atol=1e-14)
  else:
    assert bank.shape == (K, C)
    dense = np.diag(mix)
    if parameterisation == "low_rank":
      # sum_k a_k (diag(w_k) + U_k V_k^T) = diag(sum_k a_k w_k) + sum_k a_k U_k V_k^T.
      u_bank, v_bank = np.asarray(theta["u_bank"]), np.asarray(theta["v_bank"])
      assert u_bank.shape == (K, C, R) and v_bank.shape == (K, C, R)
      low = sum(a[k] * u_bank[k] @ v_bank[k].T for k in range(K))
      np.testing.assert_allclose(
          np.asarray(phi.u) @ np.asarray(phi.v).T, low, rtol=1e-12, atol=1e-14)
      assert phi.u.shape == (C, K * R)
      dense = dense + low
      # The mixture of the dense bank members is the dense mixture.
      members = [np.diag(bank[k]) + u_bank[k] @ v_bank[k].T for k in range(K)]
      np.testing.assert_allclose(
          dense, sum(a[k] * members[k] for k in range(K)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(losses.dense_w(phi), dense, rtol=1e-12, atol=1e-14)


def test_attention_weights_follow_the_state(x64):
  teacher = make_teacher("attention", "full", init_scale=0.5)
  theta = jax.tree.map(lambda a: a.astype(jnp.float64), teacher.init(jax.random.PRNGKey(3)))
  s0, s1 = some_state(teacher, 0), some_state(teacher, 90)
  w0, w1 = teacher.phi(theta, s0).w, teacher.phi(theta, s1).w
  assert float(jnp.abs(w0 - w1).max()) > 1e-6
  np.testing.assert_allclose(
      w1,
      np.tensordot(attention_weights(theta, s1), np.asarray(theta["w_bank"]), axes=1),
      rtol=1e-12,
      atol=1e-14)


@pytest.mark.parametrize("parameterisation", PAPER_FORMS)
def test_mlp_teacher_is_base_plus_delta(x64, parameterisation):
  teacher = make_teacher("mlp", parameterisation, init_scale=0.3)
  theta = jax.tree.map(lambda a: a.astype(jnp.float64), teacher.init(jax.random.PRNGKey(4)))
  s = np.asarray(some_state(teacher), np.float64)
  phi = teacher.phi(theta, jnp.asarray(s))
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), theta)
  h = np.tanh(s @ p["hidden"]["kernel"] + p["hidden"]["bias"])
  delta = h @ p["delta"]["kernel"] + p["delta"]["bias"]
  w_shape = (C, C) if parameterisation == "full" else (C,)
  n_w = math.prod(w_shape)
  assert delta.shape == (n_w + C,)
  np.testing.assert_allclose(phi.w, p["w0"] + delta[:n_w].reshape(w_shape), rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(phi.b, p["b0"] + delta[n_w:], rtol=1e-12, atol=1e-14)
  if parameterisation == "low_rank":
    np.testing.assert_allclose(phi.u, p["u"], rtol=0, atol=0)
    np.testing.assert_allclose(phi.v, p["v"], rtol=0, atol=0)
  # The dynamic part is non-zero at init: W depends on s.
  other = teacher.phi(theta, jnp.asarray(s * 0.0 + 1.0))
  assert float(jnp.abs(other.w - phi.w).max()) > 0


# The parameter names and shapes of theta (checkpoints written before restore).
THETA_SHAPES = {
    ("attention", "full"): {
        "b_bank": (K, C),
        "w_bank": (K, C, C)
    },
    ("attention", "diagonal"): {
        "b_bank": (K, C),
        "w_bank": (K, C)
    },
    ("attention", "low_rank"): {
        "b_bank": (K, C),
        "w_bank": (K, C),
        "u_bank": (K, C, R),
        "v_bank": (K, C, R)
    },
    ("attention", "soft_target"): {
        "b_bank": (K, C),
        "eps_bank": (K, C),
        "target_bank": (K, C, C)
    },
    ("mlp", "full"): {
        "b0": (C,),
        "w0": (C, C)
    },
    ("mlp", "diagonal"): {
        "b0": (C,),
        "w0": (C,)
    },
    ("mlp", "low_rank"): {
        "b0": (C,),
        "w0": (C,),
        "u": (C, R),
        "v": (C, R)
    },
    ("mlp", "soft_target"): {
        "b0": (C,),
        "w0": (C,),
        "target0": (C, C)
    },
    ("attention", "weighted_soft_target"): {
        "b_bank": (K, C),
        "eps_bank": (K, C),
        "target_bank": (K, C, C),
        "weight_bank": (K, C)
    },
    ("attention", "forward_correction"): {
        "b_bank": (K, C),
        "w_bank": (K, C, C)
    },
    ("attention", "logit_adjustment"): {
        "b_bank": (K, C),
        "w_bank": (K, C)
    },
    ("mlp", "weighted_soft_target"): {
        "b0": (C,),
        "w0": (C,),
        "target0": (C, C),
        "weight0": (C,)
    },
    ("mlp", "forward_correction"): {
        "b0": (C,),
        "w0": (C, C)
    },
    ("mlp", "logit_adjustment"): {
        "b0": (C,),
        "w0": (C,)
    },
}


@pytest.mark.parametrize("kind,parameterisation", sorted(THETA_SHAPES))
def test_theta_names_and_shapes(kind, parameterisation):
  teacher = make_teacher(kind, parameterisation)
  theta = jax.eval_shape(teacher.init, jax.random.PRNGKey(0))
  shapes = {k: v.shape for k, v in theta.items() if k not in ("scores", "hidden", "delta")}
  assert shapes == THETA_SHAPES[kind, parameterisation]
  modules = {"attention": {"scores"}, "mlp": {"hidden", "delta"}}[kind]
  assert set(theta) - set(shapes) == modules


@pytest.mark.parametrize("kind", ["attention", "mlp"])
def test_unknown_parameterisation(kind):
  teacher = make_teacher(kind, "dense")
  with pytest.raises(ValueError, match="Unknown W parameterisation 'dense'"):
    teacher.init(jax.random.PRNGKey(0))


# ----------------------------------------------------------------------------- state s_t


def test_state_vector_content_and_order():
  stats = teacher_lib.RunningStats(jnp.float32(1.25), jnp.float32(0.375), jnp.float32(0.625))
  s = teacher_lib.state_vector(teacher_lib.STATE_FEATURES, jnp.asarray(30), 120, stats)
  assert s.dtype == jnp.float32 and s.shape == (4,)
  np.testing.assert_allclose(s, [30 / 120, 1.25, 0.375, 0.625], rtol=1e-7)
  s = teacher_lib.state_vector(("dev_acc", "progress", "train_acc"), jnp.asarray(7), 8, stats)
  np.testing.assert_allclose(s, [0.625, 7 / 8, 0.375], rtol=1e-7)
  s = teacher_lib.state_vector(("train_loss",), jnp.asarray(7), 8, stats)
  np.testing.assert_allclose(s, [1.25], rtol=1e-7)
  assert teacher_lib.state_vector((), jnp.asarray(7), 8, stats).shape == (0,)
  teacher = teacher_lib.Teacher(
      teacher_lib.AttentionTeacher(C), features=("progress", "dev_acc"), total_steps=40)
  np.testing.assert_allclose(
      teacher.state_features(jnp.asarray(10), stats), [0.25, 0.625], rtol=1e-7)


def test_state_vector_is_constant_for_autodiff():

  def f(loss):
    stats = teacher_lib.RunningStats(loss, jnp.float32(0.5), jnp.float32(0.5))
    return jnp.sum(teacher_lib.state_vector(teacher_lib.STATE_FEATURES, 3, 10, stats))

  assert float(jax.grad(f)(jnp.float32(2.0))) == 0.0


def test_teacher_init_uses_the_number_of_features():
  teacher = teacher_lib.Teacher(
      teacher_lib.AttentionTeacher(C, num_matrices=K), features=("progress", "train_acc"))
  theta = teacher.init(jax.random.PRNGKey(0))
  assert theta["scores"]["kernel"].shape == (2, K)
  assert teacher.num_classes == C


def test_unknown_state_feature():
  stats = teacher_lib.init_running_stats(C)
  with pytest.raises(ValueError, match="Unknown state feature 'lr'"):
    teacher_lib.state_vector(("progress", "lr"), jnp.asarray(0), 10, stats)
  with pytest.raises(ValueError, match="Unknown state feature 'lr'"):
    teacher_lib.Teacher(teacher_lib.AttentionTeacher(C), features=("lr",))


@pytest.mark.parametrize("kw,match", [
    (dict(total_steps=0), "total_steps must be an integer >= 1, got 0"),
    (dict(ema_decay=1.0), r"ema_decay must be in \[0, 1\)"),
    (dict(ema_decay=-0.1), r"ema_decay must be in \[0, 1\)"),
])
def test_teacher_bad_config(kw, match):
  with pytest.raises(ValueError, match=match):
    teacher_lib.Teacher(teacher_lib.AttentionTeacher(C), **kw)


def test_init_running_stats():
  stats = teacher_lib.init_running_stats(10)
  np.testing.assert_allclose(stats.train_loss, math.log(10), rtol=1e-6)
  np.testing.assert_allclose(stats.train_acc, 0.1, rtol=1e-6)
  np.testing.assert_allclose(stats.dev_acc, 0.1, rtol=1e-6)


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9])
def test_running_stats_ema(decay):
  stats = teacher_lib.RunningStats(jnp.float32(2.0), jnp.float32(0.25), jnp.float32(0.7))
  loss_t, acc_t = 1.0, 0.75
  for _ in range(3):
    new = teacher_lib.update_running_stats(stats, jnp.float32(loss_t), jnp.float32(acc_t), decay)
    np.testing.assert_allclose(
        new.train_loss, decay * float(stats.train_loss) + (1 - decay) * loss_t, rtol=1e-6)
    np.testing.assert_allclose(
        new.train_acc, decay * float(stats.train_acc) + (1 - decay) * acc_t, rtol=1e-6)
    assert float(new.dev_acc) == float(jnp.float32(0.7))  # untouched by training batches
    assert new.train_loss.dtype == jnp.float32
    stats = new
  grad = jax.grad(lambda x: teacher_lib.update_running_stats(stats, x, x, decay).train_loss)(
      jnp.float32(1.0))
  assert float(grad) == 0.0  # recorded as data


def test_inner_step_updates_stats_with_batch_ce_and_accuracy(rng):
  """After one inner step the stats are the EMA of that batch's CE and accuracy."""
  from dlf_jax import models, unroll
  from dlf_jax import student as student_lib
  model = models.MLP(hidden=(8,), num_classes=C)
  student = student_lib.Student(model, student_lib.make_optimizer("sgd", 0.1), C)
  teacher = make_teacher("attention", "full", ema_decay=0.7)
  batch = {
      "x": jnp.asarray(rng.normal(size=(12, 4)), jnp.float32),
      "y": jnp.asarray(rng.integers(0, C, size=12))
  }
  state = student.init(jax.random.PRNGKey(0), batch)
  theta = teacher.init(jax.random.PRNGKey(1))
  new, metrics = unroll.inner_step(student, teacher, theta, state, batch)
  logits = np.asarray(model.apply({"params": state.params}, batch["x"])[0], np.float64)
  log_p = logits - logits.max(-1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
  labels = np.asarray(batch["y"])
  ce = -log_p[np.arange(12), labels].mean()
  acc = (logits.argmax(-1) == labels).mean()
  np.testing.assert_allclose(new.stats.train_loss, 0.7 * math.log(C) + 0.3 * ce, rtol=1e-5)
  np.testing.assert_allclose(new.stats.train_acc, 0.7 / C + 0.3 * acc, rtol=1e-5)
  np.testing.assert_allclose(metrics.cross_entropy, ce, rtol=1e-5)
  assert int(new.step) == 1
