r"""A sweep's table and plot, read from finished runs: test error against one config key.

Each run of the sweep is an ordinary ``experiments.main`` run (one setting of the
swept key per workdir); this reads their ``results.json`` and puts the methods side
by side: one line per method, the swept key on the x axis, and optionally one panel
per value of a second key. Nothing is trained here.

Usage (the noise-rate sweep of RESULTS.md, "Noisy labels")::

  for kind in pair symmetric; do for rate in 0.2 0.4 0.6; do
    python -m experiments.main --config=experiments/configs/mnist_noisy.py:glc \
        --workdir=runs/sweep/${kind}_${rate} --config.data.noise.kind=$kind \
        --config.data.noise.rate=$rate \
        "--config.methods=('cross_entropy','glc','l2t_dlf_anchor','l2t_dlf')"
  done; done
  python -m experiments.sweep --x=data.noise.rate --panel=data.noise.kind \
      --every_panel_at=0 --out=runs/sweep/report runs/sweep/*_*

A run is ``DIR`` (every method in its ``results.json``) or ``DIR:method,method`` (only
those), so that rows of one setting may come from several runs; a method may appear
once per setting. ``--every_panel_at=0``: a run whose x value is 0 joins every panel
(a noise rate of 0 is the same clean data for every noise kind).

Writes ``sweep.json`` (per setting and method: seeds, per-seed errors, mean, sample
std, and the paired difference of ``--reference`` to each other method: mean and
standard error over common seeds), ``sweep.md`` (one table per panel) and
``sweep.png``.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional, Sequence

from absl import app, flags

from experiments.plots import plot_sweep
from experiments.summaries import METHOD_NAMES, error_key, mean_std, paired_difference

_X = flags.DEFINE_string("x", None, "The swept config key (dotted), e.g. data.noise.rate.")
_PANEL = flags.DEFINE_string("panel", None, "A second config key: one panel per value.")
_EVERY_PANEL_AT = flags.DEFINE_float(
    "every_panel_at", None, "Runs whose x value is this join every panel (e.g. 0: clean).")
_METRIC = flags.DEFINE_enum("metric", "accuracy", ["accuracy", "balanced_accuracy"],
                            "Plain or balanced test error (long tails: balanced_accuracy).")
_REFERENCE = flags.DEFINE_string("reference", "l2t_dlf",
                                 "The method whose paired differences are reported.")
_NAMES = flags.DEFINE_list("names", [], "Display names, method=name (default: the usual).")
_OUT = flags.DEFINE_string("out", None, "Output directory for sweep.json / .md / .png.")


class SweepError(ValueError):
  """A run that cannot be read, or a sweep that is not well-formed (message: the fix)."""


def config_value(config: dict, key: str) -> Any:
  """``config[a][b]...`` of the dotted ``key`` of a run's config dict.

  Raises:
    SweepError: a part of ``key`` that the config does not have.
  """
  value = config
  for part in key.split("."):
    if not isinstance(value, dict) or part not in value:
      raise SweepError(f"The run's config has no key {key!r} (no {part!r}); give --x / --panel "
                       "as a dotted key of the run's config.json, e.g. data.noise.rate.")
    value = value[part]
  return value


def read_run(spec: str, x_key: str, panel_key: Optional[str], metric: str) -> list[dict]:
  """The rows of one run: ``DIR`` or ``DIR:method,method``.

  Args:
    spec: the run's workdir, optionally with ``:`` and the methods to keep.
    x_key, panel_key: dotted config keys (``panel_key`` may be None).
    metric: ``'accuracy'`` (plain test error) or ``'balanced_accuracy'``.

  Returns:
    ``[{'x', 'panel', 'method', 'seeds', 'errors', 'run'}, ...]``, errors in %.

  Raises:
    SweepError: no ``results.json`` (the run did not finish), a method it does not
      have, a key missing from its config, or no balanced errors where asked for.
  """
  path, _, only = spec.partition(":")
  results_path = os.path.join(path, "results.json")
  if not os.path.isfile(results_path):
    raise SweepError(f"{path}: no results.json (not a finished run). Run it (or resume it) "
                     "with python -m experiments.main first.")
  with open(results_path) as f:
    results = json.load(f)
  methods = results["methods"]
  keep = [m for m in only.split(",") if m] or list(methods)
  missing = [m for m in keep if m not in methods]
  if missing:
    raise SweepError(f"{path}: no method {missing} in results.json (it has {list(methods)}).")
  key = error_key("test", metric) + "s"  # the per-seed list: test_errors, test_balanced_errors
  rows = []
  for method in keep:
    if key not in methods[method]:
      raise SweepError(f"{path}: {method} has no {key} (the run reports no balanced "
                       "accuracy); use --metric=accuracy.")
    rows.append({
        "x": config_value(results["config"], x_key),
        "panel": None if panel_key is None else config_value(results["config"], panel_key),
        "method": method,
        "seeds": list(methods[method]["seeds"]),
        "errors": [float(e) for e in methods[method][key]],
        "run": path,
    })
  return rows


def collect(specs: Sequence[str],
            x_key: str,
            panel_key: Optional[str] = None,
            every_panel_at: Optional[float] = None,
            metric: str = "accuracy",
            reference: str = "l2t_dlf") -> dict:
  """The sweep of the runs ``specs``: per panel, per x value, per method.

  Args:
    specs: runs, each ``DIR`` or ``DIR:method,method`` (see the module docstring).
    x_key: the swept config key; its values must be numbers.
    panel_key: a config key with one panel per value, or None (one panel).
    every_panel_at: runs whose x equals this join every panel.
    metric: ``'accuracy'`` or ``'balanced_accuracy'``.
    reference: the method whose paired differences (``reference - other``, mean and
      standard error over common seeds, in points) are reported at each point.

  Returns:
    ``{'x': x_key, 'panel': panel_key, 'metric', 'reference', 'methods' (in the order
    first given), 'panels': {panel: {x:
    {method: {'seeds', 'errors', 'mean', 'std', 'run', 'reference_minus': [mean, se]
    or None}}}}}`` (panels and x values as strings, sorted; ``std``: sample std).

  Raises:
    SweepError: no runs; a non-numeric x; a method given twice for one setting; and
      what :func:`read_run` raises.
  """
  if not specs:
    raise SweepError("No runs given: pass the workdirs of the sweep's runs.")
  rows = [row for spec in specs for row in read_run(spec, x_key, panel_key, metric)]
  for row in rows:
    if isinstance(row["x"], bool) or not isinstance(row["x"], (int, float)):
      raise SweepError(f"{row['run']}: {x_key} = {row['x']!r} is not a number; sweep a numeric "
                       "key (the other one can be --panel).")
  panels = sorted({str(r["panel"]) for r in rows if not _joins_all(r, every_panel_at)})
  if not panels:  # every run is at every_panel_at
    panels = sorted({str(r["panel"]) for r in rows})
  table: dict = {p: {} for p in panels}
  for row in rows:
    for panel in (panels if _joins_all(row, every_panel_at) else [str(row["panel"])]):
      point = table[panel].setdefault(row["x"], {})
      if row["method"] in point:
        raise SweepError(f"{row['method']} at {x_key}={row['x']} ({panel_key}={panel}) is in "
                         f"two runs: {point[row['method']]['run']} and {row['run']}; keep one "
                         "with DIR:method,method.")
      mean, std = mean_std(row["errors"])
      point[row["method"]] = {
          "seeds": row["seeds"],
          "errors": row["errors"],
          "mean": mean,
          "std": std,
          "run": row["run"]
      }
  for panel in panels:
    for point in table[panel].values():
      for method, entry in point.items():
        diff = None
        if reference in point and method != reference:
          diff = paired_difference(point[reference], entry, key="errors")
        entry["reference_minus"] = None if diff is None else list(diff)
    table[panel] = {str(x): table[panel][x] for x in sorted(table[panel])}
  methods = list(dict.fromkeys(row["method"] for row in rows))  # in the order first given
  return {
      "x": x_key,
      "panel": panel_key,
      "metric": metric,
      "reference": reference,
      "methods": methods,
      "panels": table
  }


def _joins_all(row: dict, every_panel_at: Optional[float]) -> bool:
  return every_panel_at is not None and float(row["x"]) == float(every_panel_at)


def markdown(sweep: dict, names: Optional[dict] = None) -> str:
  """One table per panel: a row per method, a column per x value (mean ± std, %).

  The reference method's paired differences follow each table.
  """
  names = {**METHOD_NAMES, **(names or {})}
  error = "balanced test error" if sweep["metric"] == "balanced_accuracy" else "test error"
  lines = [f"# Sweep of {sweep['x']}: {error} %, mean ± sample std over seeds", ""]
  for panel, points in sweep["panels"].items():
    if sweep["panel"] is not None:
      lines += [f"## {sweep['panel']} = {panel}", ""]
    xs = list(points)
    header = " | ".join(f"{sweep['x']} = {x}" for x in xs)
    lines += [f"| method | {header} |", "|---|" + "---|" * len(xs)]
    for method in sweep["methods"]:
      cells = [(f"{points[x][method]['mean']:.2f} ± {points[x][method]['std']:.2f}"
                if method in points[x] else "—") for x in xs]
      lines.append(f"| {names.get(method, method)} | {' | '.join(cells)} |")
    ref = sweep["reference"]
    lines.append("")
    for x in xs:
      diffs = [
          f"{names.get(m, m)} {e['reference_minus'][0]:+.2f} ± {e['reference_minus'][1]:.2f}"
          for m, e in points[x].items()
          if e.get("reference_minus")
      ]
      if diffs:
        lines.append(f"- {sweep['x']} = {x}, {names.get(ref, ref)} minus each (paired, ± s.e.): " +
                     "; ".join(diffs))
    lines.append("")
  return "\n".join(lines)


def write(sweep: dict, out: str, names: Optional[dict] = None) -> None:
  """Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` into ``out``."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "sweep.json"), "w") as f:
    json.dump(sweep, f, indent=1)
  with open(os.path.join(out, "sweep.md"), "w") as f:
    f.write(markdown(sweep, names))
  plot_sweep(sweep, {**METHOD_NAMES, **(names or {})}, os.path.join(out, "sweep.png"))


def _parse_names(items: Sequence[str]) -> dict:
  names = {}
  for item in items:
    method, sep, name = item.partition("=")
    if not sep or not method or not name:
      raise SweepError(f"--names item {item!r}: write it as method=display name.")
    names[method] = name
  return names


def main(argv):
  """Reads the runs given as arguments and writes the sweep's report into ``--out``."""
  if not _X.value or not _OUT.value:
    print(
        "--x (the swept config key) and --out (a directory) are required, e.g. "
        "python -m experiments.sweep --x=data.noise.rate --out=runs/sweep/report DIR ...",
        file=sys.stderr)
    raise SystemExit(2)
  try:
    names = _parse_names(_NAMES.value)
    sweep = collect(argv[1:], _X.value, _PANEL.value, _EVERY_PANEL_AT.value, _METRIC.value,
                    _REFERENCE.value)
  except SweepError as e:
    print(f"experiments.sweep: {e}", file=sys.stderr)
    raise SystemExit(2) from None
  write(sweep, _OUT.value, names)
  print(markdown(sweep, names))


if __name__ == "__main__":
  app.run(main)
