"""Loss modules over F.cross_entropy, F.nll_loss and F.mse_loss."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..tensor import Tensor
from .module import Module

_REDUCTIONS = ("none", "mean", "sum")


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS} (got {reduction!r})")
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, reduction: str = "mean"):
        super().__init__(reduction)
        self.register_buffer("weight", weight)

    def _kwargs(self, **defaults_and_values: tuple[Any, Any]) -> dict[str, Any]:
        # only pass what differs from the default, so the functional sees the plain call in the common case
        kw = {k: v for k, (v, default) in defaults_and_values.items() if v != default}
        if self.weight is not None:
            kw["weight"] = self.weight
        return kw


class CrossEntropyLoss(_WeightedLoss):
    """log_softmax + nll over class dim 1; targets are class indices."""

    def __init__(self, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(weight, reduction)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002 - the PyTorch name
        kw = self._kwargs(ignore_index=(self.ignore_index, -100), reduction=(self.reduction, "mean"),
                          label_smoothing=(self.label_smoothing, 0.0))
        return F.cross_entropy(input, target, **kw)


class NLLLoss(_WeightedLoss):
    """Negative log likelihood of log-probabilities (N, C, ...) at class-index targets."""

    def __init__(self, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        kw = self._kwargs(ignore_index=(self.ignore_index, -100), reduction=(self.reduction, "mean"))
        return F.nll_loss(input, target, **kw)


class MSELoss(_Loss):
    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)
