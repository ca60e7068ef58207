"""Student models (flax linen).

Image classifiers return ``(logits [B, C], features [B, D])``; seq2seq students
(:mod:`dlf_jax.models.transformer`) ``(logits [B, L, V], features)``.
"""
from dlf_jax.models.layers import Conv, max_pool
from dlf_jax.models.lenet import ConvBN, LeNet
from dlf_jax.models.mlp import MLP
from dlf_jax.models.resnet import ResNet, WideResNet
from dlf_jax.models.transformer import LSTMSeq2Seq, Transformer

__all__ = [
    "MLP", "LeNet", "ConvBN", "ResNet", "WideResNet", "Conv", "max_pool", "Transformer",
    "LSTMSeq2Seq"
]
