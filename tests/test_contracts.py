"""The typed contracts (loss provider, option names) and the shared vocabulary ids."""
import typing

import numpy as np
import pytest

import dlf_jax
from dlf_jax import contracts, hypergrad, losses, teaching
from dlf_jax import teacher as teacher_lib
from dlf_jax.data import translation, vocab


def test_teacher_and_baselines_are_loss_providers():
  teacher = teacher_lib.Teacher(
      teacher_lib.AttentionTeacher(4, parameterisation="diagonal"), total_steps=10)
  assert isinstance(teacher, contracts.LossProvider)
  assert teacher.needs_theta
  for name in losses.BASELINES:
    baseline = losses.baseline_loss(name)
    assert isinstance(baseline, losses.BASELINES[name]) and baseline.name == name
    assert isinstance(baseline, contracts.LossProvider), name
    assert 0.0 <= baseline.ema_decay < 1.0
    assert not baseline.needs_theta


def test_an_object_without_phi_is_not_a_loss_provider():

  class NoPhi:
    num_classes, ema_decay, needs_theta = 4, 0.9, True

    def init(self, rng):
      return {}

    def state_features(self, step, stats):
      return None

    def loss(self, phi, outputs, labels, mask=None):
      return 0.0

  assert not isinstance(NoPhi(), contracts.LossProvider)


@pytest.mark.parametrize("literal, runtime",
                         [(contracts.Method, hypergrad.METHODS),
                          (contracts.Memory, hypergrad.MEMORY_POLICIES),
                          (contracts.Mode, teaching.MODES),
                          (contracts.Parameterisation, losses.PARAMETERISATIONS),
                          (contracts.Link, losses.LINKS)])
def test_runtime_option_tuples_are_the_literal_types(literal, runtime):
  assert tuple(runtime) == typing.get_args(literal)


def test_unknown_option_is_refused_by_the_api():
  with pytest.raises(ValueError, match="memory"):
    hypergrad.hypergradient(
        None, None, None, None, None, {"x": np.zeros((2, 1, 1))}, {}, memory="everything")


def test_vocab_ids_are_the_readers_ids():
  assert (translation.PAD_ID, translation.UNK_ID, translation.BOS_ID, translation.EOS_ID) == (
      vocab.PAD_ID, vocab.UNK_ID, vocab.BOS_ID, vocab.EOS_ID) == (0, 1, 2, 3)
  assert set(vocab.NEVER_EMITTED) == {vocab.PAD_ID, vocab.BOS_ID}


def test_strip_special_and_until_end():
  e, p, b = vocab.EOS_ID, vocab.PAD_ID, vocab.BOS_ID
  row = np.array([b, 7, p, 9, vocab.UNK_ID, e, 11, p])
  assert vocab.strip_special(row) == [7, 9, vocab.UNK_ID]  # UNK is content
  assert vocab.until_end([7, 9, e, 11]) == (7, 9)
  assert vocab.until_end([7, p, 9]) == (7,)
  assert vocab.until_end([]) == () and vocab.strip_special([e, 5]) == []


def test_package_exports_the_protocol():
  assert dlf_jax.LossProvider is contracts.LossProvider
  assert dlf_jax.HypergradEstimator is contracts.HypergradEstimator


def test_registered_estimators_are_hashable_hypergrad_estimators():
  for name, cls in dlf_jax.estimators.ESTIMATORS.items():
    est = cls()
    assert isinstance(est, contracts.HypergradEstimator) and est.name == name
    assert hash(est) == hash(cls()) and est == cls()
  assert not isinstance("reverse", contracts.HypergradEstimator)
