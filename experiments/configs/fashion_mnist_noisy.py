"""Fashion-MNIST MLP on corrupted training labels, taught from a small clean dev set.

The noisy-label protocol of ``mnist_noisy.py`` (:mod:`experiments.configs.label_corruption`:
the same rows, variants and seeds) on Fashion-MNIST at MNIST-noisy's scale: 9,000 random
training images of the 60,000 (val 1,000 carved from them: train 8,000), a trusted dev
set of 1,000 more, the real 10k test set; MLP 784-500-300-10, plain SGD lr 0.1, batch 128,
5,000 steps; the default recipe's teacher (soft-target W, identity link, label-smoothing
anchor with eps = 0.05 as selected on clean validation data for this dataset, dev
cross-entropy reward, online T = 200), selected on the clean val split.

Variants: None (pair-flip 40 %), ``:sym60`` (symmetric 60 %), ``:lt`` (rho = 100),
``:glc`` (the GLC-anchored forward-correction teacher), each with ``_smoke``; ``:smoke``.

Command::

  python -m experiments.main --config=experiments/configs/fashion_mnist_noisy.py \\
      --workdir=runs/fashion_noisy

Expected runtime on 2 CPU cores: ~30 min (30 students of ~40 s, ~4 min of teaching; as
``mnist_noisy.py``). GPU: not measured. Not yet measured here (RESULTS.md says so).
"""
from experiments.configs import common
from experiments.configs import fashion_mnist_mlp
from experiments.configs import label_corruption
from experiments.configs import mnist_mlp

VARIANTS = label_corruption.VARIANTS


def _clean():
  config = mnist_mlp.get_config()  # the MNIST-noisy protocol: model, steps, teaching
  config.data.name = "fashion_mnist"
  config.data.source = "files"
  config.data.dev_split = "random"
  config.data.dev_size = 1000
  config.data.train_size = 9000  # val (1,000) is carved from these: train 8,000
  config.data.val_size = 1000
  config.baselines.smoothing = fashion_mnist_mlp.SMOOTHING  # eps selected on clean val
  config.teacher.anchor_smoothing = fashion_mnist_mlp.SMOOTHING
  return config


def _smoke():
  return common.smoke(_clean())


def get_config(arg=None):
  """``arg``: None (pair-flip 40 %), ``'sym60'``, ``'lt'``, ``'glc'``, each with ``_smoke``;
  or ``'smoke'``."""
  return label_corruption.corrupted("fashion_mnist_noisy", _clean, _smoke, arg)
