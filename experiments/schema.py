"""The experiment config schema: every key, the values it may take and what it means.

One declarative table per task, :data:`CLASSIFICATION` (``experiments/configs/common.py``
and the image configs, run by :mod:`experiments.tasks.classification`) and
:data:`TRANSLATION` (``experiments/configs/nmt.py``, run by
:mod:`experiments.tasks.translation`; each task's ``SCHEMA``), assembled from
shared sections. Each entry names one key, its check and its meaning; a check that
fails raises a :class:`ConfigError` naming the key, the value and what is valid::

  config.teach.mode='offline' is invalid: expected one of ('episodes', 'online').

Adding a config key is one entry here (plus its default in the config files and its
use). :func:`validate` runs a table; :func:`describe` prints it as documentation.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, NoReturn, Optional, Sequence, Union

import ml_collections
import numpy as np
from ml_collections import config_dict

from dlf_jax import data as data_lib
from dlf_jax import estimators, losses, models
from dlf_jax import student as student_lib
from dlf_jax import teacher as teacher_lib
from dlf_jax.data import translation as translation_lib
from dlf_jax.teaching import MODES as TEACH_MODES
from experiments import corrections

__all__ = [
    "ConfigError",
    "Field",
    "Choice",
    "Int",
    "Number",
    "Interval",
    "Flag",
    "Text",
    "Names",
    "Rule",
    "CLASSIFICATION",
    "TRANSLATION",
    "METHODS",
    "MODELS",
    "SCHEDULES",
    "TEACHERS",
    "MEASURES",
    "RECIPES",
    "ESTIMATORS",
    "TEACHER_OPTIMIZERS",
    "TEACH_MODES",
    "NMT_MODELS",
    "NMT_MEASURES",
    "NMT_METHODS",
    "NOISE_KINDS",
    "TEACHER_ANCHORS",
    "REWARDS",
    "MOVED_KEYS",
    "VOCABULARY_FORMS",
    "has_soft_targets",
    "get",
    "fail",
    "validate",
    "describe",
    "val_split",
    "has_val_split",
    "estimator_config",
    "estimator_settings",
]

# The fixed baselines, those built from the data (experiments.corrections), the teacher.
METHODS = tuple(losses.BASELINES) + tuple(
    corrections.DATA_BASELINES) + ("l2t_dlf", "l2t_dlf_anchor")
# The losses a teacher can start from in a config: the family's anchors, and GLC's
# estimate of T (a forward_correction teacher on noisy labels; image runner only).
TEACHER_ANCHORS = tuple(losses.ANCHORS) + ("glc",)
NOISE_KINDS = ("none", "symmetric", "pair", "matrix")
MODELS = ("mlp", "lenet", "convbn", "resnet", "wrn")
SCHEDULES = ("constant", "step", "inverse_sqrt")
TEACHERS = ("attention", "mlp")
MEASURES = ("expected_accuracy", "sigmoid_error", "cross_entropy")
RECIPES = ("config", "paper")
ESTIMATORS = tuple(estimators.ESTIMATORS)  # the registry's names, in its order
# Rewards an ES/PES estimator may name in a config (None: the teach measure's dev mean).
REWARDS = ("dev_accuracy",)
# Keys of the flat teach section before the estimator became a sub-config: old -> new.
MOVED_KEYS = {
    "teach.method": "teach.estimator.reverse.method",
    "teach.memory": "teach.estimator.reverse.memory",
    "teach.checkpoint_every": "teach.estimator.reverse.checkpoint_every",
    "teach.chunk_steps": "teach.estimator.forward.chunk_steps",
    "teach.forward_max_params": "teach.estimator.forward.max_params",
    "teach.es_population": "teach.estimator.es.population",
    "teach.es_sigma": "teach.estimator.es.sigma",
}
TEACHER_OPTIMIZERS = ("adam", "sgd", "momentum")
NMT_MODELS = ("transformer", "lstm")
NMT_MEASURES = ("expected_bleu", "expected_accuracy")
# large_margin (L-Softmax) needs a classifier head over features; not for seq2seq here.
NMT_METHODS = ("cross_entropy", "label_smoothing", "sigmoid_cross_entropy", "l2t_dlf")
# The forms of W whose memory is O(|V|) (or O(|V| r)): those a translation teacher can use.
VOCABULARY_FORMS = tuple(name for name, form in losses.FORMS.items() if form.scales_to_vocabulary)

Config = ml_collections.ConfigDict


class ConfigError(ValueError):
  """A config value is invalid (the message names the key, the value and what is valid)."""


def get(config: Config, key: str) -> Any:
  """``config['a']['b']`` for ``key='a.b'``."""
  for part in key.split("."):
    config = config[part]
  return config


def fail(key: str, value: Any, expected: str) -> NoReturn:
  """Raises the :class:`ConfigError` of ``config.<key>=<value>``."""
  raise ConfigError(f"config.{key}={value!r} is invalid: expected {expected}.")


# ------------------------------------------------------------------------ entries


@dataclasses.dataclass(frozen=True)
class Field:
  """One key of the schema.

  Attributes:
    key: the dotted config key (``'teach.unroll_steps'``).
    doc: what the key means (for :func:`describe`).
    when: if given, the key is checked only where ``when(config)`` holds.
  """
  key: str
  doc: str = dataclasses.field(default="", kw_only=True)
  when: Optional[Callable[[Config], bool]] = dataclasses.field(default=None, kw_only=True)

  def check(self, config: Config) -> None:
    """Raises :class:`ConfigError` if ``config``'s value of :attr:`key` is invalid."""
    if self.when is None or self.when(config):
      value = get(config, self.key)
      if not self.ok(value, config):
        fail(self.key, value, self.expected(config))

  def ok(self, value: Any, config: Config) -> bool:
    raise NotImplementedError

  def expected(self, config: Optional[Config] = None) -> str:
    """What is valid, as the error message and :func:`describe` say it."""
    raise NotImplementedError


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Choice(Field):
  """One of ``options`` (``text`` replaces the default description)."""
  options: tuple = ()
  text: Optional[str] = None

  def ok(self, value, config):
    return value in self.options

  def expected(self, config=None):
    return self.text or f"one of {tuple(self.options)}"


@dataclasses.dataclass(frozen=True)
class Int(Field):
  """An integer ``>= minimum`` (or None if ``optional``)."""
  minimum: int = 1
  optional: bool = False

  def ok(self, value, config):
    if value is None:
      return self.optional
    return (not isinstance(value, bool) and isinstance(value, (int, np.integer)) and
            value >= self.minimum)

  def expected(self, config=None):
    return f"an integer >= {self.minimum}" + (" or None" if self.optional else "")


@dataclasses.dataclass(frozen=True)
class Number(Field):
  """A number ``> 0`` (``positive``) or ``>= 0``."""
  positive: bool = True

  def ok(self, value, config):
    return _is_number(value) and (value > 0 if self.positive else value >= 0)

  def expected(self, config=None):
    return "a number > 0" if self.positive else "a number >= 0"


@dataclasses.dataclass(frozen=True)
class Interval(Field):
  """A number in ``[0, 1)``; ``note`` follows the description."""
  note: str = ""

  def ok(self, value, config):
    return _is_number(value) and 0 <= value < 1

  def expected(self, config=None):
    return "a number in [0, 1)" + (f" {self.note}" if self.note else "")


@dataclasses.dataclass(frozen=True)
class Flag(Field):
  """True or False."""

  def ok(self, value, config):
    return value in (True, False)

  def expected(self, config=None):
    return "True or False"


@dataclasses.dataclass(frozen=True)
class Text(Field):
  """A string (or None if ``optional``)."""
  optional: bool = False

  def ok(self, value, config):
    return isinstance(value, str) or (value is None and self.optional)

  def expected(self, config=None):
    return "a string" + (" or None" if self.optional else "")


@dataclasses.dataclass(frozen=True)
class Names(Field):
  """A tuple of names from ``options``; non-empty and distinct where asked."""
  options: tuple = ()
  nonempty: bool = False
  distinct: bool = False

  def ok(self, value, config):
    return (isinstance(value, (tuple, list)) and (bool(value) or not self.nonempty) and
            all(v in self.options for v in value) and
            (len(set(value)) == len(value) or not self.distinct))

  def expected(self, config=None):
    what = ("a non-empty tuple" if self.nonempty else "a tuple") + (" of distinct names" if
                                                                    self.distinct else " of names")
    return f"{what} from {tuple(self.options)}"


@dataclasses.dataclass(frozen=True)
class Rule(Field):
  """Any other constraint: ``test(value, config)``; ``text`` says what is valid."""
  test: Callable[[Any, Config], bool] = lambda value, config: True
  text: Union[str, Callable[[Config], str]] = ""

  def ok(self, value, config):
    return self.test(value, config)

  def expected(self, config=None):
    if callable(self.text):
      return "constrained" if config is None else self.text(config)
    return self.text


# ---------------------------------------------------------------------- sections


def _widths(value, config) -> bool:
  return (isinstance(value, (tuple, list)) and bool(value) and
          all(isinstance(h, int) and h >= 1 for h in value))


def _boundaries(value, config) -> bool:
  return (isinstance(value, (tuple, list)) and
          all(isinstance(b, (int, float)) and 0 < b < 1 for b in value) and
          list(value) == sorted(value))


def _fits_run(value, config) -> bool:
  return config.teach.pretrain_steps + value <= config.student.num_steps


def _fits_run_text(config) -> str:
  room = config.student.num_steps - config.teach.pretrain_steps
  return (f"at most student.num_steps - teach.pretrain_steps = {config.student.num_steps} - "
          f"{config.teach.pretrain_steps} = {room} (T steps of the run the teacher will teach)")


def _leaves_steps_to_teach(value, config) -> bool:
  return value < config.student.num_steps


def _leaves_steps_to_teach_text(config) -> str:
  return (f"fewer than student.num_steps={config.student.num_steps}: the warm start leaves no "
          "step of the run to teach; lower teach.pretrain_steps or raise student.num_steps")


def _is_forward_correction(parameterisation) -> bool:
  """True if the form named ``parameterisation`` is a forward-correction T (GLC can seed it)."""
  form = losses.FORMS.get(parameterisation)
  return form is not None and issubclass(form, losses.ForwardCorrectionW)


def has_soft_targets(parameterisation) -> bool:
  """True if the form named ``parameterisation`` reads ``teacher.target``."""
  form = losses.FORMS.get(parameterisation)
  return form is not None and issubclass(form, losses.SoftTargetW)


def _anchor_representable(value, config) -> bool:
  t = config.teacher
  form = losses.FORMS.get(t.parameterisation)
  return not (t.recipe == "config" and value == "label_smoothing" and t.anchor_smoothing > 0 and
              form is not None and not form.represents_label_smoothing)


def _num_classes(config) -> int:
  return data_lib.NUM_CLASSES[config.data.name]


def _noise_rate_ok(value, config) -> bool:
  kind = config.data.noise.kind
  if not _is_number(value):
    return False
  if kind in ("none", "matrix"):
    return value == 0
  if kind == "symmetric":
    c = _num_classes(config)
    return 0 <= value <= (c - 1) / c
  return 0 <= value < 1


def _noise_rate_text(config) -> str:
  kind = config.data.noise.kind
  if kind == "none":
    return ("0 with data.noise.kind='none' (for clean labels also pass "
            "--config.data.noise.rate=0; or set data.noise.kind='symmetric' or 'pair' to "
            "corrupt the training labels at this rate)")
  if kind == "matrix":
    return "0 with data.noise.kind='matrix' (the rates are the rows of data.noise.matrix)"
  if kind == "symmetric":
    c = _num_classes(config)
    return (f"a number in [0, {(c - 1) / c:g}] for symmetric noise over {c} classes (at "
            "(C-1)/C the noisy labels are uniform)")
  return "a number in [0, 1) for pair-flip noise"


def _noise_matrix_problem(value, config) -> Optional[str]:
  """Why ``value`` cannot be data.noise.matrix (None if it can)."""
  if config.data.noise.kind != "matrix":
    return None if value is None else "not used"
  if value is None:
    return "missing"
  try:
    data_lib.check_transition(value, _num_classes(config), name="the matrix")
  except ValueError as e:
    return str(e)
  return None


def _noise_matrix_text(config) -> str:
  problem = _noise_matrix_problem(get(config, "data.noise.matrix"), config)
  if config.data.noise.kind != "matrix":
    return "None unless data.noise.kind='matrix'"
  c = _num_classes(config)
  return (f"a row-stochastic {c} x {c} nested list, T[i][j] = P(noisy label j | true "
          f"class i), for data.noise.kind='matrix' ({(problem or '').rstrip('.')})")


def _imbalance_ratio_ok(value, config) -> bool:
  return value is None or (_is_number(value) and np.isfinite(value) and value >= 1)


def _config_type(hint) -> type:
  """The config type of an estimator setting: ``Optional[int]`` -> int; a callable -> str."""
  args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
  arg = args[0]
  if arg in (int, float, str, bool):
    return arg
  return str  # Literal names; callables (a reward) are named in a config


def estimator_config() -> ml_collections.ConfigDict:
  """``teach.estimator``: ``name`` plus one section per registered estimator with its defaults.

  Built from :data:`dlf_jax.estimators.ESTIMATORS`: every dataclass field of every
  estimator is a key (None defaults are typed placeholders, so the command line can
  set them), e.g. ``--config.teach.estimator.name=forward
  --config.teach.estimator.forward.chunk_steps=50``.
  """
  cfg = ml_collections.ConfigDict()
  cfg.name = "reverse"
  for name, cls in estimators.ESTIMATORS.items():
    hints = typing.get_type_hints(cls)
    section = ml_collections.ConfigDict()
    for f in dataclasses.fields(cls):
      section[f.name] = (
          config_dict.placeholder(_config_type(hints[f.name])) if f.default is None else f.default)
    cfg[name] = section
  return cfg


def estimator_settings(config: Config) -> tuple[str, dict]:
  """``(name, settings)`` of ``config.teach.estimator``.

  The settings are the chosen estimator's section as keyword arguments (a ``reward``
  is still its name here: see the builders).

  Raises:
    ConfigError: the estimator is not a sub-config (the old flat form), an unknown name,
      a section for an unknown estimator, or a key the chosen estimator does not take.
  """
  est = config.teach.estimator
  if not isinstance(est, ml_collections.ConfigDict):
    fail(
        "teach.estimator", est, f"a sub-config: set config.teach.estimator.name={est!r} "
        f"(one of {ESTIMATORS}) and its settings under config.teach.estimator.<name>")
  name = est.get("name")
  if name not in estimators.ESTIMATORS:
    fail("teach.estimator.name", name, f"one of {ESTIMATORS}")
  for key in est:
    if key != "name" and key not in estimators.ESTIMATORS:
      fail(f"teach.estimator.{key}",
           est[key].to_dict() if hasattr(est[key], "to_dict") else est[key],
           f"a section named after a registered estimator {ESTIMATORS}")
  fields = tuple(f.name for f in dataclasses.fields(estimators.ESTIMATORS[name]))
  section = est.get(name) or {}
  for key in section:
    if key not in fields:
      fail(f"teach.estimator.{name}.{key}", section[key],
           f"no such setting: estimator {name!r} takes {fields}")
  return name, dict(section)


@dataclasses.dataclass(frozen=True)
class EstimatorSection(Field):
  """``teach.estimator``: a registered name and settings the estimator accepts (it is built)."""

  def check(self, config: Config) -> None:
    name, settings = estimator_settings(config)
    reward = settings.get("reward")
    if reward is not None and reward not in REWARDS:
      fail(f"teach.estimator.{name}.reward", reward, f"None or one of {REWARDS}")
    settings = {k: v for k, v in settings.items() if k != "reward"}
    cls = estimators.ESTIMATORS[name]
    for key, value in settings.items():  # name the setting at fault where one is
      try:
        cls(**{key: value})
      except (ValueError, TypeError) as e:
        raise ConfigError(f"config.teach.estimator.{name}.{key}={value!r} is invalid: "
                          f"{e}") from None
    try:
      cls(**settings)
    except (ValueError, TypeError) as e:
      raise ConfigError(f"config.teach.estimator.{name} is invalid: {e}") from None

  def expected(self, config=None):
    return (f"name: one of {ESTIMATORS}; <name>.<setting>: the estimator's settings "
            "(dlf_jax.estimators)")


@dataclasses.dataclass(frozen=True)
class Moved(Field):
  """A key that moved: present in a config, it is an error naming the new key."""
  to: str = ""

  def check(self, config: Config) -> None:
    section, leaf = self.key.rsplit(".", 1)
    if leaf in get(config, section):
      raise ConfigError(f"config.{self.key} is no longer a key: set config.{self.to} "
                        f"(with config.teach.estimator.name={self.to.split('.')[2]!r}).")

  def expected(self, config=None):
    return f"absent (moved to {self.to})"


STUDENT = (
    Choice("student.optimizer", student_lib.OPTIMIZERS),
    Number("student.learning_rate", doc="peak learning rate"),
    Interval("student.momentum", doc="momentum / nesterov coefficient"),
    Number("student.weight_decay", positive=False),
    Int("student.batch_size"),
    Int("student.num_steps", doc="every student's run; also the teacher's total_steps"),
    Int("student.eval_every",
        doc="dev/test evaluation, checkpoint and the teacher's dev_acc refresh; keep it "
        "equal to teach.unroll_steps so the teacher sees the same dev_acc cadence while "
        "teaching and while training students"),
    Int("student.eval_batch_size"),
    Choice(
        "student.schedule",
        SCHEDULES,
        doc="step: multiply the learning rate by schedule_factor at each boundary; "
        "inverse_sqrt: linear warm-up over student.warmup_steps, then 1/sqrt(step)"),
    Rule(
        "student.schedule_boundaries",
        test=_boundaries,
        text="an increasing tuple of fractions of student.num_steps in (0, 1), "
        "e.g. (0.5, 0.75)"),
    Number("student.schedule_factor"),
)

TEACHER = (
    Choice(
        "teacher.kind",
        TEACHERS,
        doc="attention: the paper's Fig. 2 bank of num_matrices loss matrices; "
        "mlp: W_0 + Delta W(s) with hidden units"),
    Int("teacher.num_matrices"),
    Flag("teacher.per_class_bias", doc="a learned bias b_y per class"),
    Int("teacher.rank", doc="rank of a low_rank W"),
    Int("teacher.hidden", doc="hidden units of the mlp teacher"),
    Number("teacher.init_scale"),
    Names(
        "teacher.features",
        options=teacher_lib.STATE_FEATURES,
        doc="the state features s_t the teacher reads"),
    Interval("teacher.ema_decay", doc="running averages of the state features"),
    Choice(
        "teacher.link",
        losses.LINKS,
        doc="sigmoid: Eqn. 2; identity: W = I is exactly cross-entropy"),
    Choice(
        "teacher.anchor",
        TEACHER_ANCHORS,
        doc="the loss the teacher starts from; glc: forward correction with GLC's T^ "
        "from the cross-entropy student of config.seed (forward_correction teacher, "
        "label noise)"),
    Interval(
        "teacher.anchor_smoothing",
        note="(0 = cross-entropy)",
        doc="the eps of the label-smoothing anchor"),
    Rule(
        "teacher.anchor",
        test=_anchor_representable,
        text="'cross_entropy' for a diagonal/low-rank W (it cannot represent label "
        "smoothing), or set teacher.parameterisation='soft_target'"),
)

TEACH = (
    Choice("teach.mode", TEACH_MODES, doc="Algorithm 1: episodes or online"),
    Int("teach.unroll_steps", doc="T, the unrolled student steps per teacher update"),
    Int("teach.num_episodes"),
    Int("teach.dev_batch_size"),
    Int("teach.segments_per_episode",
        optional=True,
        doc="None: 1 for episodes, (num_steps - pretrain_steps) // T for online"),
    Int("teach.dev_sample_size",
        optional=True,
        doc="dev examples drawn per outer step (None: the whole dev set)"),
    Int("teach.pretrain_steps",
        minimum=0,
        doc="cross-entropy warm start of every taught student; the l2t_dlf students get "
        "the same warm start, then the frozen teacher"),
    Rule(
        "teach.pretrain_steps",
        test=_leaves_steps_to_teach,
        text=_leaves_steps_to_teach_text,
        doc="teach.pretrain_steps < student.num_steps"),
    Rule(
        "teach.unroll_steps",
        test=_fits_run,
        text=_fits_run_text,
        doc="teach.pretrain_steps + teach.unroll_steps <= student.num_steps"),
    Choice("teach.optimizer", TEACHER_OPTIMIZERS, doc="the optimizer of theta"),
    Number("teach.learning_rate", doc="the learning rate of theta"),
    *(Moved(old, to=new) for old, new in MOVED_KEYS.items()),
    EstimatorSection(
        "teach.estimator",
        doc="the hypergradient estimator: name (reverse: Eqns. 3-5, with method, memory, "
        "checkpoint_every; forward: forward mode, exact, memory flat in T, for small "
        "teachers, with chunk_steps (T is streamed from the host in chunks of this "
        "many) and max_params; es: antithetic evolution strategies, pes: persistent "
        "ES across an episode, with population, sigma, reward, chunk_size) and one "
        "section of settings per estimator, e.g. teach.estimator.reverse.memory"),
)


def _grid(low: float, high: Optional[float]):
  """A tuple of distinct numbers in ``[low, high)`` (``high`` None: no upper bound)."""

  def test(value, config) -> bool:
    return (isinstance(value, (tuple, list)) and len(set(value)) == len(value) and
            all(_is_number(v) and v >= low and (high is None or v < high) for v in value))

  return test


def _uses_noise(config) -> bool:
  return config.data.noise.kind != "none"


DATA_BASELINES = (
    Number(
        "baselines.logit_tau",
        positive=False,
        doc="logit adjustment's tau (Menon et al. 2021; 0: cross-entropy)"),
    Interval("baselines.cb_beta", doc="class-balanced beta (Cui et al. 2019; 0: cross-entropy)"),
    Rule(
        "baselines.logit_tau_grid",
        test=_grid(0.0, None),
        text="a tuple of distinct numbers >= 0, e.g. (0.5, 1.0, 1.5); () for none",
        doc="logit_adjusted's tau, tuned on the validation split (one student per value "
        "and selection seed); (): baselines.logit_tau as given"),
    Rule(
        "baselines.cb_beta_grid",
        test=_grid(0.0, 1.0),
        text="a tuple of distinct numbers in [0, 1), e.g. (0.99, 0.999, 0.9999); () for none",
        doc="class_balanced's beta, tuned on the validation split; (): baselines.cb_beta"),
    *(Rule(
        f"baselines.{grid}",
        test=lambda v, c: not v or bool(c.data.val_size),
        text="(), or set data.val_size (the validation split that tunes it)")
      for grid in ("logit_tau_grid", "cb_beta_grid")),
)

BASELINES = (
    Interval("baselines.smoothing", doc="label smoothing eps"),
    Int("baselines.margin", doc="L-Softmax m"),
    *(Number(
        f"baselines.{k}",
        positive=False,
        doc="L-Softmax annealing beta_t = max(beta_min, beta (1 + beta_gamma t)"
        "^-beta_power)") for k in ("beta", "beta_min", "beta_gamma", "beta_power")),
)

RUN = (
    Flag("progress", doc="tqdm progress bars"),
    Int("num_seeds", doc="students per method: seeds seed .. seed + num_seeds - 1"),
    Int("seed", minimum=0, doc="the first student's seed; also the teacher's"),
    Flag(
        "data_parallel",
        doc="split every batch over all devices when there is more than one (batch sizes "
        "must be multiples of the device count)"),
)

CLASSIFICATION = (
    Choice("data.name", data_lib.DATASETS),
    Choice(
        "data.source", data_lib.SOURCES,
        doc="where the images come from (see dlf_jax.data.images)"),
    Text(
        "data.data_dir",
        optional=True,
        doc="None: $DLF_DATA_DIR or ../shared/data next to the project"),
    Choice("data.dev_split", ("random", "tail")),
    Int("data.dev_size", optional=True, doc="None: the dataset's default"),
    Int("data.train_size", optional=True, doc="None: all"),
    Int("data.test_size", optional=True, doc="None: all"),
    Int("data.seed", minimum=0, doc="the dev carve and subsampling; fixed across student seeds"),
    Int("data.val_size",
        minimum=0,
        optional=True,
        doc="None or 0: no validation split; else that many training examples form a "
        "validation split, disjoint from dev and test, that selects the teacher"),
    Choice(
        "data.augment",
        data_lib.AUGMENTATIONS,
        doc="crop_flip: 4-pixel pad + random crop + horizontal flip, on device"),
    Choice(
        "data.noise.kind",
        NOISE_KINDS,
        doc="label noise on the training split only (dev, val, test stay clean): "
        "none; symmetric: T = (1 - r) I + r / (C - 1) (11^T - I); pair: a label "
        "of class i becomes (i + 1) mod C with probability r; matrix: any "
        "row-stochastic T (data.noise.matrix). The realised T and rate are "
        "written to label_noise.json"),
    Rule(
        "data.noise.rate",
        test=_noise_rate_ok,
        text=_noise_rate_text,
        doc="r of symmetric ([0, (C-1)/C]) or pair ([0, 1)) noise; 0 otherwise"),
    Rule(
        "data.noise.matrix",
        test=lambda v, c: _noise_matrix_problem(v, c) is None,
        text=_noise_matrix_text,
        doc="T[i][j] = P(noisy j | true i) as a nested list, for kind='matrix' only"),
    Int("data.noise.seed", minimum=0, doc="seeds the noisy labels' draw"),
    Rule(
        "data.imbalance.ratio",
        test=_imbalance_ratio_ok,
        text="None (the training split as loaded) or a number >= 1 (n_head / n_tail)",
        doc="a long-tailed training split: n_i = n_max rho^(-i/(C-1)) examples of class "
        "i (Cao et al. 2019), n_max = the rarest class's count; applied before the "
        "noise; dev, val and test stay as loaded. Report balanced error"),
    Int("data.imbalance.seed", minimum=0, doc="seeds which examples the long tail keeps"),
    Choice("model.name", MODELS),
    Rule(
        "model.hidden",
        test=_widths,
        text="a non-empty tuple of integer widths >= 1",
        doc="MLP widths"),
    Int("model.width", doc="ConvBN channels; the first ResNet stage"),
    Int("model.depth"),
    Int("model.widen", doc="WRN k"),
    Choice(
        "model.conv_impl",
        models.layers.CONV_IMPLS,
        doc="auto: im2col on CPU (see dlf_jax.models.layers)"),
    Rule(
        "model.depth",
        when=lambda c: c.model.name == "resnet",
        test=lambda v, c: v >= 8 and not (v - 2) % 6,
        text="6n+2 for a CIFAR ResNet (8, 20, 32, 44, 56, 110)"),
    Rule(
        "model.depth",
        when=lambda c: c.model.name == "wrn",
        test=lambda v, c: v >= 10 and not (v - 4) % 6,
        text="6n+4 for a Wide ResNet (10, 16, 22, 28, 40)"),
    *STUDENT,
    Choice("teacher.parameterisation", losses.PARAMETERISATIONS, doc="the structure of W"),
    Choice(
        "teacher.target", losses.TARGETS, doc="the soft targets of parameterisation='soft_target'"),
    Choice(
        "teacher.recipe",
        RECIPES,
        doc="config: the keys above; paper: Eqn. 2 as the paper writes it -- full W, "
        "sigmoid link, cross-entropy anchor, expected dev accuracy -- whatever "
        "they say"),
    *TEACHER,
    *TEACH,
    Choice("teach.measure", MEASURES, doc="the teacher's reward on the dev split"),
    Number("teach.measure_k", doc="the steepness k of sigmoid_error"),
    Flag(
        "teach.select",
        doc="after teaching, the untaught anchor and the taught teacher each train two "
        "fresh students and the lower validation error wins"),
    Rule(
        "teach.select",
        test=lambda v, c: not v or bool(c.data.val_size),
        text="False, or set data.val_size (the validation split that selects the teacher)"),
    Names(
        "methods",
        options=METHODS,
        nonempty=True,
        distinct=True,
        doc="the students to train: large_margin is L-Softmax; sigmoid_cross_entropy is "
        "Eqn. 2 with W = I, b = 0 (the untaught paper teacher); glc: forward "
        "correction with GLC's T^ (from the same seed's cross-entropy student and the "
        "clean dev set); forward_oracle: forward correction with the true T (an "
        "oracle); logit_adjusted, class_balanced: for long tails; l2t_dlf uses the "
        "frozen learned teacher; l2t_dlf_anchor, its control: the same students with "
        "the teacher's untaught anchor (no outer step)"),
    Rule(
        "methods",
        test=lambda v, c: _uses_noise(c) or not set(v) & set(corrections.NOISE_METHODS),
        text=lambda c: (f"no method of {corrections.NOISE_METHODS} with "
                        "data.noise.kind='none' (they correct label noise: set "
                        "data.noise.kind to 'symmetric', 'pair' or 'matrix', or drop them)"),
        doc="glc and forward_oracle need label noise"),
    Rule(
        "teacher.anchor",
        test=lambda v, c: v != "glc" or
        (_is_forward_correction(c.teacher.parameterisation) and _uses_noise(c)),
        text="'glc' only with teacher.parameterisation='forward_correction' and label "
        "noise (data.noise.kind != 'none'): GLC's T^ is a forward-correction matrix",
        doc="glc: forward_correction teacher, noisy labels"),
    *BASELINES,
    *DATA_BASELINES,
    *RUN,
)


def val_split(config: Config) -> Optional[str]:
  """A translation config's validation split: ``config.data.val_split``.

  None, '' and 'None' (what the command line gives for
  ``--config.data.val_split=None``) are None.
  """
  v = config.data.val_split
  return None if v in (None, "", "None") else v


def has_val_split(config: Config) -> bool:
  """True if the translation config has a validation split (:func:`val_split`)."""
  return val_split(config) is not None


def _smoothing_grid(value, config) -> bool:
  return (isinstance(value, (tuple, list)) and len(set(value)) == len(value) and all(
      isinstance(e, (int, float)) and not isinstance(e, bool) and 0 <= e < 1 for e in value))


def _divides_block(value, config) -> bool:
  block = config.data.block
  return not (block % value and value % block)


def _multiple_of_segment(value, config) -> bool:
  return not value % min(config.data.block, config.teach.unroll_steps)


def _multiple_of_segment_text(config) -> str:
  return (f"a multiple of min(data.block, teach.unroll_steps)="
          f"{min(config.data.block, config.teach.unroll_steps)}")


TRANSLATION = (
    Choice("data.name", translation_lib.CORPORA),
    Choice("data.variant", ("raw", "tok"), doc="Multi30k: raw or tokenised text"),
    Text(
        "data.data_dir",
        optional=True,
        doc="IWSLT14: the directory with train/valid/test.{de,en}; Multi30k: the one "
        "holding multi30k/ (None: $DLF_DATA_DIR or ../shared/data)"),
    Text("data.src_lang"),
    Text("data.tgt_lang"),
    Int("data.vocab_size", doc="sentencepiece BPE pieces"),
    Int("data.max_src_len",
        minimum=2,
        doc="pieces incl. EOS; longer training pairs are dropped, dev/test sources "
        "truncated"),
    Int("data.max_tgt_len", minimum=2),
    Int("data.block", doc="batches per length bucket; scans never mix buckets"),
    Int("data.pad_multiple"),
    *(Int(f"data.{k}", optional=True, doc="None: all")
      for k in ("train_size", "dev_size", "test_size", "val_size")),
    Text(
        "data.val_split",
        optional=True,
        doc="the file stem of a held-out split that selects the teacher (Multi30k: "
        "test_2017_flickr); None, '' or 'None' (on the command line): no validation "
        "split"),
    Choice("model.name", NMT_MODELS),
    *(Int(f"model.{k}")
      for k in ("d_model", "num_heads", "d_ff", "num_layers", "embed_dim", "hidden")),
    Interval("model.dropout"),
    Rule(
        "model.num_heads",
        test=lambda v, c: not c.model.d_model % v,
        text=lambda c: f"a divisor of model.d_model={c.model.d_model}",
        doc="divides model.d_model"),
    Flag("data.joint_vocab", doc="one sentencepiece model for both languages"),
    Flag("model.shared_embeddings", doc="one table for source, target and output embeddings"),
    Rule(
        "model.shared_embeddings",
        test=lambda v, c: not v or c.data.joint_vocab,
        text="False when data.joint_vocab=False (one embedding needs one vocabulary)"),
    *STUDENT,
    Int("student.warmup_steps", doc="the warm-up of schedule='inverse_sqrt'"),
    Interval("student.b2", doc="Adam's beta2"),
    Choice(
        "teacher.parameterisation",
        VOCABULARY_FORMS,
        text=f"one of {VOCABULARY_FORMS} (a full W over the vocabulary is "
        "|V| x |V|: too large for translation)"),
    Choice(
        "teacher.target",
        ("uniform", "shared"),  # 'class' is |V| x |V| too
        when=lambda c: has_soft_targets(c.teacher.parameterisation)),
    Choice("teacher.recipe", ("config",)),
    *TEACHER,
    Rule(
        "teacher.anchor",
        test=lambda v, c: v != "glc",
        text="'cross_entropy' or 'label_smoothing' (GLC's estimate of T is for image "
        "classification with label noise)"),
    *TEACH,
    Choice(
        "teach.measure",
        NMT_MEASURES,
        doc="expected_bleu: expected sentence BLEU over num_candidates samples at "
        "temperature; expected_accuracy: token level, cheaper"),
    Flag(
        "teach.select",
        doc="after teaching, students of the untaught anchor (method l2t_dlf_anchor) and "
        "of the taught teacher translate the validation split; the higher mean BLEU "
        "is reported as L2T-DLF"),
    Rule(
        "teach.select",
        test=lambda v, c: not v or has_val_split(c),
        text="False, or set data.val_split (the validation split that selects the teacher)"),
    Int("teach.num_candidates"),
    Number("teach.temperature"),
    Rule(
        "teach.unroll_steps",
        test=_divides_block,
        text=lambda c: f"a divisor or multiple of data.block={c.data.block} (one padded "
        "width per unrolled segment)",
        doc="a divisor or multiple of data.block"),
    *(Rule(
        key,
        test=_multiple_of_segment,
        text=_multiple_of_segment_text,
        doc="a multiple of min(data.block, teach.unroll_steps)")
      for key in ("student.eval_every", "teach.pretrain_steps")),
    Names("methods", options=NMT_METHODS, nonempty=True, distinct=True),
    Rule(
        "baselines.smoothing_grid",
        test=_smoothing_grid,
        text="a tuple of distinct eps in [0, 1), e.g. (0.05, 0.1, 0.2); () for none",
        doc="label smoothing's eps, tuned on the validation split (one student per eps; "
        "the winner is the baseline and the teacher's anchor); (): "
        "baselines.smoothing as given"),
    Rule(
        "baselines.smoothing_grid",
        test=lambda v, c: not v or has_val_split(c),
        text="(), or set data.val_split (the validation split that tunes eps)"),
    Int("eval.beam_size"),
    Int("eval.batch_size", doc="sentences per decoding batch"),
    Number("eval.alpha", positive=False, doc="the GNMT length penalty of beam search"),
    Flag("eval.lowercase_tokenized", doc="lowercase before the tokenised BLEU"),
    *BASELINES,
    *RUN,
)


def validate(config: Config, schema: Sequence[Field]) -> None:
  """Checks ``config`` against every entry of ``schema``, in order.

  Raises:
    ConfigError: (a ValueError) naming the first offending key, its value and the valid
      values.
    KeyError: a key of the schema is missing from ``config``.
  """
  for field in schema:
    field.check(config)


def describe(schema: Sequence[Field] = CLASSIFICATION) -> str:
  """The schema as text: one line per check, ``key: valid values -- meaning``."""
  lines = []
  for field in schema:
    cond = " (where it applies)" if field.when is not None else ""
    doc = f" -- {field.doc}" if field.doc else ""
    lines.append(f"{field.key}: {field.expected()}{cond}{doc}")
  return "\n".join(lines)
