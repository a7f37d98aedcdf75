"""VGG (Simonyan & Zisserman 2014), configurations A, A-LRN, B, C, D, E of Table 1, plus _bn variants.

Layout and keys follow torchvision.models.VGG (`features.<i>`, `classifier.<j>`). Config C is D with the
third convolution of blocks 3-5 being 1x1 (torchvision has no C or A-LRN; we extend its config lists with
`(channels, 1)` for a 1x1 conv and "L" for the LRN layer). Batch norm after every conv is the later
torchvision `_bn` variant, not in the paper. AdaptiveAvgPool2d((7, 7)) is an identity at 224x224 and lets
smaller inputs (>= 32x32) through. Initialization as torchvision: conv kaiming_normal(fan_out, relu), linear
N(0, 0.01), biases 0, BN weight 1 / bias 0.
"""

from __future__ import annotations

import engine.functional as F
import engine.nn as nn
from engine import init

from ._common import init_conv_bn_

# An int is a 3x3 conv (pad 1) with that many filters, (c, 1) a 1x1 conv, "M" a 2x2/2 max pool, "L" LRN.
CONFIGS: dict[str, list] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "L", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(config: list, batch_norm: bool = False, in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif v == "L":
            # A-LRN: "the normalisation layer ... with the parameters of Krizhevsky et al." (sec. 2.3)
            layers.append(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            out_channels, kernel = (v, 3) if isinstance(v, int) else v
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            init_conv_bn_(m)
            if isinstance(m, nn.Linear):
                init.normal_(m.weight, 0.0, 0.01)
                init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(F.flatten(x, 1))


def _vgg(config: str, batch_norm: bool, num_classes: int, in_channels: int = 3, **kwargs) -> VGG:
    return VGG(make_layers(CONFIGS[config], batch_norm, in_channels), num_classes=num_classes, **kwargs)


def vgg11(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("A", False, num_classes, **kwargs)


def vgg11_lrn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("A-LRN", False, num_classes, **kwargs)


def vgg13(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("B", False, num_classes, **kwargs)


def vgg16_c(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("C", False, num_classes, **kwargs)


def vgg16(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("D", False, num_classes, **kwargs)


def vgg19(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("E", False, num_classes, **kwargs)


def vgg11_bn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("A", True, num_classes, **kwargs)


def vgg13_bn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("B", True, num_classes, **kwargs)


def vgg16_c_bn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("C", True, num_classes, **kwargs)


def vgg16_bn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("D", True, num_classes, **kwargs)


def vgg19_bn(num_classes: int = 1000, **kwargs) -> VGG:
    return _vgg("E", True, num_classes, **kwargs)
