"""Shared pytest fixtures for the dlf_jax tests."""
import jax
import numpy as np
import pytest


@pytest.fixture
def x64():
  """Enables float64 for one test and restores the previous setting afterwards."""
  previous = jax.config.read("jax_enable_x64")
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def rng():
  """A seeded numpy generator (fresh per test)."""
  return np.random.default_rng(0)


@pytest.fixture(scope="module")
def fast_compile():
  """XLA without most optimizations for a module: compiles ~2x faster; for tiny programs."""
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)
