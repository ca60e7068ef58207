"""Algorithm 1 (``teach``) and training a student with a frozen teacher (``train_student``).

``teach`` repeats: take a student (fresh, optionally pre-trained with
cross-entropy for ``pretrain_steps``, as the authors' demo does); unroll ``T``
inner steps; compute the hypergradient; take one outer step of the teacher with
an optax optimizer (ascent on the smoothed dev measure M~, or descent if the
measure is an error). The hypergradient estimator is a value
(``estimator=``, a :class:`~dlf_jax.contracts.HypergradEstimator` of
:mod:`dlf_jax.estimators`: ``ReverseMode()``, the default, ``ForwardMode()``,
``AntitheticES()``, ``PES()``); the loop below does not know which one it runs.
An estimator with state (PES's particles) gets it initialised at every new
student and carried in :class:`TeachState`.

The recipe of a taught student is a cross-entropy warm start, then the
teacher: a :class:`WarmStart` value, used by ``teach`` for every episode's
student (``Schedule.pretrain_steps``, :attr:`Schedule.warm_start`) and by
``train_student`` (``warm_start=result.schedule.warm_start``), so the students
trained with a learned teacher start as the ones it was taught on.

Two schedules, one loop (:class:`Schedule`): an *episode* is one student; it is
cut into ``segments_per_episode`` consecutive segments of ``T`` steps and the
teacher is updated after each segment. ``mode='episodes'`` (default ``1``
segment: a new student per teacher update) or ``mode='online'`` (one student
run of ``total_steps = segments x T`` per episode, so the teacher sees every
phase of training).

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
from typing import Any, Callable, Hashable, Mapping, Optional, cast, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from dlf_jax import checks, hypergrad, losses, measures, parallel, state_features
from dlf_jax import unroll as unroll_lib
from dlf_jax.contracts import BatchSampler, HypergradEstimator, LossProvider, Mode
from dlf_jax.estimators import EstimateContext, ReverseMode
from dlf_jax.data.batching import SegmentSampler, make_eval_batches
from dlf_jax import student as student_lib
from dlf_jax.student import Student, StudentState
from dlf_jax.teacher import Teacher

__all__ = [
    "TeachState", "TeachResult", "TrainResult", "Schedule", "WarmStart", "DevSampling", "teach",
    "train_student", "MODES", "check_label_range", "check_descent"
]

MODES: tuple[Mode, ...] = get_args(Mode)


def _cross_entropy_loss() -> LossProvider:
  """The fixed cross-entropy loss of the warm start (the one place that names it)."""
  return losses.CrossEntropyLoss()


@dataclasses.dataclass(frozen=True)
class WarmStart:
  """A student's first ``steps`` steps trained with a fixed ``loss`` (cross-entropy).

  The warm start of the recipe: :func:`teach` gives one to every episode's
  student (:attr:`Schedule.warm_start`, ``steps = pretrain_steps``, as the
  authors' demo does), and :func:`train_student` ``(warm_start=...)`` gives the
  same one to a student trained with the learned teacher; pass
  ``result.schedule.warm_start`` of the :class:`TeachResult` so the two agree.

  Attributes:
    steps: int, the warm start's student steps (0: none; clipped to the run's
      ``num_steps``).
    loss: the fixed loss of those steps, a parameter-free
      :class:`~dlf_jax.contracts.LossProvider` (called with ``theta=None``);
      default cross-entropy (:func:`_cross_entropy_loss`).

  Raises:
    TypeError: ``steps`` not an integer; ``loss`` is not a
      :class:`~dlf_jax.contracts.LossProvider`.
    ValueError: ``steps < 0``.
  """
  steps: int = 0
  loss: LossProvider = dataclasses.field(default_factory=_cross_entropy_loss)

  def __post_init__(self):
    checks.check_int("WarmStart.steps", self.steps, 0)
    if not isinstance(self.loss, LossProvider):
      raise TypeError(f"WarmStart loss must be a fixed LossProvider (a loss of "
                      f"dlf_jax.losses; leave it out for cross-entropy), got {self.loss!r}.")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """What the students of :func:`teach` run: episodes, segments of ``T`` steps, warm start.

  Attributes:
    mode: ``episodes`` | ``online`` (module docstring).
    unroll_steps: ``T`` inner steps per outer step.
    num_episodes: number of students (episodes).
    segments_per_episode: outer steps per student (None: :meth:`segments`).
    pretrain_steps: cross-entropy steps before the first unrolled segment of
      each student (a warm start, as in the authors' demo; 0 = fresh).
    batch_size: student batch size ``B``.

  Raises:
    ValueError: an unknown mode, ``T <= 0``, ``num_episodes <= 0``,
      ``pretrain_steps < 0``, ``segments_per_episode <= 0`` or ``batch_size <= 0``.
    TypeError: a size that is not an integer (e.g. ``batch_size=16.5``).
  """
  mode: Mode = "episodes"
  unroll_steps: int = 200
  num_episodes: int = 10
  segments_per_episode: Optional[int] = None
  pretrain_steps: int = 0
  batch_size: int = 128

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"Unknown teaching mode {self.mode!r}; choose one of {MODES}.")
    checks.check_int("Schedule.unroll_steps (T)", self.unroll_steps, 1)
    checks.check_int("Schedule.num_episodes", self.num_episodes, 1)
    checks.check_int("Schedule.segments_per_episode", self.segments_per_episode, 1, allow_none=True)
    checks.check_int("Schedule.pretrain_steps", self.pretrain_steps, 0)
    checks.check_int("Schedule.batch_size", self.batch_size, 1)

  @property
  def warm_start(self) -> WarmStart:
    """The students' :class:`WarmStart`: ``pretrain_steps`` of cross-entropy.

    Pass it to :func:`train_student` to train a student as the teacher's were.
    """
    return WarmStart(steps=self.pretrain_steps)

  def segments(self, total_steps: Optional[int]) -> int:
    """Outer steps per student.

    ``segments_per_episode`` if set, else 1 for ``episodes`` and
    ``max(1, (total_steps - pretrain_steps) // T)`` for ``online`` (the rest of a run of
    ``total_steps`` -- the teacher's ``total_steps`` -- after the warm start).

    Raises:
      ValueError: ``online`` without ``segments_per_episode`` and ``total_steps=None``.
    """
    if self.segments_per_episode is not None:
      return self.segments_per_episode
    if self.mode == "episodes":
      return 1
    if total_steps is None:
      raise ValueError("Schedule(mode='online') without segments_per_episode needs the "
                       "length of the student's run (the teacher's total_steps); set "
                       "segments_per_episode.")
    return max(1, (total_steps - self.pretrain_steps) // self.unroll_steps)

  def num_updates(self, total_steps: Optional[int]) -> int:
    """Outer steps of the whole call: ``num_episodes x`` :meth:`segments`."""
    return self.num_episodes * self.segments(total_steps)


@dataclasses.dataclass(frozen=True)
class DevSampling:
  """How each outer step reads the dev split for ``dw_T``.

  Attributes:
    batch_size: batch size of the dev pass (a multiple of the device count
      under a mesh).
    sample_size: if set, each outer step uses a fresh random sample of this
      many dev examples (drawn from ``(seed, 7, update)``); else all of dev.

  Raises:
    ValueError: ``batch_size <= 0`` or ``sample_size <= 0``.
    TypeError: a size that is not an integer.
  """
  batch_size: int = 500
  sample_size: Optional[int] = None

  def __post_init__(self):
    checks.check_int("DevSampling.batch_size", self.batch_size, 1)
    checks.check_int("DevSampling.sample_size", self.sample_size, 1, allow_none=True)


@struct.dataclass
class TeachState:
  """Everything Algorithm 1 carries between outer steps (checkpoint this).

  Attributes:
    theta: teacher parameters.
    opt_state: the teacher optimizer's state.
    student: the current student's carry (continued across segments).
    estimator_state: the hypergradient estimator's state for the current
      student (e.g. PES particles; None for stateless estimators and between
      episodes).
    update: int, the number of outer steps taken so far.
  """
  theta: Any
  opt_state: Any
  student: Optional[StudentState]
  estimator_state: Any = None
  update: int = struct.field(pytree_node=False, default=0)


@struct.dataclass
class TeachResult:
  """What :func:`teach` returns.

  Attributes:
    theta: the learned teacher's parameters.
    history: one dict per outer step.
    state: the final :class:`TeachState` (resume from it).
    schedule: the :class:`Schedule` it taught with; ``schedule.warm_start`` is
      the warm start to give :func:`train_student` so its student starts as
      the taught ones did.
  """
  theta: Any
  history: list = struct.field(pytree_node=False)
  state: TeachState
  schedule: Optional[Schedule] = struct.field(pytree_node=False, default=None)


@struct.dataclass
class TrainResult:
  """``state``: the trained student; ``history``: one dict per evaluation."""
  state: StudentState
  history: list = struct.field(pytree_node=False)


_SAMPLER_MEMBERS = ("batch_size", "segment", "reseeded")
# teach's default estimator (a frozen dataclass, so one shared instance is safe).
_DEFAULT_ESTIMATOR = ReverseMode()


def _sampler(train, batch_size: int, seed: int, student: Optional[Student] = None) -> BatchSampler:
  """The training batches of one student.

  ``train.reseeded(seed)`` if ``train`` is a :class:`~dlf_jax.contracts.BatchSampler`,
  else a :class:`SegmentSampler` over its arrays.

  Raises:
    TypeError: ``train`` has some of a sampler's members but not all (names the missing
      ones), or is neither arrays nor a sampler.
    ValueError: the sampler's ``batch_size`` differs from ``batch_size``.
  """
  if isinstance(train, BatchSampler):
    if train.batch_size != batch_size:
      raise ValueError(f"The training sampler draws batches of {train.batch_size} but "
                       f"batch_size={batch_size}; make them agree.")
    return train.reseeded(seed)
  is_data = isinstance(train, Mapping) or (hasattr(train, "x") and hasattr(train, "y"))
  if not is_data and any(hasattr(train, m) for m in _SAMPLER_MEMBERS):
    missing = [m for m in _SAMPLER_MEMBERS if not hasattr(train, m)]
    raise TypeError(f"train ({type(train).__name__}) looks like a batch sampler but lacks "
                    f"{', '.join(missing)}: a dlf_jax.contracts.BatchSampler needs batch_size, "
                    "segment(start, count) and reseeded(seed).")
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
    ValueError: naming the split, the first bad value and the valid range;
      labels that are not integers.
  """
  labels = arrays.get(student.label_key)
  if labels is None:
    return
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name}[{student.label_key!r}] must hold integer class ids, got dtype "
                     f"{labels.dtype}.")
  checks.check_label_values(
      labels,
      student.num_classes,
      f"{name}[{student.label_key!r}]",
      arrays.get(student.mask_key),
      fix="fix the labels or the student's num_classes")


def _check_inputs(arrays: dict, student: Student, name: str) -> None:
  """The student's inputs of a split are float features (or signed-integer token ids).

  Raises:
    ValueError: an unsigned-integer or boolean input (e.g. uint8 pixels 0..255),
      naming the split, the key, the dtype and the conversion.
  """
  for key in student.input_keys:
    if key not in arrays:
      continue
    dtype = arrays[key].dtype
    if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.signedinteger):
      continue
    raise ValueError(
        f"{name}[{key!r}] has dtype {dtype}: the student's inputs must be float features "
        f"(signed integers are read as token ids). Convert and normalise them first, e.g. "
        f"x.astype(np.float32) / 255 for 8-bit pixels (or standardise with the training "
        f"split's mean and std); dlf_jax.data.load_image_dataset does this.")


def _check_lengths(arrays: dict, name: str) -> int:
  """``N``, the split's number of examples, after checking every array has it.

  Raises:
    ValueError: an empty split, a scalar, or arrays of different lengths (names the split).
  """
  lengths = {k: (np.shape(v)[0] if np.ndim(v) else None) for k, v in arrays.items()}
  if not lengths:
    raise ValueError(f"{name} holds no arrays: pass {{'x': [N, ...], 'y': [N]}}.")
  scalars = [k for k, n in lengths.items() if n is None]
  if scalars:
    raise ValueError(f"{name}[{scalars[0]!r}] is a scalar: every array of {name} needs a "
                     "leading example axis [N, ...].")
  if len(set(lengths.values())) != 1:
    raise ValueError(f"The arrays of {name} disagree on the number of examples: "
                     f"{lengths}; give every array the same leading axis N.")
  n = next(iter(lengths.values()))
  assert n is not None  # every array has a leading axis (checked above)
  if n == 0:
    raise ValueError(f"{name} is empty (0 examples).")
  return n


def _as_arrays(data, name: str, student: Optional[Student] = None) -> dict:
  """A split as host arrays, checked: lengths, finite floats, inputs, labels (names ``name``).

  Raises:
    TypeError: neither a dict of arrays nor an object with ``.x`` / ``.y``.
    ValueError: as :func:`_check_lengths`, NaN/inf, :func:`_check_inputs`,
      :func:`check_label_range`.
  """
  if isinstance(data, Mapping):
    arrays = dict(data)
  elif hasattr(data, "x") and hasattr(data, "y"):
    arrays = {"x": data.x, "y": data.y}
  else:
    raise TypeError(f"{name} must be a dict of arrays (e.g. {{'x': ..., 'y': ...}}) or an "
                    f"object with .x and .y" +
                    (" or a dlf_jax.contracts.BatchSampler" if name == "train" else "") +
                    f"; got {type(data).__name__}.")
  for k, v in arrays.items():
    v = np.asarray(v)
    if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
      raise ValueError(f"{name}[{k!r}] contains NaN or inf; clean the data first.")
    arrays[k] = v
  _check_lengths(arrays, name)
  if student is not None:
    _check_inputs(arrays, student, name)
    check_label_range(arrays, student, name)
  return arrays


def _example_shapes(train, student: Student, first: Optional[Mapping] = None) -> dict:
  """``{key: shape of one example}`` of the student's float inputs in ``train``.

  Read off its arrays ``[N, ...]``, or for a sampler off ``first``, a batch it drew
  ``[1, B, ...]`` (``{}`` without one: nothing to compare with).
  """
  if isinstance(train, BatchSampler):
    if first is None:
      return {}
    arrays, lead = dict(first), 2
  elif isinstance(train, Mapping):
    arrays, lead = dict(train), 1
  else:
    arrays, lead = {"x": train.x, "y": train.y}, 1
  out = {}
  for key in student.input_keys:
    if key in arrays:
      v = arrays[key] if hasattr(arrays[key], "dtype") else np.asarray(arrays[key])
      if np.issubdtype(v.dtype, np.floating):
        out[key] = tuple(np.shape(v)[lead:])
  return out


def _check_feature_shapes(arrays: dict, name: str, train_shapes: dict) -> None:
  """The float inputs of an evaluation split have the training split's example shape.

  Token ids (integer inputs) may differ in length and are not compared.

  Raises:
    ValueError: naming the split, the key and both shapes.
  """
  for key, shape in train_shapes.items():
    if key in arrays and tuple(arrays[key].shape[1:]) != shape:
      raise ValueError(f"{name}[{key!r}] has examples of shape {tuple(arrays[key].shape[1:])} "
                       f"but the training split's are {shape}: {name} must hold the same "
                       "features as train (same preprocessing and feature count).")


# Updates probed by check_descent: a schedule that warms up from 0 moves at the second.
_PROBE_STEPS = 2


def check_descent(tx: optax.GradientTransformation,
                  params: Any,
                  name: str = "teacher_optimizer") -> None:
  """Raises if an optimizer's first updates ascend their gradient or are all zero.

  Probes ``tx`` for :data:`_PROBE_STEPS` updates on a tiny tree of the
  structure of ``params`` (every leaf ``[1, ..., 1]`` of its rank and dtype,
  parameters and gradients all ones): a transformation whose update has a
  positive inner product with the gradient (a negative learning rate, also
  inside a schedule) moves the wrong way; one whose updates are all zero (a
  learning rate of 0) never moves. ``teach`` hands the teacher optimizer the
  gradient of the loss it minimises (the negated measure for a maximised one);
  the student's optimizer gets the gradient of its training loss.

  Args:
    tx: the optax transformation.
    params: a pytree of arrays of the structure ``tx`` updates (theta, or the
      student's params).
    name: how the caller names ``tx`` (``teacher_optimizer``, ``student.tx``).

  Raises:
    ValueError: naming ``name``, the inner product and the fix.
  """
  probe = jax.tree_util.tree_map(lambda p: jnp.ones((1,) * np.ndim(p), jnp.result_type(p)), params)
  grads = probe
  state = tx.init(probe)
  dots: list[float] = []
  for _ in range(_PROBE_STEPS):
    updates, state = tx.update(grads, state, probe)
    dot = float(
        sum(
            jnp.vdot(u, g)
            for u, g in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(grads))))
    if not np.isfinite(dot):
      raise ValueError(f"{name} gives a non-finite update ({dot}) for a gradient of ones at "
                       f"probe step {len(dots)}: check its hyperparameters.")
    if dot > 0:
      raise ValueError(
          f"{name} ascends its gradient (<update, grad> = {dot:.3g} > 0 at probe step "
          f"{len(dots)}): a negative learning rate (or a schedule that goes negative)? Use a "
          "positive one" +
          ("; teach already ascends a maximised measure." if name == "teacher_optimizer" else "."))
    dots.append(dot)
  if all(d == 0 for d in dots):
    raise ValueError(f"{name}'s first {_PROBE_STEPS} updates are zero: a learning rate of 0 (or a "
                     f"schedule that stays at 0)? It would never move the " +
                     ("teacher (theta)" if name == "teacher_optimizer" else "student") +
                     "; use a learning rate > 0.")


@functools.lru_cache(maxsize=64)
def _checked_student_tx(student: Student, structure) -> None:
  """Once per (student, parameter structure): :func:`check_descent` of ``student.tx``."""
  treedef, leaves = structure
  check_descent(
      student.tx,
      jax.tree_util.tree_unflatten(treedef,
                                   [jnp.ones((1,) * ndim, dtype) for ndim, dtype in leaves]),
      name="student.tx (the student's optimizer)")


def _check_student_tx(student: Student, params) -> None:
  """Refuses a student optimizer that ascends or never moves (see :func:`check_descent`)."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  _checked_student_tx(student, (treedef, tuple(
      (np.ndim(x), jnp.result_type(x).name) for x in leaves)))


def _nan_hint(state: StudentState) -> str:
  """What to try after a NaN hypergradient: ``eps_root`` for Adam students, else the rates."""
  is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
  adam = [x for x in jax.tree_util.tree_leaves(state.opt_state, is_leaf=is_adam) if is_adam(x)]
  if adam:
    return ("the student uses Adam: differentiating through it needs eps_root >= "
            f"{student_lib.MIN_EPS_ROOT:.2g} (sqrt has an infinite derivative at 0; optax.adam's "
            "default eps_root=0, and anything below float32's smallest normal number "
            f"{student_lib.MIN_EPS_ROOT:.2g}, e.g. 1e-45, is flushed to 0): build it with "
            "dlf_jax.make_optimizer('adam', lr) (eps_root=1e-8, refuses smaller than "
            f"{student_lib.MIN_EPS_ROOT:.2g}) or optax.adam(lr, eps_root=1e-8); if it already "
            "has eps_root >= 1e-8, lower the student learning rate or T.")
  return "lower the student learning rate or T."


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
  if not enabled:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)


def _host(tree) -> dict:
  return {k: float(v) for k, v in jax.device_get(tree).items()}


def _cache_key(loss: LossProvider) -> Hashable:
  # Loss providers are hashed by identity (contracts.LossProvider); the Protocol type does
  # not say so, hence the cast for the lru_cache keys below.
  return cast(Hashable, loss)


# Jitted functions are cached per (student, loss) so that repeated calls (seeds,
# methods, resumed runs) compile once. Students and teachers hash by identity.
@functools.lru_cache(maxsize=32)
def _unroll_fn(student, loss):
  return jax.jit(
      lambda theta, state, batches: unroll_lib.unroll(student, loss, theta, state, batches))


@functools.lru_cache(maxsize=32)
def _eval_fn(student):
  return jax.jit(lambda params, model_state, batches: unroll_lib.evaluate(
      student, params, model_state, batches))


@functools.lru_cache(maxsize=32)
def _phi_stats_fn(loss):
  return jax.jit(lambda theta, state: losses.phi_statistics(
      loss.phi(theta, loss.state_features(state.step, state.stats))))


@dataclasses.dataclass(frozen=True)
class _TeachPlan:
  """What every outer step of one :func:`teach` call shares (fixed for the call).

  Attributes:
    student, teacher, measure, train, seed, mesh, estimator, schedule,
      dev_sampling: :func:`teach`'s arguments.
    segments: outer steps per student (:meth:`Schedule.segments`).
    rng: ``PRNGKey(seed)``; ``fold_in`` it with 0 (theta), ``1000 + episode``
      (students), ``2_000_000 + update`` (the measure's dev preparation) and
      ``3_000_000 + update`` (the estimator's key).
    dev: the dev split, host arrays ``[N_dev, ...]``.
    full_dev_host, full_dev: all dev batches ``[n, B_dev, ...]`` on the host and
      sharded over ``mesh``.
    fns: the compiled functions (:func:`_teach_fns`).
  """
  student: Student
  teacher: Teacher
  measure: measures.Measure
  train: Any
  seed: int
  rng: jax.Array
  mesh: Optional[Mesh]
  estimator: HypergradEstimator
  schedule: Schedule
  segments: int
  dev_sampling: DevSampling
  dev: dict
  full_dev_host: dict
  full_dev: dict
  fns: dict


def _check_estimator(estimator) -> None:
  """Raises TypeError unless ``estimator`` implements :class:`HypergradEstimator`."""
  if not isinstance(estimator, HypergradEstimator):
    hint = (f"; build it by name with dlf_jax.estimators.get({estimator!r})" if isinstance(
        estimator, str) else "")
    raise TypeError(f"estimator must be a HypergradEstimator (e.g. "
                    f"dlf_jax.estimators.ReverseMode()), got {estimator!r}{hint}.")


def _check_class_count(student: Student, loss: LossProvider) -> None:
  if loss.num_classes != student.num_classes:
    raise ValueError(f"The teacher's loss has C={loss.num_classes} classes but the student "
                     f"has num_classes={student.num_classes}.")


def _check_type(name: str, value, cls: type, example: str) -> None:
  """Raises TypeError unless ``value`` is a ``cls`` (names the argument and an example)."""
  if not isinstance(value, cls):
    raise TypeError(f"{name} must be a {cls.__name__}, e.g. {example}; got {value!r}.")


def _prepare_dev(dev, student: Student, sampling: DevSampling,
                 train_shapes: dict) -> tuple[dict, dict]:
  """``(dev host arrays, all dev batches [n, B_dev, ...])`` after checking them.

  Raises:
    ValueError: bad dev data or labels, features of another shape than
      train's (``train_shapes``, :func:`_example_shapes`), or ``sample_size``
      outside ``[1, N_dev]``.
  """
  dev = _as_arrays(dev, "dev", student)
  _check_feature_shapes(dev, "dev", train_shapes)
  n_dev = len(next(iter(dev.values())))
  if sampling.sample_size is not None and not 1 <= sampling.sample_size <= n_dev:
    raise ValueError(f"dev_sampling.sample_size={sampling.sample_size} must be in "
                     f"[1, {n_dev}].")
  return dev, make_eval_batches(dev, sampling.batch_size)


def _initial_teach_state(teacher: LossProvider, tx: optax.GradientTransformation, rng: jax.Array,
                         init_state: Optional[TeachState], mesh: Optional[Mesh]) -> TeachState:
  """``init_state`` (else a fresh theta), checked for descent, replicated over ``mesh``."""
  if init_state is None:
    theta = teacher.init(jax.random.fold_in(rng, 0))
    init_state = TeachState(theta=theta, opt_state=tx.init(theta), student=None, update=0)
  check_descent(tx, init_state.theta)
  return dataclasses.replace(
      init_state,
      theta=parallel.replicate(init_state.theta, mesh),
      opt_state=parallel.replicate(init_state.opt_state, mesh),
      student=parallel.replicate(init_state.student, mesh),
      estimator_state=parallel.replicate(init_state.estimator_state, mesh))


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
  """Episode ``episode``'s fresh student after the schedule's :class:`WarmStart`.

  The warm start is ``pretrain_steps`` of cross-entropy, run in scans of ``T`` steps.
  """
  first = sampler.segment(0, 1)
  state = plan.student.init(
      jax.random.fold_in(plan.rng, 1000 + episode), {
          k: v[0] for k, v in first.items()
      })
  _check_student_tx(plan.student, state.params)
  state = parallel.replicate(state, plan.mesh)
  pretrain, unroll_steps = plan.schedule.warm_start.steps, plan.schedule.unroll_steps
  for done in range(0, pretrain, unroll_steps):  # in chunks: bounded memory
    count = min(unroll_steps, pretrain - done)
    state, m = plan.fns["pretrain"](None, state,
                                    parallel.shard_batches(sampler.segment(done, count), plan.mesh))
    unroll_lib.check_finite(m, done)
  return state


def _dev_batches(plan: _TeachPlan, student_state: StudentState, update: int):
  """Outer step ``update``'s dev batches for ``dw_T``, prepared by the measure, sharded.

  All of dev, or (``dev_sampling.sample_size``) a fresh sample drawn from
  ``(seed, 7, update)``; the measure's ``prepare`` (e.g. candidate sampling
  for expected BLEU) gets ``fold_in(rng, 2_000_000 + update)``.
  """
  sampling = plan.dev_sampling
  if sampling.sample_size is None:
    dev_batches = plan.full_dev_host
  else:
    n_dev = len(next(iter(plan.dev.values())))
    idx = np.random.default_rng([plan.seed, 7, update]).choice(
        n_dev, sampling.sample_size, replace=False)
    dev_batches = make_eval_batches({k: v[idx] for k, v in plan.dev.items()}, sampling.batch_size)
  prepared = plan.measure.prepare(plan.student, student_state, dev_batches,
                                  jax.random.fold_in(plan.rng, 2_000_000 + update))
  return (plan.full_dev if prepared is plan.full_dev_host else parallel.shard_batches(
      prepared, plan.mesh))


def _checked_norm(res: hypergrad.HypergradResult, update: int, start: int, num_steps: int,
                  student_state: StudentState) -> float:
  """``||dtheta||`` after checking the segment's metrics and the hypergradient are finite.

  Raises:
    FloatingPointError: naming the step, or the outer step and what to try.
  """
  unroll_lib.check_finite(res.metrics, start)
  hnorm = float(optax.tree.norm(res.dtheta))
  if not np.isfinite(hnorm):
    raise FloatingPointError(f"Non-finite hypergradient at outer step {update} (student steps "
                             f"{start}..{start + num_steps - 1}); " + _nan_hint(student_state))
  return hnorm


def _with_dev_accuracy(state: StudentState, accuracy: float) -> StudentState:
  """The student's carry with its running ``dev_acc`` (the teacher's state) set to ``accuracy``."""
  return dataclasses.replace(state, stats=state_features.with_dev_accuracy(state.stats, accuracy))


def _teach_record(plan: _TeachPlan, update: int, episode: int, segment: int,
                  res: hypergrad.HypergradResult, final: StudentState, dev_accuracy: float,
                  hnorm: float, phi_stats: dict) -> dict:
  """The history record of one outer step (``seconds`` are added by the caller)."""
  return {
      "update": update,
      "episode": episode,
      "segment": segment,
      "student_step": int(final.step),
      "estimator": plan.estimator.name,
      "dev_measure": float(res.value),
      "dev_accuracy": dev_accuracy,
      "train_loss": float(jnp.mean(res.metrics.loss)),
      "train_cross_entropy": float(jnp.mean(res.metrics.cross_entropy)),
      "hypergrad_norm": hnorm,
      **phi_stats,
  }


def _teach_update(plan: _TeachPlan, state: TeachState) -> tuple[TeachState, dict]:
  """One outer step of Algorithm 1: a segment of ``T`` student steps, one teacher update.

  Returns:
    ``(the next TeachState, the step's history record)``.
  """
  t0 = time.time()
  episode, segment = divmod(state.update, plan.segments)
  sampler = _sampler(plan.train, plan.schedule.batch_size, plan.seed * 1_000_003 + episode,
                     plan.student)
  student_state, est_state, warm_start_seconds = state.student, state.estimator_state, 0.0
  if segment == 0 or student_state is None:
    student_state = _warm_start(plan, sampler, episode)
    est_state = plan.estimator.init_state(state.theta, student_state)  # a new episode
    warm_start_seconds = time.time() - t0  # reported apart from the outer step's time
    t0 = time.time()
  start = int(student_state.step)
  ctx = EstimateContext(
      student=plan.student,
      teacher=plan.teacher,
      measure=plan.measure,
      mesh=plan.mesh,
      rng=jax.random.fold_in(plan.rng, 3_000_000 + state.update),
      sampler=sampler,
      start=start,
      num_steps=plan.schedule.unroll_steps,
      update=state.update,
      dev_batches=_dev_batches(plan, student_state, state.update))
  res, est_state = plan.estimator.estimate(ctx, state.theta, est_state, student_state)
  hnorm = _checked_norm(res, state.update, start, plan.schedule.unroll_steps, student_state)
  theta, opt_state = plan.fns["outer_step"](state.theta, state.opt_state, res.dtheta)
  final = res.final_state
  dev_accuracy = _host(plan.fns["eval"](final.params, final.model_state, plan.full_dev))["accuracy"]
  final = _with_dev_accuracy(final, dev_accuracy)
  record = _teach_record(plan, state.update, episode, segment, res, final, dev_accuracy, hnorm,
                         _host(plan.fns["phi"](state.theta, student_state)))
  last = segment == plan.segments - 1
  state = TeachState(
      theta=theta,
      opt_state=opt_state,
      student=None if last else final,
      estimator_state=None if last else est_state,
      update=state.update + 1)
  record["seconds"] = time.time() - t0
  record["warm_start_seconds"] = warm_start_seconds
  return state, record


def _teach_fns(student: Student, teacher: Teacher, measure: measures.Measure, tx,
               warm_start: WarmStart) -> dict:
  """The compiled functions of one :func:`teach` call besides the estimator's.

  They are cached ones where they can be.
  """
  return {
      "eval": _eval_fn(student),
      "pretrain": _unroll_fn(student, _cache_key(warm_start.loss)),
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


def teach(student: Student,
          teacher: Teacher,
          train,
          dev,
          *,
          measure: Optional[measures.Measure] = None,
          teacher_optimizer: Optional[optax.GradientTransformation] = None,
          schedule: Schedule = Schedule(),
          estimator: HypergradEstimator = _DEFAULT_ESTIMATOR,
          dev_sampling: DevSampling = DevSampling(),
          seed: int = 0,
          init_state: Optional[TeachState] = None,
          callback: Optional[Callable[[TeachState, dict], None]] = None,
          progress: bool = True,
          mesh: Optional[Mesh] = None) -> TeachResult:
  """Algorithm 1: learn the teacher ``theta`` by unrolling the student.

  Args:
    student: the :class:`~dlf_jax.student.Student` (model + optimizer).
    teacher: a :class:`~dlf_jax.teacher.Teacher`.
    train: training data, ``{'x': [N, ...], 'y': int [N]}`` (or an object
      with ``.x`` / ``.y``), or a :class:`~dlf_jax.contracts.BatchSampler`
      (``batch_size``, ``segment(start, count) -> [count, B, ...]``,
      ``reseeded(seed)``; e.g. :class:`dlf_jax.data.BucketSampler`; episode
      ``e`` uses ``reseeded(seed * 1000003 + e)``).
    dev: dev data, same form; its smoothed measure is the teacher's reward.
    measure: M~ (default :class:`~dlf_jax.measures.ExpectedAccuracy`).
    teacher_optimizer: optax transformation for theta (default Adam 1e-3).
    schedule: a :class:`Schedule`: mode, ``T``, episodes, segments per
      episode, warm start (:attr:`Schedule.warm_start`), student batch size.
    estimator: how each segment's hypergradient is computed, a
      :class:`~dlf_jax.contracts.HypergradEstimator`:
      :class:`~dlf_jax.estimators.ReverseMode` (default; Eqns. 3-5),
      :class:`~dlf_jax.estimators.ForwardMode` (the same number at memory
      independent of ``T``, cost ~``P`` x the unroll),
      :class:`~dlf_jax.estimators.AntitheticES` or
      :class:`~dlf_jax.estimators.PES` (evolution strategies, any reward; a
      noisy estimate); by name: :func:`dlf_jax.estimators.get`.
    dev_sampling: a :class:`DevSampling`: the dev batch size and an optional
      fresh dev sample per outer step.
    seed: seeds students, batches, dev samples and the estimator's keys.
    init_state: a :class:`TeachState` to resume from (else fresh theta).
    callback: ``callback(state, record)`` after every outer step.
    progress: show a progress bar.
    mesh: data parallelism (:func:`dlf_jax.parallel.make_mesh`): every batch is
      split over the mesh's devices, theta and the student replicated; same
      numbers as one device. The batch sizes must be multiples of the device
      count.

  Returns:
    :class:`TeachResult` with the learned ``theta``, the ``schedule`` (whose
    ``warm_start`` :func:`train_student` takes) and a history of dicts
    (``update, episode, segment, student_step, estimator, dev_measure,
    dev_accuracy, train_loss, train_cross_entropy, hypergrad_norm,
    w_diag_mean, w_offdiag_mean, b_mean, seconds, warm_start_seconds``;
    ``estimator`` is the estimator's ``name``; ``seconds`` is the outer step's
    wall time, the student's warm start at a new episode is
    ``warm_start_seconds``).

  Raises:
    TypeError: ``estimator`` is not a :class:`~dlf_jax.contracts.HypergradEstimator`
      (e.g. a name: build it with :func:`dlf_jax.estimators.get`); ``schedule``
      / ``dev_sampling`` of the wrong type; ``train`` is neither arrays nor a
      :class:`~dlf_jax.contracts.BatchSampler`.
    ValueError: class-count mismatch, a teacher the estimator refuses (e.g.
      ``ForwardMode`` above ``max_params`` parameters), ``seed`` not an integer
      ``>= 0``, ``dev_sampling.sample_size`` above the dev set; for a split
      (each names the split): labels outside ``[0, C)``, arrays of different
      lengths, unsigned-integer or boolean inputs (e.g. uint8 pixels: convert
      and normalise them), dev features of another shape than train's; a
      ``teacher_optimizer`` or ``student.tx`` whose probed updates ascend the
      gradient (a negative learning rate) or are all zero (a rate of 0)
      (:func:`check_descent`).
    FloatingPointError: NaN/inf in the unroll (names the step) or hypergradient
      (for an Adam student, names ``eps_root``).

  References:
    Wu et al. 2018, Algorithm 1.
  """
  _check_estimator(estimator)
  _check_class_count(student, teacher)
  _check_type("schedule", schedule, Schedule, "dlf_jax.Schedule(unroll_steps=..., ...)")
  _check_type("dev_sampling", dev_sampling, DevSampling, "dlf_jax.DevSampling(batch_size=...)")
  checks.check_int("seed", seed, 0)
  measure = measure or measures.ExpectedAccuracy()
  tx = teacher_optimizer or optax.adam(1e-3)
  first = (_sampler(train, schedule.batch_size, seed *
                    1_000_003, student).segment(0, 1) if isinstance(train, BatchSampler) else None
          )  # episode 0's first batch
  dev, full_dev_host = _prepare_dev(dev, student, dev_sampling,
                                    _example_shapes(train, student, first))
  rng = jax.random.PRNGKey(seed)
  state = _initial_teach_state(teacher, tx, rng, init_state, mesh)
  estimator.check(state.theta)
  segments = schedule.segments(getattr(teacher, "total_steps", None))
  plan = _TeachPlan(
      student=student,
      teacher=teacher,
      measure=measure,
      train=train,
      seed=seed,
      rng=rng,
      mesh=mesh,
      estimator=estimator,
      schedule=schedule,
      segments=segments,
      dev_sampling=dev_sampling,
      dev=dev,
      full_dev_host=full_dev_host,
      full_dev=parallel.shard_batches(full_dev_host, mesh),
      fns=_teach_fns(student, teacher, measure, tx, schedule.warm_start))
  state, history = _outer_loop(plan, state, schedule.num_episodes * segments, callback, progress)
  return TeachResult(theta=state.theta, history=history, state=state, schedule=schedule)


def _outer_loop(plan: _TeachPlan, state: TeachState, total_updates: int, callback,
                progress: bool) -> tuple[TeachState, list[dict]]:
  """Algorithm 1's loop: outer steps from ``state.update`` to ``total_updates``.

  Returns:
    ``(the last TeachState, one history record per outer step taken)``.
  """
  history: list[dict] = []
  bar = _progress(total_updates, "teach", progress, initial=state.update)
  while state.update < total_updates:
    state, record = _teach_update(plan, state)
    history.append(record)
    _report(
        callback,
        bar,
        state,
        record,
        1,
        dev_M=f"{record['dev_measure']:.4f}",
        dev_acc=f"{record['dev_accuracy']:.4f}")
  if bar is not None:
    bar.close()
  return state, history


def _check_train_args(student: Student, loss: LossProvider, theta, num_steps: int, eval_every: int,
                      warm_start: Optional[WarmStart]) -> None:
  """The argument checks of :func:`train_student` (the sizes are checked by the caller)."""
  if warm_start is not None and not isinstance(warm_start, WarmStart):
    raise TypeError(f"warm_start must be a dlf_jax.WarmStart (e.g. WarmStart(steps=500), or "
                    f"the teach result's schedule.warm_start) or None, got {warm_start!r}.")
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
  piece = getattr(sampler, "segment_steps", None) or stop - int(state.step)
  parts = []
  while int(state.step) < stop:
    at = int(state.step)
    n = min(piece - at % piece, stop - at)
    state, m = run_fn(theta, state, parallel.shard_batches(sampler.segment(at, n), mesh))
    unroll_lib.check_finite(m, at)
    parts.append(m)
  return state, jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *parts)


def _train_record(state: StudentState, metrics: unroll_lib.StepMetrics, phi_stats: dict, eval_fn,
                  evals: dict) -> dict:
  """One evaluation's history record (``seconds`` are added by the caller)."""
  record = {
      "step": int(state.step),
      "train_loss": float(jnp.mean(metrics.loss)),
      "train_cross_entropy": float(jnp.mean(metrics.cross_entropy)),
      "train_accuracy": float(jnp.mean(metrics.accuracy)),
      **phi_stats
  }
  for name, batches in evals.items():
    for k, v in _host(eval_fn(state.params, state.model_state, batches)).items():
      record[f"{name}_{k}"] = v
  return record


def train_student(student: Student,
                  loss: LossProvider,
                  train,
                  *,
                  theta: Any = None,
                  num_steps: int = 1000,
                  batch_size: int = 128,
                  seed: int = 0,
                  eval_every: int = 100,
                  dev=None,
                  test=None,
                  eval_batch_size: int = 1000,
                  warm_start: Optional[WarmStart] = None,
                  init_state: Optional[StudentState] = None,
                  callback: Optional[Callable[[StudentState, dict], None]] = None,
                  progress: bool = True,
                  desc: str = "student",
                  mesh: Optional[Mesh] = None) -> TrainResult:
  """Trains a fresh student for ``num_steps`` with a frozen teacher or a fixed loss.

  With ``warm_start``, the first ``warm_start.steps`` steps train with its
  fixed loss (cross-entropy) and the rest with ``loss``: the recipe of a taught
  student, ``warm_start=result.schedule.warm_start`` of :func:`teach`'s result
  (the warm start its students had). The run is one sequence of steps, batches
  and evaluations: the warm start ends with an evaluation and the teacher's
  steps continue from it (``eval_every`` counts from step 0).

  Args:
    student: the :class:`~dlf_jax.student.Student`.
    loss: a :class:`~dlf_jax.teacher.Teacher` (then ``theta`` is required) or
      a fixed loss of :mod:`dlf_jax.losses` (e.g. :class:`~dlf_jax.losses.CrossEntropyLoss`).
    train: training data ``{'x', 'y'}`` (or ``.x`` / ``.y``), or a
      :class:`~dlf_jax.contracts.BatchSampler` as in :func:`teach` (used as
      ``reseeded(seed)``; scans are cut at multiples of its ``segment_steps``
      when it has one).
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
    warm_start: a :class:`WarmStart` (None: ``loss`` from step 0); its
      ``steps`` are clipped to ``num_steps``.
    init_state: resume from this carry (its ``step`` says where; a carry past
      the warm start continues with ``loss``).
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
    ValueError: a size or ``seed`` that is not an integer in range (names it),
      missing theta, class-count mismatch; for a split (each names the split):
      labels outside ``[0, C)``, arrays of different lengths, unsigned-integer
      or boolean inputs (e.g. uint8 pixels: convert and normalise them),
      dev / test features of another shape than train's; a ``student.tx``
      whose probed updates ascend the gradient or are all zero
      (:func:`check_descent`).
    TypeError: ``warm_start`` is not a :class:`WarmStart`; ``train`` is
      neither arrays nor a :class:`~dlf_jax.contracts.BatchSampler` (names
      the sampler members it lacks).
    FloatingPointError: NaN/inf in training (names the step).
  """
  num_steps = checks.check_int("num_steps", num_steps, 1)
  batch_size = checks.check_int("batch_size", batch_size, 1)
  seed = checks.check_int("seed", seed, 0)
  eval_every = checks.check_int("eval_every", eval_every, 1)
  eval_batch_size = checks.check_int("eval_batch_size", eval_batch_size, 1)
  _check_train_args(student, loss, theta, num_steps, eval_every, warm_start)
  sampler = _sampler(train, batch_size, seed, student)
  state, first = init_state, None
  if state is None:
    first = sampler.segment(0, 1)
    state = student.init(jax.random.PRNGKey(seed), {k: v[0] for k, v in first.items()})
  _check_student_tx(student, state.params)
  train_shapes = _example_shapes(train, student, first)
  evals = {}
  for name, d in (("dev", dev), ("test", test)):
    if d is not None:
      arrays = _as_arrays(d, name, student)
      _check_feature_shapes(arrays, name, train_shapes)
      evals[name] = parallel.shard_batches(make_eval_batches(arrays, eval_batch_size), mesh)
  warm = min(warm_start.steps, num_steps) if warm_start is not None else 0
  stages = ([(warm_start.loss, None, warm)] if warm_start is not None and warm else []) + [
      (loss, theta, num_steps)
  ]
  history: list[dict] = []
  bar = _progress(num_steps, desc, progress, initial=int(state.step))
  for stage_loss, stage_theta, stop in stages:
    if int(state.step) < stop:
      state = _train_stage(student, stage_loss, stage_theta, state, sampler, stop, eval_every,
                           evals, mesh, history, callback, bar)
  if bar is not None:
    bar.close()
  return TrainResult(state=state, history=history)


def _train_stage(student: Student, loss: LossProvider, theta, state: StudentState, sampler,
                 stop: int, eval_every: int, evals: dict, mesh: Optional[Mesh], history: list,
                 callback, bar) -> StudentState:
  """Trains ``state`` with one loss up to step ``stop``.

  Evaluates at every multiple of ``eval_every`` and at ``stop``; appends the records
  to ``history``.
  """
  key = _cache_key(loss)
  run_fn, eval_fn, phi_fn = _unroll_fn(student, key), _eval_fn(student), _phi_stats_fn(key)
  state, theta = parallel.replicate(state, mesh), parallel.replicate(theta, mesh)
  while int(state.step) < stop:
    t0 = time.time()
    start = int(state.step)
    count = min(eval_every - start % eval_every, stop - start)
    phi_stats = _host(phi_fn(theta, state))
    state, metrics = _run_steps(run_fn, theta, state, sampler, start + count, mesh)
    record = _train_record(state, metrics, phi_stats, eval_fn, evals)
    if "dev" in evals:
      state = _with_dev_accuracy(state, record["dev_accuracy"])
    record["seconds"] = time.time() - t0
    history.append(record)
    _report(
        callback,
        bar,
        state,
        record,
        count,
        loss=f"{record['train_loss']:.4f}",
        **{k: f"{record[k]:.4f}" for k in ("dev_accuracy", "test_accuracy") if k in record})
  return state
