"""The model registry: `list_models()`, `get(name, **kwargs)`, and each model's input sizes.

Every entry knows the input it was designed for (`input_size`, C x H x W) and a small input that still
passes through the whole network (`small_input_size`, used by tests and quick checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .alexnet import alexnet, alexnet_2012
from .convnetjs import convnetjs_cifar10
from .densenet import densenet121, densenet169, densenet201
from .efficientnet import efficientnet_b0, efficientnet_b2
from .googlenet import googlenet
from .googlenet_2014 import googlenet_2014
from .inception_v3 import inception_v3
from .lenet import lenet5
from .mobilenet import mobilenet_v2
from .resnet import resnet18, resnet18_cifar, resnet34, resnet50, resnet101, resnet152
from .vgg import vgg11, vgg11_bn, vgg11_lrn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg16_c, vgg16_c_bn, vgg19, vgg19_bn
from .xception import xception


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    input_size: tuple[int, int, int]
    small_input_size: tuple[int, int, int]
    default_num_classes: int
    description: str


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, builder: Callable, input_size: tuple[int, int, int], small_input_size: tuple[int, int, int],
             description: str, default_num_classes: int = 1000) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelSpec(name, builder, input_size, small_input_size, default_num_classes, description)


def list_models() -> list[str]:
    """Names of every registered model, in registration order (roughly by year)."""
    return list(_REGISTRY)


def spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get(name: str, **kwargs):
    """Build a model by name: `get("resnet18", num_classes=10)`. Keyword arguments go to the model."""
    return spec(name).builder(**kwargs)


def input_size(name: str) -> tuple[int, int, int]:
    return spec(name).input_size


def small_input_size(name: str) -> tuple[int, int, int]:
    return spec(name).small_input_size


_IMAGENET = (3, 224, 224)
_TINY = (3, 32, 32)

register("lenet5", lenet5, (1, 28, 28), (1, 28, 28),
         "LeNet-5 (Caffe variant): conv20-conv50-fc500-fc10, ReLU, max pooling, dropout", 10)
register("convnetjs_cifar10", convnetjs_cifar10, (3, 32, 32), (3, 32, 32),
         "ConvNetJS CIFAR-10 demo: three 5x5 conv/ReLU/pool stages (16, 20, 20) and fc 10", 10)
register("alexnet", alexnet, _IMAGENET, (3, 64, 64), "AlexNet, torchvision single-tower variant")
register("alexnet_2012", alexnet_2012, (3, 227, 227), (3, 67, 67),
         "AlexNet as in the 2012 paper: grouped convs for the two GPUs, LRN, overlapping pooling")
for _name, _fn, _desc in [
    ("vgg11", vgg11, "VGG config A (11 layers)"),
    ("vgg11_lrn", vgg11_lrn, "VGG config A-LRN (11 layers + local response normalization)"),
    ("vgg13", vgg13, "VGG config B (13 layers)"),
    ("vgg16_c", vgg16_c, "VGG config C (16 layers, three 1x1 convs)"),
    ("vgg16", vgg16, "VGG config D (16 layers)"),
    ("vgg19", vgg19, "VGG config E (19 layers)"),
    ("vgg11_bn", vgg11_bn, "VGG config A with batch norm"),
    ("vgg13_bn", vgg13_bn, "VGG config B with batch norm"),
    ("vgg16_c_bn", vgg16_c_bn, "VGG config C with batch norm"),
    ("vgg16_bn", vgg16_bn, "VGG config D with batch norm"),
    ("vgg19_bn", vgg19_bn, "VGG config E with batch norm"),
]:
    register(_name, _fn, _IMAGENET, _TINY, _desc)
register("googlenet", googlenet, _IMAGENET, (3, 64, 64),
         "GoogLeNet / Inception v1 with batch norm and two auxiliary classifiers (training mode)")
register("googlenet_2014", googlenet_2014, _IMAGENET, (3, 64, 64),
         "GoogLeNet as in the 2014 paper: 5x5 branches, LRN, conv biases, no batch norm, auxiliary classifiers "
         "(training mode, need 224x224 input)")
register("inception_v3", inception_v3, (3, 299, 299), (3, 75, 75),
         "Inception v3 with auxiliary classifier (training mode, needs ~299x299 input)")
register("xception", xception, (3, 299, 299), (3, 71, 71),
         "Xception (Keras architecture): depthwise-separable convolutions with residual connections")
for _name, _fn in [("resnet18", resnet18), ("resnet34", resnet34), ("resnet50", resnet50),
                   ("resnet101", resnet101), ("resnet152", resnet152)]:
    register(_name, _fn, _IMAGENET, _TINY, f"ResNet-{_name[6:]} (torchvision, v1.5 bottlenecks)")
register("resnet18_cifar", resnet18_cifar, (3, 32, 32), (3, 32, 32),
         "ResNet-18 for 32x32 inputs: 3x3 stem, no max pool", 10)
for _name, _fn in [("densenet121", densenet121), ("densenet169", densenet169),
                   ("densenet201", densenet201)]:
    register(_name, _fn, _IMAGENET, _TINY, f"DenseNet-BC-{_name[8:]} (growth rate 32)")
register("mobilenet_v2", mobilenet_v2, _IMAGENET, _TINY,
         "MobileNetV2: inverted residuals with linear bottlenecks, ReLU6")
register("efficientnet_b0", efficientnet_b0, _IMAGENET, _TINY,
         "EfficientNet-B0: MBConv with squeeze-excitation, SiLU, stochastic depth")
register("efficientnet_b2", efficientnet_b2, (3, 260, 260), _TINY,
         "EfficientNet-B2: B0 scaled x1.1 width, x1.2 depth")
