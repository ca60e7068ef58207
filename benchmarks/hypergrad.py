"""Hypergradient benchmark: forward unroll vs our reverse vs ``jax.grad`` vs PyTorch peers.

Usage::

    python -m benchmarks.hypergrad [--quick] [--out FILE] [--cases mlp,lenet]
                                   [--steps 10,200] [--rounds 5] [--rss]

For each case and ``T`` it measures, in interleaved rounds (A B C ... A B C ...,
so machine-speed drift hits every path alike) after one warm-up call, the
median wall time of

* ``forward``: the unroll of ``T`` student steps (Eqn. 1) alone;
* ``ours/vjp/store_all``, ``ours/vjp/checkpointed``, ``ours/eqn45/store_all``
  (plain-SGD cases): forward + the hand-written reverse (Eqns. 3-5);
* ``autodiff``: ``jax.grad`` through the same scan; ``autodiff/remat``: the
  same with ``jax.checkpoint`` on each step;
* ``torch/higher``, ``torch/torchopt``: the same hypergradient in PyTorch
  (:mod:`benchmarks.torch_peers`), when the ``bench`` extra is installed and the
  case is one they replicate (MLP / LeNet with plain SGD), up to ``--torch-max-steps``;

plus each path's jit compile time, XLA's temp-buffer size
(``compiled.memory_analysis()``) and, with ``--rss``, the process's peak RSS
(each path in a fresh subprocess). Every path's hypergradient is checked
against ``autodiff``. Prints a table and writes JSON (``--out``). ``--quick``
(CI) runs tiny sizes and only checks the agreement. Paths whose compiled
program would not fit in the free RAM are skipped and reported as such.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Optional

import jax
import numpy as np

import dlf_jax
from dlf_jax import hypergrad, measures, models, teacher as teacher_lib, unroll
from benchmarks import torch_peers

# name: (model factory, input shape, batch size, optimizer, PyTorch peers replicate it)
CASES = {
    "mlp": (lambda dt: models.MLP((500, 300), 10, dtype=dt), (28, 28, 1), 128, "sgd", True),
    "mlp_small": (lambda dt: models.MLP((100, 50), 10, dtype=dt), (28, 28, 1), 20, "sgd", True),
    "lenet": (lambda dt: models.LeNet(10, dtype=dt), (28, 28, 1), 20, "sgd", True),
    "resnet8": (lambda dt: models.ResNet(8, 10, dtype=dt), (32, 32, 3), 32, "momentum", False),
}
QUICK_MODELS = {
    "mlp": lambda dt: models.MLP((32,), 10, dtype=dt),
    "mlp_small": lambda dt: models.MLP((8,), 10, dtype=dt),
    "lenet": lambda dt: models.LeNet(10, dtype=dt),
    "resnet8": lambda dt: models.ResNet(8, 10, width=4, dtype=dt)
}
DEFAULT_STEPS = {
    "mlp": "10,50,200,1000,2000",
    "mlp_small": "200",
    "lenet": "10,50,200",
    "resnet8": "10,50"
}
LEARNING_RATE = 0.01


def _dtype():
  return np.float64 if jax.config.read("jax_enable_x64") else np.float32


def setup(case: str, num_steps: int, quick: bool, seed: int = 0):
  """(student, teacher, theta, state, batches, dev); float64 when ``jax_enable_x64`` is on."""
  make_model, shape, batch, opt, _ = CASES[case]
  dt = _dtype()
  model = make_model(dt)
  if quick:
    model, batch = QUICK_MODELS[case](dt), 8
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_steps, batch) + shape).astype(dt)
  y = rng.integers(0, 10, size=(num_steps, batch)).astype(np.int32)
  dev = {
      "x": rng.normal(size=(1, 256) + shape).astype(dt),
      "y": rng.integers(0, 10, size=(1, 256)).astype(np.int32)
  }
  tx = dlf_jax.make_optimizer(opt, LEARNING_RATE, weight_decay=1e-4 if opt == "momentum" else 0.0)
  student = dlf_jax.Student(model, tx, 10)
  teacher = teacher_lib.Teacher(teacher_lib.AttentionTeacher(10), total_steps=10 * num_steps)
  theta = jax.tree_util.tree_map(lambda a: a.astype(dt), teacher.init(jax.random.PRNGKey(1)))
  state = student.init(jax.random.PRNGKey(0), {"x": x[0], "y": y[0]})
  state = state.replace(stats=jax.tree_util.tree_map(lambda a: a.astype(dt), state.stats))
  return student, teacher, theta, state, {"x": x, "y": y}, dev


def _jax_paths(case, student, teacher):
  m = measures.ExpectedAccuracy()
  make = lambda **kw: hypergrad.make_hypergradient_fn(student, teacher, m, **kw)
  paths = {
      "forward": jax.jit(lambda th, st, b, d: unroll.unroll(student, teacher, th, st, b)[0].params),
      "ours/vjp/store_all": make(method="vjp", memory="store_all"),
      "ours/vjp/checkpointed": make(method="vjp", memory="checkpointed"),
      "autodiff": make(method="autodiff"),
      "autodiff/remat": make(method="autodiff", memory="checkpointed"),
  }
  if CASES[case][3] == "sgd":
    paths["ours/eqn45/store_all"] = make(method="eqn45", memory="store_all")
  return paths


def flat(tree):
  return np.concatenate(
      [np.ravel(np.asarray(a, np.float64)) for a in jax.tree_util.tree_leaves(tree)])


def available_bytes() -> int:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _peak_rss_bytes() -> int:
  """This process's peak resident set size (``VmHWM``).

  Not ``getrusage``'s ``ru_maxrss``: on Linux that survives ``fork`` + ``exec``, so a
  probe subprocess would report its parent's peak.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _torch_probe(spec: str) -> None:
  """Child process: the PyTorch peers of one case, timed alone (no JAX work in between).

  Prints JSON ``{lib: {first_call_s, seconds [rounds], dtheta}}``. Run apart from the
  JAX paths because PyTorch's OpenMP threads keep spinning after each call and would
  slow whatever runs next in the same process.
  """
  case, steps, rounds, quick = spec.split(":")
  num_steps, rounds, quick = int(steps), int(rounds), quick == "1"
  student, teacher, theta, state, batches, dev = setup(case, num_steps, quick)
  out = {}
  for lib, ok in torch_peers.available().items():
    if not ok:
      continue
    fn = torch_peers.hypergradient_fn(
        lib, state.params, theta, num_steps, teacher.total_steps, LEARNING_RATE, dtype=_dtype())
    call = lambda fn=fn: fn(batches["x"], batches["y"], dev["x"][0], dev["y"][0])
    t0 = time.perf_counter()
    dtheta = call()[0]
    first = time.perf_counter() - t0
    times = []
    for _ in range(rounds):
      t0 = time.perf_counter()
      call()
      times.append(time.perf_counter() - t0)
    out[lib] = {
        "first_call_s": first,
        "seconds": times,
        "dtheta": jax.tree_util.tree_map(lambda a: np.asarray(a).tolist(), dtheta)
    }
  print(json.dumps(out))


def _torch_rows(case, num_steps, rounds, quick, max_steps) -> list[dict]:
  """Rows of the PyTorch peers (subprocess), with their ``dtheta`` under ``_dtheta``."""
  if not CASES[case][4] or num_steps > max_steps or not any(torch_peers.available().values()):
    return []
  cmd = [
      sys.executable, "-m", "benchmarks.hypergrad", "--torch-probe",
      f"{case}:{num_steps}:{rounds}:{int(quick)}"
  ]
  if jax.config.read("jax_enable_x64"):
    cmd.append("--x64")
  proc = subprocess.run(
      cmd,
      capture_output=True,
      text=True,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if proc.returncode != 0:
    raise RuntimeError(f"PyTorch peers failed for {case} T={num_steps}:\n{proc.stderr[-2000:]}")
  rows = []
  for lib, r in json.loads(proc.stdout.strip().splitlines()[-1]).items():
    rows.append({
        "case": case,
        "T": num_steps,
        "path": f"torch/{lib}",
        "compile_s": None,
        "temp_bytes": None,
        "first_call_s": r["first_call_s"],
        "_times": r["seconds"],
        "_dtheta": r["dtheta"]
    })
  return rows


def run_case(case: str,
             num_steps: int,
             rounds: int,
             quick: bool,
             torch_max_steps: int,
             only: str | None = None) -> list[dict]:
  """Rows ``{case, T, path, seconds, x_forward, x_autodiff, compile_s, temp_bytes, ...}``."""
  student, teacher, theta, state, batches, dev = setup(case, num_steps, quick)
  args = (theta, state, batches, dev)
  rows, outs = [], {}
  free = available_bytes()
  for name, fn in _jax_paths(case, student, teacher).items():
    if only and name != only:
      continue
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    row = {"case": case, "T": num_steps, "path": name, "compile_s": compile_s, "temp_bytes": temp}
    if temp is not None and temp > 0.8 * free:
      row["skipped"] = f"needs {temp / 2**30:.1f} GiB temp, {free / 2**30:.1f} GiB free"
      rows.append(row)
      continue
    out = compiled(*args)
    jax.block_until_ready(out)
    outs[name] = out.dtheta if hasattr(out, "dtheta") else None
    row["_fn"] = lambda c=compiled: jax.block_until_ready(c(*args))
    rows.append(row)
  timings = {r["path"]: [] for r in rows if "_fn" in r}
  for _ in range(rounds):  # interleaved rounds
    for row in rows:
      if "_fn" in row:
        t0 = time.perf_counter()
        row["_fn"]()
        timings[row["path"]].append(time.perf_counter() - t0)
  if not only:
    for row in _torch_rows(case, num_steps, rounds, quick, torch_max_steps):
      timings[row["path"]] = row.pop("_times")
      outs[row["path"]] = row.pop("_dtheta")
      rows.append(row)
  med = {k: statistics.median(v) for k, v in timings.items() if v}
  ref = flat(outs["autodiff"]) if outs.get("autodiff") is not None else None
  for row in rows:
    row.pop("_fn", None)
    if row["path"] in med:
      t = med[row["path"]]
      row.update(
          seconds=t,
          x_forward=t / med["forward"] if "forward" in med else None,
          x_autodiff=t / med["autodiff"] if "autodiff" in med else None)
    if ref is not None and outs.get(row["path"]) is not None:
      d = flat(outs[row["path"]])
      row["rel_err_vs_autodiff"] = float(np.linalg.norm(d - ref) / np.linalg.norm(ref))
  return rows


def _rss_probe(spec: str) -> None:
  """Child process: set up, compile and run one path once, print peak RSS (JSON)."""
  case, steps, path = spec.split(":", 2)
  before = _peak_rss_bytes()
  if path.startswith("torch/"):
    student, teacher, theta, state, batches, dev = setup(case, int(steps), False)
    before = _peak_rss_bytes()
    fn = torch_peers.hypergradient_fn(
        path[len("torch/"):],
        state.params,
        theta,
        int(steps),
        teacher.total_steps,
        LEARNING_RATE,
        dtype=_dtype())
    fn(batches["x"], batches["y"], dev["x"][0], dev["y"][0])
  else:
    run_case(case, int(steps), rounds=1, quick=False, torch_max_steps=10**9, only=path)
  print(json.dumps({"peak_rss_bytes": _peak_rss_bytes(), "setup_rss_bytes": before}))


def _measure_rss(row: dict) -> None:
  spec = f"{row['case']}:{row['T']}:{row['path']}"
  cmd = [sys.executable, "-m", "benchmarks.hypergrad", "--rss-probe", spec]
  if jax.config.read("jax_enable_x64"):
    cmd.append("--x64")
  proc = subprocess.run(
      cmd,
      capture_output=True,
      text=True,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    row["peak_rss_bytes"] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_bytes"]
  except (IndexError, ValueError, KeyError):
    row["peak_rss_bytes"] = None
    row["rss_error"] = (proc.stderr or proc.stdout)[-300:]


def fmt(v, spec):
  return "" if v is None else format(v, spec)


def print_table(rows: list[dict]) -> None:
  hdr = (f"{'case':9} {'T':>5} {'path':22} {'median s':>9} {'x fwd':>6} {'x AD':>6} "
         f"{'compile s':>9} {'temp MB':>8} {'RSS MB':>7} {'rel err':>8}")
  print(hdr)
  for r in rows:
    if "skipped" in r:
      print(f"{r['case']:9} {r['T']:5d} {r['path']:22} skipped: {r['skipped']}")
      continue
    temp = None if r.get("temp_bytes") is None else r["temp_bytes"] / 2**20
    rss = None if r.get("peak_rss_bytes") is None else r["peak_rss_bytes"] / 2**20
    print(f"{r['case']:9} {r['T']:5d} {r['path']:22} {fmt(r.get('seconds'), '9.4f'):>9} "
          f"{fmt(r.get('x_forward'), '6.2f'):>6} {fmt(r.get('x_autodiff'), '6.2f'):>6} "
          f"{fmt(r.get('compile_s'), '9.2f'):>9} {fmt(temp, '8.1f'):>8} {fmt(rss, '7.0f'):>7} "
          f"{fmt(r.get('rel_err_vs_autodiff'), '8.1e'):>8}")


def markdown_table(rows: list[dict]) -> str:
  """The rows as a Markdown table (what ``benchmarks/RESULTS.md`` shows)."""
  out = [
      "| case | T | path | median s | × forward | × autodiff | compile s | XLA temp MB "
      "| peak RSS MB | rel. err vs autodiff |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  ]
  for r in rows:
    if "skipped" in r:
      out.append(f"| {r['case']} | {r['T']} | {r['path']} | skipped: {r['skipped']} |||||||")
      continue
    temp = None if r.get("temp_bytes") is None else r["temp_bytes"] / 2**20
    rss = None if r.get("peak_rss_bytes") is None else r["peak_rss_bytes"] / 2**20
    out.append(f"| {r['case']} | {r['T']} | {r['path']} | {fmt(r.get('seconds'), '.4f')} | "
               f"{fmt(r.get('x_forward'), '.2f')} | {fmt(r.get('x_autodiff'), '.2f')} | "
               f"{fmt(r.get('compile_s'), '.2f')} | {fmt(temp, '.1f')} | {fmt(rss, '.0f')} | "
               f"{fmt(r.get('rel_err_vs_autodiff'), '.1e')} |")
  return "\n".join(out) + "\n"


def write_outputs(out: Optional[str], markdown: Optional[str], meta: dict, rows: list,
                  table: str) -> None:
  """Writes ``{meta, rows}`` as JSON to ``out`` and the markdown ``table`` to ``markdown``."""
  if out:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
      json.dump({"meta": meta, "rows": rows}, f, indent=1)
  if markdown:
    with open(markdown, "w") as f:
      f.write(table)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny sizes; agreement check only (CI)")
  p.add_argument(
      "--cases",
      default="mlp,mlp_small,lenet,resnet8",
      help=f"comma-separated, from {sorted(CASES)}")
  p.add_argument("--steps", default=None, help="comma-separated T values (default per case)")
  p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; quick 1)")
  p.add_argument(
      "--torch-max-steps",
      type=int,
      default=200,
      help="run the PyTorch peers only up to this T (they are slow)")
  p.add_argument(
      "--rss", action="store_true", help="also measure each path's peak RSS in a fresh subprocess")
  p.add_argument("--out", default=None, help="write JSON here")
  p.add_argument("--markdown", default=None, help="also write the table as Markdown here")
  p.add_argument(
      "--from-json",
      default=None,
      help="render a previous --out JSON (with --markdown; with --rss and --out, "
      "re-measure its peak RSS column) instead of running the benchmark")
  p.add_argument(
      "--x64",
      action="store_true",
      help="everything in float64 (JAX and the PyTorch peers): exact agreement check")
  p.add_argument("--rss-probe", default=None, help=argparse.SUPPRESS)
  p.add_argument("--torch-probe", default=None, help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.x64:
    jax.config.update("jax_enable_x64", True)
  if a.from_json:
    with open(a.from_json) as f:
      saved = json.load(f)
    rows = saved["rows"]
    if a.rss:  # (re)measure peak RSS for the saved rows
      for r in rows:
        if "skipped" not in r:
          _measure_rss(r)
      if a.out:
        with open(a.out, "w") as f:
          json.dump(saved, f, indent=1)
    print_table(rows)
    if a.markdown:
      with open(a.markdown, "w") as f:
        f.write(markdown_table(rows))
    return 0
  if a.torch_probe:
    _torch_probe(a.torch_probe)
    return 0
  if a.rss_probe:
    _rss_probe(a.rss_probe)
    return 0
  rounds = a.rounds or (1 if a.quick else 5)
  rows = []
  for case in a.cases.split(","):
    if case not in CASES:
      p.error(f"unknown case {case!r}; choose from {sorted(CASES)}")
    steps = a.steps or ("5" if a.quick else DEFAULT_STEPS[case])
    for t in [int(s) for s in steps.split(",")]:
      print(f"[benchmark] {case} T={t} ...", file=sys.stderr, flush=True)
      case_rows = run_case(case, t, rounds, a.quick, a.torch_max_steps)
      if a.rss:
        for r in case_rows:
          if "skipped" not in r:
            _measure_rss(r)
      rows += case_rows
  print_table(rows)
  meta = {
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "x64": bool(a.x64),
      "devices": [str(d) for d in jax.devices()],
      "cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      "machine": platform.machine(),
      "date": time.strftime("%Y-%m-%d"),
      "command": " ".join(["python -m benchmarks.hypergrad"] + sys.argv[1:]),
      "torch_peers": torch_peers.available()
  }
  if torch_peers.torch is not None:
    meta["torch"] = torch_peers.torch.__version__
  write_outputs(a.out, a.markdown, meta, rows, markdown_table(rows))
  # JAX paths share the trajectory's arithmetic: they must agree to float rounding. The
  # PyTorch peers round differently (other conv/matmul kernels); over long float32
  # unrolls ReLU / max-pool switches amplify that, so they get a looser bound here and
  # the exact check is --x64 (measured: 1e-10 at T = 200 on LeNet).
  bad = [
      r for r in rows if r.get("rel_err_vs_autodiff", 0) > (
          5e-2 if r["path"].startswith("torch/") and not a.x64 else 1e-3)
  ]
  if bad:
    print("FAIL: paths disagree with autodiff:",
          [(r["case"], r["T"], r["path"], r["rel_err_vs_autodiff"]) for r in bad])
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
