"""Conv1d / Conv2d and ConvTranspose1d / ConvTranspose2d: thin modules over F.conv1d / F.conv2d /
F.conv_transpose1d / F.conv_transpose2d with PyTorch's parameters, init, ``padding_mode`` and repr."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .linear import reset_weight_and_bias
from .module import Module, Parameter


def _ntuple(v: Any, n: int, name: str, layer: str) -> tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    t = tuple(int(e) for e in v)
    if len(t) != n:
        raise ValueError(f"{layer}: {name} must be an int or a {n}-tuple (got {v!r})")
    return t


PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    _n = 2
    _transposed = False  # weight (in_channels, out_channels / groups, *k) instead of (out, in / groups, *k)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...],
                 stride: int | tuple[int, ...] = 1, padding: int | str | tuple[int, ...] = 0,
                 dilation: int | tuple[int, ...] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", strict: bool = False, dtype: Any = np.float32):
        super().__init__()
        name, n = type(self).__name__, self._n
        if groups <= 0:
            raise ValueError(f"{name}: groups must be a positive integer (got {groups})")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                             f"divisible by groups ({groups})")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {PADDING_MODES} (got {padding_mode!r})")
        if self._transposed and padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported (got {padding_mode!r})")
        if self._transposed and isinstance(padding, str):
            raise ValueError(f"{name}: padding must be an int or a {n}-tuple (got {padding!r})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _ntuple(kernel_size, n, "kernel_size", name)
        self.stride = _ntuple(stride, n, "stride", name)
        self.dilation = _ntuple(dilation, n, "dilation", name)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: invalid padding string {padding!r}, should be one of 'valid', 'same'")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided convolutions")
            self.padding: str | tuple[int, ...] = padding
        else:
            self.padding = _ntuple(padding, n, "padding", name)
        self.output_padding = (0,) * n
        self.transposed = False
        self.padding_mode = padding_mode
        self.strict = strict
        self._border = self._border_padding()
        channels = (in_channels, out_channels // groups) if self._transposed else (out_channels, in_channels // groups)
        shape = channels + self.kernel_size
        self.weight = Parameter(np.empty(shape, dtype))
        if bias:
            self.bias = Parameter(np.empty((out_channels,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_weight_and_bias(self.weight, self.bias)

    def _border_padding(self) -> tuple[int, ...]:
        """F.pad's (left, right) pairs, last axis first, for a padding_mode other than zeros (torch's
        ``_reversed_padding_repeated_twice``; 'same' puts the odd extra pixel after, as F.conv2d does)."""
        if self.padding == "valid":
            return (0, 0) * self._n
        if self.padding == "same":
            totals = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
            pairs = [(t // 2, t - t // 2) for t in totals]
        else:
            pairs = [(p, p) for p in self.padding]
        return tuple(v for pair in reversed(pairs) for v in pair)

    def _pad_input(self, x: Tensor) -> Tensor:
        return x if self.padding_mode == "zeros" else F.pad(x, self._border, mode=self.padding_mode)

    def _conv_kwargs(self) -> dict[str, Any]:
        padding = self.padding if self.padding_mode == "zeros" else 0  # the border is padded by _pad_input
        kw: dict[str, Any] = dict(stride=self.stride, padding=padding, dilation=self.dilation, groups=self.groups)
        if self.strict:
            kw["strict"] = True
        return kw

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._n:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.strict:
            s += ", strict=True"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L) input; weight (out_channels, in_channels / groups, k)."""

    _n = 1

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(self._pad_input(x), self.weight, self.bias, **self._conv_kwargs())


class Conv2d(_ConvNd):
    """2-D convolution over NCHW input; weight (out_channels, in_channels / groups, kh, kw).

    ``strict=True`` makes a stride that leaves input rows/columns unused an error instead of dropping them.
    """

    _n = 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self._pad_input(x), self.weight, self.bias, **self._conv_kwargs())


class _ConvTransposeNd(_ConvNd):
    """Transposed convolution (the gradient of a convolution w.r.t. its input); torch's argument order, with
    ``output_padding`` (extra rows/columns at the bottom/right, < stride) and ``output_size`` in forward."""

    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...],
                 stride: int | tuple[int, ...] = 1, padding: int | tuple[int, ...] = 0,
                 output_padding: int | tuple[int, ...] = 0, groups: int = 1, bias: bool = True,
                 dilation: int | tuple[int, ...] = 1, padding_mode: str = "zeros", dtype: Any = np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype=dtype)
        name = type(self).__name__
        self.output_padding = _ntuple(output_padding, self._n, "output_padding", name)
        if any(o >= s for o, s in zip(self.output_padding, self.stride)):  # F.conv_transpose2d's rule
            raise ValueError(f"{name}: output_padding must be smaller than the stride (got "
                             f"output_padding={self.output_padding}, stride={self.stride})")
        self.transposed = True

    def _output_padding(self, x: Tensor, output_size: Any) -> tuple[int, ...]:
        """The output_padding that gives ``output_size`` (spatial sizes, or the full shape), as torch's."""
        if output_size is None:
            return self.output_padding
        size = [int(v) for v in output_size][-self._n:]
        if len(size) != self._n:
            raise ValueError(f"{type(self).__name__}: output_size must have {self._n} or {self._n + 2} elements "
                             f"(got {list(output_size)})")
        pads = []
        for i, want in enumerate(size):
            lo = ((x.shape[2 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                  + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            hi = lo + self.stride[i] - 1
            if not lo <= want <= hi:
                raise ValueError(f"{type(self).__name__}: requested an output size of {size}, but valid sizes "
                                 f"along dim {2 + i} range from {lo} to {hi} (for an input of {list(x.shape)})")
            pads.append(want - lo)
        return tuple(pads)

    def _transpose_kwargs(self, x: Tensor, output_size: Any) -> dict[str, Any]:
        return dict(stride=self.stride, padding=self.padding, output_padding=self._output_padding(x, output_size),
                    groups=self.groups, dilation=self.dilation)


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution over (N, C, L); weight (in_channels, out_channels / groups, k)."""

    _n = 1

    def forward(self, x: Tensor, output_size: Any = None) -> Tensor:
        return F.conv_transpose1d(x, self.weight, self.bias, **self._transpose_kwargs(x, output_size))


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution over NCHW; weight (in_channels, out_channels / groups, kh, kw)."""

    _n = 2

    def forward(self, x: Tensor, output_size: Any = None) -> Tensor:
        return F.conv_transpose2d(x, self.weight, self.bias, **self._transpose_kwargs(x, output_size))
