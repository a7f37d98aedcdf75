"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) in two variants.

- `alexnet`: torchvision's single-tower variant (64-192-384-256-256 filters, no LRN, from "One weird trick",
  Krizhevsky 2014), 61,100,840 parameters at 1000 classes; keys `features.0.weight`, `classifier.1.weight`.
- `alexnet_2012`: the paper's network (96-256-384-384-256), 60,965,224 parameters at 1000 classes. The
  paper trained on two GPUs and conv2, conv4 and conv5 only see the kernel maps on their own GPU: here
  those layers are grouped convolutions with groups=2 (conv3 and the FC layers connect across GPUs).
  Local response normalization follows the ReLUs of conv1 and conv2; max pooling overlaps (3x3, stride 2).
  Input is 227x227 (the paper's "224" does not divide: (224 - 11) / 4 + 1 is not an integer).

Both end with AdaptiveAvgPool2d((6, 6)), an identity at the full input size that lets smaller inputs
(alexnet >= 63x63, alexnet_2012 >= 67x67) through. Initialization is PyTorch's default (the paper's
N(0, 0.01) weights with biases of 1 are not used).
"""

from __future__ import annotations

import engine.functional as F
import engine.nn as nn


class AlexNet(nn.Module):
    """torchvision.models.AlexNet: same layer indices, so state_dict keys match."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = _classifier(dropout, num_classes)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(F.flatten(x, 1))


class AlexNet2012(AlexNet):
    """The two-GPU network of the paper, expressed with groups=2 convolutions (see the module docstring)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, in_channels: int = 3):
        nn.Module.__init__(self)  # same classifier and forward as AlexNet, different feature extractor
        # LRN as in the paper (n=5, alpha=1e-4, beta=0.75, k=2). NOTE: like Caffe and PyTorch, our
        # LocalResponseNorm divides alpha by n; the paper's formula does not (its alpha is 5x ours).
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, kernel_size=11, stride=4),  # 227 -> 55
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2),  # overlapping pooling: 55 -> 27
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),  # each GPU: 48 -> 128 maps
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2),  # 27 -> 13
            nn.Conv2d(256, 384, kernel_size=3, padding=1),  # the one conv that crosses GPUs
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # 13 -> 6
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = _classifier(dropout, num_classes)


def _classifier(dropout: float, num_classes: int) -> nn.Sequential:
    """The shared head: dropout 0.5 before each of the two 4096-wide fully connected layers."""
    return nn.Sequential(
        nn.Dropout(p=dropout),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


def alexnet(num_classes: int = 1000, **kwargs) -> AlexNet:
    return AlexNet(num_classes=num_classes, **kwargs)


def alexnet_2012(num_classes: int = 1000, **kwargs) -> AlexNet2012:
    return AlexNet2012(num_classes=num_classes, **kwargs)
