"""The experiment's directory: creation, the config it holds, orbax checkpoints.

A workdir belongs to one config: :func:`check_workdir_config` writes
``config.json`` on the first run and refuses a later run of a different config,
naming every key that differs (the keys of :data:`RESUMABLE_KEYS` may change
between a run and its resumption; a key of :data:`ADDED_KEYS` absent from an older
``config.json`` matches its default value). :class:`Checkpoints` saves and restores the
``(pytree state, JSON meta)`` pairs from which every phase resumes.
:func:`claim_workdir` wraps a run: a run that fails before it records anything
takes its ``config.json`` back, so the fixed rerun is no conflict.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from typing import Any, Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from experiments import io, schema

__all__ = [
    "RESUMABLE_KEYS", "ADDED_KEYS", "InputError", "WorkdirConfigError", "make_workdir",
    "config_json", "check_workdir_config", "claim_workdir", "Checkpoints", "run_path"
]

# Config keys that may change between a run and its resumption.
RESUMABLE_KEYS = ("progress", "methods", "num_seeds")
# Config keys added after workdirs were written, with the value that reproduces the runs
# recorded before them: a config.json without the key matches a config holding that value.
ADDED_KEYS = {
    "data.noise.kind": "none",
    "data.noise.rate": 0.0,
    "data.noise.matrix": None,
    "data.noise.seed": 0,
    "data.imbalance.ratio": None,
    "data.imbalance.seed": 0,
    "baselines.logit_tau": 1.0,
    "baselines.cb_beta": 0.999,
    "baselines.logit_tau_grid": [],
    "baselines.cb_beta_grid": [],
}


class WorkdirConfigError(ValueError):
  """The workdir holds a run of a different config (the message names the keys)."""


class InputError(ValueError):
  """The data or the workdir cannot serve this config (the message names it and the fix)."""


def make_workdir(workdir: str) -> str:
  """Creates ``workdir`` (and its parents); returns its absolute path.

  Raises:
    InputError: it cannot be created or written (under a regular file, read-only, ...).
  """
  workdir = os.path.abspath(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    reason = ("a file of that name exists"
              if isinstance(e, FileExistsError) else e.strerror or str(e))
    raise InputError(f"cannot create workdir {workdir}: {reason}; pass a --workdir that can "
                     "be created as a directory and written.") from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise InputError(f"cannot create workdir {workdir}: it is not writable; pass a --workdir "
                     "that can be created as a directory and written.")
  return workdir


def config_json(config: ml_collections.ConfigDict) -> dict:
  """``config`` as the JSON-able dict that ``config.json`` and ``results.json`` record."""
  return json.loads(config.to_json_best_effort())


def _flatten(tree: dict, prefix: str = "") -> dict:
  """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (config.json keys as ``--config.`` paths)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _upgrade_saved(saved: dict, current: dict) -> dict:
  """A ``config.json`` written before ``teach.estimator`` became a sub-config, in today's form.

  The flat keys (``teach.estimator='reverse'``, ``teach.method``, ``teach.memory``, ...,
  :data:`experiments.schema.MOVED_KEYS`) move to ``teach.estimator.name`` and
  ``teach.estimator.<name>.<setting>``; settings that did not exist then take their
  defaults (``es.reward``, ``es.chunk_size``; the ``pes`` section as the current config
  has it). Newer files are returned unchanged.
  """
  teach = saved.get("teach")
  if not isinstance(teach, dict) or not isinstance(teach.get("estimator", {}), str):
    return saved
  estimator = json.loads(json.dumps(current.get("teach", {}).get("estimator", {})))
  teach = dict(teach)
  estimator["name"] = teach.pop("estimator")
  for old, new in schema.MOVED_KEYS.items():
    leaf = old.split(".", 1)[1]
    if leaf in teach:
      _, _, name, setting = new.split(".")
      estimator.setdefault(name, {})[setting] = teach.pop(leaf)
  estimator.setdefault("es", {}).update(reward=None, chunk_size=None)
  teach["estimator"] = estimator
  return {**saved, "teach": teach}


def check_workdir_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes ``config.json``; if one exists, the experiment-defining keys must match.

  Keys of :data:`RESUMABLE_KEYS` are not compared; a key of :data:`ADDED_KEYS`
  missing from the saved ``config.json`` (a workdir written before the key existed)
  matches the current config if it holds that key's default.

  Raises:
    WorkdirConfigError: ``workdir`` holds a run of another config (naming every key
      that differs, with both values), or a ``config.json`` that is not JSON.
  """
  path = os.path.join(workdir, "config.json")
  current = config_json(config)
  if os.path.exists(path):
    with open(path) as f:
      try:
        saved = _upgrade_saved(json.load(f), current)
      except json.JSONDecodeError as e:
        raise WorkdirConfigError(
            f"{path} is not the JSON of a run's config ({e.msg} at line {e.lineno}): the "
            "workdir holds something else or a damaged run; use a fresh --workdir (or "
            "delete that file to start this run there afresh).") from None
    strip = lambda c: {k: v for k, v in c.items() if k not in RESUMABLE_KEYS}
    old, new = _flatten(strip(saved)), _flatten(strip(current))
    for k, default in ADDED_KEYS.items():  # a workdir older than the key
      if k not in old and k in new and new[k] == default:
        del new[k]
    if old != new:
      diff = [
          f"{k} = {old.get(k, '<absent>')!r} there, {new.get(k, '<absent>')!r} now"
          for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)
      ]
      raise WorkdirConfigError(
          f"{workdir} holds a run of a different config (differs in: {'; '.join(diff)}); "
          "resume with the same config or use a fresh --workdir.")
  io.write_json(path, current)


# Files a run writes before it has trained anything.
_UNTRAINED_FILES = ("config.json", "label_noise.json")


def _files_under(directory: str) -> set[str]:
  return {os.path.join(root, name) for root, _, names in os.walk(directory) for name in names}


@contextlib.contextmanager
def claim_workdir(config: ml_collections.ConfigDict, workdir: str) -> Iterator[None]:
  """:func:`check_workdir_config`, then the body; un-pins a run that recorded nothing.

  If the body raises (a refused estimator, a bad value found late, an interrupt)
  before any checkpoint or result was written, the ``config.json`` this call
  wrote is removed: a run that trained nothing does not pin the workdir to its
  config, so the fix its error message suggests can run there.

  Raises:
    WorkdirConfigError: as :func:`check_workdir_config`; whatever the body raises.
  """
  path = os.path.join(workdir, "config.json")
  before = None if os.path.exists(path) else _files_under(workdir)
  check_workdir_config(config, workdir)
  try:
    yield
  except BaseException:
    if before is not None:
      new = _files_under(workdir) - before
      if all(os.path.basename(f) in _UNTRAINED_FILES for f in new):
        for f in new:
          os.remove(f)
    raise


def run_path(workdir: str, method: str, seed: int) -> str:
  """``runs/<method>_seed<seed>.json``: the record of a finished student run."""
  return os.path.join(workdir, "runs", f"{method}_seed{seed}.json")


class InterruptHandler:
  """A SIGINT handler that raises ``KeyboardInterrupt`` as Python's does, and remembers it.

  Python runs a signal handler at the next bytecode of the main thread, which can be
  inside a garbage-collector callback (jax registers one) or a ``__del__``, where an
  exception is printed as "Exception ignored" and lost: the run would go on. With this
  handler installed (``experiments.main`` does), the next checkpoint save raises the
  lost interrupt instead (:func:`_interrupts_deferred`).
  """

  def __init__(self):
    self.received = False

  def __call__(self, signum, frame):
    del signum, frame
    self.received = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
  """Holds SIGINT (Ctrl-C) until the block ends, then raises ``KeyboardInterrupt``.

  A ``KeyboardInterrupt`` raised inside orbax's save can abort the process from
  one of its threads and leave a ``*.orbax-checkpoint-tmp`` folder; deferred, the
  save completes and the interrupt follows it. An interrupt that an
  :class:`InterruptHandler` received but that was lost (see there) is raised before
  the block. Off the main thread (where Python cannot install handlers), or where
  SIGINT is ignored or has a handler of the caller's, the block runs as is.
  """
  handler = signal.getsignal(signal.SIGINT)
  if (threading.current_thread() is not threading.main_thread() or
      not (handler is signal.default_int_handler or isinstance(handler, InterruptHandler))):
    yield  # not Python's Ctrl-C (ignored, or a handler of the caller's): left alone
    return
  if isinstance(handler, InterruptHandler) and handler.received:
    raise KeyboardInterrupt  # received earlier where raising it was lost
  received: list[int] = []
  previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if received:
    raise KeyboardInterrupt


class Checkpoints:
  """Synchronous orbax checkpoints of ``(pytree state, JSON meta)`` pairs, last 2 kept.

  Saves are synchronous so that a checkpoint on disk is complete when the
  callback returns; orbax writes to a temporary directory and renames it, so a
  kill mid-save leaves the previous checkpoint as the latest. A Ctrl-C (SIGINT)
  during a save is held until the save is complete, then raised.
  """

  def __init__(self, directory: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  @staticmethod
  def _fill_empty(tree: Any) -> Any:
    """Zero-size arrays -> a one-element stand-in; :meth:`restore_state` puts them back.

    Orbax refuses zero-size arrays, e.g. the score kernel of a teacher with
    ``features=()``.
    """
    return jax.tree_util.tree_map(
        lambda x: jnp.zeros((1,), x.dtype) if getattr(x, "size", 1) == 0 else x, tree)

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves ``(state, meta)`` as ``step``; a SIGINT meanwhile is raised once it is on disk."""
    with _interrupts_deferred():
      self._manager.save(
          step,
          args=ocp.args.Composite(
              state=ocp.args.StandardSave(self._fill_empty(state)), meta=ocp.args.JsonSave(meta)))
      self._manager.wait_until_finished()

  def restore_meta(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def restore_state(self, step: int, template: Any) -> Any:
    restored = self._manager.restore(
        step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(self._fill_empty(template))))["state"]
    return jax.tree_util.tree_map(lambda t, r: t
                                  if getattr(t, "size", 1) == 0 else r, template, restored)

  def close(self) -> None:
    self._manager.close()
