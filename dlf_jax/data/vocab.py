"""The special tokens every subword vocabulary here shares, and how outputs drop them.

Ids: ``pad = 0``, ``unk = 1``, ``bos = 2``, ``eos = 3`` in every sentencepiece
vocabulary (:class:`~dlf_jax.data.translation.SubwordTokenizer`). Decoders
(:mod:`dlf_jax.decoding`) never emit PAD or BOS (:data:`NEVER_EMITTED`) and
write PAD after the first EOS; the BLEU code (:mod:`dlf_jax.bleu`) and the
detokeniser cut id sequences at their end with the helpers below.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["PAD_ID", "UNK_ID", "BOS_ID", "EOS_ID", "NEVER_EMITTED", "strip_special", "until_end"]

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
# Ids a decoder never outputs (as in fairseq): it starts from BOS and pads after EOS.
NEVER_EMITTED = (PAD_ID, BOS_ID)


def strip_special(ids: Iterable[int]) -> list[int]:
  """The content ids of a decoded sequence: cut at the first EOS, PAD and BOS dropped.

  Args:
    ids: int sequence (list or int ``[L]`` array), e.g. a decoder's output row.

  Returns:
    list of ints, the ids a detokeniser should see.
  """
  out = []
  for i in np.asarray(ids).tolist():
    if i == EOS_ID:
      break
    if i not in NEVER_EMITTED:
      out.append(i)
  return out


def until_end(ids: Iterable[int]) -> tuple:
  """The prefix of ``ids`` before the first EOS or PAD, as a hashable tuple.

  Args:
    ids: int sequence (list or int ``[L]`` array), e.g. a sampled candidate.

  Returns:
    tuple of ints (two candidates with the same tuple are the same sentence).
  """
  out = []
  for i in np.asarray(ids).tolist():
    if i == EOS_ID or i == PAD_ID:
      break
    out.append(i)
  return tuple(out)
