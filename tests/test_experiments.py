"""End-to-end tests of the image experiment runner (experiments/): configs, CLI errors, reports.

Every image config's ``:smoke`` variant is validated, and one per model family runs
through ``experiments.tasks.classification.run``; bad config values and CLI input end
with a message that names them. Resuming, and the quickstart through ``python -m
experiments.main``: test_resume.py.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from dlf_jax.data import load_image_dataset
from experiments import builders, schema, summaries
from experiments.tasks import classification
from experiments.workdir import check_workdir_config
from experiments.configs import (cifar10_resnet8, cifar10_resnet20, cifar10_resnet32, cifar10_wrn,
                                 cifar100_resnet8, cifar100_resnet20, cifar100_resnet32,
                                 fashion_mnist_mlp, mnist_lenet, mnist_mlp, quickstart)

from runs import ROOT, check_outputs, cli_env

# The runs are tiny: compile time dominates, and XLA without most optimizations compiles
# them ~1.5x faster. The CLI runs get the same setting (cli_env), so that their numbers can
# equal the in-process reference's bit for bit.
pytestmark = pytest.mark.usefixtures("fast_compile")

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


def _smoke(name):
  config = CONFIGS[name].get_config("smoke")
  config.lock()
  return config


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
  done = subprocess.run(cmd, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120)
  assert done.returncode == 2
  assert "names a key the config does not have ('model.foo')" in done.stderr
  assert "--config.model.foo" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("case", [
    "bad_value", "bad_type", "unknown_variant", "no_such_file", "missing_data", "other_workdir",
    "empty_workdir", "no_workdir", "misspelt_key", "misspelt_leaf", "damaged_workdir"
])
def test_cli_input_errors_end_cleanly(case, tmp_path):
  """Bad input ends with status 2 and the message naming it, not a traceback."""
  config, flags, expect, workdir = "quickstart.py:smoke", [], None, str(tmp_path)
  if case == "empty_workdir":  # '' would write the run into the current directory
    workdir, expect = "", "--workdir='': give a directory"
  elif case == "no_workdir":  # absl's message, and an example of both required flags
    workdir, expect = None, "Both are required, e.g.: python -m experiments.main --config="
  elif case == "damaged_workdir":  # a config.json that is not JSON: no JSONDecodeError trace
    with open(os.path.join(tmp_path, "config.json"), "w") as f:
      f.write("{not json")
    expect = "config.json is not the JSON of a run's config"
  elif case == "misspelt_key":  # ml_collections' suggestion, read as text (no quoted \n)
    flags = ["--config.teach.estimatr.name=es"]
    expect = "('teach.estimatr'; Did you mean \"estimator\" instead of \"estimatr\"?)"
  elif case == "misspelt_leaf":  # ml_collections wraps the KeyError of a leaf in another
    flags = ["--config.teach.unrol_steps=3"]
    expect = "('teach.unrol_steps'; Did you mean \"unroll_steps\" instead of \"unrol_steps\"?)"
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
      *([] if workdir is None else [f"--workdir={workdir}"]), *flags
  ]
  done = subprocess.run(cmd, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
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
  # Conv nets compile slowly on CPU: cross-entropy only (the MNIST MLP run, the quickstart
  # reference and test_losses.py cover the other losses; teaching through a conv net with
  # BatchNorm: test_hypergrad.py, and through the ResNet itself: test_models.py). Fashion-
  # MNIST's MLP is MNIST's: its run checks the data path (the idx files), cross-entropy only.
  if name in ("mnist_lenet", "cifar10_resnet8", "fashion_mnist_mlp"):
    config.methods = ("cross_entropy",)
  config.lock()
  results = classification.run(config, str(tmp_path))
  check_outputs(str(tmp_path), results, config)
  assert results["data"]["name"] == config.data.name
  assert results["data"]["source"].startswith("files:")


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
