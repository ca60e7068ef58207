"""CIFAR throughput: input pipeline vs student vs teacher hypergradient (images/s).

Usage::

    python -m benchmarks.cifar_throughput [--models resnet8,resnet20] [--batch 64]
                                          [--steps 25] [--rounds 3] [--out FILE]

Measures, on random CIFAR-shaped data (the cost does not depend on the pixels):

* ``host batches``: :class:`~dlf_jax.data.SegmentSampler` assembling ``T``
  batches of normalised images on the host (gather + stack);
* ``augment``: the on-device pad-4 crop + flip of ``T`` batches, jitted alone;
* ``student``: ``T`` momentum-SGD steps of the student (``lax.scan``) with the
  augmentation inside, the way :func:`dlf_jax.train_student` runs them;
* ``student (no aug)``: the same without augmentation;
* ``hypergradient``: the teacher's forward + reverse over the same ``T`` steps
  (``vjp`` / ``checkpointed``, the CIFAR configs' choice).

The pipeline is not the bottleneck when ``host batches`` and ``augment`` are
far faster than ``student``. Prints a table and writes JSON (``--out``).
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
import numpy as np

import dlf_jax
from dlf_jax import data as data_lib, hypergrad, measures, models, teacher as teacher_lib
from dlf_jax import unroll

MODELS = {
    "resnet8": lambda: models.ResNet(8),
    "resnet20": lambda: models.ResNet(20),
    "resnet32": lambda: models.ResNet(32),
    "wrn16_4": lambda: models.WideResNet(16, 4)
}


def _time(fn, rounds):
  fn()  # warm-up / compile
  ts = []
  for _ in range(rounds):
    t0 = time.perf_counter()
    fn()
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def run(model_names, batch, steps, rounds, n_images=5000):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n_images, 32, 32, 3)).astype(np.float32)
  y = rng.integers(0, 10, n_images).astype(np.int32)
  sampler = data_lib.SegmentSampler({"x": x, "y": y}, batch, seed=0)
  images = steps * batch
  rows = []
  seg = sampler.segment(0, steps)
  t = _time(lambda: sampler.segment(steps, steps), rounds)
  rows.append({"what": "host batches", "model": "-", "seconds": t, "images_per_s": images / t})
  aug = jax.jit(lambda k, b: jax.vmap(lambda kk, xx: data_lib.random_crop_flip(kk, xx))
                (jax.random.split(k, steps), b))
  t = _time(lambda: jax.block_until_ready(aug(jax.random.PRNGKey(0), seg["x"])), rounds)
  rows.append({"what": "augment", "model": "-", "seconds": t, "images_per_s": images / t})
  base = dlf_jax.CrossEntropyLoss()
  for name in model_names:
    tx = dlf_jax.make_optimizer("momentum", 0.1, weight_decay=1e-4)
    for label, augment in (("student", data_lib.make_augment("crop_flip")), ("student (no aug)",
                                                                             None)):
      student = dlf_jax.Student(MODELS[name](), tx, 10, augment=augment)
      state = student.init(jax.random.PRNGKey(0), {"x": seg["x"][0], "y": seg["y"][0]})
      fn = jax.jit(lambda st, b, s=student: unroll.unroll(s, base, None, st, b)[0].params)
      t = _time(lambda fn=fn, state=state: jax.block_until_ready(fn(state, seg)), rounds)
      rows.append({"what": label, "model": name, "seconds": t, "images_per_s": images / t})
    teacher = teacher_lib.Teacher(
        teacher_lib.AttentionTeacher(10, parameterisation="diagonal"), total_steps=64_000)
    theta = teacher.init(jax.random.PRNGKey(1))
    dev = {k: v[:500].reshape((2, 250) + v.shape[1:]) for k, v in (("x", x), ("y", y))}
    hfn = hypergrad.make_hypergradient_fn(
        student, teacher, measures.ExpectedAccuracy(), method="vjp", memory="checkpointed")
    t = _time(
        lambda hfn=hfn, theta=theta, state=state, dev=dev: jax.block_until_ready(
            hfn(theta, state, seg, dev).dtheta),
        rounds)
    rows.append({"what": "hypergradient", "model": name, "seconds": t, "images_per_s": images / t})
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default="resnet8,resnet20")
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=25, help="T: steps per measured call")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--out", default=None)
  a = p.parse_args(argv)
  names = a.models.split(",")
  for n in names:
    if n not in MODELS:
      p.error(f"unknown model {n!r}; choose from {sorted(MODELS)}")
  rows = run(names, a.batch, a.steps, a.rounds)
  print(f"{'what':18} {'model':9} {'s / T steps':>11} {'images/s':>10}")
  for r in rows:
    print(f"{r['what']:18} {r['model']:9} {r['seconds']:11.3f} {r['images_per_s']:10.0f}")
  meta = {
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      "date": time.strftime("%Y-%m-%d"),
      "batch": a.batch,
      "steps": a.steps,
      "command": " ".join(["python -m benchmarks.cifar_throughput"] + sys.argv[1:])
  }
  if a.out:
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
      json.dump({"meta": meta, "rows": rows}, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
