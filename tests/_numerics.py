"""Comparison helpers shared by the hypergradient tests (not a test module)."""
import functools

import jax
import numpy as np

from dlf_jax import hypergrad


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


def hypergradients_together(student, teacher, measure, variants, theta, state, batches, dev):
  """``{name: hypergrad.hypergradient(..., **variants[name])}`` compiled as one jitted program.

  One compilation instead of one per variant (compilation dominates these tests); each
  output is still computed by its own path.
  """
  fns = {
      name: functools.partial(hypergrad.hypergradient, student, teacher, measure, **kw)
      for name, kw in variants.items()
  }
  return jax.jit(lambda *args: {
      name: fn(*args) for name, fn in fns.items()
  })(theta, state, batches, dev)
