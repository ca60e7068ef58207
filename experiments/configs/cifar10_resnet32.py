"""CIFAR-10, ResNet-32 student; the paper's CIFAR-10 ResNet-32 row.

Recipe, runtimes and variants: :mod:`experiments.configs.cifar`. Paper target
(test error %, cross-entropy -> L2T-DLF): 7.51 -> ~7.0.

Commands::

  python -m experiments.main --config=experiments/configs/cifar10_resnet32.py \\
      --workdir=runs/cifar10_resnet32
  python -m experiments.main --config=experiments/configs/cifar10_resnet32.py:cpu \\
      --workdir=runs/cifar10_resnet32_cpu
  python -m experiments.main --config=experiments/configs/cifar10_resnet32.py:smoke \\
      --workdir=/tmp/smoke
"""
from experiments.configs import cifar


def get_config(arg=None):
  """``arg``: None (the paper's schedule), ``'cpu'`` or ``'smoke'``."""
  return cifar.cifar_config("cifar10", "resnet", 32, arg=arg)
