"""Pooling layers: max/avg (1-D and 2-D), LP, adaptive, global average and spatial pyramid pooling."""

from __future__ import annotations

from typing import Any

from .. import functional as F
from ..tensor import Tensor
from .module import Module


def _single(v: Any) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _strict(strict: bool) -> dict[str, bool]:
    # ``strict`` (an error instead of silently dropped input rows/columns) is only passed when asked for
    return {"strict": True} if strict else {}


class _MaxPoolNd(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False, strict: bool = False):
        super().__init__()
        if return_indices:
            raise ValueError(f"{type(self).__name__}: return_indices=True is not supported")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode, self.strict = return_indices, ceil_mode, strict

    def _kwargs(self) -> dict[str, Any]:
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation,
                    ceil_mode=self.ceil_mode, **_strict(self.strict))

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}" + (", strict=True" if self.strict else ""))


class MaxPool1d(_MaxPoolNd):
    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool1d(x, **self._kwargs())


class MaxPool2d(_MaxPoolNd):
    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, **self._kwargs())


class AvgPool1d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, strict: bool = False):
        super().__init__()
        # torch stores the 1-D pool's sizes as 1-tuples (and prints them so)
        self.kernel_size = _single(kernel_size)
        self.stride = _single(stride if stride is not None else kernel_size)
        self.padding = _single(padding)
        self.ceil_mode, self.count_include_pad, self.strict = ceil_mode, count_include_pad, strict

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                            count_include_pad=self.count_include_pad, **_strict(self.strict))

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return s + (", strict=True" if self.strict else "")


class AvgPool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None, strict: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode, self.strict = padding, ceil_mode, strict
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                            count_include_pad=self.count_include_pad, divisor_override=self.divisor_override,
                            **_strict(self.strict))

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return s + (", strict=True" if self.strict else "")


class LPPool2d(Module):
    """Power-average pooling: (sum over the window of x^p)^(1/p)."""

    def __init__(self, norm_type: float, kernel_size: Any, stride: Any = None, ceil_mode: bool = False):
        super().__init__()
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = norm_type, kernel_size, stride, ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        return F.lp_pool2d(x, self.norm_type, self.kernel_size, self.stride, ceil_mode=self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"ceil_mode={self.ceil_mode}")


class LPPool1d(LPPool2d):
    def forward(self, x: Tensor) -> Tensor:
        return F.lp_pool1d(x, self.norm_type, self.kernel_size, self.stride, ceil_mode=self.ceil_mode)


class WeightedAvgPool2d(Module):
    """Average pooling with Gaussian weights that fall off from the window centre (F.weighted_avg_pool2d)."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, sigma: float = 1.0):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.sigma = kernel_size, stride, padding, sigma

    def forward(self, x: Tensor) -> Tensor:
        return F.weighted_avg_pool2d(x, self.kernel_size, self.stride, self.padding, sigma=self.sigma)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, sigma={self.sigma}"


class AdaptiveAvgPool1d(Module):
    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool1d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool1d(AdaptiveAvgPool1d):
    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_max_pool1d(x, self.output_size)


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size: Any):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    def __init__(self, output_size: Any, return_indices: bool = False):
        super().__init__()
        if return_indices:
            raise ValueError("AdaptiveMaxPool2d: return_indices=True is not supported")
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_max_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(Module):
    """Mean over H and W, keeping (N, C, 1, 1) (torch: AdaptiveAvgPool2d(1))."""

    def forward(self, x: Tensor) -> Tensor:
        return F.global_avg_pool2d(x)


class SpatialPyramidPool(Module):
    """SPP-net: pool the feature map to each ``levels`` grid (n x n bins) and concatenate the flattened bins.

    Output (N, C * sum(n * n for n in levels)) for any input size.
    """

    def __init__(self, levels: Any = (1, 2, 4), mode: str = "max"):
        super().__init__()
        if mode not in ("max", "avg"):
            raise ValueError(f"SpatialPyramidPool: mode must be 'max' or 'avg' (got {mode!r})")
        self.levels, self.mode = tuple(levels), mode

    def forward(self, x: Tensor) -> Tensor:
        return F.spatial_pyramid_pool(x, self.levels, mode=self.mode)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"
