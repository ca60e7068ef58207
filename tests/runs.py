"""What the runner's end-to-end tests share (test_experiments.py, test_resume.py)."""
import json
import os

from experiments import summaries

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLOTS = ("w_heatmaps.png", "phi_statistics.png", "teach_curve.png", "accuracy_curves.png")


def numbers(results):
  """Everything deterministic in a results.json: per-run errors and full histories."""
  runs = {
      (r["method"], r["seed"]): {
          k: v for k, v in r.items() if k != "seconds"
      } for r in results["runs"]
  }
  methods = {
      m: {
          k: v for k, v in e.items() if k != "seconds"
      } for m, e in results["methods"].items()
  }
  return runs, methods, results["teach"]


def histories(workdir):
  """``{file: history}`` of every ``runs/*.json`` under ``workdir``, without wall-clock times."""
  out = {}
  for name in sorted(os.listdir(os.path.join(workdir, "runs"))):
    with open(os.path.join(workdir, "runs", name)) as f:
      out[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in json.load(f)["history"]]
  return out


def cli_env():
  """The environment of a CLI subprocess: this checkout importable, and XLA without most
  optimizations (as the ``fast_compile`` fixture), so numbers match the in-process runs."""
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


class Interrupt(Exception):
  """A simulated kill, raised by :func:`interrupt_at`'s hook right after a checkpoint."""


def interrupt_at(phase, step):
  """``(hook, seen)``: an ``on_checkpoint`` hook that records every ``(phase, step)`` it is
  called with in ``seen`` and raises :class:`Interrupt` after the checkpoint ``(phase, step)``."""
  seen = []

  def hook(p, s):
    seen.append((p, s))
    if (p, s) == (phase, step):
      raise Interrupt(f"interrupted after the checkpoint {p} @ {s}")

  return hook, seen


def check_outputs(workdir, results, config):
  """A finished image run's files, tables, plots and metrics agree with ``config``."""
  for name in ("results.json", "results.md", "metrics.csv", "config.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  taught = "l2t_dlf" in config.methods
  for name in PLOTS if taught else ("accuracy_curves.png",):
    assert os.path.getsize(os.path.join(workdir, "plots", name)) > 1000, name
  if taught:
    assert os.listdir(os.path.join(workdir, "tensorboard", "teach"))
  assert list(results["methods"]) == list(config.methods)
  for e in results["methods"].values():
    assert 0.0 <= e["test_error_mean"] <= 100.0 and len(e["seeds"]) == config.num_seeds
  assert len(results["runs"]) == len(config.methods) * config.num_seeds
  with open(os.path.join(workdir, "results.md")) as f:
    md = f.read()
  assert results["data"]["source"] in md
  for method in config.methods:
    assert f"| {summaries.METHOD_NAMES[method]} |" in md, method
  with open(os.path.join(workdir, "metrics.csv")) as f:
    lines = f.read().splitlines()
  assert lines[0] == "phase,method,seed,step,metric,value"
  assert any(line.startswith("teach,l2t_dlf,") for line in lines) == taught
  for method in config.methods:
    assert any(line.startswith(f"student,{method},") for line in lines), method
  assert (results["wall_seconds"]["teach"] or 0) > 0 or not taught
