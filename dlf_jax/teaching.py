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

import functools
import time
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from dlf_jax import forward_hypergrad, hypergrad, losses, measures, parallel
from dlf_jax import unroll as unroll_lib
from dlf_jax.data.batching import SegmentSampler, make_eval_batches
from dlf_jax.student import Student, StudentState

__all__ = ["TeachState", "TeachResult", "TrainResult", "teach", "train_student", "MODES",
           "ESTIMATORS", "check_label_range", "check_descent"]

MODES = ("episodes", "online")
ESTIMATORS = ("reverse", "forward", "es")
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


def teach(student: Student, teacher: Any, train, dev, *,
          measure: Optional[measures.Measure] = None,
          teacher_optimizer: Optional[optax.GradientTransformation] = None,
          unroll_steps: int = 200, num_episodes: int = 10, mode: str = "episodes",
          segments_per_episode: Optional[int] = None, pretrain_steps: int = 0,
          batch_size: int = 128, dev_batch_size: int = 500,
          dev_sample_size: Optional[int] = None, method: str = "auto",
          memory: str = "store_all", checkpoint_every: Optional[int] = None, seed: int = 0,
          init_state: Optional[TeachState] = None,
          callback: Optional[Callable[[TeachState, dict], None]] = None,
          progress: bool = True, mesh: Optional[Mesh] = None, estimator: str = "reverse",
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
  if teacher.num_classes != student.num_classes:
    raise ValueError(f"The teacher's loss has C={teacher.num_classes} classes but the student "
                     f"has num_classes={student.num_classes}.")
  if segments_per_episode is None:
    segments_per_episode = 1 if mode == "episodes" else max(
        1, (teacher.total_steps - pretrain_steps) // unroll_steps)
  if segments_per_episode <= 0:
    raise ValueError(f"segments_per_episode must be >= 1, got {segments_per_episode}.")
  measure = measure or measures.ExpectedAccuracy()
  tx = teacher_optimizer or optax.adam(1e-3)
  dev = _as_arrays(dev, "dev", student)
  n_dev = len(next(iter(dev.values())))
  if dev_sample_size is not None and not 1 <= dev_sample_size <= n_dev:
    raise ValueError(f"dev_sample_size={dev_sample_size} must be in [1, {n_dev}].")
  full_dev_host = make_eval_batches(dev, dev_batch_size)
  full_dev = parallel.shard_batches(full_dev_host, mesh)

  rng = jax.random.PRNGKey(seed)
  if init_state is None:
    theta = teacher.init(jax.random.fold_in(rng, 0))
    init_state = TeachState(theta=theta, opt_state=tx.init(theta), student=None, update=0)
  check_descent(tx, init_state.theta)
  state = init_state.replace(theta=parallel.replicate(init_state.theta, mesh),
                             opt_state=parallel.replicate(init_state.opt_state, mesh),
                             student=parallel.replicate(init_state.student, mesh))
  total_updates = num_episodes * segments_per_episode
  if estimator == "forward":
    forward_hypergrad.check_num_params(state.theta, forward_max_params)
    chunk = min(unroll_steps, DEFAULT_MAX_CHUNK_STEPS) if chunk_steps is None else chunk_steps
    forward_fns = _forward_fns(student, teacher, measure)

  hyper_fn = _hypergradient_fn(student, teacher, measure, method, memory, checkpoint_every)
  eval_fn = _eval_fn(student)
  pretrain_fn = _unroll_fn(student, losses.BaselineLoss("cross_entropy"))
  phi_fn = _phi_stats_fn(teacher)

  @jax.jit
  def outer_step(theta, opt_state, dtheta):
    grads = jax.tree_util.tree_map(lambda g: -g if measure.maximize else g, dtheta)
    updates, opt_state = tx.update(grads, opt_state, theta)
    return optax.apply_updates(theta, updates), opt_state

  history = []
  bar = _progress(total_updates, "teach", progress, initial=state.update)
  while state.update < total_updates:
    t0 = time.time()
    episode, segment = divmod(state.update, segments_per_episode)
    sampler = _sampler(train, batch_size, seed * 1_000_003 + episode, student)
    student_state = state.student
    warm_start_seconds = 0.0
    if segment == 0 or student_state is None:
      first = sampler.segment(0, 1)
      student_state = parallel.replicate(
          student.init(jax.random.fold_in(rng, 1000 + episode),
                       {k: v[0] for k, v in first.items()}), mesh)
      for done in range(0, pretrain_steps, unroll_steps):   # in chunks: bounded host memory
        count = min(unroll_steps, pretrain_steps - done)
        student_state, m = pretrain_fn(
            None, student_state, parallel.shard_batches(sampler.segment(done, count), mesh))
        unroll_lib.check_finite(m, done)
      warm_start_seconds = time.time() - t0   # reported apart from the outer step's time
      t0 = time.time()
    start = int(student_state.step)
    if estimator != "forward":            # forward draws its batches chunk by chunk
      batches = parallel.shard_batches(sampler.segment(start, unroll_steps), mesh)
    if dev_sample_size is None:
      dev_batches = full_dev_host
    else:
      idx = np.random.default_rng([seed, 7, state.update]).choice(n_dev, dev_sample_size,
                                                                   replace=False)
      dev_batches = make_eval_batches({k: v[idx] for k, v in dev.items()}, dev_batch_size)
    prepared = measure.prepare(student, student_state, dev_batches,
                               jax.random.fold_in(rng, 2_000_000 + state.update))
    dev_batches = (full_dev if prepared is full_dev_host
                   else parallel.shard_batches(prepared, mesh))
    if estimator == "reverse":
      res = hyper_fn(state.theta, student_state, batches, dev_batches)
    elif estimator == "forward":
      res = _forward_segment(forward_fns, state.theta, student_state, sampler, start,
                             unroll_steps, chunk, dev_batches, mesh)
    else:                                 # the whole segment in one call
      res = _es_fn(student, teacher, measure, es_population, es_sigma)(
          state.theta, student_state, batches, dev_batches,
          jax.random.fold_in(rng, 3_000_000 + state.update))
    unroll_lib.check_finite(res.metrics, start)
    hnorm = float(optax.tree.norm(res.dtheta))
    if not np.isfinite(hnorm):
      raise FloatingPointError(
          f"Non-finite hypergradient at outer step {state.update} (student steps "
          f"{start}..{start + unroll_steps - 1}); " + _nan_hint(student_state))
    theta, opt_state = outer_step(state.theta, state.opt_state, res.dtheta)
    final = res.final_state
    dev_eval = _host(eval_fn(final.params, final.model_state, full_dev))
    final = final.replace(stats=final.stats.replace(
        dev_acc=jnp.asarray(dev_eval["accuracy"], final.stats.dev_acc.dtype)))
    record = {
        "update": state.update, "episode": episode, "segment": segment,
        "student_step": int(final.step), "estimator": estimator, "dev_measure": float(res.value),
        "dev_accuracy": dev_eval["accuracy"],
        "train_loss": float(jnp.mean(res.metrics.loss)),
        "train_cross_entropy": float(jnp.mean(res.metrics.cross_entropy)),
        "hypergrad_norm": hnorm, **_host(phi_fn(state.theta, student_state)),
    }
    last = segment == segments_per_episode - 1
    state = TeachState(theta=theta, opt_state=opt_state, student=None if last else final,
                       update=state.update + 1)
    record["seconds"] = time.time() - t0
    record["warm_start_seconds"] = warm_start_seconds
    history.append(record)
    if callback is not None:
      callback(state, record)
    if bar is not None:
      bar.update(1)
      bar.set_postfix(dev_M=f"{record['dev_measure']:.4f}",
                      dev_acc=f"{record['dev_accuracy']:.4f}")
  if bar is not None:
    bar.close()
  return TeachResult(theta=state.theta, history=history, state=state)


def train_student(student: Student, loss: Any, train, *, theta: Any = None,
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
      a :class:`~dlf_jax.losses.BaselineLoss`.
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
  if num_steps <= 0 or eval_every <= 0:
    raise ValueError(f"num_steps and eval_every must be >= 1; got {num_steps}, {eval_every}.")
  is_baseline = isinstance(loss, losses.BaselineLoss)
  if not is_baseline:
    if theta is None:
      raise ValueError("train_student with a Teacher needs its frozen parameters: theta=...")
    if loss.num_classes != student.num_classes:
      raise ValueError(f"The teacher's loss has C={loss.num_classes} classes but the student "
                       f"has num_classes={student.num_classes}.")
  sampler = _sampler(train, batch_size, seed, student)
  evals = {name: parallel.shard_batches(make_eval_batches(_as_arrays(d, name, student),
                                                          eval_batch_size), mesh)
           for name, d in (("dev", dev), ("test", test)) if d is not None}

  run_fn = _unroll_fn(student, loss)
  eval_fn = _eval_fn(student)
  phi_fn = _phi_stats_fn(loss)

  state = init_state
  if state is None:
    first = sampler.segment(0, 1)
    state = student.init(jax.random.PRNGKey(seed), {k: v[0] for k, v in first.items()})
  state = parallel.replicate(state, mesh)
  theta = parallel.replicate(theta, mesh)
  history = []
  bar = _progress(num_steps, desc, progress, initial=int(state.step))
  while int(state.step) < num_steps:
    t0 = time.time()
    start = int(state.step)
    count = min(eval_every - start % eval_every, num_steps - start)
    phi_stats = _host(phi_fn(theta, state))
    # A length-bucketed sampler asks for scans of its block size (one padded width each).
    piece = getattr(sampler, "segment_steps", count)
    parts = []
    while int(state.step) < start + count:
      at = int(state.step)
      n = min(piece - at % piece, start + count - at)
      state, m = run_fn(theta, state, parallel.shard_batches(sampler.segment(at, n), mesh))
      unroll_lib.check_finite(m, at)
      parts.append(m)
    metrics = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *parts)
    record = {"step": int(state.step),
              "train_loss": float(jnp.mean(metrics.loss)),
              "train_cross_entropy": float(jnp.mean(metrics.cross_entropy)),
              "train_accuracy": float(jnp.mean(metrics.accuracy)), **phi_stats}
    for name, batches in evals.items():
      for k, v in _host(eval_fn(state.params, state.model_state, batches)).items():
        record[f"{name}_{k}"] = v
    if "dev" in evals:
      state = state.replace(stats=state.stats.replace(
          dev_acc=jnp.asarray(record["dev_accuracy"], state.stats.dev_acc.dtype)))
    record["seconds"] = time.time() - t0
    history.append(record)
    if callback is not None:
      callback(state, record)
    if bar is not None:
      bar.update(count)
      shown = {k: f"{record[k]:.4f}" for k in ("dev_accuracy", "test_accuracy") if k in record}
      bar.set_postfix(loss=f"{record['train_loss']:.4f}", **shown)
  if bar is not None:
    bar.close()
  return TrainResult(state=state, history=history)
