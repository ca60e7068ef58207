"""Hypergradient benchmark: forward unroll vs hand-written reverse vs ``jax.grad`` through the scan.

Usage::

    python -m benchmarks.hypergrad [--quick] [--out FILE] [--cases mlp,lenet] [--steps 10,200]

For each case and ``T`` it measures, in interleaved rounds (A B C ... A B C ...,
so machine-speed drift hits every path alike), the median wall time of

* ``forward``: the unroll of ``T`` student steps (Eqn. 1) alone;
* ``ours/<method>/<memory>``: forward + the hand-written reverse (Eqns. 3-5);
* ``autodiff``: ``jax.grad`` through the same scan; ``autodiff/remat``: the
  same with ``jax.checkpoint`` on each step;

plus each path's jit compile time and XLA's temp-buffer size
(``compiled.memory_analysis()``), and checks that every path's hypergradient
agrees with autodiff. It prints a table and writes JSON (``--out``).
``--quick`` (CI) runs tiny sizes and only checks the agreement.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import dlf_jax
from dlf_jax import hypergrad, measures, models, teacher as teacher_lib, unroll

CASES = {
    # name: (model factory, input shape, batch size)
    "mlp": (lambda: models.MLP((500, 300), 10), (28, 28, 1), 128),
    "lenet": (lambda: models.LeNet(10), (28, 28, 1), 20),
}


def _setup(case: str, num_steps: int, quick: bool, seed: int = 0):
  make_model, shape, batch = CASES[case]
  model = make_model()
  if quick:
    model = models.MLP((32,), 10) if case == "mlp" else models.LeNet(10)
    batch = 8
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_steps, batch) + shape).astype(np.float32)
  y = rng.integers(0, 10, size=(num_steps, batch)).astype(np.int32)
  dev = {"x": rng.normal(size=(1, 256) + shape).astype(np.float32),
         "y": rng.integers(0, 10, size=(1, 256)).astype(np.int32)}
  student = dlf_jax.Student(model, dlf_jax.make_optimizer("sgd", 0.01), 10)
  teacher = teacher_lib.Teacher(teacher_lib.AttentionTeacher(10), total_steps=10 * num_steps)
  theta = teacher.init(jax.random.PRNGKey(1))
  state = student.init(jax.random.PRNGKey(0), {"x": x[0], "y": y[0]})
  return student, teacher, theta, state, {"x": x, "y": y}, dev


def _paths(student, teacher, quick):
  m = measures.ExpectedAccuracy()
  paths = {
      "forward": jax.jit(lambda th, st, b, d: unroll.unroll(student, teacher, th, st, b)[0].params),
      "autodiff": hypergrad.make_hypergradient_fn(student, teacher, m, method="autodiff"),
      "autodiff/remat": hypergrad.make_hypergradient_fn(student, teacher, m, method="autodiff",
                                                        memory="checkpointed"),
  }
  for method in ("eqn45", "vjp"):
    for memory in ("store_all", "checkpointed"):
      paths[f"ours/{method}/{memory}"] = hypergrad.make_hypergradient_fn(
          student, teacher, m, method=method, memory=memory)
  return paths


def _flat(tree):
  return jnp.concatenate([jnp.ravel(a) for a in jax.tree_util.tree_leaves(tree)])


def run_case(case: str, num_steps: int, rounds: int, quick: bool) -> list[dict]:
  student, teacher, theta, state, batches, dev = _setup(case, num_steps, quick)
  args = (theta, state, batches, dev)
  rows, outs, timings = [], {}, {}
  for name, fn in _paths(student, teacher, quick).items():
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    out = compiled(*args)
    jax.block_until_ready(out)
    outs[name] = out
    timings[name] = []
    rows.append({"case": case, "T": num_steps, "path": name, "compile_s": compile_s,
                 "temp_bytes": temp, "_fn": compiled})
  for _ in range(rounds):                       # interleaved rounds
    for row in rows:
      t0 = time.perf_counter()
      jax.block_until_ready(row["_fn"](*args))
      timings[row["path"]].append(time.perf_counter() - t0)
  ref = _flat(outs["autodiff"].dtheta)
  fwd = statistics.median(timings["forward"])
  ad = statistics.median(timings["autodiff"])
  for row in rows:
    row.pop("_fn")
    t = statistics.median(timings[row["path"]])
    row.update(seconds=t, x_forward=t / fwd, x_autodiff=t / ad)
    if row["path"] != "forward":
      d = _flat(outs[row["path"]].dtheta)
      row["rel_err_vs_autodiff"] = float(jnp.linalg.norm(d - ref) / jnp.linalg.norm(ref))
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny sizes; agreement check only (CI)")
  p.add_argument("--cases", default="mlp,lenet")
  p.add_argument("--steps", default=None, help="comma-separated T values")
  p.add_argument("--rounds", type=int, default=None)
  p.add_argument("--out", default=None, help="write JSON here")
  a = p.parse_args(argv)
  steps = [int(s) for s in (a.steps or ("5" if a.quick else "10,50,200")).split(",")]
  rounds = a.rounds or (1 if a.quick else 5)
  rows = []
  for case in a.cases.split(","):
    if case not in CASES:
      p.error(f"unknown case {case!r}; choose from {sorted(CASES)}")
    for t in steps:
      rows += run_case(case, t, rounds, a.quick)
  hdr = f"{'case':6} {'T':>5} {'path':26} {'median s':>9} {'x fwd':>6} {'x AD':>6} {'compile s':>9} {'temp MB':>8} {'rel err':>9}"
  print(hdr)
  for r in rows:
    temp = "" if r["temp_bytes"] is None else f"{r['temp_bytes'] / 2**20:8.1f}"
    err = f"{r.get('rel_err_vs_autodiff', 0):9.1e}" if "rel_err_vs_autodiff" in r else ""
    print(f"{r['case']:6} {r['T']:5d} {r['path']:26} {r['seconds']:9.4f} {r['x_forward']:6.2f} "
          f"{r['x_autodiff']:6.2f} {r['compile_s']:9.2f} {temp:>8} {err}")
  meta = {"jax": jax.__version__, "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()], "python": platform.python_version(),
          "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
  if a.out:
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
      json.dump({"meta": meta, "rows": rows}, f, indent=1)
  bad = [r for r in rows if r.get("rel_err_vs_autodiff", 0) > 1e-4]
  if bad:
    print("FAIL: paths disagree with autodiff:", [(r["case"], r["T"], r["path"]) for r in bad])
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
