"""Multi30k De->En with an attentional LSTM student (stands in for IWSLT14 De->En offline).

Data and evaluation as in ``multi30k_transformer.py`` (Multi30k task 1, test_2016_flickr;
not IWSLT14). Student: bidirectional LSTM encoder, LSTM decoder with Luong (general)
attention, shared embeddings, Adam; teacher and reward as in the Transformer config.

Commands::

  python -m experiments.main --config=experiments/configs/multi30k_lstm.py:smoke \\
      --workdir=/tmp/m30k_lstm_smoke
  python -m experiments.main --config=experiments/configs/multi30k_lstm.py:cpu \\
      --workdir=runs/m30k_lstm_cpu

Runtime: ``:cpu`` not measured here (the Transformer was run instead; see RESULTS.md).

Paper targets (IWSLT14 De->En, LSTM student, Wu et al. 2018; approximate): L2T-DLF
~1-2 BLEU better than cross-entropy.
"""
from experiments.configs import nmt


def get_config(arg=None):
  """The config of ``arg``: None (full recipe), ``'cpu'`` or ``'smoke'``.

  ``'cpu'`` is a small recipe for 2 CPU cores, ``'smoke'`` the one for tests.
  """
  return nmt.variant(nmt.nmt_config("multi30k", "lstm"), arg, "multi30k_lstm")
