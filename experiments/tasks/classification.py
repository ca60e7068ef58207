"""The image-classification task: teach -> freeze -> students x methods x seeds -> report.

The protocol of the L2T family (Wu et al. 2018, Sec. 5): the teacher ``mu_theta``
is learned on a dev set carved from the training data (Algorithm 1,
:func:`dlf_jax.teach`), then frozen; fresh students are trained with it and with
each baseline loss (:func:`dlf_jax.train_student`) for every seed, and evaluated
on the official test split. :func:`run` reports the test error (%) of every
method as mean +- std over seeds.

What the task is made of: :data:`SCHEMA` (the config's keys and checks,
:data:`experiments.schema.CLASSIFICATION`), :func:`load_data` (the image splits,
:mod:`experiments.splits`), :func:`build_student` / :func:`build_teacher`
(:mod:`experiments.builders`), the phases of :mod:`experiments.phases` (teach, select,
students; resumable), the report of :mod:`experiments.summaries` and
:mod:`experiments.plots`. It is ``TASKS['classification']`` of
:mod:`experiments.tasks`, the task of every config without a ``task`` key.

Resuming: every phase checkpoints (see :mod:`experiments.phases`), so killing
:func:`run` at any point and calling it again with the same config and workdir
restores the latest checkpoints and reproduces the uninterrupted run's numbers
exactly.

Workdir layout::

  config.json                              the config (a resume must match it)
  checkpoints/teach/<update>/              TeachState + {history, elapsed} (last 2)
  checkpoints/<method>/seed_<s>/<step>/    StudentState + {history, elapsed} (last 2)
  runs/<method>_seed<s>.json               a finished student run
  selection.json                           the teacher chosen on the validation split
  glc/transition_seed<s>.json              GLC's T^ (methods glc, teacher.anchor='glc')
  tuning/<method>.json                     tau / beta chosen on the validation split
  label_noise.json                         with config.data.noise / .imbalance: the
                                           realised noise matrix and rate, class counts
  tensorboard/{teach,<method>/seed_<s>}/   tensorboardX event files
  metrics.csv                              long format: phase,method,seed,step,metric,value
  results.json, results.md                 the table, wall times, data, config
  plots/*.png                              W_t heatmaps, phi statistics, curves; with
                                           noise / a long tail: the learned T or W beside
                                           the noise matrix, per-class weights / offsets
"""
from __future__ import annotations

import os
import time
from typing import Optional

from absl import logging
import ml_collections

from dlf_jax import analysis
from experiments import io
from experiments import plots
from experiments import schema
from experiments import splits
from experiments import summaries
from experiments.builders import build_student, build_teacher, resolve_recipe
from experiments.correction_phases import DataBaselines
from experiments.phases import (CheckpointHook, choose_teacher, maybe_teach, student_phases,
                                teacher_thetas)
# ``run`` calls ``load_data`` by this module's name: the task's data (tests substitute it).
from experiments.splits import load_data
from experiments.workdir import claim_workdir, config_json, make_workdir

__all__ = ["SCHEMA", "validate_config", "load_data", "build_student", "build_teacher", "run"]

# The config's keys, their checks and their meaning.
SCHEMA = schema.CLASSIFICATION


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every value of an experiment config before any work is done.

  Args:
    config: an experiment config (see ``experiments/configs/common.py``; the keys
      are those of :data:`SCHEMA`).

  Raises:
    ValueError: naming the offending key, its value and the valid options.
    KeyError: a required key is missing.
  """
  schema.validate(config, SCHEMA)


def run(config: ml_collections.ConfigDict,
        workdir: str,
        *,
        on_checkpoint: Optional[CheckpointHook] = None) -> dict:
  """Runs (or resumes) one experiment and writes its report into ``workdir``.

  Steps: validate the config; load the data; learn the teacher (if ``l2t_dlf``
  is among ``config.methods``); train a fresh student per method and seed
  (``config.seed + i``, ``i < config.num_seeds``); write ``results.json``,
  ``results.md``, ``metrics.csv`` and ``plots/``; print the table.

  Args:
    config: an experiment config (``experiments/configs/*.py``).
    workdir: output directory (created); re-running with the same config resumes.
    on_checkpoint: optional ``fn(phase, step)`` called after every checkpoint
      (``phase`` is ``'teach'`` or ``'<method>/seed_<s>'``); an exception from it
      aborts the run as a kill would (tests use this).

  Returns:
    The ``results.json`` content (dict).

  Raises:
    ValueError: an invalid config value (naming the key), or a workdir that
      holds a different experiment (:class:`WorkdirConfigError`, a ValueError
      naming every differing key); data or a workdir this config cannot use
      (:class:`InputError`: labels out of range, a batch larger than the
      training split, a workdir that cannot be created).
    FileNotFoundError: the dataset is not available (the library's message).
  """
  validate_config(config)
  config = resolve_recipe(config)  # config.json records what actually runs
  workdir = make_workdir(workdir)
  t_start = time.time()
  # Checked before config.json is written: a fixed rerun is no conflict.
  data, val = splits.prepare(config, load_data(config))
  with claim_workdir(config, workdir):  # a run refused before it trains un-pins its config
    return _run(config, workdir, data, val, t_start, on_checkpoint)


def _run(config: ml_collections.ConfigDict, workdir: str, data, val, t_start: float,
         on_checkpoint: Optional[CheckpointHook]) -> dict:
  """The body of :func:`run` once the data is loaded and the workdir claimed."""
  logging.info("data %s from %s: train %d, dev %d, val %d, test %d", data.name, data.source,
               len(data.train), len(data.dev), 0 if val is None else len(val), len(data.test))
  labels = splits.label_record(config, data, val)
  if labels is not None:  # label noise / a long tail on train
    io.write_json(os.path.join(workdir, "label_noise.json"), labels)
  student = build_student(config, data.num_classes)
  data_baselines = DataBaselines(config, data, val, student, workdir, on_checkpoint=on_checkpoint)
  teacher = build_teacher(config, data.num_classes, data_baselines.teacher_anchor())

  taught = maybe_teach(config, data, student, teacher, workdir, on_checkpoint=on_checkpoint)
  selection = None
  if taught is not None and config.teach.select:
    selection = choose_teacher(config, data, val, student, teacher, taught, workdir)
  runs = student_phases(
      config,
      data,
      student,
      workdir,
      teacher=teacher,
      thetas=teacher_thetas(config, teacher, taught, "l2t_dlf_anchor" in config.methods),
      on_checkpoint=on_checkpoint,
      loss_for=data_baselines.loss)
  results = _results(config, data, val, runs, taught, selection, t_start)
  if labels is not None:
    results["data"]["label_noise"] = labels
  teach_history = [] if taught is None else taught["history"]
  snapshots = last_phi = None
  l2t_runs = [r for r in runs if r["method"] == "l2t_dlf"]
  if taught is not None and l2t_runs:
    snapshots = analysis.w_snapshots(
        teacher, taught["theta"], l2t_runs[0]["history"], first_step=config.teach.pretrain_steps)
    if labels is not None:  # what the teacher learned about the labels
      last_phi = analysis.phi_snapshots(
          teacher, taught["theta"], l2t_runs[0]["history"],
          first_step=config.teach.pretrain_steps)[-1][1]
  summaries.write_summary(workdir, results, summaries.results_markdown(results),
                          summaries.metric_rows(runs, teach_history, config.seed))
  plots.write_plots(
      os.path.join(workdir, "plots"),
      runs=runs,
      teach_history=teach_history,
      snapshots=snapshots,
      soft_targets=schema.has_soft_targets(config.teacher.parameterisation),
      metric=results.get("headline_metric", "accuracy"),
      phi=last_phi,
      label_noise=labels)
  print(summaries.results_table(results))
  return results


def _results(config: ml_collections.ConfigDict, data, val, runs: list, taught: Optional[dict],
             selection: Optional[dict], t_start: float) -> dict:
  """The ``results.json`` content of one image experiment."""
  metric = splits.headline_metric(config)
  summary = summaries.summarize(runs, config.methods, metric)
  wall = {
      "teach": None if taught is None else taught["seconds"],
      "methods": {
          m: summary[m]["seconds"] for m in config.methods
      }
  }
  wall["total"] = (wall["teach"] or 0.0) + sum(wall["methods"].values())
  return {
      "config": config_json(config),
      "data": {
          "name": data.name,
          "source": data.source,
          "notes": data.notes,
          "num_classes": data.num_classes,
          "train": len(data.train),
          "dev": len(data.dev),
          "val": 0 if val is None else len(val),
          "test": len(data.test)
      },
      # A long tail: the tables lead with the balanced error (default: no key, as before).
      **({} if metric == "accuracy" else {
             "headline_metric": metric
         }),
      "selection": selection,
      "methods": summary,
      "runs": [{
          k: v for k, v in r.items() if k != "history"
      } for r in runs],
      "teach": summaries.teach_summary([] if taught is None else taught["history"]),
      "wall_seconds": wall,
      "session_seconds": time.time() - t_start,
      "environment": summaries.environment(),
  }
