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


def leaf_central_difference(value, theta, leaf, idx, h=1e-5):
  """``(value(theta + h e) - value(theta - h e)) / 2h`` for entry ``idx`` of leaf ``leaf``."""
  leaves, treedef = jax.tree.flatten(theta)

  def shifted(delta):
    new = list(leaves)
    new[leaf] = leaves[leaf].at[idx].add(delta)
    return value(jax.tree.unflatten(treedef, new))

  return float(shifted(h) - shifted(-h)) / (2 * h)
