"""experiments.sweep: a sweep's table and plot from finished runs' results.json."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import sweep
from runs import ROOT, cli_env


def _run(tmp_path, name, kind, rate, errors, *, balanced=None):
  """A finished run's results.json: ``errors = {method: [error per seed 0..]}``."""
  path = tmp_path / name
  path.mkdir()
  methods = {}
  for method, errs in errors.items():
    methods[method] = {"seeds": list(range(len(errs))), "test_errors": errs}
    if balanced is not None:
      methods[method]["test_balanced_errors"] = balanced[method]
  config = {"data": {"noise": {"kind": kind, "rate": rate}, "dev_size": 1000}}
  (path / "results.json").write_text(json.dumps({"config": config, "methods": methods}))
  return str(path)


def test_collect_groups_by_key_pairs_seeds_and_shares_the_clean_point(tmp_path):
  clean = _run(tmp_path, "clean", "pair", 0.0, {"cross_entropy": [5.0, 6.0], "l2t_dlf": [5.5, 5.0]})
  pair = _run(tmp_path, "pair40", "pair", 0.4, {
      "cross_entropy": [40.0, 38.0, 39.0],
      "glc": [8.0, 7.0, 9.0],
      "l2t_dlf": [7.0, 6.5, 7.5]
  })
  sym = _run(tmp_path, "sym60", "symmetric", 0.6, {"cross_entropy": [52.0, 50.0]})
  extra = _run(tmp_path, "sym60_teacher", "symmetric", 0.6, {
      "l2t_dlf": [33.0, 30.0],
      "cross_entropy": [0.0, 0.0]
  })
  got = sweep.collect([clean, pair, sym, f"{extra}:l2t_dlf"],
                      "data.noise.rate",
                      "data.noise.kind",
                      every_panel_at=0)
  assert list(got["panels"]) == ["pair", "symmetric"]
  assert list(got["panels"]["pair"]) == ["0.0", "0.4"]
  assert list(got["panels"]["symmetric"]) == ["0.0", "0.6"]  # the clean run joins both panels
  ce = got["panels"]["pair"]["0.4"]["cross_entropy"]
  assert ce["mean"] == pytest.approx(39.0) and ce["std"] == pytest.approx(1.0)
  # L2T-DLF - GLC per seed: -1, -0.5, -1.5 -> mean -1, s.e. 0.5 / sqrt(3)
  diff = got["panels"]["pair"]["0.4"]["glc"]["reference_minus"]
  np.testing.assert_allclose(diff, [-1.0, 0.5 / np.sqrt(3)])
  assert got["panels"]["pair"]["0.4"]["l2t_dlf"]["reference_minus"] is None
  # DIR:method keeps only that method: CE at 0.6 comes from the first run only.
  point = got["panels"]["symmetric"]["0.6"]
  assert point["cross_entropy"]["mean"] == pytest.approx(51.0)
  np.testing.assert_allclose(point["cross_entropy"]["reference_minus"], [-19.5, 0.5])
  text = sweep.markdown(got)
  assert "| Cross-entropy | 5.50 ± 0.71 | 39.00 ± 1.00 |" in text
  assert "GLC (forward correction, T estimated on dev) -1.00 ± 0.29" in text


def test_balanced_metric_and_a_numeric_key_without_panels(tmp_path):
  runs = [
      _run(
          tmp_path,
          f"dev{i}",
          "pair",
          0.4, {"l2t_dlf": [10.0 + i, 12.0 + i]},
          balanced={"l2t_dlf": [20.0 + i, 22.0 + i]}) for i in range(2)
  ]
  for i, run in enumerate(runs):  # dev sizes 100 and 300
    results = json.loads(open(os.path.join(run, "results.json")).read())
    results["config"]["data"]["dev_size"] = (100, 300)[i]
    with open(os.path.join(run, "results.json"), "w") as f:
      json.dump(results, f)
  got = sweep.collect(runs, "data.dev_size", metric="balanced_accuracy")
  assert list(got["panels"]) == ["None"] and list(got["panels"]["None"]) == ["100", "300"]
  assert got["panels"]["None"]["300"]["l2t_dlf"]["mean"] == pytest.approx(22.0)
  sweep.write(got, str(tmp_path / "out"))
  assert sorted(os.listdir(tmp_path / "out")) == ["sweep.json", "sweep.md", "sweep.png"]
  assert "balanced test error" in (tmp_path / "out" / "sweep.md").read_text()


def test_bad_sweeps_name_the_problem(tmp_path):
  a = _run(tmp_path, "a", "pair", 0.4, {"cross_entropy": [1.0, 2.0]})
  b = _run(tmp_path, "b", "pair", 0.4, {"cross_entropy": [3.0, 4.0]})
  with pytest.raises(sweep.SweepError, match="in two runs: .*a and .*b; keep one"):
    sweep.collect([a, b], "data.noise.rate")
  with pytest.raises(sweep.SweepError, match="no results.json"):
    sweep.collect([str(tmp_path / "nowhere")], "data.noise.rate")
  with pytest.raises(sweep.SweepError, match="no method \\['glc'\\]"):
    sweep.collect([f"{a}:glc"], "data.noise.rate")
  with pytest.raises(sweep.SweepError, match="no key 'data.noise.ratio'"):
    sweep.collect([a], "data.noise.ratio")
  with pytest.raises(sweep.SweepError, match="is not a number"):
    sweep.collect([a], "data.noise.kind")
  with pytest.raises(sweep.SweepError, match="no test_balanced_errors"):
    sweep.collect([a], "data.noise.rate", metric="balanced_accuracy")
  with pytest.raises(sweep.SweepError, match="No runs"):
    sweep.collect([], "data.noise.rate")


def test_cli_writes_the_report_and_ends_cleanly_on_bad_input(tmp_path):
  a = _run(tmp_path, "a", "pair", 0.2, {"cross_entropy": [1.0, 2.0], "l2t_dlf": [0.5, 1.0]})
  cmd = [
      sys.executable, "-m", "experiments.sweep", "--x=data.noise.rate",
      f"--out={tmp_path / 'report'}", "--names=l2t_dlf=L2T-DLF (GLC start)", a
  ]
  done = subprocess.run(cmd, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "| L2T-DLF (GLC start) | 0.75 ± 0.35 |" in done.stdout
  assert os.path.isfile(tmp_path / "report" / "sweep.png")
  bad = subprocess.run(
      cmd[:4] + [f"--out={tmp_path / 'r2'}", str(tmp_path / "none")],
      cwd=ROOT,
      env=cli_env(),
      capture_output=True,
      text=True,
      timeout=120)
  assert bad.returncode == 2 and "no results.json" in bad.stderr and "Traceback" not in bad.stderr
