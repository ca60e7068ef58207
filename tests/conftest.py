"""Shared pytest fixtures for the dlf_jax tests."""
import contextlib

import jax
import numpy as np
import pytest


@contextlib.contextmanager
def jax_option(name: str, value):
  """Sets ``jax.config`` option ``name`` to ``value`` and restores it afterwards."""
  previous = jax.config.read(name)
  jax.config.update(name, value)
  try:
    yield
  finally:
    jax.config.update(name, previous)


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
