"""dlf_jax: Learning to Teach with Dynamic Loss Functions (Wu et al., NeurIPS 2018) in JAX.

Public API:

* :func:`teach` -- Algorithm 1: learn a teacher by unrolling students, with any
  hypergradient estimator (module :mod:`dlf_jax.teaching`, which also holds
  :func:`train_student`, the :class:`Schedule`, :class:`WarmStart` and
  :class:`DevSampling` values);
* :mod:`dlf_jax.estimators` -- the estimators ``teach`` takes (``ReverseMode``,
  ``ForwardMode``, ``AntitheticES``, ``PES``; :data:`~dlf_jax.estimators.ESTIMATORS`
  by name), each a :class:`HypergradEstimator`;
* :func:`train_student` -- train a fresh student with a frozen teacher or a baseline,
  after the taught students' warm start (``warm_start=result.schedule.warm_start``);
* :class:`Student`, :func:`make_optimizer` -- the student contract;
* :class:`Teacher`, :class:`AttentionTeacher`, :class:`MLPTeacher` -- mu_theta;
* :mod:`dlf_jax.losses` -- Eqn. (2) as one class per form of W (:class:`FullW`,
  :class:`DiagonalW`, :class:`LowRankW`, :class:`SoftTargetW`; :func:`parametric_loss`)
  and the baselines as loss providers (:class:`CrossEntropyLoss`,
  :class:`LabelSmoothingLoss`, :class:`LargeMarginLoss`, :class:`SigmoidCrossEntropyLoss`;
  :func:`baseline_loss` by name);
* :class:`LossProvider`, :class:`HypergradEstimator`, :class:`BatchSampler` -- the
  contracts a teacher or a baseline loss, a hypergradient estimator and training data
  that draws its own batches implement
  (:mod:`dlf_jax.contracts`, with the option names as ``Literal`` types); the
  teacher's state features are :mod:`dlf_jax.state_features`;
* :class:`ExpectedAccuracy`, :class:`SigmoidSmoothedError`, :class:`CrossEntropy` -- dev measures;
* :func:`hypergradient`, :func:`make_hypergradient_fn` -- Eqns. (3)-(5), reverse mode;
* :mod:`dlf_jax.forward_hypergrad` -- the same hypergradient in forward mode (memory
  flat in the horizon); :mod:`dlf_jax.evolution` -- ES / PES (any reward);
* :mod:`dlf_jax.parallel` -- data parallelism over devices (``jax.sharding``);
* :mod:`dlf_jax.decoding` -- greedy / beam search / sampling for seq2seq students;
* :mod:`dlf_jax.bleu` -- sacreBLEU evaluation and the expected-BLEU teacher reward
  (:class:`~dlf_jax.bleu.ExpectedSentenceBLEU`);
* :mod:`dlf_jax.analysis` -- what one reads off a frozen teacher along a student's run
  (``phi_t`` and ``W_t`` snapshots, per-class smoothing against frequency).
"""
from dlf_jax import (analysis, bleu, data, decoding, estimators, evolution, forward_hypergrad,
                     models, parallel)
from dlf_jax.contracts import BatchSampler, HypergradEstimator, LossProvider
from dlf_jax.hypergrad import HypergradResult, hypergradient, make_hypergradient_fn
from dlf_jax import losses
from dlf_jax.losses import (CrossEntropyLoss, DiagonalW, FullW, LabelSmoothingLoss, LargeMarginLoss,
                            LossForm, LowRankW, SigmoidCrossEntropyLoss, SoftTargetW, baseline_loss,
                            parametric_loss)
from dlf_jax.measures import CrossEntropy, ExpectedAccuracy, SigmoidSmoothedError
from dlf_jax.student import Student, StudentState, make_optimizer
from dlf_jax.teaching import (DevSampling, Schedule, TeachResult, TeachState, TrainResult,
                              WarmStart, teach, train_student)
from dlf_jax.teacher import AttentionTeacher, MLPTeacher, Teacher

__version__ = "0.1.0"

__all__ = [
    "teach",
    "train_student",
    "TeachResult",
    "TeachState",
    "TrainResult",
    "Schedule",
    "WarmStart",
    "DevSampling",
    "HypergradEstimator",
    "BatchSampler",
    "estimators",
    "Student",
    "StudentState",
    "make_optimizer",
    "Teacher",
    "AttentionTeacher",
    "MLPTeacher",
    "losses",
    "LossForm",
    "FullW",
    "DiagonalW",
    "LowRankW",
    "SoftTargetW",
    "parametric_loss",
    "CrossEntropyLoss",
    "LabelSmoothingLoss",
    "LargeMarginLoss",
    "SigmoidCrossEntropyLoss",
    "baseline_loss",
    "LossProvider",
    "ExpectedAccuracy",
    "SigmoidSmoothedError",
    "CrossEntropy",
    "hypergradient",
    "make_hypergradient_fn",
    "HypergradResult",
    "data",
    "models",
    "parallel",
    "decoding",
    "bleu",
    "forward_hypergrad",
    "evolution",
    "analysis",
]
