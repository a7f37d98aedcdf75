"""EfficientNet-B0/B2 (Tan & Le 2019), torchvision.models.EfficientNet layout (v1 configs).

MBConv blocks: 1x1 expansion (SiLU) -> depthwise kxk conv (SiLU) -> squeeze-and-excitation (global average
pool, 1x1 conv down to in_channels/4, SiLU, 1x1 conv up, sigmoid gate) -> linear 1x1 projection; residual
when stride 1 and shape unchanged. B2 scales widths by 1.1 and depths by 1.2 (compound scaling) with dropout
0.3. Keys follow torchvision (`features.1.0.block.1.fc1.weight`, `classifier.1.weight`).
Variant decisions:
- Stochastic depth (drop a residual branch per sample with probability rising linearly to 0.2 over the
  blocks, Huang et al. 2016) is applied in training mode only; in eval mode it is the identity, as in
  torchvision. BatchNorm uses PyTorch's eps=1e-5, as torchvision's B0-B4 do (the TF original uses 1e-3).
- Initialization as torchvision: conv kaiming_normal(fan_out), BN 1/0, linear U(-1/sqrt(out), 1/sqrt(out)).
The default input resolution is 224 (B0) / 260 (B2); inputs down to 32x32 work (overall stride 32).
"""

from __future__ import annotations

import math

import engine.functional as F
import engine.nn as nn
from engine import init

from ._common import ConvNormActivation, init_conv_bn_, make_divisible


class StochasticDepth(nn.Module):
    """Per-sample ("row") drop of a residual branch in training: x * bernoulli(1 - p) / (1 - p)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        # a mask from a random key (not a draw in Python), so compiled graphs draw a fresh one per call
        keep = F.bernoulli_mask((x.shape[0],) + (1,) * (x.ndim - 1), survival, x.dtype.name, x.device)
        return x * (keep * (1.0 / survival)) if survival > 0 else x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SqueezeExcitation(nn.Module):
    """Channel attention (Hu et al. 2018): rescale each channel by a gate computed from global context."""

    def __init__(self, input_channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x):
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class MBConv(nn.Module):
    def __init__(self, expand_ratio: float, kernel: int, stride: int, input_channels: int, out_channels: int,
                 stochastic_depth_prob: float):
        super().__init__()
        self.use_res_connect = stride == 1 and input_channels == out_channels
        expanded = make_divisible(input_channels * expand_ratio, 8)
        layers: list[nn.Module] = []
        if expanded != input_channels:
            layers.append(ConvNormActivation(input_channels, expanded, kernel_size=1, activation=nn.SiLU))
        layers.append(ConvNormActivation(expanded, expanded, kernel_size=kernel, stride=stride, groups=expanded,
                                         activation=nn.SiLU))  # depthwise
        layers.append(SqueezeExcitation(expanded, max(1, input_channels // 4)))
        layers.append(ConvNormActivation(expanded, out_channels, kernel_size=1, activation=None))  # linear projection
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.out_channels = out_channels

    def forward(self, x):
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result) + x
        return result


# expand_ratio, kernel, stride, input_channels, out_channels, num_layers (B0, before width/depth scaling)
B0_STAGES = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


class EfficientNet(nn.Module):
    def __init__(self, width_mult: float = 1.0, depth_mult: float = 1.0, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2, num_classes: int = 1000,
                 in_channels: int = 3):
        super().__init__()
        stages = [(t, k, s, make_divisible(cin * width_mult, 8), make_divisible(cout * width_mult, 8),
                   int(math.ceil(n * depth_mult))) for t, k, s, cin, cout, n in B0_STAGES]
        stem = ConvNormActivation(in_channels, stages[0][3], kernel_size=3, stride=2, activation=nn.SiLU)
        layers: list[nn.Module] = [stem]
        total_blocks = sum(stage[5] for stage in stages)
        block_id = 0
        for t, k, s, cin, cout, n in stages:
            stage: list[nn.Module] = []
            for i in range(n):
                sd_prob = stochastic_depth_prob * block_id / total_blocks  # linear decay rule
                stage.append(MBConv(t, k, s if i == 0 else 1, cin if i == 0 else cout, cout, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = stages[-1][4]
        layers.append(ConvNormActivation(last_in, 4 * last_in, kernel_size=1, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(4 * last_in, num_classes))

        for m in self.modules():
            init_conv_bn_(m)
            if isinstance(m, nn.Linear):
                init_range = 1.0 / math.sqrt(m.out_features)
                init.uniform_(m.weight, -init_range, init_range)
                init.zeros_(m.bias)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(F.flatten(x, 1))


def efficientnet_b0(num_classes: int = 1000, **kwargs) -> EfficientNet:
    return EfficientNet(width_mult=1.0, depth_mult=1.0, dropout=kwargs.pop("dropout", 0.2),
                        num_classes=num_classes, **kwargs)


def efficientnet_b2(num_classes: int = 1000, **kwargs) -> EfficientNet:
    return EfficientNet(width_mult=1.1, depth_mult=1.2, dropout=kwargs.pop("dropout", 0.3),
                        num_classes=num_classes, **kwargs)
