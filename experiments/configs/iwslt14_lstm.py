"""IWSLT14 De->En with an attentional LSTM student (the paper's setting; data not shipped).

Data as in ``iwslt14_transformer.py`` (``--config.data.data_dir=DIR`` with
``train/valid/test.{de,en}``). Student: bidirectional LSTM encoder, LSTM decoder with
Luong attention.

Commands::

  python -m experiments.main --config=experiments/configs/iwslt14_lstm.py \\
      --config.data.data_dir=/path/to/iwslt14.tokenized.de-en --workdir=runs/iwslt14_lstm

Runtime: not measured (no IWSLT14 data here). Paper targets (Wu et al. 2018;
approximate): L2T-DLF ~1-2 BLEU better than cross-entropy with an LSTM student.
"""
from experiments.configs import nmt


def get_config(arg=None):
  """The config of ``arg``: None (full recipe), ``'cpu'`` or ``'smoke'``.

  ``'cpu'`` is a small recipe for 2 CPU cores, ``'smoke'`` the one for tests.
  """
  return nmt.variant(nmt.nmt_config("iwslt14", "lstm"), arg, "iwslt14_lstm")
