"""Algorithm 1 (``teach``) and training a student with a frozen teacher (``train_student``).

``teach`` repeats: take a student (fresh, optionally pre-trained with
cross-entropy for ``pretrain_steps``, as the authors' demo does); unroll ``T``
inner steps; compute the hypergradient; take one outer step of the teacher with
an optax optimizer (ascent on the smoothed dev measure M~, or descent if the
measure is an error). Three hypergradient estimators (``estimator=``):

* ``reverse`` (default): the reverse scan of Eqns. (3)-(5),
  :mod:`dlf_jax.hypergrad` (memory grows with ``T``);
* ``forward``: forward-mode, :mod:`dlf_jax.forward_hypergrad` -- the same
  number, memory flat in ``T`` (the segment is streamed from the host in
  chunks of ``chunk_steps``), cost ~``P`` x the unroll: for small teachers and
  long (full-run) horizons;
* ``es``: evolution strategies, :mod:`dlf_jax.evolution` -- forward runs of
  perturbed teachers only, a noisy estimate.

Two schedules, one loop: an *episode* is one student; it is cut into
``segments_per_episode`` consecutive segments of ``T`` steps and the teacher is
updated after each segment. ``mode='episodes'`` (default ``1`` segment: a new
student per teacher update) or ``mode='online'`` (one student run of
``total_steps = segments x T`` per episode, so the teacher sees every phase of
training).

Both functions are resumable: they take and return plain pytrees
(:class:`TeachState`, :class:`~dlf_jax.student.StudentState`), call a
``callback`` after every outer step / evaluation (e.g. to checkpoint), and draw
batch ``i`` of a run as a pure function of ``(seed, i)``, so a resumed run
reproduces an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping, Optional, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from dlf_jax import forward_hypergrad, hypergrad, losses, measures, parallel, state_features
from dlf_jax import unroll as unroll_lib
from dlf_jax.contracts import Estimator, LossProvider, Memory, Method, Mode
from dlf_jax.data.batching import SegmentSampler, make_eval_batches
from dlf_jax.student import Student, StudentState
from dlf_jax.teacher import Teacher

__all__ = ["TeachState", "TeachResult", "TrainResult", "teach", "train_student", "MODES",
           "ESTIMATORS", "check_label_range", "check_descent"]

MODES: tuple[Mode, ...] = get_args(Mode)
ESTIMATORS: tuple[Estimator, ...] = get_args(Estimator)
DEFAULT_MAX_CHUNK_STEPS = 200


@struct.dataclass
class TeachState:
  """Everything Algorithm 1 carries between outer steps (checkpoint this).

  Attributes:
    theta: teacher parameters.
    opt_state: the teacher optimizer's state.
    student: the current student's carry (continued across segments).
    update: int, the number of outer steps taken so far.
  """
  theta: Any
  opt_state: Any
  student: Optional[StudentState]
  update: int = struct.field(pytree_node=False, default=0)


@struct.dataclass
class TeachResult:
  """``theta``: the learned teacher; ``history``: one dict per outer step; ``state``."""
  theta: Any
  history: list = struct.field(pytree_node=False)
  state: TeachState


@struct.dataclass
class TrainResult:
  """``state``: the trained student; ``history``: one dict per evaluation."""
  state: StudentState
  history: list = struct.field(pytree_node=False)


def _is_sampler(data) -> bool:
  return hasattr(data, "segment") and hasattr(data, "batch_size")


def _sampler(train, batch_size: int, seed: int, student: Optional[Student] = None):
  """``train`` itself if it is a batch sampler, else a :class:`SegmentSampler` over it."""
  if _is_sampler(train):
    if train.batch_size != batch_size:
      raise ValueError(f"The training sampler draws batches of {train.batch_size} but "
                       f"batch_size={batch_size}; make them agree.")
    return train.reseeded(seed) if hasattr(train, "reseeded") else train
  return SegmentSampler(_as_arrays(train, "train", student), batch_size, seed=seed)


def check_label_range(arrays: Mapping, student: Student, name: str) -> None:
  """Host-side check that the labels of a split are class ids in ``[0, C)``.

  Done once per split before any jitted work: out-of-range labels otherwise
  train silently (``-1`` indexes class ``C - 1``) or give NaN losses far from
  the cause.

  Args:
    arrays: the split, a dict with the student's ``label_key`` (int ``[N, ...]``).
    student: gives ``C`` (``num_classes``), the label key and the mask key
      (masked-out entries, e.g. padding tokens, are not checked).
    name: the split's name for the message (``train``, ``dev``, ``test``).

  Raises:
    ValueError: naming the split, the first bad value and the valid range.
  """
  labels = arrays.get(student.label_key)
  if labels is None:
    return
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name}[{student.label_key!r}] must hold integer class ids, got dtype "
                     f"{labels.dtype}.")
  mask = arrays.get(student.mask_key)
  valid = labels if mask is None else labels[np.asarray(mask) > 0]
  bad = valid[(valid < 0) | (valid >= student.num_classes)]
  if bad.size:
    raise ValueError(f"{name}[{student.label_key!r}] holds label {int(bad.flat[0])} "
                     f"({bad.size} bad in all), outside [0, {student.num_classes - 1}] for a "
                     f"student with num_classes={student.num_classes}: fix the labels or the "
                     "student's num_classes.")


def _as_arrays(data, name: str, student: Optional[Student] = None) -> dict:
  if isinstance(data, Mapping):
    arrays = dict(data)
  elif hasattr(data, "x") and hasattr(data, "y"):
    arrays = {"x": data.x, "y": data.y}
  else:
    raise TypeError(f"{name} must be a dict of arrays (e.g. {{'x': ..., 'y': ...}}) or an "
                    f"object with .x and .y; got {type(data).__name__}.")
  for k, v in arrays.items():
    v = np.asarray(v)
    if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
      raise ValueError(f"{name}[{k!r}] contains NaN or inf; clean the data first.")
    arrays[k] = v
  if student is not None:
    check_label_range(arrays, student, name)
  return arrays


def check_descent(tx: optax.GradientTransformation, theta: Any) -> None:
  """Raises if the teacher optimizer's first update ascends its gradient (e.g. ``sgd(-1)``).

  ``teach`` hands the optimizer the gradient of the loss it minimises (the
  negated measure for a maximised one); a transformation whose update has a
  positive inner product with that gradient moves the teacher the wrong way.

  Raises:
    ValueError: naming the inner product and the fix.
  """
  grads = jax.tree_util.tree_map(jnp.ones_like, theta)
  updates, _ = tx.update(grads, tx.init(theta), theta)
  dot = float(sum(jnp.vdot(u, g) for u, g in zip(jax.tree_util.tree_leaves(updates),
                                                   jax.tree_util.tree_leaves(grads))))
  if dot > 0:
    raise ValueError(f"teacher_optimizer's first update ascends its gradient (<update, grad> = "
                     f"{dot:.3g} > 0): a negative learning rate? Use a positive one; teach "
                     "already ascends a maximised measure.")


def _nan_hint(state: StudentState) -> str:
  """What to try after a NaN hypergradient: ``eps_root`` for Adam students, else the rates."""
  is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
  adam = [x for x in jax.tree_util.tree_leaves(state.opt_state, is_leaf=is_adam) if is_adam(x)]
  if adam:
    return ("the student uses Adam: differentiating through it needs eps_root > 0 (sqrt has an "
            "infinite derivative at 0; optax.adam's default is eps_root=0) -- build it with "
            "dlf_jax.make_optimizer('adam', lr) or optax.adam(lr, eps_root=1e-8); else lower "
            "the student learning rate or T.")
  return "lower the student learning rate or T."


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
  if not enabled:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)


def _host(tree) -> dict:
  return {k: float(v) for k, v in jax.device_get(tree).items()}


# Jitted functions are cached per (student, loss) so that repeated calls (seeds,
# methods, resumed runs) compile once. Students and teachers hash by identity.
@functools.lru_cache(maxsize=32)
def _unroll_fn(student, loss):
  return jax.jit(lambda theta, state, batches: unroll_lib.unroll(student, loss, theta, state,
                                                                 batches))


@functools.lru_cache(maxsize=32)
def _eval_fn(student):
  return jax.jit(lambda params, model_state, batches: unroll_lib.evaluate(
      student, params, model_state, batches))


@functools.lru_cache(maxsize=32)
def _phi_stats_fn(loss):
  return jax.jit(lambda theta, state: losses.phi_statistics(
      loss.phi(theta, loss.state_features(state.step, state.stats))))


_hypergradient_fn = functools.lru_cache(maxsize=32)(
    lambda student, teacher, measure, method, memory, checkpoint_every:
    hypergrad.make_hypergradient_fn(student, teacher, measure, method=method, memory=memory,
                                    checkpoint_every=checkpoint_every))

_forward_fns = functools.lru_cache(maxsize=32)(forward_hypergrad.make_forward_fns)


@functools.lru_cache(maxsize=32)
def _es_fn(student, teacher, measure, population, sigma):
  """Jitted :func:`dlf_jax.evolution.es_gradient` (imported here: only ``es`` needs it)."""
  from dlf_jax import evolution
  return evolution.make_es_gradient_fn(student, teacher, measure, population=population,
                                       sigma=sigma)


def _forward_segment(fns, theta, student_state, sampler, start: int, num_steps: int,
                     chunk_steps: int, dev_batches, mesh) -> hypergrad.HypergradResult:
  """Forward-mode hypergradient of ``num_steps`` steps, batches streamed in chunks."""
  init, chunk, readout = fns
  carry = init(theta, student_state)
  parts = []
  for done in range(0, num_steps, chunk_steps):
    n = min(chunk_steps, num_steps - done)
    carry, m = chunk(theta, carry,
                     parallel.shard_batches(sampler.segment(start + done, n), mesh))
    unroll_lib.check_finite(m, start + done)
    parts.append(m)
  value, dtheta = readout(theta, carry, dev_batches)
  metrics = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *parts)
  return hypergrad.HypergradResult(dtheta=dtheta, dparams0=None, value=value,
                                   final_state=carry.state, metrics=metrics)


@dataclasses.dataclass(frozen=True)
class _TeachPlan:
  """What every outer step of one :func:`teach` call shares (fixed for the call).

  Attributes:
    student, teacher, measure, train, seed, mesh, estimator, unroll_steps,
      pretrain_steps, batch_size, segments_per_episode, dev_batch_size,
      dev_sample_size, es_population, es_sigma: :func:`teach`'s arguments.
    rng: ``PRNGKey(seed)``; ``fold_in`` it with 0 (theta), ``1000 + episode``
      (students), ``2_000_000 + update`` (the measure's dev preparation) and
      ``3_000_000 + update`` (ES).
    dev: the dev split, host arrays ``[N_dev, ...]``.
    full_dev_host, full_dev: all dev batches ``[n, B_dev, ...]`` on the host and
      sharded over ``mesh``.
    chunk: ``forward``'s chunk length.
    fns: the compiled functions (:func:`_teach_fns`).
  """
  student: Student
  teacher: Teacher
  measure: measures.Measure
  train: Any
  seed: int
  rng: jax.Array
  mesh: Optional[Mesh]
  estimator: Estimator
  unroll_steps: int
  pretrain_steps: int
  batch_size: int
  segments_per_episode: int
  dev: dict
  dev_batch_size: int
  dev_sample_size: Optional[int]
  full_dev_host: dict
  full_dev: dict
  chunk: Optional[int]
  es_population: int
  es_sigma: float
  fns: dict


def _check_teach_args(student: Student, teacher: Teacher, *, mode, estimator, chunk_steps,
                      unroll_steps, num_episodes, pretrain_steps,
                      segments_per_episode) -> int:
  """The argument checks of :func:`teach`; returns ``segments_per_episode`` (resolved)."""
  if mode not in MODES:
    raise ValueError(f"Unknown teaching mode {mode!r}; choose one of {MODES}.")
  if estimator not in ESTIMATORS:
    raise ValueError(f"Unknown hypergradient estimator {estimator!r}; choose one of "
                     f"{ESTIMATORS}.")
  if chunk_steps is not None and chunk_steps < 1:
    raise ValueError(f"chunk_steps must be >= 1, got {chunk_steps}.")
  if unroll_steps <= 0:
    raise ValueError(f"unroll_steps (T) must be >= 1, got {unroll_steps}.")
  if num_episodes <= 0 or pretrain_steps < 0:
    raise ValueError(f"num_episodes must be >= 1 and pretrain_steps >= 0; got "
                     f"{num_episodes}, {pretrain_steps}.")
  _check_class_count(student, teacher)
  if segments_per_episode is None:
    segments_per_episode = 1 if mode == "episodes" else max(
        1, (teacher.total_steps - pretrain_steps) // unroll_steps)
  if segments_per_episode <= 0:
    raise ValueError(f"segments_per_episode must be >= 1, got {segments_per_episode}.")
  return segments_per_episode


def _check_class_count(student: Student, loss: LossProvider) -> None:
  if loss.num_classes != student.num_classes:
    raise ValueError(f"The teacher's loss has C={loss.num_classes} classes but the student "
                     f"has num_classes={student.num_classes}.")


def _prepare_dev(dev, student: Student, dev_sample_size: Optional[int],
                 dev_batch_size: int) -> tuple[dict, dict]:
  """``(dev host arrays, all dev batches [n, B_dev, ...])`` after checking them.

  Raises:
    ValueError: bad dev data or labels, or ``dev_sample_size`` outside ``[1, N_dev]``.
  """
  dev = _as_arrays(dev, "dev", student)
  n_dev = len(next(iter(dev.values())))
  if dev_sample_size is not None and not 1 <= dev_sample_size <= n_dev:
    raise ValueError(f"dev_sample_size={dev_sample_size} must be in [1, {n_dev}].")
  return dev, make_eval_batches(dev, dev_batch_size)


def _initial_teach_state(teacher: LossProvider, tx: optax.GradientTransformation,
                         rng: jax.Array, init_state: Optional[TeachState],
                         mesh: Optional[Mesh]) -> TeachState:
  """``init_state`` (else a fresh theta), checked for descent, replicated over ``mesh``."""
  if init_state is None:
    theta = teacher.init(jax.random.fold_in(rng, 0))
    init_state = TeachState(theta=theta, opt_state=tx.init(theta), student=None, update=0)
  check_descent(tx, init_state.theta)
  return init_state.replace(theta=parallel.replicate(init_state.theta, mesh),
                            opt_state=parallel.replicate(init_state.opt_state, mesh),
                            student=parallel.replicate(init_state.student, mesh))


def _make_outer_step(tx: optax.GradientTransformation, maximize: bool):
  """Jitted ``(theta, opt_state, dtheta) -> (theta, opt_state)``: one teacher update.

  ``dtheta`` is ``dM~/dtheta``; the optimizer descends ``-M~`` for a maximised
  measure, else ``M~``.
  """
  @jax.jit
  def outer_step(theta, opt_state, dtheta):
    grads = jax.tree_util.tree_map(lambda g: -g if maximize else g, dtheta)
    updates, opt_state = tx.update(grads, opt_state, theta)
    return optax.apply_updates(theta, updates), opt_state
  return outer_step


def _warm_start(plan: _TeachPlan, sampler, episode: int) -> StudentState:
  """Episode ``episode``'s fresh student, pre-trained with cross-entropy (``pretrain_steps``)."""
  first = sampler.segment(0, 1)
  state = parallel.replicate(
      plan.student.init(jax.random.fold_in(plan.rng, 1000 + episode),
                        {k: v[0] for k, v in first.items()}), plan.mesh)
  for done in range(0, plan.pretrain_steps, plan.unroll_steps):   # in chunks: bounded memory
    count = min(plan.unroll_steps, plan.pretrain_steps - done)
    state, m = plan.fns["pretrain"](
        None, state, parallel.shard_batches(sampler.segment(done, count), plan.mesh))
    unroll_lib.check_finite(m, done)
  return state


def _dev_batches(plan: _TeachPlan, student_state: StudentState, update: int):
  """Outer step ``update``'s dev batches for ``dw_T``, prepared by the measure, sharded.

  All of dev, or (``dev_sample_size``) a fresh sample drawn from
  ``(seed, 7, update)``; the measure's ``prepare`` (e.g. candidate sampling
  for expected BLEU) gets ``fold_in(rng, 2_000_000 + update)``.
  """
  if plan.dev_sample_size is None:
    dev_batches = plan.full_dev_host
  else:
    n_dev = len(next(iter(plan.dev.values())))
    idx = np.random.default_rng([plan.seed, 7, update]).choice(n_dev, plan.dev_sample_size,
                                                                replace=False)
    dev_batches = make_eval_batches({k: v[idx] for k, v in plan.dev.items()},
                                    plan.dev_batch_size)
  prepared = plan.measure.prepare(plan.student, student_state, dev_batches,
                                  jax.random.fold_in(plan.rng, 2_000_000 + update))
  return (plan.full_dev if prepared is plan.full_dev_host
          else parallel.shard_batches(prepared, plan.mesh))


def _reverse_estimate(plan, theta, update, student_state, sampler, start, batches, dev_batches):
  """``reverse``: the hand-written reverse scan, Eqns. (3)-(5)."""
  del update, sampler, start
  return plan.fns["reverse"](theta, student_state, batches, dev_batches)


def _forward_estimate(plan, theta, update, student_state, sampler, start, batches, dev_batches):
  """``forward``: forward mode, the segment's batches drawn chunk by chunk."""
  del update, batches
  return _forward_segment(plan.fns["forward"], theta, student_state, sampler, start,
                          plan.unroll_steps, plan.chunk, dev_batches, plan.mesh)


def _es_estimate(plan, theta, update, student_state, sampler, start, batches, dev_batches):
  """``es``: antithetic evolution strategies over the whole segment in one call."""
  del sampler, start
  return _es_fn(plan.student, plan.teacher, plan.measure, plan.es_population, plan.es_sigma)(
      theta, student_state, batches, dev_batches,
      jax.random.fold_in(plan.rng, 3_000_000 + update))


# How each estimator computes a segment's hypergradient: ``(plan, theta, update,
# student_state, sampler, start, batches, dev_batches) -> HypergradResult``.
_ESTIMATES = {"reverse": _reverse_estimate, "forward": _forward_estimate, "es": _es_estimate}


def _checked_norm(res: hypergrad.HypergradResult, update: int, start: int, num_steps: int,
                  student_state: StudentState) -> float:
  """``||dtheta||`` after checking the segment's metrics and the hypergradient are finite.

  Raises:
    FloatingPointError: naming the step, or the outer step and what to try.
  """
  unroll_lib.check_finite(res.metrics, start)
  hnorm = float(optax.tree.norm(res.dtheta))
  if not np.isfinite(hnorm):
    raise FloatingPointError(
        f"Non-finite hypergradient at outer step {update} (student steps "
        f"{start}..{start + num_steps - 1}); " + _nan_hint(student_state))
  return hnorm


def _with_dev_accuracy(state: StudentState, accuracy: float) -> StudentState:
  """The student's carry with its running ``dev_acc`` (the teacher's state) set to ``accuracy``."""
  return state.replace(stats=state_features.with_dev_accuracy(state.stats, accuracy))


def _teach_record(plan: _TeachPlan, update: int, episode: int, segment: int,
                  res: hypergrad.HypergradResult, final: StudentState, dev_accuracy: float,
                  hnorm: float, phi_stats: dict) -> dict:
  """The history record of one outer step (``seconds`` are added by the caller)."""
  return {
      "update": update, "episode": episode, "segment": segment,
      "student_step": int(final.step), "estimator": plan.estimator,
      "dev_measure": float(res.value), "dev_accuracy": dev_accuracy,
      "train_loss": float(jnp.mean(res.metrics.loss)),
      "train_cross_entropy": float(jnp.mean(res.metrics.cross_entropy)),
      "hypergrad_norm": hnorm, **phi_stats,
  }


def _teach_update(plan: _TeachPlan, state: TeachState) -> tuple[TeachState, dict]:
  """One outer step of Algorithm 1: a segment of ``T`` student steps, one teacher update.

  Returns:
    ``(the next TeachState, the step's history record)``.
  """
  t0 = time.time()
  episode, segment = divmod(state.update, plan.segments_per_episode)
  sampler = _sampler(plan.train, plan.batch_size, plan.seed * 1_000_003 + episode, plan.student)
  student_state, warm_start_seconds = state.student, 0.0
  if segment == 0 or student_state is None:
    student_state = _warm_start(plan, sampler, episode)
    warm_start_seconds = time.time() - t0   # reported apart from the outer step's time
    t0 = time.time()
  start = int(student_state.step)
  batches = None
  if plan.estimator != "forward":         # forward draws its batches chunk by chunk
    batches = parallel.shard_batches(sampler.segment(start, plan.unroll_steps), plan.mesh)
  dev_batches = _dev_batches(plan, student_state, state.update)
  res = _ESTIMATES[plan.estimator](plan, state.theta, state.update, student_state, sampler,
                                   start, batches, dev_batches)
  hnorm = _checked_norm(res, state.update, start, plan.unroll_steps, student_state)
  theta, opt_state = plan.fns["outer_step"](state.theta, state.opt_state, res.dtheta)
  final = res.final_state
  dev_accuracy = _host(plan.fns["eval"](final.params, final.model_state,
                                        plan.full_dev))["accuracy"]
  final = _with_dev_accuracy(final, dev_accuracy)
  record = _teach_record(plan, state.update, episode, segment, res, final, dev_accuracy, hnorm,
                         _host(plan.fns["phi"](state.theta, student_state)))
  last = segment == plan.segments_per_episode - 1
  state = TeachState(theta=theta, opt_state=opt_state, student=None if last else final,
                     update=state.update + 1)
  record["seconds"] = time.time() - t0
  record["warm_start_seconds"] = warm_start_seconds
  return state, record


def _teach_fns(student: Student, teacher: Teacher, measure: measures.Measure, tx, *,
               estimator, method, memory, checkpoint_every) -> dict:
  """The compiled functions of one :func:`teach` call (cached ones where they can be)."""
  return {
      "forward": _forward_fns(student, teacher, measure) if estimator == "forward" else None,
      "reverse": _hypergradient_fn(student, teacher, measure, method, memory, checkpoint_every),
      "eval": _eval_fn(student),
      "pretrain": _unroll_fn(student, losses.CrossEntropyLoss()),
      "phi": _phi_stats_fn(teacher),
      "outer_step": _make_outer_step(tx, measure.maximize),
  }


def _report(callback, bar, state, record: dict, steps: int, **postfix) -> None:
  """Calls ``callback(state, record)`` and advances the progress bar by ``steps``."""
  if callback is not None:
    callback(state, record)
  if bar is not None:
    bar.update(steps)
    bar.set_postfix(**postfix)


def teach(student: Student, teacher: Teacher, train, dev, *,
          measure: Optional[measures.Measure] = None,
          teacher_optimizer: Optional[optax.GradientTransformation] = None,
          unroll_steps: int = 200, num_episodes: int = 10, mode: Mode = "episodes",
          segments_per_episode: Optional[int] = None, pretrain_steps: int = 0,
          batch_size: int = 128, dev_batch_size: int = 500,
          dev_sample_size: Optional[int] = None, method: Method = "auto",
          memory: Memory = "store_all", checkpoint_every: Optional[int] = None, seed: int = 0,
          init_state: Optional[TeachState] = None,
          callback: Optional[Callable[[TeachState, dict], None]] = None,
          progress: bool = True, mesh: Optional[Mesh] = None, estimator: Estimator = "reverse",
          chunk_steps: Optional[int] = None, forward_max_params: int = 256,
          es_population: int = 8, es_sigma: float = 0.01) -> TeachResult:
  """Algorithm 1: learn the teacher ``theta`` by unrolling the student.

  Args:
    student: the :class:`~dlf_jax.student.Student` (model + optimizer).
    teacher: a :class:`~dlf_jax.teacher.Teacher`.
    train: training data, ``{'x': [N, ...], 'y': int [N]}`` (or an object
      with ``.x`` / ``.y``), or a batch sampler with ``batch_size``,
      ``segment(start, count) -> [count, B, ...]`` and optionally
      ``reseeded(seed)`` (e.g. :class:`dlf_jax.data.BucketSampler`; episode
      ``e`` uses ``reseeded(seed * 1000003 + e)``).
    dev: dev data, same form; its smoothed measure is the teacher's reward.
    measure: M~ (default :class:`~dlf_jax.measures.ExpectedAccuracy`).
    teacher_optimizer: optax transformation for theta (default Adam 1e-3).
    unroll_steps: ``T`` inner steps per outer step.
    num_episodes: number of students (episodes).
    mode: ``episodes`` | ``online`` (module docstring).
    segments_per_episode: outer steps per student (default: 1 for
      ``episodes``; ``(teacher.total_steps - pretrain_steps) // T`` for ``online``).
    pretrain_steps: cross-entropy steps before the first unrolled segment of
      each student (a warm start, as in the authors' demo; 0 = fresh).
    batch_size: student batch size ``B``.
    dev_batch_size: batch size of the dev pass.
    dev_sample_size: if set, each outer step uses a fresh random sample of this
      many dev examples for ``dw_T``; else the whole dev set.
    method, memory, checkpoint_every: see :func:`dlf_jax.hypergrad.hypergradient`
      (``estimator='reverse'`` only).
    seed: seeds students, batches and dev samples.
    init_state: a :class:`TeachState` to resume from (else fresh theta).
    callback: ``callback(state, record)`` after every outer step.
    progress: show a progress bar.
    mesh: data parallelism (:func:`dlf_jax.parallel.make_mesh`): every batch is
      split over the mesh's devices, theta and the student replicated; same
      numbers as one device. ``batch_size`` and ``dev_batch_size`` must be
      multiples of the device count.
    estimator: how the hypergradient of each segment is computed, one of
      :data:`ESTIMATORS`: ``reverse`` (:func:`dlf_jax.hypergrad.hypergradient`),
      ``forward`` (:mod:`dlf_jax.forward_hypergrad`: the same number at memory
      independent of ``T``, cost ~``P`` x the unroll) or ``es`` (evolution
      strategies, :func:`dlf_jax.evolution.es_gradient`; a noisy estimate).
    chunk_steps: ``forward``: the segment's batches are drawn from the host and
      processed in chunks of this many steps (default ``min(T, 200)``), so
      ``T`` can be a whole training run.
    forward_max_params: ``forward`` refuses teachers with more parameters.
    es_population, es_sigma: ``es``: population size and perturbation scale.

  Returns:
    :class:`TeachResult` with the learned ``theta`` and a history of dicts
    (``update, episode, segment, student_step, estimator, dev_measure,
    dev_accuracy, train_loss, train_cross_entropy, hypergrad_norm,
    w_diag_mean, w_offdiag_mean, b_mean, seconds, warm_start_seconds``;
    ``seconds`` is the outer step's wall time, the student's warm start at a
    new episode is ``warm_start_seconds``).

  Raises:
    ValueError: bad mode or estimator, ``T <= 0``, sizes, class-count
      mismatch, ``chunk_steps < 1``, (``forward``) a teacher with more than
      ``forward_max_params`` parameters, labels of ``train`` / ``dev`` outside
      ``[0, C)`` (names the split and the value), or a ``teacher_optimizer``
      whose update ascends its gradient (a negative learning rate).
    FloatingPointError: NaN/inf in the unroll (names the step) or hypergradient
      (for an Adam student, names ``eps_root``).

  References:
    Wu et al. 2018, Algorithm 1.
  """
  segments_per_episode = _check_teach_args(
      student, teacher, mode=mode, estimator=estimator, chunk_steps=chunk_steps,
      unroll_steps=unroll_steps, num_episodes=num_episodes, pretrain_steps=pretrain_steps,
      segments_per_episode=segments_per_episode)
  measure = measure or measures.ExpectedAccuracy()
  tx = teacher_optimizer or optax.adam(1e-3)
  dev, full_dev_host = _prepare_dev(dev, student, dev_sample_size, dev_batch_size)
  rng = jax.random.PRNGKey(seed)
  state = _initial_teach_state(teacher, tx, rng, init_state, mesh)
  if estimator == "forward":
    forward_hypergrad.check_num_params(state.theta, forward_max_params)
  plan = _TeachPlan(
      student=student, teacher=teacher, measure=measure, train=train, seed=seed, rng=rng,
      mesh=mesh, estimator=estimator, unroll_steps=unroll_steps, pretrain_steps=pretrain_steps,
      batch_size=batch_size, segments_per_episode=segments_per_episode, dev=dev,
      dev_batch_size=dev_batch_size, dev_sample_size=dev_sample_size,
      full_dev_host=full_dev_host, full_dev=parallel.shard_batches(full_dev_host, mesh),
      chunk=min(unroll_steps, DEFAULT_MAX_CHUNK_STEPS) if chunk_steps is None else chunk_steps,
      es_population=es_population, es_sigma=es_sigma,
      fns=_teach_fns(student, teacher, measure, tx, estimator=estimator, method=method,
                     memory=memory, checkpoint_every=checkpoint_every))
  total_updates = num_episodes * segments_per_episode
  history = []
  bar = _progress(total_updates, "teach", progress, initial=state.update)
  while state.update < total_updates:
    state, record = _teach_update(plan, state)
    history.append(record)
    _report(callback, bar, state, record, 1, dev_M=f"{record['dev_measure']:.4f}",
            dev_acc=f"{record['dev_accuracy']:.4f}")
  if bar is not None:
    bar.close()
  return TeachResult(theta=state.theta, history=history, state=state)


def _check_train_args(student: Student, loss: LossProvider, theta, num_steps: int,
                      eval_every: int) -> None:
  """The argument checks of :func:`train_student`."""
  if num_steps <= 0 or eval_every <= 0:
    raise ValueError(f"num_steps and eval_every must be >= 1; got {num_steps}, {eval_every}.")
  if loss.needs_theta and theta is None:
    raise ValueError("train_student with a Teacher needs its frozen parameters: theta=...")
  if loss.num_classes is not None:
    _check_class_count(student, loss)


def _run_steps(run_fn, theta, state: StudentState, sampler, stop: int, mesh):
  """Trains the student up to step ``stop``: ``(state, StepMetrics [stop - start])``.

  The steps run as jit-compiled scans, cut at multiples of the sampler's
  ``segment_steps`` when it has one (a length-bucketed sampler asks for scans
  of its block size, one padded width each).
  """
  piece = getattr(sampler, "segment_steps", stop - int(state.step))
  parts = []
  while int(state.step) < stop:
    at = int(state.step)
    n = min(piece - at % piece, stop - at)
    state, m = run_fn(theta, state, parallel.shard_batches(sampler.segment(at, n), mesh))
    unroll_lib.check_finite(m, at)
    parts.append(m)
  return state, jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *parts)


def _train_record(state: StudentState, metrics: unroll_lib.StepMetrics, phi_stats: dict,
                  eval_fn, evals: dict) -> dict:
  """One evaluation's history record (``seconds`` are added by the caller)."""
  record = {"step": int(state.step),
            "train_loss": float(jnp.mean(metrics.loss)),
            "train_cross_entropy": float(jnp.mean(metrics.cross_entropy)),
            "train_accuracy": float(jnp.mean(metrics.accuracy)), **phi_stats}
  for name, batches in evals.items():
    for k, v in _host(eval_fn(state.params, state.model_state, batches)).items():
      record[f"{name}_{k}"] = v
  return record


def train_student(student: Student, loss: LossProvider, train, *, theta: Any = None,
                  num_steps: int = 1000, batch_size: int = 128, seed: int = 0,
                  eval_every: int = 100, dev=None, test=None, eval_batch_size: int = 1000,
                  init_state: Optional[StudentState] = None,
                  callback: Optional[Callable[[StudentState, dict], None]] = None,
                  progress: bool = True, desc: str = "student",
                  mesh: Optional[Mesh] = None) -> TrainResult:
  """Trains a fresh student for ``num_steps`` with a frozen teacher or a fixed loss.

  Args:
    student: the :class:`~dlf_jax.student.Student`.
    loss: a :class:`~dlf_jax.teacher.Teacher` (then ``theta`` is required) or
      a fixed loss of :mod:`dlf_jax.losses` (e.g. :class:`~dlf_jax.losses.CrossEntropyLoss`).
    train: training data ``{'x', 'y'}`` (or ``.x`` / ``.y``), or a batch
      sampler as in :func:`teach` (``reseeded(seed)`` if it has it; scans are
      cut at multiples of its ``segment_steps``).
    theta: the frozen teacher's parameters.
    num_steps: total student steps (match ``teacher.total_steps``, which
      normalises the progress feature).
    batch_size: ``B``.
    seed: seeds the student's init, dropout and batch order.
    eval_every: evaluate dev/test every this many steps (and at the end); the
      steps in between run as one jit-compiled ``lax.scan``.
    dev, test: optional evaluation data; dev accuracy feeds the teacher's
      ``dev_acc`` state feature.
    eval_batch_size: evaluation batch size.
    init_state: resume from this carry (its ``step`` says where).
    callback: ``callback(state, record)`` after every evaluation.
    progress: show a progress bar; desc: its label.
    mesh: data parallelism, as in :func:`teach` (batch sizes must be multiples
      of the device count).

  Returns:
    :class:`TrainResult` (final carry; history of dicts with ``step``,
    ``train_loss``, ``train_cross_entropy``, ``train_accuracy``,
    ``dev_accuracy``, ``dev_cross_entropy``, ``test_accuracy``, ...,
    ``w_diag_mean``/``w_offdiag_mean``/``b_mean`` for teachers, ``seconds``).

  Raises:
    ValueError: bad sizes, missing theta, class-count mismatch, labels of a
      split outside ``[0, C)`` (names the split and the value).
    FloatingPointError: NaN/inf in training (names the step).
  """
  _check_train_args(student, loss, theta, num_steps, eval_every)
  sampler = _sampler(train, batch_size, seed, student)
  evals = {name: parallel.shard_batches(make_eval_batches(_as_arrays(d, name, student),
                                                          eval_batch_size), mesh)
           for name, d in (("dev", dev), ("test", test)) if d is not None}
  run_fn, eval_fn, phi_fn = _unroll_fn(student, loss), _eval_fn(student), _phi_stats_fn(loss)
  state = init_state
  if state is None:
    first = sampler.segment(0, 1)
    state = student.init(jax.random.PRNGKey(seed), {k: v[0] for k, v in first.items()})
  state, theta = parallel.replicate(state, mesh), parallel.replicate(theta, mesh)
  history = []
  bar = _progress(num_steps, desc, progress, initial=int(state.step))
  while int(state.step) < num_steps:
    t0 = time.time()
    start = int(state.step)
    count = min(eval_every - start % eval_every, num_steps - start)
    phi_stats = _host(phi_fn(theta, state))
    state, metrics = _run_steps(run_fn, theta, state, sampler, start + count, mesh)
    record = _train_record(state, metrics, phi_stats, eval_fn, evals)
    if "dev" in evals:
      state = _with_dev_accuracy(state, record["dev_accuracy"])
    record["seconds"] = time.time() - t0
    history.append(record)
    _report(callback, bar, state, record, count, loss=f"{record['train_loss']:.4f}",
            **{k: f"{record[k]:.4f}" for k in ("dev_accuracy", "test_accuracy") if k in record})
  if bar is not None:
    bar.close()
  return TrainResult(state=state, history=history)
