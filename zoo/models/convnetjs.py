"""The ConvNetJS CIFAR-10 demo network (Karpathy, cs.stanford.edu/people/karpathy/convnetjs/demo/cifar10.html).

    conv 16@5x5 pad 2, ReLU, pool 2 -> conv 20@5x5 pad 2, ReLU, pool 2 -> conv 20@5x5 pad 2, ReLU, pool 2 -> fc 10

On 32x32x3 input the grids are 32 -> 16 -> 8 -> 4, so the classifier sees 20*4*4 = 320 features; the
parameters per layer are 1216, 8020, 10020 and 3210. The demo's softmax is left to the loss (we return logits).
"""

from __future__ import annotations

import engine.functional as F
import engine.nn as nn


class ConvNetJSCifar10(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(16, 20, kernel_size=5, padding=2)
        self.conv3 = nn.Conv2d(20, 20, kernel_size=5, padding=2)
        self.fc = nn.Linear(20 * 4 * 4, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return self.fc(F.flatten(x, 1))


def convnetjs_cifar10(num_classes: int = 10, **kwargs) -> ConvNetJSCifar10:
    return ConvNetJSCifar10(num_classes=num_classes, **kwargs)
