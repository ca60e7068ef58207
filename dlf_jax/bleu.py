"""BLEU for translation students: corpus evaluation and the expected-BLEU teacher reward.

* :func:`corpus_bleu`: sacrebleu corpus BLEU on detokenised output (the
  comparable number; its signature says how it was computed) and the
  *tokenised* BLEU that IWSLT14 papers report (``multi-bleu.perl`` on
  Moses-tokenised, by default lowercased text: sacrebleu with
  ``tokenize='none'`` on sacremoses-tokenised strings). The two are different
  numbers; every report labels which is which.
* :class:`ExpectedSentenceBLEU`: the smoothed measure of Sec. 4 for translation,
  ``M~ = sum_k q_w(c_k|x) BLEU(c_k, y)`` over ``K`` candidates ``c_k`` sampled
  from the student, with ``q`` the student's sequence probabilities
  renormalised over the (de-duplicated) candidate set and the sacrebleu
  sentence BLEU values as constant weights (Shen et al., 2016, minimum risk
  training; Wu et al., 2018, Sec. 4 and the translation setup of Sec. 5).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlf_jax import decoding
from dlf_jax.data.vocab import BOS_ID, EOS_ID, PAD_ID, until_end
from dlf_jax.measures import Measure

__all__ = ["corpus_bleu", "sentence_bleu", "expected_bleu", "ExpectedSentenceBLEU"]


def _sacrebleu():
  try:
    import sacrebleu
  except ImportError as e:
    raise ImportError("BLEU needs sacrebleu: pip install -e '.[nmt]'") from e
  return sacrebleu


def sentence_bleu(hypothesis: str, reference: str) -> float:
  """Sacrebleu sentence BLEU (exponential smoothing, effective order) in [0, 100]."""
  return float(_sacrebleu().sentence_bleu(hypothesis, [reference]).score)


def corpus_bleu(hypotheses: Sequence[str],
                references: Sequence[str],
                *,
                lowercase_tokenized: bool = True,
                lang: str = "en") -> dict:
  """Corpus BLEU two ways.

  Args:
    hypotheses: detokenised system outputs, one per sentence.
    references: detokenised references (one reference per sentence).
    lowercase_tokenized: lowercase before the tokenised BLEU (IWSLT14 practice).
    lang: Moses tokeniser language.

  Returns:
    dict: ``bleu`` (sacrebleu, detokenised, default 13a tokenisation, cased),
    ``signature`` (sacrebleu's), ``tokenized_bleu`` (Moses-tokenised,
    ``tokenize='none'``; None if sacremoses is not installed),
    ``tokenized_signature``, ``brevity_penalty``, ``length_ratio``.

  Raises:
    ValueError: different numbers of hypotheses and references, or none.
    TypeError: strings passed instead of lists of sentences.
  """
  if isinstance(hypotheses, str) or isinstance(references, str):
    raise TypeError("corpus_bleu takes lists of sentences, not strings: wrap a single "
                    "sentence as [sentence].")
  if len(hypotheses) != len(references) or not hypotheses:
    raise ValueError(f"corpus_bleu needs as many hypotheses as references (> 0); got "
                     f"{len(hypotheses)} and {len(references)}.")
  sb = _sacrebleu()
  metric = sb.metrics.BLEU()
  score = metric.corpus_score(list(hypotheses), [list(references)])
  out = {
      "bleu": float(score.score),
      "signature": str(metric.get_signature()),
      "brevity_penalty": float(score.bp),
      "length_ratio": float(score.ratio),
      "tokenized_bleu": None,
      "tokenized_signature": None
  }
  try:
    from sacremoses import MosesTokenizer
  except ImportError:
    return out
  mt = MosesTokenizer(lang=lang)
  tok = lambda s: mt.tokenize(
      s.lower() if lowercase_tokenized else s, escape=False, return_str=True)
  tmetric = sb.metrics.BLEU(tokenize="none", force=True)
  tscore = tmetric.corpus_score([tok(h) for h in hypotheses], [[tok(r) for r in references]])
  out["tokenized_bleu"] = float(tscore.score)
  out["tokenized_signature"] = (f"{tmetric.get_signature()} on Moses-tokenised"
                                f"{', lowercased' if lowercase_tokenized else ''} text")
  return out


def expected_bleu(seq_log_probs: jax.Array, bleu: jax.Array, valid: jax.Array) -> jax.Array:
  """``sum_k softmax_k(log q_k) BLEU_k`` over the valid candidates of each sentence.

  Args:
    seq_log_probs: float ``[B, K]``, ``log q_w(c_k | x)`` (sum over tokens).
    bleu: float ``[B, K]``, sentence BLEU of each candidate in [0, 1] (constants).
    valid: ``[B, K]`` 0/1 (duplicates and padding rows are 0).

  Returns:
    float ``[B]`` (0 where a sentence has no valid candidate).
  """
  valid = valid.astype(bool)
  logits = jnp.where(valid, seq_log_probs, -jnp.inf)
  any_valid = jnp.any(valid, -1, keepdims=True)
  q = jax.nn.softmax(jnp.where(any_valid, logits, 0.0), axis=-1)
  q = jnp.where(valid, q, 0.0)
  return jnp.sum(q * jax.lax.stop_gradient(bleu).astype(q.dtype), -1)


@functools.lru_cache(maxsize=16)
def _sampler_fn(model, num_samples: int, max_len: int, temperature: float):
  return jax.jit(lambda variables, src, rng: decoding.sample_translations(
      model, variables, src, rng, num_samples=num_samples, max_len=max_len, temperature=temperature)
                )


@dataclasses.dataclass(frozen=True, eq=False)
class ExpectedSentenceBLEU(Measure):
  """Expected sentence BLEU over ``K`` sampled candidates (maximised).

  :meth:`prepare` (host side, once per outer step) samples ``K`` translations
  per dev sentence from the student at the start of the segment, detokenises
  them, scores each against the reference with sacrebleu sentence BLEU and
  stores candidates and scores in the dev batches; :meth:`batch_sums` (inside
  the jitted hypergradient) scores the candidates with the student's current
  weights, so ``dM~/dw_T`` flows through ``q`` only.

  Attributes:
    detokenize: ids (int sequence, EOS-terminated) -> detokenised string
      (e.g. :meth:`dlf_jax.data.SubwordTokenizer.decode_tgt`).
    num_samples: ``K``.
    max_len: candidate length in pieces (including EOS).
    temperature: sampling temperature.
    include_reference: also put the reference among the candidates (BLEU 100).
    maximize: True.

  The student's batches must hold the source under ``student.input_keys[0]``,
  the target input under ``input_keys[1]`` and the reference under its
  ``label_key``.
  """
  detokenize: Callable
  num_samples: int = 4
  max_len: int = 64
  temperature: float = 1.0
  include_reference: bool = False
  maximize: bool = True

  def __post_init__(self):
    if self.num_samples < 1 or self.max_len < 2 or self.temperature <= 0:
      raise ValueError(f"ExpectedSentenceBLEU needs num_samples >= 1, max_len >= 2, "
                       f"temperature > 0; got {self.num_samples}, {self.max_len}, "
                       f"{self.temperature}.")

  def prepare(self, student, state, dev_batches: dict, rng) -> dict:
    src_key, tgt_key = student.input_keys[0], student.label_key
    src = np.asarray(dev_batches[src_key])  # [n, B, Ls]
    ref = np.asarray(dev_batches[tgt_key])  # [n, B, Lt]
    rows = np.asarray(dev_batches[student.mask_key]).reshape(ref.shape[:2] + (-1,)).max(-1) > 0
    n, b = src.shape[:2]
    k = self.num_samples + int(self.include_reference)
    lc = self.max_len
    sample = _sampler_fn(student.model, self.num_samples, lc, float(self.temperature))
    variables = {"params": state.params, **state.model_state}
    cand = np.full((n, b, k, lc), PAD_ID, np.int32)
    bleu = np.zeros((n, b, k), np.float32)
    valid = np.zeros((n, b, k), np.float32)
    for i in range(n):
      cand[i, :, :self.num_samples] = np.asarray(
          sample(variables, jnp.asarray(src[i]), jax.random.fold_in(rng, i)))
      for j in range(b):
        if not rows[i, j]:
          continue
        if self.include_reference:
          r = ref[i, j][:lc]
          cand[i, j, -1, :len(r)] = r
        reference = self.detokenize(ref[i, j])
        seen = set()
        for c in range(k):
          ids = until_end(cand[i, j, c])
          if ids in seen:
            continue
          seen.add(ids)
          valid[i, j, c] = 1.0
          bleu[i, j, c] = sentence_bleu(self.detokenize(cand[i, j, c]), reference) / 100.0
    cand_in = np.concatenate([np.full((n, b, k, 1), BOS_ID, np.int32), cand[..., :-1]], -1)
    cand_in = np.where(cand_in == EOS_ID, PAD_ID, cand_in)  # nothing follows EOS
    cand_mask = (cand != PAD_ID).astype(np.float32)
    return dict(
        dev_batches,
        cand_in=cand_in,
        cand_out=cand,
        cand_mask=cand_mask,
        cand_bleu=bleu,
        cand_valid=valid)

  def batch_sums(self, student, params, model_state, batch):
    if "cand_in" not in batch:
      raise ValueError("ExpectedSentenceBLEU scores candidates drawn by its prepare(); the dev "
                       "batches lack them (call measure.prepare first, as teach() does).")
    src_key, tgt_key = student.input_keys[:2]
    b, k, lc = batch["cand_in"].shape
    src = jnp.repeat(batch[src_key], k, axis=0)
    cand_out = batch["cand_out"].reshape(b * k, lc)
    outputs = student.apply(
        params,
        model_state, {
            src_key: src,
            tgt_key: batch["cand_in"].reshape(b * k, lc),
            student.label_key: cand_out,
        },
        train=False)[0]
    log_p = jax.nn.log_softmax(outputs.logits, -1)
    tok = jnp.take_along_axis(log_p, cand_out[..., None], -1)[..., 0]
    seq = jnp.sum(tok * batch["cand_mask"].reshape(b * k, lc).astype(tok.dtype), -1)
    values = expected_bleu(seq.reshape(b, k), batch["cand_bleu"], batch["cand_valid"])
    has = jnp.any(batch["cand_valid"] > 0, -1).astype(values.dtype)
    return jnp.sum(values * has), jnp.sum(has)
