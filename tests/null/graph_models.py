"""Small models built from engine.nn for the graph/compile tests (ResNet-style blocks, branches, BN variants)."""

from __future__ import annotations

import numpy as np

import engine
import engine.functional as F
from engine import nn


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine params, so folding actually changes numbers (at their
    identity init a BN is y = x / sqrt(1 + eps) and a wrong fold would go unnoticed)."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if not isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        if m.running_mean is not None:
            m.running_mean.data = (rng.standard_normal(m.num_features) * 0.2).astype(m.running_mean.dtype)
            m.running_var.data = (rng.random(m.num_features) + 0.5).astype(m.running_var.dtype)
        for p, center in ((m.weight, 1.0), (m.bias, 0.0)):
            if p is not None:
                p.data = (rng.standard_normal(m.num_features) * 0.3 + center).astype(p.dtype)
    return model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class TinyResNet(nn.Module):
    def __init__(self, num_classes: int = 5, dropout: float = 0.5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(self.drop(F.flatten(self.pool(x), 1)))


class BNVariants(nn.Module):
    """Conv with bias, grouped and depthwise convs, BN without affine, BN after linear, leaky ReLU."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(8, affine=False)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn3 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 6)
        self.bn4 = nn.BatchNorm1d(6)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.leaky_relu(self.bn2(self.grouped(x)), 0.1)
        x = F.silu(self.bn3(self.depthwise(x)))
        x = F.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return F.relu(self.bn4(self.fc(x)))


class Branchy(nn.Module):
    """Four branches that each expand to a big tensor and reduce it; the forward computes every expansion before
    any reduction, so the traced order has a high peak that a memory-aware schedule avoids."""

    def __init__(self, branches: int = 4):
        super().__init__()
        self.expand = nn.ModuleList([nn.Conv2d(4, 32, 3, padding=1) for _ in range(branches)])
        self.reduce = nn.ModuleList([nn.Conv2d(32, 2, 1) for _ in range(branches)])

    def forward(self, x):
        big = [F.relu(e(x)) for e in self.expand]
        return engine.functional.concat([r(b) for r, b in zip(self.reduce, big)], 1)


def inputs(shape, seed: int = 0) -> engine.Tensor:
    return engine.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
