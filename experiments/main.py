r"""Runs one L2T-DLF experiment: teach, freeze, train students, evaluate, report.

Usage (from the repository root)::

  python -m experiments.main --config=experiments/configs/quickstart.py \
      --workdir=/tmp/dlf_quickstart
  python -m experiments.main --config=experiments/configs/mnist_mlp.py:smoke \
      --workdir=/tmp/dlf_smoke --config.num_seeds=2

With several devices, batches are split over all of them (``config.data_parallel``);
``--distributed`` initialises multi-host JAX first.

The config is locked: overriding a key that does not exist is an error. Running
the same command again resumes from the workdir's checkpoints (see
:mod:`experiments.phases`). ``config.task`` picks the task that runs
(:data:`experiments.tasks.TASKS`; no key: image classification). A bad config file,
variant, key or value, missing or unusable data (labels out of range, a batch larger than
the training split), or a workdir that holds another experiment or cannot be created ends
with exit status 2 and a message naming the problem and the fix.
"""
import logging as std_logging
import os
import signal
import sys
from typing import NoReturn

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import dlf_jax
from experiments import schema
from experiments.tasks import get_task, task_of
from experiments.workdir import InputError, InterruptHandler, WorkdirConfigError

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Experiment config file (experiments/configs/<name>.py[:variant]).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: call jax.distributed.initialize() first (coordinator "
    "address, process count and id from the environment, e.g. a SLURM or TPU-pod launcher).")
flags.mark_flags_as_required(["config", "workdir"])


def _not_orbax_info(record: std_logging.LogRecord) -> bool:
  """Drops orbax's per-checkpoint INFO lines (dozens per save); keeps its warnings."""
  return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def _fail(message: str) -> NoReturn:
  """Ends with exit status 2 and ``message`` on stderr (no traceback: the input is at fault)."""
  print(message, file=sys.stderr, flush=True)
  raise SystemExit(2)


def _moved_keys(argv) -> None:
  """Ends with status 2 and the new key if an override names a key that moved.

  E.g. ``--config.teach.method``, now ``--config.teach.estimator.reverse.method``.
  """
  given = [a[len("--config."):].split("=")[0] for a in argv[1:] if a.startswith("--config.")]
  moved = [(k, schema.MOVED_KEYS[k]) for k in given if k in schema.MOVED_KEYS]
  if moved:
    _fail("FATAL Flags parsing error: " +
          "; ".join(f"--config.{old} is no longer a key: use --config.{new} (with "
                    f"--config.teach.estimator.name={new.split('.')[2]})"
                    for old, new in moved) + ".")
  if "teach.estimator" in given:
    _fail("FATAL Flags parsing error: --config.teach.estimator is a sub-config: choose the "
          f"estimator with --config.teach.estimator.name=<one of {schema.ESTIMATORS}> and set "
          "its settings as --config.teach.estimator.<name>.<setting>.")


def _parse_flags(argv):
  """Absl's parser; a bad flag, config key or variant ends with status 2 and a message."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # a value of the wrong type; an error in the config file
    _moved_keys(argv)
    message = str(e)
    if "Traceback (most recent call last)" in message:  # ml_collections quotes the traceback
      head, _, tail = message.partition("Traceback (most recent call last)")
      message = f"{head.strip()} {tail.strip().splitlines()[-1]}"
    if "must have a value other than None" in message:  # --config or --workdir not given
      message += ("\nBoth are required, e.g.: python -m experiments.main "
                  "--config=experiments/configs/quickstart.py --workdir=runs/quickstart")
    _fail(f"FATAL Flags parsing error: {message}\nPass --helpfull to see help on flags.")
  except (AttributeError, KeyError) as e:
    _moved_keys(argv)
    bad = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
    cause = e
    while cause.args and isinstance(cause.args[0], BaseException):  # nested keys wrap a KeyError
      cause = cause.args[0]
    raw = str(cause.args[0] if cause.args else cause).strip("'\"")
    key, _, hint = raw.partition("\n")  # ml_collections adds 'Did you mean ...?'
    key = key.strip("'\"")
    paths = [b.removeprefix("--config.").split(".") for b in bad]
    full = {".".join(p[:p.index(key) + 1]) for p in paths if key in p}  # the path up to it
    key = repr(full.pop() if len(full) == 1 else key)
    key += f"; {hint.strip()}" if hint.strip() else ""
    _fail(f"FATAL Flags parsing error: a --config.<key> override names a key the config does "
          f"not have ({key}); overrides given: {', '.join(bad)}. The keys and their meaning are "
          "in experiments/schema.py (CLASSIFICATION; translation configs: TRANSLATION).")
  except ValueError as e:  # e.g. an unknown ``:variant`` of the config file
    _fail(f"FATAL Flags parsing error: {e}")


def main(argv):
  """Runs the experiment of ``--config`` in ``--workdir`` (exit status 2 on bad input)."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_not_orbax_info)
  if _DISTRIBUTED.value:
    dlf_jax.parallel.initialize_distributed()
  try:
    config = _CONFIG.value
    task_of(config)  # the first use of the config: this loads the file
  except OSError as e:  # a wrong --config path is reported at first use
    path = (flags.FLAGS["config"].config_filename or "").split(":")[0]
    if path and not os.path.isfile(path):
      _fail(f"Could not load --config: no config file {path!r} (relative to {os.getcwd()}); "
            "the configs are experiments/configs/<name>.py[:variant], run from the "
            "repository root.")
    _fail(f"Could not load --config: {str(e).splitlines()[0]} "
          f"{' '.join(line.strip() for line in str(e).splitlines()[1:])}")
  if not _WORKDIR.value.strip():  # '' would write the run into the current directory
    _fail(f"--workdir={_WORKDIR.value!r}: give a directory for the run's checkpoints and "
          "results, e.g. --workdir=runs/quickstart.")
  try:
    runner = get_task(config)
    runner.validate_config(config)
  except ValueError as e:  # a bad value: the message names the key and the fix
    _fail(f"Invalid config: {e}")
  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, InterruptHandler())  # Ctrl-C, never lost (see there)
  try:
    runner.run(config, _WORKDIR.value)
  except (FileNotFoundError, WorkdirConfigError, InputError) as e:
    _fail(str(e))  # missing data, a workdir of another run or not creatable, bad data
  except KeyboardInterrupt:
    logging.warning(
        "Interrupted. Re-run the same command to resume from the last checkpoint "
        "in %s.", _WORKDIR.value)
    # Every `finally` and `with` block has run and the checkpoints are on disk; the
    # interpreter's teardown with XLA's threads mid-work can crash (SIGSEGV), so skip it.
    std_logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
