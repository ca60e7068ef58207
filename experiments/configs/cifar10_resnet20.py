"""CIFAR-10, ResNet-20 student; the paper's CIFAR-10 ResNet-20 row.

Recipe, runtimes and variants: :mod:`experiments.configs.cifar`. Paper target
(test error %, cross-entropy -> L2T-DLF): 8.75 -> 7.63.

Commands::

  python -m experiments.main --config=experiments/configs/cifar10_resnet20.py \\
      --workdir=runs/cifar10_resnet20
  python -m experiments.main --config=experiments/configs/cifar10_resnet20.py:cpu \\
      --workdir=runs/cifar10_resnet20_cpu
  python -m experiments.main --config=experiments/configs/cifar10_resnet20.py:smoke \\
      --workdir=/tmp/smoke
"""
from experiments.configs import cifar


def get_config(arg=None):
  """``arg``: None (the paper's schedule), ``'cpu'`` or ``'smoke'``."""
  return cifar.cifar_config("cifar10", "resnet", 20, arg=arg)
