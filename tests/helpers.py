"""Tiny translation problems shared by the NMT test files (not a test module).

Token ids follow the sentencepiece convention of :mod:`dlf_jax.data.translation`
(PAD 0, UNK 1, BOS 2, EOS 3); models are tiny (V = 20, d = 8, one layer).
"""
import jax
import jax.numpy as jnp
import numpy as np

import dlf_jax
from dlf_jax.models.transformer import LSTMSeq2Seq, Transformer

PAD, UNK, BOS, EOS = 0, 1, 2, 3
V = 20


def to_f64(tree, dtype=jnp.float64):
  return jax.tree.map(lambda a: a.astype(dtype)
                      if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


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
    ls = rng.integers(1, src_len)  # + EOS <= src_len
    lt = rng.integers(1, tgt_len)
    src[r, :ls] = rng.integers(EOS + 1, V, ls)
    src[r, ls] = EOS
    t = rng.integers(EOS + 1, V, lt)
    tgt_in[r, 0] = BOS
    tgt_in[r, 1:lt + 1] = t
    tgt_out[r, :lt] = t
    tgt_out[r, lt] = EOS
  out = {
      "src": src,
      "tgt_in": tgt_in,
      "tgt_out": tgt_out,
      "mask": (tgt_out != PAD).astype(np.float64)
  }
  return {k: v.reshape(tuple(shape) + v.shape[1:]) for k, v in out.items()}


T_STEPS, B, LS, LT = 4, 4, 5, 6


def tiny_transformer(dropout=0.1, num_layers=1):
  return Transformer(
      vocab_size=V,
      d_model=8,
      num_heads=2,
      d_ff=16,
      num_layers=num_layers,
      dropout=dropout,
      max_len=16)


def tiny_lstm(num_layers=1):
  return LSTMSeq2Seq(vocab_size=V, embed_dim=8, hidden=8, num_layers=num_layers, dropout=0.1)


def nmt_student(model):
  return dlf_jax.Student(
      model,
      dlf_jax.make_optimizer("adam", 1e-2),
      V,
      input_keys=("src", "tgt_in"),
      label_key="tgt_out",
      head_path=None)


def float64_state(student, batch, seed=0):
  """``student.init`` with every float leaf (params, Adam moments, stats) in float64."""
  state = student.init(jax.random.PRNGKey(seed), batch)
  params = to_f64(state.params)
  return state.replace(
      params=params,
      opt_state=student.tx.init(params),
      model_state=to_f64(state.model_state),
      stats=to_f64(state.stats))
