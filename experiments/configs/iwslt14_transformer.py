"""IWSLT14 De->En with a pre-LN Transformer student (the paper's setting; data not shipped).

Data: the fairseq-prepared IWSLT14 De-En text (``prepare-iwslt14.sh``: ~160k training
pairs, ``train/valid/test.{de,en}``) in ``--config.data.data_dir=DIR``; nothing is
downloaded. The full recipe follows fairseq's ``transformer_iwslt_de_en``
(512-d, FFN 1024, 4 heads, 6+6 layers, dropout 0.3). Note: fairseq's prepared text is
lowercased and Moses-tokenised; BLEU is then reported on that text (the tokenised
BLEU column); sacreBLEU on it is not the detokenised WMT-style number.

Commands::

  python -m experiments.main --config=experiments/configs/iwslt14_transformer.py \\
      --config.data.data_dir=/path/to/iwslt14.tokenized.de-en --workdir=runs/iwslt14_tf
  # :cpu (small model) and :smoke (tests; any directory in the same layout) variants.

Runtime: not measured (no IWSLT14 data here). Paper targets (Wu et al. 2018;
approximate): Transformer cross-entropy ~34 BLEU, L2T-DLF less than 1 BLEU better.
"""
from experiments.configs import nmt


def get_config(arg=None):
  """The config of ``arg``: None (full recipe), ``'cpu'`` or ``'smoke'``.

  ``'cpu'`` is a small recipe for 2 CPU cores, ``'smoke'`` the one for tests.
  """
  return nmt.variant(nmt.nmt_config("iwslt14", "transformer"), arg, "iwslt14_transformer")
