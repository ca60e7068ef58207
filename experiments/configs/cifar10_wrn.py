"""CIFAR-10, Wide ResNet student: WRN-28-10 (the paper's row); WRN-16-4 in ``:cpu``.

Recipe, runtimes and variants: :mod:`experiments.configs.cifar`. The paper reports a
WRN row (its values are not reproduced here; WRN-28-10 cross-entropy is ~4% error in
Zagoruyko & Komodakis, 2016). WRN-28-10 (36.5M parameters) is a
GPU model; the ``:cpu`` variant uses WRN-16-4 (2.7M).

Commands::

  python -m experiments.main --config=experiments/configs/cifar10_wrn.py \\
      --workdir=runs/cifar10_wrn
  python -m experiments.main --config=experiments/configs/cifar10_wrn.py:cpu \\
      --workdir=runs/cifar10_wrn_cpu
  python -m experiments.main --config=experiments/configs/cifar10_wrn.py:smoke \\
      --workdir=/tmp/smoke
"""
from experiments.configs import cifar


def get_config(arg=None):
  """``arg``: None (WRN-28-10, the paper's schedule), ``'cpu'`` (WRN-16-4) or ``'smoke'``."""
  return cifar.cifar_config("cifar10", "wrn", 28, widen=10, arg=arg)
