"""The structured-W token loss of the translation students (``diagonal`` / ``low_rank``)
against its dense form and a numpy reference, with padding ignored; float64.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import losses

from helpers import V

pytestmark = pytest.mark.usefixtures("fast_compile")  # tiny programs


def random_phi(parameterisation, rng, per_class_bias=True, rank=3):
  w = rng.normal(1.0, 0.7, V)
  b = rng.normal(0.0, 0.5, V) if per_class_bias else np.asarray(rng.normal(0.0, 0.5))
  if parameterisation == "diagonal":
    return losses.DiagonalW(jnp.asarray(w), jnp.asarray(b))
  u, v = rng.normal(0.0, 0.5, (V, rank)), rng.normal(0.0, 0.5, (V, rank))
  return losses.LowRankW(jnp.asarray(w), jnp.asarray(u), jnp.asarray(v), jnp.asarray(b))


def numpy_token_loss(phi, logits, labels, mask):
  """mean over unmasked tokens of sigmoid(-log p^T W e_y + b_y), W formed densely in numpy."""
  w = np.diag(np.asarray(phi.w))
  if isinstance(phi, losses.LowRankW):
    w = w + np.asarray(phi.u) @ np.asarray(phi.v).T
  logits = np.asarray(logits, np.float64)
  m = logits.max(-1, keepdims=True)
  log_p = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
  score = np.einsum("...i,i...->...", log_p, w[:, labels])
  b = np.asarray(phi.b)
  by = b[labels] if b.ndim else b
  values = 1.0 / (1.0 + np.exp(score - by))
  return float((values * mask).sum() / mask.sum())


@pytest.mark.parametrize("parameterisation", ["diagonal", "low_rank"])
@pytest.mark.parametrize("per_class_bias", [True, False])
def test_structured_token_loss_equals_dense_and_numpy(x64, parameterisation, per_class_bias):
  rng = np.random.default_rng(1)
  phi = random_phi(parameterisation, rng, per_class_bias)
  logits = jnp.asarray(rng.normal(0.0, 2.0, (3, 5, V)))
  labels = jnp.asarray(rng.integers(0, V, (3, 5)))
  mask = np.ones((3, 5))
  mask[0, 3:] = 0.0
  mask[2, 1:] = 0.0
  mask = jnp.asarray(mask)
  dense = losses.FullW(phi.dense(), phi.b)
  assert dense.w.shape == (V, V)
  got = losses.parametric_loss(phi, logits, labels, mask)
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, losses.parametric_loss(dense, logits, labels, mask), rtol=1e-13)
  np.testing.assert_allclose(
      got, numpy_token_loss(phi, logits, labels, np.asarray(mask)), rtol=1e-12)
  # The structured W is not the identity: the loss differs from sigmoid(CE).
  ident = losses.identity_loss_params(V, parameterisation, rank=3, dtype=jnp.float64)
  assert abs(float(got) - float(losses.parametric_loss(ident, logits, labels, mask))) > 1e-3
  # Gradients agree with the dense form too.
  g = jax.grad(losses.parametric_loss, argnums=1)(phi, logits, labels, mask)
  g_dense = jax.grad(losses.parametric_loss, argnums=1)(dense, logits, labels, mask)
  np.testing.assert_allclose(g, g_dense, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("parameterisation", ["diagonal", "low_rank"])
def test_token_loss_ignores_padding(x64, parameterisation):
  rng = np.random.default_rng(2)
  phi = random_phi(parameterisation, rng)
  logits = rng.normal(0.0, 2.0, (4, 6, V))
  labels = rng.integers(0, V, (4, 6))
  mask = (rng.random((4, 6)) < 0.6).astype(np.float64)
  mask[0, 0] = 1.0
  pad = mask == 0
  assert pad.any()
  logits2, labels2 = logits.copy(), labels.copy()
  logits2[pad] = rng.normal(0.0, 5.0, (pad.sum(), V))
  labels2[pad] = rng.integers(0, V, pad.sum())
  value_and_grad = jax.value_and_grad(losses.parametric_loss, argnums=1)
  l1, g1 = value_and_grad(phi, jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
  l2, g2 = value_and_grad(phi, jnp.asarray(logits2), jnp.asarray(labels2), jnp.asarray(mask))
  assert float(l1) == float(l2)
  g1, g2 = np.asarray(g1), np.asarray(g2)
  np.testing.assert_array_equal(g1[~pad], g2[~pad])
  assert np.all(g1[pad] == 0.0) and np.all(g2[pad] == 0.0)
  assert np.abs(g1[~pad]).max() > 0
  # Masking equals dropping the padded tokens.
  keep = ~pad
  np.testing.assert_allclose(
      l1,
      losses.parametric_loss(phi, jnp.asarray(logits[keep]), jnp.asarray(labels[keep])),
      rtol=1e-13)
