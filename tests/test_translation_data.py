"""Translation data (:mod:`dlf_jax.data.translation`): corpora (Multi30k, a fairseq-layout
IWSLT14 directory), sentencepiece subwords, ``encode_corpus``, ``trim_padding`` and the
length-bucketed ``BucketSampler``.
"""
import gzip
import os

import numpy as np
import pytest

from dlf_jax.data import translation as tr

from helpers import BOS, EOS, PAD, UNK

pytestmark = pytest.mark.usefixtures("fast_compile")  # tiny programs


@pytest.fixture(scope="module")
def multi30k():
  return tr.load_translation_corpus("multi30k")


@pytest.fixture(scope="module")
def small_tokenizer(multi30k, tmp_path_factory):
  """Joint 300-piece BPE on the first 2,000 training pairs."""
  small = tr.ParallelText(multi30k.train.src[:2000], multi30k.train.tgt[:2000])
  return tr.SubwordTokenizer.train_or_load(
      small, str(tmp_path_factory.mktemp("spm_small")), vocab_size=300)


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
  tok = tr.load_translation_corpus(
      "multi30k", variant="tok", train_size=10, dev_size=5, test_size=3)
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
  tok = tr.load_translation_corpus(
      "multi30k",
      variant="tok",
      val_split="test_2017_flickr",
      val_size=7,
      train_size=3,
      dev_size=3,
      test_size=3)
  assert len(tok.val) == 7 and all(s == s.lower() for s in tok.val.tgt)
  for stem, role in (("val", "dev"), ("test_2016_flickr", "test"), ("train", "train")):
    with pytest.raises(ValueError, match=f"val_split='{stem}' is the {role} split"):
      tr.load_translation_corpus("multi30k", val_split=stem)
  with pytest.raises(
      FileNotFoundError, match=r"val_split='test_2099': no files test_2099\.\{de,en\}"):
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
  assert (len(c.train), len(c.dev), len(c.test)) == (sizes["train"], sizes["valid"], sizes["test"])
  assert c.train.src == multi30k.train.src[:60] and c.dev.tgt == multi30k.dev.tgt[:12]
  assert c.test.tgt == multi30k.test.tgt[:9]  # read from test.en.gz
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
  if not joint:  # two vocabularies: German and English pieces differ
    assert first.src.id_to_piece(list(range(4, 300))) != first.tgt.id_to_piece(list(range(4, 300)))
  # Special ids.
  for sp in {first.src, first.tgt}:
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD, UNK, BOS, EOS)
  # Another training text (or vocabulary size) trains afresh into new files.
  other = tr.ParallelText(small.src[:1500], small.tgt[:1500])
  tr.SubwordTokenizer.train_or_load(other, directory, vocab_size=300, joint=joint)
  assert len([f for f in os.listdir(directory) if f.endswith(".model")]) == 2 * len(models)


def test_decode_tgt_round_trip(small_tokenizer):
  tok = small_tokenizer
  for s in [
      "A man is riding a bike.", "Two dogs play in the snow.",
      "A woman in a red dress is walking down the street."
  ]:
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
  for i in long_[:30]:  # truncated to the width, still EOS-terminated
    assert kept["src"][i].tolist() == (src_ids[i][:ls - 1] + [EOS] + [PAD] * ls)[:ls]
    assert kept["tgt_out"][i].tolist() == (tgt_ids[i][:lt - 1] + [EOS] + [PAD] * lt)[:lt]
  with pytest.raises(ValueError, match=">= 2"):
    tr.encode_corpus(tok, text, max_src_len=1, max_tgt_len=lt, drop_long=True)
  with pytest.raises(ValueError, match="No sentence pair fits"):
    tr.encode_corpus(tok, text, max_src_len=2, max_tgt_len=2, drop_long=True)


def test_trim_padding():
  batch = {
      "src": np.array([[5, 6, EOS, 0, 0, 0, 0, 0, 0, 0]] * 2),
      "tgt_in": np.array([[BOS, 5, 0, 0, 0, 0, 0], [BOS, 5, 6, 7, 8, 9, 0]]),
      "tgt_out": np.array([[5, EOS, 0, 0, 0, 0, 0], [5, 6, 7, 8, 9, EOS, 0]]),
      "index": np.array([0, 1])
  }
  batch["mask"] = (batch["tgt_out"] != 0).astype(np.float32)
  out = tr.trim_padding(batch, pad_multiple=2)
  assert out["src"].shape == (2, 4)
  assert out["tgt_in"].shape == out["tgt_out"].shape == out["mask"].shape == (2, 6)
  np.testing.assert_array_equal(out["tgt_out"], batch["tgt_out"][:, :6])
  np.testing.assert_array_equal(out["index"], batch["index"])
  assert tr.trim_padding(batch, pad_multiple=8)["tgt_out"].shape == (2, 7)  # capped
  assert tr.trim_padding(batch, pad_multiple=1)["src"].shape == (2, 3)


@pytest.fixture(scope="module")
def full_arrays(multi30k, tmp_path_factory):
  """All of Multi30k's training split in 300 joint BPE pieces, at most 64 per side."""
  tok = tr.SubwordTokenizer.train_or_load(
      multi30k.train, str(tmp_path_factory.mktemp("spm")), vocab_size=300)
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
  np.testing.assert_array_equal(
      other.indices(0, 30),
      tr.BucketSampler(arrays, b, seed=4, block=block).indices(0, 30))
  assert not np.array_equal(other.indices(0, 30), sampler.indices(0, 30))
  np.testing.assert_array_equal(sampler.indices(0, 30), epoch[:30])  # sampler unchanged
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
  random_width = np.mean(
      [-(-lengths[rng.choice(n, b * block, replace=False)].max() // 8) * 8 for _ in range(20)])
  assert np.mean(widths) < random_width - 8
  for bad in (0, n + 1):
    with pytest.raises(ValueError, match="batch_size"):
      tr.BucketSampler(arrays, bad)
  with pytest.raises(ValueError, match="missing"):
    tr.BucketSampler({"src": arrays["src"]}, 4)
