"""Autoregressive decoding under ``jax.jit``: greedy, batched beam search, sampling.

Every decoder here drives a ``step_fn(cache, tokens [N], position) -> (logits
[N, V], cache)`` (the ``decode_step`` of :mod:`dlf_jax.models.transformer`) in a
``lax.while_loop`` that stops as soon as every sequence has ended, so the cost
follows the longest output rather than ``max_len``. Outputs are int32
``[N, max_len]`` token ids without the leading BOS, PAD after the first EOS; PAD
and BOS are never emitted as tokens.

:func:`translate` and :func:`sample_translations` wrap the model's ``encode`` /
``init_cache`` / ``decode_step``; :func:`beam_search` follows the
alive/finished formulation of Wu et al. (2016, GNMT) and the Flax WMT example,
with the length penalty ``((5 + |y|) / 6) ** alpha``.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from dlf_jax.data.vocab import BOS_ID, EOS_ID, NEVER_EMITTED, PAD_ID

__all__ = [
    "greedy_decode", "beam_search", "sample_decode", "length_penalty", "translate",
    "sample_translations"
]

StepFn = Callable


def length_penalty(length, alpha: float):
  """GNMT's ``((5 + length) / 6) ** alpha`` (Wu et al., 2016, Eqn. 14)."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0)**alpha


def _never_emit(logits: jax.Array) -> jax.Array:
  """``-inf`` at PAD and BOS: a decoder never outputs them (as in fairseq)."""
  return logits.at[..., jnp.array(NEVER_EMITTED)].set(-jnp.inf)


def _check(max_len: int, n: int) -> None:
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1, got {max_len}.")
  if n < 1:
    raise ValueError(f"need at least one sequence to decode, got {n}.")


def _token_loop(step_fn: StepFn, cache, n: int, max_len: int, pick: Callable):
  """Shared loop of greedy and sampled decoding: ``pick(logits, i) -> tokens [N]``."""
  _check(max_len, n)
  out = jnp.full((n, max_len), PAD_ID, jnp.int32)
  tokens = jnp.full((n,), BOS_ID, jnp.int32)
  done = jnp.zeros((n,), bool)

  def cond(carry):
    i, _, _, done, _ = carry
    return (i < max_len) & ~jnp.all(done)

  def body(carry):
    i, tokens, out, done, cache = carry
    logits, cache = step_fn(cache, tokens, i)
    nxt = jnp.where(done, PAD_ID, pick(_never_emit(logits), i).astype(jnp.int32))
    out = out.at[:, i].set(nxt)
    return i + 1, nxt, out, done | (nxt == EOS_ID), cache

  _, _, out, _, _ = jax.lax.while_loop(cond, body, (jnp.zeros(
      (), jnp.int32), tokens, out, done, cache))
  return out


def greedy_decode(step_fn: StepFn, cache, n: int, max_len: int) -> jax.Array:
  """Argmax decoding of ``n`` sequences: int32 ``[n, max_len]``.

  Raises:
    ValueError: ``max_len < 1`` or ``n < 1``.
  """
  return _token_loop(step_fn, cache, n, max_len, lambda logits, i: jnp.argmax(logits, -1))


def sample_decode(step_fn: StepFn,
                  cache,
                  n: int,
                  max_len: int,
                  rng: jax.Array,
                  temperature: float = 1.0) -> jax.Array:
  """Ancestral sampling from ``softmax(logits / temperature)``: int32 ``[n, max_len]``.

  Raises:
    ValueError: ``temperature <= 0``, ``max_len < 1`` or ``n < 1``.
  """
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}.")
  pick = lambda logits, i: jax.random.categorical(
      jax.random.fold_in(rng, i), logits / temperature, axis=-1)
  return _token_loop(step_fn, cache, n, max_len, pick)


def _gather_beams(tree, idx, batch: int, beam: int):
  """Selects beams ``idx [B, K']`` of every ``[B * K, ...]`` leaf -> ``[B * K', ...]``."""

  def gather(x):
    x = x.reshape((batch, beam) + x.shape[1:])
    x = jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)
    return x.reshape((-1,) + x.shape[2:])

  return jax.tree_util.tree_map(gather, tree)


def beam_search(step_fn: StepFn,
                cache,
                batch: int,
                beam_size: int,
                max_len: int,
                alpha: float = 0.6) -> tuple[jax.Array, jax.Array]:
  """Batched beam search with GNMT's length penalty.

  Args:
    step_fn: ``(cache, tokens [B*K], position) -> (logits [B*K, V], cache)``.
    cache: decoding cache with leading axis ``B * K`` (each example's cache
      repeated ``K`` times, beam-major within the example).
    batch: ``B``; beam_size: ``K >= 1``; max_len: output length.
    alpha: length-penalty exponent (0: raw log-probability). An ended
      hypothesis is kept only if it ranks among the step's top ``K``
      candidates, so ``beam_size=1`` with ``alpha=0`` is exactly greedy decoding.

  Returns:
    ``(tokens int32 [B, max_len], score float32 [B])``: the best finished
    hypothesis per example (its log-probability over the length penalty); if
    none finished within ``max_len``, the best unfinished one.

  Raises:
    ValueError: ``beam_size < 1``, ``max_len < 1`` or ``batch < 1``.

  References:
    Wu et al., "Google's Neural Machine Translation System", 2016, Sec. 7.
  """
  if beam_size < 1:
    raise ValueError(f"beam_size must be >= 1, got {beam_size}.")
  _check(max_len, batch)
  k = beam_size
  neg = jnp.float32(-1e9)
  beams = _initial_beams(batch, k, max_len, neg)
  max_penalty = length_penalty(max_len, alpha)

  def cond(carry):
    i, alive_seq, alive_lp, fin_seq, fin_score, _ = carry
    # Stop when no alive beam can beat the worst finished one, even at max length.
    best_possible = alive_lp[:, 0] / max_penalty
    return (i < max_len) & ~jnp.all(best_possible < fin_score[:, -1])

  def body(carry):
    i, alive_seq, alive_lp, fin_seq, fin_score, cache = carry
    tokens = alive_seq[:, :, i].reshape(batch * k)
    logits, cache = step_fn(cache, tokens, i)
    seqs, top_lp, beam_idx, tok = _expand_beams(logits, alive_seq, alive_lp, i, batch, k)
    is_eos = tok == EOS_ID
    new_alive_seq, new_alive_lp, keep = _keep_alive(seqs, top_lp, is_eos, k, neg)
    cache = _gather_beams(cache, jnp.take_along_axis(beam_idx, keep, axis=1), batch, k)
    new_fin_seq, new_fin_score = _merge_finished(fin_seq, fin_score, seqs, top_lp, is_eos, i, k,
                                                 alpha, neg)
    return i + 1, new_alive_seq, new_alive_lp, new_fin_seq, new_fin_score, cache

  init = (jnp.zeros((), jnp.int32),) + beams + (cache,)
  _, alive_seq, alive_lp, fin_seq, fin_score, _ = jax.lax.while_loop(cond, body, init)
  return _best_hypothesis(alive_seq, alive_lp, fin_seq, fin_score, neg, max_penalty)


def _initial_beams(batch: int, k: int, max_len: int, neg: jax.Array):
  """``(alive_seq, alive_lp, fin_seq, fin_score)`` before the first step.

  ``alive_seq`` int32 ``[B, K, max_len + 1]`` starts with BOS; only beam 0 is
  live (``alive_lp`` float32 ``[B, K]``: 0, then ``neg``); no hypothesis has
  finished (``fin_score = neg``).
  """
  alive_seq = jnp.full((batch, k, max_len + 1), PAD_ID, jnp.int32).at[:, :, 0].set(BOS_ID)
  alive_lp = jnp.tile(
      jnp.concatenate([jnp.zeros((1,), jnp.float32),
                       jnp.full((k - 1,), neg, jnp.float32)]), (batch, 1))
  fin_seq = jnp.full((batch, k, max_len + 1), PAD_ID, jnp.int32)
  fin_score = jnp.full((batch, k), neg, jnp.float32)
  return alive_seq, alive_lp, fin_seq, fin_score


def _expand_beams(logits, alive_seq, alive_lp, i, batch: int, k: int):
  """The ``2K`` best one-token continuations of the alive beams.

  Args:
    logits: float ``[B * K, V]``, the next-token logits of every alive beam.
    alive_seq: int32 ``[B, K, max_len + 1]``; alive_lp: float32 ``[B, K]``.
    i: the step (the new token goes to position ``i + 1``).

  Returns:
    ``(seqs int32 [B, 2K, max_len + 1], top_lp float32 [B, 2K], beam_idx int
    [B, 2K], tok int32 [B, 2K])``: the extended sequences, their
    log-probabilities, the alive beam each came from and its new token.
  """
  # The model's log-probabilities, with PAD and BOS excluded (not renormalised).
  logp = _never_emit(jax.nn.log_softmax(logits.astype(jnp.float32), -1))
  v = logp.shape[-1]
  cand = (alive_lp[:, :, None] + logp.reshape(batch, k, v)).reshape(batch, k * v)
  top_lp, top_idx = jax.lax.top_k(cand, 2 * k)  # [B, 2K]
  beam_idx, tok = top_idx // v, (top_idx % v).astype(jnp.int32)
  seqs = jnp.take_along_axis(alive_seq, beam_idx[:, :, None], axis=1)
  seqs = seqs.at[:, :, i + 1].set(tok)
  return seqs, top_lp, beam_idx, tok


def _keep_alive(seqs, top_lp, is_eos, k: int, neg):
  """Alive: the best ``K`` continuations that did not end.

  Returns:
    ``(alive_seq [B, K, max_len + 1], alive_lp [B, K], keep [B, K])``, ``keep``
    indexing the ``2K`` candidates.
  """
  alive_cand = jnp.where(is_eos, neg, top_lp)
  new_alive_lp, keep = jax.lax.top_k(alive_cand, k)
  new_alive_seq = jnp.take_along_axis(seqs, keep[:, :, None], axis=1)
  return new_alive_seq, new_alive_lp, keep


def _merge_finished(fin_seq, fin_score, seqs, top_lp, is_eos, i, k: int, alpha: float, neg):
  """The best ``K`` finished hypotheses after step ``i``: ``(fin_seq, fin_score)``.

  An ended hypothesis counts only if it ranks among this step's top ``K`` (it
  takes a beam slot, as in OpenNMT), so beam 1 with alpha 0 is exactly greedy;
  its score is its log-probability over the length penalty. It is merged with
  the old finished set.
  """
  in_top_k = jnp.arange(2 * k)[None, :] < k
  fin_cand = jnp.where(is_eos & in_top_k, top_lp / length_penalty(i + 1, alpha),
                       neg).astype(jnp.float32)
  all_seq = jnp.concatenate([fin_seq, seqs], axis=1)
  all_score = jnp.concatenate([fin_score, fin_cand], axis=1)
  new_fin_score, fin_idx = jax.lax.top_k(all_score, k)
  new_fin_seq = jnp.take_along_axis(all_seq, fin_idx[:, :, None], axis=1)
  return new_fin_seq, new_fin_score


def _best_hypothesis(alive_seq, alive_lp, fin_seq, fin_score, neg, max_penalty):
  """The best finished hypothesis per example, else the best alive one.

  Returns:
    ``(tokens int32 [B, max_len]`` without BOS, PAD after the first EOS;
    ``score float32 [B])``.
  """
  has_fin = fin_score[:, 0] > neg / 2
  seq = jnp.where(has_fin[:, None], fin_seq[:, 0], alive_seq[:, 0])[:, 1:]
  score = jnp.where(has_fin, fin_score[:, 0], alive_lp[:, 0] / max_penalty)
  # PAD after the first EOS.
  ended = jnp.cumsum(seq == EOS_ID, axis=1) - (seq == EOS_ID) > 0
  return jnp.where(ended, PAD_ID, seq), score


def _check_positions(model, max_len: int) -> None:
  limit = getattr(model, "max_len", None)
  if limit is not None and max_len > limit:
    raise ValueError(f"max_len={max_len} exceeds the model's position table "
                     f"(max_len={limit}); decode shorter or build the model with a larger "
                     "max_len.")


def _repeat(tree, times: int):
  return jax.tree_util.tree_map(lambda x: jnp.repeat(x, times, axis=0), tree)


def translate(model,
              variables,
              src: jax.Array,
              *,
              max_len: int,
              beam_size: int = 4,
              alpha: float = 0.6) -> jax.Array:
  """Translates ``src`` int32 ``[B, Ls]`` with a seq2seq model (jit-able).

  Args:
    model: a model of :mod:`dlf_jax.models.transformer` (``encode``,
      ``init_cache``, ``decode_step``).
    variables: ``{'params': ...}`` (plus any other collections).
    src: source ids, PAD = 0.
    max_len: output length in pieces (including EOS).
    beam_size: ``1`` = greedy.
    alpha: beam search's length penalty.

  Returns:
    int32 ``[B, max_len]`` target ids (EOS-terminated, PAD after).

  Raises:
    ValueError: ``beam_size`` not an integer >= 1, ``max_len < 1``, or
      ``max_len`` beyond the model's position table (``model.max_len``).
  """
  if int(beam_size) != beam_size or beam_size < 1:
    raise ValueError(f"beam_size must be an integer >= 1, got {beam_size}.")
  _check_positions(model, max_len)
  b = src.shape[0]
  memory = model.apply(variables, src, method=model.encode)
  step = lambda c, t, i: model.apply(variables, c, t, i, method=model.decode_step)
  if beam_size == 1:
    cache = model.apply(variables, memory, src, max_len, method=model.init_cache)
    return greedy_decode(step, cache, b, max_len)
  memory, src_k = _repeat(memory, beam_size), _repeat(src, beam_size)
  cache = model.apply(variables, memory, src_k, max_len, method=model.init_cache)
  return beam_search(step, cache, b, beam_size, max_len, alpha)[0]


def sample_translations(model,
                        variables,
                        src: jax.Array,
                        rng: jax.Array,
                        *,
                        num_samples: int,
                        max_len: int,
                        temperature: float = 1.0) -> jax.Array:
  """``num_samples`` sampled translations per source: int32 ``[B, K, max_len]``."""
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
  _check_positions(model, max_len)
  b = src.shape[0]
  memory = _repeat(model.apply(variables, src, method=model.encode), num_samples)
  cache = model.apply(
      variables, memory, _repeat(src, num_samples), max_len, method=model.init_cache)
  step = lambda c, t, i: model.apply(variables, c, t, i, method=model.decode_step)
  out = sample_decode(step, cache, b * num_samples, max_len, rng, temperature)
  return out.reshape(b, num_samples, max_len)
