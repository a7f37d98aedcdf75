"""engine.nn: PyTorch-style modules. Each layer is a thin module over one functional op (engine.functional)."""

from .. import functional
from .activation import ELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv1d, Conv2d
from .dropout import Dropout
from .linear import Flatten, Identity, Linear
from .loss import CrossEntropyLoss, MSELoss, NLLLoss
from .module import IncompatibleKeys, Module, Parameter, RemovableHandle
from .norm import BatchNorm1d, BatchNorm2d, LocalResponseNorm
from .pool import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    GlobalAvgPool2d,
    LPPool1d,
    LPPool2d,
    MaxPool1d,
    MaxPool2d,
    SpatialPyramidPool,
    WeightedAvgPool2d,
)

# isort: split
# issue 13: losses, layers and utils a PyTorch port needs (one block, to merge easily)
from . import utils
from .activation import GELU, Hardswish, Mish, Softplus
from .conv import ConvTranspose1d, ConvTranspose2d
from .loss import BCELoss, BCEWithLogitsLoss, HuberLoss, KLDivLoss, L1Loss, SmoothL1Loss
from .norm import GroupNorm, InstanceNorm1d, InstanceNorm2d, LayerNorm
from .upsample import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d

__all__ = [
    # base classes and containers
    "Module", "Parameter", "IncompatibleKeys", "RemovableHandle", "Sequential", "ModuleList", "ModuleDict",
    "Identity", "Flatten",
    # layers with parameters
    "Linear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d",
    # pooling and normalization without parameters
    "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "LPPool1d", "LPPool2d", "WeightedAvgPool2d",
    "AdaptiveAvgPool1d", "AdaptiveMaxPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "GlobalAvgPool2d",
    "SpatialPyramidPool", "LocalResponseNorm", "Dropout",
    # activations and losses
    "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "SiLU", "Softmax", "LogSoftmax",
    "CrossEntropyLoss", "NLLLoss", "MSELoss",
    "functional",
]
__all__ += [
    "utils",
    "ConvTranspose1d", "ConvTranspose2d", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d",
    "GELU", "Hardswish", "Mish", "Softplus", "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
    "BCELoss", "BCEWithLogitsLoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "KLDivLoss",
]
