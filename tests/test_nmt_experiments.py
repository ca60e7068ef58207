"""End-to-end tests of the translation task (experiments/tasks/translation.py, NMT configs).

Every NMT config loads and validates in all variants; bad values are rejected naming
their key; the ``:smoke`` variants run through ``experiments.tasks.translation.run`` (teaching
included) and are read back without retraining; IWSLT14 runs from a fairseq-layout
directory; the CLI routes a translation config to the translation runner.

Compilation dominates, so XLA runs without most optimizations (in this process and in
the CLI's).
"""
import csv
import gzip
import json
import math
import os
import subprocess
import sys

import pytest

from dlf_jax import bleu
from dlf_jax.data import translation as tr
from dlf_jax import analysis
from experiments import plots, summaries
from experiments.tasks import translation as translate
from experiments.workdir import InputError
from experiments.configs import (iwslt14_lstm, iwslt14_transformer, multi30k_lstm,
                                 multi30k_transformer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "multi30k_transformer": multi30k_transformer,
    "multi30k_lstm": multi30k_lstm,
    "iwslt14_transformer": iwslt14_transformer,
    "iwslt14_lstm": iwslt14_lstm
}
SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:"

pytestmark = pytest.mark.usefixtures("fast_compile")  # tiny programs


@pytest.fixture(scope="module")
def multi30k():
  return tr.load_translation_corpus("multi30k")


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("variant", [None, "cpu", "smoke"])
def test_configs_load_and_validate(name, variant):
  config = CONFIGS[name].get_config(variant)
  translate.validate_config(config)
  corpus, model = name.split("_")
  assert config.task == "translation"
  assert config.data.name == corpus and config.model.name == model
  assert config.teacher.parameterisation in ("diagonal", "low_rank", "soft_target")
  if config.teacher.parameterisation == "soft_target":  # O(|V|): no per-class q
    assert config.teacher.target in ("uniform", "shared")
  full = CONFIGS[name].get_config()
  if variant == "smoke":
    assert config.data.train_size == 400 and config.student.num_steps < 100
  elif variant == "cpu":
    assert config.student.num_steps < full.student.num_steps
  else:
    assert config.data.train_size is None  # the whole corpus


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_unknown_variant(name):
  with pytest.raises(ValueError, match=f"Unknown {name} variant 'bogus'"):
    CONFIGS[name].get_config("bogus")


def _set(config, key, value):
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value


@pytest.mark.parametrize(
    "key,value",
    [
        ("teacher.parameterisation", "full"),  # a dense |V| x |V| W is rejected
        ("model.num_heads", 3),  # does not divide d_model = 32
        ("methods", ("cross_entropy", "large_margin")),
        ("methods", ()),
        ("teach.measure", "bogus"),
        ("data.name", "wmt14"),
        ("data.variant", "bpe"),
        ("model.name", "gru"),
        ("model.dropout", 1.0),
        ("student.eval_every", 7),  # not a multiple of min(block, T) = 5
        ("teach.unroll_steps", 3),  # neither divides nor is a multiple of 10
        ("data.vocab_size", 0),
        ("eval.beam_size", 0),
        ("teach.temperature", 0.0),
        ("baselines.smoothing", 1.0),
    ])
def test_bad_config_value_is_named(key, value):
  config = multi30k_transformer.get_config("smoke")
  _set(config, key, value)
  with pytest.raises(ValueError, match=rf"config\.{key}="):
    translate.validate_config(config)


def test_shared_embeddings_need_a_joint_vocabulary():
  config = multi30k_lstm.get_config("smoke")
  config.data.joint_vocab = False
  with pytest.raises(ValueError, match=r"config\.model\.shared_embeddings="):
    translate.validate_config(config)
  config.model.shared_embeddings = False
  translate.validate_config(config)


@pytest.mark.parametrize("key,value", [
    ("teach.estimator.reverse.memory", "disk"),
    ("teach.estimator.reverse.method", "forward"),
    ("teacher.features", ("progress", "bogus")),
    ("methods", ("cross_entropy", "cross_entropy")),
])
def test_bad_config_value_is_named_more_keys(key, value):
  config = multi30k_transformer.get_config("smoke")
  _set(config, key, value)
  with pytest.raises(ValueError, match=rf"config\.{key}="):
    translate.validate_config(config)


# ----------------------------------------------------------------------------- end to end


def _lines(path):
  with open(path, encoding="utf-8") as f:
    text = f.read()
  assert text.endswith("\n")
  return text[:-1].split("\n")


def _snapshot(directory):
  """{relative path: mtime} of every file under ``directory``."""
  out = {}
  for root, _, files in os.walk(directory):
    for f in files:
      path = os.path.join(root, f)
      out[os.path.relpath(path, directory)] = os.path.getmtime(path)
  return out


def _check_results(results, config, workdir, test_refs):
  methods = tuple(config.methods)
  if "l2t_dlf" in methods and config.teach.select:  # the untaught anchor's control students
    methods += ("l2t_dlf_anchor",)
  assert tuple(results["methods"]) == methods
  assert results["signature"].startswith(SIGNATURE)
  assert "tok:none" in results["tokenized_signature"]
  assert [(b["method"], b["seed"]) for b in results["bleu"]] == [(m, 0) for m in methods]
  n_test = len(test_refs)
  for b in results["bleu"]:
    for key in ("bleu", "tokenized_bleu"):
      assert math.isfinite(b[key]) and 0.0 <= b[key] <= 100.0, b
    assert b["signature"] == results["signature"]
    assert b["step"] == config.student.num_steps and b["beam_size"] == config.eval.beam_size
    stem = os.path.join(workdir, "translations", f"{b['method']}_seed0.test")
    hyps, refs = _lines(stem + ".hyp.txt"), _lines(stem + ".ref.txt")
    assert len(hyps) == len(refs) == n_test
    assert refs == list(test_refs)
    # The files hold what was scored.
    again = bleu.corpus_bleu(hyps, refs)
    assert again["bleu"] == pytest.approx(b["bleu"], abs=1e-9)
    assert again["tokenized_bleu"] == pytest.approx(b["tokenized_bleu"], abs=1e-9)
    with open(os.path.join(workdir, "runs", f"{b['method']}_seed0.bleu.json")) as f:
      assert json.load(f) == b
  for m in methods:
    assert results["methods"][m]["seeds"] == 1
    assert results["methods"][m]["bleu"][0] == pytest.approx(
        [b["bleu"] for b in results["bleu"] if b["method"] == m][0])
  for r in results["runs"]:
    assert 0.0 <= r["test_error"] <= 100.0
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["bleu"] == results["bleu"]
  with open(os.path.join(workdir, "results.md"), encoding="utf-8") as f:
    md = f.read()
  assert results["signature"] in md and "sacreBLEU" in md
  with open(os.path.join(workdir, "metrics.csv"), encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  for b in results["bleu"]:
    for key in ("bleu", "tokenized_bleu"):
      got = [
          float(r["value"])
          for r in rows
          if (r["phase"], r["method"],
              r["metric"]) == ("student", b["method"],
                               f"test_{key}") and int(r["step"]) == b["step"]
      ]
      assert got == [pytest.approx(b[key])], (b["method"], key)
  assert {r["method"] for r in rows if r["metric"] == "dev_accuracy"} == set(methods)
  if "l2t_dlf" in methods:
    assert any(r["phase"] == "teach" and r["metric"] == "dev_measure" for r in rows)
  for m in methods:  # one seed: the BLEU alone, no "± 0.00"
    assert f"| {summaries.METHOD_NAMES[m]} | {results['methods'][m]['bleu'][0]:.2f} | " in md, m


def _no_checkpoints(phase, step):
  raise AssertionError(f"the finished run trained again: checkpoint {phase} @ {step}")


# The Transformer through every phase (teaching with expected BLEU, selection, beam
# search); the LSTM runs through the CLI below.
def test_multi30k_smoke_end_to_end_and_read_back(tmp_path, multi30k):
  name = "multi30k_transformer"
  config = CONFIGS[name].get_config("smoke")
  # The taught student only (its cross-entropy warm start trains the Transformer on
  # cross-entropy; a cross-entropy row: the IWSLT14 Transformer smoke run below).
  config.methods = ("l2t_dlf",)
  config.teach.measure = "expected_bleu"
  config.teach.select = True
  workdir = str(tmp_path / name)
  results = translate.run(config, workdir)
  assert results["data"]["name"] == "multi30k"
  assert (results["data"]["train"], results["data"]["dev"], results["data"]["test"]) == (400, 40,
                                                                                         40)
  assert 0 < results["data"]["train_used"] <= 400 and results["data"]["vocab_size"] == 500
  assert results["config"]["model"]["name"] == name.split("_")[1]
  _check_results(results, config, workdir, multi30k.test.tgt[:40])
  smoothing = results["teacher_smoothing"]  # soft-target W: eps per token
  assert smoothing["anchor"] == config.teacher.anchor_smoothing
  assert smoothing["steps"][0] == config.teach.pretrain_steps
  assert smoothing["steps"][-1] == config.student.num_steps
  assert all(0 <= v < 1 for v in smoothing["token_mean"] + smoothing["max"])
  assert os.path.getsize(os.path.join(workdir, "plots", "token_smoothing.png")) > 0
  if config.teach.select:
    _check_selection(results, config, workdir, multi30k)
  else:
    assert results["selection"] is None and "l2t_dlf_anchor" not in results["methods"]
    assert not os.path.exists(os.path.join(workdir, "selection.json"))
  teach = results["teach"]
  assert teach["num_updates"] == config.teach.segments_per_episode
  assert all(math.isfinite(v) for v in teach["episode_dev_measure"])
  # A finished run is read back, not retrained (no checkpoint is written).
  before = _snapshot(os.path.join(workdir, "checkpoints"))
  again = translate.run(config, workdir, on_checkpoint=_no_checkpoints)
  for key in ("methods", "bleu", "runs", "teach", "signature", "data"):
    assert again[key] == results[key], key
  assert _snapshot(os.path.join(workdir, "checkpoints")) == before


def _check_selection(results, config, workdir, multi30k):
  """Both candidates' students translated the validation split (test_2017_flickr), the
  higher validation BLEU was chosen, and the report says which."""
  val_refs = tr.load_translation_corpus(
      "multi30k", val_split="test_2017_flickr", val_size=config.data.val_size).val.tgt
  assert results["data"]["val"] == config.data.val_size == len(val_refs)
  assert not set(val_refs) & (set(multi30k.test.tgt) | set(multi30k.dev.tgt))
  by_method = {r["method"]: r for r in results["val_bleu"]}
  assert set(by_method) == set(results["methods"])  # every student, seed 0
  for r in results["val_bleu"]:
    stem = os.path.join(workdir, "translations", f"{r['method']}_seed0.val")
    hyps, refs = _lines(stem + ".hyp.txt"), _lines(stem + ".ref.txt")
    assert refs == list(val_refs) and len(hyps) == len(refs)
    assert bleu.corpus_bleu(hyps, refs)["bleu"] == pytest.approx(r["bleu"], abs=1e-9)
  selection = results["selection"]
  scores = {name: by_method[m]["bleu"] for name, m in translate.SELECTION_CANDIDATES.items()}
  assert selection["val_bleu"] == pytest.approx(scores)
  best = max(scores.values())
  assert scores[selection["chosen"]] == best
  if scores["anchor (untaught)"] == best:  # a tie goes to the anchor
    assert selection["chosen"] == "anchor (untaught)"
  assert selection["method"] == translate.SELECTION_CANDIDATES[selection["chosen"]]
  with open(os.path.join(workdir, "selection.json")) as f:
    assert json.load(f) == selection
  with open(os.path.join(workdir, "results.md"), encoding="utf-8") as f:
    md = f.read()
  assert f"**{selection['chosen']}**" in md and "test_2017_flickr" in md
  assert f"| {summaries.METHOD_NAMES['l2t_dlf_anchor']} |" in md


def test_select_on_validation_prefers_higher_bleu_and_the_anchor_on_a_tie(tmp_path):
  rows = lambda a, t: [{
      "method": "l2t_dlf_anchor",
      "seed": s,
      "bleu": a[s]
  } for s in (0, 1)] + [{
      "method": "l2t_dlf",
      "seed": s,
      "bleu": t[s]
  } for s in (0, 1)]
  out = translate.select_on_validation(rows((30.0, 31.0), (31.0, 31.5)), str(tmp_path))
  assert out["chosen"] == "taught" and out["method"] == "l2t_dlf" and out["seeds"] == [0, 1]
  assert out["val_bleu"] == {"anchor (untaught)": 30.5, "taught": 31.25}
  out = translate.select_on_validation(rows((30.0, 31.0), (31.0, 30.0)), str(tmp_path))
  assert out["chosen"] == "anchor (untaught)" and out["method"] == "l2t_dlf_anchor"
  with open(tmp_path / "selection.json") as f:
    assert json.load(f) == out
  with pytest.raises(ValueError, match="no validation BLEU for 'l2t_dlf'"):
    translate.select_on_validation(rows((1.0, 2.0), (3.0, 4.0))[:2], str(tmp_path))


def test_smoothing_by_frequency_known_values(tmp_path):
  from dlf_jax import losses
  import numpy as np
  eps0, eps1 = np.array([0.1, 0.1, 0.1, 0.1, 0.1]), np.array([0.0, 0.2, 0.4, 0.1, 0.3])
  snaps = [(400, losses.soft_target_params(eps0)), (1200, losses.soft_target_params(eps1))]
  counts = np.array([0, 1, 3, 6, 10])  # class 0 never occurs (PAD)
  out = analysis.smoothing_by_frequency(snaps, counts)
  assert out["steps"] == [400, 1200]
  assert out["mean"] == pytest.approx([0.1, 0.2]) and out["min"] == pytest.approx([0.1, 0.0])
  assert out["token_mean"] == pytest.approx([0.1, (0.2 + 1.2 + 0.6 + 3.0) / 20])
  assert out["by_frequency"] == pytest.approx([0.2, 0.4, 0.1, 0.3])  # rarest first
  plots.plot_smoothing_by_frequency(snaps, counts, 0.1, str(tmp_path / "p.png"))
  assert os.path.getsize(tmp_path / "p.png") > 0
  with pytest.raises(ValueError, match="counts has shape"):
    analysis.smoothing_by_frequency(snaps, counts[:3])
  diag = [(0, losses.identity_loss_params(5, "diagonal"))]
  with pytest.raises(ValueError, match="soft_target teacher, got 'diagonal'"):
    analysis.smoothing_by_frequency(diag, counts)


def test_selection_needs_a_validation_split():
  for none in (None, "", "None"):  # 'None' is what --config.data.val_split=None gives
    config = multi30k_transformer.get_config("smoke")
    assert config.teach.select and config.data.val_split == "test_2017_flickr"
    config.data.val_split = none
    with pytest.raises(ValueError, match=r"config\.teach\.select=True.*data\.val_split"):
      translate.validate_config(config)
    config.teach.select = False
    translate.validate_config(config)
    config.baselines.smoothing_grid = (0.1, 0.2)
    with pytest.raises(ValueError, match=r"config\.baselines\.smoothing_grid=.*data\.val_split"):
      translate.validate_config(config)
  assert not iwslt14_transformer.get_config("smoke").teach.select  # IWSLT14: no val split


@pytest.mark.parametrize("val_split,match", [
    ("val", r"config\.data\.val_split='val' is the dev split of multi30k"),
    ("test_2016_flickr", r"config\.data\.val_split='test_2016_flickr' is the test split"),
    ("test_2099", r"config\.data\.val_split='test_2099': no files test_2099\.\{de,en\}.*"
     r"'test_2017_flickr'"),
])
def test_bad_validation_split_is_a_config_error(val_split, match, tmp_path):
  config = multi30k_transformer.get_config("smoke")
  config.data.val_split = val_split
  with pytest.raises(InputError, match=match):
    translate.run(config, str(tmp_path / "run"))


def write_fairseq_dir(directory, multi30k, sizes=(400, 40, 40)):
  """``train/valid/test.{de,en}`` from Multi30k lines (``train.de`` gzipped)."""
  os.makedirs(directory, exist_ok=True)
  for stem, text, n in zip(("train", "valid", "test"),
                           (multi30k.train, multi30k.dev, multi30k.test), sizes):
    for lang, lines in (("de", text.src), ("en", text.tgt)):
      content = "\n".join(lines[:n]) + "\n"
      if (stem, lang) == ("train", "de"):
        with gzip.open(os.path.join(directory, "train.de.gz"), "wt", encoding="utf-8") as f:
          f.write(content)
      else:
        with open(os.path.join(directory, f"{stem}.{lang}"), "w", encoding="utf-8") as f:
          f.write(content)


def test_iwslt14_smoke_from_a_fairseq_directory(tmp_path, multi30k):
  data_dir = str(tmp_path / "iwslt14")
  write_fairseq_dir(data_dir, multi30k)
  config = iwslt14_transformer.get_config("smoke")
  config.methods = ("cross_entropy",)
  config.data.data_dir = data_dir
  workdir = str(tmp_path / "run")
  results = translate.run(config, workdir)
  assert results["data"]["name"] == "iwslt14" and "IWSLT14" in results["data"]["notes"]
  assert (results["data"]["train"], results["data"]["dev"], results["data"]["test"]) == (400, 40,
                                                                                         40)
  _check_results(results, config, workdir, multi30k.test.tgt[:40])
  # Without data_dir: the library's FileNotFoundError, naming what to set.
  missing = iwslt14_transformer.get_config("smoke")
  with pytest.raises(FileNotFoundError, match="data_dir"):
    translate.run(missing, str(tmp_path / "missing"))
  missing.data.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"train\.de.*test\.en"):
    translate.run(missing, str(tmp_path / "missing2"))


def test_cli_runs_a_translation_config_and_tunes_label_smoothing(tmp_path):
  """The CLI routes a translation config (the LSTM student); label smoothing's eps is chosen
  by validation BLEU, and the chosen eps's tuning student is the reported one (not trained
  again)."""
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  workdir = str(tmp_path / "cli")
  cmd = [
      sys.executable, "-m", "experiments.main",
      "--config=experiments/configs/multi30k_lstm.py:smoke", f"--workdir={workdir}",
      "--config.methods=('label_smoothing',)", "--config.baselines.smoothing_grid=(0.0,0.3)"
  ]
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(os.path.join(workdir, "results.md"), encoding="utf-8") as f:
    md = f.read()
  assert "multi30k de->en: lstm student" in md and "Label smoothing" in md
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["config"]["task"] == "translation"
  tuning = results["tuning"]
  with open(os.path.join(workdir, "tuning.json")) as f:
    assert json.load(f) == tuning
  val = {}
  for eps in ("0", "0.3"):
    with open(os.path.join(workdir, "runs", f"label_smoothing_eps{eps}_seed0.val.bleu.json")) as f:
      val[eps] = json.load(f)["bleu"]
  assert tuning["val_bleu"] == pytest.approx(val)
  best = max(val.values())
  assert f"{tuning['chosen']:g}" == ("0" if val["0"] == best else "0.3")
  assert f"**eps = {tuning['chosen']:g}**" in md
  assert results["config"]["baselines"]["smoothing"] == tuning["chosen"]
  assert results["config"]["teacher"]["anchor_smoothing"] == tuning["chosen"]
  # Two students in all: the reported one is the chosen eps's.
  assert sorted(os.listdir(os.path.join(
      workdir, "checkpoints"))) == ["label_smoothing_eps0", "label_smoothing_eps0.3"]
  tag = f"label_smoothing_eps{tuning['chosen']:g}"
  assert [(b["method"], b["split"]) for b in results["bleu"]] == [("label_smoothing", "test")]
  with open(os.path.join(workdir, "runs", f"{tag}_seed0.bleu.json")) as f:
    assert json.load(f) == results["bleu"][0]
  assert len(_lines(os.path.join(workdir, "translations", f"{tag}_seed0.test.hyp.txt"))) == 40
