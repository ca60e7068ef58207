"""The benchmark script stays runnable: ``--quick`` checks every path against autodiff."""
import json

from benchmarks import hypergrad as bench


def test_quick_benchmark_paths_agree(tmp_path, capsys):
  out, md = tmp_path / "bench.json", tmp_path / "bench.md"
  assert bench.main(["--quick", "--cases", "mlp", "--out", str(out), "--markdown", str(md)]) == 0
  rows = json.loads(out.read_text())["rows"]
  paths = {r["path"] for r in rows}
  assert {"forward", "autodiff", "ours/eqn45/store_all", "ours/vjp/checkpointed"} <= paths
  for r in rows:
    if r["path"] != "forward":
      assert r["rel_err_vs_autodiff"] < 1e-4, r
  assert "x fwd" in capsys.readouterr().out
  table = md.read_text().splitlines()
  assert table[0].startswith("| case | T | path |") and len(table) == 2 + len(rows)
  # Re-rendering the JSON gives the same table.
  again = tmp_path / "again.md"
  assert bench.main(["--from-json", str(out), "--markdown", str(again)]) == 0
  assert again.read_text() == md.read_text()
