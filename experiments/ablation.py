r"""The teaching-efficacy protocol: an ablation from the paper's recipe to ours, many seeds.

Splits (all fixed by ``config.data.seed``, disjoint by construction and checked):

* ``train``: what every student trains on (the config's training split minus
  ``--val_size`` examples);
* ``dev``: the teacher's reward (the config's dev split, carved from the
  training data); ``teach.dev_sample_size`` redraws a sample of it per outer step;
* ``val``: a second held-out split carved from ``train`` that **selects**: the
  label-smoothing ``eps`` of the baseline (and of the teacher's anchor), and, for
  variants marked ``select``, the final teacher among its teaching checkpoints
  with the untaught anchor as a candidate (one fresh student per candidate);
* ``test``: the official test split, read once per final student, after training,
  for the table. Nothing is chosen on it.

``config.data.noise`` and ``config.data.imbalance`` apply to ``train`` only, after
dev and val are carved (:func:`prepare_splits`, as
:mod:`experiments.tasks.classification`): dev and val stay clean, and
``label_noise.json`` records what the labels went through.
With a long-tailed training split, every selection (eps, checkpoints) is by the
balanced validation error and the table leads with the balanced test error
(:func:`experiments.splits.headline_metric`), the plain test error beside it.

Every row is a cumulative change of the config (:data:`VARIANTS`); each taught
row is taught once (teacher seed ``config.seed``) and then ``--seeds`` fresh
students are trained with the frozen teacher, as in
:mod:`experiments.tasks.classification` (a cross-entropy warm start of
``teach.pretrain_steps``, then the teacher).
``*_untaught`` rows are controls: the same students with the untaught anchor
(no outer step), so that what teaching adds is separated from what the anchor
gives.
Finished students and teachers are cached in the workdir, so a re-run resumes
(an interrupted teaching run restarts that variant's teaching).

Command (MNIST-9k MLP; ``--variants`` picks rows, ``--seeds`` the students)::

  python -m experiments.ablation --config=experiments/configs/mnist_mlp.py \
    --workdir=runs/ablation_mnist --seeds=5

Writes ``ablation.json`` and ``ablation.md`` (the table: test error mean +- std
over seeds, validation error, teaching wall time) and ``plots/ablation.png``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Optional

from absl import app, flags, logging
import jax
import ml_collections
import numpy as np
from flax import serialization
from ml_collections import config_flags

import dlf_jax
from dlf_jax import unroll as unroll_lib
from dlf_jax.data.batching import make_eval_batches
from dlf_jax.analysis import w_snapshots, with_teacher_state
from experiments import builders, io, phases, plots, schema, summaries
from experiments import splits as splits_lib
from experiments.selection import select

__all__ = [
    "VARIANTS", "PREVIOUS_DEFAULT", "BASELINE_ROWS", "teaching_key", "apply_overrides",
    "prepare_splits", "run"
]

# name -> (what the row adds, config overrides applied on top of the previous row, options).
# ``anchor_smoothing='tuned'`` takes the label-smoothing eps selected on the validation split.
# The chain starts from the previous default whatever the config file's recipe is (the
# ``paper`` row then overrides the family keys through the recipe).
PREVIOUS_DEFAULT = {
    "teacher.parameterisation": "diagonal",
    "teacher.link": "sigmoid",
    "teacher.anchor": "cross_entropy",
    "teacher.anchor_smoothing": 0.1,
    "teach.measure": "expected_accuracy",
    "teach.select": False
}
VARIANTS = {
    "paper": ("Eqn. (2) as written: full W, sigmoid link, CE anchor, expected dev accuracy", {
        **PREVIOUS_DEFAULT, "teacher.recipe": "paper"
    }, {}),
    "diagonal": ("diagonal W (the previous default)", {
        "teacher.recipe": "config",
        "teacher.parameterisation": "diagonal",
        "teacher.link": "sigmoid",
        "teach.measure": "expected_accuracy"
    }, {}),
    "identity": ("+ identity link (W = I is exactly CE)", {
        "teacher.link": "identity"
    }, {}),
    "soft_target": ("+ soft-target W (class-conditional q on the simplex), CE anchor", {
        "teacher.parameterisation": "soft_target",
        "teacher.target": "class"
    }, {}),
    "soft_target_untaught": ("control: the soft_target row's anchor, untaught (eps = 0.001)", {}, {
        "untaught": True
    }),
    "ls_anchor": ("+ label-smoothing anchor (eps tuned on validation)", {
        "teacher.anchor": "label_smoothing",
        "teacher.anchor_smoothing": "tuned"
    }, {}),
    "ls_untaught": ("control: the label-smoothing anchor, untaught (CE warm start, then LS)", {}, {
        "untaught": True
    }),
    "dev_ce": ("+ dev cross-entropy reward", {
        "teach.measure": "cross_entropy"
    }, {}),
    "full_horizon": ("+ full horizon: T = the whole run after the warm start (checkpointed)", {
        "teach.unroll_steps": "full",
        "teach.estimator.reverse.memory": "checkpointed",
        "teach.segments_per_episode": None,
        "teach.num_episodes": 8
    }, {}),
    "recipe": ("the configs' default recipe in one row: identity link, soft-target W, "
               "tuned LS anchor, dev cross-entropy", {
                   "teacher.link": "identity",
                   "teacher.parameterisation": "soft_target",
                   "teacher.target": "class",
                   "teacher.anchor": "label_smoothing",
                   "teacher.anchor_smoothing": "tuned",
                   "teach.measure": "cross_entropy"
               }, {}),
    "select":
        ("+ validation selection among the teaching checkpoints and the untaught anchor", {}, {
            "select": True
        }),
    "smoothed_error": ("full_horizon with the demo's sigmoid-smoothed dev error as the reward", {
        "teach.measure": "sigmoid_error"
    }, {}),
}
BASELINE_ROWS = ("cross_entropy", "label_smoothing", "large_margin")
LS_GRID = (0.05, 0.1, 0.2, 0.3)
TUNE_SEEDS = (1000, 1001)  # students that select (never the final seeds), by default

FLAGS = flags.FLAGS

# Config keys that do not change what a teacher learns (left out of its cache key).
_NOT_TEACHING = ("baselines", "methods", "num_seeds", "progress", "data.val_size", "teach.select")


def teaching_key(config) -> str:
  """A hash of everything in ``config`` that determines the taught teacher."""
  tree = json.loads(config.to_json(sort_keys=True))
  for key in _NOT_TEACHING:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
      node = node.get(part, {})
    node.pop(leaf, None)
  return hashlib.sha1(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]


def _tuned_smoothing(method: str) -> bool:
  """True if the baseline ``method`` takes ``baselines.smoothing`` (its eps is tuned)."""
  return "smoothing" in {f.name for f in dataclasses.fields(dlf_jax.losses.BASELINES[method])}


def apply_overrides(config, overrides: dict, *, tuned_eps: float):
  """A copy of ``config`` with dotted-key overrides (``'tuned'``/``'full'`` resolved).

  ``teach.segments_per_episode`` is kept as the config says: None is resolved by the
  teaching schedule (:meth:`dlf_jax.Schedule.segments`), an explicit value is honoured.
  """
  out = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    *parents, name = key.split(".")
    if value == "tuned":
      value = tuned_eps
    elif value == "full":
      value = out.student.num_steps - out.teach.pretrain_steps
    schema.get(out, ".".join(parents))[name] = value
  schema.validate(out, schema.CLASSIFICATION)
  return out


class Runner:
  """Trains and caches students and teachers of one ablation workdir."""

  def __init__(self, config, workdir: str, splits: dict, num_classes: int, tune_seeds=TUNE_SEEDS):
    self.config, self.workdir, self.splits = config, workdir, splits
    self.tune_seeds = tuple(tune_seeds)
    self.num_classes = num_classes
    self.student = builders.build_student(config, num_classes)
    self._eval = jax.jit(lambda p, m, b: unroll_lib.evaluate(self.student, p, m, b))
    self._eval_batches = {
        k: make_eval_batches(splits[k], config.student.eval_batch_size) for k in ("val", "test")
    }
    os.makedirs(os.path.join(workdir, "cache"), exist_ok=True)

  def _cached(self, name: str, fn):
    path = os.path.join(self.workdir, "cache", name + ".json")
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)
    out = fn()
    io.write_json(path, out)
    return out

  def student_run(self,
                  tag: str,
                  seed: int,
                  loss,
                  theta=None,
                  *,
                  warm_start: Optional[dlf_jax.WarmStart] = None,
                  config=None,
                  read_test: bool = True) -> dict:
    """One fresh student after ``warm_start`` (a taught student's :class:`~dlf_jax.WarmStart`).

    Val error always, test error only if ``read_test``.
    """
    config = config or self.config
    s = config.student

    def fn():
      t0 = time.time()
      state = dlf_jax.train_student(
          self.student,
          loss,
          self.splits["train"],
          theta=theta,
          num_steps=s.num_steps,
          batch_size=s.batch_size,
          seed=seed,
          eval_every=s.eval_every,
          dev=self.splits["dev"],
          eval_batch_size=s.eval_batch_size,
          warm_start=warm_start,
          progress=False).state
      out = {"tag": tag, "seed": seed, "seconds": time.time() - t0}
      names = ("val", "test") if read_test else ("val",)
      metric = splits_lib.headline_metric(config)
      for name in names:
        metrics = self._eval(state.params, state.model_state, self._eval_batches[name])
        acc = float(metrics["accuracy"])
        out[f"{name}_error"] = 100.0 * (1.0 - acc)
        if metric != "accuracy":  # a long tail: the balanced error too (it selects)
          out[summaries.error_key(name, metric)] = 100.0 * (1.0 - float(metrics[metric]))
      return out

    return self._cached(f"{tag}_seed{seed}" + ("" if read_test else "_val"), fn)

  def baseline(self,
               method: str,
               seed: int,
               smoothing: float = 0.1,
               read_test: bool = True) -> dict:
    config = ml_collections.ConfigDict(self.config.to_dict())
    config.baselines.smoothing = smoothing
    tag = f"{method}_{smoothing:g}" if _tuned_smoothing(method) else method
    return self.student_run(
        tag, seed, builders.build_baseline(config, method), config=config, read_test=read_test)

  def untaught(self, config) -> dict:
    """The anchor as a frozen teacher (no outer step): the control for a taught row."""
    teacher = builders.build_teacher(config, self.num_classes)
    theta0 = phases.untaught_anchor(config, teacher)
    return {"teacher": teacher, "snapshots": [theta0], "updates": [0], "seconds": 0.0}

  def teach(self, config) -> dict:
    """Teaches (or reads back) a teacher for ``config``; returns theta snapshots, wall time.

    Teachers are cached by a hash of the config, so rows with the same teaching
    config (e.g. ``select``) reuse the teacher.
    """
    key = teaching_key(config)
    path = os.path.join(self.workdir, "cache", f"teacher_{key}.msgpack")
    teacher = builders.build_teacher(config, self.num_classes)
    template = teacher.init(jax.random.PRNGKey(0))
    meta_path = path + ".json"
    if os.path.exists(path) and os.path.exists(meta_path):
      with open(path, "rb") as f:
        snaps = serialization.from_bytes({"s": [template] * 3}, f.read())["s"]
      with open(meta_path) as f:
        meta = json.load(f)
      return {"teacher": teacher, "snapshots": snaps, **meta}
    args = builders.build_teach_args(config, self.student)
    total = args["schedule"].num_updates(teacher.total_steps)
    keep = {0: None, total // 2: None, total: None}
    theta0 = phases.untaught_anchor(config, teacher)
    keep[0] = theta0
    history = []

    def callback(state, record):
      history.append(record)
      if state.update in keep:
        keep[state.update] = jax.device_get(state.theta)

    t0 = time.time()
    dlf_jax.teach(
        self.student,
        teacher,
        self.splits["train"],
        self.splits["dev"],
        measure=builders.build_measure(config),
        callback=callback,
        **args)
    seconds = time.time() - t0
    snaps = [keep[k] for k in sorted(keep)]
    with open(path, "wb") as f:
      f.write(serialization.to_bytes({"s": snaps}))
    meta = {
        "seconds": seconds,
        "updates": sorted(keep),
        "history": [{
            k: v for k, v in r.items() if isinstance(v, (int, float))
        } for r in history]
    }
    io.write_json(meta_path, meta)
    return {"teacher": teacher, "snapshots": snaps, **meta}


def prepare_splits(config,
                   val_size: int,
                   workdir: Optional[str] = None) -> tuple[dict, int, Optional[dict]]:
  """The ablation's four splits, as :mod:`experiments.tasks.classification` prepares them.

  Loads ``config.data``, carves ``val_size`` validation examples from the training
  split (seeded by ``config.data.seed``; checked disjoint from dev and test), then
  applies ``config.data.imbalance`` and ``config.data.noise`` to the training split
  only (:func:`experiments.splits.prepare`): dev and val stay clean, test as loaded.

  Args:
    config: the experiment config.
    val_size: validation examples (``--val_size``; replaces ``config.data.val_size``).
    workdir: if given and the labels were touched, ``label_noise.json`` is written there.

  Returns:
    ``(splits, num_classes, labels)``: ``splits`` maps ``train``, ``dev``, ``val``,
    ``test`` to ``{'x', 'y'}`` dicts (``train``'s ``y``: the labels trained on);
    ``labels`` is :func:`experiments.splits.label_record` (None with both keys off).

  Raises:
    InputError: as :func:`experiments.splits.prepare` (sizes, labels, overlaps, a
      long tail or noise the data cannot take).
    FileNotFoundError: the dataset is not available.
  """
  data, val = splits_lib.prepare(config, splits_lib.load_data(config), val_size=val_size)
  splits = {
      name: {
          "x": split.x,
          "y": split.y
      } for name, split in (("train", data.train), ("dev", data.dev), ("val", val), ("test",
                                                                                    data.test))
  }
  labels = splits_lib.label_record(config, data, val)
  if labels is not None and workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    io.write_json(os.path.join(workdir, "label_noise.json"), labels)
  return splits, data.num_classes, labels


def _row(name: str,
         description: str,
         results: list,
         extra: Optional[dict] = None,
         metric: str = "accuracy") -> dict:
  """One table row: test and validation error (mean, std over seeds) of ``results``.

  With the balanced accuracy as ``metric`` also ``test_balanced_error``,
  ``test_balanced_std``, ``val_balanced_error``, ``val_balanced_std`` and
  ``test_balanced_errors``.
  """
  test = summaries.mean_std([r["test_error"] for r in results])
  val = summaries.mean_std([r["val_error"] for r in results])
  logging.info("%s: test %.2f +- %.2f", name, *test)
  row = {
      "name": name,
      "description": description,
      "test_error": test[0],
      "test_std": test[1],
      "val_error": val[0],
      "val_std": val[1],
      "seeds": [r["seed"] for r in results],
      "test_errors": [r["test_error"] for r in results]
  }
  if metric != "accuracy":
    for split in ("test", "val"):
      key = summaries.error_key(split, metric)
      row[key], row[f"{split}_balanced_std"] = summaries.mean_std([r[key] for r in results])
    row["test_balanced_errors"] = [r["test_balanced_error"] for r in results]
    logging.info("%s: balanced test %.2f +- %.2f", name, row["test_balanced_error"],
                 row["test_balanced_std"])
  return {**row, **(extra or {})}


def _variant_row(runner: Runner, name: str, cfg, final_seeds: list) -> tuple[dict, dict]:
  """Teaches (or not: ``untaught``) the row ``name`` of config ``cfg``.

  Selects among its checkpoints where the row says so, trains the final students;
  returns the row and the taught teacher (``teacher``, ``snapshots``, ...) with the
  chosen ``theta``.
  """
  description, _, options = VARIANTS[name]
  taught = runner.untaught(cfg) if options.get("untaught") else runner.teach(cfg)
  warm_start = builders.build_teach_schedule(cfg).warm_start
  tag = f"{name}_{teaching_key(cfg)}"  # cached students belong to this row's config only
  chosen, selection = len(taught["snapshots"]) - 1, None
  metric = splits_lib.headline_metric(cfg)
  if options.get("select"):
    # One fresh student per candidate; the lowest validation (balanced, for a long tail)
    # error wins.
    selection = {}
    for i, theta in enumerate(taught["snapshots"]):
      errs = [
          runner.student_run(
              f"{tag}_cand{i}",
              s,
              taught["teacher"],
              theta,
              warm_start=warm_start,
              config=cfg,
              read_test=False)[summaries.error_key("val", metric)] for s in runner.tune_seeds
      ]
      selection[taught["updates"][i]] = float(np.mean(errs))
    # A tie (errors are multiples of 100 / val_size) goes to the earlier checkpoint.
    # (np.round, as this selection always rounded: see experiments.selection).
    chosen = select(
        range(len(taught["snapshots"])),
        lambda i: selection[taught["updates"][i]],
        rounding="numpy")
  theta = taught["snapshots"][chosen]
  results = [
      runner.student_run(
          f"{tag}_u{taught['updates'][chosen]}",
          s,
          taught["teacher"],
          theta,
          warm_start=warm_start,
          config=cfg) for s in final_seeds
  ]
  extra = {
      "teach_seconds": taught["seconds"],
      "outer_steps": taught["updates"][-1],
      "selected_update": taught["updates"][chosen],
      "selection": selection,
      "unroll_steps": cfg.teach.unroll_steps,
      "measure": cfg.teach.measure
  }
  return _row(name, description, results, extra, metric), dict(taught, theta=theta)


def run(config,
        workdir: str,
        variants,
        seeds: int,
        val_size: int,
        baselines=BASELINE_ROWS,
        ls_grid=LS_GRID,
        tune_seeds=TUNE_SEEDS) -> dict:
  """Runs the ablation (module docstring) and writes ``ablation.{json,md}`` and a plot.

  ``tune_seeds``: the students (seeds, never the final ones) that select label
  smoothing's eps and, for ``select`` rows, the teacher checkpoint.
  """
  schema.validate(config, schema.CLASSIFICATION)
  os.makedirs(workdir, exist_ok=True)
  splits, num_classes, labels = prepare_splits(config, val_size, workdir)
  metric = splits_lib.headline_metric(config)  # 'balanced_accuracy' for a long tail
  val_key = summaries.error_key("val", metric)
  runner = Runner(config, workdir, splits, num_classes, tune_seeds)
  final_seeds = [config.seed + i for i in range(seeds)]
  rows, t_start = [], time.time()

  tuning, tuned_eps = _tune_label_smoothing(runner, ls_grid, val_key)
  rows += _baseline_rows(runner, baselines, tuned_eps, final_seeds, metric)

  # The chain starts from the previous default whatever the config file's recipe is, so a
  # row adds its ingredient to the rows above it and never to the file's own recipe.
  cfg, last = apply_overrides(config, PREVIOUS_DEFAULT, tuned_eps=tuned_eps), None
  for name in variants:
    cfg = apply_overrides(cfg, VARIANTS[name][1], tuned_eps=tuned_eps)
    row, taught = _variant_row(runner, name, cfg, final_seeds)
    rows.append(row)
    if not VARIANTS[name][2].get("untaught"):
      last = (name, taught["teacher"], taught["theta"], cfg)

  if variants:
    plot_teacher(runner, *last, workdir)
  out = {
      "config": json.loads(config.to_json_best_effort()),
      "val_size": val_size,
      "splits": {
          k: int(len(v["y"])) for k, v in splits.items()
      },
      "label_smoothing_tuning": {
          f"{k:g}": v for k, v in tuning.items()
      },
      "tuned_eps": tuned_eps,
      "tune_seeds": list(runner.tune_seeds),
      "rows": rows,
      "seconds": time.time() - t_start
  }
  if metric != "accuracy":
    out["headline_metric"] = metric
  if labels is not None:
    out["label_noise"] = labels
  io.write_json(os.path.join(workdir, "ablation.json"), out)
  io.write_text(os.path.join(workdir, "ablation.md"), markdown(out))
  plot(out, os.path.join(workdir, "plots", "ablation.png"))
  print(markdown(out))
  return out


def _tune_label_smoothing(runner: Runner, ls_grid, val_key: str) -> tuple[dict, float]:
  """Label smoothing's eps, selected on the validation split (never on test).

  Returns:
    ``(eps -> mean validation error over the tuning seeds, the chosen eps)``; a tie
    goes to the earlier eps of ``ls_grid`` (the smaller).
  """
  tuning = {
      eps:
          summaries.mean_std([
              runner.baseline("label_smoothing", s, eps, read_test=False)[val_key]
              for s in runner.tune_seeds
          ])[0] for eps in ls_grid
  }
  tuned_eps = select(tuning, tuning)
  logging.info("label smoothing: validation error per eps %s -> eps = %g", tuning, tuned_eps)
  return tuning, tuned_eps


def _baseline_rows(runner: Runner, baselines, tuned_eps: float, final_seeds,
                   metric: str) -> list[dict]:
  """One table row per baseline method, its students on ``final_seeds``."""
  rows = []
  for method in baselines:
    eps = tuned_eps if _tuned_smoothing(method) else 0.1
    desc = {
        "cross_entropy": "cross-entropy",
        "label_smoothing": f"label smoothing, eps = {tuned_eps:g} (tuned on validation)",
        "large_margin": "Large-Margin Softmax (m = 2, beta annealed)"
    }[method]
    rows.append(
        _row(method, desc, [runner.baseline(method, s, eps) for s in final_seeds], metric=metric))
  return rows


def plot_teacher(runner: Runner, name: str, teacher, theta, config, workdir: str) -> None:
  """What the last taught row's teacher does along one student's run (seed ``config.seed``).

  Writes ``plots/teacher_w.png`` (W_t at several phases and its change) and
  ``plots/teacher_target_mass.png`` (per class, ``1 - W_yy``: the mass moved off
  the label), from a student trained with the frozen teacher whose state
  features are recorded at every evaluation (cached in ``cache/``).
  """
  path = os.path.join(workdir, "cache", f"{name}_history.json")
  if os.path.exists(path):
    with open(path) as f:
      history = json.load(f)
  else:
    history, s = [], config.student
    record = lambda st, r: history.append(with_teacher_state(r, st))
    dlf_jax.train_student(
        runner.student,
        teacher,
        runner.splits["train"],
        theta=theta,
        num_steps=s.num_steps,
        batch_size=s.batch_size,
        seed=config.seed,
        eval_every=s.eval_every,
        dev=runner.splits["dev"],
        eval_batch_size=s.eval_batch_size,
        warm_start=builders.build_teach_schedule(config).warm_start,
        progress=False,
        callback=record)
    io.write_json(path, history)
  snaps = w_snapshots(teacher, theta, history, num=4, first_step=config.teach.pretrain_steps)
  plots.plot_w_heatmaps(snaps, os.path.join(workdir, "plots", "teacher_w.png"))
  plots.plot_target_mass(snaps, os.path.join(workdir, "plots", "teacher_target_mass.png"))


def markdown(out: dict) -> str:
  """The ablation table (markdown).

  Test error % (mean +- std over seeds), its paired difference to tuned label
  smoothing (+- standard error), validation error, teaching wall time.

  With ``out['headline_metric'] == 'balanced_accuracy'`` (a long-tailed training split)
  the test error, the difference and the validation error are the balanced ones (and the
  header says so), with the plain test error as an extra column after the balanced one.
  """
  balanced = out.get("headline_metric", "accuracy") == "balanced_accuracy"
  ref = next((r for r in out["rows"] if r["name"] == "label_smoothing"), None)
  if balanced:
    lines = [
        "| row | what it adds | balanced test error % | test error % | Δ balanced vs "
        "tuned LS (paired) | balanced val error % | seeds | teaching s | outer steps (T) "
        "| selected |", "|---|---|---|---|---|---|---|---|---|---|"
    ]
  else:
    lines = [
        "| row | what it adds | test error % | Δ vs tuned LS (paired) | val error % "
        "| seeds | teaching s | outer steps (T) | selected |",
        "|---|---|---|---|---|---|---|---|---|"
    ]
  b = "_balanced" if balanced else ""
  for r in out["rows"]:
    teach = f"{r['teach_seconds']:.0f}" if r.get("teach_seconds") else "—"
    steps = f"{r['outer_steps']} ({r['unroll_steps']})" if r.get("outer_steps") else "—"
    sel = (f"update {r['selected_update']}" if r.get("selection") else "—")
    diff = None if ref is None or r is ref else summaries.paired_difference(
        r, ref, f"test{b}_errors")
    diff = "—" if diff is None else f"{diff[0]:+.2f} ± {diff[1]:.2f}"
    plain = f" {r['test_error']:.2f} ± {r['test_std']:.2f} |" if balanced else ""
    lines.append(f"| {r['name']} | {r['description']} | {r[f'test{b}_error']:.2f} ± "
                 f"{r[f'test{b}_std']:.2f} |{plain} {diff} | {r[f'val{b}_error']:.2f} ± "
                 f"{r[f'val{b}_std']:.2f} | {len(r['seeds'])} | {teach} | {steps} | {sel} |")
  tuning = ", ".join(f"eps {k}: {v:.2f}" for k, v in out["label_smoothing_tuning"].items())
  tune_seeds = tuple(out.get("tune_seeds", TUNE_SEEDS))
  val = "balanced validation error %" if balanced else "validation error %"
  lines.append("")
  lines.append(f"Label smoothing, {val} per eps (seeds {tune_seeds}): {tuning}; "
               f"selected eps = {out['tuned_eps']:g}. Splits: {out['splits']}.")
  for r in out["rows"]:
    if r.get("selection"):
      cands = ", ".join(f"update {k}: {v:.2f}" for k, v in r["selection"].items())
      lines.append(f"Selection of `{r['name']}` ({val}, students {tune_seeds}): "
                   f"{cands}.")
  return "\n".join(lines) + "\n"


def plot(out: dict, path: str) -> None:
  """Test error per row (balanced for a long tail).

  A bar (mean +- std) with every seed as a dot; taught rows in blue.
  """
  balanced = out.get("headline_metric", "accuracy") == "balanced_accuracy"
  key = "test_balanced_errors" if balanced else "test_errors"
  plots.plot_error_bars([(r["name"], r[key], "teach_seconds" in r) for r in out["rows"]],
                        path,
                        ylabel=("balanced " if balanced else "") + "test error % "
                        "(seeds as dots)")


_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory (re-running resumes).")
flags.DEFINE_list("variants", list(VARIANTS), f"Rows, cumulative, from {list(VARIANTS)}.")
flags.DEFINE_list("baselines", list(BASELINE_ROWS), "Baseline rows.")
flags.DEFINE_integer("seeds", 5, "Final students per row.")
flags.DEFINE_integer("val_size", 1000, "Validation examples carved from the training split.")
flags.DEFINE_integer("tune_seeds", len(TUNE_SEEDS),
                     "Students per candidate that select eps and the teacher checkpoint.")


def _fail(message: str) -> None:
  """Ends the command with status 2 and one line (no traceback), as experiments.main does."""
  print(f"experiments.ablation: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  del argv
  unknown = [v for v in FLAGS.variants if v not in VARIANTS]
  if unknown:
    _fail(f"unknown --variants {unknown}; choose from {list(VARIANTS)}.")
  bad = [b for b in FLAGS.baselines if b not in BASELINE_ROWS]
  if bad:
    _fail(f"unknown --baselines {bad}; choose from {list(BASELINE_ROWS)}.")
  if not (FLAGS.workdir or "").strip():
    _fail(f"--workdir={FLAGS.workdir!r}: give a directory for the ablation's caches and "
          "results, e.g. --workdir=runs/ablation.")
  if FLAGS.seeds < 1 or FLAGS.val_size < 1 or FLAGS.tune_seeds < 1:
    _fail(f"--seeds, --val_size and --tune_seeds must be >= 1; got {FLAGS.seeds}, "
          f"{FLAGS.val_size}, {FLAGS.tune_seeds}.")
  try:
    run(_CONFIG.value,
        FLAGS.workdir,
        FLAGS.variants,
        FLAGS.seeds,
        FLAGS.val_size,
        baselines=FLAGS.baselines,
        tune_seeds=range(1000, 1000 + FLAGS.tune_seeds))
  except (ValueError, FileNotFoundError) as e:  # config, data and split problems
    _fail(str(e))


if __name__ == "__main__":
  app.run(main)
