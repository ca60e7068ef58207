"""The taught student's recipe (a warm start, then the teacher) and the batch-sampler contract."""
import jax
import numpy as np
import pytest

import dlf_jax
from dlf_jax import contracts, models
from dlf_jax.data import SegmentSampler, translation


@pytest.fixture(autouse=True)
def _fast_compile(fast_compile):
  """Tiny programs: XLA's cheap compile mode for the whole module."""


def _problem(num_classes=3, n=24):
  rng = np.random.default_rng(0)
  data = {
      "x": rng.normal(size=(n, 4)).astype(np.float32),
      "y": rng.integers(0, num_classes, n).astype(np.int32)
  }
  student = dlf_jax.Student(
      models.MLP(hidden=(5,), num_classes=num_classes),
      dlf_jax.make_optimizer("sgd", 0.1),
      num_classes=num_classes)
  teacher = dlf_jax.Teacher(
      dlf_jax.AttentionTeacher(num_classes, num_matrices=2, parameterisation="diagonal"),
      total_steps=6)
  theta = jax.tree_util.tree_map(lambda v: v + 0.2, teacher.init(jax.random.PRNGKey(1)))
  return student, teacher, theta, data


def _train(student, loss, data, **kwargs):
  kwargs = {
      "num_steps": 6,
      "batch_size": 4,
      "seed": 3,
      "eval_every": 4,
      "dev": None,
      "progress": False,
      **kwargs
  }
  return dlf_jax.train_student(student, loss, data, **kwargs)


def _assert_same_params(a, b):
  la, lb = jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)
  assert len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


# ------------------------------------------------------------------------------ warm start


def test_warm_start_is_cross_entropy_then_the_teacher():
  student, teacher, theta, data = _problem()
  warm = _train(
      student, teacher, data, theta=theta, warm_start=dlf_jax.WarmStart(steps=3), dev=data)
  # By hand: 3 cross-entropy steps, then the teacher from that carry (same seed, batches).
  ce = _train(student, dlf_jax.CrossEntropyLoss(), data, num_steps=3, dev=data)
  by_hand = _train(student, teacher, data, theta=theta, init_state=ce.state, dev=data)
  _assert_same_params(warm.state, by_hand.state)
  assert [r["step"] for r in warm.history] == [3, 4, 6]  # the warm start ends evaluated
  assert warm.history == [
      dict(r, seconds=w["seconds"]) for r, w in zip(ce.history + by_hand.history, warm.history)
  ]
  assert "w_diag_mean" not in warm.history[0] and "w_diag_mean" in warm.history[1]
  # Without the warm start the student differs (the test sees the stage).
  cold = _train(student, teacher, data, theta=theta)
  assert not np.array_equal(
      jax.tree_util.tree_leaves(cold.state.params)[0],
      jax.tree_util.tree_leaves(warm.state.params)[0])


def test_warm_start_longer_than_the_run_is_clipped():
  student, teacher, theta, data = _problem()
  clipped = _train(
      student, teacher, data, theta=theta, num_steps=4, warm_start=dlf_jax.WarmStart(steps=10))
  ce = _train(student, dlf_jax.CrossEntropyLoss(), data, num_steps=4)
  _assert_same_params(clipped.state, ce.state)


def test_teach_result_carries_the_warm_start_of_its_students():
  student, teacher, _, data = _problem()
  schedule = dlf_jax.Schedule(unroll_steps=2, num_episodes=1, pretrain_steps=2, batch_size=4)
  result = dlf_jax.teach(student, teacher, data, data, schedule=schedule, progress=False)
  assert result.schedule is schedule
  assert result.schedule.warm_start == dlf_jax.WarmStart(steps=2)
  assert result.schedule.warm_start.loss == dlf_jax.CrossEntropyLoss()
  assert dlf_jax.Schedule().warm_start.steps == 0


@pytest.mark.parametrize("steps", [-1, 1.5, True])
def test_warm_start_steps_must_be_a_count(steps):
  with pytest.raises(ValueError, match=rf"WarmStart\.steps must be an integer >= 0, got {steps}"):
    dlf_jax.WarmStart(steps=steps)


def test_warm_start_refuses_what_is_not_a_loss_and_a_bare_count():
  with pytest.raises(TypeError, match="WarmStart loss must be a fixed LossProvider"):
    dlf_jax.WarmStart(steps=2, loss="cross_entropy")
  student, teacher, theta, data = _problem()
  with pytest.raises(TypeError, match=r"warm_start must be a dlf_jax.WarmStart .* got 5"):
    _train(student, teacher, data, theta=theta, warm_start=5)


# --------------------------------------------------------------------------- batch sampler


class _ArraySampler:
  """A sampler of this test's own: SegmentSampler's batches, scans of 2 steps, calls logged."""

  segment_steps = 2

  def __init__(self, arrays, batch_size, seed=0, log=None):
    self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
    self.log = [] if log is None else log

  def reseeded(self, seed):
    self.log.append(("reseeded", seed))
    return _ArraySampler(self.arrays, self.batch_size, seed, self.log)

  def segment(self, start, count):
    self.log.append(("segment", start, count))
    return SegmentSampler(self.arrays, self.batch_size, seed=self.seed).segment(start, count)


def test_a_sampler_of_ones_own_is_accepted():
  student, _, _, data = _problem()
  sampler = _ArraySampler(data, 4)
  assert isinstance(sampler, contracts.BatchSampler)
  ce = dlf_jax.CrossEntropyLoss()
  own = _train(student, ce, sampler, num_steps=5, eval_every=5)
  assert sampler.log == [("reseeded", 3), ("segment", 0, 1), ("segment", 0, 2), ("segment", 2, 2),
                         ("segment", 4, 1)]  # cut at segment_steps
  arrays = _train(student, ce, data, num_steps=5, eval_every=5)
  for a, b in zip(
      jax.tree_util.tree_leaves(own.state.params), jax.tree_util.tree_leaves(arrays.state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)  # same batches, other scan cuts


def test_a_sampler_without_segment_is_refused_by_name():

  class NoSegment:
    batch_size = 4

    def reseeded(self, seed):
      return self

  student, _, _, _ = _problem()
  assert not isinstance(NoSegment(), contracts.BatchSampler)
  with pytest.raises(
      TypeError,
      match=r"NoSegment\) looks like a batch sampler but lacks "
      r"segment: .*segment\(start, count\)"):
    _train(student, dlf_jax.CrossEntropyLoss(), NoSegment())
  with pytest.raises(TypeError, match="or a dlf_jax.contracts.BatchSampler; got int"):
    _train(student, dlf_jax.CrossEntropyLoss(), 7)


def test_the_library_samplers_are_batch_samplers():
  rng = np.random.default_rng(0)
  arrays = {"x": rng.normal(size=(10, 2)), "y": np.arange(10)}
  sampler = SegmentSampler(arrays, 3, seed=1)
  assert isinstance(sampler, contracts.BatchSampler) and sampler.segment_steps is None
  again, fresh = sampler.reseeded(5).segment(2, 4), SegmentSampler(arrays, 3, seed=5).segment(2, 4)
  assert all(np.array_equal(again[k], fresh[k]) for k in arrays)
  assert not np.array_equal(sampler.segment(2, 4)["y"], fresh["y"])
  assert sampler.seed == 1  # reseeded leaves it alone
  tokens = rng.integers(4, 9, size=(12, 5)).astype(np.int32)
  corpus = {
      "src": tokens,
      "tgt_in": tokens,
      "tgt_out": tokens,
      "mask": np.ones((12, 5), np.float32)
  }
  bucket = translation.BucketSampler(corpus, 2, block=3)
  assert isinstance(bucket, contracts.BatchSampler) and bucket.segment_steps == 3
  assert not isinstance(arrays, contracts.BatchSampler)
  assert dlf_jax.BatchSampler is contracts.BatchSampler
