"""cuda kernels: max/avg/adaptive pooling (NCHW) and their gradients.

Forward: one thread per output element walks its window. Gradients are gathers, not scatters: one thread per
input element visits the (few) windows that contain it and adds their share in the reference's tap order, so no
two threads write one element and results never depend on scheduling. Max-pool gradients recompute each window's
first maximal tap (row-major, NaN counts as the maximum, padding as -inf) instead of storing indices.
"""

from __future__ import annotations

import math
from typing import Any

from numba import cuda

from .launch import grid
from .table import backend
from .views import unravel4


@cuda.jit(device=True)
def _better(v, best):
    """Whether v replaces best in a first-maximum scan (a NaN best is never replaced, a NaN v always wins)."""
    return best == best and (v > best or v != v)


@cuda.jit(device=True)
def _tap(x, n, c, h, w):
    if 0 <= h < x.shape[2] and 0 <= w < x.shape[3]:
        return x[n, c, h, w]
    return -math.inf


@cuda.jit(device=True)
def _argtap(x, n, c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw):
    """Row-major index (a * kw + b) of the first maximal tap of window (oh, ow)."""
    best, arg = _tap(x, n, c, oh * sh - ph, ow * sw - pw), 0
    for t in range(1, kh * kw):
        v = _tap(x, n, c, oh * sh - ph + (t // kw) * dh, ow * sw - pw + (t % kw) * dw)
        if _better(v, best):
            best, arg = v, t
    return arg


@cuda.jit
def max_pool4(x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, c, oh, ow = unravel4(e, out.shape)
        best = _tap(x, n, c, oh * sh - ph, ow * sw - pw)
        for t in range(1, kh * kw):
            v = _tap(x, n, c, oh * sh - ph + (t // kw) * dh, ow * sw - pw + (t % kw) * dw)
            if _better(v, best):
                best = v
        out[n, c, oh, ow] = best


@cuda.jit(device=True)
def _window(i, s, p, a, d, o):
    """The output index whose window has tap a at input index i (stride s, padding p, dilation d), or -1."""
    t = i + p - a * d
    if t < 0 or t % s != 0 or t // s >= o:
        return -1
    return t // s


@cuda.jit
def max_pool4_grad(gy, x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    ho, wo = gy.shape[2], gy.shape[3]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, c, i, j = unravel4(e, out.shape)
        acc = 0.0
        for t in range(kh * kw):
            oh = _window(i, sh, ph, t // kw, dh, ho)
            ow = _window(j, sw, pw, t % kw, dw, wo)
            if oh >= 0 and ow >= 0 and _argtap(x, n, c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw) == t:
                acc += gy[n, c, oh, ow]
        out[n, c, i, j] = acc


@cuda.jit(device=True)
def _avg_divisor(oh, ow, h, w, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    """PyTorch's divisor: the window clipped to the padded input, counting padding only if include_pad."""
    if divisor > 0:
        return divisor
    h0, w0 = oh * sh - ph, ow * sw - pw
    h1, w1 = min(h0 + kh, h + ph), min(w0 + kw, w + pw)
    if not include_pad:
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
    return (h1 - h0) * (w1 - w0)


@cuda.jit
def avg_pool4(x, out, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    h, w = x.shape[2], x.shape[3]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, c, oh, ow = unravel4(e, out.shape)
        acc = 0.0
        for t in range(kh * kw):
            i, j = oh * sh - ph + t // kw, ow * sw - pw + t % kw
            if 0 <= i < h and 0 <= j < w:
                acc += x[n, c, i, j]
        out[n, c, oh, ow] = acc / _avg_divisor(oh, ow, h, w, kh, kw, sh, sw, ph, pw, include_pad, divisor)


@cuda.jit
def avg_pool4_grad(gy, out, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    h, w, ho, wo = out.shape[2], out.shape[3], gy.shape[2], gy.shape[3]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, c, i, j = unravel4(e, out.shape)
        acc = 0.0
        for t in range(kh * kw):
            oh = _window(i, sh, ph, t // kw, 1, ho)
            ow = _window(j, sw, pw, t % kw, 1, wo)
            if oh >= 0 and ow >= 0:
                acc += gy[n, c, oh, ow] / _avg_divisor(oh, ow, h, w, kh, kw, sh, sw, ph, pw, include_pad, divisor)
        out[n, c, i, j] = acc


def _geometry(kernel, stride, padding, dilation=(1, 1)) -> tuple[int, ...]:
    return (*map(int, kernel), *map(int, stride), *map(int, padding), *map(int, dilation))


@backend.register("max_pool2d")
def max_pool2d(x: Any, out: Any, kernel, stride, padding, dilation, ceil_mode) -> None:
    if out.size:
        max_pool4[grid(out.size)](x, out, *_geometry(kernel, stride, padding, dilation))


@backend.register("max_pool2d_grad")
def max_pool2d_grad(gy: Any, x: Any, out: Any, kernel, stride, padding, dilation, ceil_mode) -> None:
    if out.size:
        max_pool4_grad[grid(out.size)](gy, x, out, *_geometry(kernel, stride, padding, dilation))


@backend.register("avg_pool2d")
def avg_pool2d(x: Any, out: Any, kernel, stride, padding, ceil_mode, count_include_pad, divisor) -> None:
    if out.size:
        avg_pool4[grid(out.size)](x, out, *_geometry(kernel, stride, padding)[:6], bool(count_include_pad),
                                  int(divisor or 0))


@backend.register("avg_pool2d_grad")
def avg_pool2d_grad(gy: Any, out: Any, input_shape, kernel, stride, padding, ceil_mode, count_include_pad,
                    divisor) -> None:
    if out.size:
        avg_pool4_grad[grid(out.size)](gy, out, *_geometry(kernel, stride, padding)[:6], bool(count_include_pad),
                                       int(divisor or 0))


# --- adaptive pooling: window i along an axis of `size` is [floor(i*size/o), ceil((i+1)*size/o)) -----------------
@cuda.jit(device=True)
def _lo(i, size, o):
    return (i * size) // o


@cuda.jit(device=True)
def _hi(i, size, o):
    return ((i + 1) * size + o - 1) // o


@cuda.jit
def adaptive_pool4(x, out, is_max):
    h, w, ho, wo = x.shape[2], x.shape[3], out.shape[2], out.shape[3]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, c, oh, ow = unravel4(e, out.shape)
        h0, h1, w0, w1 = _lo(oh, h, ho), _hi(oh, h, ho), _lo(ow, w, wo), _hi(ow, w, wo)
        acc = x[n, c, h0, w0]
        if is_max:
            for i in range(h0, h1):
                for j in range(w0, w1):
                    if _better(x[n, c, i, j], acc):
                        acc = x[n, c, i, j]
            out[n, c, oh, ow] = acc
        else:
            acc = 0.0
            for i in range(h0, h1):
                for j in range(w0, w1):
                    acc += x[n, c, i, j]
            out[n, c, oh, ow] = acc / ((h1 - h0) * (w1 - w0))


@cuda.jit(device=True)
def _adaptive_argmax(x, n, c, h0, h1, w0, w1):
    """Flat (i * W + j) index of the first maximum (row-major) of the window."""
    best, arg = x[n, c, h0, w0], h0 * x.shape[3] + w0
    for i in range(h0, h1):
        for j in range(w0, w1):
            if _better(x[n, c, i, j], best):
                best, arg = x[n, c, i, j], i * x.shape[3] + j
    return arg


@cuda.jit
def adaptive_pool4_grad(gy, x, out, is_max):
    h, w, ho, wo = out.shape[2], out.shape[3], gy.shape[2], gy.shape[3]
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        n, c, i, j = unravel4(e, out.shape)
        acc = 0.0
        for oh in range((i * ho) // h, min(ho, ((i + 1) * ho + h - 1) // h)):
            h0, h1 = _lo(oh, h, ho), _hi(oh, h, ho)
            if not h0 <= i < h1:
                continue
            for ow in range((j * wo) // w, min(wo, ((j + 1) * wo + w - 1) // w)):
                w0, w1 = _lo(ow, w, wo), _hi(ow, w, wo)
                if not w0 <= j < w1:
                    continue
                if is_max:
                    if _adaptive_argmax(x, n, c, h0, h1, w0, w1) == i * w + j:
                        acc += gy[n, c, oh, ow]
                else:
                    acc += gy[n, c, oh, ow] / ((h1 - h0) * (w1 - w0))
        out[n, c, i, j] = acc


@backend.register("adaptive_avg_pool2d")
def adaptive_avg_pool2d(x: Any, out: Any, output_size) -> None:
    if out.size:
        adaptive_pool4[grid(out.size)](x, out, False)


@backend.register("adaptive_max_pool2d")
def adaptive_max_pool2d(x: Any, out: Any, output_size) -> None:
    if out.size:
        adaptive_pool4[grid(out.size)](x, out, True)


@backend.register("adaptive_avg_pool2d_grad")
def adaptive_avg_pool2d_grad(gy: Any, out: Any, output_size, input_shape) -> None:
    if out.size:
        adaptive_pool4_grad[grid(out.size)](gy, gy, out, False)  # x is not read by the average's gradient


@backend.register("adaptive_max_pool2d_grad")
def adaptive_max_pool2d_grad(gy: Any, x: Any, out: Any, output_size) -> None:
    if out.size:
        adaptive_pool4_grad[grid(out.size)](gy, x, out, True)
