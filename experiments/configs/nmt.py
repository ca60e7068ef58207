"""The shared translation recipe; ``multi30k_*`` and ``iwslt14_*`` configs build on it.

Fields (validated by :func:`experiments.translate.validate_config`), in addition
to the ``teacher``, ``teach``, ``baselines``, ``num_seeds``, ``seed``,
``progress`` and ``data_parallel`` fields of ``common.py``:

* ``task = 'translation'`` (routes ``experiments.main`` to
  :mod:`experiments.translate`).
* ``data``: ``name`` (``multi30k | iwslt14``), ``variant`` (Multi30k ``raw |
  tok``), ``data_dir`` (IWSLT14: the directory with ``train/valid/test.{de,en}``;
  Multi30k: the one holding ``multi30k/``, default ``DLF_DATA_DIR`` or
  ``../shared/data``), ``src_lang``/``tgt_lang``, ``vocab_size`` (sentencepiece
  BPE pieces), ``joint_vocab``, ``max_src_len``/``max_tgt_len`` (pieces incl.
  EOS; longer training pairs are dropped, dev/test sources truncated),
  ``train_size``/``dev_size``/``test_size`` (None: all), ``block`` (batches per
  length bucket; scans never mix buckets) and ``pad_multiple``.
* ``model``: ``name`` (``transformer | lstm``), ``d_model``, ``num_heads``,
  ``d_ff``, ``num_layers`` (Transformer: per stack; LSTM: decoder layers),
  ``embed_dim``/``hidden`` (LSTM), ``dropout``, ``shared_embeddings``.
* ``student``: as in ``common.py`` plus ``b2`` (Adam) and ``warmup_steps``
  (``schedule='inverse_sqrt'``).
* ``teach.measure``: ``expected_bleu`` (expected sentence BLEU over
  ``num_candidates`` samples at ``temperature``) or ``expected_accuracy``
  (token level, cheaper).
* ``eval``: ``beam_size``, ``alpha`` (length penalty), ``batch_size`` (sentences
  per decoding batch), ``lowercase_tokenized`` (the tokenised BLEU).
"""
from ml_collections import config_dict

from experiments.configs import common


def nmt_config(corpus: str, model: str) -> config_dict.ConfigDict:
  """The full (GPU-sized, not run here) recipe for ``corpus`` x ``model``.

  Transformer: fairseq's ``transformer_iwslt_de_en`` sizes (d 512, FFN 1024, 4
  heads, 6+6 layers, dropout 0.3), Adam (0.9, 0.98), inverse-sqrt schedule with
  4,000 warm-up steps, 40k steps of 128 pairs. LSTM: 1-layer bi-LSTM encoder,
  512 units, Luong attention.
  """
  config = common.base_config()
  config.task = "translation"
  config.data = config_dict.ConfigDict()
  config.data.name = corpus
  config.data.variant = "raw"
  config.data.data_dir = config_dict.placeholder(str)
  config.data.src_lang = "de"
  config.data.tgt_lang = "en"
  config.data.vocab_size = 10000
  config.data.joint_vocab = True
  config.data.max_src_len = 64
  config.data.max_tgt_len = 64
  config.data.train_size = config_dict.placeholder(int)
  config.data.dev_size = config_dict.placeholder(int)
  config.data.test_size = config_dict.placeholder(int)
  config.data.block = 20
  config.data.pad_multiple = 8

  config.model = config_dict.ConfigDict()
  config.model.name = model
  config.model.d_model = 512
  config.model.num_heads = 4
  config.model.d_ff = 1024
  config.model.num_layers = 6 if model == "transformer" else 1
  config.model.embed_dim = 256
  config.model.hidden = 512
  config.model.dropout = 0.3
  config.model.shared_embeddings = True

  s = config.student
  s.optimizer = "adam"
  s.learning_rate = 5e-4 if model == "transformer" else 1e-3
  s.b2 = 0.98
  s.schedule = "inverse_sqrt"
  s.warmup_steps = 4000
  s.batch_size = 128
  s.num_steps = 40000
  s.eval_every = 1000
  s.eval_batch_size = 250

  # The loss family's recipe with O(|V|) parameters: per-token smoothing eps_y and
  # uniform soft targets (label smoothing at the anchor), identity link.
  config.teacher.parameterisation = "soft_target"
  config.teacher.target = "uniform"
  config.teacher.rank = 8
  config.teacher.num_matrices = 4
  config.teacher.features = ("progress", "train_loss", "train_acc", "dev_acc")

  t = config.teach
  t.mode = "online"
  t.unroll_steps = 20
  t.num_episodes = 1
  t.segments_per_episode = 200
  t.pretrain_steps = 4000
  t.learning_rate = 1e-2
  t.dev_batch_size = 32
  t.dev_sample_size = 128
  t.memory = "checkpointed"
  t.measure = "expected_bleu"
  t.num_candidates = 4
  t.temperature = 1.0

  config.eval = config_dict.ConfigDict()
  config.eval.beam_size = 4
  config.eval.alpha = 0.6
  config.eval.batch_size = 100
  config.eval.lowercase_tokenized = True

  config.methods = ("cross_entropy", "label_smoothing", "l2t_dlf")
  config.baselines.smoothing = 0.1
  config.num_seeds = 1
  return config


def cpu(config: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """The CPU recipe (Transformer measured in RESULTS.md): a small model and 1,200 steps.

  Transformer d 256, FFN 1024, 4 heads, 3+3 layers, dropout 0.1, 8,000 joint BPE
  pieces, Adam peak 1.5e-3 (300 warm-up steps), 1,200 steps of 128 pairs (~5.3
  Multi30k epochs); teaching: a 400-step cross-entropy warm start, then 30
  segments of T = 10 (one Adam step of theta each, lr 3e-2: a CPU budget,
  against the GPU recipe's 200), expected BLEU of 4 samples on 64 dev
  sentences per step.
  """
  config.data.vocab_size = 8000
  config.data.block = 20
  config.model.d_model = 256
  config.model.num_layers = 3 if config.model.name == "transformer" else 1
  config.model.dropout = 0.1
  config.student.learning_rate = 1.5e-3 if config.model.name == "transformer" else 1e-3
  config.student.warmup_steps = 300
  config.student.num_steps = 1200
  config.student.eval_every = 200
  config.teach.unroll_steps = 10
  config.teach.segments_per_episode = 30
  config.teach.learning_rate = 3e-2
  config.teach.pretrain_steps = 400
  config.teach.dev_sample_size = 64
  config.teach.memory = "store_all"
  return config


def smoke(config: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """End-to-end check (~1-2 min on 2 cores, mostly compilation): 400/40/40 pairs, 500 pieces,
  a tiny model, 40 steps."""
  config.data.train_size = 400
  config.data.dev_size = 40
  config.data.test_size = 40
  config.data.vocab_size = 500
  config.data.max_src_len = 32
  config.data.max_tgt_len = 32
  config.data.block = 10
  config.model.d_model = 32
  config.model.num_heads = 2
  config.model.d_ff = 64
  config.model.num_layers = 1
  config.model.embed_dim = 32
  config.model.hidden = 32
  config.student.batch_size = 16
  config.student.num_steps = 40
  config.student.eval_every = 20
  config.student.eval_batch_size = 40
  config.student.warmup_steps = 10
  config.teach.unroll_steps = 5
  config.teach.segments_per_episode = 2
  config.teach.pretrain_steps = 10
  config.teach.dev_batch_size = 8
  config.teach.dev_sample_size = 8
  config.teach.num_candidates = 2
  config.eval.beam_size = 2
  config.eval.batch_size = 20
  config.progress = False
  return config


def variant(config: config_dict.ConfigDict, arg, name: str) -> config_dict.ConfigDict:
  """Applies ``arg`` (None | 'cpu' | 'smoke') to a recipe; ``name`` for the error."""
  if arg == "smoke":
    return smoke(cpu(config))
  if arg == "cpu":
    return cpu(config)
  if arg is None:
    return config
  raise ValueError(f"Unknown {name} variant {arg!r}; use 'smoke', 'cpu' or nothing.")
