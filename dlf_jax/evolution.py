"""Zero-order teacher gradients: antithetic evolution strategies (ES) and persistent ES (PES).

The reverse scan of :mod:`dlf_jax.hypergrad` differentiates the smoothed measure
M~ through ``T`` student steps. Evolution strategies estimate the gradient of
the Gaussian-smoothed reward ``E_eps[R(theta + sigma eps)]`` from reward values
alone, so they

* need no derivative of the reward (dev *accuracy*, BLEU, anything scalar:
  pass ``reward=``; :func:`dev_accuracy_reward`),
* need no derivative of the student step (non-differentiable students,
  integer state, clipping -- anything :func:`~dlf_jax.unroll.unroll` runs),
* use flat memory in ``T``: each population member is one forward unroll,
  nothing is stored for a reverse pass.

Antithetic ES (:func:`es_gradient`), ``n = population / 2`` pairs::

    eps_i ~ N(0, I_P),  R+-_i = R(theta +- sigma eps_i)
    g = 1 / (2 sigma n) * sum_i (R+_i - R-_i) eps_i

All ``population`` members and the unperturbed centre run as one ``jax.vmap``
(by default; or in chunks, ``chunk_size``) of the same unroll over the same batches
(common random numbers: the students share their start state, data order and PRNG key), so the
estimate's noise comes from ``eps`` alone. The zeroth-order term cancels
within each pair.

PES (:func:`pes_step`; Vicol, Metz, Sohl-Dickstein, ICML 2021) splits a long
run into truncations of ``T`` steps. Each particle continues its *own* student
from where its previous truncation ended, with a fresh perturbation per
truncation, and remembers the sum of all perturbations it has seen since its
episode began (the accumulator ``xi``); the estimate weights the reward
difference with that sum::

    xi_j   += sigma eps_j                       (eps of this truncation)
    g       = 1 / (2 sigma^2 n) * sum_i (R+_i - R-_i) xi+_i

which is an unbiased estimate (for the smoothed objective) of the gradient of
the reward at the end of this truncation with respect to theta acting on
*every* step since the episode started -- the full-horizon hypergradient --
whereas truncated ES (the accumulator reset every truncation) sees only the
last ``T`` steps (short-horizon bias, Wu et al., ICLR 2018). Particles come in
antithetic pairs ``(i, i + n)`` that share a start state and perturbations of
opposite sign, so ``xi-_i = -xi+_i``. Summing the estimates of all truncations
of an episode estimates the gradient of the sum of their rewards.

When to use which (``P`` teacher parameters, ``N`` population, ``T`` steps):

============  ======================  ======================  ==============  ===============
method        cost per estimate       memory                  reward          error
============  ======================  ======================  ==============  ===============
reverse       a few forward           ``T`` step records      differentiable  exact
(hypergrad)   unrolls                 (``sqrt T`` ckpt.)
forward-mode  grows with ``P``        flat in ``T``           differentiable  exact
ES            ``N + 1`` unrolls       ``N + 1`` students      any scalar      ``(P+1)/n``
                                      (1 with chunk_size=1)
PES           ``N`` unrolls per       ``N`` students +        any scalar      > ES; unbiased
              truncation              ``N x P`` accumulator                   for full horizon
============  ======================  ======================  ==============  ===============

Error of one ES estimate (locally linear reward, Gaussian ``eps``, ``n = N / 2``
pairs): ``E||g - grad||^2 / ||grad||^2 = (P + 1) / n``, a cosine similarity with
the exact gradient of about ``1 / sqrt(1 + (P + 1) / n)``. PES adds the variance
of the earlier truncations' perturbations (Vicol et al. 2021). ES pays off when
``P`` is small (a diagonal or low-rank loss bank), when the reward is not
differentiable (dev accuracy, BLEU), or when the horizon is too long to store;
for teachers of hundreds of parameters use the exact reverse (or forward)
hypergradient. ``chunk_size`` trades the single ``vmap`` over the population
(meant for accelerators) for ``lax.map`` in chunks (one student's memory with
``chunk_size=1``). Measured costs: ``benchmarks/es_throughput.py`` and
``benchmarks/RESULTS.md``. In :func:`dlf_jax.teach`: :class:`dlf_jax.estimators.AntitheticES`
and :class:`dlf_jax.estimators.PES`.

References:
  Salimans, Ho, Chen, Sidor, Sutskever, "Evolution Strategies as a Scalable
  Alternative to Reinforcement Learning", 2017 (antithetic ES).
  Vicol, Metz, Sohl-Dickstein, "Unbiased Gradient Estimation in Unrolled
  Computation Graphs with Persistent Evolution Strategies", ICML 2021 (PES;
  reference implementation ``learned_optimization/outer_trainers/truncated_pes.py``).
  Wu, Ren, Liao, Grosse, "Understanding Short-Horizon Bias in Stochastic
  Meta-Optimization", ICLR 2018.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from flax import struct
from jax.flatten_util import ravel_pytree

from dlf_jax import checks, measures
from dlf_jax.contracts import LossProvider
from dlf_jax.hypergrad import HypergradResult
from dlf_jax.student import Student, StudentState
from dlf_jax.unroll import (check_batch_labels, check_unroll_batches, dev_measure, evaluate, unroll)

__all__ = [
    "PESState", "es_gradient", "make_es_gradient_fn", "dev_accuracy_reward", "antithetic_estimate",
    "pes_estimate", "resolve_reward", "check_population", "check_sigma", "check_chunk_size",
    "init_pes_state", "reset_pes_state", "pes_step", "make_pes_step_fn"
]

Reward = Callable[[Any, Any, Any], jax.Array]


def check_population(population) -> int:
  """``population`` as an int; even and ``>= 2`` (antithetic pairs).

  Raises:
    ValueError: not an integer, odd, or ``< 2``.
  """
  n = checks.check_int("population", population, 2, fix="an even number (antithetic pairs)")
  if n % 2:
    raise ValueError(f"population must be an even integer >= 2 (antithetic pairs), "
                     f"got {population}.")
  return n


def check_sigma(sigma) -> None:
  """Raises ValueError unless ``sigma`` is finite and > 0 (skipped for traced values)."""
  if isinstance(sigma, jax.core.Tracer):
    return
  value = float(sigma)
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f"sigma (the perturbation scale) must be finite and > 0, got {sigma}.")


def _check_classes(student: Student, teacher: LossProvider) -> None:
  num_classes = teacher.num_classes
  if num_classes is not None and num_classes != student.num_classes:
    raise ValueError(f"The teacher's loss has C={num_classes} classes but the student "
                     f"has num_classes={student.num_classes}.")


def check_chunk_size(chunk_size) -> Optional[int]:
  """``None`` or an int ``>= 1``.

  Raises:
    ValueError: anything else.
  """
  return checks.check_int("chunk_size", chunk_size, 1, allow_none=True)


def _map_members(fn: Callable, xs, chunk_size: Optional[int]):
  """``fn`` over the leading axis of ``xs``: one ``vmap`` (None), or ``lax.map`` in chunks.

  ``chunk_size = k`` evaluates ``k`` members at a time with ``vmap`` and the
  chunks one after another (``k = 1``: strictly sequential, one member's memory).
  """
  if chunk_size is None:
    return jax.vmap(fn)(*xs)
  if chunk_size == 1:
    return jax.lax.map(lambda x: fn(*x), xs)
  return jax.lax.map(lambda x: fn(*x), xs, batch_size=chunk_size)


def _noise(rng: jax.Array, num_pairs: int, dim: int, dtype) -> jax.Array:
  """``eps`` ``[num_pairs, dim]`` ~ N(0, I); ES and PES draw it the same way."""
  return jax.random.normal(rng, (num_pairs, dim), dtype)


def antithetic_estimate(fn: Callable,
                        theta_flat: jax.Array,
                        rng: jax.Array,
                        population: int,
                        sigma: float,
                        *,
                        has_aux: bool = False,
                        chunk_size: Optional[int] = None):
  """Antithetic ES estimate of ``d fn / d theta`` with the centre evaluated alongside.

  ``fn`` is evaluated at ``[theta, theta + sigma eps_1..n, theta - sigma eps_1..n]``
  by one ``jax.vmap`` (or in chunks, ``chunk_size``).

  Args:
    fn: ``theta_flat [P] -> scalar`` (or ``-> (scalar, aux)`` with ``has_aux``).
    theta_flat: float ``[P]``.
    rng: PRNG key for ``eps [n, P]``, ``n = population / 2``.
    population: even number of perturbed evaluations.
    sigma: perturbation scale, > 0.
    has_aux: ``fn`` also returns auxiliary outputs.
    chunk_size: see :func:`es_gradient`.

  Returns:
    ``(g [P], value, aux)``: ``g = 1/(2 sigma n) sum_i (R+_i - R-_i) eps_i``,
    ``value = fn(theta)`` (the centre), ``aux`` the centre's auxiliary output
    (None without ``has_aux``).

  Raises:
    ValueError: odd or too small population, ``sigma <= 0``, bad ``chunk_size``.
  """
  population = check_population(population)
  check_sigma(sigma)
  n = population // 2
  eps = _noise(rng, n, theta_flat.shape[0], theta_flat.dtype)
  delta = sigma * eps
  thetas = jnp.concatenate([theta_flat[None], theta_flat + delta, theta_flat - delta])
  out = _map_members(fn, (thetas,), check_chunk_size(chunk_size))
  rewards, aux = out if has_aux else (out, None)
  diff = rewards[1:n + 1] - rewards[n + 1:]  # [n]: R+_i - R-_i
  g = (diff @ eps) / (2 * sigma * n)
  if aux is not None:
    aux = jax.tree_util.tree_map(lambda x: x[0], aux)
  return g.astype(theta_flat.dtype), rewards[0], aux


def resolve_reward(student: Student, measure: Optional[measures.Measure],
                   reward: Optional[Reward]) -> Reward:
  """``reward`` itself, else the dev mean of ``measure`` (:func:`~dlf_jax.unroll.dev_measure`).

  Raises:
    ValueError: neither is given.
  """
  if reward is not None:
    return reward
  if measure is None:
    raise ValueError("Pass a measure (the default reward is its dev mean) or a reward callable.")
  return lambda params, model_state, dev_batches: dev_measure(student, measure, params, model_state,
                                                              dev_batches)


@functools.lru_cache(maxsize=32)
def dev_accuracy_reward(student: Student) -> Reward:
  """The (non-differentiable) dev accuracy as an ES reward.

  One callable per student (cached), so estimators built with it compare equal
  and share their compiled functions.

  Returns:
    ``reward(params, model_state, dev_batches) -> scalar``: the masked accuracy of
    :func:`~dlf_jax.unroll.evaluate` (eval mode) over ``[n, B, ...]`` dev batches.
  """
  return lambda params, model_state, dev_batches: evaluate(student, params, model_state, dev_batches
                                                          )["accuracy"]


def es_gradient(student: Student,
                teacher: LossProvider,
                measure: Optional[measures.Measure],
                theta: Any,
                state: StudentState,
                batches,
                dev_batches,
                rng: jax.Array,
                *,
                population: int = 8,
                sigma: float = 0.01,
                reward: Optional[Reward] = None,
                chunk_size: Optional[int] = None) -> HypergradResult:
  """Antithetic-ES estimate of ``dR/dtheta`` over one unroll of ``T`` student steps.

  Args:
    student: the :class:`~dlf_jax.student.Student`.
    teacher: a :class:`~dlf_jax.teacher.Teacher` (or any loss provider).
    measure: the smoothed dev measure; the default reward is its dev mean
      (:func:`~dlf_jax.unroll.dev_measure`). May be None if ``reward`` is given.
    theta: teacher parameters (any pytree of floats, ``P`` numbers in all).
    state: the student's carry at the first step, shared by every member.
    batches: training batches, dict of ``[T, B, ...]`` arrays (shared).
    dev_batches: dev batches, dict of ``[n_dev, B_dev, ...]`` arrays.
    rng: PRNG key of the perturbations ``eps [population / 2, P]``.
    population: even number of perturbed students (``population / 2`` pairs).
    sigma: standard deviation of the perturbation of ``theta``.
    reward: optional ``reward(params, model_state, dev_batches) -> scalar``
      evaluated on each final student; need not be differentiable
      (:func:`dev_accuracy_reward`).
    chunk_size: None (default): all ``population + 1`` students in one
      ``jax.vmap``; ``k``: ``k`` at a time (``jax.lax.map``), ``1``: one after
      another in the same compiled program. Same estimate; on a CPU whose
      matmuls already fill the cores, ``1`` is faster and needs one student's
      memory (module docstring).

  Returns:
    :class:`~dlf_jax.hypergrad.HypergradResult` with ``dtheta`` (pytree like
    ``theta``, the estimate of ``dR/dtheta``: the ascent direction of the
    reward, same sign convention as :func:`~dlf_jax.hypergrad.hypergradient`),
    ``value`` (``R`` at the unperturbed centre), the centre's ``final_state``
    and ``metrics`` (``[T]`` leaves), ``dparams0=None``.

  Raises:
    ValueError: odd or too small population, ``sigma <= 0``, ``T <= 0``, no
      measure and no reward, class-count mismatch, ``chunk_size < 1``, concrete
      (not traced) labels outside ``[0, C)``.

  Memory: ``population + 1`` students at once (``chunk_size`` of them with a
  ``chunk_size``): params, optimizer state, one step's activations; nothing per
  step is stored.

  References:
    Salimans et al. 2017 (antithetic ES).
  """
  population = check_population(population)
  check_sigma(sigma)
  check_unroll_batches(batches)
  check_batch_labels(batches, student, "batches")  # concrete labels only (not under jit)
  check_batch_labels(dev_batches, student, "dev_batches")
  _check_classes(student, teacher)
  reward_fn = resolve_reward(student, measure, reward)
  theta_flat, unravel = ravel_pytree(theta)

  def run(flat):
    final, metrics = unroll(student, teacher, unravel(flat), state, batches)
    return reward_fn(final.params, final.model_state, dev_batches), (final, metrics)

  g, value, (final, metrics) = antithetic_estimate(
      run, theta_flat, rng, population, sigma, has_aux=True, chunk_size=chunk_size)
  return HypergradResult(
      dtheta=unravel(g), dparams0=None, value=value, final_state=final, metrics=metrics)


def make_es_gradient_fn(student: Student,
                        teacher: LossProvider,
                        measure: Optional[measures.Measure],
                        *,
                        population: int = 8,
                        sigma: float = 0.01,
                        reward: Optional[Reward] = None,
                        chunk_size: Optional[int] = None):
  """``jax.jit``-compiled ``fn(theta, state, batches, dev_batches, rng) -> HypergradResult``.

  ``population``, ``sigma``, ``reward`` and ``chunk_size`` are fixed (static) at
  construction. See :func:`es_gradient`.

  Raises:
    ValueError: odd or too small population, ``sigma <= 0``, no measure and no
      reward, ``chunk_size < 1``.
  """
  population = check_population(population)
  check_sigma(sigma)
  chunk_size = check_chunk_size(chunk_size)
  resolve_reward(student, measure, reward)
  return jax.jit(
      functools.partial(
          es_gradient,
          student,
          teacher,
          measure,
          population=population,
          sigma=float(sigma),
          reward=reward,
          chunk_size=chunk_size))


@struct.dataclass
class PESState:
  """Persistent particles of :func:`pes_step`.

  Particles ``i`` and ``i + n`` (``n = population / 2``) are an antithetic pair.

  Attributes:
    particles: :class:`~dlf_jax.student.StudentState` with a leading
      ``[population]`` axis on every leaf: each particle's own student.
    accumulator: float ``[population, P]``: the sum of the perturbations
      ``sigma eps`` of ``theta`` each particle has run with since its episode
      began (``accumulator[i + n] == -accumulator[i]``).
  """
  particles: StudentState
  accumulator: jax.Array

  @property
  def population(self) -> int:
    return self.accumulator.shape[0]


def init_pes_state(student_state: StudentState, population: int, theta: Any) -> PESState:
  """``population`` copies of ``student_state`` and a zero accumulator.

  Args:
    student_state: the start of every particle's episode (one student).
    population: even number of particles (``population / 2`` antithetic pairs).
    theta: teacher parameters (only their flattened size ``P`` and dtype are used).

  Returns:
    :class:`PESState` with ``[population, ...]`` particles and a ``[population, P]``
    zero accumulator.

  Raises:
    ValueError: odd or too small population.
  """
  population = check_population(population)
  theta_flat, _ = ravel_pytree(theta)
  particles = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (population,) + jnp.shape(x)),
                                     student_state)
  return PESState(
      particles=particles,
      accumulator=jnp.zeros((population,) + theta_flat.shape, theta_flat.dtype))


def reset_pes_state(pes_state: PESState,
                    student_state: StudentState,
                    pairs: Optional[jax.Array] = None) -> PESState:
  """Starts new episodes: particles back to ``student_state``, accumulators to zero.

  Args:
    pes_state: the current :class:`PESState`.
    student_state: the new episode's start (one student, e.g. a fresh init).
    pairs: optional bool ``[population / 2]``: reset only these antithetic
      pairs (both of their particles); all if None. Episodes must begin at a
      truncation boundary.

  Returns:
    The reset :class:`PESState`.
  """
  population = pes_state.population
  if pairs is None:
    return init_pes_state(student_state, population, pes_state.accumulator[0])
  pairs = jnp.asarray(pairs, bool)
  if pairs.shape != (population // 2,):
    raise ValueError(f"pairs must be a bool [population / 2] = [{population // 2}] mask, "
                     f"got shape {pairs.shape}.")
  mask = jnp.concatenate([pairs, pairs])

  def select(new, old):
    m = mask.reshape((population,) + (1,) * (jnp.ndim(old) - 1))
    return jnp.where(m, new, old)

  particles = jax.tree_util.tree_map(lambda new, old: select(new[None], old), student_state,
                                     pes_state.particles)
  accumulator = select(jnp.zeros_like(pes_state.accumulator), pes_state.accumulator)
  return PESState(particles=particles, accumulator=accumulator)


def pes_estimate(fn: Callable,
                 theta_flat: jax.Array,
                 particles: Any,
                 accumulator: jax.Array,
                 rng: jax.Array,
                 sigma: float,
                 chunk_size: Optional[int] = None):
  """One PES truncation for generic persistent particles.

  Args:
    fn: ``(theta_flat [P], particle) -> (reward, new particle)`` for one particle.
    theta_flat: float ``[P]``.
    particles: pytree with a leading ``[population]`` axis.
    accumulator: ``[population, P]`` summed perturbations (``sigma eps``) so far.
    rng: PRNG key of this truncation's ``eps [n, P]``.
    sigma: perturbation scale, > 0.
    chunk_size: see :func:`es_gradient`.

  Returns:
    ``(g [P], new particles, new accumulator, rewards [population])`` with
    ``g = 1/(2 sigma^2 n) sum_i (R+_i - R-_i) xi+_i`` over the updated accumulator.
  """
  population = check_population(accumulator.shape[0])
  check_sigma(sigma)
  n = population // 2
  eps = _noise(rng, n, theta_flat.shape[0], theta_flat.dtype)
  delta = sigma * eps
  delta = jnp.concatenate([delta, -delta])  # [population, P]
  rewards, new_particles = _map_members(fn, (theta_flat + delta, particles),
                                        check_chunk_size(chunk_size))
  accumulator = accumulator + delta
  diff = rewards[:n] - rewards[n:]  # [n]: R+_i - R-_i
  # The pair's accumulated perturbation; (xi+ - xi-) / 2 == xi+ exactly when paired.
  xi = (accumulator[:n] - accumulator[n:]) / 2
  g = (diff @ xi) / (2 * sigma**2 * n)
  return g.astype(theta_flat.dtype), new_particles, accumulator, rewards


def pes_step(student: Student,
             teacher: LossProvider,
             measure: Optional[measures.Measure],
             theta: Any,
             pes_state: PESState,
             batches,
             dev_batches,
             rng: jax.Array,
             *,
             sigma: float,
             reward: Optional[Reward] = None,
             chunk_size: Optional[int] = None) -> tuple[Any, PESState, jax.Array]:
  """One PES truncation: every particle continues its own student for ``T`` steps.

  Particle ``j`` runs :func:`~dlf_jax.unroll.unroll` from ``pes_state.particles[j]``
  with ``theta + delta_j`` (``delta_i = sigma eps_i``, ``delta_{i+n} = -delta_i``,
  fresh ``eps`` each truncation), then ``R_j = reward(final params_j, ...)``.

  Args:
    student, teacher, measure, reward, chunk_size: as in :func:`es_gradient`.
    theta: teacher parameters (pytree, ``P`` numbers).
    pes_state: :class:`PESState` (from :func:`init_pes_state` /
      :func:`reset_pes_state` at an episode's start).
    batches: this truncation's ``[T, B, ...]`` training batches (shared by all
      particles: common random numbers).
    dev_batches: dev batches, ``[n_dev, B_dev, ...]``.
    rng: PRNG key of this truncation's perturbations.
    sigma: perturbation scale, > 0; keep it fixed within an episode.

  Returns:
    ``(dtheta, new_pes_state, value)``: ``dtheta`` (pytree like ``theta``) the
    PES estimate of ``dR/dtheta`` at this truncation's end, through every step
    since the episode began; ``value`` the mean reward over the particles.

  Raises:
    ValueError: odd or too small population, ``sigma <= 0``, ``T <= 0``, no
      measure and no reward, concrete labels outside ``[0, C)``, accumulator size
      differing from ``theta``'s,
      ``chunk_size < 1``.

  References:
    Vicol, Metz, Sohl-Dickstein, ICML 2021 (PES with antithetic pairs).
  """
  check_unroll_batches(batches)
  check_batch_labels(batches, student, "batches")  # concrete labels only (not under jit)
  check_batch_labels(dev_batches, student, "dev_batches")
  _check_classes(student, teacher)
  reward_fn = resolve_reward(student, measure, reward)
  theta_flat, unravel = ravel_pytree(theta)
  if pes_state.accumulator.shape[1:] != theta_flat.shape:
    raise ValueError(f"The PES accumulator is [population, {pes_state.accumulator.shape[1:]}] "
                     f"but theta has {theta_flat.shape[0]} numbers.")

  def run(flat, particle):
    final, _ = unroll(student, teacher, unravel(flat), particle, batches)
    return reward_fn(final.params, final.model_state, dev_batches), final

  g, particles, accumulator, rewards = pes_estimate(run, theta_flat, pes_state.particles,
                                                    pes_state.accumulator, rng, sigma, chunk_size)
  return (unravel(g), PESState(particles=particles, accumulator=accumulator), jnp.mean(rewards))


def make_pes_step_fn(student: Student,
                     teacher: LossProvider,
                     measure: Optional[measures.Measure],
                     *,
                     sigma: float = 0.01,
                     reward: Optional[Reward] = None,
                     chunk_size: Optional[int] = None):
  """``jax.jit``-compiled ``fn(theta, pes_state, batches, dev_batches, rng)``.

  Returns ``(dtheta, new_pes_state, value)``; see :func:`pes_step`.

  Raises:
    ValueError: ``sigma <= 0``, no measure and no reward, ``chunk_size < 1``.
  """
  check_sigma(sigma)
  chunk_size = check_chunk_size(chunk_size)
  resolve_reward(student, measure, reward)
  return jax.jit(
      functools.partial(
          pes_step,
          student,
          teacher,
          measure,
          sigma=float(sigma),
          reward=reward,
          chunk_size=chunk_size))
