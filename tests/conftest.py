"""Shared pytest fixtures for the dlf_jax tests."""
import contextlib

import jax
import numpy as np
import pytest

# Options that change how XLA compiles but not jit's cache key: a function compiled under
# one setting would be reused under the other, so switching them clears the caches.
_COMPILE_OPTIONS = ("jax_disable_most_optimizations",)


@contextlib.contextmanager
def jax_option(name: str, value):
  """Sets ``jax.config`` option ``name`` to ``value`` and restores it afterwards."""
  previous = jax.config.read(name)
  switch = name in _COMPILE_OPTIONS and previous != value
  jax.config.update(name, value)
  if switch:
    jax.clear_caches()
  try:
    yield
  finally:
    jax.config.update(name, previous)
    if switch:
      jax.clear_caches()


@pytest.fixture
def x64():
  """Enables float64 for one test and restores the previous setting afterwards."""
  with jax_option("jax_enable_x64", True):
    yield


@pytest.fixture
def rng():
  """A seeded numpy generator (fresh per test)."""
  return np.random.default_rng(0)


@pytest.fixture(scope="module")
def fast_compile():
  """XLA without most optimizations for a module: compiles ~2x faster; for tiny programs."""
  with jax_option("jax_disable_most_optimizations", True):
    yield


@pytest.fixture
def xla_optimized():
  """XLA's default optimizations for one test (inside a ``fast_compile`` module)."""
  with jax_option("jax_disable_most_optimizations", False):
    yield


# The longest test files first (measured, seconds of one worker): with one file per
# pytest-xdist worker (``--dist loadfile``, ``--no-loadscope-reorder`` in pyproject.toml), the
# longest start at once and the short files fill the gaps, so the workers finish together.
# Files not listed run after these, in collection order.
_LONGEST_FIRST = ("test_hypergrad.py", "test_loss_family.py", "test_nmt_experiments.py",
                  "test_experiments.py", "test_resume.py", "test_notebook.py", "test_decoding.py",
                  "test_forward_hypergrad.py", "test_nmt_hypergrad.py", "test_models.py",
                  "test_evolution.py", "test_guards.py", "test_estimators.py", "test_parallel.py",
                  "test_benchmarks.py", "test_distributed.py", "test_bleu.py", "test_teacher.py",
                  "test_losses.py", "test_measures.py", "test_corrections.py", "test_recipe.py",
                  "test_noise.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file
