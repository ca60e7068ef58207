"""Tests of dlf_jax.losses: Eqn. (2) in its forms of W (one class each) and the baselines.

Every expected value is recomputed here with numpy from the definitions (dense W,
explicit log-softmax, arccos for L-Softmax), never copied from the code under test.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import losses
from dlf_jax.student import StudentOutputs

C = 5

# ----------------------------------------------------------------------------- references


def np_log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  m = logits.max(-1, keepdims=True)
  return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))


def np_sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def np_take_label(values, labels):
  """values[..., y] for every example."""
  return np.take_along_axis(values, labels[..., None], -1)[..., 0]


def np_masked_mean(values, mask=None):
  if mask is None:
    return values.mean()
  return (values * mask).sum() / max(mask.sum(), 1.0)


def np_dense_w(w, u=None, v=None):
  """Dense W = diag(w) + U V^T, built from its factors."""
  dense = np.diag(np.asarray(w, np.float64))
  if u is not None:
    dense = dense + np.asarray(u, np.float64) @ np.asarray(v, np.float64).T
  return dense


def np_parametric_loss(dense_w, b, logits, labels, mask=None):
  """Eqn. (2) per example: sigmoid(-sum_i log p_i W[i, y] + b_y), then a masked mean."""
  log_p = np_log_softmax(logits)
  score = np.einsum("...i,i...->...", log_p, dense_w[:, labels])
  bias = b if np.ndim(b) == 0 else np.asarray(b)[labels]
  return np_masked_mean(np_sigmoid(-score + bias), mask)


# The forms whose loss is the bilinear score log(p)^T W e_y of a matrix W.
BILINEAR = ("full", "diagonal", "low_rank", "soft_target")


def random_phi(rng, parameterisation, c=C, rank=2, per_class_bias=True):
  """(phi, dense W in numpy, b) of a random phi of every bilinear form."""
  b = rng.normal(size=(c,) if per_class_bias else ())
  if parameterisation == "full":
    w = rng.normal(size=(c, c))
    return losses.FullW(jnp.asarray(w), jnp.asarray(b)), w, b
  if parameterisation == "soft_target":
    eps = rng.uniform(0.0, 0.9, size=c)
    q = np.exp(rng.normal(size=(c, c)))
    q /= q.sum(0)
    phi = losses.SoftTargetW(jnp.asarray(eps), jnp.asarray(b), jnp.asarray(q), link="sigmoid")
    return phi, np.diag(1 - eps) + q * eps[None, :], b
  w = rng.normal(size=(c,))
  if parameterisation == "diagonal":
    return losses.DiagonalW(jnp.asarray(w), jnp.asarray(b)), np_dense_w(w), b
  u, v = rng.normal(size=(c, rank)), rng.normal(size=(c, rank))
  phi = losses.LowRankW(jnp.asarray(w), jnp.asarray(u), jnp.asarray(v), jnp.asarray(b))
  return phi, np_dense_w(w, u, v), b


def data(rng, shape=(7,), c=C, scale=2.0):
  logits = scale * rng.normal(size=shape + (c,))
  labels = rng.integers(0, c, size=shape)
  return logits, labels


# ----------------------------------------------------------------------------- Eqn. (2)


@pytest.mark.parametrize("parameterisation", losses.PARAMETERISATIONS)
@pytest.mark.parametrize("per_class_bias", [True, False])
def test_identity_phi_is_sigmoid_of_cross_entropy(rng, parameterisation, per_class_bias):
  logits, labels = data(rng, (9,))
  phi = losses.identity_loss_params(C, parameterisation, rank=3, per_class_bias=per_class_bias)
  ce = -np_take_label(np_log_softmax(logits), labels)
  expected = np_sigmoid(ce).mean()
  got = losses.parametric_loss(phi, jnp.asarray(logits, jnp.float32), jnp.asarray(labels))
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_array_equal(losses.dense_w(phi), np.eye(C))
  assert phi.b.shape == ((C,) if per_class_bias else ())


@pytest.mark.parametrize("parameterisation", BILINEAR)
def test_parametric_loss_equals_dense_formula(x64, rng, parameterisation):
  phi, dense, b = random_phi(rng, parameterisation)
  logits, labels = data(rng, (11,))
  got = losses.parametric_loss(phi, jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(got, np_parametric_loss(dense, b, logits, labels), rtol=1e-12)
  np.testing.assert_allclose(losses.dense_w(phi), dense, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("parameterisation", BILINEAR)
def test_bilinear_score_equals_dense_formula(x64, rng, parameterisation):
  phi, dense, _ = random_phi(rng, parameterisation, rank=3)
  logits, labels = data(rng, (4, 3))
  log_p = np_log_softmax(logits)
  expected = np.einsum("...i,i...->...", log_p, dense[:, labels])
  got = losses.bilinear_score(phi, jnp.asarray(log_p), jnp.asarray(labels))
  np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_w_column_y_weights_log_probabilities(x64, rng):
  """Column y of W is used for label y: a W with only W[i, y] != 0 reads log p_i."""
  logits, _ = data(rng, (1,))
  w = np.zeros((C, C))
  w[3, 1] = 2.0
  phi = losses.FullW(jnp.asarray(w), jnp.zeros(C))
  got = losses.parametric_loss(phi, jnp.asarray(logits), jnp.asarray([1]))
  log_p = np_log_softmax(logits)[0]
  np.testing.assert_allclose(got, np_sigmoid(-2.0 * log_p[3]), rtol=1e-12)
  other = losses.parametric_loss(phi, jnp.asarray(logits), jnp.asarray([3]))
  np.testing.assert_allclose(other, 0.5, rtol=1e-12)  # column 3 is zero


@pytest.mark.parametrize("parameterisation", BILINEAR)
def test_scalar_and_per_class_bias(x64, rng, parameterisation):
  phi, dense, _ = random_phi(rng, parameterisation)
  logits, labels = data(rng, (8,))
  scalar = phi.replace(b=jnp.asarray(0.7))
  got = losses.parametric_loss(scalar, jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(got, np_parametric_loss(dense, 0.7, logits, labels), rtol=1e-12)
  # A per-class bias with all entries equal is the scalar bias.
  const = phi.replace(b=jnp.full((C,), 0.7))
  np.testing.assert_allclose(
      losses.parametric_loss(const, jnp.asarray(logits), jnp.asarray(labels)), got, rtol=1e-12)
  # A per-class bias uses b_y: only the label's entry matters.
  b = rng.normal(size=C)
  per_class = phi.replace(b=jnp.asarray(b))
  got = losses.parametric_loss(per_class, jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(got, np_parametric_loss(dense, b, logits, labels), rtol=1e-12)
  unused = [c for c in range(C) if c not in set(labels.tolist())]
  if unused:
    b2 = b.copy()
    b2[unused] += 10.0
    same = losses.parametric_loss(
        phi.replace(b=jnp.asarray(b2)), jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_allclose(same, got, rtol=1e-12)


@pytest.mark.parametrize("parameterisation", BILINEAR)
def test_token_shaped_inputs(x64, rng, parameterisation):
  phi, dense, b = random_phi(rng, parameterisation)
  logits, labels = data(rng, (3, 4))  # [B, L, C]
  mask = (rng.random((3, 4)) < 0.7).astype(np.float64)
  mask[0, 0] = 1.0
  got = losses.parametric_loss(phi, jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
  expected = np_parametric_loss(dense, b, logits.reshape(-1, C), labels.reshape(-1),
                                mask.reshape(-1))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  flat = losses.parametric_loss(phi, jnp.asarray(logits.reshape(-1, C)),
                                jnp.asarray(labels.reshape(-1)), jnp.asarray(mask.reshape(-1)))
  np.testing.assert_allclose(got, flat, rtol=1e-12)


# ----------------------------------------------------------------------------- masking


def _masked_losses():
  phi = losses.FullW(
      jnp.asarray(np.random.default_rng(5).normal(size=(C, C))),
      jnp.asarray(np.random.default_rng(6).normal(size=(C,))))
  return {
      "parametric": lambda lg, lb, m: losses.parametric_loss(phi, lg, lb, m),
      "cross_entropy": losses.cross_entropy,
      "label_smoothing": lambda lg, lb, m: losses.label_smoothing(lg, lb, 0.2, m),
  }


@pytest.mark.parametrize("name", ["parametric", "cross_entropy", "label_smoothing"])
def test_mask_ignores_padded_tokens(x64, rng, name):
  fn = _masked_losses()[name]
  logits, labels = data(rng, (4, 6))
  mask = np.ones((4, 6))
  mask[1, 3:] = 0.0
  mask[3, 1:] = 0.0
  base = fn(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
  logits2, labels2 = logits.copy(), labels.copy()
  pad = mask == 0
  logits2[pad] = 100.0 * rng.normal(size=(pad.sum(), C))
  labels2[pad] = rng.integers(0, C, size=pad.sum())
  changed = fn(jnp.asarray(logits2), jnp.asarray(labels2), jnp.asarray(mask))
  np.testing.assert_allclose(changed, base, rtol=1e-12)
  # The masked mean is the plain mean over the real tokens only.
  real = fn(jnp.asarray(logits[~pad]), jnp.asarray(labels[~pad]), None)
  np.testing.assert_allclose(base, real, rtol=1e-12)
  # An all-zero mask gives 0, not NaN (and a finite gradient).
  zero = jnp.zeros((4, 6))
  assert float(fn(jnp.asarray(logits), jnp.asarray(labels), zero)) == 0.0
  g = jax.grad(lambda lg: fn(lg, jnp.asarray(labels), zero))(jnp.asarray(logits))
  assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) == 0.0


def test_masked_mean_and_large_margin_mask(x64, rng):
  values = rng.normal(size=(3, 4))
  mask = (rng.random((3, 4)) < 0.5).astype(np.float64)
  mask[0, 0] = 1.0
  np.testing.assert_allclose(
      losses.masked_mean(jnp.asarray(values), jnp.asarray(mask)),
      values[mask == 1].mean(),
      rtol=1e-12)
  np.testing.assert_allclose(losses.masked_mean(jnp.asarray(values)), values.mean(), rtol=1e-12)
  assert float(losses.masked_mean(jnp.asarray(values), jnp.zeros((3, 4)))) == 0.0
  feats, kernel = rng.normal(size=(3, 4, 6)), rng.normal(size=(6, C))
  labels = rng.integers(0, C, size=(3, 4))
  got = losses.large_margin_softmax(
      jnp.asarray(feats),
      jnp.asarray(kernel),
      jnp.asarray(labels),
      margin=2,
      mask=jnp.asarray(mask))
  real = losses.large_margin_softmax(
      jnp.asarray(feats[mask == 1]), jnp.asarray(kernel), jnp.asarray(labels[mask == 1]), margin=2)
  np.testing.assert_allclose(got, real, rtol=1e-12)


# ----------------------------------------------------------------------------- baselines


def np_cross_entropy(logits, labels, mask=None):
  return np_masked_mean(-np_take_label(np_log_softmax(logits), labels), mask)


def np_label_smoothing(logits, labels, eps, mask=None):
  """CE against the smoothed target (1 - eps) e_y + eps / C."""
  c = logits.shape[-1]
  target = (1.0 - eps) * np.eye(c)[labels] + eps / c
  return np_masked_mean(-(target * np_log_softmax(logits)).sum(-1), mask)


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.5, 0.9])
def test_label_smoothing_formula(x64, rng, eps):
  logits, labels = data(rng, (2, 5))
  got = losses.label_smoothing(jnp.asarray(logits), jnp.asarray(labels), eps)
  np.testing.assert_allclose(got, np_label_smoothing(logits, labels, eps), rtol=1e-12)


def test_label_smoothing_zero_is_cross_entropy(x64, rng):
  logits, labels = data(rng, (9,))
  ce = np_cross_entropy(logits, labels)
  np.testing.assert_allclose(
      losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)), ce, rtol=1e-12)
  np.testing.assert_allclose(
      losses.label_smoothing(jnp.asarray(logits), jnp.asarray(labels), 0.0), ce, rtol=1e-12)


def np_psi(theta, m):
  """psi(theta) = (-1)^k cos(m theta) - 2k on [k pi / m, (k + 1) pi / m] (Liu et al. Eqn. 6)."""
  k = np.minimum(np.floor(theta * m / np.pi), m - 1)
  return (-1.0)**k * np.cos(m * theta) - 2.0 * k


def np_large_margin_logits(features, kernel, labels, m, beta=0.0):
  logits = features @ kernel
  w_norm = np.linalg.norm(kernel, axis=0)
  x_norm = np.linalg.norm(features, axis=-1)
  w_y = w_norm[labels]
  f_y = np_take_label(logits, labels)
  theta = np.arccos(np.clip(f_y / (w_y * x_norm), -1.0, 1.0))
  target = (beta * f_y + w_y * x_norm * np_psi(theta, m)) / (1.0 + beta)
  out = logits.copy()
  np.put_along_axis(out, labels[..., None], target[..., None], -1)
  return out


def angle_batch(angles, label=1, c=C, d=3, seed=0):
  """features at the given angles to kernel column ``label`` (random norms)."""
  r = np.random.default_rng(seed)
  kernel = r.normal(size=(d, c))
  w = kernel[:, label] / np.linalg.norm(kernel[:, label])
  ortho = r.normal(size=d)
  ortho -= ortho @ w * w
  ortho /= np.linalg.norm(ortho)
  norms = 0.5 + r.random(len(angles)) * 2.0
  feats = np.stack([n * (np.cos(a) * w + np.sin(a) * ortho) for n, a in zip(norms, angles)])
  return feats, kernel, np.full(len(angles), label)


def test_large_margin_margin_one_is_softmax(x64, rng):
  feats, kernel = rng.normal(size=(10, 4)), rng.normal(size=(4, C))
  labels = rng.integers(0, C, size=10)
  logits = losses.large_margin_logits(
      jnp.asarray(feats), jnp.asarray(kernel), jnp.asarray(labels), margin=1)
  np.testing.assert_allclose(logits, feats @ kernel, rtol=1e-9, atol=1e-9)
  got = losses.large_margin_softmax(
      jnp.asarray(feats), jnp.asarray(kernel), jnp.asarray(labels), margin=1)
  np.testing.assert_allclose(got, np_cross_entropy(feats @ kernel, labels), rtol=1e-9)


@pytest.mark.parametrize(
    "margin,angles",
    [
        (2, [0.1, 0.7, 1.4, 1.7, 2.2, 3.0]),  # k = 0 and k = 1 (theta > pi/2)
        (3, [0.2, 0.9, 1.3, 2.0, 2.5, 3.1]),  # k = 0, 1, 2
        (4, [0.3, 1.0, 1.9, 2.6, 3.0]),
    ])
@pytest.mark.parametrize("beta", [0.0, 1.5])
def test_large_margin_target_logit(x64, margin, angles, beta):
  feats, kernel, labels = angle_batch(np.asarray(angles))
  got = np.asarray(
      losses.large_margin_logits(
          jnp.asarray(feats), jnp.asarray(kernel), jnp.asarray(labels), margin=margin, beta=beta))
  # Target logit: ||w_y|| ||x|| psi(theta) with theta from arccos (beta mixes in f_y).
  w_y = np.linalg.norm(kernel[:, 1])
  x_n = np.linalg.norm(feats, axis=-1)
  theta = np.asarray(angles)
  f_y = w_y * x_n * np.cos(theta)
  expected = (beta * f_y + w_y * x_n * np_psi(theta, margin)) / (1.0 + beta)
  np.testing.assert_allclose(got[:, 1], expected, rtol=1e-9, atol=1e-9)
  # Non-target logits are the plain logits.
  plain = feats @ kernel
  others = [c for c in range(C) if c != 1]
  np.testing.assert_allclose(got[:, others], plain[:, others], rtol=1e-12, atol=1e-12)
  # The margin makes the target logit smaller (harder) than the plain one.
  assert np.all(got[:, 1] <= plain[:, 1] + 1e-12)
  np.testing.assert_allclose(
      got, np_large_margin_logits(feats, kernel, labels, margin, beta), rtol=1e-9, atol=1e-9)


def test_large_margin_psi_is_continuous_and_decreasing(x64):
  angles = np.linspace(0.0, np.pi, 301)[1:-1]
  feats, kernel, labels = angle_batch(angles)
  got = np.asarray(
      losses.large_margin_logits(
          jnp.asarray(feats), jnp.asarray(kernel), jnp.asarray(labels), margin=2))
  psi = got[:, 1] / (np.linalg.norm(kernel[:, 1]) * np.linalg.norm(feats, axis=-1))
  assert np.all(np.diff(psi) < 0)
  assert np.max(np.abs(np.diff(psi))) < 0.05


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("margin", [2, 3])
def test_large_margin_gradient_finite_at_cos_pm1(x64, rng, sign, margin):
  kernel = rng.normal(size=(4, C))
  feats = sign * np.stack([kernel[:, 2] * 1.3, kernel[:, 2] * 0.4])  # cos(theta_y) = +-1
  labels = jnp.asarray([2, 2])
  loss = lambda f, k: losses.large_margin_softmax(f, k, labels, margin=margin)
  value = loss(jnp.asarray(feats), jnp.asarray(kernel))
  gf, gk = jax.grad(loss, argnums=(0, 1))(jnp.asarray(feats), jnp.asarray(kernel))
  assert np.isfinite(value)
  assert np.all(np.isfinite(gf)) and np.all(np.isfinite(gk))
  # psi(0) = 1 and psi(pi) = 1 - 2m: the value at the ends of [0, pi].
  logits = losses.large_margin_logits(jnp.asarray(feats), jnp.asarray(kernel), labels, margin)
  norm = np.linalg.norm(kernel[:, 2]) * np.linalg.norm(feats, axis=-1)
  psi = 1.0 if sign > 0 else 1.0 - 2.0 * margin
  np.testing.assert_allclose(np.asarray(logits)[:, 2], norm * psi, rtol=1e-6)


def _outputs(rng, n=6, d=4):
  feats, kernel = rng.normal(size=(n, d)), rng.normal(size=(d, C))
  logits = feats @ kernel + 0.3 * rng.normal(size=(n, C))
  labels = rng.integers(0, C, size=n)
  return (StudentOutputs(jnp.asarray(logits), jnp.asarray(feats),
                         jnp.asarray(kernel)), logits, feats, kernel, labels)


@pytest.mark.parametrize("kind", losses.BASELINES)
def test_baseline_loss_each_kind(x64, rng, kind):
  outputs, logits, feats, kernel, labels = _outputs(rng)
  mask = np.array([1, 1, 0, 1, 0, 1], np.float64)
  base = losses.baseline_loss(kind, smoothing=0.2, margin=3)
  assert type(base) is losses.BASELINES[kind]
  expected = {
      "cross_entropy":
          lambda: np_cross_entropy(logits, labels, mask),
      "label_smoothing":
          lambda: np_label_smoothing(logits, labels, 0.2, mask),
      "sigmoid_cross_entropy":
          lambda: np_masked_mean(np_sigmoid(-np_take_label(np_log_softmax(logits), labels)), mask),
      "large_margin":
          lambda: np_cross_entropy(
              np_large_margin_logits(feats, kernel, labels, 3, 0.5), labels, mask),
  }[kind]()
  # For L-Softmax phi is the annealing weight beta_t; the other kinds ignore it.
  phi = jnp.asarray(0.5) if kind == "large_margin" else None
  got = base.loss(phi, outputs, jnp.asarray(labels), jnp.asarray(mask))
  np.testing.assert_allclose(got, expected, rtol=1e-9)
  assert base.init(jax.random.PRNGKey(0)) == {}
  assert base.num_classes is None


@pytest.mark.parametrize("beta_min", [0.0, 5.0])
def test_baseline_large_margin_annealing(x64, rng, beta_min):
  """phi(s_t) = max(beta_min, beta (1 + gamma t)^-power); phi=None means beta_min."""
  base = losses.LargeMarginLoss(
      margin=2, beta=1000.0, beta_min=beta_min, beta_gamma=1e-3, beta_power=2.0)
  for t in [0, 10, 1000, 100000]:
    beta_t = base.phi({}, base.state_features(jnp.asarray(t), None))
    expected = max(beta_min, 1000.0 * (1.0 + 1e-3 * t)**-2.0)
    np.testing.assert_allclose(beta_t, expected, rtol=1e-6)
  outputs, logits, feats, kernel, labels = _outputs(rng)
  got = base.loss(None, outputs, jnp.asarray(labels))
  expected = np_cross_entropy(np_large_margin_logits(feats, kernel, labels, 2, beta_min), labels)
  np.testing.assert_allclose(got, expected, rtol=1e-9)
  for kind in ["cross_entropy", "label_smoothing", "sigmoid_cross_entropy"]:
    other = losses.baseline_loss(kind)
    assert other.phi({}, other.state_features(jnp.asarray(3), None)) is None


def test_baseline_large_margin_needs_features(rng):
  outputs, *_, labels = _outputs(rng)
  base = losses.LargeMarginLoss()
  with pytest.raises(ValueError, match="penultimate features"):
    base.loss(None, StudentOutputs(outputs.logits), jnp.asarray(labels))
  with pytest.raises(ValueError, match="penultimate features"):
    base.loss(None, StudentOutputs(outputs.logits, outputs.features), jnp.asarray(labels))


# ----------------------------------------------------------------------------- errors


def test_labels_shape_mismatch():
  phi = losses.identity_loss_params(C)
  logits = jnp.zeros((4, C))
  with pytest.raises(ValueError, match=r"logits \(4, 5\) expects labels \(4,\), got \(4, 5\)"):
    losses.parametric_loss(phi, logits, jnp.zeros((4, C), jnp.int32))  # one-hot labels
  with pytest.raises(ValueError, match="labels must have the shape"):
    losses.parametric_loss(phi, logits, jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match="labels must have the shape"):
    losses.cross_entropy(logits, jnp.zeros((5,), jnp.int32))


def test_non_integer_labels():
  phi = losses.identity_loss_params(C)
  with pytest.raises(TypeError, match="integer class ids"):
    losses.parametric_loss(phi, jnp.zeros((4, C)), jnp.zeros((4,), jnp.float32))
  with pytest.raises(TypeError, match="integer class ids"):
    losses.label_smoothing(jnp.zeros((4, C)), jnp.zeros((4,), jnp.float32), 0.1)


def test_mask_shape_mismatch():
  with pytest.raises(ValueError, match="mask shape"):
    losses.cross_entropy(jnp.zeros((4, C)), jnp.zeros((4,), jnp.int32), jnp.ones((3,)))


@pytest.mark.parametrize("parameterisation", losses.PARAMETERISATIONS)
def test_class_count_mismatch(parameterisation):
  phi = losses.identity_loss_params(C - 1, parameterisation, rank=2)
  with pytest.raises(ValueError, match="num_classes=5"):
    losses.parametric_loss(phi, jnp.zeros((4, C)), jnp.zeros((4,), jnp.int32))


def test_full_w_must_be_square():
  phi = losses.FullW(jnp.zeros((3, C)), jnp.zeros(C))
  with pytest.raises(
      ValueError, match=r"FullW\.w must be a square \[C, C\] matrix .* got "
      r"shape \(3, 5\)"):
    losses.parametric_loss(phi, jnp.zeros((4, C)), jnp.zeros((4,), jnp.int32))


def test_unknown_parameterisation():
  with pytest.raises(ValueError, match="Unknown W parameterisation 'dense'"):
    losses.identity_loss_params(C, "dense")
  with pytest.raises(ValueError, match="Unknown W parameterisation 'dense'"):
    losses.form("dense")
  with pytest.raises(ValueError, match="Unknown link 'relu'"):
    losses.parametric_loss(
        losses.DiagonalW(jnp.ones(C), jnp.zeros(C), link="relu"), jnp.zeros((4, C)),
        jnp.zeros((4,), jnp.int32))


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5])
def test_smoothing_out_of_range(smoothing):
  with pytest.raises(ValueError, match=r"label smoothing must be in \[0, 1\)"):
    losses.label_smoothing(jnp.zeros((2, C)), jnp.zeros((2,), jnp.int32), smoothing)


def test_unknown_baseline():
  with pytest.raises(ValueError, match="Unknown baseline loss 'focal'"):
    losses.baseline_loss("focal")
  with pytest.raises(ValueError, match=r"Unknown baseline option\(s\) \['smoothin'\]"):
    losses.baseline_loss("label_smoothing", smoothin=0.2)
  # One config section serves every baseline: another baseline's options are left out.
  assert losses.baseline_loss(
      "cross_entropy", smoothing=0.3, margin=4) == (
          losses.CrossEntropyLoss())
  assert losses.baseline_loss("label_smoothing", smoothing=0.3, margin=4).smoothing == 0.3


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_baseline_smoothing_out_of_range(smoothing):
  with pytest.raises(ValueError, match=r"label smoothing must be in \[0, 1\)"):
    losses.LabelSmoothingLoss(smoothing=smoothing)


@pytest.mark.parametrize("margin", [0, 1.5])
def test_baseline_bad_margin(margin):
  with pytest.raises(ValueError, match="integer margin >= 1"):
    losses.LargeMarginLoss(margin=margin)


@pytest.mark.parametrize("margin", [0, -1, 1.5])
def test_bad_margin(margin):
  with pytest.raises(ValueError, match="margin must be an integer >= 1"):
    losses.large_margin_logits(
        jnp.ones((2, 3)), jnp.ones((3, C)), jnp.zeros((2,), jnp.int32), margin=margin)


def test_bad_beta_and_feature_size():
  with pytest.raises(ValueError, match="beta must be >= 0"):
    losses.large_margin_logits(
        jnp.ones((2, 3)), jnp.ones((3, C)), jnp.zeros((2,), jnp.int32), beta=-1.0)
  with pytest.raises(ValueError, match="do not match the head kernel"):
    losses.large_margin_logits(jnp.ones((2, 4)), jnp.ones((3, C)), jnp.zeros((2,), jnp.int32))


def test_sigmoid_ce_gradient_is_scaled_ce_gradient(x64, rng):
  """d sigmoid(CE)/d logits = sigmoid'(CE) dCE/d logits per example (Wu et al. 2018, Eqn. 2)."""
  logits, labels = data(rng, (1,))
  phi = losses.identity_loss_params(C, dtype=jnp.float64)
  g = jax.grad(lambda lg: losses.parametric_loss(phi, lg, jnp.asarray(labels)))(jnp.asarray(logits))
  p = np.exp(np_log_softmax(logits))
  ce = -math.log(p[0, labels[0]])
  dce = p - np.eye(C)[labels]
  s = np_sigmoid(ce)
  np.testing.assert_allclose(g, s * (1 - s) * dce, rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- form classes


@pytest.mark.parametrize(
    "phi,expected",
    [
        (losses.FullW(jnp.asarray([[1.0, 2.0], [3.0, 4.0]]), jnp.asarray([1.0, 3.0])), {
            "b_mean": 2.0,
            "w_diag_mean": 2.5,
            "w_offdiag_mean": 2.5
        }),
        (losses.DiagonalW(jnp.asarray([1.0, 3.0]), jnp.asarray(0.5)), {
            "b_mean": 0.5,
            "w_diag_mean": 2.0,
            "w_offdiag_mean": 0.0
        }),
        # diag(1, 2) + [[0, 1], [0, 0]]
        (losses.LowRankW(
            jnp.asarray([1.0, 2.0]), jnp.asarray([[1.0], [0.0]]), jnp.asarray([[0.0], [1.0]]),
            jnp.zeros(2)), {
                "b_mean": 0.0,
                "w_diag_mean": 1.5,
                "w_offdiag_mean": 0.5
            }),
        # columns [0.75, 0.25] and [0.125, 0.875]
        (losses.SoftTargetW(jnp.asarray([0.5, 0.25]), jnp.zeros(2)), {
            "b_mean": 0.0,
            "eps_mean": 0.375,
            "w_diag_mean": 0.8125,
            "w_offdiag_mean": 0.1875
        }),
    ],
    ids=["full", "diagonal", "low_rank", "soft_target"])
def test_statistics_known_values(phi, expected):
  got = losses.phi_statistics(phi)
  assert list(got) == list(expected)
  for key, value in expected.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=key)
  assert losses.phi_statistics(None) == {}


def test_form_registry_and_names():
  assert tuple(losses.FORMS) == losses.PARAMETERISATIONS
  for name, cls in losses.FORMS.items():
    assert losses.form(name) is cls and cls.name == name and issubclass(cls, losses.LossForm)
  assert [n for n, f in losses.FORMS.items() if f.represents_label_smoothing
         ] == ["full", "soft_target", "weighted_soft_target"]


def test_form_shape_errors():
  logits, labels = jnp.zeros((2, 3)), jnp.asarray([0, 1])
  bad_q = losses.SoftTargetW(jnp.zeros(3), jnp.zeros(3), jnp.ones((2, 3)) / 2)
  with pytest.raises(ValueError, match=r"soft targets q must be None, \[C\] or \[C, C\]"):
    losses.parametric_loss(bad_q, logits, labels)
  with pytest.raises(ValueError, match=r"C=4 classes \(eps of shape \(4,\)\).*num_classes=3"):
    losses.parametric_loss(losses.SoftTargetW(jnp.zeros(4), jnp.zeros(4)), logits, labels)
  with pytest.raises(ValueError, match=r"C=2 classes \(W of shape \(2,\)\)"):
    losses.DiagonalW(jnp.ones(2), jnp.zeros(2)).score(jnp.zeros((2, 3)), labels)
  with pytest.raises(ValueError, match="cannot represent label smoothing"):
    losses.LowRankW.label_smoothing(3, 0.1, b=jnp.zeros(3), link="identity")
