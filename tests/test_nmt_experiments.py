"""End-to-end tests of the translation experiments (experiments/translate.py, NMT configs).

Every NMT config loads and validates in all variants; bad values are rejected naming
their key; the ``:smoke`` variants run through ``experiments.translate.run`` (teaching
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
from experiments import reporting, translate
from experiments.configs import (iwslt14_lstm, iwslt14_transformer, multi30k_lstm,
                                 multi30k_transformer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"multi30k_transformer": multi30k_transformer, "multi30k_lstm": multi30k_lstm,
           "iwslt14_transformer": iwslt14_transformer, "iwslt14_lstm": iwslt14_lstm}
SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:"


pytestmark = pytest.mark.usefixtures("fast_compile")   # tiny programs


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
  if config.teacher.parameterisation == "soft_target":     # O(|V|): no per-class q
    assert config.teacher.target in ("uniform", "shared")
  full = CONFIGS[name].get_config()
  if variant == "smoke":
    assert config.data.train_size == 400 and config.student.num_steps < 100
  elif variant == "cpu":
    assert config.student.num_steps < full.student.num_steps
  else:
    assert config.data.train_size is None      # the whole corpus


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


@pytest.mark.parametrize("key,value", [
    ("teacher.parameterisation", "full"),           # a dense |V| x |V| W is rejected
    ("model.num_heads", 3),                         # does not divide d_model = 32
    ("methods", ("cross_entropy", "large_margin")),
    ("methods", ()),
    ("teach.measure", "bogus"),
    ("data.name", "wmt14"),
    ("data.variant", "bpe"),
    ("model.name", "gru"),
    ("model.dropout", 1.0),
    ("student.eval_every", 7),                      # not a multiple of min(block, T) = 5
    ("teach.unroll_steps", 3),                      # neither divides nor is a multiple of 10
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
    ("teach.memory", "disk"),
    ("teach.method", "forward"),
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
      got = [float(r["value"]) for r in rows if (r["phase"], r["method"], r["metric"]) == (
          "student", b["method"], f"test_{key}") and int(r["step"]) == b["step"]]
      assert got == [pytest.approx(b[key])], (b["method"], key)
  assert {r["method"] for r in rows if r["metric"] == "dev_accuracy"} == set(methods)
  if "l2t_dlf" in methods:
    assert any(r["phase"] == "teach" and r["metric"] == "dev_measure" for r in rows)
  for m in methods:       # one seed: the BLEU alone, no "± 0.00"
    assert f"| {reporting.METHOD_NAMES[m]} | {results['methods'][m]['bleu'][0]:.2f} | " in md, m


def _no_checkpoints(phase, step):
  raise AssertionError(f"the finished run trained again: checkpoint {phase} @ {step}")


@pytest.mark.parametrize("name,measure", [("multi30k_transformer", "expected_bleu"),
                                          ("multi30k_lstm", "expected_accuracy")])
def test_multi30k_smoke_end_to_end_and_read_back(name, measure, tmp_path, multi30k):
  config = CONFIGS[name].get_config("smoke")
  config.methods = ("cross_entropy", "l2t_dlf")
  config.teach.measure = measure
  workdir = str(tmp_path / name)
  results = translate.run(config, workdir)
  assert results["data"]["name"] == "multi30k"
  assert (results["data"]["train"], results["data"]["dev"], results["data"]["test"]) == (
      400, 40, 40)
  assert 0 < results["data"]["train_used"] <= 400 and results["data"]["vocab_size"] == 500
  assert results["config"]["model"]["name"] == name.split("_")[1]
  _check_results(results, config, workdir, multi30k.test.tgt[:40])
  teach = results["teach"]
  assert teach["num_updates"] == config.teach.segments_per_episode
  assert all(math.isfinite(v) for v in teach["episode_dev_measure"])
  # A finished run is read back, not retrained (no checkpoint is written).
  before = _snapshot(os.path.join(workdir, "checkpoints"))
  again = translate.run(config, workdir, on_checkpoint=_no_checkpoints)
  for key in ("methods", "bleu", "runs", "teach", "signature", "data"):
    assert again[key] == results[key], key
  assert _snapshot(os.path.join(workdir, "checkpoints")) == before


def write_fairseq_dir(directory, multi30k, sizes=(400, 40, 40)):
  """``train/valid/test.{de,en}`` from Multi30k lines (``train.de`` gzipped)."""
  os.makedirs(directory, exist_ok=True)
  for stem, text, n in zip(("train", "valid", "test"), (multi30k.train, multi30k.dev,
                                                        multi30k.test), sizes):
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
  assert (results["data"]["train"], results["data"]["dev"], results["data"]["test"]) == (
      400, 40, 40)
  _check_results(results, config, workdir, multi30k.test.tgt[:40])
  # Without data_dir: the library's FileNotFoundError, naming what to set.
  missing = iwslt14_transformer.get_config("smoke")
  with pytest.raises(FileNotFoundError, match="data_dir"):
    translate.run(missing, str(tmp_path / "missing"))
  missing.data.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"train\.de.*test\.en"):
    translate.run(missing, str(tmp_path / "missing2"))


def test_cli_runs_a_translation_config(tmp_path):
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  workdir = str(tmp_path / "cli")
  cmd = [sys.executable, "-m", "experiments.main",
         "--config=experiments/configs/multi30k_transformer.py:smoke",
         f"--workdir={workdir}", "--config.methods=('cross_entropy',)"]
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(os.path.join(workdir, "results.md"), encoding="utf-8") as f:
    md = f.read()
  assert "multi30k de->en: transformer student" in md and "Cross-entropy" in md
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert results["config"]["task"] == "translation"
  assert len(_lines(os.path.join(workdir, "translations",
                                 "cross_entropy_seed0.test.hyp.txt"))) == 40
