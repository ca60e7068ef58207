"""Full-horizon hypergradients: forward mode vs the reverse scan (time and memory).

Usage::

    python -m benchmarks.full_horizon [--quick] [--out FILE] [--markdown FILE]
                                      [--params 10,40,160] [--steps 200,2000] [--full]
                                      [--memory-steps 200,2000,10000] [--rounds 3]
                                      [--chunk 200] [--budget-s 900]

Student: MLP 784-500-300-10, batch 128, float32, plain SGD lr 0.01 (as
``benchmarks.hypergrad``'s ``mlp`` case), expected dev accuracy on 256
examples, random inputs (the cost does not depend on the pixel values).
Teacher: :class:`BankTeacher` with exactly ``P`` parameters -- a bank of
``K = P / 10`` diagonal loss vectors ``w_k`` (``W_t = diag(1 + sum_k a_k w_k)``,
``b = 0``), mixed by ``a = softmax(R s_t)`` with a fixed random ``R``; only
the bank is learned. Forward mode costs ~``P`` Jacobian-vector products of
the student step per step, whatever the teacher computes, so this isolates the
dependence on ``P``.

Two measurements:

* **time** (``--steps``): the median wall time of ``N`` steps streamed from
  the host in chunks of ``--chunk`` steps (the same device-resident chunk is
  fed again: the timing does not depend on the data), in interleaved rounds
  after a warm-up call, for ``forward`` (the unroll alone) and
  ``forward-mode P=...`` (:mod:`dlf_jax.forward_hypergrad`: init + chunks +
  read-out); plus, at ``N`` where the whole ``[N, B, ...]`` batch array fits,
  ``reverse/store_all``, ``reverse/checkpointed`` and ``autodiff``
  (``jax.grad`` through the scan) with the ``P = max`` teacher. Reported as
  time / the forward unroll's. A (path, N) whose predicted time (from its
  warm-up on one chunk) times ``rounds + 1`` exceeds ``--budget-s`` is skipped
  and reported as such.
* **memory** (``--memory-steps``, compile only, nothing runs): XLA's temp
  buffers (``compiled.memory_analysis().temp_size_in_bytes``) of the one-call
  program for ``N`` steps: forward mode (each ``P``), reverse ``store_all`` /
  ``checkpointed`` and ``autodiff``.

Checks (column ``rel. err``): every forward-mode hypergradient against the
reverse scan on one chunk (its warm-up), and against ``autodiff`` on ``N``
steps where both ran (``P = max``); the reverse paths against ``autodiff``.
Exit status 1 if any disagrees by more than 1e-3 (float32). ``--quick`` (CI):
tiny sizes, one round.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import hypergrad as hypergrad_bench
from benchmarks.hypergrad import available_bytes, flat, fmt, setup
from dlf_jax import forward_hypergrad, hypergrad, losses, measures, unroll
from dlf_jax import teacher as teacher_lib

NUM_CLASSES = 10


class BankTeacher(nn.Module):
  """``W_t = diag(1 + a_t @ bank)``, ``a_t = softmax(R s_t)``: exactly ``num_params`` parameters.

  ``bank`` is ``[K, C]`` with ``K = num_params / C``; ``R`` ``[S, K]`` is a
  fixed random projection (not a parameter); ``b = 0``.
  """
  num_classes: int = NUM_CLASSES
  num_params: int = 10

  @nn.compact
  def __call__(self, s):
    if self.num_params % self.num_classes:
      raise ValueError(f"num_params={self.num_params} must be a multiple of "
                       f"num_classes={self.num_classes}.")
    k = self.num_params // self.num_classes
    proj = jax.random.normal(jax.random.PRNGKey(7), (s.shape[-1], k), s.dtype)
    a = jax.nn.softmax(s @ proj)
    bank = self.param("bank", nn.initializers.normal(0.1), (k, self.num_classes))
    w = 1.0 + a.astype(bank.dtype) @ bank
    return losses.DiagonalW(w, jnp.zeros((self.num_classes,), bank.dtype))


def _problem(num_params: int, chunk: int, quick: bool, total_steps: int):
  """(student, teacher, theta, state, chunk_batches, dev) with a ``P``-parameter teacher."""
  student, _, _, state, batches, dev = setup("mlp", chunk, quick)
  teacher = teacher_lib.Teacher(BankTeacher(NUM_CLASSES, num_params), total_steps=total_steps)
  theta = teacher.init(jax.random.PRNGKey(1))
  assert forward_hypergrad.num_teacher_params(theta) == num_params
  return student, teacher, theta, state, jax.device_put(batches), jax.device_put(dev)


def _tile(batches, num_steps: int):
  """``[num_steps, B, ...]``: the chunk repeated (on device)."""

  def tile(x):
    reps = -(-num_steps // x.shape[0])
    return jnp.concatenate([x] * reps)[:num_steps]

  return jax.tree_util.tree_map(tile, batches)


def _chunks(batches, num_steps: int):
  """The chunk sequence of an ``N``-step stream: the chunk, then a shorter tail if needed."""
  size = jax.tree_util.tree_leaves(batches)[0].shape[0]
  full, rem = divmod(num_steps, size)
  tail = jax.tree_util.tree_map(lambda x: x[:rem], batches) if rem else None
  return [batches] * full + ([tail] if rem else [])


def _temp_bytes(fn, *args) -> tuple[int | None, float]:
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  seconds = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  return (getattr(mem, "temp_size_in_bytes", None) if mem is not None else None), seconds


def memory_rows(params, steps, quick, chunk) -> list[dict]:
  """XLA temp bytes of the one-call programs for ``N`` steps (compile only)."""
  m = measures.ExpectedAccuracy()
  rows = []
  for n in steps:
    for p in params:
      student, teacher, theta, state, batches, dev = _problem(p, chunk, quick, max(steps))
      sds = jax.tree_util.tree_map(
          lambda x, n=n: jax.ShapeDtypeStruct((n,) + x.shape[1:], x.dtype), batches)
      paths = {
          f"forward-mode P={p}":
              lambda *a, student=student, teacher=teacher: (forward_hypergrad.forward_hypergradient(
                  student, teacher, m, *a, max_params=max(params)).dtheta)
      }
      if p == max(params):
        for name, kw in [("reverse/store_all", dict(method="vjp", memory="store_all")),
                         ("reverse/checkpointed", dict(method="vjp", memory="checkpointed")),
                         ("autodiff", dict(method="autodiff"))]:
          paths[name] = (lambda *a, student=student, teacher=teacher, kw=kw: hypergrad.
                         hypergradient(student, teacher, m, *a, **kw).dtheta)
      for name, fn in paths.items():
        print(f"[full_horizon] memory {name} N={n} ...", file=sys.stderr, flush=True)
        temp, compile_s = _temp_bytes(fn, theta, state, sds, dev)
        rows.append({
            "kind": "memory",
            "path": name,
            "P": p,
            "N": n,
            "temp_bytes": temp,
            "compile_s": compile_s
        })
  return rows


def time_rows(params, steps, quick, chunk, rounds, budget_s) -> list[dict]:
  """Median wall time of ``N`` streamed steps per path, interleaved rounds."""
  m = measures.ExpectedAccuracy()
  p_max = max(params)
  problems = {p: _problem(p, chunk, quick, max(steps)) for p in params}
  student, _, _, state, batches, dev = problems[p_max]
  base_teacher, base_theta = problems[p_max][1], problems[p_max][2]

  unroll_chunk = jax.jit(lambda th, st, b: unroll.unroll(student, base_teacher, th, st, b)[0])

  def forward_unroll(n):
    st = state
    for b in _chunks(batches, n):
      st = unroll_chunk(base_theta, st, b)
    return st.params

  def forward_mode(p):
    _, teacher, theta, _, _, _ = problems[p]
    init, chunk_fn, readout = forward_hypergrad.make_forward_fns(student, teacher, m)

    def run(n):
      carry = init(theta, state)
      for b in _chunks(batches, n):
        carry, _ = chunk_fn(theta, carry, b)
      return readout(theta, carry, dev)[1]

    return run

  reverse = {
      name: hypergrad.make_hypergradient_fn(student, base_teacher, m, **kw) for name, kw in [(
          "reverse/store_all", dict(method="vjp", memory="store_all")
      ), ("reverse/checkpointed",
          dict(method="vjp", memory="checkpointed")), ("autodiff", dict(method="autodiff"))]
  }

  def one_chunk_seconds(fn):
    """Compile + warm up on one chunk; returns (first call s, second call s)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(chunk))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(fn(chunk))
    return first, time.perf_counter() - t0

  runners = {"forward": forward_unroll}
  runners.update({f"forward-mode P={p}": forward_mode(p) for p in params})
  per_step, check = {}, {}
  for name, fn in runners.items():
    print(f"[full_horizon] warm-up {name} ...", file=sys.stderr, flush=True)
    per_step[name] = one_chunk_seconds(fn)[1] / chunk
    if name != "forward":  # the check: equal to the reverse scan on one chunk
      _, teacher, theta, _, _, _ = problems[int(name.split("=")[1])]
      ref = hypergrad.make_hypergradient_fn(student, teacher, m)(theta, state, batches, dev)
      ref = flat(ref.dtheta)
      check[name] = float(np.linalg.norm(flat(fn(chunk)) - ref) / np.linalg.norm(ref))
  rows = []
  free = available_bytes()
  for n in steps:
    print(f"[full_horizon] timing N={n} ...", file=sys.stderr, flush=True)
    fns, rows_n, outs = {}, [], {}
    for name, fn in runners.items():
      p = int(name.split("=")[1]) if "=" in name else None
      row = {"kind": "time", "path": name, "P": p, "N": n}
      predicted = per_step[name] * n * (rounds + 1)
      if predicted > budget_s:
        ratio = per_step[name] / per_step["forward"]
        row["skipped"] = (f"predicted {predicted:.0f} s > budget {budget_s:.0f} s "
                          f"(warm-up: ~{ratio:.0f}x forward per step)")
      else:
        fns[name] = (lambda fn=fn, n=n: fn(n))
      rows_n.append(row)
    full_bytes = sum(x.nbytes // x.shape[0] for x in jax.tree_util.tree_leaves(batches)) * n
    for name, fn in reverse.items():
      row = {"kind": "time", "path": name, "P": p_max, "N": n}
      rows_n.append(row)
      if per_step["forward"] * n * 4 * (rounds + 1) > budget_s or full_bytes > 0.25 * free:
        row["skipped"] = "over the time budget or the batch array does not fit"
        continue
      full = _tile(batches, n)
      lowered = fn.lower(base_theta, state, full, dev)
      temp = getattr(lowered.compile().memory_analysis(), "temp_size_in_bytes", None)
      if temp is not None and temp > 0.6 * free:
        row["skipped"] = f"needs {temp / 2**30:.1f} GiB temp"
        continue
      fns[name] = (lambda fn=fn, full=full: fn(base_theta, state, full, dev).dtheta)
    timings = {k: [] for k in fns}
    for name, fn in fns.items():  # warm-up (and the hypergradients)
      outs[name] = jax.block_until_ready(fn())
    for _ in range(rounds):
      for name, fn in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        timings[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in timings.items()}
    ref = flat(outs["autodiff"]) if "autodiff" in outs else None
    for row in rows_n:
      if row["path"] in med:
        row["seconds"] = med[row["path"]]
        row["x_forward"] = med[row["path"]] / med["forward"] if "forward" in med else None
      out = outs.get(row["path"])
      if row["path"] in check:
        row["rel_err"] = check[row["path"]]
        row["rel_err_vs"] = f"reverse, N={chunk}"
        if ref is not None and out is not None and row["P"] == p_max:
          row["rel_err"] = float(np.linalg.norm(flat(out) - ref) / np.linalg.norm(ref))
          row["rel_err_vs"] = f"autodiff, N={n}"
      elif ref is not None and out is not None and row["path"] not in ("forward", "autodiff"):
        row["rel_err"] = float(np.linalg.norm(flat(out) - ref) / np.linalg.norm(ref))
        row["rel_err_vs"] = f"autodiff, N={n}"
    rows += rows_n
  return rows


def markdown_table(rows: list[dict]) -> str:
  """Rows as one Markdown table: time rows, then memory rows."""
  out = [
      "| measurement | path | P | N | median s | × forward unroll | XLA temp MB "
      "| compile s | rel. err (vs) |", "|---|---|---:|---:|---:|---:|---:|---:|---|"
  ]
  for r in rows:
    temp = None if r.get("temp_bytes") is None else r["temp_bytes"] / 2**20
    p = "" if r.get("P") is None else r["P"]
    if "skipped" in r:
      out.append(f"| {r['kind']} | {r['path']} | {p} | {r['N']} | skipped: {r['skipped']} "
                 f"|||||")
      continue
    out.append(f"| {r['kind']} | {r['path']} | {p} | {r['N']} | "
               f"{fmt(r.get('seconds'), '.3f')} | {fmt(r.get('x_forward'), '.1f')} | "
               f"{fmt(temp, '.1f')} | {fmt(r.get('compile_s'), '.1f')} | "
               f"{fmt(r.get('rel_err'), '.1e')}"
               f"{' (' + r['rel_err_vs'] + ')' if r.get('rel_err_vs') else ''} |")
  return "\n".join(out) + "\n"


def _ints(text: str) -> list[int]:
  return [int(v) for v in text.split(",") if v]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="tiny sizes, one round (CI)")
  p.add_argument("--params", default=None, help="teacher sizes P (default 10,40,160)")
  p.add_argument("--steps", default=None, help="timed horizons N (default 200,2000)")
  p.add_argument("--full", action="store_true", help="also time N = 10000 (slow on a CPU)")
  p.add_argument(
      "--memory-steps",
      default=None,
      help="horizons for the compile-only memory rows (default 200,2000,10000)")
  p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3; quick 1)")
  p.add_argument("--chunk", type=int, default=None, help="steps per host chunk (default 200)")
  p.add_argument(
      "--budget-s",
      type=float,
      default=900.0,
      help="skip a timed (path, N) predicted to take longer than this in all")
  p.add_argument("--out", default=None, help="write JSON here")
  p.add_argument("--markdown", default=None, help="also write the table as Markdown here")
  a = p.parse_args(argv)
  params = _ints(a.params or ("10,20" if a.quick else "10,40,160"))
  steps = _ints(a.steps or ("6" if a.quick else "200,2000"))
  if a.full:
    steps.append(10_000)
  memory_steps = _ints(a.memory_steps or ("6" if a.quick else "200,2000,10000"))
  rounds = a.rounds or (1 if a.quick else 3)
  chunk = a.chunk or (3 if a.quick else 200)
  rows = time_rows(params, steps, a.quick, chunk, rounds, a.budget_s)
  rows += memory_rows(params, memory_steps, a.quick, chunk)
  table = markdown_table(rows)
  print(table)
  meta = {
      "jax":
          jax.__version__,
      "backend":
          jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "cpu_count":
          os.cpu_count(),
      "python":
          platform.python_version(),
      "machine":
          platform.machine(),
      "date":
          time.strftime("%Y-%m-%d"),
      "command":
          " ".join(["python -m benchmarks.full_horizon"] +
                   (sys.argv[1:] if argv is None else list(argv))),
      "chunk":
          chunk,
      "rounds":
          rounds,
      "quick":
          a.quick
  }
  hypergrad_bench.write_outputs(a.out, a.markdown, meta, rows, table)
  bad = [r for r in rows if r.get("rel_err", 0) > 1e-3]
  if bad:
    print("FAIL: hypergradients disagree:", [(r["path"], r["N"], r["rel_err"]) for r in bad])
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
