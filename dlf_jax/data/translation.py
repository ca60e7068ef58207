"""Parallel text for translation: readers, sentencepiece subwords, length-bucketed batches.

Corpora (German -> English):

* **IWSLT14 De-En** in the fairseq-prepared layout: a directory with
  ``train.de, train.en, valid.de, valid.en, test.de, test.en`` (one sentence per
  line, optionally gzipped). It is not shipped and not downloaded here; point
  ``load_translation_corpus('iwslt14', data_dir=DIR)`` at your copy (e.g. the
  output of fairseq's ``examples/translation/prepare-iwslt14.sh``).
* **Multi30k** (Elliott et al., 2016; task 1, 29,000 / 1,014 / 1,000 sentence
  pairs: train / val / test_2016_flickr), read from ``<data_dir>/multi30k/raw``
  (the original untokenised files) or, with ``variant='tok'``, from
  ``<data_dir>/multi30k/tok`` (lowercased, Moses-tokenised). Multi30k stands in
  for IWSLT14 wherever IWSLT14 is not available offline; every Multi30k number
  says so.

Subwords: :class:`SubwordTokenizer` trains sentencepiece BPE on the training
split (joint source+target vocabulary, or one per language), caches the model
files in a directory (the experiment's workdir) and reuses them when the
training text and settings match. Ids (:mod:`dlf_jax.data.vocab`): ``pad = 0``,
``unk = 1``, ``bos = 2``, ``eos = 3``.

Batches: :func:`encode_corpus` turns pairs into padded int32 arrays
``src [N, Ls]`` (ends with EOS), ``tgt_in [N, Lt]`` (BOS + target),
``tgt_out [N, Lt]`` (target + EOS) and a float32 token ``mask [N, Lt]``;
:class:`BucketSampler` draws length-bucketed training batches with the
``segment(start, count)`` interface of
:class:`~dlf_jax.data.batching.SegmentSampler` (batch ``i`` a pure function of
``(seed, i)``; a segment is padded to its longest sentence, rounded up).
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
from typing import Optional, Sequence

import numpy as np

from dlf_jax.data.images import default_data_dir
# The special-token ids live in dlf_jax.data.vocab; re-exported here for compatibility.
from dlf_jax.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, strip_special

__all__ = [
    "CORPORA",
    "PAD_ID",
    "UNK_ID",
    "BOS_ID",
    "EOS_ID",
    "ParallelText",
    "TranslationCorpus",
    "read_lines",
    "load_translation_corpus",
    "SubwordTokenizer",
    "encode_corpus",
    "BucketSampler",
    "trim_padding",
]

CORPORA = ("multi30k", "iwslt14")

_MULTI30K_SPLITS = {"train": "train", "dev": "val", "test": "test_2016_flickr"}
_IWSLT_SPLITS = {"train": "train", "dev": "valid", "test": "test"}
# Held-out splits that can serve as the validation split (``val_split``).
_HELD_OUT = {"multi30k": ("test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")}


def read_lines(path: str) -> list[str]:
  """Lines of a UTF-8 text file (``.gz`` read transparently), without newlines.

  Raises:
    FileNotFoundError: ``path`` (or ``path + '.gz'``) does not exist.
    ValueError: the file is truncated, corrupt or not UTF-8 (names the file).
  """
  for candidate in (path, path + ".gz"):
    if os.path.exists(candidate):
      opener = gzip.open if candidate.endswith(".gz") else open
      try:
        with opener(candidate, "rt", encoding="utf-8") as f:
          return [line.rstrip("\n").rstrip("\r") for line in f]
      except (EOFError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"Cannot read {candidate}: {type(e).__name__}: {e}. The file is "
                         "truncated, corrupt or not UTF-8 text; replace it.") from None
  raise FileNotFoundError(f"No such text file: {path} (nor {path}.gz).")


@dataclasses.dataclass(frozen=True)
class ParallelText:
  """Aligned sentence pairs of one split: ``src[i]`` translates to ``tgt[i]``."""
  src: tuple
  tgt: tuple

  def __len__(self) -> int:
    return len(self.src)


@dataclasses.dataclass(frozen=True)
class TranslationCorpus:
  """Train / dev / test :class:`ParallelText` plus where they came from.

  ``val`` (None unless asked for) is a held-out split that *selects* (the teacher
  among its candidates); ``dev`` rewards the teacher; ``test`` is read for the
  final table only.
  """
  name: str
  src_lang: str
  tgt_lang: str
  train: ParallelText
  dev: ParallelText
  test: ParallelText
  source: str
  notes: str = ""
  val: Optional[ParallelText] = None


def _read_pair(directory: str, stem: str, src_lang: str, tgt_lang: str,
               limit: Optional[int]) -> ParallelText:
  src = read_lines(os.path.join(directory, f"{stem}.{src_lang}"))
  tgt = read_lines(os.path.join(directory, f"{stem}.{tgt_lang}"))
  if len(src) != len(tgt):
    raise ValueError(f"{directory}/{stem}.{{{src_lang},{tgt_lang}}} are not aligned: "
                     f"{len(src)} vs {len(tgt)} lines.")
  if limit is not None:
    src, tgt = src[:limit], tgt[:limit]
  if not src:
    raise ValueError(f"{directory}/{stem}.{{{src_lang},{tgt_lang}}} hold no sentences.")
  return ParallelText(tuple(src), tuple(tgt))


def load_translation_corpus(name: str,
                            *,
                            data_dir: Optional[str] = None,
                            variant: str = "raw",
                            src_lang: str = "de",
                            tgt_lang: str = "en",
                            train_size: Optional[int] = None,
                            dev_size: Optional[int] = None,
                            test_size: Optional[int] = None,
                            val_split: Optional[str] = None,
                            val_size: Optional[int] = None) -> TranslationCorpus:
  """Reads a parallel corpus from local files (no download).

  Args:
    name: ``multi30k`` | ``iwslt14``.
    data_dir: ``multi30k``: the directory holding ``multi30k/`` (default:
      :func:`~dlf_jax.data.default_data_dir`); ``iwslt14``: the directory with
      ``train/valid/test.{de,en}`` (required).
    variant: ``multi30k`` only: ``raw`` (original text) | ``tok`` (lowercased,
      Moses-tokenised files of the Multi30k repository).
    src_lang, tgt_lang: file suffixes (``de``, ``en``).
    train_size, dev_size, test_size: keep only the first N pairs (smoke runs).
    val_split: the file stem of a held-out validation split (Multi30k:
      ``test_2017_flickr``), or None for none. It must be another split than
      train, dev and test.
    val_size: keep only its first N pairs.

  Returns:
    :class:`TranslationCorpus`.

  Raises:
    ValueError: unknown name/variant, misaligned files, or a ``val_split`` that is
      the train, dev or test split.
    FileNotFoundError: the files are missing; the message lists the expected
      layout and how to supply it.
  """
  if name not in CORPORA:
    raise ValueError(f"Unknown translation corpus {name!r}; choose one of {CORPORA}.")
  if name == "multi30k":
    if variant not in ("raw", "tok"):
      raise ValueError(f"Multi30k variant must be 'raw' or 'tok', got {variant!r}.")
    root = os.path.join(data_dir or default_data_dir(), "multi30k", variant)
    base, suffix = _MULTI30K_SPLITS, ("" if variant == "raw" else ".lc.norm.tok")
    notes = ("Multi30k task 1 (Elliott et al., 2016), test = test_2016_flickr; it stands in "
             "for IWSLT14 De-En, which is not available offline here.")
  else:
    if not data_dir:
      raise FileNotFoundError(
          "IWSLT14 De-En is not shipped: pass data_dir (config.data.data_dir) = a directory "
          "with train.de, train.en, valid.de, valid.en, test.de, test.en (fairseq's "
          "prepare-iwslt14.sh output), or use the multi30k configs.")
    root, base, suffix = data_dir, _IWSLT_SPLITS, ""
    notes = "IWSLT14 De-En, fairseq-prepared text."
  stems = {k: v + suffix for k, v in base.items()}
  taken = [k for k, v in base.items() if v == val_split]
  if taken:
    raise ValueError(f"val_split={val_split!r} is the {taken[0]} split of {name}; the "
                     "validation split must be held out from train, dev and test (Multi30k: "
                     "'test_2017_flickr').")
  limits = {"train": train_size, "dev": dev_size, "test": test_size}
  try:
    splits = {k: _read_pair(root, stem, src_lang, tgt_lang, limits[k]) for k, stem in stems.items()}
  except FileNotFoundError as e:
    expected = ", ".join(
        f"{s}.{lang}[.gz]" for s in stems.values() for lang in (src_lang, tgt_lang))
    where = ("Set data_dir (config.data.data_dir) or DLF_DATA_DIR to the directory that "
             f"contains multi30k/ (the files go in multi30k/{variant}/)" if name == "multi30k" else
             "Set data_dir (config.data.data_dir) to the directory that holds them")
    raise FileNotFoundError(f"{name}: {e} Expected in {root}: {expected}. {where}.") from None
  # After the other splits: missing data is reported as such, not as a bad val_split.
  val = None if val_split is None else _read_val_split(name, root, val_split, val_split +
                                                       suffix, src_lang, tgt_lang, val_size)
  return TranslationCorpus(
      name=name, src_lang=src_lang, tgt_lang=tgt_lang, source=root, notes=notes, val=val, **splits)


def _read_val_split(name: str, root: str, val_split: str, stem: str, src_lang: str, tgt_lang: str,
                    limit: Optional[int]) -> ParallelText:
  """The validation split's pair.

  A missing one raises ``FileNotFoundError`` naming ``val_split`` and the held-out
  splits of ``name``.
  """
  try:
    return _read_pair(root, stem, src_lang, tgt_lang, limit)
  except FileNotFoundError:
    held_out = ", ".join(repr(h) for h in _HELD_OUT.get(name, ()))
    raise FileNotFoundError(
        f"val_split={val_split!r}: no files {stem}.{{{src_lang},{tgt_lang}}}[.gz] in "
        f"{root}; name a held-out split that is there" +
        (f" ({name}: {held_out})" if held_out else "") + ", or None for none.") from None


class SubwordTokenizer:
  """sentencepiece BPE, trained on the training split and cached on disk.

  Args:
    models: one (joint) or two (source, target) sentencepiece processors.

  Use :meth:`train_or_load` to build one. ``pad = 0, unk = 1, bos = 2, eos = 3``
  in every vocabulary.
  """

  def __init__(self, models: Sequence):
    self._models = tuple(models)

  @property
  def joint(self) -> bool:
    return len(self._models) == 1

  @property
  def src(self):
    return self._models[0]

  @property
  def tgt(self):
    return self._models[-1]

  @property
  def src_vocab_size(self) -> int:
    return self.src.get_piece_size()

  @property
  def tgt_vocab_size(self) -> int:
    return self.tgt.get_piece_size()

  @classmethod
  def train_or_load(cls,
                    train: ParallelText,
                    directory: str,
                    *,
                    vocab_size: int = 8000,
                    joint: bool = True,
                    character_coverage: float = 1.0,
                    max_sentences: int = 2_000_000,
                    seed: int = 0) -> "SubwordTokenizer":
    """Trains BPE model(s) on ``train`` into ``directory``, or loads them if cached.

    The cache key hashes the training text and the settings, so a changed corpus
    or vocabulary size trains afresh.

    Args:
      train: the training split (its source and target sentences).
      directory: where ``spm_*.model`` files are written (created).
      vocab_size: pieces per vocabulary (joint: shared by both languages).
      joint: one vocabulary for both languages (needed to share embeddings
        between encoder and decoder) or one per language.
      character_coverage: sentencepiece's ``character_coverage``.
      max_sentences: ``input_sentence_size`` (sentences sampled for training).
      seed: unused by BPE training itself; part of the cache key.

    Raises:
      ImportError: sentencepiece is not installed (``pip install -e '.[nmt]'``).
      RuntimeError: sentencepiece failed (e.g. ``vocab_size`` too large for the
        text; the message says so).
    """
    try:
      import sentencepiece as spm
    except ImportError as e:
      raise ImportError("Subword tokenisation needs sentencepiece: pip install -e '.[nmt]'") from e
    os.makedirs(directory, exist_ok=True)
    digest = hashlib.sha256()
    for line in train.src + ("\0",) + train.tgt:
      digest.update(line.encode("utf-8") + b"\n")
    settings = {
        "vocab_size": vocab_size,
        "joint": joint,
        "cov": character_coverage,
        "max": max_sentences,
        "seed": seed,
        "data": digest.hexdigest()[:16]
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    sides = {"joint": train.src + train.tgt} if joint else {"src": train.src, "tgt": train.tgt}
    models = []
    for side, sentences in sides.items():
      prefix = os.path.join(directory, f"spm_{side}_{vocab_size}_{key}")
      if not os.path.exists(prefix + ".model"):
        try:
          spm.SentencePieceTrainer.train(
              sentence_iterator=iter(sentences),
              model_prefix=prefix,
              model_type="bpe",
              vocab_size=vocab_size,
              character_coverage=character_coverage,
              pad_id=PAD_ID,
              unk_id=UNK_ID,
              bos_id=BOS_ID,
              eos_id=EOS_ID,
              input_sentence_size=max_sentences,
              shuffle_input_sentence=True,
              minloglevel=2)
        except RuntimeError as e:
          raise RuntimeError(f"sentencepiece could not train a {vocab_size}-piece BPE "
                             f"vocabulary on {len(sentences)} sentences ({e}); change "
                             "config.data.vocab_size as sentencepiece says.") from None
      models.append(spm.SentencePieceProcessor(model_file=prefix + ".model"))
    return cls(models)

  def encode_src(self, sentences: Sequence[str]) -> list[list[int]]:
    """Source sentences -> lists of piece ids (no BOS/EOS)."""
    return self.src.encode(list(sentences))

  def encode_tgt(self, sentences: Sequence[str]) -> list[list[int]]:
    """Target sentences -> lists of piece ids (no BOS/EOS)."""
    return self.tgt.encode(list(sentences))

  def decode_tgt(self, ids) -> str:
    """Target ids (int sequence, cut at the first EOS; PAD/BOS dropped) -> detokenised text."""
    return self.tgt.decode(strip_special(ids))


def _pad(seqs: Sequence[Sequence[int]], length: int) -> np.ndarray:
  out = np.full((len(seqs), length), PAD_ID, np.int32)
  for i, s in enumerate(seqs):
    out[i, :len(s)] = s
  return out


def encode_corpus(tokenizer: SubwordTokenizer, text: ParallelText, *, max_src_len: int,
                  max_tgt_len: int, drop_long: bool) -> dict:
  """Pairs -> padded arrays for the student.

  Args:
    tokenizer: :class:`SubwordTokenizer`.
    text: the pairs.
    max_src_len, max_tgt_len: lengths in pieces *including* EOS (and BOS for
      ``tgt_in``); the arrays' widths.
    drop_long: drop longer pairs (training) or truncate them (dev/test:
      every sentence must be translated; references stay untruncated strings).

  Returns:
    dict of numpy arrays: ``src`` int32 ``[N, max_src_len]``, ``tgt_in`` /
    ``tgt_out`` int32 ``[N, max_tgt_len]``, ``mask`` float32 ``[N,
    max_tgt_len]`` (1 on real target tokens incl. EOS), ``index`` int32 ``[N]``
    (row in ``text``).

  Raises:
    ValueError: lengths < 2, or nothing left after dropping.
  """
  if max_src_len < 2 or max_tgt_len < 2:
    raise ValueError(f"max_src_len and max_tgt_len must be >= 2; got {max_src_len}, "
                     f"{max_tgt_len}.")
  src_ids = tokenizer.encode_src(text.src)
  tgt_ids = tokenizer.encode_tgt(text.tgt)
  keep = [
      i for i in range(len(text))
      if not drop_long or (len(src_ids[i]) < max_src_len and len(tgt_ids[i]) < max_tgt_len)
  ]
  if not keep:
    raise ValueError(f"No sentence pair fits max_src_len={max_src_len}, "
                     f"max_tgt_len={max_tgt_len}; raise them.")
  src = [src_ids[i][:max_src_len - 1] + [EOS_ID] for i in keep]
  tgt = [tgt_ids[i][:max_tgt_len - 1] for i in keep]
  tgt_in = _pad([[BOS_ID] + t for t in tgt], max_tgt_len)
  tgt_out = _pad([t + [EOS_ID] for t in tgt], max_tgt_len)
  return {
      "src": _pad(src, max_src_len),
      "tgt_in": tgt_in,
      "tgt_out": tgt_out,
      "mask": (tgt_out != PAD_ID).astype(np.float32),
      "index": np.asarray(keep, np.int32)
  }


class BucketSampler:
  """Length-bucketed training batches of ``B`` sentence pairs, stacked into segments.

  A :class:`~dlf_jax.contracts.BatchSampler` whose ``segment_steps`` is ``block``.

  Epoch ``e`` (seeded by ``(seed, e)``) sorts all pairs by length (random
  tie-breaks), cuts them into batches of ``B`` similar-length pairs, groups
  ``block`` consecutive batches into a *block* and shuffles the blocks (and the
  batches inside each block). A segment of ``block`` steps that starts at a
  multiple of ``block`` therefore holds pairs of one narrow length range, and
  :meth:`segment` trims the padding to its longest sentence (rounded up to
  ``pad_multiple``): XLA compiles a handful of widths and short sentences cost
  less. This is the fixed-shape counterpart of length-bucketed batching that an
  unrolled ``lax.scan`` needs (all steps of one scan share a shape); steps
  within a block see similar lengths, blocks come in random order. An epoch is a
  whole number of blocks of full batches (static ``B``; fewer than ``block``
  batches when the data hold fewer); the ``N - epoch size``
  pairs that do not fit sit out, a run of the length-sorted order starting at a
  random offset that changes every epoch.

  Args:
    arrays: :func:`encode_corpus` output (``src``, ``tgt_in``, ``tgt_out``,
      ``mask``; other keys are carried along).
    batch_size: ``B``, sentence pairs per batch, ``1 <= B <= N``.
    seed: the shuffling seed.
    block: batches per length block; align the unroll length / evaluation
      interval with it (``segment_steps``). ``block=1`` shuffles every batch.
    pad_multiple: segment widths are multiples of this.

  Raises:
    ValueError: bad sizes or missing keys.
  """

  def __init__(self,
               arrays: dict,
               batch_size: int,
               seed: int = 0,
               block: int = 20,
               pad_multiple: int = 8):
    missing = [k for k in ("src", "tgt_in", "tgt_out", "mask") if k not in arrays]
    if missing:
      raise ValueError(f"BucketSampler needs encode_corpus arrays; missing {missing}.")
    n = len(arrays["src"])
    if int(batch_size) != batch_size or not 1 <= batch_size <= n:
      raise ValueError(f"batch_size={batch_size} must be an integer in [1, {n}] (the sentence "
                       "pairs left after the length filter); lower the batch size "
                       "(config.student.batch_size) or raise the max lengths.")
    if block < 1 or pad_multiple < 1:
      raise ValueError(f"block and pad_multiple must be >= 1; got {block}, {pad_multiple}.")
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    self.batch_size, self.seed, self.block, self.pad_multiple = (batch_size, seed, block,
                                                                 pad_multiple)
    self.num_examples = n
    # A whole number of blocks per epoch keeps blocks aligned to multiples of ``block``.
    full = n // batch_size
    self.batches_per_epoch = full - full % block if full >= block else full
    src_len = (self.arrays["src"] != PAD_ID).sum(1)
    tgt_len = (self.arrays["tgt_out"] != PAD_ID).sum(1)
    self._length = np.maximum(src_len, tgt_len)
    self._cache: dict[int, np.ndarray] = {}

  def reseeded(self, seed: int) -> "BucketSampler":
    """The same sampler with another shuffling seed (shares the arrays)."""
    other = object.__new__(BucketSampler)
    other.__dict__.update(self.__dict__, seed=int(seed), _cache={})
    return other

  @property
  def segment_steps(self) -> int:
    """Scan length that keeps one length block per segment (``block``)."""
    return self.block

  def _epoch(self, epoch: int) -> np.ndarray:
    """``[batches_per_epoch, B]`` example indices of epoch ``epoch``."""
    if epoch not in self._cache:
      if len(self._cache) > 4:
        self._cache.clear()
      rng = np.random.default_rng([self.seed, epoch])
      perm = rng.permutation(self.num_examples)
      ordered = perm[np.argsort(self._length[perm], kind="stable")]
      nb, b = self.batches_per_epoch, self.batch_size
      drop = rng.integers(0, self.num_examples - nb * b + 1)  # which pairs sit out
      batches = ordered[drop:drop + nb * b].reshape(nb, b)
      blocks = [batches[i:i + self.block] for i in range(0, nb, self.block)]  # last may be short
      order = rng.permutation(len(blocks))
      self._cache[epoch] = np.concatenate(
          [blocks[i][rng.permutation(len(blocks[i]))] for i in order])
    return self._cache[epoch]

  def indices(self, start: int, count: int) -> np.ndarray:
    """Example indices of global batches ``start .. start + count - 1``: ``[count, B]``."""
    if start < 0 or count < 0:
      raise ValueError(f"start and count must be >= 0, got start={start}, count={count}.")
    out = np.empty((count, self.batch_size), np.int64)
    for j in range(count):
      epoch, pos = divmod(start + j, self.batches_per_epoch)
      out[j] = self._epoch(epoch)[pos]
    return out

  def segment(self, start: int, count: int) -> dict:
    """Batches ``start .. start + count - 1``.

    Returns:
      The arrays by name, padding trimmed by :func:`trim_padding`:
      ``src [count, B, Ls']``, ``tgt_* [count, B, Lt']``.
    """
    idx = self.indices(start, count)
    out = {k: v[idx] for k, v in self.arrays.items()}
    return trim_padding(out, self.pad_multiple)


def trim_padding(batch: dict, pad_multiple: int = 8) -> dict:
  """Cuts the trailing all-PAD columns of ``src`` and of ``tgt_in/tgt_out/mask``.

  Widths are rounded up to ``pad_multiple`` (never beyond the arrays' width).
  """
  out = dict(batch)
  for keys in (("src",), ("tgt_in", "tgt_out", "mask")):
    ref = out[keys[0]] if keys[0] != "tgt_in" else out["tgt_out"]
    used = np.nonzero((ref != PAD_ID).reshape(-1, ref.shape[-1]).any(0))[0]
    width = int(used[-1]) + 1 if used.size else 1
    width = min(ref.shape[-1], -(-width // pad_multiple) * pad_multiple)
    for k in keys:
      out[k] = out[k][..., :width]
  return out
