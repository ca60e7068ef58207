"""Reporting: result tables, JSON / CSV writers and plots (pure functions).

Everything here takes plain Python data (run dicts and history lists as written
by :mod:`experiments.train`) and is usable from a notebook as well. Plots are
built on :class:`matplotlib.figure.Figure` directly (no pyplot, no global
backend switch), so they render headless (Agg canvas) and inline in Jupyter.

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

import csv
import json
import os
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "METHOD_NAMES", "HEADLINE_METRICS", "error_key", "final_numbers", "mean_std", "pm", "summarize", "teach_summary",
    "results_table", "results_markdown", "write_json", "write_text", "metric_rows",
    "write_metrics_csv", "write_report", "environment", "phi_snapshots", "w_snapshots",
    "smoothing_by_frequency", "plot_smoothing_by_frequency", "plot_w_heatmaps",
    "plot_phi_statistics", "plot_teach_curve", "plot_accuracy_curves", "write_plots",
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
  out = {"test_error": _error(last["test_accuracy"]),
         "dev_error": _error(last["dev_accuracy"]),
         "test_error_at_best_dev": _error(history[best]["test_accuracy"]),
         "best_dev_step": int(history[best]["step"]),
         "final_step": int(last["step"])}
  if metric == "balanced_accuracy":
    out.update(test_balanced_error=_error(last["test_balanced_accuracy"]),
               dev_balanced_error=_error(last["dev_balanced_accuracy"]),
               test_balanced_error_at_best_dev=_error(history[best]["test_balanced_accuracy"]))
  return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (``ddof=1``; 0 for a single value)."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(runs: Sequence[dict], methods: Sequence[str],
              metric: str = "accuracy") -> dict:
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
    entry = {"seeds": [r["seed"] for r in mine],
             "test_errors": [r["test_error"] for r in mine],
             "dev_errors": [r["dev_error"] for r in mine]}
    if metric == "balanced_accuracy":
      entry["test_balanced_errors"] = [r["test_balanced_error"] for r in mine]
    for key in keys:
      entry[f"{key}_mean"], entry[f"{key}_std"] = mean_std([r[key] for r in mine])
    entry["seconds"] = float(sum(r["seconds"] for r in mine))
    out[method] = entry
  return out


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
  out = {"num_updates": len(history),
         "episode_dev_measure": [ends[e]["dev_measure"] for e in sorted(ends)],
         "episode_dev_accuracy": [ends[e]["dev_accuracy"] for e in sorted(ends)],
         "episode_student_steps": [ends[e]["student_step"] for e in sorted(ends)]}
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
    lines = ["| method | balanced test error % | test error % | balanced dev error % "
             "| balanced test error % at best balanced dev | seeds | train time (s) |",
             "|---|---|---|---|---|---|---|"]
    columns = ("test_balanced_error", "test_error", "dev_balanced_error",
               "test_balanced_error_at_best_dev")
  else:
    lines = ["| method | test error % | dev error % | test error % at best dev | seeds "
             "| train time (s) |",
             "|---|---|---|---|---|---|"]
    columns = ("test_error", "dev_error", "test_error_at_best_dev")
  for method, e in results["methods"].items():
    cells = " | ".join(pm(e[f"{key}_mean"], e[f"{key}_std"], len(e["seeds"]))
                       for key in columns)
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
      "",
      "## Wall time",
      "",
      f"- teach: {_seconds(wall['teach'])}",
  ]
  parts += [f"- {METHOD_NAMES.get(m, m)}: {_seconds(s)}" for m, s in wall["methods"].items()]
  parts += [f"- total: {_seconds(wall['total'])}", "",
            "## Data", "",
            f"- dataset: {d['name']} ({d['num_classes']} classes); train {d['train']:,}, "
            f"dev {d['dev']:,}, " + (f"val {d['val']:,}, " if d.get("val") else "")
            + f"test {d['test']:,}",
            f"- source: {d['source']}"]
  if d.get("notes"):
    parts.append(f"- notes: {d['notes']}")
  t = results.get("teach") or {}
  if t:
    parts += ["", "## Teaching", "",
              f"- outer steps (teacher updates): {t['num_updates']}",
              "- dev accuracy of each episode's student at its last segment (step "
              f"{', '.join(map(str, t['episode_student_steps']))}): "
              f"{', '.join(f'{a:.4f}' for a in t['episode_dev_accuracy'])}",
              "- dev measure (the teacher's reward) there: "
              f"{', '.join(f'{m:.4f}' for m in t['episode_dev_measure'])}"]
  sel = results.get("selection")
  if sel:
    errs = ", ".join(f"{k} {v:.2f}%" for k, v in sel["val_error"].items())
    what = "balanced validation error" if sel.get("metric") == "balanced_accuracy" else ""
    parts.append(f"- teacher selected on the validation split ({sel['val_size']} examples, "
                 + (f"by the {what}, " if what else "") +
                 f"students {sel['seeds']}; the test split is not read): {errs} -> "
                 f"**{sel['chosen']}**")
  parts += ["", "## Config", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```",
            ""]
  return "\n".join(parts)


# ------------------------------------------------------------------- writers


def write_text(path: str, text: str) -> None:
  """Writes ``text`` atomically (temporary file + rename), creating directories."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON, atomically."""
  write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(x):
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"Object of type {type(x).__name__} is not JSON serializable")


def _is_number(v) -> bool:
  return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def metric_rows(runs: Sequence[dict], teach_history: Sequence[dict],
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
             for k, v in record.items() if _is_number(v) and k != "update"]
  for run in runs:
    for record in run["history"]:
      rows += [("student", run["method"], run["seed"], int(record["step"]), k, float(v))
               for k, v in record.items() if _is_number(v) and k != "step"]
  return rows


def write_metrics_csv(path: str, rows: Iterable[tuple]) -> None:
  """Writes :func:`metric_rows` output with the header ``phase,method,seed,step,metric,value``."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(CSV_HEADER)
    w.writerows(rows)
  os.replace(tmp, path)


def write_report(workdir: str, results: dict, markdown: str, rows: Sequence[tuple], *,
                 runs: Sequence[dict], teach_history: Sequence[dict],
                 snapshots: Optional[Sequence] = None, soft_targets: bool = False) -> None:
  """Writes an experiment's report into ``workdir``.

  ``results.json`` (``results``), ``results.md`` (``markdown``), ``metrics.csv``
  (``rows``, as from :func:`metric_rows`) and ``plots/`` (:func:`write_plots`, with
  ``results``' ``headline_metric``, default ``'accuracy'``).
  """
  write_json(os.path.join(workdir, "results.json"), results)
  write_text(os.path.join(workdir, "results.md"), markdown)
  write_metrics_csv(os.path.join(workdir, "metrics.csv"), rows)
  write_plots(os.path.join(workdir, "plots"), runs=runs, teach_history=teach_history,
              snapshots=snapshots, soft_targets=soft_targets,
              metric=results.get("headline_metric", "accuracy"))


def environment(devices: bool = True) -> dict:
  """The JAX version and backend (and the devices) that ``results.json`` records."""
  import jax     # pylint: disable=g-import-not-at-top  (the rest of the module is jax-free)
  out = {"jax": jax.__version__, "backend": jax.default_backend()}
  if devices:
    out["devices"] = [str(d) for d in jax.devices()]
  return out


# ----------------------------------------------------------------- W_t plots


def phi_snapshots(teacher, theta, history: Sequence[dict], num: int = 5,
                  first_step: int = 0) -> list:
  """The teacher's ``phi_t`` at ``num`` evenly spaced points of a student's run.

  ``phi_t = teacher.phi(theta, teacher.state_features(t, stats_t))`` with the
  state recorded in the run's history (``s_train_loss``, ``s_train_acc``,
  ``s_dev_acc`` after the evaluation at ``step``), plus step 0 with an untrained
  student's statistics when ``first_step == 0``.

  Args:
    teacher: the :class:`dlf_jax.Teacher` the run was trained with.
    theta: its frozen parameters.
    history: the run's records (as written by :mod:`experiments.phases`).
    num: number of snapshots.
    first_step: the step from which the teacher drove the student (the end of a
      cross-entropy warm start); earlier records are skipped.

  Returns:
    list of ``(step, phi)`` with ``phi`` a :class:`dlf_jax.losses.LossForm`.

  Raises:
    ValueError: no record at or after ``first_step``.
  """
  from dlf_jax import teacher as teacher_lib  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  points = []
  if first_step == 0:
    points.append((0, teacher_lib.init_running_stats(teacher.num_classes)))
  for r in history:
    if r["step"] < first_step:
      continue
    f = lambda k, r=r: jnp.asarray(r[k], jnp.float32)
    points.append((int(r["step"]), teacher_lib.RunningStats(
        train_loss=f("s_train_loss"), train_acc=f("s_train_acc"), dev_acc=f("s_dev_acc"))))
  if not points:
    raise ValueError(f"No history record at or after step {first_step}.")
  idx = np.unique(np.linspace(0, len(points) - 1, min(num, len(points))).round().astype(int))
  return [(points[i][0], teacher.phi(theta, teacher.state_features(
      jnp.asarray(points[i][0], jnp.int32), points[i][1]))) for i in idx]


def w_snapshots(teacher, theta, history: Sequence[dict], num: int = 5,
                first_step: int = 0) -> list:
  """The teacher's dense ``W_t`` at the points of :func:`phi_snapshots` (same arguments).

  Returns:
    list of ``(step, W)`` with ``W`` float32 numpy ``[C, C]``.

  Raises:
    ValueError: no record at or after ``first_step``.
  """
  from dlf_jax import losses  # pylint: disable=g-import-not-at-top
  return [(step, np.asarray(losses.dense_w(phi), np.float32))
          for step, phi in phi_snapshots(teacher, theta, history, num, first_step)]


def smoothing_by_frequency(snapshots: Sequence, counts: np.ndarray) -> dict:
  """What a soft-target teacher does per class: ``eps_y`` against the class's frequency.

  Args:
    snapshots: ``[(step, phi), ...]`` from :func:`phi_snapshots` of a
      ``soft_target`` teacher (:class:`dlf_jax.losses.SoftTargetW`; ``phi.eps`` float ``[C]``).
    counts: int ``[C]``, each class's (target token's) count in the training split.

  Returns:
    dict: ``steps``; per snapshot ``mean`` (over classes), ``token_mean`` (weighted by
    ``counts``: the eps an average training token gets), ``min``, ``max``; and
    ``by_frequency``: for the last snapshot, the mean eps of the classes in each
    frequency quartile (of the classes that occur), most frequent last.

  Raises:
    ValueError: a snapshot that is not ``soft_target``, or ``counts`` of another length.
  """
  eps = []
  from dlf_jax import losses  # pylint: disable=g-import-not-at-top
  for _, phi in snapshots:
    if not isinstance(phi, losses.SoftTargetW):
      raise ValueError("smoothing_by_frequency needs a soft_target teacher, got "
                       f"{getattr(type(phi), 'name', type(phi).__name__)!r}.")
    eps.append(np.asarray(phi.eps, np.float64))
  eps = np.stack(eps)
  counts = np.asarray(counts, np.float64)
  if counts.shape != eps.shape[1:]:
    raise ValueError(f"counts has shape {counts.shape}; expected ({eps.shape[1]},).")
  seen = np.flatnonzero(counts > 0)
  quartiles = np.array_split(seen[np.argsort(counts[seen], kind="stable")], 4)
  return {"steps": [int(step) for step, _ in snapshots], "mean": eps.mean(1).tolist(),
          "token_mean": (eps @ counts / counts.sum()).tolist(), "min": eps.min(1).tolist(),
          "max": eps.max(1).tolist(),
          "by_frequency": [float(eps[-1, q].mean()) for q in quartiles if len(q)]}


def plot_smoothing_by_frequency(snapshots: Sequence, counts: np.ndarray, anchor: float,
                                path: Optional[str] = None) -> Figure:
  """``eps_y`` of a soft-target teacher against class frequency, at the last snapshot,
  with the anchor's eps as a line (left), and the mean eps along the run (right).

  Args:
    snapshots: ``[(step, phi), ...]`` from :func:`phi_snapshots` (``soft_target``).
    counts: int ``[C]``, training-split count of each class (token).
    anchor: the untaught anchor's eps.
    path: if given, save the figure there (PNG).
  """
  summary = smoothing_by_frequency(snapshots, counts)
  fig = _new_figure(9.0, 3.4)
  left, right = fig.subplots(1, 2)
  step, phi = snapshots[-1]
  seen = np.asarray(counts) > 0
  left.scatter(np.asarray(counts)[seen], np.asarray(phi.eps)[seen], s=3, alpha=0.4)
  left.axhline(anchor, color="k", ls="--", lw=1, label=f"anchor eps {anchor:g}")
  left.set_xscale("log")
  left.set_xlabel("training count of the class (target token)")
  left.set_ylabel(f"eps_y at step {step}")
  left.legend(fontsize=7)
  for key, label in (("mean", "mean over classes"), ("token_mean", "mean over tokens")):
    right.plot(summary["steps"], summary[key], marker=".", label=label)
  right.axhline(anchor, color="k", ls="--", lw=1)
  right.set_xlabel("student step")
  right.set_ylabel("eps")
  right.legend(fontsize=7)
  for ax in (left, right):
    ax.grid(alpha=0.3)
  fig.suptitle("What the teacher smooths, per class", fontsize=9)
  return _save(fig, path)


def _new_figure(width: float, height: float) -> Figure:
  fig = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: Optional[str]) -> Figure:
  if path is not None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
  return fig


def plot_w_heatmaps(snapshots: Sequence, path: Optional[str] = None) -> Figure:
  """Heatmaps of ``W_t`` (top) and of its change since the first snapshot (bottom).

  Args:
    snapshots: ``[(step, W [C, C]), ...]`` from :func:`w_snapshots`.
    path: if given, save the figure there (PNG).
  """
  n = len(snapshots)
  fig = _new_figure(2.6 * n + 0.8, 5.2)
  axes = fig.subplots(2, n, squeeze=False)
  ws = np.stack([w for _, w in snapshots])
  deltas = ws - ws[0]
  lim_w = float(np.abs(ws).max()) or 1.0
  lim_d = float(np.abs(deltas).max()) or 1e-6
  for j, (step, _) in enumerate(snapshots):
    im_w = axes[0, j].imshow(ws[j], cmap="RdBu_r", vmin=-lim_w, vmax=lim_w)
    im_d = axes[1, j].imshow(deltas[j], cmap="PuOr_r", vmin=-lim_d, vmax=lim_d)
    axes[0, j].set_title(f"W at step {step}", fontsize=9)
    axes[1, j].set_title(f"W(step {step}) - W(step {snapshots[0][0]})", fontsize=8)
    for ax in axes[:, j]:
      ax.set_xlabel("target class y", fontsize=8)
      ax.set_ylabel("class i", fontsize=8)
      ax.tick_params(labelsize=6)
  fig.colorbar(im_w, ax=axes[0, :].tolist(), shrink=0.8)
  fig.colorbar(im_d, ax=axes[1, :].tolist(), shrink=0.8)
  fig.suptitle("Teacher's loss matrix W_t along an L2T-DLF student's training "
               "(column y weights log p for label y)", fontsize=10)
  return _save(fig, path)


def plot_target_mass(snapshots: Sequence, path: Optional[str] = None) -> Figure:
  """Per class ``y``, the loss mass moved off the label, ``1 - W_yy``, along a run.

  For a soft-target W this is ``eps_y (1 - q_y[y])``: label smoothing with ``eps``
  is the flat line ``eps (1 - 1/C)``, cross-entropy the zero line.

  Args:
    snapshots: ``[(step, W [C, C]), ...]`` from :func:`w_snapshots`.
    path: if given, save the figure there (PNG).
  """
  fig = _new_figure(6.5, 3.4)
  ax = fig.subplots()
  steps = [step for step, _ in snapshots]
  mass = np.stack([1.0 - np.diag(w) for _, w in snapshots])          # [n, C]
  for y in range(mass.shape[1]):
    ax.plot(steps, mass[:, y], marker=".", color=f"C{y % 10}", label=str(y),
            ls="-" if y < 10 else "--")
  ax.set_xlabel("student step")
  ax.set_ylabel("1 - W_yy (mass off the label)")
  ax.set_title("What the teacher smooths, per target class", fontsize=9)
  ax.grid(alpha=0.3)
  if mass.shape[1] <= 20:
    ax.legend(fontsize=6, ncol=2, title="class y", title_fontsize=7)
  return _save(fig, path)


def plot_error_bars(groups: Sequence[tuple], path: Optional[str] = None,
                    ylabel: str = "test error % (seeds as dots)") -> Figure:
  """A bar per method (mean, +- sample std) with every seed's value as a dot.

  Args:
    groups: ``[(label, [value per seed], highlight: bool), ...]``.
    path: if given, save the figure there.
  """
  fig = _new_figure(1.0 * len(groups) + 2.2, 3.6)
  ax = fig.subplots()
  values = [np.asarray(v, np.float64) for _, v, _ in groups]
  for i, ((label, _, highlight), v) in enumerate(zip(groups, values)):
    ax.bar(i, v.mean(), color="#9ecae1" if highlight else "#d9d9d9")
    if len(v) > 1:
      ax.errorbar(i, v.mean(), yerr=v.std(ddof=1), color="k", capsize=3)
    ax.scatter(i + np.linspace(-0.2, 0.2, len(v)), v, s=10, color="k", zorder=3)
  ax.set_xticks(range(len(groups)), [label for label, _, _ in groups], rotation=30,
                ha="right", fontsize=8)
  lo = min(float(v.min()) for v in values)
  hi = max(float(v.max()) for v in values)
  pad = 0.1 * (hi - lo) + 0.05
  ax.set_ylim(max(0.0, lo - 3 * pad), hi + pad)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3, axis="y")
  return _save(fig, path)


def plot_phi_statistics(student_histories: dict, teach_history: Sequence[dict],
                        path: Optional[str] = None) -> Figure:
  """``w_diag_mean``, ``w_offdiag_mean``, ``b_mean`` over a student's steps and over teaching.

  Args:
    student_histories: ``{label: history}`` of L2T-DLF student runs (x axis:
      student step; a record's statistics are those of the phi computed at the
      start of its evaluation interval, i.e. at the previous record's step).
    teach_history: the teaching records (x axis: outer step).
    path: if given, save the figure there.
  """
  rows = [r for r in (("student training", bool(student_histories)),
                      ("teaching", bool(teach_history))) if r[1]]
  fig = _new_figure(11, 2.8 * max(1, len(rows)))
  axes = fig.subplots(max(1, len(rows)), len(PHI_STATS), squeeze=False)
  for i, (what, _) in enumerate(rows):
    for j, key in enumerate(PHI_STATS):
      ax = axes[i, j]
      if what == "student training":
        for label, hist in student_histories.items():
          starts = [0] + [r["step"] for r in hist[:-1]]   # phi of a record is from its start
          pts = [(t, r[key]) for t, r in zip(starts, hist) if key in r]
          if pts:
            ax.plot(*zip(*pts), marker=".", label=label)
        ax.set_xlabel("student step")
        if j == 0 and len(student_histories) > 1:
          ax.legend(fontsize=7)
      else:
        pts = [(r["update"] + 1, r[key]) for r in teach_history if key in r]
        if pts:
          ax.plot(*zip(*pts), marker=".", color="C3")
        ax.set_xlabel("outer step (teacher update)")
      ax.set_title(f"{key} ({what})", fontsize=9)
      ax.grid(alpha=0.3)
  return _save(fig, path)


def plot_teach_curve(teach_history: Sequence[dict], path: Optional[str] = None) -> Figure:
  """The teacher's reward (dev measure M~) and the dev accuracy per outer step."""
  fig = _new_figure(10, 3.2)
  ax1, ax2 = fig.subplots(1, 2)
  x = [r["update"] + 1 for r in teach_history]
  ax1.plot(x, [r["dev_measure"] for r in teach_history], marker=".")
  ax1.set_title("dev measure M~ after each unrolled segment", fontsize=9)
  ax2.plot(x, [r["dev_accuracy"] for r in teach_history], marker=".", color="C2")
  ax2.set_title("dev accuracy after each unrolled segment", fontsize=9)
  episodes = [r["episode"] for r in teach_history]
  for ax in (ax1, ax2):
    ax.set_xlabel("outer step (teacher update)")
    ax.grid(alpha=0.3)
    for k in range(1, len(x)):
      if episodes[k] != episodes[k - 1]:
        ax.axvline(x[k] - 0.5, color="gray", lw=0.6, ls=":")
  return _save(fig, path)


def plot_accuracy_curves(runs: Sequence[dict], path: Optional[str] = None) -> Figure:
  """Dev and test accuracy over student steps, mean over seeds, one line per method."""
  fig = _new_figure(10, 3.6)
  axes = fig.subplots(1, 2)
  methods = list(dict.fromkeys(r["method"] for r in runs))
  for key, ax in zip(("dev_accuracy", "test_accuracy"), axes):
    for k, method in enumerate(methods):
      hists = [r["history"] for r in runs if r["method"] == method]
      steps = [h["step"] for h in hists[0]]
      n = min(len(h) for h in hists)
      values = np.asarray([[h[i][key] for i in range(n)] for h in hists], np.float64)
      mean = values.mean(0)
      ax.plot(steps[:n], mean, label=METHOD_NAMES.get(method, method), color=f"C{k}")
      if len(hists) > 1:
        ax.fill_between(steps[:n], values.min(0), values.max(0), color=f"C{k}", alpha=0.15)
    ax.set_title(f"{key.replace('_', ' ')} (mean over seeds; band: min-max)", fontsize=9)
    ax.set_xlabel("student step")
    ax.grid(alpha=0.3)
    # Zoom on the end of training (early accuracies would flatten the comparison).
    finals = [r["history"][-1][key] for r in runs]
    tops = [max(h[key] for h in r["history"]) for r in runs]
    ax.set_ylim(max(0.0, min(finals) - 0.05), min(1.0, max(tops) + 0.01))
  axes[0].legend(fontsize=8)
  return _save(fig, path)


def write_plots(plots_dir: str, *, runs: Sequence[dict], teach_history: Sequence[dict],
                snapshots: Optional[Sequence] = None, soft_targets: bool = False,
                metric: str = "accuracy") -> list[str]:
  """Writes every plot that the available data supports; returns the file paths.

  ``soft_targets``: W is a soft-target W (columns on the simplex), so the per-class
  mass off the label (:func:`plot_target_mass`) is meaningful and is plotted too.
  ``metric``: the headline metric; the error bars show its test error.
  """
  test_key = error_key("test", metric)
  paths = []
  if snapshots:
    paths.append(os.path.join(plots_dir, "w_heatmaps.png"))
    plot_w_heatmaps(snapshots, paths[-1])
    if soft_targets:
      paths.append(os.path.join(plots_dir, "target_mass.png"))
      plot_target_mass(snapshots, paths[-1])
  l2t = {f"seed {r['seed']}": r["history"] for r in runs if r["method"] == "l2t_dlf"}
  if l2t or teach_history:
    paths.append(os.path.join(plots_dir, "phi_statistics.png"))
    plot_phi_statistics(l2t, teach_history, paths[-1])
  if teach_history:
    paths.append(os.path.join(plots_dir, "teach_curve.png"))
    plot_teach_curve(teach_history, paths[-1])
  if runs:
    paths.append(os.path.join(plots_dir, "accuracy_curves.png"))
    plot_accuracy_curves(runs, paths[-1])
    methods = list(dict.fromkeys(r["method"] for r in runs))
    paths.append(os.path.join(plots_dir, "test_error_bars.png"))
    plot_error_bars([(METHOD_NAMES.get(m, m), [r[test_key] for r in runs
                                               if r["method"] == m], m == "l2t_dlf")
                     for m in methods], paths[-1],
                    ylabel=f"{'balanced ' if metric != 'accuracy' else ''}test error % "
                           "(seeds as dots)")
  return paths
