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
:mod:`experiments.train`). A bad config value, missing data or a workdir that
holds another experiment ends with exit status 2 and a message naming the
problem and the fix.
"""
import logging as std_logging

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import dlf_jax
from experiments import train
from experiments import translate

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/configs/<name>.py[:variant]).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: call jax.distributed.initialize() first (coordinator "
    "address, process count and id from the environment, e.g. a SLURM or TPU-pod launcher).")
flags.mark_flags_as_required(["config", "workdir"])


def _not_orbax_info(record: std_logging.LogRecord) -> bool:
  """Drops orbax's per-checkpoint INFO lines (dozens per save); keeps its warnings."""
  return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def _parse_flags(argv):
  """absl's parser, with a readable message for a config key that does not exist."""
  try:
    return flags.FLAGS(argv)
  except flags.Error:
    raise
  except (AttributeError, KeyError) as e:
    bad = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
    raise SystemExit(
        f"FATAL Flags parsing error: a --config.<key> override names a key the config does not "
        f"have ({e}); overrides given: {', '.join(bad)}. The keys and their meaning are in "
        "experiments/configs/common.py (translation configs: experiments/configs/nmt.py).") from None


def _fail(message: str) -> None:
  """Ends with exit status 2 and ``message`` (no traceback: the input is at fault)."""
  logging.error("%s", message)
  raise SystemExit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_not_orbax_info)
  if _DISTRIBUTED.value:
    dlf_jax.parallel.initialize_distributed()
  config = _CONFIG.value
  runner = translate if config.get("task") == "translation" else train
  try:
    runner.validate_config(config)
  except ValueError as e:         # a bad value: the message names the key and the fix
    _fail(f"Invalid config: {e}")
  try:
    runner.run(config, _WORKDIR.value)
  except (FileNotFoundError, train.WorkdirConfigError) as e:   # missing data, wrong workdir
    _fail(str(e))
  except KeyboardInterrupt:
    logging.warning("Interrupted. Re-run the same command to resume from the last checkpoint "
                    "in %s.", _WORKDIR.value)
    raise SystemExit(130)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
