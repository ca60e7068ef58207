"""Figures of experiments: W_t heatmaps, phi statistics, curves, error bars.

Also what a noise- or class-aware teacher learned (its ``T`` / ``W`` beside the
noise matrix, its per-class weights / offsets against the class counts).

Each ``plot_*`` takes plain Python data (run dicts and histories as written by
:mod:`experiments.phases`, snapshots from :mod:`dlf_jax.analysis`), returns a
:class:`matplotlib.figure.Figure` and, given ``path``, saves it there as PNG.
Figures are built on :class:`~matplotlib.figure.Figure` directly (no pyplot, no
global backend switch), so they render headless (Agg canvas) and inline in Jupyter.
:func:`write_plots` writes every figure an experiment's data supports.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from dlf_jax import analysis
from dlf_jax import losses
from experiments import io
from experiments.summaries import METHOD_NAMES, PHI_STATS, error_key

__all__ = [
    "plot_smoothing_by_frequency",
    "plot_w_heatmaps",
    "plot_target_mass",
    "plot_error_bars",
    "plot_sweep",
    "plot_phi_statistics",
    "plot_teach_curve",
    "plot_accuracy_curves",
    "plot_transition_comparison",
    "plot_per_class",
    "write_plots",
]


def plot_smoothing_by_frequency(snapshots: Sequence,
                                counts: np.ndarray,
                                anchor: float,
                                path: Optional[str] = None) -> Figure:
  """``eps_y`` of a soft-target teacher against class frequency, and along the run.

  Left: at the last snapshot, with the anchor's eps as a line; right: the mean eps
  along the run.

  Args:
    snapshots: ``[(step, phi), ...]`` from :func:`dlf_jax.analysis.phi_snapshots` (``soft_target``).
    counts: int ``[C]``, training-split count of each class (token).
    anchor: the untaught anchor's eps.
    path: if given, save the figure there (PNG).
  """
  summary = analysis.smoothing_by_frequency(snapshots, counts)
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
    snapshots: ``[(step, W [C, C]), ...]`` from :func:`dlf_jax.analysis.w_snapshots`.
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
  fig.suptitle(
      "Teacher's loss matrix W_t along an L2T-DLF student's training "
      "(column y weights log p for label y)",
      fontsize=10)
  return _save(fig, path)


def plot_target_mass(snapshots: Sequence, path: Optional[str] = None) -> Figure:
  """Per class ``y``, the loss mass moved off the label, ``1 - W_yy``, along a run.

  For a soft-target W this is ``eps_y (1 - q_y[y])``: label smoothing with ``eps``
  is the flat line ``eps (1 - 1/C)``, cross-entropy the zero line.

  Args:
    snapshots: ``[(step, W [C, C]), ...]`` from :func:`dlf_jax.analysis.w_snapshots`.
    path: if given, save the figure there (PNG).
  """
  fig = _new_figure(6.5, 3.4)
  ax = fig.subplots()
  steps = [step for step, _ in snapshots]
  mass = np.stack([1.0 - np.diag(w) for _, w in snapshots])  # [n, C]
  for y in range(mass.shape[1]):
    ax.plot(
        steps, mass[:, y], marker=".", color=f"C{y % 10}", label=str(y), ls="-" if y < 10 else "--")
  ax.set_xlabel("student step")
  ax.set_ylabel("1 - W_yy (mass off the label)")
  ax.set_title("What the teacher smooths, per target class", fontsize=9)
  ax.grid(alpha=0.3)
  if mass.shape[1] <= 20:
    ax.legend(fontsize=6, ncol=2, title="class y", title_fontsize=7)
  return _save(fig, path)


def plot_transition_comparison(learned,
                               true,
                               realised,
                               path: Optional[str] = None,
                               *,
                               estimated=None,
                               learned_title: str = "learned") -> Figure:
  """Heatmaps side by side, one colour scale: the noise matrices and the learned one.

  Panels: the noise matrix ``T`` the labels were drawn from, the realised one,
  (GLC's estimate ``T^``,) and the learned matrix.

  Every matrix is oriented as ``T[i, j] = P(observed j | true i)``: rows are true
  classes, columns observed labels (:func:`dlf_jax.analysis.learned_transition`
  gives the learned one so).

  Args:
    learned: float ``[C, C]``, e.g. :func:`dlf_jax.analysis.learned_transition` of the
      taught teacher's last ``phi``.
    true: float ``[C, C]``, ``noise.transition`` of ``label_noise.json``.
    realised: float ``[C, C]``, ``noise.realised_transition`` of ``label_noise.json``.
    path: if given, save the figure there (PNG).
    estimated: optional float ``[C, C]``, another estimate drawn between the realised
      and the learned one (GLC's ``T^``, ``glc/transition_seed<s>.json``).
    learned_title: the learned panel's title (e.g. ``"learned W (soft targets)"``).

  Raises:
    ValueError: matrices of different or non-square shapes.
  """
  panels = [("true T (noise model)", true), ("realised T (training labels)", realised)]
  if estimated is not None:
    panels.append(("estimated T^ (GLC)", estimated))
  panels.append((learned_title, learned))
  mats = [np.asarray(m, np.float64) for _, m in panels]
  c = mats[0].shape[0] if mats[0].ndim == 2 else -1
  if any(m.shape != (c, c) for m in mats):
    raise ValueError("plot_transition_comparison needs [C, C] matrices of one shape; got "
                     f"shapes {[m.shape for m in mats]} for {[t for t, _ in panels]}.")
  fig = _new_figure(2.7 * len(panels) + 0.9, 3.2)
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  vmax = max(float(m.max()) for m in mats) or 1.0
  ticks = range(0, c, max(1, c // 10))
  for ax, (title, _), m in zip(axes, panels, mats):
    im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=vmax)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("observed label j", fontsize=8)
    ax.set_ylabel("true class i", fontsize=8)
    ax.set_xticks(list(ticks))
    ax.set_yticks(list(ticks))
    ax.tick_params(labelsize=6)
  fig.colorbar(im, ax=axes.tolist(), shrink=0.8)
  return _save(fig, path)


def plot_per_class(values,
                   class_counts,
                   path: Optional[str] = None,
                   label: str = "learned value") -> Figure:
  """A learned per-class quantity against the class's training count (log scale).

  The quantity is a class weight, a logit offset or ``eps_y``; each point is
  labelled with its class index.

  Args:
    values: float ``[C]``, e.g. :func:`dlf_jax.analysis.class_weights` or
      :func:`dlf_jax.analysis.logit_offsets` of the taught teacher's last ``phi``.
    class_counts: int ``[C]``, each class's training count (``class_counts['train']``
      of ``label_noise.json``).
    path: if given, save the figure there (PNG).
    label: the y axis label (what ``values`` are).

  Raises:
    ValueError: ``values`` and ``class_counts`` of different shapes.
  """
  values = np.asarray(values, np.float64)
  counts = np.asarray(class_counts, np.float64)
  if values.ndim != 1 or values.shape != counts.shape:
    raise ValueError(f"plot_per_class needs values and class_counts of one [C] shape; got "
                     f"{values.shape} and {counts.shape}.")
  fig = _new_figure(4.8, 3.4)
  ax = fig.subplots()
  seen = counts > 0
  ax.scatter(counts[seen], values[seen], s=14, color="C0")
  for y in np.flatnonzero(seen):
    ax.annotate(
        str(y), (counts[y], values[y]), textcoords="offset points", xytext=(3, 3), fontsize=7)
  if (counts[seen] > 0).any() and counts[seen].max() > counts[seen].min():
    ax.set_xscale("log")
  ax.xaxis.set_minor_formatter(NullFormatter())  # log axis: no crowded minor labels
  ax.set_xlabel("training count of the class")
  ax.set_ylabel(label)
  ax.set_title(f"{label} against class frequency", fontsize=9)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def learned_per_class(phi) -> Optional[tuple]:
  """``(values [C], label)`` of a ``phi``'s per-class quantity, or None.

  ``weighted_soft_target``: its class weights; ``logit_adjustment``: its logit
  offsets; ``soft_target``: its smoothing ``eps_y``; other forms: None.
  """
  if isinstance(phi, losses.WeightedSoftTargetW):
    return analysis.class_weights(phi), "learned class weight c_y"
  if isinstance(phi, losses.LogitOffsetW):
    return analysis.logit_offsets(phi), "learned logit offset delta_y"
  if isinstance(phi, losses.SoftTargetW):
    return np.asarray(phi.eps, np.float64), "learned smoothing eps_y"
  return None


def plot_error_bars(groups: Sequence[tuple],
                    path: Optional[str] = None,
                    ylabel: str = "test error % (seeds as dots)") -> Figure:
  """A bar per method (mean, +- sample std) with every seed's value as a dot.

  Args:
    groups: ``[(label, [value per seed], highlight: bool), ...]``.
    path: if given, save the figure there.
  """
  fig = _new_figure(1.0 * len(groups) + 2.2, 3.6)
  ax = fig.subplots()
  values = [np.asarray(v, np.float64) for _, v, _ in groups]
  for i, ((_label, _, highlight), v) in enumerate(zip(groups, values)):
    ax.bar(i, v.mean(), color="#9ecae1" if highlight else "#d9d9d9")
    if len(v) > 1:
      ax.errorbar(i, v.mean(), yerr=v.std(ddof=1), color="k", capsize=3)
    ax.scatter(i + np.linspace(-0.2, 0.2, len(v)), v, s=10, color="k", zorder=3)
  ax.set_xticks(
      range(len(groups)), [label for label, _, _ in groups], rotation=30, ha="right", fontsize=8)
  lo = min(float(v.min()) for v in values)
  hi = max(float(v.max()) for v in values)
  pad = 0.1 * (hi - lo) + 0.05
  ax.set_ylim(max(0.0, lo - 3 * pad), hi + pad)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3, axis="y")
  return _save(fig, path)


def plot_sweep(sweep: dict, names: dict, path: Optional[str] = None) -> Figure:
  """Error against a swept config key: a panel per panel value, a line per method.

  Args:
    sweep: :func:`experiments.sweep.collect`'s dict (``methods``, and ``panels -> x ->
      method -> {'mean', 'std'}``, errors in %).
    names: display name per method (methods not in it are shown as they are).
    path: if given, save the figure there.
  """
  panels = list(sweep["panels"])
  fig = _new_figure(4.2 * len(panels) + 1.0, 3.6)
  axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
  for ax, panel in zip(axes, panels):
    points = sweep["panels"][panel]
    for k, method in enumerate(sweep["methods"]):
      xs = [float(x) for x in points if method in points[x]]
      means = [points[x][method]["mean"] for x in points if method in points[x]]
      stds = [points[x][method]["std"] for x in points if method in points[x]]
      ax.errorbar(
          xs,
          means,
          yerr=stds,
          marker="o",
          ms=4,
          capsize=3,
          color=f"C{k}",
          label=names.get(method, method))
    ax.set_xlabel(sweep["x"])
    if sweep["panel"] is not None:
      ax.set_title(f"{sweep['panel']} = {panel}", fontsize=9)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel(("balanced " if sweep["metric"] == "balanced_accuracy" else "") +
                     "test error %")
  axes[-1].legend(fontsize=7)
  return _save(fig, path)


def plot_phi_statistics(student_histories: dict,
                        teach_history: Sequence[dict],
                        path: Optional[str] = None) -> Figure:
  """``w_diag_mean``, ``w_offdiag_mean``, ``b_mean`` over a student's steps and over teaching.

  Args:
    student_histories: ``{label: history}`` of L2T-DLF student runs (x axis:
      student step; a record's statistics are those of the phi computed at the
      start of its evaluation interval, i.e. at the previous record's step).
    teach_history: the teaching records (x axis: outer step).
    path: if given, save the figure there.
  """
  rows = [
      r for r in (("student training", bool(student_histories)), ("teaching", bool(teach_history)))
      if r[1]
  ]
  fig = _new_figure(11, 2.8 * max(1, len(rows)))
  axes = fig.subplots(max(1, len(rows)), len(PHI_STATS), squeeze=False)
  for i, (what, _) in enumerate(rows):
    for j, key in enumerate(PHI_STATS):
      ax = axes[i, j]
      if what == "student training":
        for label, hist in student_histories.items():
          starts = [0] + [r["step"] for r in hist[:-1]]  # phi of a record is from its start
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


def write_plots(plots_dir: str,
                *,
                runs: Sequence[dict],
                teach_history: Sequence[dict],
                snapshots: Optional[Sequence] = None,
                soft_targets: bool = False,
                metric: str = "accuracy",
                phi=None,
                label_noise: Optional[dict] = None) -> list[str]:
  """Writes every plot that the available data supports; returns the file paths.

  ``soft_targets``: W is a soft-target W (columns on the simplex), so the per-class
  mass off the label (:func:`plot_target_mass`) is meaningful and is plotted too.
  ``metric``: the headline metric; the error bars show its test error.
  ``phi`` and ``label_noise``: the taught teacher's last ``phi`` along an L2T-DLF
  student's run and the ``label_noise.json`` record; with both, noisy labels add
  ``transition_comparison.png`` (:func:`plot_transition_comparison`; forward
  correction and soft-target forms) and a long tail adds ``per_class.png``
  (:func:`plot_per_class` of :func:`learned_per_class`); their numbers go to
  ``learned.json`` (``form``, ``transition`` ``[C][C]`` oriented as ``T``,
  ``per_class`` ``{values [C], label}``).
  """
  test_key = error_key("test", metric)
  paths = []
  if phi is not None and label_noise:
    learned = {"form": phi.name}  # the numbers of the two figures
    noise = label_noise.get("noise")
    if noise and isinstance(phi, (losses.ForwardCorrectionW, losses.SoftTargetW)):
      paths.append(os.path.join(plots_dir, "transition_comparison.png"))
      title = ("learned T (forward correction)"
               if isinstance(phi, losses.ForwardCorrectionW) else "learned W (soft targets)")
      learned["transition"] = analysis.learned_transition(phi).tolist()
      plot_transition_comparison(
          learned["transition"],
          noise["transition"],
          noise["realised_transition"],
          paths[-1],
          learned_title=title)
    per_class = learned_per_class(phi)
    if label_noise.get("imbalance") and per_class is not None:
      paths.append(os.path.join(plots_dir, "per_class.png"))
      learned["per_class"] = {"values": per_class[0].tolist(), "label": per_class[1]}
      plot_per_class(per_class[0], label_noise["class_counts"]["train"], paths[-1], per_class[1])
    if len(learned) > 1:
      paths.append(os.path.join(plots_dir, "learned.json"))
      io.write_json(paths[-1], learned)
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
    plot_error_bars([(METHOD_NAMES.get(m, m), [r[test_key]
                                               for r in runs
                                               if r["method"] == m], m == "l2t_dlf")
                     for m in methods],
                    paths[-1],
                    ylabel=f"{'balanced ' if metric != 'accuracy' else ''}test error % "
                    "(seeds as dots)")
  return paths
