"""Incremental decoding (``decode_step`` with its cache) against teacher forcing; greedy,
beam search and sampling (:mod:`dlf_jax.decoding`); ``translate`` under ``jax.jit``.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import decoding

from helpers import (BOS, EOS, PAD, UNK, V, random_pairs, tiny_lstm, tiny_transformer, to_f64)

pytestmark = pytest.mark.usefixtures("fast_compile")  # tiny programs

N_SRC, SRC_LEN, MAX_LEN = 5, 6, 8


def tiny_seq2seq(kind, seed, num_layers=1, dtype=jnp.float64):
  """A tiny model (float64 by default), its variables, a source batch (row 1 padded)."""
  model = tiny_transformer(
      num_layers=num_layers) if kind == "transformer" else tiny_lstm(num_layers)
  data = random_pairs(np.random.default_rng(seed), (N_SRC,), SRC_LEN, MAX_LEN)
  src = np.asarray(data["src"])
  src[1] = 0
  src[1, :3] = [7, 9, EOS]  # short source: PAD-masked attention
  src, tgt_in = jnp.asarray(src), jnp.asarray(data["tgt_in"])
  variables = to_f64(model.init(jax.random.PRNGKey(seed), src, tgt_in), dtype)
  if kind == "lstm":  # peakier distributions
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
  return decoding.greedy_decode(
      biased_step(model, variables, bias), decode_cache(model, variables, src), src.shape[0],
      MAX_LEN)


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "alpha"))
def biased_beam(model, variables, src, bias, beam_size, alpha):
  return decoding.beam_search(
      biased_step(model, variables, bias, beam_size),
      decode_cache(model, variables, src, beam_size),
      src.shape[0],
      beam_size,
      MAX_LEN,
      alpha=alpha)


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
  log_p = np.asarray(_biased_log_probs(model, variables, src, jnp.asarray(tgt_in, jnp.int32), bias))
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
    mismatched += [
        (seed, g.tolist(), b.tolist()) for g, b in zip(greedy, beam) if not np.array_equal(g, b)
    ]
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
  table = jnp.asarray(np.log(np.stack([p0] + [p1] * 3))[:, None, :])  # [L, N=1, V]
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
  penalty = ((5.0 + lengths) / 6.0)**alpha
  np.testing.assert_allclose(score, lp / penalty, rtol=2e-5, atol=1e-5)


def test_beam_search_and_decoders_reject_bad_arguments():
  step = lambda cache, tokens, i: (jnp.zeros((tokens.shape[0], V)), cache)
  with pytest.raises(ValueError, match="beam_size"):
    decoding.beam_search(step, jnp.zeros(2), 2, 0, 4)
  with pytest.raises(ValueError, match="max_len"):
    decoding.greedy_decode(step, jnp.zeros(2), 2, 0)
  with pytest.raises(ValueError, match="temperature"):
    decoding.sample_decode(step, jnp.zeros(2), 2, 4, jax.random.PRNGKey(0), temperature=0.0)


def test_translate_jit_equals_eager():
  # A property of the decoding code, not of the model: the Transformer (the LSTM's
  # decode_step is checked against teacher forcing above).
  model, variables, src, _ = tiny_seq2seq("transformer", seed=5, dtype=jnp.float32)
  fn = functools.partial(decoding.translate, model, max_len=MAX_LEN, beam_size=3, alpha=0.6)
  eager = np.asarray(fn(variables, src))
  jitted = np.asarray(jax.jit(fn)(variables, src))
  assert eager.shape == (N_SRC, MAX_LEN) and eager.dtype == np.int32
  np.testing.assert_array_equal(jitted, eager)
  # The output is beam search over the model's own decode_step.
  step = lambda c, t, i: model.apply(variables, c, t, i, method=model.decode_step)
  beam, _ = decoding.beam_search(
      step, decode_cache(model, variables, src, 3), N_SRC, 3, MAX_LEN, alpha=0.6)
  np.testing.assert_array_equal(beam, eager)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_sample_translations_shape_and_padding(kind):
  model, variables, src, _ = tiny_seq2seq(kind, seed=6, dtype=jnp.float32)
  fn = jax.jit(lambda v, s, r: decoding.sample_translations(
      model, v, s, r, num_samples=4, max_len=MAX_LEN, temperature=2.0))
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
    decoding.sample_translations(
        model, variables, src, jax.random.PRNGKey(0), num_samples=0, max_len=MAX_LEN)


def test_decoders_never_emit_pad_or_bos():
  """PAD and BOS get -inf: with logits that favour them, every decoder picks real tokens."""
  logits = np.zeros(V)
  logits[PAD], logits[BOS], logits[6], logits[EOS] = 9.0, 8.0, 2.0, 1.0
  table = jnp.asarray(np.tile(logits, (4, 2, 1)))  # [L, N=2, V]
  step = lambda cache, tokens, i: (table[i], cache)
  greedy = np.asarray(decoding.greedy_decode(step, jnp.zeros(2), 2, 4))
  np.testing.assert_array_equal(greedy, np.full((2, 4), 6))
  beam, score = decoding.beam_search(step, jnp.zeros(2), 1, 2, 4, alpha=0.0)  # B=1, K=2
  assert not np.isin(np.asarray(beam)[:, :1], [PAD, BOS]).any()
  # The reported score is the model's log-probability (PAD/BOS excluded, not renormalised).
  log_p = jax.nn.log_softmax(jnp.asarray(logits))
  first = np.asarray(beam)[0]
  n = int(np.argmax(first == EOS)) + 1 if (first == EOS).any() else len(first)
  np.testing.assert_allclose(score[0], float(sum(log_p[t] for t in first[:n])), rtol=1e-6)
  samples = np.asarray(decoding.sample_decode(step, jnp.zeros(2), 2, 4, jax.random.PRNGKey(0)))
  real = samples[np.cumsum(samples == EOS, 1) - (samples == EOS) == 0]
  assert not np.isin(real, [PAD, BOS]).any()
