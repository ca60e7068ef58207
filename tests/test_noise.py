"""Label noise, long tails, GLC's estimate, balanced accuracy, and their experiment keys."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import models, unroll
from dlf_jax import student as student_lib
from dlf_jax.data import noise
from dlf_jax.data.batching import make_eval_batches
from experiments import ablation, schema, selection, splits, summaries, workdir
from experiments.configs import (cifar10_noisy, common, fashion_mnist_noisy, label_corruption,
                                 mnist_noisy)

# ------------------------------------------------------------------- transition matrices


def test_symmetric_transition_known_values():
  t = noise.symmetric_transition(4, 0.3)
  assert t.dtype == np.float64 and t.shape == (4, 4)
  np.testing.assert_allclose(np.diag(t), 0.7)
  np.testing.assert_allclose(t[~np.eye(4, dtype=bool)], 0.1)
  np.testing.assert_allclose(t.sum(1), 1.0, rtol=0, atol=1e-15)
  np.testing.assert_array_equal(noise.symmetric_transition(3, 0.0), np.eye(3))
  np.testing.assert_allclose(noise.symmetric_transition(4, 0.75), np.full((4, 4), 0.25))


def test_pair_flip_transition_known_values():
  t = noise.pair_flip_transition(3, 0.4)
  np.testing.assert_allclose(t, [[0.6, 0.4, 0.0], [0.0, 0.6, 0.4], [0.4, 0.0, 0.6]])
  np.testing.assert_array_equal(noise.pair_flip_transition(5, 0.0), np.eye(5))


@pytest.mark.parametrize("fn, c, rate, match", [
    (noise.symmetric_transition, 4, 0.8, r"rate=0.8 is invalid .* \[0, 0.75\]"),
    (noise.symmetric_transition, 4, -0.1, r"rate=-0.1 is invalid"),
    (noise.pair_flip_transition, 4, 1.0, r"rate=1.0 is invalid .* \[0, 1\)"),
    (noise.pair_flip_transition, 1, 0.2, r"num_classes=1 is invalid: expected an integer >= 2"),
    (noise.symmetric_transition, 3, float("nan"), r"rate=nan is invalid"),
])
def test_transition_bad_arguments(fn, c, rate, match):
  with pytest.raises(ValueError, match=match):
    fn(c, rate)


@pytest.mark.parametrize("t, match", [
    ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], r"square \[C, C\] matrix .* shape \(2, 3\)"),
    ([[1.2, -0.2], [0.0, 1.0]], r"transition\[0, 1\]=-0.2 is negative"),
    ([[0.5, 0.4], [0.0, 1.0]], r"not row-stochastic: row 0 sums to 0.9"),
    ([[0.5, "a"], [0.0, 1.0]], r"matrix of numbers"),
])
def test_check_transition_errors(t, match):
  with pytest.raises(ValueError, match=match):
    noise.check_transition(t)


def test_check_transition_class_count():
  with pytest.raises(ValueError, match="is 2 x 2 but the data have 3 classes"):
    noise.check_transition(np.eye(2), 3)


# ------------------------------------------------------------------------- corruption


def _labels(n=20000, c=10, dtype=np.int32, seed=0):
  return np.random.default_rng(seed).integers(0, c, n).astype(dtype)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_corrupt_labels_follows_the_documented_draw(dtype):
  y = _labels(500, 4, dtype)
  t = np.array([[0.5, 0.5, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 1.0, 0.0],
                [0.25, 0.25, 0.25, 0.25]])
  got = noise.corrupt_labels(y, t, seed=7)
  u = np.random.default_rng(7).random(len(y))
  ref = np.array([int(np.argmax(u[n] < np.cumsum(t[y[n]]))) for n in range(len(y))])
  assert got.dtype == dtype
  np.testing.assert_array_equal(got, ref)
  np.testing.assert_array_equal(got[y == 2], 2)  # a one-hot row never moves
  assert not np.any((y == 0) & (got > 1))  # zero probability: never drawn


def test_corrupt_labels_is_deterministic_and_seeded():
  y, t = _labels(), noise.symmetric_transition(10, 0.4)
  a, b = noise.corrupt_labels(y, t, 3), noise.corrupt_labels(y, t, 3)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, noise.corrupt_labels(y, t, 4))


@pytest.mark.parametrize("fn", [noise.symmetric_transition, noise.pair_flip_transition])
def test_corrupt_labels_rate_zero_is_identity(fn):
  y = _labels()
  np.testing.assert_array_equal(noise.corrupt_labels(y, fn(10, 0.0), 0), y)


@pytest.mark.parametrize("fn, rate", [(noise.symmetric_transition, 0.3),
                                      (noise.pair_flip_transition, 0.4)])
def test_corrupt_labels_realised_rate_and_matrix(fn, rate):
  y = _labels()
  t = fn(10, rate)
  z = noise.corrupt_labels(y, t, 1)
  n = len(y)
  assert abs(noise.noise_rate(y, z) - rate) < 4 * np.sqrt(rate * (1 - rate) / n)
  realised = noise.realised_transition(y, z, 10)
  np.testing.assert_allclose(realised.sum(1), 1.0, atol=1e-12)
  per_row = np.bincount(y, minlength=10)[:, None]
  tol = 4 * np.sqrt(np.maximum(t * (1 - t), 1e-12) / per_row) + 1e-12
  assert np.all(np.abs(realised - t) <= tol)
  np.testing.assert_array_equal(realised[t == 0], 0.0)  # e.g. pair flip: only i, i + 1


def test_higher_rate_flips_a_superset():
  y = _labels()
  lo = noise.corrupt_labels(y, noise.pair_flip_transition(10, 0.2), 5)
  hi = noise.corrupt_labels(y, noise.pair_flip_transition(10, 0.4), 5)
  assert np.all((lo != y) <= (hi != y))


@pytest.mark.parametrize("labels, t, match", [
    (np.array([0, 1, 3]), np.eye(3), r"labels holds label 3, outside \[0, 3\)"),
    (np.array([0.0, 1.0]), np.eye(2), r"labels must be a 1-D integer array"),
    (np.array([0, 1]), [[0.9, 0.0], [0.0, 1.0]], r"not row-stochastic: row 0"),
])
def test_corrupt_labels_errors(labels, t, match):
  with pytest.raises(ValueError, match=match):
    noise.corrupt_labels(labels, t, 0)


def test_realised_transition_absent_class_and_rate():
  clean = np.array([0, 0, 0, 0, 1, 1])
  noisy = np.array([0, 1, 1, 1, 1, 0])
  np.testing.assert_allclose(
      noise.realised_transition(clean, noisy, 3),
      [[0.25, 0.75, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
  np.testing.assert_array_equal(
      noise.transition_counts(clean, noisy, 3), [[1, 3, 0], [1, 1, 0], [0, 0, 0]])
  assert noise.noise_rate(clean, noisy) == pytest.approx(4 / 6)
  with pytest.raises(ValueError, match="same length"):
    noise.realised_transition(clean, noisy[:3], 3)
  with pytest.raises(ValueError, match="non-empty 1-D label arrays of one length"):
    noise.noise_rate(clean, noisy[:3])


# -------------------------------------------------------------------------- long tail


def test_long_tail_counts_known_values():
  np.testing.assert_array_equal(
      noise.long_tail_counts(500, 10, 100), [500, 299, 179, 107, 64, 38, 23, 13, 8, 5])
  # CIFAR-10-LT, rho = 100 (Cao et al. 2019's code).
  np.testing.assert_array_equal(
      noise.long_tail_counts(5000, 10, 100), [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])
  np.testing.assert_array_equal(noise.long_tail_counts(7, 4, 1), [7, 7, 7, 7])


@pytest.mark.parametrize("args, match", [
    ((500, 10, 0.5), r"imbalance_ratio=0.5 is invalid: expected a number >= 1"),
    ((50, 10, 100), r"leaves class 9 no example"),
    ((0, 10, 10), r"max_per_class=0 is invalid"),
])
def test_long_tail_counts_errors(args, match):
  with pytest.raises(ValueError, match=match):
    noise.long_tail_counts(*args)


def test_long_tail_subsample_counts_and_determinism():
  y = np.repeat(np.arange(5), [60, 50, 70, 80, 55]).astype(np.int32)
  y = y[np.random.default_rng(1).permutation(len(y))]
  idx = noise.long_tail_subsample(y, 10.0, seed=3)
  want = noise.long_tail_counts(50, 5, 10.0)  # n_max = the rarest class (50)
  np.testing.assert_array_equal(np.bincount(y[idx], minlength=5), want)
  assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
  np.testing.assert_array_equal(idx, noise.long_tail_subsample(y, 10.0, seed=3))
  assert not np.array_equal(idx, noise.long_tail_subsample(y, 10.0, seed=4))
  # The documented rule: the first n_i of class i in the seeded permutation.
  perm = np.random.default_rng(3).permutation(len(y))
  ref = np.sort(np.concatenate([perm[y[perm] == i][:want[i]] for i in range(5)]))
  np.testing.assert_array_equal(idx, ref)


def test_long_tail_subsample_errors():
  y = np.repeat(np.arange(3), [20, 5, 20])
  with pytest.raises(ValueError, match=r"class 1 has 5 examples, fewer than the 6"):
    noise.long_tail_subsample(y, 10.0, 0, max_per_class=20)
  with pytest.raises(ValueError, match=r"imbalance_ratio=0.9 is invalid"):
    noise.long_tail_subsample(y, 0.9, 0)
  with pytest.raises(ValueError, match=r"class 3 has no example"):
    noise.long_tail_subsample(y, 2.0, 0, num_classes=4)


def test_class_priors():
  np.testing.assert_allclose(
      noise.class_priors(np.array([0, 0, 2, 2, 2, 1]), 4), [2 / 6, 1 / 6, 3 / 6, 0.0])
  with pytest.raises(ValueError, match="labels is empty"):
    noise.class_priors(np.array([], np.int32), 3)


# -------------------------------------------------------------------------------- GLC


def test_glc_recovers_t_from_one_hot_probs():
  """Probs are one-hots whose class frequencies per true class are exactly T's rows."""
  t = np.array([[0.7, 0.2, 0.1, 0.0], [0.0, 0.6, 0.4, 0.0], [0.1, 0.1, 0.8, 0.0],
                [0.0, 0.0, 0.0, 1.0]])
  labels, probs = [], []
  for i in range(3):  # class 3 has no trusted example
    draws = np.repeat(np.arange(4), np.round(10 * t[i]).astype(int))
    labels += [i] * len(draws)
    probs.append(np.eye(4)[draws])
  labels = np.array(labels)
  probs = np.concatenate(probs)
  order = np.random.default_rng(0).permutation(len(labels))
  got = noise.estimate_transition_glc(probs[order], labels[order], 4)
  np.testing.assert_allclose(got, t, rtol=0, atol=1e-15)  # row 3: identity (absent)


def test_glc_errors():
  with pytest.raises(ValueError, match=r"probs must be \[N, 3\]"):
    noise.estimate_transition_glc(np.full((2, 4), 0.25), np.array([0, 1]), 3)
  with pytest.raises(ValueError, match="apply jax.nn.softmax to the logits first"):
    noise.estimate_transition_glc(np.array([[2.0, -1.0, 0.5]]), np.array([0]), 3)
  with pytest.raises(ValueError, match="probs has 1 rows but labels has 2"):
    noise.estimate_transition_glc(np.full((1, 3), 1 / 3), np.array([0, 1]), 3)


# ----------------------------------------------------------------- balanced accuracy


def test_evaluate_balanced_accuracy_matches_numpy(x64):
  c = 4
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), [20, 6, 3])  # imbalanced; class 3 absent
  x = rng.normal(size=(len(y), 5)) + y[:, None]
  model = models.MLP(hidden=(8,), num_classes=c, dtype=jnp.float64)
  student = student_lib.Student(model, student_lib.make_optimizer("sgd", 0.1), c)
  state = student.init(jax.random.PRNGKey(1), {"x": x[:2], "y": y[:2]})
  batches = make_eval_batches({"x": x, "y": y}, 8)  # 4 batches, the last padded
  got = unroll.evaluate(student, state.params, state.model_state, batches)
  pred = np.argmax(np.asarray(model.apply({"params": state.params}, x)[0]), -1)
  recall = [np.mean(pred[y == k] == k) for k in range(3)]
  np.testing.assert_allclose(got["balanced_accuracy"], np.mean(recall), rtol=1e-12)
  np.testing.assert_allclose(got["accuracy"], np.mean(pred == y), rtol=1e-12)
  jitted = jax.jit(lambda p, m, b: unroll.evaluate(student, p, m, b))(state.params,
                                                                      state.model_state, batches)
  np.testing.assert_allclose(jitted["balanced_accuracy"], np.mean(recall), rtol=1e-12)


class _TokenModel(nn.Module):

  @nn.compact
  def __call__(self, x, *, train=False):
    return nn.Dense(3, dtype=jnp.float64)(x)  # [B, L, 3]


def test_evaluate_token_level_has_no_balanced_accuracy(x64):
  student = student_lib.Student(
      _TokenModel(), student_lib.make_optimizer("sgd", 0.1), 3, head_path=None)
  rng = np.random.default_rng(0)
  batch = {
      "x": rng.normal(size=(2, 4, 5, 2)),
      "y": rng.integers(0, 3, (2, 4, 5)),
      "mask": np.ones((2, 4, 5))
  }
  state = student.init(jax.random.PRNGKey(0), jax.tree.map(lambda a: a[0], batch))
  got = unroll.evaluate(student, state.params, state.model_state, batch)
  assert sorted(got) == ["accuracy", "cross_entropy"]


# ------------------------------------------------------------------ experiment splits


def _config(**noise_keys):
  config = common.base_config()
  config.data.name = "embedded_mnist"
  config.data.source = "embedded"
  config.data.dev_size = 100
  config.data.train_size = 500
  config.data.test_size = 200
  config.data.val_size = 100
  config.student.batch_size = 16
  for key, value in noise_keys.items():
    section, name = key.split("__")
    config.data[section][name] = value
  return config


@pytest.fixture(scope="module")
def embedded():
  return splits.load_data(_config())


def test_splits_corrupt_train_only(embedded):
  clean_data, clean_val = splits.prepare(_config(), embedded)
  assert splits.label_record(_config(), clean_data, clean_val) is None
  assert clean_data.train.clean_y is None
  config = _config(noise__kind="pair", noise__rate=0.4, noise__seed=2)
  data, val = splits.prepare(config, embedded)
  for name in ("dev", "test"):
    np.testing.assert_array_equal(getattr(data, name).y, getattr(clean_data, name).y)
    np.testing.assert_array_equal(getattr(data, name).x, getattr(clean_data, name).x)
  np.testing.assert_array_equal(val.y, clean_val.y)
  np.testing.assert_array_equal(val.x, clean_val.x)
  np.testing.assert_array_equal(data.train.x, clean_data.train.x)
  np.testing.assert_array_equal(data.train.clean_y, clean_data.train.y)
  flipped = data.train.y != data.train.clean_y
  np.testing.assert_array_equal(data.train.y[flipped], (data.train.clean_y[flipped] + 1) % 10)
  assert data.train.y.dtype == np.int32
  record = json.loads(json.dumps(splits.label_record(config, data, val)))  # JSON-able
  assert record["noise"]["realised_rate"] == pytest.approx(np.mean(flipped))
  assert abs(record["noise"]["realised_rate"] - 0.4) < 4 * np.sqrt(0.24 / len(flipped))
  np.testing.assert_allclose(record["noise"]["transition"], noise.pair_flip_transition(10, 0.4))
  np.testing.assert_allclose(record["noise"]["realised_transition"],
                             noise.realised_transition(data.train.clean_y, data.train.y, 10))
  assert record["class_counts"]["val"] == np.bincount(val.y, minlength=10).tolist()
  assert sum(record["class_counts"]["train"]) == len(data.train) == 400


def test_splits_long_tail_then_noise(embedded):
  config = _config(imbalance__ratio=5.0, noise__kind="symmetric", noise__rate=0.2)
  data, val = splits.prepare(config, embedded)
  clean_data, _ = splits.prepare(_config(), embedded)
  counts = np.bincount(data.train.clean_y, minlength=10)
  n_max = int(np.bincount(clean_data.train.y, minlength=10).min())
  np.testing.assert_array_equal(counts, noise.long_tail_counts(n_max, 10, 5.0))
  record = splits.label_record(config, data, val)
  assert record["imbalance"] == {"ratio": 5.0, "seed": 0, "max_per_class": n_max}
  assert record["class_counts"]["train"] == counts.tolist()
  np.testing.assert_array_equal(data.dev.y, clean_data.dev.y)


def test_splits_long_tail_too_steep_is_a_config_error(embedded):
  with pytest.raises(workdir.InputError, match=r"config.data.imbalance.ratio=1000.0: .*leaves"):
    splits.prepare(_config(imbalance__ratio=1000.0), embedded)


# ---------------------------------------------------------------------- schema, workdir


@pytest.mark.parametrize("keys, match", [
    ({
        "noise__kind": "gaussian"
    }, r"config.data.noise.kind='gaussian' is invalid: expected one"),
    ({
        "noise__kind": "pair",
        "noise__rate": 1.0
    }, r"config.data.noise.rate=1.0 is invalid: expected a number in \[0, 1\)"),
    ({
        "noise__kind": "symmetric",
        "noise__rate": 0.95
    }, r"config.data.noise.rate=0.95 is invalid: .*\[0, 0.9\] for symmetric"),
    ({
        "noise__rate": 0.4
    }, r"config.data.noise.rate=0.4 is invalid: expected 0 with "
     r"data.noise.kind='none'"),
    ({
        "noise__kind": "matrix",
        "noise__matrix": ((0.5, 0.4),) + ((0.0, 1.0),)
    }, r"config.data.noise.matrix=.* 10 x 10 .*is 2 x 2 but the data have 10"),
    ({
        "noise__kind": "matrix",
        "noise__matrix": tuple(tuple(r) for r in 0.9 * np.eye(10) + 0.02)
    }, r"config.data.noise.matrix=.*not row-stochastic: row 0 sums to 1.1"),
    ({
        "noise__kind": "matrix"
    }, r"config.data.noise.matrix=None is invalid: .*\(missing\)"),
    ({
        "noise__matrix": ((1.0, 0.0), (0.0, 1.0))
    }, r"config.data.noise.matrix=.* expected None unless data.noise.kind='matrix'"),
    ({
        "imbalance__ratio": 0.5
    }, r"config.data.imbalance.ratio=0.5 is invalid: expected None "
     r"\(.*\) or a number >= 1"),
])
def test_schema_rejects_bad_noise_keys(keys, match):
  with pytest.raises(schema.ConfigError, match=match):
    schema.validate(_config(**keys), schema.CLASSIFICATION)


def test_schema_accepts_a_matrix():
  t = noise.symmetric_transition(10, 0.3)
  config = _config(noise__kind="matrix", noise__matrix=tuple(tuple(r) for r in t))
  schema.validate(config, schema.CLASSIFICATION)


def test_workdir_older_than_the_noise_keys_resumes(tmp_path):
  old = workdir.config_json(_config())
  del old["data"]["noise"], old["data"]["imbalance"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  workdir.check_workdir_config(_config(), str(tmp_path))  # defaults: the same run
  (tmp_path / "config.json").write_text(json.dumps(old))
  with pytest.raises(
      workdir.WorkdirConfigError, match=r"data.noise.kind = '<absent>' there, 'pair' now"):
    workdir.check_workdir_config(_config(noise__kind="pair", noise__rate=0.4), str(tmp_path))


NOISY_CONFIGS = {
    "mnist_noisy": mnist_noisy,
    "fashion_mnist_noisy": fashion_mnist_noisy,
    "cifar10_noisy": cifar10_noisy
}


@pytest.mark.parametrize("name", sorted(NOISY_CONFIGS))
@pytest.mark.parametrize("variant", (None,) + label_corruption.VARIANTS)
def test_noisy_configs_validate(name, variant):
  config = NOISY_CONFIGS[name].get_config(variant)
  schema.validate(config, schema.CLASSIFICATION)
  kind = "none" if variant and variant.startswith("lt") else "symmetric" if variant and (
      variant.startswith("sym60")) else "pair"
  assert config.data.noise.kind == kind
  assert config.data.noise.rate == {"none": 0.0, "symmetric": 0.6, "pair": 0.4}[kind]
  assert (kind == "none") == (config.data.imbalance.ratio is not None)
  # The protocol's rows: the untaught anchor beside the taught teacher, on trusted sets.
  assert config.methods[-2:] == ("l2t_dlf_anchor", "l2t_dlf")
  assert config.teach.select and config.data.val_size and config.data.dev_size
  smoke = variant is not None and variant.endswith("smoke")
  assert (config.num_seeds == 1) == smoke
  assert (config.teacher.anchor == "glc") == (variant in ("glc", "glc_smoke"))


@pytest.mark.parametrize("name", sorted(NOISY_CONFIGS))
def test_noisy_config_unknown_variant(name):
  with pytest.raises(ValueError, match=f"Unknown {name} variant 'bogus'"):
    NOISY_CONFIGS[name].get_config("bogus")


# ---------------------------------------------------- headline metric: balanced under a long tail


def test_headline_metric_follows_the_long_tail():
  assert splits.headline_metric(_config()) == "accuracy"
  assert splits.headline_metric(_config(noise__kind="pair", noise__rate=0.4)) == "accuracy"
  assert splits.headline_metric(_config(imbalance__ratio=5.0)) == "balanced_accuracy"
  assert splits.headline_metric(mnist_noisy.get_config("lt")) == "balanced_accuracy"
  # results.json's config (a plain dict) and configs without the key (translation)
  assert splits.headline_metric({"data": {"imbalance": {"ratio": 3.0}}}) == "balanced_accuracy"
  assert splits.headline_metric({"data": {"name": "multi30k"}}) == "accuracy"


def _history(dev, test, dev_bal, test_bal):
  return [{
      "step": 10 * (i + 1),
      "dev_accuracy": a,
      "test_accuracy": b,
      "dev_balanced_accuracy": c,
      "test_balanced_accuracy": d
  } for i, (a, b, c, d) in enumerate(zip(dev, test, dev_bal, test_bal))]


def test_final_numbers_balanced_picks_best_balanced_dev():
  # Plain dev accuracy peaks at step 10, balanced dev accuracy at step 20.
  hist = _history([0.9, 0.8, 0.85], [0.88, 0.8, 0.82], [0.5, 0.7, 0.6], [0.45, 0.75, 0.55])
  plain = summaries.final_numbers(hist)
  assert plain == pytest.approx({
      "test_error": 18.0,
      "dev_error": 15.0,
      "test_error_at_best_dev": 12.0,
      "best_dev_step": 10,
      "final_step": 30
  })
  bal = summaries.final_numbers(hist, "balanced_accuracy")
  assert bal == pytest.approx({
      "test_error": 18.0,
      "dev_error": 15.0,
      "test_error_at_best_dev": 20.0,
      "best_dev_step": 20,
      "final_step": 30,
      "test_balanced_error": 45.0,
      "dev_balanced_error": 40.0,
      "test_balanced_error_at_best_dev": 25.0
  })
  with pytest.raises(ValueError, match=r"metric='balanced'.*one of \('accuracy', "):
    summaries.final_numbers(hist, "balanced")
  no_bal = [{k: v for k, v in r.items() if "balanced" not in k} for r in hist]
  with pytest.raises(ValueError, match=r"no dev_balanced_accuracy .*metric='accuracy'"):
    summaries.final_numbers(no_bal, "balanced_accuracy")


def _summary_results(metric):
  # Two seeds per method; cross-entropy wins on plain error, l2t_dlf on balanced error.
  hists = {
      ("cross_entropy", 0): _history([0.9], [0.9], [0.6], [0.5]),
      ("cross_entropy", 1): _history([0.9], [0.92], [0.6], [0.54]),
      ("l2t_dlf", 0): _history([0.8], [0.8], [0.8], [0.7]),
      ("l2t_dlf", 1): _history([0.8], [0.84], [0.8], [0.74])
  }
  runs = [{
      "method": m,
      "seed": s,
      "seconds": 1.0,
      **summaries.final_numbers(h, metric)
  } for (m, s), h in hists.items()]
  summary = summaries.summarize(runs, ["cross_entropy", "l2t_dlf"], metric)
  config = {
      "model": {
          "name": "mlp"
      },
      "student": {
          "num_steps": 10
      },
      "seed": 0,
      "num_seeds": 2,
      "data": {
          "imbalance": {
              "ratio": 10.0
          }
      }
  }
  results = {
      "config": config,
      "methods": summary,
      "data": {
          "name": "embedded_mnist",
          "source": "embedded",
          "num_classes": 10,
          "train": 100,
          "dev": 10,
          "val": 10,
          "test": 10
      },
      "wall_seconds": {
          "teach": None,
          "methods": {},
          "total": 0.0
      }
  }
  if metric != "accuracy":
    results["headline_metric"] = metric
  return results


def test_summaries_with_a_long_tail_lead_with_balanced_error():
  results = _summary_results("balanced_accuracy")
  e = results["methods"]["l2t_dlf"]
  assert e["test_balanced_error_mean"] == pytest.approx(28.0)  # 30 and 26
  assert e["test_balanced_error_std"] == pytest.approx(np.std([30.0, 26.0], ddof=1))
  assert e["test_balanced_errors"] == pytest.approx([30.0, 26.0])
  assert e["test_error_mean"] == pytest.approx(18.0)
  table = summaries.results_table(results).splitlines()
  assert table[0] == ("| method | balanced test error % | test error % | balanced dev error % "
                      "| balanced test error % at best balanced dev | seeds | train time (s) |")
  assert table[3] == ("| L2T-DLF | 28.00 ± 2.83 | 18.00 ± 2.83 | 20.00 ± 0.00 | 28.00 ± 2.83 "
                      "| 2 | 2.0 |")
  assert table[2].startswith("| Cross-entropy | 48.00 ± 2.83 | 9.00 ± 1.41 |")
  md = summaries.results_markdown(results)
  assert "Balanced test error (%: 1 − the mean per-class recall" in md
  assert "data.imbalance.ratio = 10" in md
  results["selection"] = {
      "chosen": "taught",
      "val_error": {
          "anchor (untaught)": 40.0,
          "taught": 30.0
      },
      "seeds": [1000],
      "val_size": 10,
      "metric": "balanced_accuracy"
  }
  assert "by the balanced validation error" in summaries.results_markdown(results)


def test_summaries_without_a_long_tail_are_unchanged():
  results = _summary_results("accuracy")
  assert not any("balanced" in k for e in results["methods"].values() for k in e)
  table = summaries.results_table(results).splitlines()
  assert table[0] == ("| method | test error % | dev error % | test error % at best dev | "
                      "seeds | train time (s) |")
  assert table[3] == "| L2T-DLF | 18.00 ± 2.83 | 20.00 ± 0.00 | 18.00 ± 2.83 | 2 | 2.0 |"
  assert "Balanced" not in summaries.results_markdown(results)


class _Logits(nn.Module):
  """Its input are its logits (scaled by a parameter initialised to 1)."""

  @nn.compact
  def __call__(self, x, *, train=False):
    return x * self.param("scale", nn.initializers.ones, ())


def test_selection_picks_by_balanced_accuracy_under_a_long_tail():
  # A long-tailed validation split: 8 of class 0, 2 of class 1. Candidate 'head' says 0
  # always (accuracy 0.8, balanced 0.5); 'fair' gets both 1s and 5 of the 0s (accuracy
  # 0.7, balanced (5/8 + 1) / 2 = 0.8125).
  y = np.array([0] * 8 + [1] * 2, np.int32)
  preds = {"head": np.zeros(10, np.int32), "fair": np.array([0] * 5 + [1] * 5, np.int32)}
  student = student_lib.Student(
      _Logits(), student_lib.make_optimizer("sgd", 0.1), 2, head_path=None)
  scores = {}
  for name, p in preds.items():
    x = np.eye(2, dtype=np.float32)[p]
    state = student.init(jax.random.PRNGKey(0), {"x": x[:2], "y": y[:2]})
    batches = make_eval_batches({"x": x, "y": y}, 4)
    scores[name] = [
        jax.device_get(unroll.evaluate(student, state.params, state.model_state, batches))
    ]
  np.testing.assert_allclose([scores["head"][0]["accuracy"], scores["fair"][0]["accuracy"]],
                             [0.8, 0.7],
                             rtol=1e-6)
  chosen, errors = selection.pick_by_validation(
      scores, splits.headline_metric(_config(imbalance__ratio=5.0)))
  assert chosen == "fair"
  assert errors == pytest.approx({"head": 50.0, "fair": 18.75})
  chosen, errors = selection.pick_by_validation(scores, splits.headline_metric(_config()))
  assert chosen == "head"
  assert errors == pytest.approx({"head": 20.0, "fair": 30.0})
  tie = {"a": [{"accuracy": 0.7}], "b": [{"accuracy": 0.7 + 1e-12}]}
  assert selection.pick_by_validation(tie)[0] == "a"  # ties: the first
  with pytest.raises(ValueError, match=r"\['a', 'b'\] have no 'balanced_accuracy'"):
    selection.pick_by_validation(tie, "balanced_accuracy")


# ------------------------------------------------------------------------------ ablation


def test_ablation_splits_corrupt_train_only_and_record(tmp_path):
  clean, c, labels = ablation.prepare_splits(_config(), 100, str(tmp_path / "clean"))
  assert c == 10 and labels is None
  assert not (tmp_path / "clean" / "label_noise.json").exists()
  config = _config(noise__kind="pair", noise__rate=0.4, noise__seed=3)
  config.data.val_size = 50  # the ablation's val_size replaces it
  noisy, _, labels = ablation.prepare_splits(config, 100, str(tmp_path / "noisy"))
  assert {
      k: len(v["y"]) for k, v in noisy.items()
  } == {
      "train": 400,
      "dev": 100,
      "val": 100,
      "test": 200
  }
  for name in ("dev", "val", "test"):
    np.testing.assert_array_equal(noisy[name]["y"], clean[name]["y"])
    np.testing.assert_array_equal(noisy[name]["x"], clean[name]["x"])
  np.testing.assert_array_equal(noisy["train"]["x"], clean["train"]["x"])
  flipped = noisy["train"]["y"] != clean["train"]["y"]
  assert 0.25 < flipped.mean() < 0.55
  np.testing.assert_array_equal(noisy["train"]["y"][flipped],
                                (clean["train"]["y"][flipped] + 1) % 10)
  written = json.loads((tmp_path / "noisy" / "label_noise.json").read_text())
  assert written == json.loads(json.dumps(labels))
  assert written["noise"]["realised_rate"] == pytest.approx(flipped.mean())
  assert written["class_counts"]["val"] == np.bincount(clean["val"]["y"], minlength=10).tolist()


def _cache(workdir, name, **record):
  path = workdir / "cache" / f"{name}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"tag": name, "seconds": 0.0, **record}))


@pytest.mark.parametrize("ratio, eps", [(None, 0.05), (2.0, 0.2)])
def test_ablation_selects_and_reports_by_the_headline_metric(tmp_path, ratio, eps):
  # Finished students are read from the ablation's cache (nothing is trained): eps 0.05
  # has the lower plain validation error, eps 0.2 the lower balanced one.
  for e, val, val_bal in ((0.05, 10.0, 40.0), (0.2, 12.0, 30.0)):
    _cache(
        tmp_path,
        f"label_smoothing_{e:g}_seed1000_val",
        seed=1000,
        val_error=val,
        val_balanced_error=val_bal)
  for seed, test, test_bal in ((0, 8.0, 20.0), (1, 9.0, 22.0)):
    _cache(
        tmp_path,
        f"cross_entropy_seed{seed}",
        seed=seed,
        val_error=7.0,
        test_error=test,
        val_balanced_error=21.0,
        test_balanced_error=test_bal)
  config = _config(imbalance__ratio=ratio)
  out = ablation.run(
      config,
      str(tmp_path),
      variants=[],
      seeds=2,
      val_size=100,
      baselines=("cross_entropy",),
      ls_grid=(0.05, 0.2),
      tune_seeds=(1000,))
  assert out["tuned_eps"] == eps
  table = (tmp_path / "ablation.md").read_text().splitlines()
  if ratio is None:
    assert "headline_metric" not in out and "label_noise" not in out
    assert table[0].startswith("| row | what it adds | test error % | Δ vs tuned LS")
    assert table[2].startswith("| cross_entropy | cross-entropy | 8.50 ± 0.71 | — | 7.00 ± 0.00 |")
  else:
    assert out["headline_metric"] == "balanced_accuracy"
    assert out["label_noise"]["imbalance"]["ratio"] == 2.0
    assert (tmp_path / "label_noise.json").exists()
    assert table[0].startswith("| row | what it adds | balanced test error % | test error % "
                               "| Δ balanced vs tuned LS")
    assert table[2].startswith("| cross_entropy | cross-entropy | 21.00 ± 1.41 | 8.50 ± 0.71 "
                               "| — | 21.00 ± 0.00 |")
    assert "balanced validation error % per eps" in table[-1]
