"""The hypergradient through a tiny Transformer unroll (dropout on, Adam) against
``jax.grad`` through the scan, in float64, for expected sentence BLEU over sampled
candidates; and the token-level expected accuracy's value.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import bleu, measures, unroll
from dlf_jax import teacher as teacher_lib

from _numerics import flat, hypergradients_together, rel_err
from helpers import (LS, LT, T_STEPS, B, V, detok, float64_state, nmt_student, random_pairs,
                     tiny_transformer, to_f64)

pytestmark = pytest.mark.usefixtures("fast_compile")  # tiny programs

B_DEV, N_DEV = 3, 2


def nmt_problem(parameterisation, seed=0):
  rng = np.random.default_rng(seed)
  batches = random_pairs(rng, (T_STEPS, B), LS, LT)
  dev = random_pairs(rng, (N_DEV, B_DEV), LS, LT, pad_rows=(N_DEV * B_DEV - 1,))
  assert dev["mask"][-1, -1].sum() == 0 and dev["mask"][0].sum(-1).min() > 0
  batches = {k: jnp.asarray(v) for k, v in batches.items()}
  dev = {k: jnp.asarray(v) for k, v in dev.items()}
  student = nmt_student(tiny_transformer(dropout=0.1))
  module = teacher_lib.AttentionTeacher(
      V, num_matrices=3, parameterisation=parameterisation, rank=2, init_scale=0.1)
  teacher = teacher_lib.Teacher(module, total_steps=20)
  theta = to_f64(teacher.init(jax.random.PRNGKey(seed + 1)))
  state = float64_state(student, jax.tree.map(lambda a: a[0], batches), seed)
  return student, teacher, theta, state, batches, dev


# The reverse scan against ``jax.grad`` through the scan. The checkpointed policy's
# recomputation (the per-step key that dropout draws from included) is checked on the
# ResNet with augmentation (test_models.py) and the small problems of test_hypergrad.py.
VARIANTS = {
    "autodiff": dict(method="autodiff", memory="store_all"),
    "store_all": dict(method="auto", memory="store_all"),
}


def check_against_autodiff(out, state):
  ref = out["autodiff"]
  assert np.linalg.norm(flat(ref.dtheta)) > 0
  assert all(np.isfinite(flat(r.dtheta)).all() for r in out.values())
  assert len(out) >= 2
  for name in set(out) - {"autodiff"}:
    got = out[name]
    assert jax.tree.structure(got.dtheta) == jax.tree.structure(ref.dtheta)
    assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(got.dtheta))
    assert rel_err(got.dtheta, ref.dtheta) <= 1e-8, (name, rel_err(got.dtheta, ref.dtheta))
    assert rel_err(got.dparams0, ref.dparams0) <= 1e-8, name
    np.testing.assert_allclose(got.value, ref.value, rtol=1e-12)
    assert rel_err(got.final_state.params, ref.final_state.params) <= 1e-12
    np.testing.assert_allclose(got.metrics.loss, ref.metrics.loss, rtol=1e-12)
  # The unroll really trained the student, and every theta leaf gets a gradient.
  assert rel_err(ref.final_state.params, state.params) > 1e-3
  assert ref.metrics.loss.shape == (T_STEPS,)
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(ref.dtheta)]
  assert all(n > 0 for n in norms), norms


# Compilation dominates (~20 s per program on 2 busy cores): one problem (the low-rank W,
# Adam, dropout on); the dev objective is expected sentence BLEU over sampled candidates
# (Eqn. 3's only translation-specific part; the token-level expected accuracy is checked on
# its own below).
def test_transformer_hypergradient_expected_bleu(x64):
  student, teacher, theta, state, batches, dev = nmt_problem("low_rank", seed=3)
  measure = bleu.ExpectedSentenceBLEU(
      detokenize=detok, num_samples=3, max_len=LT, include_reference=True)
  prepared = measure.prepare(student, state, dev, jax.random.PRNGKey(5))
  k = 4
  assert prepared["cand_out"].shape == (N_DEV, B_DEV, k, LT)
  assert prepared["cand_valid"][-1, -1].sum() == 0  # the padded dev row
  assert prepared["cand_valid"][0].sum() >= B_DEV  # every real row has candidates
  # BLEU weights differ between candidates, so the measure depends on q (non-zero gradient).
  assert np.ptp(prepared["cand_bleu"][0][prepared["cand_valid"][0] > 0]) > 0
  prepared = {k_: jnp.asarray(v) for k_, v in prepared.items()}
  out = hypergradients_together(student, teacher, measure, VARIANTS, theta, state, batches,
                                prepared)
  check_against_autodiff(out, state)
  assert 0.0 < float(out["autodiff"].value) <= 1.0
  # Dropout is on in the unroll: the first step's training loss is not the eval-mode loss.
  first = jax.tree.map(lambda a: a[0], batches)
  phi0 = teacher.phi(theta, teacher.state_features(state.step, state.stats))
  logits = jax.jit(lambda p, b: student.apply(p, {}, b, train=False)[0])(state.params, first)
  eval_loss = teacher.loss(phi0, logits, first["tgt_out"], first["mask"])
  assert abs(float(out["autodiff"].metrics.loss[0]) - float(eval_loss)) > 1e-6


def test_transformer_expected_accuracy_is_the_token_mean(x64):
  """The token-level expected accuracy over the unpadded dev tokens, as the reverse scan's
  ``value`` reads it (one short unroll: the forward pass only)."""
  student, teacher, theta, state, batches, dev = nmt_problem("diagonal")
  final, _ = jax.jit(lambda th, st, b: unroll.unroll(student, teacher, th, st, b))(theta, state,
                                                                                   batches)
  value = unroll.dev_measure(student, measures.ExpectedAccuracy(), final.params, {}, dev)
  logits = student.model.apply({"params": final.params}, dev["src"].reshape(-1, LS),
                               dev["tgt_in"].reshape(-1, LT))[0]
  p = jax.nn.softmax(logits, -1)
  p_y = np.take_along_axis(np.asarray(p), np.asarray(dev["tgt_out"]).reshape(-1, LT, 1), -1)
  m = np.asarray(dev["mask"]).reshape(-1, LT)
  np.testing.assert_allclose(value, (p_y[..., 0] * m).sum() / m.sum(), rtol=1e-12)
