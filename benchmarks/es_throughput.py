"""ES throughput: one vmapped population vs the same students run one by one.

Usage::

    python -m benchmarks.es_throughput [--quick] [--steps 50] [--populations 8,32]
                                       [--rounds 5] [--out FILE] [--markdown FILE]

Student: MLP 784-500-300-10, batch 128, plain SGD lr 0.01, attention teacher
(full W), expected dev accuracy on 256 examples, float32, random inputs (cost
does not depend on the pixel values). For each population ``N`` it times one
antithetic-ES estimate (``N`` perturbed students + the centre, ``T`` steps each):

* ``vmap``: :func:`dlf_jax.evolution.make_es_gradient_fn` -- all ``N + 1``
  students in one ``jax.vmap`` of the unroll;
* ``map``: the same with ``chunk_size=1`` -- the students one after another
  inside one compiled program (``jax.lax.map``);
* ``loop``: one jitted single-student function (unroll + reward) called
  ``N + 1`` times from Python on the perturbed thetas (same ``eps``), then the
  same antithetic combination;

plus, for scale, ``forward`` (one student's unroll + reward) and ``reverse``
(the exact hypergradient, :func:`dlf_jax.hypergrad.hypergradient`). Timings
are interleaved rounds (every path once per round, so machine-speed drift hits
all alike) after a warm-up call; the table reports medians. The loop and
vmapped estimates are checked to agree. ``--quick`` runs tiny sizes (CI).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import dlf_jax
from dlf_jax import evolution, hypergrad, measures, models, teacher as teacher_lib, unroll

LEARNING_RATE = 0.01
SIGMA = 0.01


def setup(num_steps: int, quick: bool, seed: int = 0):
  """(student, teacher, theta, state, batches, dev), float32."""
  hidden, batch, shape, dev_size = ((32,), 8, (28, 28, 1), 16) if quick else \
      ((500, 300), 128, (28, 28, 1), 256)
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_steps, batch) + shape).astype(np.float32)
  y = rng.integers(0, 10, size=(num_steps, batch)).astype(np.int32)
  dev = {
      "x": rng.normal(size=(1, dev_size) + shape).astype(np.float32),
      "y": rng.integers(0, 10, size=(1, dev_size)).astype(np.int32)
  }
  student = dlf_jax.Student(
      models.MLP(hidden, 10), dlf_jax.make_optimizer("sgd", LEARNING_RATE), 10)
  teacher = teacher_lib.Teacher(teacher_lib.AttentionTeacher(10), total_steps=10 * num_steps)
  theta = teacher.init(jax.random.PRNGKey(1))
  state = student.init(jax.random.PRNGKey(0), {"x": x[0], "y": y[0]})
  return student, teacher, theta, state, {"x": x, "y": y}, dev


def _paths(student, teacher, theta, state, batches, dev, populations):
  """name -> (callable returning something to block on, population or None)."""
  measure = measures.ExpectedAccuracy()
  theta_flat, unravel = ravel_pytree(theta)
  key = jax.random.PRNGKey(42)

  @jax.jit
  def single(flat, state, batches, dev):
    final, metrics = unroll.unroll(student, teacher, unravel(flat), state, batches)
    return unroll.dev_measure(student, measure, final.params, final.model_state, dev)

  paths = {"forward": (lambda: single(theta_flat, state, batches, dev), 1)}
  reverse = hypergrad.make_hypergradient_fn(student, teacher, measure)
  paths["reverse"] = (lambda: reverse(theta, state, batches, dev).dtheta, None)
  for n in populations:
    es = evolution.make_es_gradient_fn(student, teacher, measure, population=n, sigma=SIGMA)
    paths[f"vmap/{n}"] = (lambda es=es: es(theta, state, batches, dev, key).dtheta, n)
    seq = evolution.make_es_gradient_fn(
        student, teacher, measure, population=n, sigma=SIGMA, chunk_size=1)
    paths[f"map/{n}"] = (lambda seq=seq: seq(theta, state, batches, dev, key).dtheta, n)

    @jax.jit
    def thetas(flat, n=n):
      eps = evolution._noise(key, n // 2, flat.shape[0], flat.dtype)
      return jnp.concatenate([flat[None], flat + SIGMA * eps, flat - SIGMA * eps]), eps

    @jax.jit
    def combine(rewards, eps, n=n):
      return unravel((rewards[1:n // 2 + 1] - rewards[n // 2 + 1:]) @ eps / (SIGMA * n))

    def loop(thetas=thetas, combine=combine):
      all_thetas, eps = thetas(theta_flat)
      rewards = jnp.stack(
          [single(all_thetas[i], state, batches, dev) for i in range(all_thetas.shape[0])])
      return combine(rewards, eps)

    paths[f"loop/{n}"] = (loop, n)
  return paths


def run(num_steps: int, populations, rounds: int, quick: bool) -> dict:
  student, teacher, theta, state, batches, dev = setup(num_steps, quick)
  paths = _paths(student, teacher, theta, state, batches, dev, populations)
  first, times, outs, errs = {}, {name: [] for name in paths}, {}, {}
  for name, (fn, _) in paths.items():
    t0 = time.perf_counter()
    outs[name] = jax.block_until_ready(fn())
    first[name] = time.perf_counter() - t0
  # The loop and the vmapped population compute the same estimate, up to float32 rounding:
  # R+ - R- at sigma = 0.01 is ~1e-4 of R, so the reward's rounding (~1e-7 R, different
  # summation order under vmap) shows at ~1e-3 relative in the estimate.
  for n in populations:
    for kind in ("vmap", "map"):
      a, b = (
          np.concatenate([np.ravel(x)
                          for x in jax.tree_util.tree_leaves(outs[f"{k}/{n}"])])
          for k in (kind, "loop"))
      err = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
      errs[f"{kind}/{n}"] = err
      if not err < 5e-2:
        raise AssertionError(f"{kind} and loop ES estimates differ (population {n}): "
                             f"rel err {err}")
  for _ in range(rounds):
    for name, (fn, _) in paths.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - t0)
  med = {name: statistics.median(t) for name, t in times.items()}
  rows = []
  for name, (_, n) in paths.items():
    es_path = name.split("/")[0] in ("vmap", "map", "loop")
    row = {
        "path": name,
        "population": n if es_path else None,
        "students": n + 1 if es_path else (1 if name == "forward" else None),
        "seconds": med[name],
        "x_forward": med[name] / med["forward"],
        "vs_loop_rel_err": errs.get(name),
        "first_call_s": first[name],
        "all_seconds": times[name]
    }
    if es_path:
      row["students_per_s"] = row["students"] / med[name]
    if name.startswith(("vmap/", "map/")):
      row["speedup_vs_loop"] = med[f"loop/{n}"] / med[name]
    rows.append(row)
  return {
      "config": {
          "steps": num_steps,
          "populations": list(populations),
          "rounds": rounds,
          "quick": quick,
          "sigma": SIGMA,
          "model": "MLP 32, batch 8" if quick else "MLP 784-500-300-10, batch 128",
          "jax": jax.__version__,
          "backend": jax.default_backend(),
          "cpu_count": os.cpu_count(),
          "platform": platform.platform()
      },
      "rows": rows
  }


def markdown(result: dict) -> str:
  lines = [
      "| path | students per estimate | median s | x forward | students/s "
      "| speed-up vs loop |", "|---|---|---|---|---|---|"
  ]
  for r in result["rows"]:
    students = "" if r["students"] is None else str(r["students"])
    per_s = f"{r['students_per_s']:.1f}" if "students_per_s" in r else ""
    speed = f"**{r['speedup_vs_loop']:.2f}x**" if "speedup_vs_loop" in r else ""
    lines.append(f"| {r['path']} | {students} | {r['seconds']:.3f} | {r['x_forward']:.2f} | "
                 f"{per_s} | {speed} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny sizes (CI)")
  p.add_argument("--steps", type=int, default=None, help="T (default 50; quick 3)")
  p.add_argument("--populations", default="8,32", help="comma-separated even populations")
  p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; quick 1)")
  p.add_argument(
      "--out", default=os.path.join("runs", "es_throughput.json"), help="write JSON here")
  p.add_argument("--markdown", default=None, help="also write the table as Markdown here")
  args = p.parse_args(argv)
  steps = args.steps or (3 if args.quick else 50)
  rounds = args.rounds or (1 if args.quick else 5)
  populations = [int(v) for v in args.populations.split(",")]
  result = run(steps, populations, rounds, args.quick)
  table = markdown(result)
  print(f"T = {steps}, {result['config']['model']}, median of {rounds} interleaved rounds")
  print(table)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(table)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
