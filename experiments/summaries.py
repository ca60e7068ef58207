"""Summaries of experiments: per-method numbers over seeds, result tables, metric rows.

Everything here takes plain Python data (run dicts and history lists as written by
:mod:`experiments.phases`) and returns numbers, dicts or text; it reads no file and
draws nothing (figures: :mod:`experiments.plots`; atomic writes: :mod:`experiments.io`),
except :func:`write_summary` and :func:`write_metrics_csv`, which write what the
others compute through :mod:`experiments.io`. It is usable from a notebook as well.

A *run* is a dict with ``method``, ``seed``, ``history`` (one record per
evaluation: ``step``, ``dev_accuracy``, ``test_accuracy``, ...) and the final
numbers of :func:`final_numbers`.

The *headline metric* (``'accuracy'``, or ``'balanced_accuracy'`` for a long-tailed
training split; :func:`experiments.splits.headline_metric` decides) picks the error
that heads the tables: plain error keys (``test_error``, ...) are always there; with
the balanced accuracy, the balanced ones (``test_balanced_error``, ...; named by
:func:`error_key`) are added and lead the table, the plain test error beside them.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from experiments import io

__all__ = [
    "METHOD_NAMES",
    "HEADLINE_METRICS",
    "PHI_STATS",
    "CSV_HEADER",
    "error_key",
    "final_numbers",
    "mean_std",
    "pm",
    "summarize",
    "teach_summary",
    "results_table",
    "results_markdown",
    "metric_rows",
    "write_metrics_csv",
    "write_summary",
    "environment",
]

METHOD_NAMES = {
    "cross_entropy": "Cross-entropy",
    "label_smoothing": "Label smoothing",
    "large_margin": "Large-Margin Softmax",
    "sigmoid_cross_entropy": "sigmoid(CE) (W=I, b=0)",
    "l2t_dlf": "L2T-DLF",
    "l2t_dlf_anchor": "L2T-DLF's untaught anchor",
    "glc": "GLC (forward correction, T estimated on dev)",
    "forward_oracle": "Forward correction (true T, oracle)",
    "logit_adjusted": "Logit adjustment",
    "class_balanced": "Class-balanced cross-entropy",
}
PHI_STATS = ("w_diag_mean", "w_offdiag_mean", "b_mean")
CSV_HEADER = ("phase", "method", "seed", "step", "metric", "value")
HEADLINE_METRICS = ("accuracy", "balanced_accuracy")

# ------------------------------------------------------------------- numbers


def _error(accuracy: float) -> float:
  return 100.0 * (1.0 - float(accuracy))


def _check_metric(metric: str) -> None:
  if metric not in HEADLINE_METRICS:
    raise ValueError(f"metric={metric!r} is not a headline metric; use one of "
                     f"{HEADLINE_METRICS} (experiments.splits.headline_metric(config)).")


def error_key(split: str, metric: str = "accuracy") -> str:
  """The key of ``split``'s error (%) under the headline ``metric``.

  Args:
    split: ``'test'``, ``'dev'``, ``'val'`` or ``'test_..._at_best_dev'``-style prefix
      (the part before ``_error``).
    metric: ``'accuracy'`` or ``'balanced_accuracy'``.

  Returns:
    ``'<split>_error'`` (accuracy) or ``'<split>_balanced_error'``.

  Raises:
    ValueError: an unknown ``metric``.
  """
  _check_metric(metric)
  return f"{split}_error" if metric == "accuracy" else f"{split}_balanced_error"


def final_numbers(history: Sequence[dict], metric: str = "accuracy") -> dict:
  """Final and best-dev numbers of one student run.

  Args:
    history: one record per evaluation with ``step``, ``dev_accuracy`` and
      ``test_accuracy`` (in [0, 1]); with ``metric='balanced_accuracy'`` also
      ``dev_balanced_accuracy`` and ``test_balanced_accuracy``.
    metric: the headline metric (:func:`experiments.splits.headline_metric`): it
      picks the best dev evaluation.

  Returns:
    dict: ``test_error``, ``dev_error`` (%, at the last evaluation),
    ``test_error_at_best_dev`` (%, at the evaluation with the highest dev
    ``metric``, the earliest on ties), ``best_dev_step``, ``final_step``; with the
    balanced accuracy also ``test_balanced_error``, ``dev_balanced_error`` and
    ``test_balanced_error_at_best_dev`` (%, ``100 (1 - balanced accuracy)``).

  Raises:
    ValueError: an empty history, an unknown ``metric``, or records without the
      balanced accuracy (only classification students have it).
  """
  if not history:
    raise ValueError("final_numbers needs at least one evaluation record.")
  _check_metric(metric)
  last = history[-1]
  if metric != "accuracy" and not all(f"{s}_{metric}" in last for s in ("dev", "test")):
    raise ValueError(f"final_numbers(metric={metric!r}): the history records have no "
                     f"dev_{metric} / test_{metric} (only classification students report "
                     "it); use metric='accuracy'.")
  best = max(range(len(history)), key=lambda i: (history[i][f"dev_{metric}"], -i))
  out = {
      "test_error": _error(last["test_accuracy"]),
      "dev_error": _error(last["dev_accuracy"]),
      "test_error_at_best_dev": _error(history[best]["test_accuracy"]),
      "best_dev_step": int(history[best]["step"]),
      "final_step": int(last["step"])
  }
  if metric == "balanced_accuracy":
    out.update(
        test_balanced_error=_error(last["test_balanced_accuracy"]),
        dev_balanced_error=_error(last["dev_balanced_accuracy"]),
        test_balanced_error_at_best_dev=_error(history[best]["test_balanced_accuracy"]))
  return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (``ddof=1``; 0 for a single value)."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(runs: Sequence[dict], methods: Sequence[str], metric: str = "accuracy") -> dict:
  """Per method: test / dev error (%) mean and std over seeds, and wall time.

  Args:
    runs: finished student runs (dicts with ``method``, ``seed``, ``test_error``,
      ``dev_error``, ``test_error_at_best_dev``, ``seconds``; with the balanced
      accuracy also the balanced keys of :func:`final_numbers`).
    methods: the methods to report, in order.
    metric: the headline metric (:func:`experiments.splits.headline_metric`).

  Returns:
    ``{method: {'seeds', 'test_errors', 'dev_errors', 'test_error_mean',
    'test_error_std', 'dev_error_mean', 'dev_error_std',
    'test_error_at_best_dev_mean', 'test_error_at_best_dev_std', 'seconds'}}``
    (std: sample standard deviation over seeds; ``seconds``: summed); with the
    balanced accuracy also ``test_balanced_errors`` and the ``_mean`` / ``_std`` of
    ``test_balanced_error``, ``dev_balanced_error`` and
    ``test_balanced_error_at_best_dev``.

  Raises:
    ValueError: a method without runs; an unknown ``metric``.
  """
  _check_metric(metric)
  keys = ("test_error", "dev_error", "test_error_at_best_dev")
  if metric == "balanced_accuracy":
    keys += ("test_balanced_error", "dev_balanced_error", "test_balanced_error_at_best_dev")
  out = {}
  for method in methods:
    mine = sorted((r for r in runs if r["method"] == method), key=lambda r: r["seed"])
    if not mine:
      raise ValueError(f"No finished runs of method {method!r}.")
    entry = {
        "seeds": [r["seed"] for r in mine],
        "test_errors": [r["test_error"] for r in mine],
        "dev_errors": [r["dev_error"] for r in mine]
    }
    if metric == "balanced_accuracy":
      entry["test_balanced_errors"] = [r["test_balanced_error"] for r in mine]
    for key in keys:
      entry[f"{key}_mean"], entry[f"{key}_std"] = mean_std([r[key] for r in mine])
    entry["seconds"] = float(sum(r["seconds"] for r in mine))
    out[method] = entry
  return out


def paired_difference(row: dict,
                      reference: dict,
                      key: str = "test_errors") -> Optional[tuple[float, float]]:
  """Mean and standard error of ``row - reference`` over their common seeds.

  Paired: the same seeds share the initialisation and the batch order, so the
  difference's spread is the seed noise that remains after pairing.

  Args:
    row, reference: entries of :func:`summarize` (``seeds`` and ``key`` lists).
    key: the per-seed errors compared (``'test_balanced_errors'`` for a long tail).

  Returns:
    ``(mean, standard error)`` in the errors' units (percentage points), or None
    with fewer than 2 common seeds.
  """
  ref = dict(zip(reference["seeds"], reference[key]))
  d = np.asarray([e - ref[s] for s, e in zip(row["seeds"], row[key]) if s in ref])
  if len(d) < 2:
    return None
  return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def paired_lines(results: dict) -> list[str]:
  """L2T-DLF's paired differences to every other method, as markdown lines.

  Negative is better (an error difference, percentage points, ± standard error
  over the common seeds); empty without an ``l2t_dlf`` row or 2 common seeds.
  """
  methods = results["methods"]
  balanced = results.get("headline_metric", "accuracy") == "balanced_accuracy"
  key = "test_balanced_errors" if balanced else "test_errors"
  if "l2t_dlf" not in methods or key not in methods["l2t_dlf"]:
    return []
  lines = []
  for method, entry in methods.items():
    diff = None if method == "l2t_dlf" else paired_difference(methods["l2t_dlf"], entry, key)
    if diff is not None:
      lines.append(f"- L2T-DLF − {METHOD_NAMES.get(method, method)}: {diff[0]:+.2f} ± "
                   f"{diff[1]:.2f} points ({diff[0] / diff[1]:+.1f} s.e.)" if diff[1] >
                   0 else f"- L2T-DLF − {METHOD_NAMES.get(method, method)}: "
                   f"{diff[0]:+.2f} points (no spread)")
  if not lines:
    return []
  what = "balanced test error" if balanced else "test error"
  return ["", f"## Paired differences ({what}, same seeds)", ""] + lines


def teach_summary(history: Sequence[dict]) -> dict:
  """The teaching phase in a few numbers (empty dict if there was none).

  Returns:
    dict: ``num_updates``; per episode (one student), the dev measure and dev
    accuracy after its last segment (``episode_dev_measure``,
    ``episode_dev_accuracy``) and the student steps it reached; the last
    record's phi statistics.
  """
  if not history:
    return {}
  ends = {}
  for r in history:
    ends[r["episode"]] = r
  out = {
      "num_updates": len(history),
      "episode_dev_measure": [ends[e]["dev_measure"] for e in sorted(ends)],
      "episode_dev_accuracy": [ends[e]["dev_accuracy"] for e in sorted(ends)],
      "episode_student_steps": [ends[e]["student_step"] for e in sorted(ends)]
  }
  for k in PHI_STATS:
    if k in history[-1]:
      out[f"last_{k}"] = history[-1][k]
  return out


def pm(mean: float, std: float, seeds: int = 2) -> str:
  """``mean ± std``; the mean alone for one seed (no spread to show)."""
  return f"{mean:.2f}" if seeds < 2 else f"{mean:.2f} ± {std:.2f}"


def results_table(results: dict) -> str:
  """The markdown table: one row per method (errors in %, mean ± std over seeds).

  With ``results['headline_metric'] == 'balanced_accuracy'`` (a long-tailed training
  split) the balanced errors lead and the header says so; the plain test error is the
  second column.

  Args:
    results: a ``results.json`` dict (``methods`` as from :func:`summarize`).
  """
  if results.get("headline_metric", "accuracy") == "balanced_accuracy":
    lines = [
        "| method | balanced test error % | test error % | balanced dev error % "
        "| balanced test error % at best balanced dev | seeds | train time (s) |",
        "|---|---|---|---|---|---|---|"
    ]
    columns = ("test_balanced_error", "test_error", "dev_balanced_error",
               "test_balanced_error_at_best_dev")
  else:
    lines = [
        "| method | test error % | dev error % | test error % at best dev | seeds "
        "| train time (s) |", "|---|---|---|---|---|---|"
    ]
    columns = ("test_error", "dev_error", "test_error_at_best_dev")
  for method, e in results["methods"].items():
    cells = " | ".join(pm(e[f"{key}_mean"], e[f"{key}_std"], len(e["seeds"])) for key in columns)
    lines.append(f"| {METHOD_NAMES.get(method, method)} | {cells} | {len(e['seeds'])} "
                 f"| {e['seconds']:.1f} |")
  return "\n".join(lines)


def _seconds(value: Optional[float]) -> str:
  return "skipped" if value is None else f"{value:.1f} s"


def results_markdown(results: dict) -> str:
  """``results.md``: the table, wall times, data provenance, teaching and the config."""
  d, cfg, wall = results["data"], results["config"], results["wall_seconds"]
  balanced = results.get("headline_metric", "accuracy") == "balanced_accuracy"
  seeds = f"{cfg['seed']}..{cfg['seed'] + cfg['num_seeds'] - 1}"
  if balanced:
    intro = ("Balanced test error (%: 1 − the mean per-class recall; the training split is "
             f"long-tailed, data.imbalance.ratio = {cfg['data']['imbalance']['ratio']:g}) of "
             f"fresh students after {cfg['student']['num_steps']} steps, mean ± sample std "
             f"over seeds {seeds}, with the plain test error beside it. 'At best balanced "
             "dev': the balanced test error at the evaluation with the best balanced dev "
             "accuracy.")
  else:
    intro = ("Test error (%) of fresh students after "
             f"{cfg['student']['num_steps']} steps, mean ± sample std over seeds "
             f"{seeds}. 'At best dev': the test error at the evaluation with the best dev "
             "accuracy.")
  parts = [
      f"# Results: {d['name']}, {cfg['model']['name']} student",
      "",
      intro,
      "",
      results_table(results),
      *paired_lines(results),
      "",
      "## Wall time",
      "",
      f"- teach: {_seconds(wall['teach'])}",
  ]
  parts += [f"- {METHOD_NAMES.get(m, m)}: {_seconds(s)}" for m, s in wall["methods"].items()]
  parts += [
      f"- total: {_seconds(wall['total'])}", "", "## Data", "",
      f"- dataset: {d['name']} ({d['num_classes']} classes); train {d['train']:,}, "
      f"dev {d['dev']:,}, " + (f"val {d['val']:,}, " if d.get("val") else "") +
      f"test {d['test']:,}", f"- source: {d['source']}"
  ]
  if d.get("notes"):
    parts.append(f"- notes: {d['notes']}")
  t = results.get("teach") or {}
  if t:
    parts += [
        "", "## Teaching", "", f"- outer steps (teacher updates): {t['num_updates']}",
        "- dev accuracy of each episode's student at its last segment (step "
        f"{', '.join(map(str, t['episode_student_steps']))}): "
        f"{', '.join(f'{a:.4f}' for a in t['episode_dev_accuracy'])}",
        "- dev measure (the teacher's reward) there: "
        f"{', '.join(f'{m:.4f}' for m in t['episode_dev_measure'])}"
    ]
  sel = results.get("selection")
  if sel:
    errs = ", ".join(f"{k} {v:.2f}%" for k, v in sel["val_error"].items())
    what = "balanced validation error" if sel.get("metric") == "balanced_accuracy" else ""
    parts.append(f"- teacher selected on the validation split ({sel['val_size']} examples, " +
                 (f"by the {what}, " if what else "") +
                 f"students {sel['seeds']}; the test split is not read): {errs} -> "
                 f"**{sel['chosen']}**")
  parts += ["", "## Config", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```", ""]
  return "\n".join(parts)


# --------------------------------------------------------------- metric rows


def _is_number(v) -> bool:
  return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def metric_rows(runs: Sequence[dict],
                teach_history: Sequence[dict],
                teach_seed: int = 0) -> list[tuple]:
  """Long-format rows ``(phase, method, seed, step, metric, value)``.

  Teaching rows have ``phase='teach'``, ``method='l2t_dlf'`` and ``step`` = the
  outer step (1-based: the number of teacher updates done); student rows have
  ``phase='student'`` and ``step`` = the student step of the evaluation.
  """
  rows = []
  for record in teach_history:
    step = int(record["update"]) + 1
    rows += [("teach", "l2t_dlf", teach_seed, step, k, float(v))
             for k, v in record.items()
             if _is_number(v) and k != "update"]
  for run in runs:
    for record in run["history"]:
      rows += [("student", run["method"], run["seed"], int(record["step"]), k, float(v))
               for k, v in record.items()
               if _is_number(v) and k != "step"]
  return rows


def write_metrics_csv(path: str, rows: Iterable[tuple]) -> None:
  """Writes :func:`metric_rows` output (atomically).

  The header is ``phase,method,seed,step,metric,value``.
  """
  io.write_csv(path, CSV_HEADER, rows)


def write_summary(workdir: str, results: dict, markdown: str, rows: Sequence[tuple]) -> None:
  """Writes an experiment's summary into ``workdir``.

  ``results.json`` (``results``), ``results.md`` (``markdown``) and ``metrics.csv``
  (``rows``, as from :func:`metric_rows`); the figures are :func:`experiments.plots.write_plots`'.
  """
  io.write_json(os.path.join(workdir, "results.json"), results)
  io.write_text(os.path.join(workdir, "results.md"), markdown)
  write_metrics_csv(os.path.join(workdir, "metrics.csv"), rows)


def environment(devices: bool = True) -> dict:
  """The JAX version and backend (and the devices) that ``results.json`` records."""
  import jax  # pylint: disable=g-import-not-at-top  (the rest of the module is jax-free)
  out = {"jax": jax.__version__, "backend": jax.default_backend()}
  if devices:
    out["devices"] = [str(d) for d in jax.devices()]
  return out
