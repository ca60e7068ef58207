"""CIFAR-10 ResNet-8 (the reduced ``:cpu`` schedule) on corrupted training labels.

The noisy-label protocol of ``mnist_noisy.py`` (:mod:`experiments.configs.label_corruption`:
the same rows and variants) on ``cifar10_resnet8.py:cpu`` (ResNet-8, momentum SGD with
the step schedule, crop-and-flip augmentation, 2,000 steps of batch 64, online T = 25),
with a trusted dev set of 1,000 images (the teacher's reward and GLC's T^) and a clean
val split of 1,000 (selects the teacher), 2 seeds.

Variants: None (pair-flip 40 %), ``:sym60`` (symmetric 60 %), ``:lt`` (rho = 100),
``:glc`` (the GLC-anchored forward-correction teacher), each with ``_smoke``; ``:smoke``.

Command::

  python -m experiments.main --config=experiments/configs/cifar10_noisy.py \\
      --workdir=runs/cifar10_noisy

Expected runtime on 2 CPU cores: ~1.5 h (12 students of ~3.5 min, ~20 min of teaching,
as ``cifar10_resnet8.py:cpu``). GPU: not measured. Not yet measured here (RESULTS.md).
"""
from experiments.configs import cifar10_resnet8
from experiments.configs import label_corruption

VARIANTS = label_corruption.VARIANTS


def _clean():
  config = cifar10_resnet8.get_config("cpu")
  config.data.dev_size = 1000
  config.data.val_size = 1000
  config.teach.dev_sample_size = 500
  config.teach.select = True
  return config


def _smoke():
  config = cifar10_resnet8.get_config("smoke")
  config.data.val_size = 64
  config.teach.select = True
  return config


def get_config(arg=None):
  """``arg``: None (pair-flip 40 %), ``'sym60'``, ``'lt'``, ``'glc'``, each with ``_smoke``;
  or ``'smoke'``."""
  return label_corruption.corrupted("cifar10_noisy", _clean, _smoke, arg, num_seeds=2)
