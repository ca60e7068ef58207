"""BLEU (:mod:`dlf_jax.bleu`: sacreBLEU, tokenised BLEU) and the expected-BLEU measure."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import bleu

from helpers import (BOS, EOS, LS, LT, PAD, V, cut_at_eos, detok, float64_state, nmt_student,
                     random_pairs, tiny_transformer)

pytestmark = pytest.mark.usefixtures("fast_compile")  # tiny programs

REFS = [
    "Two young, White males are outside near many bushes.",
    "A man in an orange hat starring at something.",
    "A little girl climbing into a wooden playhouse.",
    "Several men in hard hats are operating a giant pulley system."
]
HYPS = [
    "Two young white men are outside near some bushes.",
    "A man in an orange hat looks at something.", "A girl climbs into a wooden playhouse.",
    "Men in hard hats operate a pulley."
]


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
                                    tokenize="none",
                                    force=True)
  assert out["tokenized_bleu"] == pytest.approx(tokenized.score, abs=1e-12)
  # Lowercasing matters here ("White" vs "white"), and the two BLEUs differ.
  cased = bleu.corpus_bleu(HYPS, REFS, lowercase_tokenized=False)
  assert cased["tokenized_bleu"] < out["tokenized_bleu"]
  assert "lowercased" not in cased["tokenized_signature"]
  # A hand-computable value: 4/5, 3/4, 2/3, 1/2 n-gram precisions, no brevity penalty.
  assert bleu.corpus_bleu(["a b c d e"], ["a b c d f"])["bleu"] == pytest.approx(
      100 * 0.2**0.25, rel=1e-12)


def test_sentence_bleu():
  import sacrebleu
  for r in REFS:
    assert bleu.sentence_bleu(r, r) == pytest.approx(100.0, abs=1e-9)
  assert bleu.sentence_bleu("a b c d e", "a b c d f") == pytest.approx(100 * 0.2**0.25, rel=1e-12)
  assert bleu.sentence_bleu("completely different", REFS[0]) < 5.0
  for h, r in zip(HYPS, REFS):  # smoothed (no 4-gram match in some) as sacrebleu does it
    assert bleu.sentence_bleu(h, r) == pytest.approx(
        sacrebleu.sentence_bleu(h, [r]).score, abs=1e-12)


def test_corpus_bleu_rejects_mismatched_lengths():
  with pytest.raises(ValueError, match="as many hypotheses as references"):
    bleu.corpus_bleu(HYPS[:3], REFS)
  with pytest.raises(ValueError, match="as many hypotheses as references"):
    bleu.corpus_bleu([], [])


def test_corpus_bleu_rejects_strings():
  with pytest.raises(TypeError, match="lists of sentences"):
    bleu.corpus_bleu("the cat", "the cat")


def softmax_np(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def test_expected_bleu_hand_computed(x64):
  seq_lp = np.array([[-1.0, -2.5, -0.3], [-4.0, -1.2, -1.2], [-0.5, -0.7, -0.9]])
  values = np.array([[0.2, 0.9, 0.4], [0.7, 0.1, 0.1], [1.0, 0.5, 0.3]])
  valid = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], np.float64)  # row 1: a duplicate
  got = bleu.expected_bleu(jnp.asarray(seq_lp), jnp.asarray(values), jnp.asarray(valid))
  want = [softmax_np(seq_lp[0]) @ values[0], softmax_np(seq_lp[1, :2]) @ values[1, :2], 0.0]
  np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
  # Gradients flow into the valid candidates' log-probabilities only, never into BLEU.
  g_lp, g_bleu = jax.grad(
      lambda a, b: jnp.sum(bleu.expected_bleu(a, b, jnp.asarray(valid))),
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
      n = rng.integers(1, lc)  # tokens before EOS (< lc: EOS fits)
      cand_out[b, c, :n] = rng.integers(EOS + 1, V, n)
      cand_out[b, c, n] = EOS
  cand_out[1, 2] = cand_out[1, 0]  # a duplicate, marked invalid below
  cand_out[0, 1, :] = [5, 6, 7, 8, 9]  # hit max_len without EOS
  cand_in = np.concatenate([np.full((3, k, 1), BOS), cand_out[..., :-1]], -1)
  cand_in = np.where(cand_in == EOS, PAD, cand_in).astype(np.int32)
  cand_mask = (cand_out != PAD).astype(np.float64)
  cand_bleu = rng.random((3, k))
  cand_valid = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], np.float64)
  batch = {
      "src": src,
      "cand_in": jnp.asarray(cand_in),
      "cand_out": jnp.asarray(cand_out),
      "cand_mask": jnp.asarray(cand_mask),
      "cand_bleu": jnp.asarray(cand_bleu),
      "cand_valid": jnp.asarray(cand_valid)
  }
  state = float64_state(student, {
      "src": src,
      "tgt_in": jnp.asarray(cand_in[:, 0]),
      "tgt_out": jnp.asarray(cand_out[:, 0])
  })
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
  cold = bleu.ExpectedSentenceBLEU(detokenize=detok, num_samples=3, max_len=LT, temperature=1e-4)
  out = cold.prepare(student, state, dev, key)
  for name in ("src", "tgt_in", "tgt_out", "mask"):
    np.testing.assert_array_equal(out[name], dev[name])
  np.testing.assert_array_equal(out["cand_valid"][0], [[1, 0, 0]] * 3)
  np.testing.assert_array_equal(out["cand_valid"][1], [[1, 0, 0], [1, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(out["cand_bleu"][1, 2], 0.0)  # the padded dev row
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
  warm = bleu.ExpectedSentenceBLEU(
      detokenize=detok, num_samples=3, max_len=LT, include_reference=True)
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
