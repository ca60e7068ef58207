"""MNIST MLP on corrupted training labels, taught from a small clean dev set (not in the paper).

Where a learned loss has something to learn: the training labels carry
structure that a small *trusted* dev set knows better. Data and protocol as
``mnist_mlp.py`` (the first 10,000 MNIST training digits: train 8,000 / dev 1,000, the
last 1,000 / val 1,000 random others / the real 10k test set; MLP 784-500-300-10, plain
SGD lr 0.1, batch 128, 5,000 steps; the default recipe's soft-target, identity-link
teacher anchored at label smoothing, rewarded by the dev cross-entropy, online with
T = 200; the validation split picks the untaught anchor or the taught teacher), except:

Every variant trains the rows of :mod:`experiments.configs.label_corruption` on 5 seeds:
under noise cross-entropy, label smoothing, **GLC** (forward correction with ``T^``
estimated from the same seed's cross-entropy student on the clean dev set, Hendrycks et
al. 2018; ``T^`` per seed in ``glc/transition_seed<s>.json``), forward correction with
the **true** ``T`` (an oracle, not a competitor), the teacher's **untaught anchor** (the
control: the same students, no outer step) and L2T-DLF; ``results.md`` adds L2T-DLF's
paired differences to each (± s.e.).

* default: **pair-flip noise at 40 %** on the 8,000 training labels only (``y -> (y + 1)
  mod 10`` with probability 0.4, seeded by ``data.noise.seed``); dev, val and test are
  clean. The realised noise matrix and rate are in ``label_noise.json`` (and under
  ``data.label_noise`` of ``results.json``); the true training labels are kept beside the
  noisy ones but never trained on.
* ``:sym60``: **symmetric noise at 60 %** instead (each label replaced by one of the 9
  others with probability 0.6).
* ``:lt``: clean labels, a **long-tailed** training split instead (Cao et al. 2019's
  exponential profile, imbalance ratio rho = 100: n_i = n_max 100^(-i/9), n_max = the
  rarest class's count in the 8,000: 693 down to 6 digits, 1,716 in all); dev, val and test
  as loaded (MNIST's near-uniform classes). The tables lead with the balanced test
  error (``1 - test_balanced_accuracy``), the plain error beside it, and the validation
  split selects by the balanced error (``experiments.splits.headline_metric``). The rows:
  cross-entropy, label smoothing, logit adjustment (``tau = baselines.logit_tau = 1``,
  Menon et al. 2021), class-balanced cross-entropy (``beta = baselines.cb_beta =
  0.999``, Cui et al. 2019), both from the training label counts, the untaught anchor
  and L2T-DLF.
* ``:glc``: pair-flip 40 % with a ``forward_correction`` teacher that *starts at GLC's*
  ``T^`` (``teacher.anchor='glc'``), so that the taught row against its untaught anchor
  measures what teaching adds over GLC.
* ``:smoke`` (the fewest rows), ``:sym60_smoke``, ``:lt_smoke``, ``:glc_smoke``:
  seconds-long checks of them on the embedded digits (rho = 10 for the long tail).

Command::

  python -m experiments.main --config=experiments/configs/mnist_noisy.py \\
      --workdir=/tmp/dlf_mnist_noisy
  python -m experiments.main --config=experiments/configs/mnist_noisy.py:lt \\
      --workdir=/tmp/dlf_mnist_lt
  python -m experiments.main --config=experiments/configs/mnist_noisy.py:glc \\
      --workdir=/tmp/dlf_mnist_glc
  # tiny end-to-end check (seconds):
  python -m experiments.main --config=experiments/configs/mnist_noisy.py:smoke \\
      --workdir=/tmp/dlf_mnist_noisy_smoke

Expected runtime on 2 CPU cores: ~30 min (30 students of ~30-40 s, ~4 min of teaching,
4 selection students; ``:lt`` trains on fewer examples, not fewer steps). GPU: not
measured. Measured: RESULTS.md, "Noisy labels". Label smoothing's eps (0.2) is the one
selected on *clean* labels (``mnist_mlp.py``), not re-tuned here.
"""
from experiments.configs import common
from experiments.configs import label_corruption
from experiments.configs import mnist_mlp

VARIANTS = label_corruption.VARIANTS


def _smoke():
  config = common.smoke(mnist_mlp.get_config())
  config.data.name = "embedded_mnist"  # ships with the package: no data files needed
  config.data.source = "embedded"
  config.data.dev_split = "random"
  return config


def get_config(arg=None):
  """``arg``: None (pair-flip 40 %), ``'sym60'`` (symmetric 60 %), ``'lt'`` (rho = 100),
  ``'glc'`` (the GLC-anchored teacher), each with ``_smoke``; or ``'smoke'``."""
  return label_corruption.corrupted("mnist_noisy", mnist_mlp.get_config, _smoke, arg)
