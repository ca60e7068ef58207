"""The benchmark script stays runnable: ``--quick`` checks every path against autodiff."""
import json

from benchmarks import hypergrad as bench


def test_quick_benchmark_paths_agree(tmp_path, capsys, fast_compile):
  out, md = tmp_path / "bench.json", tmp_path / "bench.md"
  # T = 4: checkpointed chunks of ceil(sqrt(4)) = 2 steps, no tail chunk to compile too.
  assert bench.main(
      ["--quick", "--cases", "mlp", "--steps", "4", "--out",
       str(out), "--markdown",
       str(md)]) == 0
  rows = json.loads(out.read_text())["rows"]
  assert {r["T"] for r in rows} == {4}
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


def test_quick_full_horizon_benchmark(tmp_path, capsys, fast_compile):
  """``benchmarks.full_horizon --quick``: forward mode agrees with reverse / autodiff."""
  from benchmarks import full_horizon
  out, md = tmp_path / "fh.json", tmp_path / "fh.md"
  # One teacher size (P = 10): every path once, each compiled once.
  assert full_horizon.main(["--quick", "--params", "10", "--out",
                            str(out), "--markdown",
                            str(md)]) == 0
  rows = json.loads(out.read_text())["rows"]
  paths = {r["path"] for r in rows}
  assert {"forward", "forward-mode P=10", "reverse/store_all", "reverse/checkpointed",
          "autodiff"} <= paths
  checked = [r for r in rows if "rel_err" in r]
  assert len(checked) == 3 and all(r["rel_err"] < 1e-4 for r in checked), checked
  memory = [r for r in rows if r["kind"] == "memory"]
  assert len(memory) == 4 and all(r["temp_bytes"] > 0 for r in memory)
  assert "× forward unroll" in md.read_text() and len(md.read_text().splitlines()) == 2 + len(rows)
  assert "forward-mode P=10" in capsys.readouterr().out
