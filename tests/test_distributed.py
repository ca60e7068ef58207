"""Multi-process data parallelism: two processes compute what one process does.

Starts two processes on localhost that join through ``jax.distributed``
(:func:`dlf_jax.parallel.initialize_distributed`; CPU cross-process collectives
over gloo, JAX's default on CPU), each with 2 CPU devices, so that
:func:`dlf_jax.parallel.make_mesh` spans 4 devices in 2 processes. Each runs one
outer step of :func:`dlf_jax.teach` (a sharded hypergradient) and a few sharded
steps of :func:`dlf_jax.train_student` (``tests/_distributed_worker.py``), and
the numbers are compared with one process over 4 devices, in float64. The
three processes run at the same time; a hang fails the test after
``TIMEOUT_S``.
"""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_distributed_worker.py")
TIMEOUT_S = 300  # a guard against a hang, not a target (~20 s of CPU per process)
DEVICES_PER_PROCESS = 2
NUM_PROCESSES = 2

pytestmark = pytest.mark.skipif(
    sys.platform not in ("linux", "darwin"),
    reason=f"jaxlib has CPU cross-process collectives (gloo) on Linux and macOS only, "
    f"not on {sys.platform}")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(tmp, name, num_devices, *args):
  """Starts one worker with ``num_devices`` CPU devices; output to ``tmp/name.{json,log}``."""
  env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
      PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  log = open(tmp / f"{name}.log", "w")
  proc = subprocess.Popen([sys.executable, WORKER, f"--out={tmp / f'{name}.json'}", *args],
                          cwd=ROOT,
                          env=env,
                          stdout=log,
                          stderr=subprocess.STDOUT)
  log.close()
  return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """``{'single', 'process0', 'process1'}``: each run's JSON record."""
  tmp = tmp_path_factory.mktemp("distributed")
  coordinator = f"127.0.0.1:{_free_port()}"
  procs = {"single": _start(tmp, "single", NUM_PROCESSES * DEVICES_PER_PROCESS)}
  for i in range(NUM_PROCESSES):
    procs[f"process{i}"] = _start(tmp, f"process{i}", DEVICES_PER_PROCESS,
                                  f"--num_processes={NUM_PROCESSES}", f"--process_id={i}",
                                  f"--coordinator={coordinator}")
  deadline = time.monotonic() + TIMEOUT_S
  try:
    for proc in procs.values():
      proc.wait(timeout=max(1.0, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    pass
  finally:
    hung = [name for name, proc in procs.items() if proc.poll() is None]
    for name in hung:
      procs[name].kill()
      procs[name].wait()
  logs = {name: (tmp / f"{name}.log").read_text()[-3000:] for name in procs}
  assert not hung, f"{hung} still running after {TIMEOUT_S} s; logs: {logs}"
  failed = {name: logs[name] for name, proc in procs.items() if proc.returncode != 0}
  assert not failed, f"worker(s) failed: {failed}"
  return {name: json.loads((tmp / f"{name}.json").read_text()) for name in procs}


def _rel(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def test_mesh_spans_both_processes(runs):
  for i in range(NUM_PROCESSES):
    got = runs[f"process{i}"]
    assert (got["process_count"], got["device_count"], got["local_device_count"],
            got["mesh_devices"]) == (NUM_PROCESSES, 4, DEVICES_PER_PROCESS, 4), got
  single = runs["single"]
  assert (single["process_count"], single["device_count"], single["mesh_devices"]) == (1, 4, 4)


@pytest.mark.parametrize("process", range(NUM_PROCESSES))
@pytest.mark.parametrize("what", ["hypergradient", "student_params"])
def test_two_processes_equal_one(runs, process, what):
  """The teaching step's hypergradient and the trained student, in float64."""
  want = runs["single"][what]
  assert np.linalg.norm(want) > 0 and np.all(np.isfinite(want))
  assert _rel(runs[f"process{process}"][what], want) <= 1e-10


@pytest.mark.parametrize("process", range(NUM_PROCESSES))
@pytest.mark.parametrize("what", ["teach_history", "train_history"])
def test_histories_equal_one_process(runs, process, what):
  """Dev measure and accuracy, train losses, hypergradient norm, phi statistics."""
  got, want = runs[f"process{process}"][what], runs["single"][what]
  assert len(got) == len(want) > 0
  for g, w in zip(got, want):
    assert g.keys() == w.keys()
    for key in w:
      assert g[key] == pytest.approx(w[key], rel=1e-10, abs=1e-12), (key, g, w)
