"""Building blocks shared by several zoo models (torchvision names, so state_dict keys match)."""

from __future__ import annotations

from collections.abc import Callable

import engine.functional as F
import engine.nn as nn
from engine import init


def init_conv_bn_(m: nn.Module) -> bool:
    """torchvision's conv/BN init: Kaiming-normal (fan_out, ReLU gain) conv weights, zero conv bias, BN = (1, 0).
    Returns whether ``m`` was a Conv2d or BatchNorm2d, so callers add only their own Linear rule."""
    if isinstance(m, nn.Conv2d):
        init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            init.zeros_(m.bias)
        return True
    if isinstance(m, nn.BatchNorm2d):
        init.ones_(m.weight)
        init.zeros_(m.bias)
        return True
    return False


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never going more than 10% down (MobileNet/EfficientNet)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ReLU6(nn.Module):
    """min(max(x, 0), 6): MobileNetV2's activation (robust under low-precision inference)."""

    def forward(self, x):
        return F.clamp(x, 0.0, 6.0)


class ConvNormActivation(nn.Sequential):
    """conv -> BatchNorm -> activation as one Sequential, like torchvision.ops.Conv2dNormActivation.

    Keys are `<name>.0.weight` (conv, no bias: the BN shift replaces it) and `<name>.1.weight` (BN).
    "Same" padding for odd kernels; `activation=None` gives a linear (projection) layer.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 activation: Callable[[], nn.Module] | None = nn.ReLU):
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                            bias=False),
                  nn.BatchNorm2d(out_channels)]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.out_channels = out_channels


def loss_with_aux(outputs, target, criterion: Callable | None = None, aux_weight: float = 0.3):
    """Training loss of a model with auxiliary classifiers: loss(logits) + aux_weight * sum(loss(aux)).

    GoogLeNet (Szegedy et al. 2014, sec. 5) adds each auxiliary loss "with a discount weight (the losses of
    the auxiliary classifiers were weighted by 0.3)". Accepts a plain logits tensor (eval mode, or a model
    without auxiliary heads), GoogLeNetOutputs(logits, aux2, aux1) or InceptionOutputs(logits, aux);
    `None` entries (heads disabled) are skipped. `criterion(logits, target)` defaults to F.cross_entropy.
    """
    criterion = F.cross_entropy if criterion is None else criterion
    if not isinstance(outputs, tuple):
        return criterion(outputs, target)
    logits, *aux = outputs
    loss = criterion(logits, target)
    for a in aux:
        if a is not None:
            loss = loss + aux_weight * criterion(a, target)
    return loss


def main_logits(outputs):
    """The main classifier's logits from either a tensor or a (logits, *aux) named tuple."""
    return outputs[0] if isinstance(outputs, tuple) else outputs
