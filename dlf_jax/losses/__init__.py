"""Losses: the parametric loss of Eqn. (2), its family of forms, and the baselines.

* :mod:`dlf_jax.losses.family` -- Eqn. (2), ``link(-log(p)^T W e_y + b_y)``, with one
  ``flax.struct`` pytree class per form of ``W`` (:class:`FullW`, :class:`DiagonalW`,
  :class:`LowRankW`, :class:`SoftTargetW`) chosen by name from :data:`FORMS`; the
  anchors (cross-entropy, label smoothing) and what a teacher module needs to build
  any form without branching on it (:class:`TeacherSpec`, ``raw_params``, ``mix``,
  ``from_raw``).
* :mod:`dlf_jax.losses.baselines` -- fixed losses (cross-entropy, label smoothing,
  Large-Margin Softmax, sigmoid cross-entropy) as
  :class:`~dlf_jax.contracts.LossProvider` classes, chosen by name from
  :data:`BASELINES` (:func:`baseline_loss`).
* :mod:`dlf_jax.losses.core` -- label/mask checks, the masked mean, the links.

Every loss takes an optional ``mask`` (``1`` for real examples / tokens, ``0``
for padding) and returns the masked mean over all leading axes.
"""
from dlf_jax.losses.baselines import (BASELINES, ClassBalancedLoss, CrossEntropyLoss, FixedLoss,
                                      ForwardCorrectionLoss, LabelSmoothingLoss, LargeMarginLoss,
                                      LogitAdjustedLoss, class_balanced_weights,
                                      SigmoidCrossEntropyLoss, baseline_loss, cross_entropy,
                                      label_smoothing, large_margin_logits, large_margin_softmax)
from dlf_jax.losses.core import LINKS, apply_link, check_labels, masked_mean
from dlf_jax.losses.family import (ANCHORS, CE_ANCHOR_EPS, EPS_MAX, FORMS, PARAMETERISATIONS,
                                   TARGETS, DiagonalW, ForwardCorrectionW, FullW, LogitOffsetW,
                                   LossForm, LowRankW, RawParam, SoftTargetW, WeightedSoftTargetW,
                                   TeacherSpec, anchor_loss_params, bilinear_score, dense_w, form,
                                   identity_loss_params, parametric_loss, phi_statistics,
                                   soft_target_params)

__all__ = [
    # Eqn. (2) and its forms
    "LossForm",
    "FullW",
    "DiagonalW",
    "LowRankW",
    "SoftTargetW",
    "WeightedSoftTargetW",
    "ForwardCorrectionW",
    "LogitOffsetW",
    "FORMS",
    "form",
    "PARAMETERISATIONS",
    "LINKS",
    "TARGETS",
    "ANCHORS",
    "CE_ANCHOR_EPS",
    "EPS_MAX",
    "TeacherSpec",
    "RawParam",
    "parametric_loss",
    "identity_loss_params",
    "anchor_loss_params",
    "soft_target_params",
    "dense_w",
    "bilinear_score",
    "phi_statistics",
    "apply_link",
    # baselines
    "cross_entropy",
    "label_smoothing",
    "large_margin_logits",
    "large_margin_softmax",
    "FixedLoss",
    "CrossEntropyLoss",
    "LabelSmoothingLoss",
    "LargeMarginLoss",
    "SigmoidCrossEntropyLoss",
    "BASELINES",
    "baseline_loss",
    "ForwardCorrectionLoss",
    "LogitAdjustedLoss",
    "ClassBalancedLoss",
    "class_balanced_weights",
    # shared
    "masked_mean",
    "check_labels",
]
