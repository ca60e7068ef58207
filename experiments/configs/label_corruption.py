"""The noisy-label and long-tail variants shared by the ``*_noisy.py`` configs.

A clean image config becomes the protocol of noisy-label training (RESULTS.md):
the training labels are corrupted after the dev and val splits are carved, so that
the small dev set (the teacher's reward) and the val set (selection) stay trusted,
and every table holds the same rows on the same seeds:

* noise: cross-entropy, label smoothing, GLC (forward correction with T^ from the
  trusted dev set), forward correction with the true T (an oracle), the teacher's
  untaught anchor (the control) and the taught teacher (L2T-DLF);
* long tail: cross-entropy, label smoothing, logit adjustment, class-balanced
  cross-entropy, the untaught anchor and L2T-DLF (balanced errors lead).

Variants (``arg``): None, pair-flip 40 %; ``'sym60'``, symmetric 60 %; ``'lt'``, a
long-tailed training split (rho = 100, Cao et al. 2019); ``'glc'``, pair-flip 40 %
with a forward-correction teacher that starts at GLC's T^; each with ``_smoke``
(``'smoke'`` alone: pair-flip 40 % with the fewest rows).
"""
from __future__ import annotations

from typing import Callable, Optional

from ml_collections import config_dict

KINDS = ("sym60", "lt", "glc")
VARIANTS = ("smoke",) + KINDS + tuple(f"{k}_smoke" for k in KINDS)
NOISE_METHODS = ("cross_entropy", "label_smoothing", "glc", "forward_oracle", "l2t_dlf_anchor",
                 "l2t_dlf")
LONG_TAIL_METHODS = ("cross_entropy", "label_smoothing", "logit_adjusted", "class_balanced",
                     "l2t_dlf_anchor", "l2t_dlf")
SMOKE_METHODS = ("cross_entropy", "label_smoothing", "l2t_dlf_anchor", "l2t_dlf")

ConfigFn = Callable[[], config_dict.ConfigDict]


def corrupted(name: str,
              clean: ConfigFn,
              smoke: ConfigFn,
              arg: Optional[str],
              *,
              num_seeds: int = 5,
              lt_smoke_ratio: float = 10.0) -> config_dict.ConfigDict:
  """The variant ``arg`` of a clean config (see the module docstring).

  Args:
    name: the config's name, for the error message.
    clean: builds the clean full-size config (dev and val sizes set: the trusted sets).
    smoke: builds the clean smoke config.
    arg: None or one of :data:`VARIANTS`.
    num_seeds: students per method of the full-size variants (the smoke ones: 1).
    lt_smoke_ratio: rho of ``'lt_smoke'`` (a smoke split leaves too few digits for 100).

  Returns:
    The config (unlocked).

  Raises:
    ValueError: an unknown ``arg``.
  """
  if arg is not None and arg not in VARIANTS:
    raise ValueError(f"Unknown {name} variant {arg!r}; use one of {VARIANTS} or nothing.")
  is_smoke = arg is not None and (arg == "smoke" or arg.endswith("_smoke"))
  kind = None if arg in (None, "smoke") else arg.removesuffix("_smoke")
  config = smoke() if is_smoke else clean()
  config.num_seeds = 1 if is_smoke else num_seeds
  if kind == "lt":
    config.data.imbalance.ratio = lt_smoke_ratio if is_smoke else 100.0
    config.data.imbalance.seed = 0
    config.methods = LONG_TAIL_METHODS
  else:
    config.data.noise.kind, config.data.noise.rate = (("symmetric", 0.6) if kind == "sym60" else
                                                      ("pair", 0.4))
    config.data.noise.seed = 0
    config.methods = NOISE_METHODS
  if kind == "glc":
    # A forward-correction teacher (T outside the log) that starts at GLC's T^.
    config.teacher.parameterisation = "forward_correction"
    config.teacher.anchor = "glc"
    # No cross-entropy warm start: every L2T-DLF student, taught or not, trains with the
    # correction from step 0, so the untaught anchor *is* GLC (RESULTS.md, "Noisy labels").
    config.teach.pretrain_steps = 0
  if arg == "smoke":
    config.methods = SMOKE_METHODS
  return config
