"""Tests of the loss family that contains the baselines: link x W form, soft targets, anchors.

* identity link with ``W = I`` (every W form) is exactly cross-entropy; a soft-target W
  with uniform targets is exactly label smoothing; per-class and shared targets equal
  the dense-W computation;
* every W a teacher can output in the ``soft_target`` form is non-negative with columns
  on the simplex, whatever theta;
* the hypergradient equals ``jax.grad`` through the scan and central finite
  differences (float64) for the identity link with every W form and for the sigmoid
  link with the soft-target W (``test_hypergrad.py`` covers the sigmoid link with the
  paper's three W forms);
* bad inputs: eps outside [0, 1), unknown link / anchor / target / measure, a
  label-smoothing anchor that the W form cannot represent, ``init_scale = 0``, a
  validation split that overlaps dev or test.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dlf_jax import hypergrad, losses, measures, unroll
from dlf_jax import student as student_lib
from dlf_jax import teacher as teacher_lib
from experiments import builders, splits
from experiments.tasks import classification
from experiments.configs import quickstart

from _numerics import flat, rel_err
from problems import C, make_problem

pytestmark = pytest.mark.usefixtures("fast_compile")


def _logits_labels(rng, n=7, c=C, dtype=np.float64):
  return (jnp.asarray(rng.normal(size=(n, c)) * 2,
                      dtype), jnp.asarray(rng.integers(0, c, size=(n,))))


@pytest.mark.parametrize("parameterisation", losses.PARAMETERISATIONS)
def test_identity_link_at_identity_is_cross_entropy(x64, rng, parameterisation):
  logits, labels = _logits_labels(rng)
  phi = losses.identity_loss_params(C, parameterisation, rank=2, dtype=jnp.float64, link="identity")
  got = losses.parametric_loss(phi, logits, labels)
  np.testing.assert_allclose(got, losses.cross_entropy(logits, labels), rtol=1e-14)
  # The sigmoid link at the same phi is sigmoid(CE) per example (the paper's Eqn. 2).
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1)[:, 0]
  np.testing.assert_allclose(
      losses.parametric_loss(phi.replace(link="sigmoid"), logits, labels),
      jnp.mean(jax.nn.sigmoid(nll)),
      rtol=1e-14)


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 0.9])
def test_uniform_soft_target_is_label_smoothing(x64, rng, eps):
  logits, labels = _logits_labels(rng)
  mask = jnp.asarray([1, 1, 0, 1, 1, 1, 0], jnp.float64)
  phi = losses.soft_target_params(jnp.full((C,), eps, jnp.float64))
  np.testing.assert_allclose(
      losses.parametric_loss(phi, logits, labels, mask),
      losses.label_smoothing(logits, labels, eps, mask),
      rtol=1e-13)
  anchor = losses.anchor_loss_params(C, "label_smoothing", eps, dtype=jnp.float64)
  np.testing.assert_allclose(
      losses.parametric_loss(anchor, logits, labels),
      losses.label_smoothing(logits, labels, eps),
      rtol=1e-13)
  full = losses.anchor_loss_params(
      C, "label_smoothing", eps, parameterisation="full", dtype=jnp.float64)
  np.testing.assert_allclose(
      losses.parametric_loss(full, logits, labels),
      losses.label_smoothing(logits, labels, eps),
      rtol=1e-13)


@pytest.mark.parametrize("target", ["shared", "class"])
@pytest.mark.parametrize("link", losses.LINKS)
def test_soft_target_equals_dense_w(x64, rng, target, link):
  logits, labels = _logits_labels(rng)
  eps = jnp.asarray(rng.uniform(0, 0.9, size=C))
  shape = (C,) if target == "shared" else (C, C)
  q = jax.nn.softmax(jnp.asarray(rng.normal(size=shape)), axis=0)
  b = jnp.asarray(rng.normal(size=C))
  phi = losses.soft_target_params(eps, q, b, link=link)
  w = losses.dense_w(phi)
  assert (w >= 0).all()
  np.testing.assert_allclose(w.sum(0), 1.0, rtol=1e-14)
  dense = losses.FullW(w, b, link=link)
  np.testing.assert_allclose(
      losses.parametric_loss(phi, logits, labels),
      losses.parametric_loss(dense, logits, labels),
      rtol=1e-13)
  # By hand: -[(1 - eps_y) log p_y + eps_y q_y . log p] + b_y, through the link.
  log_p = np.asarray(jax.nn.log_softmax(logits))
  qm = np.broadcast_to(np.asarray(q)[:, None], (C, C)) if target == "shared" else np.asarray(q)
  e, yy = np.asarray(eps), np.asarray(labels)
  v = -((1 - e[yy]) * log_p[np.arange(len(yy)), yy] +
        e[yy] * np.einsum("bi,ib->b", log_p, qm[:, yy])) + np.asarray(b)[yy]
  v = 1 / (1 + np.exp(-v)) if link == "sigmoid" else v
  np.testing.assert_allclose(losses.parametric_loss(phi, logits, labels), v.mean(), rtol=1e-12)
  stats = losses.phi_statistics(phi)
  np.testing.assert_allclose(stats["eps_mean"], e.mean())
  np.testing.assert_allclose(stats["w_diag_mean"], np.diag(w).mean(), rtol=1e-12)
  np.testing.assert_allclose(
      stats["w_offdiag_mean"], (w.sum() - np.trace(w)) / (C * (C - 1)), rtol=1e-12)


@pytest.mark.parametrize("kind", ["attention", "mlp"])
@pytest.mark.parametrize("target", losses.TARGETS)
@pytest.mark.parametrize("anchor", losses.ANCHORS)
def test_teacher_soft_target_w_is_never_negative(kind, target, anchor):
  cls = teacher_lib.AttentionTeacher if kind == "attention" else teacher_lib.MLPTeacher
  module = cls(
      C,
      parameterisation="soft_target",
      link="identity",
      target=target,
      anchor=anchor,
      anchor_smoothing=0.2)
  teacher = teacher_lib.Teacher(module, total_steps=10)
  theta = teacher.init(jax.random.PRNGKey(0))
  phi0 = teacher.phi(theta, jnp.zeros(4))
  # At initialisation: the anchor (up to the small perturbation).
  expected = 0.2 if anchor == "label_smoothing" else teacher_lib.CE_ANCHOR_EPS
  assert type(phi0) is losses.SoftTargetW
  np.testing.assert_allclose(phi0.eps, expected, rtol=0.05)
  for seed in range(3):
    # Far from initialisation: large random theta and state.
    big = jax.tree.map(
        lambda a, seed=seed: 5.0 * jax.random.normal(jax.random.PRNGKey(seed), a.shape), theta)
    phi = teacher.phi(big, jax.random.normal(jax.random.PRNGKey(seed + 9), (4,)))
    w = np.asarray(losses.dense_w(phi))
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(0), 1.0, rtol=1e-5)
    assert ((np.asarray(phi.eps) >= 0) & (np.asarray(phi.eps) < 1)).all()


def _identity_problem(parameterisation, features=teacher_lib.STATE_FEATURES):
  problem = make_problem("mlp", "sgd", parameterisation, features=features)
  module = problem.teacher.module.clone(link="identity")
  problem.teacher = teacher_lib.Teacher(
      module, features=problem.teacher.features, total_steps=problem.teacher.total_steps)
  return problem


@pytest.mark.parametrize("parameterisation,link", [("full", "identity"), ("diagonal", "identity"),
                                                   ("low_rank", "identity"),
                                                   ("soft_target", "identity"),
                                                   ("soft_target", "sigmoid"),
                                                   ("weighted_soft_target", "identity"),
                                                   ("forward_correction", "identity"),
                                                   ("logit_adjustment", "identity")])
def test_loss_family_hypergradient_matches_autodiff(x64, parameterisation, link):
  p = _identity_problem(parameterisation)
  if link == "sigmoid":
    p.teacher = teacher_lib.Teacher(
        p.teacher.module.clone(link="sigmoid"), features=p.teacher.features, total_steps=20)
  # ``mem`` bound per entry too: a closure over the loop variable gave both "checkpointed".
  fns = {
      m: (lambda *a, m=m, mem=mem: hypergrad.hypergradient(
          p.student,
          p.teacher,
          measures.CrossEntropy(),
          *a,
          method=m,
          memory=mem,
          checkpoint_every=2)) for m, mem in (("autodiff", "store_all"), ("vjp", "checkpointed"))
  }
  out = jax.jit(lambda *a: {k: f(*a) for k, f in fns.items()})(p.theta, p.state, p.batches, p.dev)
  ref, got = out["autodiff"], out["vjp"]
  assert np.linalg.norm(flat(ref.dtheta)) > 0
  assert rel_err(got.dtheta, ref.dtheta) <= 1e-8
  assert rel_err(got.final_state.params, p.state.params) > 1e-3


@pytest.mark.parametrize("parameterisation,link", [("full", "identity"), ("diagonal", "identity"),
                                                   ("low_rank", "identity"),
                                                   ("soft_target", "identity"),
                                                   ("soft_target", "sigmoid"),
                                                   ("weighted_soft_target", "identity"),
                                                   ("forward_correction", "identity"),
                                                   ("logit_adjustment", "identity")])
def test_loss_family_finite_differences(x64, parameterisation, link):
  p = _identity_problem(parameterisation, features=("progress", "dev_acc"))
  if link == "sigmoid":
    p.teacher = teacher_lib.Teacher(
        p.teacher.module.clone(link="sigmoid"), features=p.teacher.features, total_steps=20)
  measure = measures.CrossEntropy()
  got = jax.jit(lambda *a: hypergrad.hypergradient(p.student, p.teacher, measure, *a))(p.theta,
                                                                                       p.state,
                                                                                       p.batches,
                                                                                       p.dev)

  @jax.jit
  def value(theta_flat):
    final, _ = unroll.unroll(p.student, p.teacher, unravel(theta_flat), p.state, p.batches)
    return unroll.dev_measure(p.student, measure, final.params, final.model_state, p.dev)

  theta_flat, unravel = jax.flatten_util.ravel_pytree(p.theta)
  g = np.asarray(jax.flatten_util.ravel_pytree(got.dtheta)[0])
  np.testing.assert_allclose(value(theta_flat), got.value, rtol=1e-12)
  h = 1e-5
  for i in np.argsort(-np.abs(g))[:3]:  # the three largest entries
    e = jnp.zeros_like(theta_flat).at[i].set(h)
    fd = float(value(theta_flat + e) - value(theta_flat - e)) / (2 * h)
    assert abs(g[i]) > 1e-7
    assert abs(fd - g[i]) / abs(g[i]) <= 1e-5, (i, fd, g[i])


# ----------------------------------------------------------------------------- noisy labels


def _np_log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("name", ["weighted_soft_target", "forward_correction", "logit_adjustment"])
def test_noisy_label_forms_are_cross_entropy_at_their_anchor(x64, rng, name):
  logits, labels = _logits_labels(rng)
  mask = jnp.asarray([1, 1, 0, 1, 1, 1, 0], jnp.float64)
  phi = losses.anchor_loss_params(C, "cross_entropy", parameterisation=name, dtype=jnp.float64)
  assert type(phi) is losses.FORMS[name]
  np.testing.assert_allclose(
      losses.parametric_loss(phi, logits, labels, mask),
      losses.cross_entropy(logits, labels, mask),
      rtol=1e-14)
  g = jax.grad(lambda lg: losses.parametric_loss(phi, lg, labels, mask))(logits)
  np.testing.assert_allclose(
      g,
      jax.grad(lambda lg: losses.cross_entropy(lg, labels, mask))(logits),
      rtol=1e-12,
      atol=1e-15)


def test_noisy_label_forms_known_values(x64, rng):
  logits, labels = _logits_labels(rng)
  log_p, y = _np_log_softmax(logits), np.asarray(labels)
  n = np.arange(len(y))
  # Per-class weights on a soft-target W: c_y times the soft-target loss.
  eps, cw = rng.uniform(0, 0.5, C), rng.uniform(0.5, 2.0, C)
  weighted = losses.WeightedSoftTargetW(
      jnp.asarray(eps), jnp.zeros(C), class_weights=jnp.asarray(cw))
  plain = -((1 - eps[y]) * log_p[n, y] + eps[y] * log_p.mean(-1))
  np.testing.assert_allclose(
      losses.parametric_loss(weighted, logits, labels), (cw[y] * plain).mean(), rtol=1e-13)
  # Forward correction: -log (p^T T)_y with a row-stochastic T.
  t = np.exp(rng.normal(size=(C, C)))
  t /= t.sum(1, keepdims=True)
  fc = losses.ForwardCorrectionW.create(jnp.asarray(t))
  np.testing.assert_allclose(
      losses.parametric_loss(fc, logits, labels),
      -np.log((np.exp(log_p) @ t)[n, y]).mean(),
      rtol=1e-13)
  np.testing.assert_allclose(fc.dense(), t, rtol=1e-14)
  # Logit adjustment: -log softmax(z + tau log pi)_y.
  pi = rng.uniform(0.1, 1.0, C)
  la = losses.LogitOffsetW.create(jnp.asarray(pi), tau=1.5)
  adjusted = _np_log_softmax(np.asarray(logits) + 1.5 * np.log(pi / pi.sum()))
  np.testing.assert_allclose(
      losses.parametric_loss(la, logits, labels), -adjusted[n, y].mean(), rtol=1e-13)


def test_fixed_noisy_label_baselines_known_values(x64, rng):
  from dlf_jax.student import StudentOutputs
  logits, labels = _logits_labels(rng)
  out = StudentOutputs(logits)
  mask = jnp.asarray([1, 0, 1, 1, 1, 0, 1], jnp.float64)
  log_p, y, m = _np_log_softmax(logits), np.asarray(labels), np.asarray(mask)
  n = np.arange(len(y))
  t = np.full((C, C), 0.05)
  np.fill_diagonal(t, 1 - 0.05 * (C - 1))
  fc = losses.ForwardCorrectionLoss(transition=t)
  assert fc.num_classes == C and not fc.needs_theta and hash(fc) == hash(
      losses.ForwardCorrectionLoss(transition=t.tolist()))
  ref = -np.log((np.exp(log_p) @ t)[n, y])
  np.testing.assert_allclose(
      fc.loss(None, out, labels, mask), (ref * m).sum() / m.sum(), rtol=1e-13)
  pi = np.arange(1.0, C + 1)
  la = losses.LogitAdjustedLoss(class_priors=pi, tau=1.0)
  ref = -_np_log_softmax(np.asarray(logits) + np.log(pi / pi.sum()))[n, y]
  np.testing.assert_allclose(
      la.loss(None, out, labels, mask), (ref * m).sum() / m.sum(), rtol=1e-13)
  # Cui et al.: w_y = (1 - beta) / (1 - beta^n_y), mean 1. counts 1 and 2, beta 0.5: 1, 2/3.
  np.testing.assert_allclose(losses.class_balanced_weights([1, 2], 0.5), [1.2, 0.8], rtol=1e-14)
  np.testing.assert_allclose(losses.class_balanced_weights([3, 7, 9], 0.0), 1.0, rtol=1e-14)
  counts = np.arange(2, 2 + C)**2
  cb = losses.ClassBalancedLoss(class_counts=counts, beta=0.9)
  w = (0.1 / (1 - 0.9**counts))
  w = w * C / w.sum()
  np.testing.assert_allclose(
      cb.loss(None, out, labels, mask), (w[y] * -log_p[n, y] * m).sum() / m.sum(), rtol=1e-13)
  for bad, match in [(lambda: losses.ForwardCorrectionLoss(transition=t + 0.1), "rows summing"),
                     (lambda: losses.ForwardCorrectionLoss(transition=t[0]), "2 axes"),
                     (lambda: losses.LogitAdjustedLoss(class_priors=-pi), "positive"),
                     (lambda: losses.ClassBalancedLoss(class_counts=counts, beta=1.0),
                      r"beta must be in \[0, 1\)"),
                     (lambda: losses.ClassBalancedLoss(class_counts=[3, 0]), "positive counts")]:
    with pytest.raises(ValueError, match=match):
      bad()


@pytest.mark.parametrize("kind", ["attention", "mlp"])
@pytest.mark.parametrize("name", ["weighted_soft_target", "forward_correction"])
def test_teacher_noisy_label_forms_stay_valid(kind, name):
  """At the anchor: class weights ~ 1 / T ~ I; for any theta: weights positive with
  mean 1 / T row-stochastic."""
  cls = teacher_lib.AttentionTeacher if kind == "attention" else teacher_lib.MLPTeacher
  teacher = teacher_lib.Teacher(cls(C, parameterisation=name, link="identity"), total_steps=10)
  theta = teacher.init(jax.random.PRNGKey(0))
  big = jax.tree.map(lambda a: 5.0 * jax.random.normal(jax.random.PRNGKey(2), a.shape), theta)
  for th, anchor in ((theta, True), (big, False)):
    phi = teacher.phi(th, jnp.ones(4))
    if name == "weighted_soft_target":
      cw = np.asarray(phi.class_weights)
      assert (cw > 0).all() and abs(cw.mean() - 1) < 1e-5
      assert not anchor or np.abs(cw - 1).max() < 0.05
    else:
      t = np.asarray(phi.dense())
      assert (t >= 0).all()
      np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-5)
      assert not anchor or np.abs(t - np.eye(C)).max() < 0.05
  if name == "forward_correction" and kind == "attention":  # seeded at a given T (GLC)
    t = np.full((C, C), 0.1 / (C - 1))
    np.fill_diagonal(t, 0.9)
    raw = losses.ForwardCorrectionW.raw_from_transition(jnp.asarray(t, jnp.float32))
    seeded = {**theta, "w_bank": jnp.broadcast_to(raw, theta["w_bank"].shape)}
    np.testing.assert_allclose(teacher.phi(seeded, jnp.ones(4)).dense(), t, rtol=1e-5)


def test_cross_entropy_measure(x64, rng):
  logits, labels = _logits_labels(rng)
  m = measures.CrossEntropy()
  assert m.maximize is False
  np.testing.assert_allclose(
      jnp.mean(m.per_example(logits, labels)), losses.cross_entropy(logits, labels), rtol=1e-14)


def test_bad_inputs():
  with pytest.raises(ValueError, match=r"eps must be in \[0, 1\)"):
    losses.soft_target_params(jnp.asarray([0.1, 1.0, 0.0]))
  with pytest.raises(ValueError, match=r"eps must be in \[0, 1\)"):
    losses.soft_target_params(jnp.asarray([-0.1, 0.2, 0.0]))
  with pytest.raises(ValueError, match="q must be None"):
    losses.soft_target_params(jnp.zeros(3), jnp.ones(4) / 4)
  logits, labels = jnp.zeros((2, 3)), jnp.asarray([0, 1])
  with pytest.raises(ValueError, match="Unknown link 'relu'"):
    losses.parametric_loss(losses.identity_loss_params(3).replace(link="relu"), logits, labels)
  with pytest.raises(ValueError, match="Unknown anchor"):
    losses.anchor_loss_params(3, "focal")
  with pytest.raises(ValueError, match="cannot represent label smoothing"):
    losses.anchor_loss_params(3, "label_smoothing", 0.1, parameterisation="diagonal")
  low = losses.LowRankW(jnp.ones(3), jnp.zeros((3, 2)), jnp.zeros((4, 2)), jnp.zeros(3))
  with pytest.raises(ValueError, match=r"u and v must both be \[C, r\]"):
    losses.parametric_loss(low, logits, labels)
  with pytest.raises(ValueError, match=r"bias b must be a scalar or \[C\]"):
    losses.parametric_loss(losses.identity_loss_params(3).replace(b=jnp.zeros(4)), logits, labels)
  for lr in (-0.1, 0.0):
    with pytest.raises(ValueError, match="learning rate must be > 0"):
      student_lib.make_optimizer("sgd", lr)
  s = jnp.zeros(4)
  bad = [(dict(parameterisation="diagonal", anchor="label_smoothing"), "cannot start at label"),
         (dict(link="softplus"), "Unknown link"), (dict(anchor="x"), "Unknown anchor"),
         (dict(parameterisation="soft_target", target="x"), "Unknown soft-target"),
         (dict(anchor_smoothing=1.0), r"anchor_smoothing must be in \[0, 1\)"),
         (dict(init_scale=0.0), "saddle")]
  for kwargs, msg in bad:
    for cls in (teacher_lib.AttentionTeacher, teacher_lib.MLPTeacher):
      with pytest.raises(ValueError, match=msg):
        cls(3, **kwargs).init(jax.random.PRNGKey(0), s)


def test_config_keys_of_the_loss_family():
  config = quickstart.get_config("smoke")
  classification.validate_config(config)
  for overrides, msg in [({
      "teacher.link": "relu"
  }, "teacher.link"), ({
      "teacher.anchor": "focal"
  }, "teacher.anchor"), ({
      "teacher.anchor_smoothing": 1.0
  }, "anchor_smoothing"), ({
      "teacher.recipe": "mine"
  }, "teacher.recipe"), ({
      "teach.measure": "bleu"
  }, "teach.measure"), ({
      "teach.estimator.name": "sgd"
  }, r"teach\.estimator\.name='sgd'"),
                         ({
                             "teach.estimator.name": "es",
                             "teach.estimator.es.population": 3
                         }, r"teach\.estimator\.es\.population=3 is invalid.*even"),
                         ({
                             "teach.select": True,
                             "data.val_size": None
                         }, "data.val_size"),
                         ({
                             "teacher.parameterisation": "diagonal",
                             "teacher.anchor": "label_smoothing"
                         }, "soft_target")]:
    bad = ml_collections.ConfigDict(config.to_dict())
    for key, value in overrides.items():
      *parents, name = key.split(".")
      node = bad
      for part in parents:
        node = node[part]
      node[name] = value
    with pytest.raises(ValueError, match=msg):
      classification.validate_config(bad)
  # The paper recipe overrides the family keys, whatever they say.
  soft = ml_collections.ConfigDict(config.to_dict())
  soft.teacher.parameterisation, soft.teacher.link = "soft_target", "identity"
  soft.teacher.recipe = "paper"
  t = builders.build_teacher(soft, 10).module
  assert (t.parameterisation, t.link, t.anchor) == ("full", "sigmoid", "cross_entropy")
  assert isinstance(builders.build_measure(soft), measures.ExpectedAccuracy)
  soft.teacher.recipe = "config"
  soft.teach.measure = "cross_entropy"
  assert builders.build_teacher(soft, 10).module.parameterisation == "soft_target"
  assert isinstance(builders.build_measure(soft), measures.CrossEntropy)


def test_validation_split_is_disjoint_and_overlap_is_refused(rng):
  from dlf_jax.data import images
  x = rng.normal(size=(50, 4)).astype(np.float32)
  split = images.Split(x=x, y=rng.integers(0, 3, 50).astype(np.int32), index=np.arange(50))
  data = images.ImageDataset(
      name="mnist",
      source="test",
      train=split,
      dev=split,
      test=split,
      num_classes=3,
      mean=np.zeros(1),
      std=np.ones(1),
      notes="")
  smaller, val = splits.carve_validation(data, 10, seed=0)
  assert len(val) == 10 and len(smaller.train) == 40
  assert set(val.index) | set(smaller.train.index) == set(range(50))
  splits.check_disjoint({"train": smaller.train, "val": val})
  with pytest.raises(ValueError, match="val_size"):
    splits.carve_validation(data, 50, seed=0)
  test = {"x": np.concatenate([val.x[:8], rng.normal(size=(2, 4)).astype(np.float32)])}
  with pytest.raises(ValueError, match="share 8 examples"):
    splits.check_disjoint({"val": val, "test": test})


def test_ablation_runner_end_to_end(tmp_path):
  """The teaching-efficacy protocol at smoke size: rows, controls, selection, plots."""
  from experiments import ablation
  from experiments.configs import mnist_mlp
  config = mnist_mlp.get_config("smoke")
  variants = ["soft_target", "soft_target_untaught", "ls_anchor", "ls_untaught", "select"]
  out = ablation.run(
      config,
      str(tmp_path),
      variants,
      seeds=1,
      val_size=50,
      baselines=("cross_entropy",),
      ls_grid=(0.1, 0.2))
  names = [r["name"] for r in out["rows"]]
  assert names == ["cross_entropy"] + variants
  rows = {r["name"]: r for r in out["rows"]}
  assert out["tuned_eps"] in (0.1, 0.2)
  assert rows["ls_untaught"]["outer_steps"] == 0 and rows["ls_anchor"]["outer_steps"] > 0
  # Selection: one candidate per snapshot (anchor, middle, last), scored on validation.
  sel = rows["select"]["selection"]
  assert len(sel) == 3 and rows["select"]["selected_update"] == min(sel, key=sel.get)
  assert all(np.isfinite(r["test_error"]) for r in out["rows"])
  for name in ("ablation.png", "teacher_w.png", "teacher_target_mass.png"):
    assert (tmp_path / "plots" / name).exists()
  # Re-running reads every student and teacher back from the cache.
  again = ablation.run(
      config,
      str(tmp_path),
      variants,
      seeds=1,
      val_size=50,
      baselines=("cross_entropy",),
      ls_grid=(0.1, 0.2))
  assert [r["test_errors"] for r in again["rows"]] == [r["test_errors"] for r in out["rows"]]


def test_ablation_recipe_row_is_the_cumulative_chain():
  """The one-row ``recipe`` variant teaches exactly the config that the cumulative rows
  identity -> soft_target -> ls_anchor -> dev_ce reach (same teaching key)."""
  from experiments import ablation
  from experiments.configs import mnist_mlp
  base = ablation.apply_overrides(
      mnist_mlp.get_config("smoke"), ablation.PREVIOUS_DEFAULT, tuned_eps=0.2)
  chain = base
  for name in ("identity", "soft_target", "ls_anchor", "dev_ce"):
    chain = ablation.apply_overrides(chain, ablation.VARIANTS[name][1], tuned_eps=0.2)
  one = ablation.apply_overrides(base, ablation.VARIANTS["recipe"][1], tuned_eps=0.2)
  assert ablation.teaching_key(one) == ablation.teaching_key(chain)
  assert ablation.teaching_key(one) != ablation.teaching_key(base)
  assert one.teacher.anchor_smoothing == 0.2
