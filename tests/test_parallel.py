"""Data parallelism: the sharded hypergradient equals the single-device one.

Runs in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(the flag must be set before JAX starts), float64, on a conv net with BatchNorm
(statistics over the global batch), momentum, weight decay and augmentation.
"""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    # Tiny shapes: XLA without most optimizations compiles much faster, same numbers.
    jax.config.update("jax_disable_most_optimizations", True)
    assert jax.device_count() == 4, jax.devices()
    from dlf_jax import hypergrad, measures, parallel, teach, unroll
    from tests.problems import resnet_problem
    # T = 2 in two chunks of one step: the chunk loop runs, no tail chunk to compile too.
    student, teacher, theta, state, batches, dev = resnet_problem(num_steps=2, batch=8,
                                                                   net="convbn")
    dev = {k: np.concatenate([v, v[:, :2]], axis=1) for k, v in dev.items()}   # 8 dev examples
    fn = hypergrad.make_hypergradient_fn(student, teacher, measures.ExpectedAccuracy(),
                                         method="vjp", memory="checkpointed", checkpoint_every=1)
    one = fn(theta, state, batches, dev)
    mesh = parallel.make_mesh()
    sb, sd = parallel.shard_batches(batches, mesh), parallel.shard_batches(dev, mesh)
    assert len(sb["x"].sharding.device_set) == 4
    assert sb["x"].addressable_shards[0].data.shape == (2, 2, 8, 8, 3)
    four = fn(parallel.replicate(theta, mesh), parallel.replicate(state, mesh), sb, sd)
    flat = lambda t: np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree.leaves(t)])
    rel = lambda a, b: float(np.linalg.norm(flat(a) - flat(b)) / np.linalg.norm(flat(b)))
    print("dtheta", rel(four.dtheta, one.dtheta))
    print("dparams0", rel(four.dparams0, one.dparams0))
    print("params", rel(four.final_state.params, one.final_state.params))
    print("batch_stats", rel(four.final_state.model_state, one.final_state.model_state))
    # The global batch's BatchNorm statistics: one step on the full batch on one device.
    s1, _ = unroll.inner_step(student, teacher, theta, state, {k: v[0] for k, v in batches.items()})
    s4, _ = jax.jit(lambda st, b: unroll.inner_step(student, teacher, theta, st, b))(
        parallel.replicate(state, mesh), parallel.shard_batches(
            {k: v[0] for k, v in batches.items()}, mesh, axis=0))
    print("one_step_stats", rel(s4.model_state, s1.model_state))
""")


@pytest.fixture(scope="module")
def sharded_vs_single():
  env = dict(
      os.environ,
      XLA_FLAGS="--xla_force_host_platform_device_count=4",
      PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run([sys.executable, "-c", SCRIPT],
                        cwd=ROOT,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=1800)  # a guard, not a target
  assert proc.returncode == 0, proc.stderr[-3000:]
  return {
      line.split()[0]: float(line.split()[1])
      for line in proc.stdout.splitlines()
      if len(line.split()) == 2
  }


@pytest.mark.parametrize("what", ["dtheta", "dparams0", "params", "batch_stats", "one_step_stats"])
def test_sharded_equals_single_device(sharded_vs_single, what):
  assert sharded_vs_single[what] <= 1e-10, sharded_vs_single


def test_shard_batches_names_the_indivisible_array():
  mesh = jax.sharding.Mesh(np.array(jax.devices() * 1), ("batch",))
  assert parallel.shard_batches(None, None) is None
  out = parallel.shard_batches({"x": np.zeros((2, 4, 3))}, mesh)
  assert out["x"].shape == (2, 4, 3)
  if jax.device_count() > 1:  # pragma: no cover - multi-device hosts
    with pytest.raises(ValueError, match="multiple of"):
      parallel.shard_batches({"x": np.zeros((2, jax.device_count() + 1))}, mesh)


def test_indivisible_batch_error_message():

  class FakeMesh:  # 3 "devices" without needing them
    shape = {"batch": 3}

  with pytest.raises(ValueError, match=r"\['y'\] has 4 examples .* multiple of 3"):
    parallel.shard_batches({"y": jnp.zeros((2, 4))}, FakeMesh())
  with pytest.raises(ValueError, match=r"\['y'\] has shape \(4,\), no batch axis 1: pass axis=0"):
    parallel.shard_batches({"y": jnp.zeros((4,))}, FakeMesh())
