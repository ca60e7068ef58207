"""The task registry (every config routes to a task that accepts it) and the one selection
rule of the experiments (best score after rounding, ties to the earliest candidate)."""
import importlib
import pkgutil

import ml_collections
import pytest

from experiments import configs
from experiments import schema
from experiments.selection import select
from experiments.tasks import DEFAULT_TASK, TASKS, get_task, task_of

# Every experiment file of experiments/configs (the helpers common, cifar, nmt have no
# get_config).
CONFIG_MODULES = {
    info.name: importlib.import_module(f"experiments.configs.{info.name}")
    for info in pkgutil.iter_modules(configs.__path__)
}
EXPERIMENTS = sorted(
    name for name, module in CONFIG_MODULES.items() if hasattr(module, "get_config"))


def test_every_config_is_found():
  assert {"quickstart", "mnist_mlp", "multi30k_transformer", "iwslt14_lstm"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_tasks_cover_every_config(name):
  config = CONFIG_MODULES[name].get_config()
  task = task_of(config)
  assert task in TASKS, f"{name}: config.task={task!r} has no entry in TASKS"
  assert get_task(config) is TASKS[task]
  TASKS[task].validate_config(config)  # the task's table accepts its configs
  assert TASKS[task].SCHEMA is {
      "classification": schema.CLASSIFICATION,
      "translation": schema.TRANSLATION
  }[task]


def test_task_of_defaults_and_names():
  assert DEFAULT_TASK == "classification"
  assert task_of(ml_collections.ConfigDict({"seed": 0})) == "classification"
  assert task_of(CONFIG_MODULES["multi30k_lstm"].get_config()) == "translation"
  assert task_of(CONFIG_MODULES["mnist_mlp"].get_config()) == "classification"
  for module in TASKS.values():  # what main.py calls
    assert callable(module.run) and callable(module.validate_config)


def test_get_task_rejects_an_unknown_task():
  with pytest.raises(
      ValueError,
      match=r"config.task='speech' is not a task; use one of "
      r"\('classification', 'translation'\)"):
    get_task(ml_collections.ConfigDict({"task": "speech"}))


# ----------------------------------------------------------------------------- select


def test_select_min_and_max():
  errors = {"a": 3.0, "b": 1.0, "c": 2.0}
  assert select(errors, errors) == "b"
  assert select(["a", "b", "c"], errors.__getitem__) == "b"  # a function as the score
  assert select(errors, errors, best="max") == "a"


def test_select_ties_go_to_the_earliest_candidate():
  # 70 % vs 70 % + 1e-10: equal after rounding to 6 decimals, so the first wins although
  # the second is smaller (min) or larger (max) in float.
  assert select(["anchor", "taught"], {"anchor": 30.0 + 1e-10, "taught": 30.0}) == "anchor"
  assert select(["taught", "anchor"], {"anchor": 30.0 + 1e-10, "taught": 30.0}) == "taught"
  bleu = {0.05: 31.0, 0.1: 31.0 + 1e-9, 0.2: 30.0}
  assert select(bleu, bleu, best="max") == 0.05  # the smaller eps
  assert select([0.1, 0.05, 0.2], bleu, best="max") == 0.1  # the order given decides
  # Outside the rounding the smaller error wins wherever it is.
  assert select(["anchor", "taught"], {"anchor": 30.00001, "taught": 30.0}) == "taught"
  assert select(["a", "b"], {"a": 1.04, "b": 1.0}, decimals=1) == "a"
  assert select(["a", "b"], {"a": 1.04, "b": 1.0}, decimals=2) == "b"


def test_select_numpy_rounding_keeps_the_ablation_choice():
  # 3.3585575 rounds to 3.358557 exactly (decimal rounding of the float's value) but to
  # 3.358558 by np.round (scale, round half to even): a tie for one rule, not the other.
  scores = [3.3585575, 3.358557]
  assert select(range(2), scores.__getitem__) == 0
  assert select(range(2), scores.__getitem__, rounding="numpy") == 1
  assert select(range(3), [2.0, 1.0, 1.0].__getitem__, rounding="numpy") == 1  # first tie
  assert select(range(3), [2.0, 1.0, 2.0].__getitem__, best="max", rounding="numpy") == 0


def test_select_rejects_bad_arguments():
  with pytest.raises(ValueError, match="no candidates"):
    select([], {})
  with pytest.raises(ValueError, match=r"best='lowest' is not one of \('min', 'max'\)"):
    select(["a"], {"a": 1.0}, best="lowest")
  with pytest.raises(ValueError, match=r"rounding='banker' is not one of"):
    select(["a"], {"a": 1.0}, rounding="banker")
  with pytest.raises(KeyError, match="'b'"):
    select(["a", "b"], {"a": 1.0})
