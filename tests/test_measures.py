"""Tests of dlf_jax.measures: smoothed dev measures and their exact batched mean."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import measures, models, unroll
from dlf_jax import student as student_lib

C = 5


def np_softmax(logits):
  logits = np.asarray(logits, np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_p_target(logits, labels):
  return np.take_along_axis(np_softmax(logits), labels[..., None], -1)[..., 0]


def np_sigmoid_error(logits, labels, k):
  p = np_softmax(logits)
  p_y = np.take_along_axis(p, labels[..., None], -1)[..., 0]
  return 2.0 / (1.0 + np.exp(-k * (p.max(-1) - p_y))) - 1.0


def np_masked_mean(values, mask=None):
  if mask is None:
    return values.mean()
  return (values * mask).sum() / max(mask.sum(), 1.0)


def data(rng, shape=(12,), scale=1.0):
  return scale * rng.normal(size=shape + (C,)), rng.integers(0, C, size=shape)


@pytest.mark.parametrize("shape", [(12,), (3, 4)])
def test_expected_accuracy_is_mean_p_y(x64, rng, shape):
  logits, labels = data(rng, shape)
  got = measures.expected_accuracy(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(got, np_p_target(logits, labels).mean(), rtol=1e-12)
  # Its gradient is the gradient of mean p_y: d p_y / d z_j = p_y (1[j = y] - p_j).
  g = jax.grad(measures.expected_accuracy)(jnp.asarray(logits), jnp.asarray(labels))
  p = np_softmax(logits)
  p_y = np_p_target(logits, labels)[..., None]
  expected = p_y * (np.eye(C)[labels] - p) / labels.size
  np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("k", [50.0, 3.0])
@pytest.mark.parametrize("shape", [(12,), (3, 4)])
def test_sigmoid_smoothed_error_formula(x64, rng, k, shape):
  logits, labels = data(rng, shape, scale=0.3)  # small logits: p's close, sigmoid not saturated
  got = measures.sigmoid_smoothed_error(jnp.asarray(logits), jnp.asarray(labels), k=k)
  expected = np_sigmoid_error(logits, labels, k).mean()
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  assert 0.0 <= float(got) < 1.0


def test_sigmoid_smoothed_error_is_zero_when_correct(x64):
  logits = jnp.asarray([[5.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 9.0, 0.0, 0.0]])
  got = measures.sigmoid_smoothed_error(logits, jnp.asarray([0, 2]))
  assert float(got) == 0.0


def test_accuracy(x64, rng):
  logits, labels = data(rng, (40,))
  labels[:10] = logits[:10].argmax(-1)  # some surely right
  got = measures.accuracy(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(got, (logits.argmax(-1) == labels).mean(), rtol=1e-12)
  mask = (rng.random(40) < 0.5).astype(np.float64)
  got = measures.accuracy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
  np.testing.assert_allclose(
      got, np_masked_mean((logits.argmax(-1) == labels) * 1.0, mask), rtol=1e-12)


@pytest.mark.parametrize("name", ["expected_accuracy", "sigmoid_smoothed_error", "accuracy"])
def test_masking(x64, rng, name):
  fn = getattr(measures, name)
  ref = {
      "expected_accuracy": lambda lg, lb: np_p_target(lg, lb),
      "sigmoid_smoothed_error": lambda lg, lb: np_sigmoid_error(lg, lb, 50.0),
      "accuracy": lambda lg, lb: (lg.argmax(-1) == lb) * 1.0
  }[name]
  logits, labels = data(rng, (3, 5))
  mask = np.ones((3, 5))
  mask[0, 2:] = 0.0
  mask[2, 4] = 0.0
  got = fn(jnp.asarray(logits), jnp.asarray(labels), mask=jnp.asarray(mask))
  np.testing.assert_allclose(got, np_masked_mean(ref(logits, labels), mask), rtol=1e-12)
  pad = mask == 0
  logits2, labels2 = logits.copy(), labels.copy()
  logits2[pad] = 50.0 * rng.normal(size=(pad.sum(), C))
  labels2[pad] = (labels2[pad] + 1) % C
  changed = fn(jnp.asarray(logits2), jnp.asarray(labels2), mask=jnp.asarray(mask))
  np.testing.assert_allclose(changed, got, rtol=1e-12)
  assert float(fn(jnp.asarray(logits), jnp.asarray(labels), mask=jnp.zeros((3, 5)))) == 0.0


@pytest.mark.parametrize("k", [0.0, -1.0])
def test_nonpositive_k(k):
  with pytest.raises(ValueError, match="steepness k must be > 0"):
    measures.sigmoid_smoothed_error(jnp.zeros((2, C)), jnp.zeros((2,), jnp.int32), k=k)
  with pytest.raises(ValueError, match="steepness k must be > 0"):
    measures.SigmoidSmoothedError(k=k)


def test_measure_errors():
  with pytest.raises(ValueError, match="labels must have the shape"):
    measures.expected_accuracy(jnp.zeros((4, C)), jnp.zeros((4, C), jnp.int32))
  with pytest.raises(TypeError, match="integer class ids"):
    measures.accuracy(jnp.zeros((4, C)), jnp.zeros((4,)))


def test_measure_directions():
  assert measures.ExpectedAccuracy().maximize is True
  assert measures.SigmoidSmoothedError().maximize is False
  assert measures.SigmoidSmoothedError().k == 50.0


# ----------------------------------------------------------------------------- batched dev set


def _model(kind):
  if kind == "mlp":
    return models.MLP(hidden=(8,), num_classes=C, activation=jnp.tanh, dtype=jnp.float64)
  return models.ConvBN(num_classes=C, width=3, activation=jnp.tanh, dtype=jnp.float64)


@pytest.mark.parametrize("kind", ["mlp", "convbn"])
@pytest.mark.parametrize(
    "measure",
    [measures.ExpectedAccuracy(), measures.SigmoidSmoothedError(k=7.0)],
    ids=["expected_accuracy", "sigmoid_error"])
def test_padded_dev_batches_give_exact_mean(x64, rng, kind, measure):
  """13 examples in 3 batches of 5 (2 padded with garbage) = the mean over the 13."""
  model = _model(kind)
  student = student_lib.Student(model, student_lib.make_optimizer("sgd", 0.1), C)
  n, nb, bs = 13, 3, 5
  x = rng.normal(size=(n, 4, 4, 1))
  y = rng.integers(0, C, size=n)
  state = student.init(jax.random.PRNGKey(0), {"x": x[:bs], "y": y[:bs]})
  # Non-trivial BatchNorm running statistics (eval mode must use them).
  model_state = jax.tree.map(lambda a: a + 0.3 * jnp.ones_like(a), state.model_state)
  xp = np.concatenate([x, 100.0 * rng.normal(size=(nb * bs - n, 4, 4, 1))])
  yp = np.concatenate([y, rng.integers(0, C, size=nb * bs - n)])
  mask = (np.arange(nb * bs) < n).astype(np.float64)
  dev = {
      "x": jnp.asarray(xp.reshape(nb, bs, 4, 4, 1)),
      "y": jnp.asarray(yp.reshape(nb, bs)),
      "mask": jnp.asarray(mask.reshape(nb, bs))
  }
  got = unroll.dev_measure(student, measure, state.params, model_state, dev)
  logits = model.apply({"params": state.params, **model_state}, jnp.asarray(x), train=False)[0]
  logits = np.asarray(logits)
  if isinstance(measure, measures.ExpectedAccuracy):
    expected = np_p_target(logits, y).mean()
  else:
    expected = np_sigmoid_error(logits, y, 7.0).mean()
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  # batch_sums: (sum over real examples, their number) for each batch.
  for i in range(nb):
    total, count = measure.batch_sums(student, state.params, model_state,
                                      jax.tree.map(lambda a, i=i: a[i], dev))
    rows = slice(i * bs, min((i + 1) * bs, n))
    assert float(count) == rows.stop - rows.start
    ref = (
        np_p_target(logits[rows], y[rows]) if isinstance(measure, measures.ExpectedAccuracy) else
        np_sigmoid_error(logits[rows], y[rows], 7.0))
    np.testing.assert_allclose(total, ref.sum(), rtol=1e-12)


def test_batch_sums_without_mask(x64, rng):
  model = _model("mlp")
  student = student_lib.Student(model, student_lib.make_optimizer("sgd", 0.1), C)
  batch = {
      "x": jnp.asarray(rng.normal(size=(6, 4, 4, 1))),
      "y": jnp.asarray(rng.integers(0, C, size=6))
  }
  state = student.init(jax.random.PRNGKey(0), batch)
  total, count = measures.ExpectedAccuracy().batch_sums(student, state.params, state.model_state,
                                                        batch)
  logits = np.asarray(model.apply({"params": state.params}, batch["x"])[0])
  assert float(count) == 6
  np.testing.assert_allclose(total, np_p_target(logits, np.asarray(batch["y"])).sum(), rtol=1e-12)


def test_dev_measure_gradient_matches_direct(x64, rng):
  """dw_T of Eqn. (3) over padded batches = the gradient of the unpadded mean."""
  model = _model("mlp")
  student = student_lib.Student(model, student_lib.make_optimizer("sgd", 0.1), C)
  x, y = rng.normal(size=(7, 4, 4, 1)), rng.integers(0, C, size=7)
  xp = np.concatenate([x, rng.normal(size=(1, 4, 4, 1))]).reshape(2, 4, 4, 4, 1)
  yp = np.concatenate([y, [0]]).reshape(2, 4)
  mask = np.concatenate([np.ones(7), [0.0]]).reshape(2, 4)
  dev = {"x": jnp.asarray(xp), "y": jnp.asarray(yp), "mask": jnp.asarray(mask)}
  state = student.init(jax.random.PRNGKey(0), {"x": x[:4], "y": y[:4]})
  measure = measures.ExpectedAccuracy()
  g = jax.grad(lambda p: unroll.dev_measure(student, measure, p, {}, dev))(state.params)
  direct = jax.grad(lambda p: measures.expected_accuracy(
      model.apply({"params": p}, jnp.asarray(x))[0], jnp.asarray(y)))(
          state.params)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(direct)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15)
