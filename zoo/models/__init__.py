"""The model zoo: plain, readable model classes with torchvision attribute names, and a registry.

    import zoo
    zoo.list_models()                      # ['lenet5', 'convnetjs_cifar10', 'alexnet', ...]
    model = zoo.get("resnet18", num_classes=10)
    zoo.models.input_size("resnet18")      # (3, 224, 224)
"""

from ._common import loss_with_aux, main_logits
from .alexnet import AlexNet, AlexNet2012, alexnet, alexnet_2012
from .convnetjs import ConvNetJSCifar10, convnetjs_cifar10
from .densenet import DenseNet, densenet121, densenet169, densenet201
from .efficientnet import EfficientNet, efficientnet_b0, efficientnet_b2
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet
from .googlenet_2014 import GoogLeNet2014, googlenet_2014
from .inception_v3 import Inception3, InceptionOutputs, inception_v3
from .lenet import LeNet5, lenet5
from .mobilenet import MobileNetV2, mobilenet_v2
from .registry import ModelSpec, get, input_size, list_models, small_input_size, spec
from .resnet import ResNet, resnet18, resnet18_cifar, resnet34, resnet50, resnet101, resnet152
from .vgg import VGG, vgg11, vgg11_bn, vgg11_lrn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg16_c, vgg16_c_bn, vgg19, vgg19_bn
from .xception import Xception, xception

__all__ = [
    "get", "list_models", "spec", "input_size", "small_input_size", "ModelSpec", "loss_with_aux", "main_logits",
    "LeNet5", "lenet5", "ConvNetJSCifar10", "convnetjs_cifar10", "AlexNet", "AlexNet2012", "alexnet",
    "alexnet_2012", "VGG", "vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn",
    "vgg16_c_bn", "vgg16_bn", "vgg19_bn", "GoogLeNet", "GoogLeNetOutputs", "googlenet",
    "GoogLeNet2014", "googlenet_2014", "Inception3",
    "InceptionOutputs", "inception_v3", "Xception", "xception", "ResNet", "resnet18", "resnet34", "resnet50",
    "resnet101", "resnet152", "resnet18_cifar", "DenseNet", "densenet121", "densenet169", "densenet201",
    "MobileNetV2", "mobilenet_v2", "EfficientNet", "efficientnet_b0", "efficientnet_b2",
]
