"""The shared translation recipe; ``multi30k_*`` and ``iwslt14_*`` configs build on it.

``task = 'translation'`` routes ``experiments.main`` to :mod:`experiments.tasks.translation`.
Every key, the values it may take and what it means are listed, and checked, in
:data:`experiments.schema.TRANSLATION` (:func:`experiments.schema.describe` prints
them); the ``teacher``, ``teach``, ``baselines``, ``num_seeds``, ``seed``,
``progress`` and ``data_parallel`` fields are those of ``common.py``.
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
  config.data = _data(corpus)
  config.model = _model(model)
  _student(config.student, model)

  # The loss family's recipe with O(|V|) parameters: per-token smoothing eps_y and
  # uniform soft targets (label smoothing at the anchor), identity link.
  config.teacher.parameterisation = "soft_target"
  config.teacher.target = "uniform"
  config.teacher.rank = 8
  config.teacher.num_matrices = 4
  config.teacher.features = ("progress", "train_loss", "train_acc", "dev_acc")
  _teach(config.teach)
  config.teach.select = config.data.val_split is not None

  config.eval = config_dict.ConfigDict()
  config.eval.beam_size = 4
  config.eval.alpha = 0.6
  config.eval.batch_size = 100
  config.eval.lowercase_tokenized = True

  config.methods = ("cross_entropy", "label_smoothing", "l2t_dlf")
  config.baselines.smoothing = 0.1
  # eps of label smoothing tuned on the validation split, e.g. (0.05, 0.1, 0.2): one
  # student per eps before teaching; () keeps baselines.smoothing (the measured :cpu run).
  config.baselines.smoothing_grid = ()
  config.num_seeds = 1
  return config


def _data(corpus: str) -> config_dict.ConfigDict:
  data = config_dict.ConfigDict()
  data.name = corpus
  data.variant = "raw"
  data.data_dir = config_dict.placeholder(str)
  data.src_lang = "de"
  data.tgt_lang = "en"
  data.vocab_size = 10000
  data.joint_vocab = True
  data.max_src_len = 64
  data.max_tgt_len = 64
  data.train_size = config_dict.placeholder(int)
  data.dev_size = config_dict.placeholder(int)
  data.test_size = config_dict.placeholder(int)
  # The validation split that selects the teacher (never the dev split that rewards it,
  # never the test split): Multi30k's test_2017_flickr; IWSLT14 has none by default.
  data.val_split = "test_2017_flickr" if corpus == "multi30k" else config_dict.placeholder(str)
  data.val_size = config_dict.placeholder(int)
  data.block = 20
  data.pad_multiple = 8
  return data


def _model(name: str) -> config_dict.ConfigDict:
  model = config_dict.ConfigDict()
  model.name = name
  model.d_model = 512
  model.num_heads = 4
  model.d_ff = 1024
  model.num_layers = 6 if name == "transformer" else 1
  model.embed_dim = 256
  model.hidden = 512
  model.dropout = 0.3
  model.shared_embeddings = True
  return model


def _student(s: config_dict.ConfigDict, model: str) -> None:
  s.optimizer = "adam"
  s.learning_rate = 5e-4 if model == "transformer" else 1e-3
  s.b2 = 0.98
  s.schedule = "inverse_sqrt"
  s.warmup_steps = 4000
  s.batch_size = 128
  s.num_steps = 40000
  s.eval_every = 1000
  s.eval_batch_size = 250


def _teach(t: config_dict.ConfigDict) -> None:
  t.mode = "online"
  t.unroll_steps = 20
  t.num_episodes = 1
  t.segments_per_episode = 200
  t.pretrain_steps = 4000
  t.learning_rate = 1e-2
  t.dev_batch_size = 32
  t.dev_sample_size = 128
  t.estimator.reverse.memory = "checkpointed"
  t.measure = "expected_bleu"
  t.num_candidates = 4
  t.temperature = 1.0


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
  config.teach.estimator.reverse.memory = "store_all"
  return config


def smoke(config: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """End-to-end check (~1-2 min on 2 cores, mostly compilation): 400/40/40 pairs, 500 pieces,
  a tiny model, 40 steps."""
  config.data.train_size = 400
  config.data.dev_size = 40
  config.data.test_size = 40
  config.data.val_size = 40
  config.data.vocab_size = 500
  config.data.max_src_len = 32
  config.data.max_tgt_len = 32
  config.data.block = 10
  # One padded width (= the length limit): a smoke run is mostly compilation, and each
  # width is one more compilation of every step.
  config.data.pad_multiple = 32
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
