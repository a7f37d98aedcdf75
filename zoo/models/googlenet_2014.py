"""GoogLeNet as published (Szegedy et al. 2014, "Going deeper with convolutions", Table 1 and Figure 3).

The zoo's `googlenet` is torchvision's re-implementation; this is the paper's own network (Caffe's bvlc_googlenet):
- every convolution has a bias and is followed by ReLU; there is no batch norm (the paper predates it);
- local response normalization after the first max pool and after conv2 (size 5, alpha 1e-4, beta 0.75, k 1:
  Caffe's LRN divides alpha by the size, as `nn.LocalResponseNorm` does);
- the "5x5" inception branch really is a 5x5 convolution (torchvision uses 3x3 there);
- max pools round up (Caffe), pool4 is 3x3/2 as in Table 1 (torchvision: 2x2/2);
- the two auxiliary classifiers (after inception 4a and 4d) run in training mode only: 5x5/3 average pool, 1x1 conv
  to 128 + ReLU, fc 1024 + ReLU, dropout 0.7, fc. They need the 14x14 grid of a 224x224 input; build with
  `aux_logits=False` to train on smaller inputs. In training the model returns GoogLeNetOutputs(logits, aux2, aux1),
  and `loss_with_aux` weights each auxiliary loss by the paper's 0.3.
- the final 7x7/1 average pool is written as a global average pool: identical at 224x224, and smaller inputs (the
  registry's small input for tests) still reach the classifier.
Module names follow Table 1's rows (conv1, conv2 = 1x1 reduce + 3x3, inception3a ... inception5b, fc), so
`convgraph summary googlenet_2014 --depth 1` prints the table; docs/published_tables.md explains where the paper's
printed numbers disagree with its own layer shapes. Initialization follows Caffe's fillers: "xavier" weights
(uniform, bound sqrt(3 / fan_in)), conv biases 0.2, classifier biases 0.
"""

from __future__ import annotations

import engine.functional as F
import engine.nn as nn
from engine import init

from .googlenet import GoogLeNetOutputs


class ConvReLU(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, **kwargs)

    def forward(self, x):
        return F.relu(self.conv(x))


class Inception(nn.Module):
    """Figure 2(b): 1x1 | 1x1 reduce -> 3x3 | 1x1 reduce -> 5x5 | 3x3 max pool -> 1x1 "pool proj", concatenated."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int):
        super().__init__()
        self.branch1 = ConvReLU(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(ConvReLU(in_channels, ch3x3red, 1), ConvReLU(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(ConvReLU(in_channels, ch5x5red, 1), ConvReLU(ch5x5red, ch5x5, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     ConvReLU(in_channels, pool_proj, 1))

    def forward(self, x):
        return F.concat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Section 5's auxiliary classifier: 5x5/3 average pool (4x4 at 14x14), 1x1 conv 128, fc 1024, dropout 0.7."""

    def __init__(self, in_channels: int, num_classes: int, name: str):
        super().__init__()
        self.name = name
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv = ConvReLU(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x):
        grid = x.shape[2:]
        x = self.pool(x)
        if x.shape[2:] != (4, 4):
            raise ValueError(f"googlenet_2014 auxiliary head after {self.name} needs a 4x4 map after its 5x5/3 average "
                             f"pool (a 14x14 grid, 224x224 input), got {x.shape[2]}x{x.shape[3]} from a "
                             f"{grid[0]}x{grid[1]} grid; build with aux_logits=False for smaller inputs")
        x = F.relu(self.fc1(F.flatten(self.conv(x), 1)))
        return self.fc2(self.dropout(x))


# Table 1 channel counts: input, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
INCEPTIONS = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32), "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64), "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64), "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128), "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet2014(nn.Module):
    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, in_channels: int = 3):
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = ConvReLU(in_channels, 64, 7, stride=2, padding=3)
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.norm1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv2 = nn.Sequential(ConvReLU(64, 64, 1), ConvReLU(64, 192, 3, padding=1))
        self.norm2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.pool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(*INCEPTIONS["inception3a"])
        self.inception3b = Inception(*INCEPTIONS["inception3b"])
        self.pool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(*INCEPTIONS["inception4a"])
        self.inception4b = Inception(*INCEPTIONS["inception4b"])
        self.inception4c = Inception(*INCEPTIONS["inception4c"])
        self.inception4d = Inception(*INCEPTIONS["inception4d"])
        self.inception4e = Inception(*INCEPTIONS["inception4e"])
        self.pool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception5a = Inception(*INCEPTIONS["inception5a"])
        self.inception5b = Inception(*INCEPTIONS["inception5b"])
        self.aux1 = InceptionAux(512, num_classes, "inception4a") if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, "inception4d") if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                init.kaiming_uniform_(m.weight, nonlinearity="linear")  # Caffe's "xavier" filler
                init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)

    def forward(self, x):
        x = self.norm1(self.pool1(self.conv1(x)))
        x = self.pool2(self.norm2(self.conv2(x)))
        x = self.pool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.training and self.aux1 is not None else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.training and self.aux2 is not None else None
        x = self.pool4(self.inception4e(x))
        x = self.avgpool(self.inception5b(self.inception5a(x)))
        x = self.fc(self.dropout(F.flatten(x, 1)))
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def googlenet_2014(num_classes: int = 1000, **kwargs) -> GoogLeNet2014:
    return GoogLeNet2014(num_classes=num_classes, **kwargs)
