"""One process of the multi-process test (``tests/test_distributed.py``).

Usage::

  python tests/_distributed_worker.py --out=OUT.json                      # one process
  python tests/_distributed_worker.py --out=OUT.json --num_processes=2 \
      --process_id=I --coordinator=127.0.0.1:PORT                        # one of two

Set ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` for ``N`` CPU devices
per process. With ``--num_processes > 1`` the process calls
:func:`dlf_jax.parallel.initialize_distributed` first (CPU collectives: gloo,
JAX's default), so the mesh spans the devices of all processes.

Runs, in float64 on a tiny tanh MLP, over a mesh of all (global) devices:

* one outer step of :func:`dlf_jax.teach` (the reverse-mode hypergradient of a
  3-step unroll; teacher optimizer SGD with learning rate 1, so ``theta`` moves
  by exactly the hypergradient) and
* :func:`dlf_jax.train_student` for 4 steps with the learned teacher,

and writes the numbers (flattened ``theta`` and student parameters, the
histories) as JSON to ``--out``. Every process holds the whole data set; the
library places only the process's own shards of every batch.
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import dlf_jax
from dlf_jax import models
from dlf_jax import parallel


def _flat(tree) -> list:
  """The leaves of a (replicated) pytree as one flat list of floats."""
  return np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree.leaves(tree)]).tolist()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="JSON file for the results.")
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--coordinator", default=None, help="host:port of process 0.")
  parser.add_argument(
      "--timeout_s",
      type=int,
      default=60,
      help="How long to wait for the other processes to connect.")
  args = parser.parse_args()

  t0 = time.time()
  # Before any computation: the backend (and its collectives) is created at first use.
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_enable_x64", True)
  # Tiny programs: XLA without most optimizations compiles much faster, same numbers.
  jax.config.update("jax_disable_most_optimizations", True)
  if args.num_processes > 1:
    parallel.initialize_distributed(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        initialization_timeout=args.timeout_s)
  assert jax.process_count() == args.num_processes, jax.process_count()

  num_classes = 4
  rng = np.random.default_rng(0)
  train = {"x": rng.normal(size=(64, 6)), "y": rng.integers(0, num_classes, 64)}
  dev = {"x": rng.normal(size=(16, 6)), "y": rng.integers(0, num_classes, 16)}
  student = dlf_jax.Student(
      models.MLP(hidden=(8,), num_classes=num_classes, activation=jnp.tanh, dtype=jnp.float64),
      dlf_jax.make_optimizer("momentum", 0.3), num_classes)
  teacher = dlf_jax.Teacher(
      dlf_jax.AttentionTeacher(num_classes, num_matrices=2, init_scale=0.1), total_steps=8)
  mesh = parallel.make_mesh()  # every device of every process

  theta0 = jax.tree.map(lambda a: a.astype(jnp.float64), teacher.init(jax.random.PRNGKey(0)))
  tx = optax.sgd(1.0)
  t1 = time.time()
  taught = dlf_jax.teach(
      student,
      teacher,
      train,
      dev,
      teacher_optimizer=tx,
      init_state=dlf_jax.TeachState(
          theta=theta0, opt_state=tx.init(theta0), student=None, update=0),
      schedule=dlf_jax.Schedule(unroll_steps=3, num_episodes=1, batch_size=8),
      dev_sampling=dlf_jax.DevSampling(batch_size=8),
      mesh=mesh,
      progress=False)
  t2 = time.time()
  trained = dlf_jax.train_student(
      student,
      teacher,
      train,
      theta=taught.theta,
      num_steps=4,
      batch_size=8,
      eval_every=2,
      dev=dev,
      eval_batch_size=8,
      mesh=mesh,
      progress=False)

  drop = ("seconds", "warm_start_seconds", "estimator")
  out = {
      "process_count": jax.process_count(),
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "mesh_devices": int(mesh.devices.size),
      "hypergradient": (np.asarray(_flat(taught.theta)) - np.asarray(_flat(theta0))).tolist(),
      "teach_history": [{
          k: v for k, v in r.items() if k not in drop
      } for r in taught.history],
      "student_params": _flat(trained.state.params),
      "train_history": [{
          k: v for k, v in r.items() if k not in drop
      } for r in trained.history],
      "seconds": {
          "teach": t2 - t1,
          "train_student": time.time() - t2,
          "total": time.time() - t0
      },
  }
  with open(args.out, "w") as f:
    json.dump(out, f)


if __name__ == "__main__":
  main()
