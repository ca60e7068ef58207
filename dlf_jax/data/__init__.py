"""Data: image datasets, label noise, long tails, parallel text, deterministic batching.

Image datasets are described by one ``ImageDatasetSpec`` each in
``dlf_jax.data.images.REGISTRY``; ``DATASETS`` and ``NUM_CLASSES`` are derived from it.
"""
from dlf_jax.data.augment import AUGMENTATIONS, make_augment, random_crop_flip
from dlf_jax.data.batching import SegmentSampler, make_eval_batches
from dlf_jax.data.images import DATASETS
from dlf_jax.data.images import ImageDataset
from dlf_jax.data.images import SOURCES
from dlf_jax.data.images import Split
from dlf_jax.data.images import default_data_dir
from dlf_jax.data.images import load_image_dataset
from dlf_jax.data.images import read_idx
from dlf_jax.data.images import read_idx_header
from dlf_jax.data.images import NUM_CLASSES
from dlf_jax.data import noise
from dlf_jax.data.noise import (check_transition, class_priors, corrupt_labels,
                                estimate_transition_glc, long_tail_counts, long_tail_subsample,
                                noise_rate, pair_flip_transition, realised_transition,
                                symmetric_transition, transition_counts)

__all__ = [
    "AUGMENTATIONS",
    "make_augment",
    "random_crop_flip",
    "DATASETS",
    "ImageDataset",
    "SOURCES",
    "SegmentSampler",
    "make_eval_batches",
    "Split",
    "default_data_dir",
    "load_image_dataset",
    "read_idx",
    "read_idx_header",
    "NUM_CLASSES",
    "noise",
    "check_transition",
    "class_priors",
    "corrupt_labels",
    "estimate_transition_glc",
    "long_tail_counts",
    "long_tail_subsample",
    "noise_rate",
    "pair_flip_transition",
    "realised_transition",
    "symmetric_transition",
    "transition_counts",
]
from dlf_jax.data.translation import (BucketSampler, ParallelText, SubwordTokenizer,
                                      TranslationCorpus, encode_corpus, load_translation_corpus,
                                      trim_padding)

__all__ += [
    "BucketSampler", "ParallelText", "SubwordTokenizer", "TranslationCorpus", "encode_corpus",
    "load_translation_corpus", "trim_padding"
]
