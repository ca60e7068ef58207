"""The benchmark script stays runnable: ``--quick`` checks every path against autodiff."""
import json

from benchmarks import hypergrad as bench


def test_quick_benchmark_paths_agree(tmp_path, capsys):
  out = tmp_path / "bench.json"
  assert bench.main(["--quick", "--cases", "mlp", "--out", str(out)]) == 0
  rows = json.loads(out.read_text())["rows"]
  paths = {r["path"] for r in rows}
  assert {"forward", "autodiff", "ours/eqn45/store_all", "ours/vjp/checkpointed"} <= paths
  for r in rows:
    if r["path"] != "forward":
      assert r["rel_err_vs_autodiff"] < 1e-4, r
  assert "x fwd" in capsys.readouterr().out
