"""LeNet-5 as in Caffe's MNIST example (LeCun et al. 1998, modernized).

Variant: the Caffe "lenet" widths (20 and 50 feature maps, 500 hidden units) on 28x28 input, with ReLU and
max pooling in place of the paper's scaled tanh and trainable subsampling, plus dropout(0.5) before the
output layer. The paper's 6-16-120-84 net on 32x32 input with Gaussian RBF outputs is not reproduced.
"""

from __future__ import annotations

import engine.functional as F
import engine.nn as nn


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)  # 28x28 -> 20@24x24, pool -> 12x12
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)  # -> 50@8x8, pool -> 4x4 = 800 features
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.flatten(x, 1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


def lenet5(num_classes: int = 10, **kwargs) -> LeNet5:
    return LeNet5(num_classes=num_classes, **kwargs)
