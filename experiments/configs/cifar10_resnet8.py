"""CIFAR-10, ResNet-8 student; the paper's CIFAR-10 ResNet-8 row.

Recipe, runtimes and variants: :mod:`experiments.configs.cifar`. Paper target
(test error %, cross-entropy -> L2T-DLF): 12.45 -> 10.82.

Commands::

  python -m experiments.main --config=experiments/configs/cifar10_resnet8.py \\
      --workdir=runs/cifar10_resnet8
  python -m experiments.main --config=experiments/configs/cifar10_resnet8.py:cpu \\
      --workdir=runs/cifar10_resnet8_cpu
  python -m experiments.main --config=experiments/configs/cifar10_resnet8.py:smoke \\
      --workdir=/tmp/smoke
"""
from experiments.configs import cifar


def get_config(arg=None):
  """``arg``: None (the paper's schedule), ``'cpu'`` or ``'smoke'``."""
  return cifar.cifar_config("cifar10", "resnet", 8, arg=arg)
