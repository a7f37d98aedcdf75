"""Pooling: max/avg/adaptive pooling primitives with their gradient primitives, and the composites built on them.

Primitives (NCHW, attrs as in docs/engine.md):

- ``max_pool2d(x)`` / ``max_pool2d_grad(gy, x)``: ``kernel=(kh,kw)``, ``stride``, ``padding=(ph,pw)``
  (symmetric, at most half the kernel: PyTorch's rule), ``dilation``, ``ceil_mode``. Padding never wins a max;
  on ties the gradient goes to the first maximum in row-major window order, like PyTorch.
- ``avg_pool2d(x)`` / ``avg_pool2d_grad(gy)``: ``kernel``, ``stride``, ``padding``, ``ceil_mode``,
  ``count_include_pad``, ``divisor`` (0 = none, else PyTorch's ``divisor_override``); the grad adds
  ``input_shape``. The divisor of each window follows PyTorch exactly (with ``ceil_mode`` a window that runs
  past the right padding is clipped there before counting).
- ``adaptive_avg_pool2d(x)`` / ``adaptive_avg_pool2d_grad(gy)`` (``output_size=(oh,ow)``, grad adds
  ``input_shape``) and ``adaptive_max_pool2d(x)`` / ``adaptive_max_pool2d_grad(gy, x)``: window ``i`` along an
  axis of size ``H`` covers ``[floor(i*H/o), ceil((i+1)*H/o))`` (PyTorch's windows; they overlap when ``o`` does
  not divide ``H``).

The average-pool gradients are linear maps whose transposes are the forward pools, so they have vjp rules too;
the max-pool gradients do not (double backward through max pooling is not supported).

Composites: the 1-D pools, ``lp_pool1d/2d`` (torch's formula on top of avg_pool2d), ``weighted_avg_pool2d`` (a
depthwise conv2d with a constant Gaussian kernel), ``global_avg_pool2d`` (a mean) and ``spatial_pyramid_pool``
(adaptive pools, flattened and concatenated).

Costs: ``macs`` is 0; ``flops`` counts one comparison (max) or one add (avg; the final scaling counts as the
last add) per window element per output element: ``kh*kw - 1`` per output for max, ``kh*kw`` for avg, and
``kh*kw`` per incoming gradient element for the grads (re-finding the max / scaling, then one add each).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd import bind
from ..primitive import POOL, Cost, Spec, fail, primitive
from ..tensor import Tensor
from ._util import as_tuple
from .conv import check_strict, conv2d, conv_output_size
from .elementwise import abs as _abs
from .elementwise import pow as _pow
from .reduce import mean
from .shape import concat, flatten, reshape

__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "lp_pool1d", "lp_pool2d", "weighted_avg_pool2d",
           "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
           "global_avg_pool2d", "spatial_pyramid_pool"]


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pooling windows along one axis: ``[floor(i*size/out), ceil((i+1)*size/out))``."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


# --- shape-rule helpers ------------------------------------------------------------------------------------
def _check_input(op: str, x: Spec) -> None:
    if x.ndim != 4:
        fail(op, "input must be 4-D (N, C, H, W); use the 1-D variant for 3-D (N, C, L) input", input=list(x.shape))
    if x.dtype.kind != "f":
        fail(op, "input must be floating point", dtype=x.dtype.name)
    if min(x.shape[1:]) < 1:
        fail(op, "channels and spatial sizes must be >= 1", input=list(x.shape))


def _pool_out_hw(op: str, x: Spec, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                 dilation: tuple[int, int], ceil_mode: bool) -> tuple[int, int]:
    _check_input(op, x)
    if min(kernel) < 1:
        fail(op, "kernel size must be >= 1", kernel=kernel)
    if min(stride) < 1:
        fail(op, "stride must be >= 1", stride=stride)
    if min(dilation) < 1:
        fail(op, "dilation must be >= 1", dilation=dilation)
    if min(padding) < 0:
        fail(op, "padding must be non-negative", padding=padding)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        fail(op, "padding must be at most half the kernel size (PyTorch rule: pad <= kernel // 2)", padding=padding,
             kernel=kernel)
    out = tuple(conv_output_size(size, k, s, p, d, ceil_mode)
                for size, k, s, p, d in zip(x.shape[2:], kernel, stride, padding, dilation))
    if min(out) < 1:
        extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        fail(op, "output size must be >= 1: the (dilated) kernel is larger than the padded input",
             input=list(x.shape[2:]), kernel=kernel, dilated_kernel=extent, padding=padding, stride=stride,
             output=list(out))
    return out[0], out[1]


def _check_grad_input(op: str, gy: Spec, expected: tuple[int, ...]) -> None:
    if gy.shape != tuple(expected):
        fail(op, "gy must have the forward pool's output shape", gy=list(gy.shape), expected=list(expected))
    if gy.dtype.kind != "f":
        fail(op, "gy must be floating point", dtype=gy.dtype.name)


def _window_cost(taps: int, per: Spec, offset: int, ins: tuple[Spec, ...], outs: tuple[Spec, ...]) -> Cost:
    return Cost(0, per.size * max(taps + offset, 0), sum(s.nbytes for s in ins), sum(s.nbytes for s in outs))


# --- max_pool2d ----------------------------------------------------------------------------------------------
max_pool2d_p = primitive("max_pool2d", POOL)
max_pool2d_grad_p = primitive("max_pool2d_grad", POOL)


@max_pool2d_p.def_shape
def _max_pool2d_shape(x: Spec, *, kernel, stride, padding, dilation, ceil_mode) -> Spec:
    ho, wo = _pool_out_hw("max_pool2d", x, kernel, stride, padding, dilation, ceil_mode)
    return Spec(x.shape[:2] + (ho, wo), x.dtype)


@max_pool2d_grad_p.def_shape
def _max_pool2d_grad_shape(gy: Spec, x: Spec, *, kernel, stride, padding, dilation, ceil_mode) -> Spec:
    hw = _pool_out_hw("max_pool2d_grad", x, kernel, stride, padding, dilation, ceil_mode)
    _check_grad_input("max_pool2d_grad", gy, x.shape[:2] + hw)
    return x


max_pool2d_p.def_cost(lambda ins, outs, kernel, **a: _window_cost(math.prod(kernel), outs[0], -1, ins, outs))
max_pool2d_grad_p.def_cost(lambda ins, outs, kernel, **a: _window_cost(math.prod(kernel), ins[0], 0, ins, outs))
max_pool2d_p.def_vjp(lambda g, y, x, **attrs: (bind(max_pool2d_grad_p, g, x, **attrs),))


# --- avg_pool2d ----------------------------------------------------------------------------------------------
avg_pool2d_p = primitive("avg_pool2d", POOL)
avg_pool2d_grad_p = primitive("avg_pool2d_grad", POOL)


def _check_divisor(op: str, divisor: int) -> None:
    if not isinstance(divisor, int) or divisor < 0:
        fail(op, "divisor must be a non-negative int (0 = no divisor_override)", divisor=divisor)


@avg_pool2d_p.def_shape
def _avg_pool2d_shape(x: Spec, *, kernel, stride, padding, ceil_mode, count_include_pad, divisor) -> Spec:
    _check_divisor("avg_pool2d", divisor)
    ho, wo = _pool_out_hw("avg_pool2d", x, kernel, stride, padding, (1, 1), ceil_mode)
    return Spec(x.shape[:2] + (ho, wo), x.dtype)


@avg_pool2d_grad_p.def_shape
def _avg_pool2d_grad_shape(gy: Spec, *, input_shape, kernel, stride, padding, ceil_mode, count_include_pad,
                           divisor) -> Spec:
    _check_divisor("avg_pool2d_grad", divisor)
    x = Spec(tuple(input_shape), gy.dtype)
    hw = _pool_out_hw("avg_pool2d_grad", x, kernel, stride, padding, (1, 1), ceil_mode)
    _check_grad_input("avg_pool2d_grad", gy, x.shape[:2] + hw)
    return x


avg_pool2d_p.def_cost(lambda ins, outs, kernel, **a: _window_cost(math.prod(kernel), outs[0], 0, ins, outs))
avg_pool2d_grad_p.def_cost(lambda ins, outs, kernel, **a: _window_cost(math.prod(kernel), ins[0], 0, ins, outs))
avg_pool2d_p.def_vjp(lambda g, y, x, **attrs: (bind(avg_pool2d_grad_p, g, input_shape=x.shape, **attrs),))
# avg_pool2d_grad is the transpose of the (linear) avg_pool2d, so its own vjp is avg_pool2d again
avg_pool2d_grad_p.def_vjp(lambda g, gx, gy, input_shape, **attrs: (bind(avg_pool2d_p, g, **attrs),))


# --- adaptive pools --------------------------------------------------------------------------------------------
adaptive_avg_pool2d_p = primitive("adaptive_avg_pool2d", POOL)
adaptive_avg_pool2d_grad_p = primitive("adaptive_avg_pool2d_grad", POOL)
adaptive_max_pool2d_p = primitive("adaptive_max_pool2d", POOL)
adaptive_max_pool2d_grad_p = primitive("adaptive_max_pool2d_grad", POOL)


def _adaptive_out(op: str, x: Spec, output_size: tuple[int, int]) -> Spec:
    _check_input(op, x)
    if len(output_size) != 2 or min(output_size) < 1:
        fail(op, "output_size must be two ints >= 1", output_size=output_size)
    return Spec(x.shape[:2] + tuple(output_size), x.dtype)


@adaptive_avg_pool2d_p.def_shape
def _adaptive_avg_pool2d_shape(x: Spec, *, output_size) -> Spec:
    return _adaptive_out("adaptive_avg_pool2d", x, output_size)


@adaptive_max_pool2d_p.def_shape
def _adaptive_max_pool2d_shape(x: Spec, *, output_size) -> Spec:
    return _adaptive_out("adaptive_max_pool2d", x, output_size)


@adaptive_avg_pool2d_grad_p.def_shape
def _adaptive_avg_pool2d_grad_shape(gy: Spec, *, output_size, input_shape) -> Spec:
    x = Spec(tuple(input_shape), gy.dtype)
    _check_grad_input("adaptive_avg_pool2d_grad", gy, _adaptive_out("adaptive_avg_pool2d_grad", x, output_size).shape)
    return x


@adaptive_max_pool2d_grad_p.def_shape
def _adaptive_max_pool2d_grad_shape(gy: Spec, x: Spec, *, output_size) -> Spec:
    _check_grad_input("adaptive_max_pool2d_grad", gy, _adaptive_out("adaptive_max_pool2d_grad", x, output_size).shape)
    return x


def _adaptive_cost(x: Spec, ins: tuple[Spec, ...], outs: tuple[Spec, ...], output_size) -> Cost:
    """One comparison/add per window element: N * C * sum(window heights) * sum(window widths)."""
    (oh, ow), (h, w) = output_size, x.shape[2:]
    taps_h = sum(e - s for s, e in adaptive_windows(h, oh))
    taps_w = sum(e - s for s, e in adaptive_windows(w, ow))
    return Cost(0, x.shape[0] * x.shape[1] * taps_h * taps_w, sum(s.nbytes for s in ins),
                sum(s.nbytes for s in outs))


adaptive_avg_pool2d_p.def_cost(lambda ins, outs, output_size: _adaptive_cost(ins[0], ins, outs, output_size))
adaptive_max_pool2d_p.def_cost(lambda ins, outs, output_size: _adaptive_cost(ins[0], ins, outs, output_size))
adaptive_avg_pool2d_grad_p.def_cost(lambda ins, outs, output_size, input_shape:
                                    _adaptive_cost(outs[0], ins, outs, output_size))
adaptive_max_pool2d_grad_p.def_cost(lambda ins, outs, output_size: _adaptive_cost(ins[1], ins, outs, output_size))

adaptive_avg_pool2d_p.def_vjp(lambda g, y, x, output_size: (
    bind(adaptive_avg_pool2d_grad_p, g, output_size=output_size, input_shape=x.shape),))
adaptive_avg_pool2d_grad_p.def_vjp(lambda g, gx, gy, output_size, input_shape: (
    bind(adaptive_avg_pool2d_p, g, output_size=output_size),))
adaptive_max_pool2d_p.def_vjp(lambda g, y, x, output_size: (
    bind(adaptive_max_pool2d_grad_p, g, x, output_size=output_size),))


# --- functional API: primitives ------------------------------------------------------------------------------
def _stride(op: str, stride: Any, kernel: tuple[int, ...]) -> tuple[int, ...]:
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel
    return as_tuple(stride, len(kernel), "stride", op)


def _no_indices(op: str, return_indices: bool) -> None:
    if return_indices:
        raise NotImplementedError(f"{op}: return_indices=True is not supported; the gradient primitive "
                                  f"recomputes the argmax instead")


def _strict(op: str, x: Tensor, kernel, stride, padding, dilation, ceil_mode: bool) -> None:
    """strict=True in floor mode: the stride must not leave input rows/columns unused. (In ceil mode a last,
    partial window covers them.)"""
    if ceil_mode or x.ndim != 4:
        return
    for i, axis in enumerate(("height", "width")):
        if op.endswith("1d") and i == 0:
            continue
        check_strict(op, x.shape[2 + i], kernel[i], stride[i], (padding[i], padding[i]), dilation[i], axis)


def max_pool2d(input: Tensor, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
               padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, ceil_mode: bool = False,
               return_indices: bool = False, strict: bool = False) -> Tensor:
    """torch.nn.functional.max_pool2d; ``strict=True`` rejects strides that leave input rows/columns unused."""
    _no_indices("max_pool2d", return_indices)
    kernel = as_tuple(kernel_size, 2, "kernel_size", "max_pool2d")
    attrs = dict(kernel=kernel, stride=_stride("max_pool2d", stride, kernel),
                 padding=as_tuple(padding, 2, "padding", "max_pool2d"),
                 dilation=as_tuple(dilation, 2, "dilation", "max_pool2d"), ceil_mode=bool(ceil_mode))
    if strict:
        _strict("max_pool2d", input, **attrs)
    return bind(max_pool2d_p, input, **attrs)


def avg_pool2d(input: Tensor, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
               padding: int | tuple[int, int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None, strict: bool = False) -> Tensor:
    """torch.nn.functional.avg_pool2d; ``strict=True`` rejects strides that leave input rows/columns unused."""
    if divisor_override is not None and int(divisor_override) <= 0:
        fail("avg_pool2d", "divisor_override must be a positive int", divisor_override=divisor_override)
    kernel = as_tuple(kernel_size, 2, "kernel_size", "avg_pool2d")
    attrs = dict(kernel=kernel, stride=_stride("avg_pool2d", stride, kernel),
                 padding=as_tuple(padding, 2, "padding", "avg_pool2d"), ceil_mode=bool(ceil_mode))
    if strict:
        _strict("avg_pool2d", input, dilation=(1, 1), **attrs)
    return bind(avg_pool2d_p, input, count_include_pad=bool(count_include_pad), divisor=int(divisor_override or 0),
                **attrs)


def _output_size(op: str, output_size: Any, x: Tensor) -> tuple[int, int]:
    """int | (oh, ow) with None meaning "keep the input size" (as torch allows)."""
    size = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    if len(size) != 2:
        raise ValueError(f"{op}: output_size must be an int or a 2-tuple (got {output_size!r})")
    return tuple(int(x.shape[2 + i]) if s is None else int(s) for i, s in enumerate(size))


def adaptive_avg_pool2d(input: Tensor, output_size: int | tuple[int | None, int | None]) -> Tensor:
    if input.ndim != 4:
        fail("adaptive_avg_pool2d", "input must be 4-D (N, C, H, W)", input=list(input.shape))
    return bind(adaptive_avg_pool2d_p, input, output_size=_output_size("adaptive_avg_pool2d", output_size, input))


def adaptive_max_pool2d(input: Tensor, output_size: int | tuple[int | None, int | None],
                        return_indices: bool = False) -> Tensor:
    _no_indices("adaptive_max_pool2d", return_indices)
    if input.ndim != 4:
        fail("adaptive_max_pool2d", "input must be 4-D (N, C, H, W)", input=list(input.shape))
    return bind(adaptive_max_pool2d_p, input, output_size=_output_size("adaptive_max_pool2d", output_size, input))


# --- functional API: composites --------------------------------------------------------------------------------
def _as_2d(op: str, x: Tensor) -> Tensor:
    if x.ndim != 3:
        fail(op, "input must be 3-D (N, C, L)", input=list(x.shape))
    return reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2]))


def _from_2d(y: Tensor) -> Tensor:
    return reshape(y, (y.shape[0], y.shape[1], y.shape[3]))


def _one(op: str, v: Any, name: str) -> int:
    return as_tuple(v, 1, name, op)[0]


def max_pool1d(input: Tensor, kernel_size: int | tuple[int], stride: int | tuple[int] | None = None,
               padding: int | tuple[int] = 0, dilation: int | tuple[int] = 1, ceil_mode: bool = False,
               return_indices: bool = False, strict: bool = False) -> Tensor:
    _no_indices("max_pool1d", return_indices)
    k = _one("max_pool1d", kernel_size, "kernel_size")
    s = k if stride is None or stride == () else _one("max_pool1d", stride, "stride")
    p, d = _one("max_pool1d", padding, "padding"), _one("max_pool1d", dilation, "dilation")
    if strict and not ceil_mode and input.ndim == 3:
        check_strict("max_pool1d", input.shape[2], k, s, (p, p), d, "width")
    x = _as_2d("max_pool1d", input)
    return _from_2d(max_pool2d(x, (1, k), (1, s), (0, p), (1, d), ceil_mode))


def avg_pool1d(input: Tensor, kernel_size: int | tuple[int], stride: int | tuple[int] | None = None,
               padding: int | tuple[int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               strict: bool = False) -> Tensor:
    k = _one("avg_pool1d", kernel_size, "kernel_size")
    s = k if stride is None or stride == () else _one("avg_pool1d", stride, "stride")
    p = _one("avg_pool1d", padding, "padding")
    if strict and not ceil_mode and input.ndim == 3:
        check_strict("avg_pool1d", input.shape[2], k, s, (p, p), 1, "width")
    x = _as_2d("avg_pool1d", input)
    return _from_2d(avg_pool2d(x, (1, k), (1, s), (0, p), ceil_mode, count_include_pad))


def adaptive_avg_pool1d(input: Tensor, output_size: int | tuple[int]) -> Tensor:
    x = _as_2d("adaptive_avg_pool1d", input)
    return _from_2d(adaptive_avg_pool2d(x, (1, _one("adaptive_avg_pool1d", output_size, "output_size"))))


def adaptive_max_pool1d(input: Tensor, output_size: int | tuple[int], return_indices: bool = False) -> Tensor:
    _no_indices("adaptive_max_pool1d", return_indices)
    x = _as_2d("adaptive_max_pool1d", input)
    return _from_2d(adaptive_max_pool2d(x, (1, _one("adaptive_max_pool1d", output_size, "output_size"))))


def lp_pool2d(input: Tensor, norm_type: float, kernel_size: int | tuple[int, int],
              stride: int | tuple[int, int] | None = None, ceil_mode: bool = False) -> Tensor:
    """torch.nn.functional.lp_pool2d: ``(sum over the window of x**p) ** (1/p)``, as torch computes it
    (``avg_pool2d(x**p) * kh*kw``, then the 1/p power; p = inf is a max pool of ``|x|``)."""
    if norm_type == float("inf"):
        return max_pool2d(_abs(input), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == float("-inf"):
        return -max_pool2d(-_abs(input), kernel_size, stride, 0, 1, ceil_mode)
    if norm_type == 0:
        raise ValueError("lp_pool2d: norm_type must be non-zero")
    kernel = as_tuple(kernel_size, 2, "kernel_size", "lp_pool2d")
    out = avg_pool2d(_pow(input, float(norm_type)), kernel, stride, 0, ceil_mode)
    return _pow(out * float(math.prod(kernel)), 1.0 / float(norm_type))


def lp_pool1d(input: Tensor, norm_type: float, kernel_size: int | tuple[int], stride: int | tuple[int] | None = None,
              ceil_mode: bool = False) -> Tensor:
    k = _one("lp_pool1d", kernel_size, "kernel_size")
    s = k if stride is None or stride == () else _one("lp_pool1d", stride, "stride")
    return _from_2d(lp_pool2d(_as_2d("lp_pool1d", input), norm_type, (1, k), (1, s), ceil_mode))


def gaussian_window(kernel: tuple[int, int], sigma: float) -> np.ndarray:
    """(kh, kw) weights ``exp(-r^2 / (2 sigma^2))`` of the distance ``r`` to the window centre, summing to 1."""
    if not sigma > 0:
        fail("weighted_avg_pool2d", "sigma must be > 0", sigma=sigma)
    (kh, kw) = kernel
    i = np.arange(kh) - (kh - 1) / 2
    j = np.arange(kw) - (kw - 1) / 2
    w = np.exp(-(i[:, None] ** 2 + j[None, :] ** 2) / (2.0 * float(sigma) ** 2))
    return w / w.sum()


def weighted_avg_pool2d(x: Tensor, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
                        padding: int | tuple[int, int] = 0, sigma: float = 1.0) -> Tensor:
    """Distance-weighted average pooling: each window is averaged with Gaussian weights that fall off from its
    centre (:func:`gaussian_window`, normalized to sum 1; ``sigma=inf`` gives a plain average). Zero padding
    counts as data, like ``avg_pool2d(count_include_pad=True)``. A depthwise conv2d with a constant kernel."""
    if x.ndim != 4:
        fail("weighted_avg_pool2d", "input must be 4-D (N, C, H, W)", input=list(x.shape))
    kernel = as_tuple(kernel_size, 2, "kernel_size", "weighted_avg_pool2d")
    stride = _stride("weighted_avg_pool2d", stride, kernel)
    c = x.shape[1]
    w = np.broadcast_to(gaussian_window(kernel, sigma), (c, 1) + kernel).astype(x.dtype)
    return conv2d(x, x.new_tensor(w), None, stride, as_tuple(padding, 2, "padding", "weighted_avg_pool2d"), 1, c)


def global_avg_pool2d(x: Tensor) -> Tensor:
    """Mean over H and W, keeping them as size-1 axes: (N, C, H, W) -> (N, C, 1, 1)."""
    if x.ndim != 4:
        fail("global_avg_pool2d", "input must be 4-D (N, C, H, W)", input=list(x.shape))
    return mean(x, (2, 3), keepdims=True)


def spatial_pyramid_pool(x: Tensor, levels: tuple[int, ...] = (1, 2, 4), mode: str = "max") -> Tensor:
    """Spatial pyramid pooling (He et al. 2014): adaptive pools to l x l for each level, flattened and
    concatenated, so any input size gives (N, C * sum(l * l))."""
    if mode not in ("max", "avg"):
        raise ValueError(f"spatial_pyramid_pool: mode must be 'max' or 'avg' (got {mode!r})")
    if not levels:
        fail("spatial_pyramid_pool", "needs at least one level", levels=levels)
    pool = adaptive_max_pool2d if mode == "max" else adaptive_avg_pool2d
    return concat([flatten(pool(x, int(level)), 1) for level in levels], 1)
