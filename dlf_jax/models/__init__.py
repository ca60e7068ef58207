"""Student models (flax linen). Each returns ``(logits [B, C], features [B, D])``."""
from dlf_jax.models.layers import Conv, max_pool
from dlf_jax.models.lenet import ConvBN, LeNet
from dlf_jax.models.mlp import MLP
from dlf_jax.models.resnet import ResNet, WideResNet

__all__ = ["MLP", "LeNet", "ConvBN", "ResNet", "WideResNet", "Conv", "max_pool"]
