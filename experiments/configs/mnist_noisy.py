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
  ``:lt`` also trains the long-tail baselines: logit adjustment (``tau =
  baselines.logit_tau = 1``, Menon et al. 2021) and class-balanced cross-entropy (``beta =
  baselines.cb_beta = 0.999``, Cui et al. 2019), both from the training label counts.
* ``:glc``: the pair-flip 40 % setting with the closed-form noise corrections beside the
  taught loss, same students and seeds: cross-entropy, label smoothing, **GLC** (forward
  correction with ``T^`` estimated from the same seed's cross-entropy student on the clean
  dev set, Hendrycks et al. 2018), forward correction with the **true** ``T`` (an oracle,
  not a competitor), and L2T-DLF with a ``forward_correction`` teacher that *starts at
  GLC's* ``T^`` (``teacher.anchor='glc'``), so that the taught row against its untaught
  anchor measures what teaching adds over GLC. ``T^`` per seed is in
  ``glc/transition_seed<s>.json``.
* ``:smoke`` / ``:lt_smoke`` / ``:glc_smoke``: seconds-long checks of them on the
  embedded digits (pair flip 40 %; rho = 10).

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

Expected runtime on 2 CPU cores: ~15 min, as ``mnist_mlp.py`` (the same model, steps and
teaching; ``:lt`` trains on fewer examples, not fewer steps). GPU: not measured.
Expected (PAPER.md Sec. 7's probe of this setting, 3 seeds, test error %, before the
teacher selection): cross-entropy 40.4, label smoothing 40.3, untaught anchor 40.6,
taught 36.2. Label smoothing's eps (0.2) is the one selected on *clean* labels
(``mnist_mlp.py``), not re-tuned here.
"""
from experiments.configs import common
from experiments.configs import mnist_mlp

VARIANTS = ("smoke", "lt", "lt_smoke", "glc", "glc_smoke")
# The protocol's rows (issue: noisy labels): the baselines at their best, the closed-form
# corrections beside them, and the teacher's untaught anchor as the control of the taught row.
NOISE_METHODS = ("cross_entropy", "label_smoothing", "glc", "forward_oracle", "l2t_dlf_anchor",
                 "l2t_dlf")
LONG_TAIL_METHODS = ("cross_entropy", "label_smoothing", "logit_adjusted", "class_balanced",
                     "l2t_dlf_anchor", "l2t_dlf")
GLC_METHODS = NOISE_METHODS
NUM_SEEDS = 5


def get_config(arg=None):
  """``arg``: None (pair-flip 40 %), ``'lt'`` (rho = 100), ``'glc'`` (the noise
  corrections and the GLC-anchored teacher), ``'smoke'`` / ``'lt_smoke'`` / ``'glc_smoke'``."""
  if arg is not None and arg not in VARIANTS:
    raise ValueError(f"Unknown mnist_noisy variant {arg!r}; use one of {VARIANTS} or "
                     "nothing.")
  config = mnist_mlp.get_config()
  config.num_seeds = NUM_SEEDS
  if arg in ("lt", "lt_smoke"):
    config.data.imbalance.ratio = 100.0
    config.data.imbalance.seed = 0
    config.methods = LONG_TAIL_METHODS
  else:
    config.data.noise.kind = "pair"
    config.data.noise.rate = 0.4
    config.data.noise.seed = 0
    config.methods = NOISE_METHODS
  if arg in ("glc", "glc_smoke"):
    # A forward-correction teacher (T outside the log) that starts at GLC's T^.
    config.teacher.parameterisation = "forward_correction"
    config.teacher.anchor = "glc"
  if arg in ("smoke", "lt_smoke", "glc_smoke"):
    config = common.smoke(config)
    config.data.name = "embedded_mnist"  # ships with the package: no data files needed
    config.data.source = "embedded"
    config.data.dev_split = "random"
    config.methods = {
        "smoke": ("cross_entropy", "label_smoothing", "l2t_dlf_anchor", "l2t_dlf"),
        "lt_smoke": LONG_TAIL_METHODS,
        "glc_smoke": GLC_METHODS
    }[arg]
    if arg == "lt_smoke":
      config.data.imbalance.ratio = 10.0  # ~40 digits per class: rho = 100 leaves none
  return config
