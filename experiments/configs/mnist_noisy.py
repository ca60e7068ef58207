"""MNIST MLP on corrupted training labels, taught from a small clean dev set (not in the paper).

Where a learned loss has something to learn (PAPER.md Sec. 7): the training labels carry
structure that a small *trusted* dev set knows better. Data and protocol as
``mnist_mlp.py`` (the first 10,000 MNIST training digits: train 8,000 / dev 1,000, the
last 1,000 / val 1,000 random others / the real 10k test set; MLP 784-500-300-10, plain
SGD lr 0.1, batch 128, 5,000 steps; the default recipe's soft-target, identity-link
teacher anchored at label smoothing, rewarded by the dev cross-entropy, online with
T = 200; the validation split picks the untaught anchor or the taught teacher), except:

* default: **pair-flip noise at 40 %** on the 8,000 training labels only (``y -> (y + 1)
  mod 10`` with probability 0.4, seeded by ``data.noise.seed``); dev, val and test are
  clean. The realised noise matrix and rate are in ``label_noise.json`` (and under
  ``data.label_noise`` of ``results.json``); the true training labels are kept beside the
  noisy ones but never trained on.
* ``:lt``: clean labels, a **long-tailed** training split instead (Cao et al. 2019's
  exponential profile, imbalance ratio rho = 100: n_i = n_max 100^(-i/9), n_max = the
  rarest class's count in the 8,000: 693 down to 6 digits, 1,716 in all); dev, val and test
  as loaded (MNIST's near-uniform classes). The tables lead with the balanced test
  error (``1 - test_balanced_accuracy``), the plain error beside it, and the validation
  split selects by the balanced error (``experiments.splits.headline_metric``).
* ``:smoke`` / ``:lt_smoke``: seconds-long checks of both on the embedded digits
  (pair flip 40 %; rho = 10).

Command::

  python -m experiments.main --config=experiments/configs/mnist_noisy.py \\
      --workdir=/tmp/dlf_mnist_noisy
  python -m experiments.main --config=experiments/configs/mnist_noisy.py:lt \\
      --workdir=/tmp/dlf_mnist_lt
  # tiny end-to-end check (seconds):
  python -m experiments.main --config=experiments/configs/mnist_noisy.py:smoke \\
      --workdir=/tmp/dlf_mnist_noisy_smoke

Expected runtime on 2 CPU cores: ~15 min, as ``mnist_mlp.py`` (the same model, steps and
teaching; ``:lt`` trains on fewer examples, not fewer steps). GPU: not measured.
Expected (PAPER.md Sec. 7's probe of this setting, 3 seeds, test error %, before the
teacher selection): cross-entropy 40.4, label smoothing 40.3, untaught anchor 40.6,
taught 36.2. Label smoothing's eps (0.2) is the one selected on *clean* labels
(``mnist_mlp.py``), not re-tuned here.
"""
from experiments.configs import common
from experiments.configs import mnist_mlp

VARIANTS = ("smoke", "lt", "lt_smoke")


def get_config(arg=None):
  """``arg``: None (pair-flip 40 %), ``'lt'`` (rho = 100), ``'smoke'`` / ``'lt_smoke'``."""
  if arg is not None and arg not in VARIANTS:
    raise ValueError(f"Unknown mnist_noisy variant {arg!r}; use one of {VARIANTS} or "
                     "nothing.")
  config = mnist_mlp.get_config()
  if arg in ("lt", "lt_smoke"):
    config.data.imbalance.ratio = 100.0
    config.data.imbalance.seed = 0
  else:
    config.data.noise.kind = "pair"
    config.data.noise.rate = 0.4
    config.data.noise.seed = 0
  if arg in ("smoke", "lt_smoke"):
    config = common.smoke(config)
    config.data.name = "embedded_mnist"   # ships with the package: no data files needed
    config.data.source = "embedded"
    config.data.dev_split = "random"
    config.methods = ("cross_entropy", "label_smoothing", "l2t_dlf")
    if arg == "lt_smoke":
      config.data.imbalance.ratio = 10.0  # ~40 digits per class: rho = 100 leaves none
  return config
