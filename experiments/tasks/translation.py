r"""The translation task: teach on De->En, train students, decode, score BLEU.

The protocol of :mod:`experiments.tasks.classification` on a translation corpus: sentencepiece
subwords (trained on the training split, cached in ``<workdir>/spm``), a
length-bucketed sampler, a Transformer or LSTM student; the teacher's loss is
the identity-link family of Eqn. (2) over the target vocabulary, by default a
soft-target W with per-token smoothing ``eps_y`` and uniform targets (label
smoothing at its anchor; ``diagonal`` and ``low_rank`` W are the other forms
whose memory is ``O(|V|)``, :data:`experiments.schema.VOCABULARY_FORMS`; never a
dense ``|V| x |V|``), and its reward is expected sentence BLEU over sampled
candidates (``teach.measure='expected_bleu'``) or the token-level expected
accuracy (``'expected_accuracy'``). Every student (per method and seed) is
trained with checkpoints as in :func:`experiments.phases.student_phase`, then
translates the test set with beam search; the report gives sacreBLEU on the
detokenised output (with its signature) and the tokenised BLEU that IWSLT14
papers report, labelled.

It is ``TASKS['translation']`` of :mod:`experiments.tasks` (``config.task =
'translation'``): :data:`SCHEMA` (:data:`experiments.schema.TRANSLATION`),
:func:`load_data`, :func:`build_seq2seq_student`, :func:`build_seq2seq_measure` (the
teacher is :func:`experiments.builders.build_teacher`'s), :func:`run`. Every choice on
the validation split (label smoothing's eps, the teacher) is
:func:`experiments.selection.select`'s.

Workdir layout (in addition to :mod:`experiments.tasks.classification`'s)::

  spm/spm_*.model                                  sentencepiece model(s)
  translations/<method>_seed<s>.test.{hyp,ref}.txt detokenised test output
  runs/<method>_seed<s>.bleu.json                  BLEU of that output
  metrics.csv                                      as there, plus rows ``test_bleu`` and
                                                   ``test_tokenized_bleu`` per student

Run (see ``experiments/configs/multi30k_transformer.py``)::

  python -m experiments.main --config=experiments/configs/multi30k_transformer.py:smoke \
      --workdir=/tmp/nmt_smoke
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import time
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import dlf_jax
from dlf_jax import analysis
from dlf_jax import bleu as bleu_lib
from dlf_jax import decoding
from dlf_jax.data import translation as tr
from dlf_jax.data.vocab import PAD_ID
from dlf_jax.models import transformer as seq2seq
from experiments import io
from experiments import phases
from experiments import plots
from experiments import schema
from experiments import summaries
from experiments.builders import build_schedule, build_teacher
from experiments.selection import select
from experiments.schema import NMT_MEASURES, NMT_METHODS, NMT_MODELS
from experiments.workdir import (Checkpoints, InputError, claim_workdir, config_json, make_workdir)

__all__ = [
    "SCHEMA", "NMT_MODELS", "NMT_MEASURES", "NMT_METHODS", "SELECTION_CANDIDATES", "NMTData",
    "validate_config", "load_data", "build_seq2seq_student", "build_seq2seq_measure",
    "translate_split", "bleu_phase", "smoothing_tag", "with_smoothing", "tune_smoothing",
    "select_on_validation", "summarize_bleu", "results_markdown", "run"
]

# The config's keys, their checks and their meaning.
SCHEMA = schema.TRANSLATION

# The candidates of teacher selection -> the method of their students.
SELECTION_CANDIDATES = {"anchor (untaught)": "l2t_dlf_anchor", "taught": "l2t_dlf"}


@dataclasses.dataclass
class NMTData:
  """What :mod:`experiments.phases` reads: train sampler, dev/test arrays."""
  corpus: tr.TranslationCorpus
  tokenizer: tr.SubwordTokenizer
  train: tr.BucketSampler
  dev: dict
  test: dict
  example_batch: dict
  val: Optional[dict] = None  # the validation split that selects (None: none)

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.tgt_vocab_size


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks a translation config before any work.

  See ``experiments/configs/nmt.py``; the keys are those of :data:`SCHEMA`.

  Raises:
    ValueError: naming the offending key, its value and the valid options.
  """
  schema.validate(config, SCHEMA)


def load_data(config: ml_collections.ConfigDict, workdir: str) -> NMTData:
  """Corpus -> subwords (cached in ``<workdir>/spm``) -> sampler and padded arrays.

  Raises:
    FileNotFoundError: the corpus files are missing (the message says where to
      put them).
    InputError: ``config.data.val_split`` names the train, dev or test split, or a
      split that is not there.
  """
  d = config.data
  try:
    corpus = tr.load_translation_corpus(
        d.name,
        data_dir=d.data_dir,
        variant=d.variant,
        src_lang=d.src_lang,
        tgt_lang=d.tgt_lang,
        train_size=d.train_size,
        dev_size=d.dev_size,
        test_size=d.test_size,
        val_split=schema.val_split(config),
        val_size=d.val_size)
  except (ValueError, FileNotFoundError) as e:
    if str(e).startswith("val_split="):  # the validation split: a config problem
      raise InputError(f"config.data.{e}") from None
    raise
  tokenizer = tr.SubwordTokenizer.train_or_load(
      corpus.train, os.path.join(workdir, "spm"), vocab_size=d.vocab_size, joint=d.joint_vocab)
  lengths = dict(max_src_len=d.max_src_len, max_tgt_len=d.max_tgt_len)
  train_arrays = tr.encode_corpus(tokenizer, corpus.train, drop_long=True, **lengths)
  sampler = tr.BucketSampler(
      train_arrays,
      config.student.batch_size,
      seed=config.seed,
      block=d.block,
      pad_multiple=d.pad_multiple)
  encode = lambda split: tr.trim_padding(
      tr.encode_corpus(tokenizer, split, drop_long=False, **lengths), d.pad_multiple)
  dev, test = encode(corpus.dev), encode(corpus.test)
  val = None if corpus.val is None else encode(corpus.val)
  example = {k: v[:2] for k, v in train_arrays.items()}
  return NMTData(corpus, tokenizer, sampler, dev, test, example, val)


def build_seq2seq_student(config: ml_collections.ConfigDict, data: NMTData) -> dlf_jax.Student:
  """A Transformer or LSTM student over the target vocabulary, Adam by default."""
  m, s = config.model, config.student
  common = dict(
      vocab_size=data.vocab_size,
      src_vocab_size=data.tokenizer.src_vocab_size,
      dropout=m.dropout,
      shared_embeddings=m.shared_embeddings)
  if m.name == "transformer":
    model = seq2seq.Transformer(
        d_model=m.d_model,
        num_heads=m.num_heads,
        d_ff=m.d_ff,
        num_layers=m.num_layers,
        max_len=max(config.data.max_src_len, config.data.max_tgt_len),
        **common)
  else:
    model = seq2seq.LSTMSeq2Seq(
        embed_dim=m.embed_dim, hidden=m.hidden, num_layers=m.num_layers, **common)
  tx = dlf_jax.make_optimizer(
      s.optimizer,
      build_schedule(config),
      momentum=s.momentum,
      weight_decay=s.weight_decay,
      b2=s.b2)
  return dlf_jax.Student(
      model=model,
      tx=tx,
      num_classes=data.vocab_size,
      input_keys=("src", "tgt_in"),
      label_key="tgt_out",
      head_path=None)


def build_seq2seq_measure(config: ml_collections.ConfigDict, data: NMTData):
  """Expected sentence BLEU over sampled candidates, or token-level expected accuracy."""
  t = config.teach
  if t.measure == "expected_accuracy":
    return dlf_jax.ExpectedAccuracy()
  return bleu_lib.ExpectedSentenceBLEU(
      detokenize=data.tokenizer.decode_tgt,
      num_samples=t.num_candidates,
      max_len=config.data.max_tgt_len,
      temperature=t.temperature)


def translate_split(model, params, model_state, arrays: dict, *, beam_size: int, alpha: float,
                    max_len: int, batch_size: int) -> np.ndarray:
  """Beam-search translations of ``arrays['src']``: int32 ``[N, max_len]``."""
  fn = _translate_fn(model, max_len, beam_size, alpha)
  variables = {"params": params, **model_state}
  src = arrays["src"]
  batch_size = max(1, min(batch_size, len(src)))
  out = []
  for i in range(0, len(src), batch_size):
    chunk = src[i:i + batch_size]
    n = len(chunk)
    if n < batch_size:  # one shape for jit
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, 0)])
    out.append(np.asarray(fn(variables, jnp.asarray(chunk)))[:n])
  return np.concatenate(out)


@functools.lru_cache(maxsize=8)
def _translate_fn(model, max_len: int, beam_size: int, alpha: float):
  """One jitted beam search per (model, settings).

  The test and validation splits of every student share its compilation.
  """
  return jax.jit(lambda v, src: decoding.translate(
      model, v, src, max_len=max_len, beam_size=beam_size, alpha=alpha))


def bleu_phase(config: ml_collections.ConfigDict,
               data: NMTData,
               student: dlf_jax.Student,
               method: str,
               seed: int,
               workdir: str,
               split: str = "test",
               tag: Optional[str] = None) -> dict:
  """Restores the finished student, translates ``split`` and scores its BLEU (cached).

  Args:
    split: ``'test'`` (the final table; ``runs/<tag>_seed<s>.bleu.json``) or
      ``'val'`` (the validation split that selects;
      ``runs/<tag>_seed<s>.val.bleu.json``).
    tag: the student's file names (:func:`experiments.phases.student_phase`);
      default ``method``.

  Raises:
    ValueError: ``split='val'`` without a validation split (``config.data.val_split``).
  """
  if split not in ("test", "val") or (split == "val" and data.val is None):
    raise ValueError(f"bleu_phase: split={split!r} is not available; use 'test', or 'val' "
                     "with config.data.val_split set.")
  tag = tag or method
  suffix = "" if split == "test" else f".{split}"
  path = os.path.join(workdir, "runs", f"{tag}_seed{seed}{suffix}.bleu.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  ckpt = Checkpoints(os.path.join(workdir, "checkpoints", tag, f"seed_{seed}"))
  try:
    template = student.init(jax.random.PRNGKey(seed), data.example_batch)
    state = ckpt.restore_state(ckpt.latest_step(), template)
  finally:
    ckpt.close()
  t0 = time.time()
  e = config.eval
  arrays, text = {"test": (data.test, data.corpus.test), "val": (data.val, data.corpus.val)}[split]
  ids = translate_split(
      student.model,
      state.params,
      state.model_state,
      arrays,
      beam_size=e.beam_size,
      alpha=e.alpha,
      max_len=config.data.max_tgt_len,
      batch_size=e.batch_size)
  hyps = [data.tokenizer.decode_tgt(row) for row in ids]
  refs = list(text.tgt)
  scores = bleu_lib.corpus_bleu(
      hyps, refs, lowercase_tokenized=e.lowercase_tokenized, lang=config.data.tgt_lang)
  out_dir = os.path.join(workdir, "translations")
  io.write_text(os.path.join(out_dir, f"{tag}_seed{seed}.{split}.hyp.txt"), "\n".join(hyps) + "\n")
  io.write_text(os.path.join(out_dir, f"{tag}_seed{seed}.{split}.ref.txt"), "\n".join(refs) + "\n")
  result = {
      "method": method,
      "seed": seed,
      "split": split,
      "step": int(state.step),
      "beam_size": e.beam_size,
      "alpha": e.alpha,
      "decode_seconds": time.time() - t0,
      **scores
  }
  logging.info("%s seed %d, %s: sacreBLEU %.2f (%s), tokenised BLEU %s", method, seed, split,
               scores["bleu"], scores["signature"],
               "n/a" if scores["tokenized_bleu"] is None else f"{scores['tokenized_bleu']:.2f}")
  io.write_json(path, result)
  return result


def smoothing_tag(eps: float) -> str:
  """The file tag of a label-smoothing student with ``eps`` (``label_smoothing_eps0.1``)."""
  return f"label_smoothing_eps{eps:g}"


def with_smoothing(config: ml_collections.ConfigDict, eps: float) -> ml_collections.ConfigDict:
  """A copy of ``config`` whose label smoothing is ``eps``.

  That is the baseline's and, when the teacher is anchored at label smoothing, the
  anchor's.
  """
  config = copy.deepcopy(config)
  config.baselines.smoothing = float(eps)
  if config.teacher.anchor == "label_smoothing":
    config.teacher.anchor_smoothing = float(eps)
  return config


def tune_smoothing(config: ml_collections.ConfigDict,
                   data: NMTData,
                   student: dlf_jax.Student,
                   workdir: str,
                   *,
                   on_checkpoint: Optional[phases.CheckpointHook] = None) -> Optional[dict]:
  """Label smoothing's eps, chosen on the validation split (None without a grid).

  One label-smoothing student per eps of ``config.baselines.smoothing_grid``, seed
  ``config.seed``, each translating the validation split; the highest
  validation BLEU wins (a tie: the smaller eps). The test split plays no part. The
  chosen eps's student *is* the reported label-smoothing student of that seed (its
  files are tagged by :func:`smoothing_tag`), so tuning costs ``len(grid) - 1``
  extra students. Cached in ``tuning.json``.

  Returns:
    dict: ``chosen`` (eps), ``val_bleu`` (``'eps'`` -> sacreBLEU), ``seed``, or None.
  """
  grid = tuple(config.baselines.smoothing_grid)
  if not grid:
    return None
  path = os.path.join(workdir, "tuning.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  val_bleu = {}
  for eps in sorted(grid):
    eps_config = with_smoothing(config, eps)
    phases.student_phase(
        eps_config,
        data,
        student,
        "label_smoothing",
        config.seed,
        workdir,
        on_checkpoint=on_checkpoint,
        tag=smoothing_tag(eps))
    val_bleu[eps] = bleu_phase(
        eps_config,
        data,
        student,
        "label_smoothing",
        config.seed,
        workdir,
        split="val",
        tag=smoothing_tag(eps))["bleu"]
    logging.info("tune: label smoothing eps %g -> validation BLEU %.2f", eps, val_bleu[eps])
  chosen = select(val_bleu, val_bleu, best="max")  # the smaller eps on a tie
  out = {
      "chosen": chosen,
      "val_bleu": {
          f"{e:g}": b for e, b in val_bleu.items()
      },
      "seed": config.seed
  }
  io.write_json(path, out)
  return out


def select_on_validation(val_bleus: list, workdir: str) -> dict:
  """L2T-DLF's teacher: the taught one or its untaught anchor, by mean validation BLEU.

  The candidates' students (methods ``l2t_dlf`` and ``l2t_dlf_anchor``, same seeds)
  have translated the validation split; the test split plays no part. A tie goes to
  the untaught anchor. Writes ``selection.json``.

  Args:
    val_bleus: :func:`bleu_phase` records of ``split='val'``.

  Returns:
    dict: ``chosen`` (``'anchor (untaught)'`` | ``'taught'``), ``method`` (its
    students' method), ``val_bleu`` (candidate -> mean sacreBLEU) and ``seeds``.

  Raises:
    ValueError: a candidate without validation BLEU.
  """
  means = {}
  for name, method in SELECTION_CANDIDATES.items():
    scores = [r["bleu"] for r in val_bleus if r["method"] == method]
    if not scores:
      raise ValueError(f"select_on_validation: no validation BLEU for {method!r}.")
    means[name] = float(np.mean(scores))
  chosen = select(means, means, best="max")  # the first (the anchor) on a tie
  out = {
      "chosen": chosen,
      "method": SELECTION_CANDIDATES[chosen],
      "val_bleu": means,
      "seeds": sorted({r["seed"] for r in val_bleus})
  }
  logging.info("select: %s", ", ".join(f"{k} -> validation BLEU {v:.2f}" for k, v in means.items()))
  io.write_json(os.path.join(workdir, "selection.json"), out)
  return out


def summarize_bleu(bleus: list, runs: list, methods, val_bleus: tuple = ()) -> dict:
  """Per method: test BLEU, tokenised BLEU, validation BLEU and token accuracy.

  Validation BLEU if any; test token accuracy; each as mean, std over seeds.
  """
  out = {}
  for m in methods:
    b = [r for r in bleus if r["method"] == m]
    s = [r for r in runs if r["method"] == m]
    stats = lambda key, rows: summaries.mean_std([r[key] for r in rows if r[key] is not None])
    out[m] = {
        "bleu": stats("bleu", b),
        "tokenized_bleu": stats("tokenized_bleu", b),
        "val_bleu": (stats("bleu", [r for r in val_bleus if r["method"] == m]) if any(
            r["method"] == m for r in val_bleus) else (None, None)),
        "token_accuracy": summaries.mean_std([100 - r["test_error"] for r in s]),
        "seconds": float(sum(r["seconds"] for r in s)),
        "seeds": len(b)
    }
  return out


def results_markdown(results: dict) -> str:
  """The BLEU table of one translation experiment (markdown)."""
  lines = [
      f"# {results['data']['name']} {results['data']['pair']}: "
      f"{results['config']['model']['name']} student", "", results["data"]["notes"], "",
      "| method | sacreBLEU (detok.) | tokenised BLEU | validation sacreBLEU | "
      "test token acc. % | seeds | train time |", "|---|---|---|---|---|---|---|"
  ]
  for m, r in results["methods"].items():
    cell = lambda v, r=r: ("n/a" if v[0] is None or np.isnan(v[0]) else summaries.pm(
        v[0], v[1], r["seeds"]))
    lines.append(f"| {summaries.METHOD_NAMES.get(m, m)} | {cell(r['bleu'])} | "
                 f"{cell(r['tokenized_bleu'])} | {cell(r.get('val_bleu', (None, None)))} | "
                 f"{cell(r['token_accuracy'])} | {r['seeds']} | {r['seconds'] / 60:.1f} min |")
  selection = results.get("selection")
  if selection:
    lines += [
        "", f"Teacher selected on the validation split ({results['data']['val_split']}, "
        f"{results['data']['val']} pairs; the test split plays no part): "
        f"**{selection['chosen']}** (" +
        ", ".join(f"{k}: {v:.2f}" for k, v in selection["val_bleu"].items()) +
        f"): L2T-DLF's result is the row "
        f"\"{summaries.METHOD_NAMES[selection['method']]}\"."
    ]
  smoothing = results.get("teacher_smoothing")
  if smoothing:
    lines += [
        "", f"The taught teacher's per-token eps along the first L2T-DLF student's run "
        f"(anchor {smoothing['anchor']:g}; steps {smoothing['steps']}): mean over "
        f"training tokens " + ", ".join(f"{v:.4f}" for v in smoothing["token_mean"]) +
        "; at the end, by token-frequency quartile (rarest first): " +
        ", ".join(f"{v:.4f}" for v in smoothing["by_frequency"]) + " (plots/token_smoothing.png)."
    ]
  tuning = results.get("tuning")
  if tuning:
    lines += [
        "", f"Label smoothing's eps was tuned on the validation split (one student per "
        f"eps, seed {tuning['seed']}): **eps = {tuning['chosen']:g}** (" +
        ", ".join(f"eps {k}: {v:.2f}" for k, v in tuning["val_bleu"].items()) +
        "); the label-smoothing baseline" + (" and the teacher's anchor use it." if results.get(
            "teach", {}).get("num_updates") else " uses it.")
    ]
  if results["data"].get("pretokenized"):
    lines += [
        "", "Note: this corpus is already tokenised (and lowercased); the sacreBLEU "
        "column is computed on that text, not on detokenised output."
    ]
  lines += [
      "", f"sacreBLEU signature: `{results['signature']}`",
      f"Tokenised BLEU: `{results['tokenized_signature']}` (the IWSLT14 convention; "
      "not comparable with sacreBLEU).",
      f"Beam {results['config']['eval']['beam_size']}, length penalty alpha "
      f"{results['config']['eval']['alpha']}."
  ]
  return "\n".join(lines) + "\n"


def run(config: ml_collections.ConfigDict,
        workdir: str,
        *,
        on_checkpoint: Optional[phases.CheckpointHook] = None) -> dict:
  """Runs (or resumes) one translation experiment; writes ``results.{json,md}``.

  Args:
    config: a translation config (``experiments/configs/{multi30k,iwslt14}_*.py``).
    workdir: output directory; re-running with the same config resumes.
    on_checkpoint: as in :func:`experiments.tasks.classification.run`.

  Returns:
    The ``results.json`` content.

  Raises:
    ValueError: an invalid config value; a workdir of another experiment
      (:class:`experiments.workdir.WorkdirConfigError`).
    FileNotFoundError: the corpus is missing.
  """
  validate_config(config)
  workdir = make_workdir(workdir)
  t_start = time.time()
  data = load_data(config, workdir)  # fails early on missing data, before config.json
  with claim_workdir(config, workdir):  # a run refused before it trains un-pins its config
    return _run(config, workdir, data, t_start, on_checkpoint)


def _run(config: ml_collections.ConfigDict, workdir: str, data: NMTData, t_start: float,
         on_checkpoint: Optional[phases.CheckpointHook]) -> dict:
  """The body of :func:`run` once the corpus is loaded and the workdir claimed."""
  logging.info(
      "%s %s-%s from %s: train %d pairs (%d within the length limits), dev %d, "
      "test %d; vocabulary %d", data.corpus.name, config.data.src_lang, config.data.tgt_lang,
      data.corpus.source, len(data.corpus.train), data.train.num_examples, len(data.corpus.dev),
      len(data.corpus.test), data.vocab_size)
  student = build_seq2seq_student(config, data)
  tuning = tune_smoothing(config, data, student, workdir, on_checkpoint=on_checkpoint)
  tags = {}
  if tuning is not None:  # the baseline and the teacher's anchor use the tuned eps
    config = with_smoothing(config, tuning["chosen"])
    tags["label_smoothing"] = smoothing_tag(tuning["chosen"])
  teacher = build_teacher(config, data.vocab_size)
  taught = phases.maybe_teach(
      config,
      data,
      student,
      teacher,
      workdir,
      on_checkpoint=on_checkpoint,
      measure=build_seq2seq_measure(config, data))
  methods, thetas = _student_methods(config, teacher, taught)
  runs, bleus, val_bleus = _students(config, data, student, teacher, workdir, methods, thetas, tags,
                                     on_checkpoint)
  selection = None
  if "l2t_dlf_anchor" in methods:
    selection = select_on_validation(val_bleus, workdir)
  results = _results(config, data, runs, bleus, val_bleus, taught, selection, t_start)
  results["tuning"] = tuning
  results["teacher_smoothing"] = _teacher_smoothing(config, data, teacher, thetas, runs, workdir)
  teach_history = [] if taught is None else taught["history"]
  rows = summaries.metric_rows(runs, teach_history, config.seed)
  rows += [("student", b["method"], b["seed"], b["step"], f"{b.get('split', 'test')}_{key}",
            float(b[key]))
           for b in bleus + val_bleus
           for key in ("bleu", "tokenized_bleu")
           if b[key] is not None]
  markdown = results_markdown(results)
  summaries.write_summary(workdir, results, markdown, rows)
  plots.write_plots(os.path.join(workdir, "plots"), runs=runs, teach_history=teach_history)
  print(markdown)
  return results


def _students(config, data: NMTData, student: dlf_jax.Student, teacher: dlf_jax.Teacher,
              workdir: str, methods: tuple, thetas: dict, tags: dict,
              on_checkpoint: Optional[phases.CheckpointHook]) -> tuple:
  """Trains (or reads back) every student, then decodes its test and validation splits.

  Returns ``(runs, test BLEU records, validation BLEU records)``.
  """
  bleus, val_bleus = [], []

  def decode(method: str, seed: int) -> None:
    tag = tags.get(method)
    bleus.append(bleu_phase(config, data, student, method, seed, workdir, tag=tag))
    if data.val is not None:
      val_bleus.append(
          bleu_phase(config, data, student, method, seed, workdir, split="val", tag=tag))

  runs = phases.student_phases(
      config,
      data,
      student,
      workdir,
      teacher=teacher,
      on_checkpoint=on_checkpoint,
      after=decode,
      methods=methods,
      thetas=thetas,
      tags=tags)
  return runs, bleus, val_bleus


def _teacher_smoothing(config: ml_collections.ConfigDict, data: NMTData, teacher: dlf_jax.Teacher,
                       thetas: dict, runs: list, workdir: str) -> Optional[dict]:
  """A soft-target teacher's per-token eps along the first L2T-DLF student's run.

  Against token frequency: :func:`dlf_jax.analysis.smoothing_by_frequency`, plotted
  in ``plots/token_smoothing.png``. None for other teachers or without that student.
  """
  history = [r["history"] for r in runs if r["method"] == "l2t_dlf"]
  if not schema.has_soft_targets(config.teacher.parameterisation) or not history:
    return None
  snaps = analysis.phi_snapshots(
      teacher,
      thetas["l2t_dlf"],
      history[0],
      num=5,
      first_step=min(config.teach.pretrain_steps, config.student.num_steps))
  counts = np.bincount(data.train.arrays["tgt_out"].ravel(), minlength=data.vocab_size)
  counts[PAD_ID] = 0
  anchor = (config.teacher.anchor_smoothing if config.teacher.anchor == "label_smoothing" else 0.0)
  plots.plot_smoothing_by_frequency(snaps, counts, anchor,
                                    os.path.join(workdir, "plots", "token_smoothing.png"))
  return {"anchor": anchor, **analysis.smoothing_by_frequency(snaps, counts)}


def _student_methods(config: ml_collections.ConfigDict, teacher: dlf_jax.Teacher,
                     taught: Optional[dict]) -> tuple:
  """``(methods, thetas)``: ``config.methods``, plus the untaught anchor's when selecting.

  The untaught anchor's students are added when ``teach.select`` (the control that
  selection compares the taught teacher with).
  """
  if taught is None:
    return tuple(config.methods), {}
  anchor = bool(config.teach.select)
  methods = tuple(config.methods) + (("l2t_dlf_anchor",) if anchor else ())
  return methods, phases.teacher_thetas(config, teacher, taught, with_anchor=anchor)


def _results(config: ml_collections.ConfigDict, data: NMTData, runs: list, bleus: list,
             val_bleus: list, taught: Optional[dict], selection: Optional[dict],
             t_start: float) -> dict:
  """The ``results.json`` content of one translation experiment."""
  return {
      "config":
          config_json(config),
      "data": {
          "name": data.corpus.name,
          "pair": f"{config.data.src_lang}->"
                  f"{config.data.tgt_lang}",
          "notes": data.corpus.notes,
          "train": len(data.corpus.train),
          "train_used": data.train.num_examples,
          "dev": len(data.corpus.dev),
          "test": len(data.corpus.test),
          "val": 0 if data.corpus.val is None else len(data.corpus.val),
          "val_split": schema.val_split(config),
          "vocab_size": data.vocab_size,
          "source": data.corpus.source,
          "pretokenized": config.data.name == "iwslt14" or config.data.variant == "tok"
      },
      "methods":
          summarize_bleu(bleus, runs, list(dict.fromkeys(r["method"] for r in runs)), val_bleus),
      "bleu":
          bleus,
      "val_bleu":
          val_bleus,
      "selection":
          selection,
      "runs": [{
          k: v for k, v in r.items() if k != "history"
      } for r in runs],
      "signature":
          bleus[0]["signature"],
      "tokenized_signature":
          bleus[0]["tokenized_signature"],
      "teach":
          summaries.teach_summary([] if taught is None else taught["history"]),
      "wall_seconds": {
          "teach": None if taught is None else taught["seconds"],
          "session": time.time() - t_start
      },
      "environment":
          summaries.environment(devices=False),
  }
