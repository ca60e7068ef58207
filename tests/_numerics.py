"""Comparison helpers shared by the hypergradient tests (not a test module)."""
import jax
import numpy as np


def flat(tree):
  """All leaves of ``tree`` as one float64 vector."""
  return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])


def rel_err(got, ref):
  """``||got - ref|| / ||ref||`` over all leaves (same structure and shapes)."""
  got, ref = flat(got), flat(ref)
  assert got.shape == ref.shape
  return np.linalg.norm(got - ref) / np.linalg.norm(ref)
