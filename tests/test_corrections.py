"""The closed-form baselines built from the data and the teacher anchored at GLC's estimate.

* ``glc``: T^ is exactly :func:`dlf_jax.data.estimate_transition_glc` of the cross-entropy
  student's dev softmax (known probs; and a tiny trained student restored from its last
  checkpoint, bit for bit the retrained one), recorded in the workdir and read back;
* ``forward_oracle`` uses exactly the true T; ``logit_adjusted`` / ``class_balanced`` the
  priors / counts of the (noisy) training labels and the config's tau / beta;
* tau / beta tuned on validation pick the lowest validation error
  (:func:`experiments.selection.pick_by_validation`);
* schema errors name the key and the fix; the GLC-anchored teacher starts at T^.
"""
import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlf_jax
from dlf_jax import losses
from dlf_jax import teacher as teacher_lib
from dlf_jax.data import noise
from experiments import builders, correction_phases, corrections, phases, schema, splits
from experiments.configs import common, mnist_noisy, multi30k_transformer

C = 3


def _config(kind="pair", rate=0.4, **baselines):
  config = common.base_config()
  config.data.name = "embedded_mnist"
  config.data.source = "embedded"
  config.data.noise.kind = kind
  config.data.noise.rate = rate
  for key, value in baselines.items():
    config.baselines[key] = value
  return config


def _split(y):
  return types.SimpleNamespace(x=np.zeros((len(y), 1), np.float32), y=np.asarray(y, np.int32))


def _data(train_y, dev_y, c=C):
  return types.SimpleNamespace(train=_split(train_y), dev=_split(dev_y), num_classes=c)


def _probs(n, c, seed=0):
  logits = np.random.default_rng(seed).normal(size=(n, c)) * 2
  e = np.exp(logits - logits.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)


# ------------------------------------------------------------------------------- builders


def test_glc_builder_uses_the_estimate_of_the_ce_students_probs(tmp_path):
  dev_y = np.array([0, 1, 2, 0, 1, 2, 2, 0])
  probs = _probs(len(dev_y), C)
  seen = []

  def dev_probs(seed):
    seen.append(seed)
    return probs

  data = _data([0, 1, 2, 1], dev_y)
  config = _config()
  loss = corrections.build_data_baseline(
      config, data, "glc", corrections.Context(seed=7, dev_probs=dev_probs, workdir=str(tmp_path)))
  want = noise.estimate_transition_glc(probs, dev_y, C)
  assert isinstance(loss, losses.ForwardCorrectionLoss) and seen == [7]
  np.testing.assert_array_equal(np.asarray(loss.transition), want)
  record = json.loads((tmp_path / "glc" / "transition_seed7.json").read_text())
  np.testing.assert_array_equal(record["transition"], want)  # float64 round trip
  np.testing.assert_array_equal(record["true_transition"], noise.pair_flip_transition(C, 0.4))
  assert record["mean_abs_error"] == pytest.approx(
      np.mean(np.abs(want - noise.pair_flip_transition(C, 0.4))))
  # A resumed run reads T^ back without the student.
  again = corrections.build_glc(config, data, corrections.Context(seed=7, workdir=str(tmp_path)))
  assert again.transition == loss.transition
  with pytest.raises(ValueError, match="method 'glc' needs the cross-entropy student's"):
    corrections.build_glc(config, data, corrections.Context(seed=8, workdir=str(tmp_path)))


@pytest.mark.parametrize("kind, rate, fn", [("pair", 0.3, noise.pair_flip_transition),
                                            ("symmetric", 0.5, noise.symmetric_transition)])
def test_forward_oracle_uses_exactly_the_true_t(kind, rate, fn):
  data = _data([0, 1, 2], [0, 1, 2], c=10)
  loss = corrections.build_data_baseline(
      _config(kind, rate), data, "forward_oracle", corrections.Context(seed=0))
  np.testing.assert_array_equal(np.asarray(loss.transition), fn(10, rate))
  np.testing.assert_array_equal(
      np.asarray(loss.transition), splits.noise_transition(_config(kind, rate), 10))
  with pytest.raises(ValueError, match="'forward_oracle' needs label noise"):
    corrections.build_forward_oracle(_config("none", 0.0), data, corrections.Context(seed=0))


def test_long_tail_baselines_use_the_training_labels():
  train_y = np.array([0, 0, 0, 0, 1, 1, 2])
  data = _data(train_y, [0, 1, 2])
  data.train.clean_y = np.array([0, 1, 2, 0, 1, 2, 2])  # not what the student trains on
  config = _config(logit_tau=0.7, cb_beta=0.99)
  la = corrections.build_data_baseline(config, data, "logit_adjusted", corrections.Context(seed=0))
  np.testing.assert_array_equal(la.class_priors, [4 / 7, 2 / 7, 1 / 7])
  assert isinstance(la, losses.LogitAdjustedLoss) and la.tau == 0.7
  cb = corrections.build_data_baseline(config, data, "class_balanced", corrections.Context(seed=0))
  assert isinstance(cb, losses.ClassBalancedLoss)
  assert cb.class_counts == (4.0, 2.0, 1.0) and cb.beta == 0.99
  missing = _data([0, 0, 1], [0, 1, 2])
  for method in ("logit_adjusted", "class_balanced"):
    with pytest.raises(ValueError, match=rf"{method!r} needs every class .* classes \[2\]"):
      corrections.build_data_baseline(config, missing, method, corrections.Context(seed=0))
  with pytest.raises(ValueError, match="Unknown data-built baseline 'bogus'"):
    corrections.build_data_baseline(config, data, "bogus", corrections.Context(seed=0))
  with pytest.raises(ValueError, match="method 'glc' is built from the data"):
    builders.build_baseline(config, "glc")


# --------------------------------------------------------------------------------- schema


def test_methods_are_both_registries():
  assert set(schema.METHODS) == (
      set(losses.BASELINES) | set(corrections.DATA_BASELINES)
      | {"l2t_dlf", "l2t_dlf_anchor"})


@pytest.mark.parametrize("change, match", [
    ({
        "methods": ("cross_entropy", "glc")
    }, r"config.methods=.*'glc'.* is invalid: expected no method of \('glc', 'forward_oracle'\) "
     r"with data.noise.kind='none' .*set data.noise.kind"),
    ({
        "methods": ("forward_oracle",)
    }, r"config.methods=.*data.noise.kind='none'"),
    ({
        "baselines.logit_tau": -1.0
    }, r"config.baselines.logit_tau=-1.0 is invalid: expected "
     r"a number >= 0"),
    ({
        "baselines.cb_beta": 1.0
    }, r"config.baselines.cb_beta=1.0 is invalid: expected a "
     r"number in \[0, 1\)"),
    ({
        "baselines.cb_beta_grid": (0.9, 1.5)
    }, r"config.baselines.cb_beta_grid=.*distinct "
     r"numbers in \[0, 1\)"),
    ({
        "baselines.logit_tau_grid": (1.0, 1.0)
    }, r"config.baselines.logit_tau_grid=.*distinct"),
    ({
        "baselines.logit_tau_grid": (0.5, 1.0),
        "data.val_size": None
    }, r"config.baselines.logit_tau_grid=.*set data.val_size"),
    ({
        "teacher.anchor": "glc"
    }, r"config.teacher.anchor='glc' is invalid: .*"
     r"parameterisation='forward_correction' and label noise"),
])
def test_schema_errors_name_the_key_and_the_fix(change, match):
  config = _config("none", 0.0)
  config.data.val_size = 100
  for key, value in change.items():
    section, name = key.rsplit(".", 1) if "." in key else (None, key)
    (config if section is None else schema.get(config, section))[name] = value
  with pytest.raises(schema.ConfigError, match=match):
    schema.validate(config, schema.CLASSIFICATION)


def test_glc_configs_validate():
  for variant in ("glc", "glc_smoke"):
    config = mnist_noisy.get_config(variant)
    schema.validate(config, schema.CLASSIFICATION)
    assert {"glc", "forward_oracle", "l2t_dlf"} <= set(config.methods)
    assert config.teacher.anchor == "glc"
  assert {"logit_adjusted", "class_balanced"} <= set(mnist_noisy.get_config("lt").methods)
  nmt = multi30k_transformer.get_config("smoke")
  nmt.teacher.anchor = "glc"
  with pytest.raises(
      schema.ConfigError,
      match=r"config.teacher.anchor='glc' is invalid: "
      r"expected 'cross_entropy' or 'label_smoothing'"):
    schema.validate(nmt, schema.TRANSLATION)


# ------------------------------------------------------------------ GLC-anchored teacher


@pytest.mark.parametrize("kind", ["attention", "mlp"])
def test_glc_anchored_teacher_starts_at_t_hat(kind):
  t_hat = noise.estimate_transition_glc(_probs(40, 10, seed=1), np.arange(40) % 10, 10)
  t_hat[0] = np.eye(10)[0]  # a zero entry: floored, renormalised
  config = mnist_noisy.get_config("glc_smoke")
  config.teacher.kind = kind
  config.teacher.init_scale = 1e-7  # the perturbation off the anchor
  teacher = builders.build_teacher(config, 10, anchor_transition=t_hat)
  theta = phases.untaught_anchor(config, teacher)
  s = jnp.array([0.3, 2.0, 0.5, 0.6], jnp.float32)
  phi = teacher.phi(theta, s)
  assert isinstance(phi, losses.ForwardCorrectionW)
  np.testing.assert_allclose(np.asarray(phi.dense()), t_hat, rtol=0, atol=2e-5)
  # At the default scale it is T^ up to the perturbation.
  config.teacher.init_scale = 1e-2
  teacher = builders.build_teacher(config, 10, anchor_transition=t_hat)
  dense = np.asarray(teacher.phi(phases.untaught_anchor(config, teacher), s).dense())
  assert np.abs(dense - t_hat).max() < 0.02


def test_glc_anchor_errors():
  config = mnist_noisy.get_config("glc_smoke")
  with pytest.raises(ValueError, match=r"teacher.anchor='glc' starts the teacher at GLC's"):
    builders.build_teacher(config, 10)
  config.teacher.anchor = "cross_entropy"
  with pytest.raises(ValueError, match=r"anchor_transition is for config.teacher.anchor='glc'"):
    builders.build_teacher(config, 10, anchor_transition=np.eye(10))
  t = tuple(map(tuple, np.eye(C).tolist()))
  bad = [(dict(parameterisation="soft_target",
               anchor_transition=t), r"'soft_target' teacher cannot start at a given transition"),
         (dict(parameterisation="forward_correction", anchor_transition=t[:2]),
          r"anchor_transition must be \[C, C\] = \[3, 3\], got shape \(2, 3\)"),
         (dict(parameterisation="forward_correction", anchor_transition=((0.5, 0.6, 0.0),) + t[1:]),
          r"rows summing to 1; got row sums \[1.1, 1.0, 1.0\]"),
         (dict(
             parameterisation="forward_correction",
             anchor="label_smoothing",
             anchor_smoothing=0.0,
             anchor_transition=t), r"anchor_transition replaces the anchor")]
  for kwargs, match in bad:
    teacher = teacher_lib.Teacher(teacher_lib.AttentionTeacher(C, link="identity", **kwargs))
    with pytest.raises(ValueError, match=match):
      teacher.init(jax.random.PRNGKey(0))


# ------------------------------------------------------------- the runner's side (tiny)


def _tiny(tmp_path, **baselines):
  config = mnist_noisy.get_config("glc_smoke")
  config.methods = ("cross_entropy", "glc", "logit_adjusted")
  config.student.num_steps = 8
  config.student.eval_every = 4
  config.teach.pretrain_steps = 2
  config.teach.unroll_steps = 2
  for key, value in baselines.items():
    config.baselines[key] = value
  data, val = splits.prepare(config, splits.load_data(config))
  student = builders.build_student(config, data.num_classes)
  return config, data, val, student, correction_phases.DataBaselines(config, data, val, student,
                                                                     str(tmp_path))


def test_runner_glc_from_the_restored_ce_student(tmp_path):
  config, data, val, student, runner = _tiny(tmp_path)
  restored = runner.cross_entropy_state(config.seed)  # trains and checkpoints it
  retrained = phases.train_method_student(config, data, student, "cross_entropy", config.seed)
  for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(retrained.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  logits = student.apply(
      retrained.params, retrained.model_state, {
          "x": data.dev.x,
          "y": data.dev.y
      }, train=False)[0].logits
  probs = np.asarray(jax.nn.softmax(logits, -1), np.float64)
  np.testing.assert_allclose(runner.dev_probs(config.seed), probs, rtol=0, atol=1e-6)
  loss = runner.loss("glc", config.seed)
  want = noise.estimate_transition_glc(runner.dev_probs(config.seed), data.dev.y, 10)
  np.testing.assert_array_equal(np.asarray(loss.transition), want)
  assert (tmp_path / "glc" / f"transition_seed{config.seed}.json").exists()
  np.testing.assert_array_equal(runner.teacher_anchor(), want)
  assert runner.loss("cross_entropy", config.seed) is None


def test_runner_tunes_tau_on_validation(tmp_path):
  config, data, val, student, runner = _tiny(tmp_path, logit_tau_grid=(1.0, 0.0))
  loss = runner.loss("logit_adjusted", config.seed)
  tuning = json.loads((tmp_path / "tuning" / "logit_adjusted.json").read_text())
  assert tuning["grid"] == [0.0, 1.0] and tuning["seeds"] == list(phases.SELECTION_SEEDS)
  errors = tuning["val_error"]
  best = min(errors, key=lambda k: round(errors[k], 6))  # a tie: the smaller tau
  assert tuning["chosen"] == float(best) == loss.tau
  # The scores are those of fresh students of the selection seeds on val.
  evaluate = jax.jit(lambda p, m, b: dlf_jax.unroll.evaluate(student, p, m, b))
  cfg = corrections.with_constant(config, "logit_adjusted", 1.0)
  la = corrections.build_data_baseline(cfg, data, "logit_adjusted",
                                       corrections.Context(seed=config.seed))
  batches = dlf_jax.data.batching.make_eval_batches({"x": val.x, "y": val.y}, 200)
  accs = [
      float(
          evaluate(
              *(lambda s: (s.params, s.model_state))(phases.train_method_student(
                  cfg, data, student, "logit_adjusted", seed, loss=la)), batches)["accuracy"])
      for seed in phases.SELECTION_SEEDS
  ]
  assert errors["1"] == pytest.approx(np.mean([100 * (1 - a) for a in accs]), abs=1e-9)
