"""Students: CIFAR ResNets / WRNs, the im2col convolution, BatchNorm + momentum in the unroll."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlf_jax
from dlf_jax import measures, models
from dlf_jax.data import augment as augment_lib
from dlf_jax.models import layers

from _numerics import hypergradients_together
from problems import resnet_problem

pytestmark = pytest.mark.usefixtures("fast_compile")  # tiny programs: compile time dominates


def n_params(model, shape=(2, 32, 32, 3)):
  v = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape)))
  return sum(x.size for x in jax.tree_util.tree_leaves(v["params"]))


def test_published_parameter_counts():
  # He et al. 2016, Table 6 (option A shortcuts): ResNet-20 0.27M, ResNet-32 0.46M;
  # Zagoruyko & Komodakis 2016: WRN-28-10 36.5M.
  assert round(n_params(models.ResNet(20)) / 1e6, 2) == 0.27
  assert round(n_params(models.ResNet(32)) / 1e6, 2) == 0.46
  assert round(n_params(models.WideResNet(28, 10)) / 1e6, 1) == 36.5
  assert 0.07e6 < n_params(models.ResNet(8)) < 0.08e6
  # CIFAR-100 only changes the head: 64 x (100 - 10) more weights and 90 biases.
  assert n_params(models.ResNet(20, 100)) - n_params(models.ResNet(20)) == 64 * 90 + 90


@pytest.mark.parametrize("bad", [7, 10, 21])
def test_resnet_depth_must_be_6n_plus_2(bad):
  with pytest.raises(ValueError, match="6n\\+2"):
    models.ResNet(bad).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


def test_wrn_depth_must_be_6n_plus_4():
  with pytest.raises(ValueError, match="6n\\+4"):
    models.WideResNet(20, 2).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))


KERNELS = [(1, 1), (3, 3), (5, 5), (2, 3)]
STRIDES = [1, 2, 3]
PADDINGS = ["SAME", "VALID", ((1, 2), (0, 1))]
# A pairwise covering set: every (kernel, strides), (kernel, padding) and (strides, padding)
# pair occurs, in 12 cases instead of the 36 of the full product (each compiles its own
# convolutions).
CONV_CASES = [(k, s, PADDINGS[(i + j) % len(PADDINGS)])
              for i, k in enumerate(KERNELS)
              for j, s in enumerate(STRIDES)]


def _conv_id(v):
  if isinstance(v, tuple):  # a kernel (3, 3) or explicit padding
    return "x".join(map(str, v)) if isinstance(v[0], int) else "explicit"
  return str(v)


@pytest.mark.parametrize("kernel,strides,padding", CONV_CASES, ids=_conv_id)
def test_im2col_conv_equals_flax_conv(x64, kernel, strides, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 9, 10, 4), jnp.float64)
  kw = dict(strides=strides, padding=padding, param_dtype=jnp.float64, dtype=jnp.float64)
  ref = nn.Conv(6, kernel, **kw)
  params = ref.init(jax.random.PRNGKey(1), x)
  for impl in ("im2col", "xla"):
    ours = layers.Conv(6, kernel, impl=impl, **kw)
    assert (jax.tree_util.tree_structure(ours.init(jax.random.PRNGKey(1),
                                                   x)) == jax.tree_util.tree_structure(params))
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), atol=1e-12)


def test_conv_rejects_unknown_impl_and_padding():
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match="im2col"):
    layers.Conv(4, impl="fast").init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="padding"):
    layers.Conv(4, padding="FULL", impl="im2col").init(jax.random.PRNGKey(0), x)


def test_max_pool_equals_flax(x64):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 8, 3), jnp.float64)
  np.testing.assert_array_equal(layers.max_pool(x), nn.max_pool(x, (2, 2), (2, 2)))


def test_augmentation_is_deterministic_given_the_key():
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 8, 8, 3))
  a = augment_lib.random_crop_flip(jax.random.PRNGKey(1), x)
  b = augment_lib.random_crop_flip(jax.random.PRNGKey(1), x)
  c = augment_lib.random_crop_flip(jax.random.PRNGKey(2), x)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.shape == x.shape


def test_augmentation_is_a_padded_crop_or_its_mirror():
  x = jax.random.normal(jax.random.PRNGKey(0), (32, 6, 6, 2))
  out = np.asarray(augment_lib.random_crop_flip(jax.random.PRNGKey(3), x, padding=2))
  xp = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
  flips = 0
  for i in range(len(x)):
    found = None
    for dy in range(5):
      for dx in range(5):
        crop = xp[i, dy:dy + 6, dx:dx + 6]
        if np.array_equal(out[i], crop):
          found = "plain"
        elif np.array_equal(out[i], crop[:, ::-1]):
          found = "flip"
    assert found is not None, i
    flips += found == "flip"
  assert 0 < flips < len(x)  # both outcomes occur


def test_augmentation_errors():
  with pytest.raises(ValueError, match="\\[B, H, W, C\\]"):
    augment_lib.random_crop_flip(jax.random.PRNGKey(0), jnp.zeros((4, 8, 8)))
  with pytest.raises(ValueError, match="crop_flip"):
    augment_lib.make_augment("mixup")
  assert augment_lib.make_augment("none") is None


def test_resnet_bn_momentum_weight_decay_hypergradient_matches_autodiff(x64):
  """ResNet-8 (BatchNorm), momentum SGD + weight decay + step schedule + augmentation."""
  # T = 4 in two chunks of 2: no tail chunk, whose extra copy of the step would double the
  # compilation (tails are checked on the small problems of test_hypergrad.py).
  student, teacher, theta, state, batches, dev = resnet_problem(num_steps=4)
  m = measures.ExpectedAccuracy()
  # store_all with BatchNorm is checked on the smaller conv net in test_hypergrad.py. The
  # reference and the checkpointed reverse scan are compiled as one program.
  out = hypergradients_together(
      student, teacher, m, {
          "autodiff": dict(method="autodiff"),
          "checkpointed": dict(method="vjp", memory="checkpointed", checkpoint_every=2)
      }, theta, state, batches, dev)
  ref, got = out["autodiff"], out["checkpointed"]
  for a, b in ((got.dtheta, ref.dtheta), (got.dparams0, ref.dparams0)):
    a, b = (np.concatenate([np.ravel(v) for v in jax.tree.leaves(t)]) for t in (a, b))
    assert np.linalg.norm(b) > 0
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-10
  # BatchNorm statistics moved in the carry and are data: no cotangent for them.
  before = jax.tree.leaves(state.model_state)
  after = jax.tree.leaves(got.final_state.model_state)
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  assert "batch_stats" not in got.dparams0
  assert (jax.tree_util.tree_structure(got.dparams0) == jax.tree_util.tree_structure(state.params))


def test_augmentation_changes_the_step_and_is_reproducible(x64):
  # The student's augmentation does not depend on the net: the small conv net compiles faster.
  student, teacher, theta, state, batches, _ = resnet_problem(net="convbn")
  plain, *_ = resnet_problem(augment=False, net="convbn")
  run = lambda s: dlf_jax.unroll.unroll(s, teacher, theta, state, batches)[0].params
  a, b, c = run(student), run(student), run(plain)
  flat = lambda t: np.concatenate([np.ravel(v) for v in jax.tree.leaves(t)])
  np.testing.assert_array_equal(flat(a), flat(b))
  assert not np.allclose(flat(a), flat(c))
