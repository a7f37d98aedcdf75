"""numpy reference kernels: max/avg/adaptive pooling and their gradients.

Sliding-window pools loop over the kh*kw kernel taps, each tap one strided slice of the padded input covering
every output pixel at once; gradients scatter back the same way (an add into a strided slice per tap).
Adaptive pools are separable: the average is ``A_h @ x @ A_w^T`` with row-averaging matrices, the max is taken
along W then along H with a loop over output rows/columns (a handful), never over pixels.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.ops.pool import adaptive_windows

from .table import backend


def _tap(a: int, b: int, out_hw, stride, dilation) -> tuple[slice, slice, slice, slice]:
    """Index of kernel tap (a, b) for all output pixels: rows a*dh, a*dh + sh, ... of the padded input."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, stride, dilation
    r, c = a * dh, b * dw
    return np.s_[:, :, r : r + (ho - 1) * sh + 1 : sh, c : c + (wo - 1) * sw + 1 : sw]


def _padded(x: np.ndarray, kernel, out_hw, stride, padding, dilation, fill: float) -> np.ndarray:
    """x padded by (ph, pw) before and as much as the last (ceil-mode) window needs after."""
    pads = [(0, 0), (0, 0)]
    for size, k, o, s, p, d in zip(x.shape[2:], kernel, out_hw, stride, padding, dilation):
        need = (o - 1) * s + d * (k - 1) + 1
        pads.append((p, max(0, need - size - p)))
    if all(p == (0, 0) for p in pads):
        return x
    return np.pad(x, pads, constant_values=fill)


def _zeros_padded(shape, kernel, out_hw, stride, padding, dilation, dtype) -> tuple[np.ndarray, slice, slice]:
    """A zero gradient buffer shaped like :func:`_padded`'s result, and the index of the unpadded input in it."""
    n, c, h, w = shape
    dims, crop = [], []
    for size, k, o, s, p, d in zip((h, w), kernel, out_hw, stride, padding, dilation):
        need = (o - 1) * s + d * (k - 1) + 1
        dims.append(size + p + max(0, need - size - p))
        crop.append(slice(p, p + size))
    return np.zeros((n, c, *dims), dtype), crop[0], crop[1]


def _first_argmax(xp: np.ndarray, kernel, out_hw, stride, dilation) -> np.ndarray:
    """Index (a * kw + b) of the first maximal tap of every window, in row-major window order like PyTorch
    (np.argmax returns the first occurrence; a NaN counts as the maximum)."""
    (kh, kw), (ho, wo), (sh, sw), (dh, dw) = kernel, out_hw, stride, dilation
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw, ::dh, ::dw]  # (N, C, Ho, Wo, kh, kw)
    return np.argmax(win.reshape(win.shape[:4] + (kh * kw,)), axis=-1)


@backend.register("max_pool2d")
def max_pool2d(x: np.ndarray, out: np.ndarray, kernel, stride, padding, dilation, ceil_mode) -> None:
    out_hw = out.shape[2:]
    xp = _padded(x, kernel, out_hw, stride, padding, dilation, -np.inf)
    out[...] = xp[_tap(0, 0, out_hw, stride, dilation)]
    for t in range(1, kernel[0] * kernel[1]):
        np.maximum(out, xp[_tap(t // kernel[1], t % kernel[1], out_hw, stride, dilation)], out=out)


@backend.register("max_pool2d_grad")
def max_pool2d_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray, kernel, stride, padding, dilation,
                    ceil_mode) -> None:
    out_hw = gy.shape[2:]
    arg = _first_argmax(_padded(x, kernel, out_hw, stride, padding, dilation, -np.inf), kernel, out_hw, stride,
                        dilation)
    gxp, rows, cols = _zeros_padded(x.shape, kernel, out_hw, stride, padding, dilation, out.dtype)
    zero = gy.dtype.type(0)
    for t in range(kernel[0] * kernel[1]):
        gxp[_tap(t // kernel[1], t % kernel[1], out_hw, stride, dilation)] += np.where(arg == t, gy, zero)
    out[...] = gxp[:, :, rows, cols]


def _avg_divisor(in_hw, out_hw, kernel, stride, padding, count_include_pad: bool, divisor: int,
                 dtype) -> np.ndarray | float:
    """Per-output divisor (Ho, Wo), PyTorch's rule: a window is clipped to the padded input (input + padding on
    both sides) and counts padding only if count_include_pad; divisor > 0 overrides everything."""
    if divisor:
        return dtype.type(divisor)
    counts = []
    for size, o, k, s, p in zip(in_hw, out_hw, kernel, stride, padding):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, size)
        counts.append(end - start)
    return np.outer(counts[0], counts[1]).astype(dtype)


@backend.register("avg_pool2d")
def avg_pool2d(x: np.ndarray, out: np.ndarray, kernel, stride, padding, ceil_mode, count_include_pad,
               divisor) -> None:
    out_hw, dil = out.shape[2:], (1, 1)
    xp = _padded(x, kernel, out_hw, stride, padding, dil, 0.0)
    acc = xp[_tap(0, 0, out_hw, stride, dil)].copy()
    for t in range(1, kernel[0] * kernel[1]):
        acc += xp[_tap(t // kernel[1], t % kernel[1], out_hw, stride, dil)]
    out[...] = acc / _avg_divisor(x.shape[2:], out_hw, kernel, stride, padding, count_include_pad, divisor, x.dtype)


@backend.register("avg_pool2d_grad")
def avg_pool2d_grad(gy: np.ndarray, out: np.ndarray, input_shape, kernel, stride, padding, ceil_mode,
                    count_include_pad, divisor) -> None:
    out_hw, dil = gy.shape[2:], (1, 1)
    share = gy / _avg_divisor(input_shape[2:], out_hw, kernel, stride, padding, count_include_pad, divisor, gy.dtype)
    gxp, rows, cols = _zeros_padded(input_shape, kernel, out_hw, stride, padding, dil, out.dtype)
    for t in range(kernel[0] * kernel[1]):
        gxp[_tap(t // kernel[1], t % kernel[1], out_hw, stride, dil)] += share
    out[...] = gxp[:, :, rows, cols]


def _averaging_matrix(size: int, out: int, dtype) -> np.ndarray:
    """(out, size) matrix whose row i averages adaptive window i."""
    m = np.zeros((out, size), dtype)
    for i, (s, e) in enumerate(adaptive_windows(size, out)):
        m[i, s:e] = 1.0 / (e - s)
    return m


@backend.register("adaptive_avg_pool2d")
def adaptive_avg_pool2d(x: np.ndarray, out: np.ndarray, output_size) -> None:
    (oh, ow), (h, w) = output_size, x.shape[2:]
    out[...] = _averaging_matrix(h, oh, x.dtype) @ x @ _averaging_matrix(w, ow, x.dtype).T


@backend.register("adaptive_avg_pool2d_grad")
def adaptive_avg_pool2d_grad(gy: np.ndarray, out: np.ndarray, output_size, input_shape) -> None:
    (oh, ow), (h, w) = output_size, input_shape[2:]
    out[...] = _averaging_matrix(h, oh, gy.dtype).T @ gy @ _averaging_matrix(w, ow, gy.dtype)


def _adaptive_max(x: np.ndarray, output_size) -> tuple[np.ndarray, np.ndarray]:
    """Values and flat (h * W + w) indices of the first maximum (row-major) of every adaptive window.

    Separable: the max over each column window of every row, then the first row whose maximum is the largest.
    """
    (oh, ow), (n, c, h, w) = output_size, x.shape
    row_max = np.empty((n, c, h, ow), x.dtype)
    row_arg = np.empty((n, c, h, ow), np.intp)
    for j, (s, e) in enumerate(adaptive_windows(w, ow)):
        seg = x[..., s:e]
        row_arg[..., j] = np.argmax(seg, axis=-1)  # first max (or first NaN)
        row_max[..., j] = np.take_along_axis(seg, row_arg[..., j, None], -1)[..., 0]
        row_arg[..., j] += s
    vals = np.empty((n, c, oh, ow), x.dtype)
    idx = np.empty((n, c, oh, ow), np.intp)
    for i, (s, e) in enumerate(adaptive_windows(h, oh)):
        r = np.argmax(row_max[:, :, s:e], axis=2)[:, :, None]  # (N, C, 1, ow): first row holding the max
        vals[:, :, i] = np.take_along_axis(row_max[:, :, s:e], r, 2)[:, :, 0]
        idx[:, :, i] = (s + r[:, :, 0]) * w + np.take_along_axis(row_arg[:, :, s:e], r, 2)[:, :, 0]
    return vals, idx


@backend.register("adaptive_max_pool2d")
def adaptive_max_pool2d(x: np.ndarray, out: np.ndarray, output_size) -> None:
    out[...] = _adaptive_max(x, output_size)[0]


@backend.register("adaptive_max_pool2d_grad")
def adaptive_max_pool2d_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray, output_size) -> None:
    n, c, h, w = x.shape
    _, idx = _adaptive_max(x, output_size)
    # windows may overlap, so scatter with a sum: one bincount over (plane, pixel) pairs
    flat = idx.reshape(n * c, -1) + (np.arange(n * c) * (h * w))[:, None]
    out[...] = np.bincount(flat.ravel(), weights=gy.ravel(), minlength=n * c * h * w).reshape(x.shape)
