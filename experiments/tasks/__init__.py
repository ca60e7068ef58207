"""The experiment tasks: one module per task, chosen by ``config.task``.

Each task module holds everything that is particular to its kind of experiment: its
config table ``SCHEMA`` (the keys, checks and meaning of :mod:`experiments.schema`),
``validate_config(config)``, its data (``load_data``), what it builds (the student, the
dev measure), how it evaluates, and ``run(config, workdir, *, on_checkpoint=None)``,
which runs (or resumes) one experiment and writes its report. :mod:`experiments.main`
routes ``TASKS[task_of(config)].run(config, workdir)``.

Adding a task: write ``experiments/tasks/<name>.py`` with those names and add one line
to :data:`TASKS`; its configs set ``config.task = '<name>'``.
"""
from __future__ import annotations

from types import ModuleType

import ml_collections

from experiments.tasks import classification, translation

__all__ = ["TASKS", "DEFAULT_TASK", "task_of", "get_task"]

TASKS = {
    "classification": classification,
    "translation": translation,
}
# The task of a config without a ``task`` key (every image config).
DEFAULT_TASK = "classification"


def task_of(config: ml_collections.ConfigDict) -> str:
  """``config.task``, or :data:`DEFAULT_TASK` for a config without that key."""
  return config.get("task", DEFAULT_TASK)


def get_task(config: ml_collections.ConfigDict) -> ModuleType:
  """The task module that runs ``config`` (``TASKS[task_of(config)]``).

  Raises:
    ValueError: ``config.task`` names no task of :data:`TASKS`.
  """
  name = task_of(config)
  if name not in TASKS:
    raise ValueError(f"config.task={name!r} is not a task; use one of {tuple(TASKS)} "
                     f"(omit the key for {DEFAULT_TASK!r}).")
  return TASKS[name]
