"""CIFAR-100, ResNet-8 student; the paper's CIFAR-100 ResNet-8 row.

Recipe, runtimes and variants: :mod:`experiments.configs.cifar`. Paper target
(test error %, cross-entropy -> L2T-DLF): 39.79 -> 38.27.

Commands::

  python -m experiments.main --config=experiments/configs/cifar100_resnet8.py \\
      --workdir=runs/cifar100_resnet8
  python -m experiments.main --config=experiments/configs/cifar100_resnet8.py:cpu \\
      --workdir=runs/cifar100_resnet8_cpu
  python -m experiments.main --config=experiments/configs/cifar100_resnet8.py:smoke \\
      --workdir=/tmp/smoke
"""
from experiments.configs import cifar


def get_config(arg=None):
  """``arg``: None (the paper's schedule), ``'cpu'`` or ``'smoke'``."""
  return cifar.cifar_config("cifar100", "resnet", 8, arg=arg)
