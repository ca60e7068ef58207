"""Sequence-to-sequence students: a pre-LN Transformer and an attentional LSTM.

Both follow one contract (what :class:`~dlf_jax.student.Student` and
:mod:`dlf_jax.decoding` call):

* ``model.apply(variables, src, tgt_in, train=bool)`` -> ``(logits, features)``:
  ``src`` int32 ``[B, Ls]``, ``tgt_in`` int32 ``[B, Lt]`` (BOS + target,
  teacher forcing), ``logits`` ``[B, Lt, V]``, ``features`` ``[B, Lt, D]``
  (the decoder's last hidden states). PAD (id 0) positions of ``src`` are masked
  out of attention.
* ``method=model.encode``: ``(src, train=False)`` -> ``memory [B, Ls, D]``;
* ``method=model.init_cache``: ``(memory, src, max_len)`` -> a cache pytree
  with leading axis ``B`` (cross-attention keys/values, self-attention buffers
  or LSTM state);
* ``method=model.decode_step``: ``(cache, tokens [B], position)`` ->
  ``(logits [B, V], cache)`` for one target position (``position`` an int32
  scalar, the same for the whole batch).

References: Vaswani et al., "Attention Is All You Need", 2017 (pre-LN placement:
Xiong et al., 2020; shared embeddings: Press & Wolf, 2017); Luong et al.,
"Effective Approaches to Attention-based NMT", 2015.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["sinusoidal_positions", "Transformer", "LSTMSeq2Seq", "PAD_ID"]

PAD_ID = 0


def sinusoidal_positions(length: int, dim: int, dtype=jnp.float32) -> jax.Array:
  """The fixed sinusoidal position encodings of Vaswani et al. (2017): ``[length, dim]``."""
  pos = np.arange(length)[:, None]
  inv = np.exp(-math.log(10000.0) * np.arange(0, dim, 2) / dim)[None]
  table = np.zeros((length, dim))
  table[:, 0::2] = np.sin(pos * inv)
  table[:, 1::2] = np.cos(pos * inv)[:, :dim // 2]
  return jnp.asarray(table, dtype)


def _embedding_tables(model, dim: int, init):
  """``(target, source)`` embedding tables of ``model`` (one table if shared)."""
  tgt = nn.Embed(model.vocab_size, dim, embedding_init=init)
  if not model.shared_embeddings:
    return tgt, nn.Embed(model.src_vocab_size or model.vocab_size, dim, embedding_init=init)
  if model.src_vocab_size not in (None, model.vocab_size):
    raise ValueError("shared_embeddings needs one joint vocabulary: src_vocab_size "
                     f"{model.src_vocab_size} != vocab_size {model.vocab_size}.")
  return tgt, tgt


def _neg_inf(dtype):
  return jnp.finfo(dtype).min


class Attention(nn.Module):
  """Multi-head dot-product attention whose key/value projection can be cached."""
  d_model: int
  num_heads: int
  dropout: float = 0.0

  def setup(self):
    if self.d_model % self.num_heads:
      raise ValueError(f"d_model={self.d_model} must be a multiple of num_heads="
                       f"{self.num_heads}.")
    dh = self.d_model // self.num_heads
    dense = lambda name: nn.DenseGeneral((self.num_heads, dh), name=name)
    self.query, self.key, self.value = dense("query"), dense("key"), dense("value")
    self.out = nn.DenseGeneral(self.d_model, axis=(-2, -1), name="out")
    self.drop = nn.Dropout(self.dropout)

  def kv(self, x):
    """Keys and values ``[B, L, H, Dh]`` of ``x [B, L, D]``."""
    return self.key(x), self.value(x)

  def attend(self, x, k, v, mask, train: bool):
    """``x [B, Lq, D]`` attends to ``k, v [B, Lk, H, Dh]``; ``mask`` bool ``[B, 1|H, Lq, Lk]``."""
    q = self.query(x)
    q = q / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    logits = jnp.where(mask, logits, _neg_inf(logits.dtype))
    weights = self.drop(jax.nn.softmax(logits, axis=-1), deterministic=not train)
    return self.out(jnp.einsum("bhqk,bkhd->bqhd", weights, v))

  def __call__(self, x, context, mask, train: bool):
    k, v = self.kv(context)
    return self.attend(x, k, v, mask, train)


class FeedForward(nn.Module):
  d_model: int
  d_ff: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool):
    h = nn.relu(nn.Dense(self.d_ff, name="fc1")(x))
    h = nn.Dropout(self.dropout)(h, deterministic=not train)
    return nn.Dense(self.d_model, name="fc2")(h)


class EncoderLayer(nn.Module):
  d_model: int
  num_heads: int
  d_ff: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, mask, train: bool):
    drop = nn.Dropout(self.dropout)
    h = nn.LayerNorm(name="ln_attn")(x)
    x = x + drop(
        Attention(self.d_model, self.num_heads, self.dropout, name="attn")(h, h, mask, train),
        deterministic=not train)
    h = nn.LayerNorm(name="ln_ff")(x)
    return x + drop(
        FeedForward(self.d_model, self.d_ff, self.dropout, name="ff")(h, train),
        deterministic=not train)


class DecoderLayer(nn.Module):
  """Pre-LN decoder layer: causal self-attention, cross-attention, feed-forward."""
  d_model: int
  num_heads: int
  d_ff: int
  dropout: float = 0.0

  def setup(self):
    self.ln_self, self.ln_cross, self.ln_ff = nn.LayerNorm(), nn.LayerNorm(), nn.LayerNorm()
    self.self_attn = Attention(self.d_model, self.num_heads, self.dropout)
    self.cross_attn = Attention(self.d_model, self.num_heads, self.dropout)
    self.ff = FeedForward(self.d_model, self.d_ff, self.dropout)
    self.drop = nn.Dropout(self.dropout)

  def _tail(self, y, cross_k, cross_v, cross_mask, train):
    h = self.ln_cross(y)
    y = y + self.drop(
        self.cross_attn.attend(h, cross_k, cross_v, cross_mask, train), deterministic=not train)
    return y + self.drop(self.ff(self.ln_ff(y), train), deterministic=not train)

  def __call__(self, y, memory, self_mask, cross_mask, train: bool):
    h = self.ln_self(y)
    y = y + self.drop(self.self_attn(h, h, self_mask, train), deterministic=not train)
    k, v = self.cross_attn.kv(memory)
    return self._tail(y, k, v, cross_mask, train)

  def cross_kv(self, memory):
    return self.cross_attn.kv(memory)

  def step(self, y, cache, position, cross_mask):
    """One position: ``y [B, 1, D]``; ``cache`` holds ``k, v [B, L, H, Dh]`` and cross k/v."""
    h = self.ln_self(y)
    k_new, v_new = self.self_attn.kv(h)
    k = jax.lax.dynamic_update_slice_in_dim(
        cache["k"], k_new.astype(cache["k"].dtype), position, axis=1)
    v = jax.lax.dynamic_update_slice_in_dim(
        cache["v"], v_new.astype(cache["v"].dtype), position, axis=1)
    mask = (jnp.arange(k.shape[1]) <= position)[None, None, None, :]
    y = y + self.self_attn.attend(h, k, v, mask, False)
    y = self._tail(y, cache["cross_k"], cache["cross_v"], cross_mask, False)
    return y, dict(cache, k=k, v=v)


class Transformer(nn.Module):
  """Pre-LN encoder-decoder Transformer with sinusoidal positions.

  Attributes:
    vocab_size: ``V`` of the target (and, if ``shared_embeddings``, the source).
    src_vocab_size: the source vocabulary (None: ``vocab_size``, which a shared
      embedding requires).
    d_model, num_heads, d_ff, num_layers: sizes (encoder and decoder alike).
    dropout: dropout rate (residual, attention and feed-forward).
    shared_embeddings: one embedding table for source, target and the output
      projection (joint vocabulary); otherwise the target embedding is still
      tied to the output projection.
    max_len: longest position encoded.
  """
  vocab_size: int
  src_vocab_size: Any = None
  d_model: int = 256
  num_heads: int = 4
  d_ff: int = 1024
  num_layers: int = 3
  dropout: float = 0.1
  shared_embeddings: bool = True
  max_len: int = 256

  def setup(self):
    self.tgt_embed, self.src_embed = _embedding_tables(self, self.d_model,
                                                       nn.initializers.normal(self.d_model**-0.5))
    self.encoder = [
        EncoderLayer(self.d_model, self.num_heads, self.d_ff, self.dropout)
        for _ in range(self.num_layers)
    ]
    self.decoder = [
        DecoderLayer(self.d_model, self.num_heads, self.d_ff, self.dropout)
        for _ in range(self.num_layers)
    ]
    self.enc_ln, self.dec_ln = nn.LayerNorm(), nn.LayerNorm()
    self.drop = nn.Dropout(self.dropout)

  def _embed(self, table, tokens, offset, train):
    x = table(tokens) * jnp.sqrt(jnp.asarray(self.d_model, table.embedding.dtype))
    pos = sinusoidal_positions(self.max_len, self.d_model, x.dtype)
    x = x + jax.lax.dynamic_slice_in_dim(pos, offset, tokens.shape[-1])
    return self.drop(x, deterministic=not train)

  def _check(self, tokens, name):
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ValueError(f"{name} must be int token ids [B, L], got {tokens.dtype}"
                       f"{list(tokens.shape)}.")
    if tokens.shape[1] > self.max_len:
      raise ValueError(f"{name} has length {tokens.shape[1]} > max_len={self.max_len}; raise "
                       "the model's max_len.")

  def encode(self, src, train: bool = False):
    """``src [B, Ls]`` -> ``memory [B, Ls, D]``."""
    self._check(src, "src")
    mask = (src != PAD_ID)[:, None, None, :]
    x = self._embed(self.src_embed, src, 0, train)
    for layer in self.encoder:
      x = layer(x, mask, train)
    return self.enc_ln(x)

  def __call__(self, src, tgt_in, train: bool = False):
    self._check(tgt_in, "tgt_in")
    memory = self.encode(src, train)
    cross_mask = (src != PAD_ID)[:, None, None, :]
    lt = tgt_in.shape[1]
    self_mask = jnp.tril(jnp.ones((lt, lt), bool))[None, None]
    y = self._embed(self.tgt_embed, tgt_in, 0, train)
    for layer in self.decoder:
      y = layer(y, memory, self_mask, cross_mask, train)
    y = self.dec_ln(y)
    return self.tgt_embed.attend(y), y

  def init_cache(self, memory, src, max_len: int):
    """Decoding cache for ``max_len`` target positions (leading axis ``B``)."""
    b = memory.shape[0]
    h = self.num_heads
    shape = (b, max_len, h, self.d_model // h)
    layers = []
    for layer in self.decoder:
      ck, cv = layer.cross_kv(memory)
      layers.append({
          "k": jnp.zeros(shape, memory.dtype),
          "v": jnp.zeros(shape, memory.dtype),
          "cross_k": ck,
          "cross_v": cv
      })
    return {"layers": layers, "src_valid": src != PAD_ID}

  def decode_step(self, cache, tokens, position):
    """``tokens [B]`` at ``position`` -> ``(logits [B, V], cache)``."""
    y = self._embed(self.tgt_embed, tokens[:, None], position, False)
    cross_mask = cache["src_valid"][:, None, None, :]
    new_layers = []
    for layer, c in zip(self.decoder, cache["layers"]):
      y, c = layer.step(y, c, position, cross_mask)
      new_layers.append(c)
    logits = self.tgt_embed.attend(self.dec_ln(y))[:, 0]
    return logits, dict(cache, layers=new_layers)


class LSTMSeq2Seq(nn.Module):
  """Bidirectional LSTM encoder, LSTM decoder with Luong (general) attention.

  The decoder LSTM reads the embedded target prefix; every position attends over
  the encoder states and predicts from ``tanh(W_c [c_t; h_t])`` (Luong et al.,
  2015, without input feeding, so teacher forcing runs the decoder LSTM in one
  scan and attention in parallel). The decoder state starts from a projection of
  the mean encoder state.

  Attributes:
    vocab_size, src_vocab_size, shared_embeddings: as in :class:`Transformer`.
    embed_dim, hidden: embedding and LSTM sizes (the encoder's two directions
      have ``hidden // 2`` units each).
    num_layers: decoder LSTM layers.
    dropout: dropout on embeddings and the attentional output.
  """
  vocab_size: int
  src_vocab_size: Any = None
  embed_dim: int = 256
  hidden: int = 256
  num_layers: int = 1
  dropout: float = 0.1
  shared_embeddings: bool = True

  def setup(self):
    if self.hidden % 2:
      raise ValueError(f"hidden={self.hidden} must be even (two encoder directions).")
    self.tgt_embed, self.src_embed = _embedding_tables(self, self.embed_dim,
                                                       nn.linear.default_embed_init)
    half = self.hidden // 2
    self.enc_fwd = nn.RNN(nn.OptimizedLSTMCell(half))
    self.enc_bwd = nn.RNN(nn.OptimizedLSTMCell(half), reverse=True, keep_order=True)
    self.cells = [nn.OptimizedLSTMCell(self.hidden) for _ in range(self.num_layers)]
    self.bridge = nn.Dense(2 * self.hidden * self.num_layers)
    self.attn_w = nn.Dense(self.hidden, use_bias=False)
    self.combine = nn.Dense(self.embed_dim, use_bias=False)
    self.drop = nn.Dropout(self.dropout)

  def encode(self, src, train: bool = False):
    """``src [B, Ls]`` -> ``memory [B, Ls, hidden]``."""
    if src.ndim != 2 or not jnp.issubdtype(src.dtype, jnp.integer):
      raise ValueError(f"src must be int token ids [B, L], got {src.dtype}{list(src.shape)}.")
    lengths = jnp.sum(src != PAD_ID, axis=1)
    x = self.drop(self.src_embed(src), deterministic=not train)
    zeros = jnp.zeros((src.shape[0], self.hidden // 2), x.dtype)  # carry in x's dtype
    fwd = self.enc_fwd(x, initial_carry=(zeros, zeros), seq_lengths=lengths)
    bwd = self.enc_bwd(x, initial_carry=(zeros, zeros), seq_lengths=lengths)
    return jnp.concatenate([fwd, bwd], -1)

  def _init_carry(self, memory, src):
    valid = (src != PAD_ID)[..., None].astype(memory.dtype)
    mean = jnp.sum(memory * valid, 1) / jnp.maximum(jnp.sum(valid, 1), 1)
    h = jnp.tanh(self.bridge(mean)).reshape(mean.shape[0], self.num_layers, 2, self.hidden)
    return [(h[:, i, 0], h[:, i, 1]) for i in range(self.num_layers)]

  def _output(self, h, memory, src_valid, train):
    # Luong "general" score: h^T W m, masked over source padding.
    scores = jnp.einsum("btd,bsd->bts", self.attn_w(h), memory)
    scores = jnp.where(src_valid[:, None, :], scores, _neg_inf(scores.dtype))
    context = jnp.einsum("bts,bsd->btd", jax.nn.softmax(scores, -1), memory)
    out = jnp.tanh(self.combine(jnp.concatenate([context, h], -1)))
    out = self.drop(out, deterministic=not train)
    return self.tgt_embed.attend(out), out

  def _run_cells(self, carries, x):
    """One time step through the decoder stack: ``x [B, E]``."""
    new = []
    for cell, carry in zip(self.cells, carries):
      carry, x = cell(carry, x)
      new.append(carry)
    return new, x

  def __call__(self, src, tgt_in, train: bool = False):
    memory = self.encode(src, train)
    carries = self._init_carry(memory, src)
    y = self.drop(self.tgt_embed(tgt_in), deterministic=not train)
    for i in range(self.num_layers):
      y = self._scan_cell(i, carries[i], y)
    return self._output(y, memory, src != PAD_ID, train)

  def _scan_cell(self, i, carry, y):

    def body(cell, c, x):
      return cell(c, x)

    scan = nn.scan(
        body, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1)
    _, out = scan(self.cells[i], carry, y)
    return out

  def init_cache(self, memory, src, max_len: int):
    del max_len
    return {"carries": self._init_carry(memory, src), "memory": memory, "src_valid": src != PAD_ID}

  def decode_step(self, cache, tokens, position):
    del position
    carries, h = self._run_cells(cache["carries"], self.tgt_embed(tokens))
    logits, _ = self._output(h[:, None], cache["memory"], cache["src_valid"], False)
    return logits[:, 0], dict(cache, carries=carries)
