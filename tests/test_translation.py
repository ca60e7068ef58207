"""Tests of the translation (NMT) part of dlf_jax.

* the structured-W token loss (``diagonal`` / ``low_rank``) against its dense form
  and a numpy reference, with padding ignored;
* the hypergradient through a tiny Transformer unroll (dropout on, Adam) against
  ``jax.grad`` through the scan, in float64, for token-level expected accuracy and
  for expected sentence BLEU over sampled candidates;
* incremental decoding (``decode_step`` with its cache) against teacher forcing;
  greedy / beam search / sampling; ``translate`` under ``jax.jit``;
* BLEU (sacrebleu, tokenised BLEU) and the expected-BLEU measure;
* corpora (Multi30k, a fairseq-layout IWSLT14 directory), sentencepiece subwords,
  ``encode_corpus`` and the length-bucketed ``BucketSampler``.

Models are tiny (V = 20, d = 8, one layer); everything exact runs in float64.
"""
import functools
import gzip
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlf_jax
from dlf_jax import bleu, decoding, hypergrad, losses, measures
from dlf_jax import teacher as teacher_lib

from _numerics import flat, rel_err
from dlf_jax.data import translation as tr
from dlf_jax.models.transformer import LSTMSeq2Seq, Transformer

PAD, UNK, BOS, EOS = 0, 1, 2, 3
V = 20


pytestmark = pytest.mark.usefixtures("fast_compile")   # tiny programs


def to_f64(tree, dtype=jnp.float64):
  return jax.tree.map(
      lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def cut_at_eos(ids):
  out = []
  for i in np.asarray(ids).tolist():
    if i == EOS:
      break
    out.append(i)
  return out


def detok(ids):
  """Ids -> a 'sentence' of the ids above EOS, cut at the first EOS."""
  return " ".join(str(i) for i in cut_at_eos(ids) if i > EOS)


def random_pairs(rng, shape, src_len, tgt_len, pad_rows=()):
  """Random ``src / tgt_in / tgt_out / mask`` of leading ``shape`` with ragged lengths.

  Rows listed in ``pad_rows`` (indices into the flattened leading axes) are all PAD.
  """
  n = int(np.prod(shape))
  src = np.zeros((n, src_len), np.int32)
  tgt_in = np.zeros((n, tgt_len), np.int32)
  tgt_out = np.zeros((n, tgt_len), np.int32)
  for r in range(n):
    if r in pad_rows:
      continue
    ls = rng.integers(1, src_len)              # + EOS <= src_len
    lt = rng.integers(1, tgt_len)
    src[r, :ls] = rng.integers(EOS + 1, V, ls)
    src[r, ls] = EOS
    t = rng.integers(EOS + 1, V, lt)
    tgt_in[r, 0] = BOS
    tgt_in[r, 1:lt + 1] = t
    tgt_out[r, :lt] = t
    tgt_out[r, lt] = EOS
  out = {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out,
         "mask": (tgt_out != PAD).astype(np.float64)}
  return {k: v.reshape(tuple(shape) + v.shape[1:]) for k, v in out.items()}


# ----------------------------------------------------------------------------- (1) token loss


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
  np.testing.assert_allclose(got, losses.parametric_loss(dense, logits, labels, mask),
                             rtol=1e-13)
  np.testing.assert_allclose(got, numpy_token_loss(phi, logits, labels, np.asarray(mask)),
                             rtol=1e-12)
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
      l1, losses.parametric_loss(phi, jnp.asarray(logits[keep]), jnp.asarray(labels[keep])),
      rtol=1e-13)


# ----------------------------------------------------------------------------- (2) hypergradient

T_STEPS, B, LS, LT = 4, 4, 5, 6
B_DEV, N_DEV = 3, 2


def tiny_transformer(dropout=0.1, num_layers=1):
  return Transformer(vocab_size=V, d_model=8, num_heads=2, d_ff=16, num_layers=num_layers,
                     dropout=dropout, max_len=16)


def tiny_lstm(num_layers=1):
  return LSTMSeq2Seq(vocab_size=V, embed_dim=8, hidden=8, num_layers=num_layers, dropout=0.1)


def nmt_student(model):
  return dlf_jax.Student(model, dlf_jax.make_optimizer("adam", 1e-2), V,
                         input_keys=("src", "tgt_in"), label_key="tgt_out", head_path=None)


def float64_state(student, batch, seed=0):
  """``student.init`` with every float leaf (params, Adam moments, stats) in float64."""
  state = student.init(jax.random.PRNGKey(seed), batch)
  params = to_f64(state.params)
  return state.replace(params=params, opt_state=student.tx.init(params),
                       model_state=to_f64(state.model_state), stats=to_f64(state.stats))


def nmt_problem(parameterisation, seed=0):
  rng = np.random.default_rng(seed)
  batches = random_pairs(rng, (T_STEPS, B), LS, LT)
  dev = random_pairs(rng, (N_DEV, B_DEV), LS, LT, pad_rows=(N_DEV * B_DEV - 1,))
  assert dev["mask"][-1, -1].sum() == 0 and dev["mask"][0].sum(-1).min() > 0
  batches = {k: jnp.asarray(v) for k, v in batches.items()}
  dev = {k: jnp.asarray(v) for k, v in dev.items()}
  student = nmt_student(tiny_transformer(dropout=0.1))
  module = teacher_lib.AttentionTeacher(V, num_matrices=3, parameterisation=parameterisation,
                                        rank=2, init_scale=0.1)
  teacher = teacher_lib.Teacher(module, total_steps=20)
  theta = to_f64(teacher.init(jax.random.PRNGKey(seed + 1)))
  state = float64_state(student, jax.tree.map(lambda a: a[0], batches), seed)
  return student, teacher, theta, state, batches, dev


VARIANTS = {"autodiff": dict(method="autodiff", memory="store_all"),
            "store_all": dict(method="auto", memory="store_all"),
            "checkpointed": dict(method="auto", memory="checkpointed", checkpoint_every=2)}   # 2 x 2


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


def hypergradients(student, teacher, measure, theta, state, batches, dev,
                   variants=tuple(VARIANTS)):
  """``make_hypergradient_fn`` for each variant (autodiff, store_all, checkpointed)."""
  return {name: hypergrad.make_hypergradient_fn(student, teacher, measure, **VARIANTS[name])(
      theta, state, batches, dev) for name in variants}


# Compilation dominates (~15-35 s per variant on 2 busy cores), so the two W
# parameterisations and the two memory policies are split between the two measures:
# expected accuracy through the store_all reverse, expected BLEU (whose only new part is
# the dev objective of Eqn. 3) through the checkpointed one, each against autodiff.
def test_transformer_hypergradient_expected_accuracy(x64):
  student, teacher, theta, state, batches, dev = nmt_problem("diagonal")
  out = hypergradients(student, teacher, measures.ExpectedAccuracy(), theta, state, batches,
                       dev, variants=("autodiff", "store_all"))
  check_against_autodiff(out, state)
  # Dropout is on in the unroll: the first step's training loss is not the eval-mode loss.
  first = jax.tree.map(lambda a: a[0], batches)
  phi0 = teacher.phi(theta, teacher.state_features(state.step, state.stats))
  eval_loss = teacher.loss(phi0, student.apply(state.params, {}, first, train=False)[0],
                           first["tgt_out"], first["mask"])
  assert abs(float(out["autodiff"].metrics.loss[0]) - float(eval_loss)) > 1e-6
  # The measure is the token-level expected accuracy over the unpadded dev tokens.
  final = out["autodiff"].final_state
  logits = student.model.apply({"params": final.params}, dev["src"].reshape(-1, LS),
                               dev["tgt_in"].reshape(-1, LT))[0]
  p = jax.nn.softmax(logits, -1)
  p_y = np.take_along_axis(np.asarray(p), np.asarray(dev["tgt_out"]).reshape(-1, LT, 1), -1)
  m = np.asarray(dev["mask"]).reshape(-1, LT)
  np.testing.assert_allclose(out["store_all"].value, (p_y[..., 0] * m).sum() / m.sum(),
                             rtol=1e-12)


def test_transformer_hypergradient_expected_bleu(x64):
  student, teacher, theta, state, batches, dev = nmt_problem("low_rank", seed=3)
  measure = bleu.ExpectedSentenceBLEU(detokenize=detok, num_samples=3, max_len=LT,
                                      include_reference=True)
  prepared = measure.prepare(student, state, dev, jax.random.PRNGKey(5))
  k = 4
  assert prepared["cand_out"].shape == (N_DEV, B_DEV, k, LT)
  assert prepared["cand_valid"][-1, -1].sum() == 0           # the padded dev row
  assert prepared["cand_valid"][0].sum() >= B_DEV             # every real row has candidates
  # BLEU weights differ between candidates, so the measure depends on q (non-zero gradient).
  assert np.ptp(prepared["cand_bleu"][0][prepared["cand_valid"][0] > 0]) > 0
  prepared = {k_: jnp.asarray(v) for k_, v in prepared.items()}
  out = hypergradients(student, teacher, measure, theta, state, batches, prepared,
                       variants=("autodiff", "checkpointed"))
  check_against_autodiff(out, state)
  assert 0.0 < float(out["autodiff"].value) <= 1.0


# ----------------------------------------------------------------------------- (3)-(5) decoding

N_SRC, SRC_LEN, MAX_LEN = 5, 6, 8


def tiny_seq2seq(kind, seed, num_layers=1, dtype=jnp.float64):
  """A tiny model (float64 by default), its variables, a source batch (row 1 padded)."""
  model = tiny_transformer(num_layers=num_layers) if kind == "transformer" else tiny_lstm(
      num_layers)
  data = random_pairs(np.random.default_rng(seed), (N_SRC,), SRC_LEN, MAX_LEN)
  src = np.asarray(data["src"])
  src[1] = 0
  src[1, :3] = [7, 9, EOS]                     # short source: PAD-masked attention
  src, tgt_in = jnp.asarray(src), jnp.asarray(data["tgt_in"])
  variables = to_f64(model.init(jax.random.PRNGKey(seed), src, tgt_in), dtype)
  if kind == "lstm":                            # peakier distributions
    variables = jax.tree.map(lambda a: 3.0 * a, variables)
  return model, variables, src, tgt_in


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_decode_step_matches_teacher_forcing(x64, kind):
  model, variables, src, tgt_in = tiny_seq2seq(kind, seed=0, num_layers=2)
  full, features = model.apply(variables, src, tgt_in)
  assert full.dtype == jnp.float64 and full.shape == (N_SRC, MAX_LEN, V)
  assert features.shape[:2] == (N_SRC, MAX_LEN)
  memory = model.apply(variables, src, method=model.encode)
  cache = model.apply(variables, memory, src, MAX_LEN, method=model.init_cache)
  step = jax.jit(lambda c, t, i: model.apply(variables, c, t, i, method=model.decode_step))
  for i in range(MAX_LEN):
    logits, cache = step(cache, tgt_in[:, i], jnp.int32(i))
    np.testing.assert_allclose(logits, full[:, i], rtol=0, atol=1e-10, err_msg=f"position {i}")
  # The source padding is masked: changing PAD positions' ids to other ids changes the
  # source, so outputs must change; re-padding a row with extra PAD columns must not.
  wider = jnp.concatenate([src, jnp.zeros((N_SRC, 3), src.dtype)], 1)
  np.testing.assert_allclose(model.apply(variables, wider, tgt_in)[0], full, atol=1e-10)


def eos_bias(positions, slope, max_len=MAX_LEN):
  """``[N, max_len, V]`` logit offsets: PAD/UNK/BOS never, EOS ramping up around ``positions``.

  ``slope=None``: EOS impossible except exactly at ``positions``, where it wins.
  """
  bias = np.zeros((len(positions), max_len, V))
  bias[..., [PAD, UNK, BOS]] = -1e9
  ramp = np.arange(max_len)[None] - np.asarray(positions)[:, None]
  if slope is None:
    bias[..., EOS] = np.where(ramp == 0, 1e9, -1e9)
  else:
    bias[..., EOS] = slope * ramp
  return jnp.asarray(bias)


def biased_step(model, variables, bias, k=1):
  """``decode_step`` plus ``bias[example, position]`` (rows are example-major, ``k`` beams)."""
  rows = jnp.repeat(bias, k, axis=0)

  def step(cache, tokens, i):
    logits, cache = model.apply(variables, cache, tokens, i, method=model.decode_step)
    return logits + rows[:, i], cache
  return step


def decode_cache(model, variables, src, k=1):
  src = jnp.repeat(src, k, axis=0)
  memory = model.apply(variables, src, method=model.encode)
  return model.apply(variables, memory, src, MAX_LEN, method=model.init_cache)


# Jitted with the (hashable) model static, so seeds share one compilation.
@functools.partial(jax.jit, static_argnames=("model",))
def biased_greedy(model, variables, src, bias):
  return decoding.greedy_decode(biased_step(model, variables, bias),
                                decode_cache(model, variables, src), src.shape[0], MAX_LEN)


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "alpha"))
def biased_beam(model, variables, src, bias, beam_size, alpha):
  return decoding.beam_search(biased_step(model, variables, bias, beam_size),
                              decode_cache(model, variables, src, beam_size), src.shape[0],
                              beam_size, MAX_LEN, alpha=alpha)


def output_lengths(seqs):
  """Tokens up to and including the first EOS (all ``max_len`` if none)."""
  seqs = np.asarray(seqs)
  has = (seqs == EOS).any(1)
  return np.where(has, (seqs == EOS).argmax(1) + 1, seqs.shape[1])


@functools.partial(jax.jit, static_argnames=("model",))
def _biased_log_probs(model, variables, src, tgt_in, bias):
  return jax.nn.log_softmax(model.apply(variables, src, tgt_in)[0] + bias, -1)


def teacher_forced_logprob(model, variables, src, seqs, bias):
  """``sum_t log p(y_t | y_<t, x)`` of decoder outputs (EOS included, PAD after ignored)."""
  seqs = np.asarray(seqs)
  tgt_in = np.concatenate([np.full((len(seqs), 1), BOS), seqs[:, :-1]], 1)
  log_p = np.asarray(_biased_log_probs(model, variables, src, jnp.asarray(tgt_in, jnp.int32),
                                       bias))
  tok = np.take_along_axis(log_p, seqs[..., None], -1)[..., 0]
  keep = np.arange(seqs.shape[1])[None] < output_lengths(seqs)[:, None]
  return (tok * keep).sum(1)


BEAM_CASES = [("transformer", 1), ("transformer", 2), ("lstm", 1), ("lstm", 2)]


def _greedy_and_beam1(kind, seed, slope):
  model, variables, src, _ = tiny_seq2seq(kind, seed)
  positions = np.random.default_rng(seed).integers(1, MAX_LEN - 1, N_SRC)
  bias = eos_bias(positions, slope)
  greedy = np.asarray(biased_greedy(model, variables, src, bias))
  beam, score = biased_beam(model, variables, src, bias, 1, 0.0)
  return model, variables, src, bias, greedy, np.asarray(beam), np.asarray(score)


@pytest.mark.parametrize("kind,seed", BEAM_CASES)
def test_beam1_equals_greedy_when_eos_is_never_runner_up(x64, kind, seed):
  """EOS only ever appears as the argmax, at varied positions: beam 1 must be greedy."""
  _, _, _, _, greedy, beam, _ = _greedy_and_beam1(kind, seed, slope=None)
  ends = output_lengths(greedy)
  assert (greedy == EOS).any(1).all() and len(set(ends.tolist())) > 1
  np.testing.assert_array_equal(beam, greedy)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_beam1_equals_greedy(x64, kind):
  """EOS ramps up around varied positions, often as the runner-up: still exactly greedy."""
  mismatched = []
  for seed in (1, 2):
    _, _, _, _, greedy, beam, _ = _greedy_and_beam1(kind, seed, slope=2.0)
    assert (greedy == EOS).any(1).sum() >= 2
    mismatched += [(seed, g.tolist(), b.tolist()) for g, b in zip(greedy, beam)
                   if not np.array_equal(g, b)]
  assert not mismatched, mismatched


def test_beam1_equals_greedy_minimal_table():
  """An EOS that is only the runner-up must not be finalised by beam 1.

  Step 0: token 4 (p=.5) beats EOS (p=.4); afterwards token 5 (p=.5) beats EOS (p=.3).
  Keeping the runner-up [EOS] (log .4 > log .25 after two steps) would stop the search
  early on a hypothesis greedy never produces.
  """
  p0 = np.full(V, 0.1 / (V - 2))
  p0[4], p0[EOS] = 0.5, 0.4
  p1 = np.full(V, 0.2 / (V - 2))
  p1[5], p1[EOS] = 0.5, 0.3
  table = jnp.asarray(np.log(np.stack([p0] + [p1] * 3))[:, None, :])   # [L, N=1, V]
  step = lambda cache, tokens, i: (table[i], cache)
  greedy = decoding.greedy_decode(step, jnp.zeros(1), 1, 4)
  np.testing.assert_array_equal(greedy, [[4, 5, 5, 5]])
  beam, _ = decoding.beam_search(step, jnp.zeros(1), 1, 1, 4, alpha=0.0)
  np.testing.assert_array_equal(beam, greedy)


@pytest.mark.parametrize("kind,seed", BEAM_CASES)
def test_beam1_is_never_worse_than_greedy(x64, kind, seed):
  """With K = 1 the greedy path stays the alive beam, so the result scores >= greedy's."""
  model, variables, src, bias, greedy, beam, score = _greedy_and_beam1(kind, seed, slope=2.0)
  finished = (greedy == EOS).any(1)
  assert finished.sum() >= 2
  lp_greedy = teacher_forced_logprob(model, variables, src, greedy, bias)
  lp_beam = teacher_forced_logprob(model, variables, src, beam, bias)
  assert np.all(lp_beam[finished] >= lp_greedy[finished] - 1e-5), (lp_beam, lp_greedy)
  np.testing.assert_allclose(score, lp_beam, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
@pytest.mark.parametrize("beam_size,alpha", [(3, 0.0), (3, 0.6)])
def test_beam_score_is_teacher_forced_logprob_over_length_penalty(x64, kind, beam_size, alpha):
  """No "beam >= greedy" guarantee for K > 1 (pruning); the reported score is exact though."""
  model, variables, src, _ = tiny_seq2seq(kind, seed=4)
  bias = eos_bias(np.arange(1, N_SRC + 1), slope=1.0)
  seqs, score = biased_beam(model, variables, src, bias, beam_size, alpha)
  seqs, score = np.asarray(seqs), np.asarray(score)
  assert seqs.shape == (N_SRC, MAX_LEN) and score.shape == (N_SRC,)
  lengths = output_lengths(seqs)
  assert len(set(lengths.tolist())) > 1
  ended = np.arange(MAX_LEN)[None] >= lengths[:, None]
  assert np.all(seqs[ended] == PAD)
  lp = teacher_forced_logprob(model, variables, src, seqs, bias)
  penalty = ((5.0 + lengths) / 6.0) ** alpha
  np.testing.assert_allclose(score, lp / penalty, rtol=2e-5, atol=1e-5)


def test_beam_search_and_decoders_reject_bad_arguments():
  step = lambda cache, tokens, i: (jnp.zeros((tokens.shape[0], V)), cache)
  with pytest.raises(ValueError, match="beam_size"):
    decoding.beam_search(step, jnp.zeros(2), 2, 0, 4)
  with pytest.raises(ValueError, match="max_len"):
    decoding.greedy_decode(step, jnp.zeros(2), 2, 0)
  with pytest.raises(ValueError, match="temperature"):
    decoding.sample_decode(step, jnp.zeros(2), 2, 4, jax.random.PRNGKey(0), temperature=0.0)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_translate_jit_equals_eager(kind):
  model, variables, src, _ = tiny_seq2seq(kind, seed=5, dtype=jnp.float32)
  fn = functools.partial(decoding.translate, model, max_len=MAX_LEN, beam_size=3, alpha=0.6)
  eager = np.asarray(fn(variables, src))
  jitted = np.asarray(jax.jit(fn)(variables, src))
  assert eager.shape == (N_SRC, MAX_LEN) and eager.dtype == np.int32
  np.testing.assert_array_equal(jitted, eager)
  # The output is beam search over the model's own decode_step.
  step = lambda c, t, i: model.apply(variables, c, t, i, method=model.decode_step)
  beam, _ = decoding.beam_search(step, decode_cache(model, variables, src, 3), N_SRC, 3,
                                 MAX_LEN, alpha=0.6)
  np.testing.assert_array_equal(beam, eager)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_sample_translations_shape_and_padding(kind):
  model, variables, src, _ = tiny_seq2seq(kind, seed=6, dtype=jnp.float32)
  fn = jax.jit(lambda v, s, r: decoding.sample_translations(model, v, s, r, num_samples=4,
                                                            max_len=MAX_LEN, temperature=2.0))
  out = np.asarray(fn(variables, src, jax.random.PRNGKey(0)))
  assert out.shape == (N_SRC, 4, MAX_LEN) and out.dtype == np.int32
  flat_out = out.reshape(-1, MAX_LEN)
  has_eos = (flat_out == EOS).any(1)
  assert has_eos.any() and (flat_out[has_eos] == EOS).argmax(1).min() < MAX_LEN - 1
  after = np.arange(MAX_LEN)[None] >= output_lengths(flat_out)[:, None]
  assert after.any() and np.all(flat_out[after] == PAD)
  # Deterministic in the key; another key draws other samples.
  np.testing.assert_array_equal(fn(variables, src, jax.random.PRNGKey(0)), out)
  assert not np.array_equal(fn(variables, src, jax.random.PRNGKey(1)), out)
  with pytest.raises(ValueError, match="num_samples"):
    decoding.sample_translations(model, variables, src, jax.random.PRNGKey(0), num_samples=0,
                                 max_len=MAX_LEN)


# ----------------------------------------------------------------------------- (6) BLEU

REFS = ["Two young, White males are outside near many bushes.",
        "A man in an orange hat starring at something.",
        "A little girl climbing into a wooden playhouse.",
        "Several men in hard hats are operating a giant pulley system."]
HYPS = ["Two young white men are outside near some bushes.",
        "A man in an orange hat looks at something.",
        "A girl climbs into a wooden playhouse.",
        "Men in hard hats operate a pulley."]


def test_corpus_bleu_of_references_is_100():
  import sacrebleu
  out = bleu.corpus_bleu(REFS, REFS)
  # sacrebleu computes exp(mean log precision): 100 up to rounding.
  assert out["bleu"] == pytest.approx(100.0, abs=1e-9)
  assert out["tokenized_bleu"] == pytest.approx(100.0, abs=1e-9)
  assert out["brevity_penalty"] == 1.0 and out["length_ratio"] == 1.0
  assert out["signature"] == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" \
                             f"{sacrebleu.__version__}"
  assert "tok:none" in out["tokenized_signature"]
  assert "Moses-tokenised, lowercased" in out["tokenized_signature"]


def test_corpus_bleu_partial_match_equals_sacrebleu():
  import sacrebleu
  from sacremoses import MosesTokenizer
  out = bleu.corpus_bleu(HYPS, REFS)
  direct = sacrebleu.corpus_bleu(HYPS, [REFS])
  assert 5.0 < out["bleu"] < 95.0
  assert out["bleu"] == pytest.approx(direct.score, abs=1e-12)
  assert out["brevity_penalty"] == pytest.approx(direct.bp, abs=1e-12)
  mt = MosesTokenizer(lang="en")
  tok = lambda s: mt.tokenize(s.lower(), escape=False, return_str=True)
  tokenized = sacrebleu.corpus_bleu([tok(h) for h in HYPS], [[tok(r) for r in REFS]],
                                    tokenize="none", force=True)
  assert out["tokenized_bleu"] == pytest.approx(tokenized.score, abs=1e-12)
  # Lowercasing matters here ("White" vs "white"), and the two BLEUs differ.
  cased = bleu.corpus_bleu(HYPS, REFS, lowercase_tokenized=False)
  assert cased["tokenized_bleu"] < out["tokenized_bleu"]
  assert "lowercased" not in cased["tokenized_signature"]
  # A hand-computable value: 4/5, 3/4, 2/3, 1/2 n-gram precisions, no brevity penalty.
  assert bleu.corpus_bleu(["a b c d e"], ["a b c d f"])["bleu"] == pytest.approx(
      100 * 0.2 ** 0.25, rel=1e-12)


def test_sentence_bleu():
  import sacrebleu
  for r in REFS:
    assert bleu.sentence_bleu(r, r) == pytest.approx(100.0, abs=1e-9)
  assert bleu.sentence_bleu("a b c d e", "a b c d f") == pytest.approx(100 * 0.2 ** 0.25,
                                                                       rel=1e-12)
  assert bleu.sentence_bleu("completely different", REFS[0]) < 5.0
  for h, r in zip(HYPS, REFS):      # smoothed (no 4-gram match in some) as sacrebleu does it
    assert bleu.sentence_bleu(h, r) == pytest.approx(sacrebleu.sentence_bleu(h, [r]).score,
                                                     abs=1e-12)


def test_corpus_bleu_rejects_mismatched_lengths():
  with pytest.raises(ValueError, match="as many hypotheses as references"):
    bleu.corpus_bleu(HYPS[:3], REFS)
  with pytest.raises(ValueError, match="as many hypotheses as references"):
    bleu.corpus_bleu([], [])


# ----------------------------------------------------------------------------- (7) expected BLEU


def softmax_np(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def test_expected_bleu_hand_computed(x64):
  seq_lp = np.array([[-1.0, -2.5, -0.3], [-4.0, -1.2, -1.2], [-0.5, -0.7, -0.9]])
  values = np.array([[0.2, 0.9, 0.4], [0.7, 0.1, 0.1], [1.0, 0.5, 0.3]])
  valid = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], np.float64)    # row 1: a duplicate
  got = bleu.expected_bleu(jnp.asarray(seq_lp), jnp.asarray(values), jnp.asarray(valid))
  want = [softmax_np(seq_lp[0]) @ values[0], softmax_np(seq_lp[1, :2]) @ values[1, :2], 0.0]
  np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
  # Gradients flow into the valid candidates' log-probabilities only, never into BLEU.
  g_lp, g_bleu = jax.grad(lambda a, b: jnp.sum(bleu.expected_bleu(a, b, jnp.asarray(valid))),
                          argnums=(0, 1))(jnp.asarray(seq_lp), jnp.asarray(values))
  g_lp = np.asarray(g_lp)
  assert np.all(np.isfinite(g_lp)) and np.all(np.asarray(g_bleu) == 0)
  assert np.all(g_lp[valid == 0] == 0) and np.all(g_lp[valid == 1] != 0)
  q = softmax_np(seq_lp[0])
  np.testing.assert_allclose(g_lp[0], q * (values[0] - q @ values[0]), rtol=1e-12)


def test_expected_sentence_bleu_batch_sums_by_hand(x64):
  student = nmt_student(tiny_transformer(dropout=0.0))
  rng = np.random.default_rng(7)
  lc, k = 5, 3
  src = jnp.asarray(random_pairs(rng, (3,), LS, LT)["src"])
  cand_out = np.zeros((3, k, lc), np.int32)
  for b in range(3):
    for c in range(k):
      n = rng.integers(1, lc)                    # tokens before EOS (< lc: EOS fits)
      cand_out[b, c, :n] = rng.integers(EOS + 1, V, n)
      cand_out[b, c, n] = EOS
  cand_out[1, 2] = cand_out[1, 0]                # a duplicate, marked invalid below
  cand_out[0, 1, :] = [5, 6, 7, 8, 9]            # hit max_len without EOS
  cand_in = np.concatenate([np.full((3, k, 1), BOS), cand_out[..., :-1]], -1)
  cand_in = np.where(cand_in == EOS, PAD, cand_in).astype(np.int32)
  cand_mask = (cand_out != PAD).astype(np.float64)
  cand_bleu = rng.random((3, k))
  cand_valid = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], np.float64)
  batch = {"src": src, "cand_in": jnp.asarray(cand_in), "cand_out": jnp.asarray(cand_out),
           "cand_mask": jnp.asarray(cand_mask), "cand_bleu": jnp.asarray(cand_bleu),
           "cand_valid": jnp.asarray(cand_valid)}
  state = float64_state(student, {"src": src, "tgt_in": jnp.asarray(cand_in[:, 0]),
                                  "tgt_out": jnp.asarray(cand_out[:, 0])})
  measure = bleu.ExpectedSentenceBLEU(detokenize=detok, num_samples=k, max_len=lc)
  total, count = measure.batch_sums(student, state.params, state.model_state, batch)
  # By hand: one teacher-forced pass per candidate.
  want = []
  for b in range(2):
    lp = []
    for c in range(k):
      logits = student.model.apply({"params": state.params}, src[b:b + 1],
                                   jnp.asarray(cand_in[b, c][None]))[0][0]
      log_p = np.asarray(jax.nn.log_softmax(logits, -1))
      lp.append(sum(log_p[t, cand_out[b, c, t]] for t in range(lc) if cand_mask[b, c, t]))
    keep = cand_valid[b] > 0
    want.append(softmax_np(np.array(lp)[keep]) @ cand_bleu[b][keep])
  assert float(count) == 2.0
  np.testing.assert_allclose(total, sum(want), rtol=1e-12)
  # Unprepared dev batches (no sampled candidates) are an error, not a silent 0.
  del batch["cand_in"]
  with pytest.raises(ValueError, match="prepare"):
    measure.batch_sums(student, state.params, state.model_state, batch)


def test_expected_sentence_bleu_prepare(x64):
  student = nmt_student(tiny_transformer(dropout=0.0))
  rng = np.random.default_rng(8)
  dev = random_pairs(rng, (2, 3), LS, LT, pad_rows=(5,))
  state = float64_state(student, {k: v[0] for k, v in dev.items()})
  key = jax.random.PRNGKey(0)
  # Near-zero temperature: every sample is the argmax sequence -> all but one are duplicates.
  cold = bleu.ExpectedSentenceBLEU(detokenize=detok, num_samples=3, max_len=LT,
                                   temperature=1e-4)
  out = cold.prepare(student, state, dev, key)
  for name in ("src", "tgt_in", "tgt_out", "mask"):
    np.testing.assert_array_equal(out[name], dev[name])
  np.testing.assert_array_equal(out["cand_valid"][0], [[1, 0, 0]] * 3)
  np.testing.assert_array_equal(out["cand_valid"][1], [[1, 0, 0], [1, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(out["cand_bleu"][1, 2], 0.0)    # the padded dev row
  # Candidate arrays: cand_in = BOS + cand_out shifted right, nothing after EOS.
  cand_out, cand_in = out["cand_out"], out["cand_in"]
  assert cand_out.shape == (2, 3, 3, LT) and cand_out.dtype == np.int32
  np.testing.assert_array_equal(cand_in[..., 0], BOS)
  shifted = np.where(cand_out[..., :-1] == EOS, PAD, cand_out[..., :-1])
  np.testing.assert_array_equal(cand_in[..., 1:], shifted)
  np.testing.assert_array_equal(out["cand_mask"], (cand_out != PAD).astype(np.float32))
  # BLEU weights: sacrebleu sentence BLEU / 100 of the detokenised candidate.
  for i, j in [(0, 0), (0, 2), (1, 1)]:
    ref = detok(dev["tgt_out"][i, j])
    assert out["cand_bleu"][i, j, 0] == pytest.approx(
        bleu.sentence_bleu(detok(cand_out[i, j, 0]), ref) / 100, rel=1e-6)
  # With the reference among the candidates (BLEU = 1) and T = 1 sampling.
  warm = bleu.ExpectedSentenceBLEU(detokenize=detok, num_samples=3, max_len=LT,
                                   include_reference=True)
  out = warm.prepare(student, state, dev, key)
  assert out["cand_out"].shape == (2, 3, 4, LT)
  real = np.asarray(dev["mask"]).max(-1) > 0
  np.testing.assert_array_equal(out["cand_out"][real][:, -1], np.asarray(dev["tgt_out"])[real])
  np.testing.assert_allclose(out["cand_bleu"][real][:, -1], 1.0, rtol=1e-6)
  assert out["cand_valid"][~real].sum() == 0
  for i, j in zip(*np.nonzero(real)):
    seqs = [tuple(cut_at_eos(c)) for c in out["cand_out"][i, j]]
    firsts = [s not in seqs[:n] for n, s in enumerate(seqs)]
    np.testing.assert_array_equal(out["cand_valid"][i, j], firsts)
  with pytest.raises(ValueError, match="num_samples"):
    bleu.ExpectedSentenceBLEU(detokenize=detok, num_samples=0)


# ----------------------------------------------------------------------------- (8) data


@pytest.fixture(scope="module")
def multi30k():
  return tr.load_translation_corpus("multi30k")


@pytest.fixture(scope="module")
def small_tokenizer(multi30k, tmp_path_factory):
  """Joint 300-piece BPE on the first 2,000 training pairs."""
  small = tr.ParallelText(multi30k.train.src[:2000], multi30k.train.tgt[:2000])
  return tr.SubwordTokenizer.train_or_load(small, str(tmp_path_factory.mktemp("spm_small")),
                                           vocab_size=300)


def test_multi30k_raw_and_tok(multi30k):
  c = multi30k
  assert (len(c.train), len(c.dev), len(c.test)) == (29000, 1014, 1000)
  assert (c.name, c.src_lang, c.tgt_lang) == ("multi30k", "de", "en")
  assert c.train.src[0] == "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
  assert c.train.tgt[0] == "Two young, White males are outside near many bushes."
  for split in (c.train, c.dev, c.test):
    assert len(split.src) == len(split.tgt)
    assert all(isinstance(s, str) and s for s in split.src[:50] + split.tgt[:50])
  assert "Multi30k" in c.notes and c.source.endswith(os.path.join("multi30k", "raw"))
  tok = tr.load_translation_corpus("multi30k", variant="tok", train_size=10, dev_size=5,
                                   test_size=3)
  assert (len(tok.train), len(tok.dev), len(tok.test)) == (10, 5, 3)
  assert tok.train.src[0] == "zwei junge weiße männer sind im freien in der nähe vieler büsche ."
  assert tok.train.tgt[0] == "two young , white males are outside near many bushes ."
  assert all(s == s.lower() for s in tok.train.src + tok.train.tgt + tok.test.tgt)
  with pytest.raises(ValueError, match="variant"):
    tr.load_translation_corpus("multi30k", variant="bpe")
  with pytest.raises(ValueError, match="Unknown translation corpus"):
    tr.load_translation_corpus("wmt14")


def test_multi30k_validation_split_is_held_out(multi30k):
  """``val_split`` reads another held-out split (raw and tok), disjoint from the rest;
  naming the train, dev or test split as the validation split is refused."""
  c = tr.load_translation_corpus("multi30k", val_split="test_2017_flickr", dev_size=5)
  assert len(c.val) == 1000 and len(c.val.src) == len(c.val.tgt)
  assert (c.train, c.test) == (multi30k.train, multi30k.test) and len(c.dev) == 5
  assert multi30k.val is None
  pairs = lambda split: set(zip(split.src, split.tgt))
  for other in (multi30k.train, multi30k.dev, multi30k.test):
    assert not pairs(c.val) & pairs(other)
  tok = tr.load_translation_corpus("multi30k", variant="tok", val_split="test_2017_flickr",
                                   val_size=7, train_size=3, dev_size=3, test_size=3)
  assert len(tok.val) == 7 and all(s == s.lower() for s in tok.val.tgt)
  for stem, role in (("val", "dev"), ("test_2016_flickr", "test"), ("train", "train")):
    with pytest.raises(ValueError, match=f"val_split='{stem}' is the {role} split"):
      tr.load_translation_corpus("multi30k", val_split=stem)
  with pytest.raises(FileNotFoundError,
                     match=r"val_split='test_2099': no files test_2099\.\{de,en\}"):
    tr.load_translation_corpus("multi30k", val_split="test_2099")


def test_multi30k_missing_directory_names_the_files(tmp_path):
  with pytest.raises(FileNotFoundError) as err:
    tr.load_translation_corpus("multi30k", data_dir=str(tmp_path))
  msg = str(err.value)
  for name in ("train.de", "train.en", "val.de", "val.en", "test_2016_flickr.de",
               "test_2016_flickr.en", "data_dir"):
    assert name in msg, (name, msg)


def write_fairseq_dir(directory, multi30k, gz="test.en"):
  """train/valid/test.{de,en} from Multi30k lines; the file ``gz`` gzipped."""
  os.makedirs(directory, exist_ok=True)
  splits = {"train": multi30k.train, "valid": multi30k.dev, "test": multi30k.test}
  sizes = {"train": 60, "valid": 12, "test": 9}
  for stem, text in splits.items():
    for lang, lines in (("de", text.src), ("en", text.tgt)):
      content = "\n".join(lines[:sizes[stem]]) + "\n"
      name = f"{stem}.{lang}"
      if name == gz:
        with gzip.open(os.path.join(directory, name + ".gz"), "wt", encoding="utf-8") as f:
          f.write(content)
      else:
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
          f.write(content)
  return sizes


def test_iwslt14_fairseq_layout(tmp_path, multi30k):
  sizes = write_fairseq_dir(str(tmp_path / "iwslt"), multi30k)
  c = tr.load_translation_corpus("iwslt14", data_dir=str(tmp_path / "iwslt"))
  assert (len(c.train), len(c.dev), len(c.test)) == (sizes["train"], sizes["valid"],
                                                      sizes["test"])
  assert c.train.src == multi30k.train.src[:60] and c.dev.tgt == multi30k.dev.tgt[:12]
  assert c.test.tgt == multi30k.test.tgt[:9]                 # read from test.en.gz
  assert c.name == "iwslt14" and c.source == str(tmp_path / "iwslt")
  # Misaligned files.
  with open(tmp_path / "iwslt" / "valid.en", "a", encoding="utf-8") as f:
    f.write("one line too many\n")
  with pytest.raises(ValueError, match="not aligned"):
    tr.load_translation_corpus("iwslt14", data_dir=str(tmp_path / "iwslt"))


def test_iwslt14_missing_files_and_data_dir(tmp_path):
  with pytest.raises(FileNotFoundError) as err:
    tr.load_translation_corpus("iwslt14", data_dir=str(tmp_path / "nowhere"))
  msg = str(err.value)
  for name in ("train.de", "train.en", "valid.de", "valid.en", "test.de", "test.en",
               str(tmp_path / "nowhere")):
    assert name in msg, (name, msg)
  with pytest.raises(FileNotFoundError, match="data_dir"):
    tr.load_translation_corpus("iwslt14")


@pytest.mark.parametrize("joint", [True, False])
def test_subword_tokenizer_trains_once_and_reloads(tmp_path, multi30k, joint):
  small = tr.ParallelText(multi30k.train.src[:2000], multi30k.train.tgt[:2000])
  directory = str(tmp_path / "spm")
  first = tr.SubwordTokenizer.train_or_load(small, directory, vocab_size=300, joint=joint)
  files = {f: os.path.getmtime(os.path.join(directory, f)) for f in os.listdir(directory)}
  models = sorted(f for f in files if f.endswith(".model"))
  assert [m.split("_")[1] for m in models] == (["joint"] if joint else ["src", "tgt"])
  assert first.joint == joint
  assert first.src_vocab_size == first.tgt_vocab_size == 300
  second = tr.SubwordTokenizer.train_or_load(small, directory, vocab_size=300, joint=joint)
  assert {f: os.path.getmtime(os.path.join(directory, f)) for f in os.listdir(directory)} \
      == files
  sentences = list(multi30k.dev.tgt[:20])
  assert second.encode_tgt(sentences) == first.encode_tgt(sentences)
  assert second.encode_src(multi30k.dev.src[:20]) == first.encode_src(multi30k.dev.src[:20])
  if not joint:        # two vocabularies: German and English pieces differ
    assert first.src.id_to_piece(list(range(4, 300))) != first.tgt.id_to_piece(
        list(range(4, 300)))
  # Special ids.
  for sp in {first.src, first.tgt}:
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD, UNK, BOS, EOS)
  # Another training text (or vocabulary size) trains afresh into new files.
  other = tr.ParallelText(small.src[:1500], small.tgt[:1500])
  tr.SubwordTokenizer.train_or_load(other, directory, vocab_size=300, joint=joint)
  assert len([f for f in os.listdir(directory) if f.endswith(".model")]) == 2 * len(models)


def test_decode_tgt_round_trip(small_tokenizer):
  tok = small_tokenizer
  for s in ["A man is riding a bike.", "Two dogs play in the snow.",
            "A woman in a red dress is walking down the street."]:
    ids = tok.encode_tgt([s])[0]
    assert all(i > EOS for i in ids)
    assert tok.decode_tgt(ids + [EOS]) == s
    # BOS/PAD are dropped and everything after the first EOS is ignored.
    assert tok.decode_tgt([BOS] + ids + [EOS, 7, 8, PAD]) == s
    assert tok.decode_tgt(np.asarray(ids + [EOS] + [PAD] * 3)) == s


def check_encoded(arrays, max_src_len, max_tgt_len):
  src, tgt_in, tgt_out, mask = (arrays[k] for k in ("src", "tgt_in", "tgt_out", "mask"))
  n = len(src)
  assert src.shape == (n, max_src_len) and tgt_in.shape == tgt_out.shape == (n, max_tgt_len)
  assert src.dtype == tgt_in.dtype == tgt_out.dtype == np.int32 and mask.dtype == np.float32
  src_len = (src != PAD).sum(1)
  tgt_len = (tgt_out != PAD).sum(1)
  rows = np.arange(n)
  # Real tokens first, then PAD; src ends with EOS; no EOS/BOS/PAD inside the sentences.
  assert np.all((np.arange(max_src_len)[None] < src_len[:, None]) == (src != PAD))
  assert np.all(src[rows, src_len - 1] == EOS)
  assert np.all((src == EOS).sum(1) == 1)
  assert np.all(tgt_in[:, 0] == BOS) and np.all((tgt_in != PAD).sum(1) == tgt_len)
  assert np.all(tgt_out[rows, tgt_len - 1] == EOS) and np.all((tgt_out == EOS).sum(1) == 1)
  # tgt_out = tgt_in shifted left by one, EOS in the freed slot.
  shifted = np.concatenate([tgt_in[:, 1:], np.zeros((n, 1), np.int32)], 1)
  shifted[rows, tgt_len - 1] = EOS
  np.testing.assert_array_equal(tgt_out, shifted)
  np.testing.assert_array_equal(mask, (tgt_out != PAD).astype(np.float32))


def test_encode_corpus(multi30k, small_tokenizer):
  tok = small_tokenizer
  text = tr.ParallelText(multi30k.dev.src[:300], multi30k.dev.tgt[:300])
  src_ids, tgt_ids = tok.encode_src(text.src), tok.encode_tgt(text.tgt)
  ls, lt = 24, 20
  fits = [i for i in range(300) if len(src_ids[i]) < ls and len(tgt_ids[i]) < lt]
  assert 0 < len(fits) < 300
  dropped = tr.encode_corpus(tok, text, max_src_len=ls, max_tgt_len=lt, drop_long=True)
  check_encoded(dropped, ls, lt)
  np.testing.assert_array_equal(dropped["index"], fits)
  for row, i in enumerate(fits[:30]):
    assert dropped["src"][row, :len(src_ids[i])].tolist() == src_ids[i]
    assert dropped["tgt_out"][row, :len(tgt_ids[i])].tolist() == tgt_ids[i]
  kept = tr.encode_corpus(tok, text, max_src_len=ls, max_tgt_len=lt, drop_long=False)
  check_encoded(kept, ls, lt)
  np.testing.assert_array_equal(kept["index"], np.arange(300))
  long_ = [i for i in range(300) if i not in fits]
  for i in long_[:30]:            # truncated to the width, still EOS-terminated
    assert kept["src"][i].tolist() == (src_ids[i][:ls - 1] + [EOS] + [PAD] * ls)[:ls]
    assert kept["tgt_out"][i].tolist() == (tgt_ids[i][:lt - 1] + [EOS] + [PAD] * lt)[:lt]
  with pytest.raises(ValueError, match=">= 2"):
    tr.encode_corpus(tok, text, max_src_len=1, max_tgt_len=lt, drop_long=True)
  with pytest.raises(ValueError, match="No sentence pair fits"):
    tr.encode_corpus(tok, text, max_src_len=2, max_tgt_len=2, drop_long=True)


def test_trim_padding():
  batch = {"src": np.array([[5, 6, EOS, 0, 0, 0, 0, 0, 0, 0]] * 2),
           "tgt_in": np.array([[BOS, 5, 0, 0, 0, 0, 0], [BOS, 5, 6, 7, 8, 9, 0]]),
           "tgt_out": np.array([[5, EOS, 0, 0, 0, 0, 0], [5, 6, 7, 8, 9, EOS, 0]]),
           "index": np.array([0, 1])}
  batch["mask"] = (batch["tgt_out"] != 0).astype(np.float32)
  out = tr.trim_padding(batch, pad_multiple=2)
  assert out["src"].shape == (2, 4)
  assert out["tgt_in"].shape == out["tgt_out"].shape == out["mask"].shape == (2, 6)
  np.testing.assert_array_equal(out["tgt_out"], batch["tgt_out"][:, :6])
  np.testing.assert_array_equal(out["index"], batch["index"])
  assert tr.trim_padding(batch, pad_multiple=8)["tgt_out"].shape == (2, 7)   # capped
  assert tr.trim_padding(batch, pad_multiple=1)["src"].shape == (2, 3)


@pytest.fixture(scope="module")
def full_arrays(multi30k, tmp_path_factory):
  """All of Multi30k's training split in 300 joint BPE pieces, at most 64 per side."""
  tok = tr.SubwordTokenizer.train_or_load(multi30k.train, str(tmp_path_factory.mktemp("spm")),
                                          vocab_size=300)
  return tr.encode_corpus(tok, multi30k.train, max_src_len=64, max_tgt_len=64, drop_long=True)


def test_bucket_sampler(full_arrays):
  arrays = full_arrays
  n, b, block = len(arrays["src"]), 64, 10
  assert n > 25000
  sampler = tr.BucketSampler(arrays, b, seed=3, block=block, pad_multiple=8)
  assert sampler.segment_steps == block and sampler.batch_size == b
  per_epoch = sampler.batches_per_epoch
  assert per_epoch % block == 0 and per_epoch * b <= n < (per_epoch + block) * b
  # An epoch uses every pair at most once.
  epoch = sampler.indices(0, per_epoch)
  assert len(np.unique(epoch)) == epoch.size
  # Deterministic for a seed; reseeded() gives another order (and equals a fresh sampler).
  again = tr.BucketSampler(arrays, b, seed=3, block=block, pad_multiple=8)
  np.testing.assert_array_equal(again.indices(5, 30), sampler.indices(5, 30))
  other = sampler.reseeded(4)
  np.testing.assert_array_equal(other.indices(0, 30),
                                tr.BucketSampler(arrays, b, seed=4, block=block).indices(0, 30))
  assert not np.array_equal(other.indices(0, 30), sampler.indices(0, 30))
  np.testing.assert_array_equal(sampler.indices(0, 30), epoch[:30])   # sampler unchanged
  # Epochs differ.
  assert not np.array_equal(sampler.indices(per_epoch, block), epoch[:block])
  lengths = np.maximum((arrays["src"] != PAD).sum(1), (arrays["tgt_out"] != PAD).sum(1))
  widths = []
  for start in range(0, per_epoch, block):
    seg = sampler.segment(start, block)
    idx = sampler.indices(start, block)
    assert seg["src"].shape[:2] == (block, b) and seg["tgt_out"].shape[:2] == (block, b)
    for key in ("src", "tgt_out"):
      width = seg[key].shape[-1]
      assert width % 8 == 0
      # No real token is cut.
      assert (seg[key] != PAD).sum() == (arrays[key][idx] != PAD).sum()
    assert seg["tgt_in"].shape == seg["tgt_out"].shape == seg["mask"].shape
    np.testing.assert_array_equal(seg["index"], arrays["index"][idx])
    widths.append(max(seg["src"].shape[-1], seg["tgt_out"].shape[-1]))
    # One block holds one narrow length range.
    assert np.ptp(lengths[idx]) <= 12
  widths = np.asarray(widths)
  global_width = max((arrays[k] != PAD).any(0).sum() for k in ("src", "tgt_out"))
  assert widths.max() <= 64 and np.mean(widths) < global_width - 16, (widths, global_width)
  # Random (unbucketed) segments of the same size would need about the global width.
  rng = np.random.default_rng(0)
  random_width = np.mean([-(-lengths[rng.choice(n, b * block, replace=False)].max() // 8) * 8
                          for _ in range(20)])
  assert np.mean(widths) < random_width - 8
  for bad in (0, n + 1):
    with pytest.raises(ValueError, match="batch_size"):
      tr.BucketSampler(arrays, bad)
  with pytest.raises(ValueError, match="missing"):
    tr.BucketSampler({"src": arrays["src"]}, 4)


def test_decoders_never_emit_pad_or_bos():
  """PAD and BOS get -inf: with logits that favour them, every decoder picks real tokens."""
  logits = np.zeros(V)
  logits[PAD], logits[BOS], logits[6], logits[EOS] = 9.0, 8.0, 2.0, 1.0
  table = jnp.asarray(np.tile(logits, (4, 2, 1)))                       # [L, N=2, V]
  step = lambda cache, tokens, i: (table[i], cache)
  greedy = np.asarray(decoding.greedy_decode(step, jnp.zeros(2), 2, 4))
  np.testing.assert_array_equal(greedy, np.full((2, 4), 6))
  beam, score = decoding.beam_search(step, jnp.zeros(2), 1, 2, 4, alpha=0.0)   # B=1, K=2
  assert not np.isin(np.asarray(beam)[:, :1], [PAD, BOS]).any()
  # The reported score is the model's log-probability (PAD/BOS excluded, not renormalised).
  log_p = jax.nn.log_softmax(jnp.asarray(logits))
  first = np.asarray(beam)[0]
  n = int(np.argmax(first == EOS)) + 1 if (first == EOS).any() else len(first)
  np.testing.assert_allclose(score[0], float(sum(log_p[t] for t in first[:n])), rtol=1e-6)
  samples = np.asarray(decoding.sample_decode(step, jnp.zeros(2), 2, 4, jax.random.PRNGKey(0)))
  real = samples[np.cumsum(samples == EOS, 1) - (samples == EOS) == 0]
  assert not np.isin(real, [PAD, BOS]).any()


def test_corpus_bleu_rejects_strings():
  with pytest.raises(TypeError, match="lists of sentences"):
    bleu.corpus_bleu("the cat", "the cat")
