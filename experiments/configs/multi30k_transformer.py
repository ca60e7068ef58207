"""Multi30k De->En with a pre-LN Transformer student (stands in for IWSLT14 De->En offline).

Data: Multi30k task 1 (Elliott et al., 2016) from ``<data_dir>/multi30k/raw``: 29,000
training pairs, val (1,014) as the teacher's dev set, test_2017_flickr (1,000) as the
validation split that selects the teacher (``teach.select``) and, with
``baselines.smoothing_grid``, label smoothing's eps; test_2016_flickr (1,000) for BLEU.
IWSLT14 is not available offline here; Multi30k numbers are *not* IWSLT14
numbers and every report says so. Joint sentencepiece BPE trained on the training
split (cached in ``<workdir>/spm``).

Student: pre-LN Transformer with sinusoidal positions and one embedding table for
source, target and output projection; Adam (0.9, 0.98), inverse-sqrt learning rate
with warm-up; teacher forcing. Loss of the L2T-DLF students: the loss family per
target token with a *soft-target* W over the vocabulary (per-token smoothing eps_y,
uniform soft targets, identity link, anchored at label smoothing 0.1: O(|V|)
parameters; ``--config.teacher.parameterisation=diagonal --config.teacher.link=sigmoid
--config.teacher.anchor=cross_entropy`` is Eqn. (2) with a diagonal W, the recipe of
the November RESULTS.md run); reward: expected sentence BLEU over sampled candidates.
The recipe is measured at ``:cpu`` with one seed and 18 teacher updates in RESULTS.md
(Multi30k, the default recipe).
Evaluation: beam search (beam 4, length penalty 0.6), sacreBLEU on detokenised
output with its signature, and the tokenised BLEU of IWSLT14 papers, labelled.

Commands::

  # end-to-end check (tests, CI; ~1-2 min on 2 cores, mostly compilation):
  python -m experiments.main --config=experiments/configs/multi30k_transformer.py:smoke \\
      --workdir=/tmp/m30k_smoke
  # the CPU recipe of RESULTS.md (d 256, 3+3 layers, 1,200 steps of 128 pairs; the
  # measured run added --config.methods="('l2t_dlf',)" --config.teach.segments_per_episode=18):
  python -m experiments.main --config=experiments/configs/multi30k_transformer.py:cpu \\
      --workdir=runs/m30k_transformer_cpu
  # the full recipe (GPU; 512-d, 6+6 layers, 40k steps; not run here):
  python -m experiments.main --config=experiments/configs/multi30k_transformer.py \\
      --workdir=runs/m30k_transformer

Runtime (2 CPU cores, ``:cpu``): see RESULTS.md. Full recipe on one GPU: not measured.

Paper targets (IWSLT14 De->En, Wu et al. 2018; approximate): Transformer cross-entropy
~34 BLEU, L2T-DLF less than 1 BLEU better. A Transformer trained
with cross-entropy on Multi30k De->En usually reaches well above 30 BLEU on
test2016.
"""
from experiments.configs import nmt


def get_config(arg=None):
  """The config of ``arg``: None (full recipe), ``'cpu'`` or ``'smoke'``.

  ``'cpu'`` is a small recipe for 2 CPU cores (measured in RESULTS.md), ``'smoke'``
  the one for tests.
  """
  return nmt.variant(nmt.nmt_config("multi30k", "transformer"), arg, "multi30k_transformer")
