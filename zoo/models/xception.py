"""Xception (Chollet 2017), the Keras Applications architecture (keras.applications.Xception).

Entry flow (conv 32/2, conv 64, three residual blocks to 728 channels), middle flow (8 residual blocks of
three 728-channel separable convs), exit flow (block to 1024, separable convs 1536 and 2048), global average
pooling, fc. Every separable conv is a depthwise 3x3 conv followed by a pointwise 1x1 conv, both without
bias (Keras SeparableConv2D(use_bias=False)), and is followed by BatchNorm.

Variant decisions:
- Module names follow the common PyTorch port (Cadene's pretrainedmodels / timm "legacy_xception": conv1,
  bn1, block1..block12 with `rep`/`skip`/`skipbn`, conv3, conv4, fc), so keys like
  `block1.rep.0.conv1.weight` match those ports. Keras' block2..block13 are our block1..block12 (Keras'
  block1 is our conv1/conv2, its block14 our conv3/conv4).
- Parameters: 22,855,952 trainable at 1000 classes. Keras reports 22,910,480 because it also counts the
  BatchNorm moving mean and variance (54,528 values); our running_mean/running_var buffers make up the same
  total (the parameter-count test includes them for this comparison).
- Max pools use Keras' "same" padding (TensorFlow puts the odd padding row at the bottom/right), and the
  residual branch reads the block input before its first ReLU, as in Keras (the Cadene port's in-place ReLU
  changed that). We return logits; Keras' final softmax belongs to the loss.
- BatchNorm uses Keras' eps=1e-3 and moving-average momentum 0.01 (Keras 0.99), not PyTorch's defaults.
- Inputs down to 71x71 (Keras' minimum); default 299x299.
Initialization: PyTorch defaults (Keras uses Glorot-uniform).
"""

from __future__ import annotations

import math

import engine.functional as F
import engine.nn as nn


def _bn(channels: int) -> nn.BatchNorm2d:
    # Keras' BatchNormalization defaults: epsilon 1e-3, moving averages decay 0.99 (PyTorch momentum 0.01)
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class SeparableConv2d(nn.Module):
    """Depthwise k x k conv (one filter per input channel) followed by a pointwise 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.conv1(x))


class MaxPool2dSame(nn.Module):
    """Max pooling with TensorFlow/Keras padding="same": output ceil(H / stride), extra padding at the end.

    TF pads `total = (out - 1) * stride + k - H` rows, `total // 2` before and the rest after. When the two
    differ (by one), ceil_mode lets the last window hang over the end, which is the same thing for max pooling.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def _padding(self, size: int) -> tuple[int, bool]:
        out = math.ceil(size / self.stride)
        total = max((out - 1) * self.stride + self.kernel_size - size, 0)
        before = total // 2
        return before, total - before != before

    def forward(self, x):
        (ph, ceil_h), (pw, ceil_w) = self._padding(x.shape[2]), self._padding(x.shape[3])
        if (ph, ceil_h) != (pw, ceil_w):
            raise ValueError(f"MaxPool2dSame: non-square inputs with different padding are not supported, "
                             f"got {x.shape[2]}x{x.shape[3]}")
        return F.max_pool2d(x, self.kernel_size, self.stride, padding=ph, ceil_mode=ceil_h)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding='same'"


class Block(nn.Module):
    """`reps` x (ReLU -> separable conv -> BN), then a 3x3/2 max pool when strided, plus a residual branch.

    The residual is the identity when shapes agree, else a strided 1x1 conv + BN. `grow_first` puts the
    channel change in the first (else the last) separable conv; the very first block has no leading ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, reps: int, stride: int = 1, start_with_relu: bool = True,
                 grow_first: bool = True):
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn = _bn(out_channels)
        else:
            self.skip = None
        rep: list[nn.Module] = []
        channels = in_channels
        if grow_first:
            rep += [nn.ReLU(), SeparableConv2d(in_channels, out_channels), _bn(out_channels)]
            channels = out_channels
        for _ in range(reps - 1):
            rep += [nn.ReLU(), SeparableConv2d(channels, channels), _bn(channels)]
        if not grow_first:
            rep += [nn.ReLU(), SeparableConv2d(in_channels, out_channels), _bn(out_channels)]
        if not start_with_relu:
            rep = rep[1:]
        if stride != 1:
            rep.append(MaxPool2dSame(3, stride))
        self.rep = nn.Sequential(*rep)

    def forward(self, x):
        residual = self.skipbn(self.skip(x)) if self.skip is not None else x
        return self.rep(x) + residual


class Xception(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        # entry flow
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=2, bias=False)
        self.bn1 = _bn(32)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = _bn(64)
        self.block1 = Block(64, 128, 2, 2, start_with_relu=False, grow_first=True)
        self.block2 = Block(128, 256, 2, 2, start_with_relu=True, grow_first=True)
        self.block3 = Block(256, 728, 2, 2, start_with_relu=True, grow_first=True)
        # middle flow: 8 identical residual blocks
        self.block4 = Block(728, 728, 3, 1)
        self.block5 = Block(728, 728, 3, 1)
        self.block6 = Block(728, 728, 3, 1)
        self.block7 = Block(728, 728, 3, 1)
        self.block8 = Block(728, 728, 3, 1)
        self.block9 = Block(728, 728, 3, 1)
        self.block10 = Block(728, 728, 3, 1)
        self.block11 = Block(728, 728, 3, 1)
        # exit flow
        self.block12 = Block(728, 1024, 2, 2, start_with_relu=True, grow_first=False)
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = _bn(1536)
        self.conv4 = SeparableConv2d(1536, 2048)
        self.bn4 = _bn(2048)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.block3(self.block2(self.block1(x)))
        for block in (self.block4, self.block5, self.block6, self.block7,
                      self.block8, self.block9, self.block10, self.block11):
            x = block(x)
        x = self.block12(x)
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.relu(self.bn4(self.conv4(x)))
        x = F.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.fc(x)


def xception(num_classes: int = 1000, **kwargs) -> Xception:
    return Xception(num_classes=num_classes, **kwargs)
