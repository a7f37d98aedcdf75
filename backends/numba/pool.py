"""numba kernels: max / avg / adaptive pooling and their gradients, parallel over (n, c) planes.

Each prange iteration owns one input plane of the gradient (or one output plane of the forward), so the
scatter of overlapping windows in the gradients needs no atomics. Window rules follow the reference
(PyTorch's): padding never wins a max, the max gradient goes to the first maximal tap in row-major order (a
later tap wins if strictly greater or NaN), avg divisors clip the window to the padded input, adaptive
windows are ``[floor(i*H/o), ceil((i+1)*H/o))``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import backend


@njit(parallel=True, cache=True)
def max_pool_fwd(x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    nn, nc, h, w = x.shape
    _, _, oh, ow = out.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for y in range(oh):
            for z in range(ow):
                best = -math.inf
                for i in range(kh):
                    ih = y * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = z * sw - pw + j * dw
                        if iw >= 0 and iw < w:
                            v = x[n, c, ih, iw]
                            if v > best or v != v:
                                best = v
                out[n, c, y, z] = best


@njit(parallel=True, cache=True)
def max_pool_bwd(gy, x, gx, kh, kw, sh, sw, ph, pw, dh, dw):
    nn, nc, h, w = x.shape
    _, _, oh, ow = gy.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for a in range(h):
            for b in range(w):
                gx[n, c, a, b] = 0
        for y in range(oh):
            for z in range(ow):
                best = -math.inf
                bi, bj = -1, -1  # tap 0 may be padding (-inf); a padding winner drops the gradient
                first = True
                for i in range(kh):
                    ih = y * sh - ph + i * dh
                    for j in range(kw):
                        iw = z * sw - pw + j * dw
                        inside = ih >= 0 and ih < h and iw >= 0 and iw < w
                        v = x[n, c, ih, iw] if inside else -math.inf
                        if first or v > best or v != v:
                            best = v
                            bi, bj = (ih, iw) if inside else (-1, -1)
                            first = False
                if bi >= 0:
                    gx[n, c, bi, bj] += gy[n, c, y, z]


@njit(cache=True)
def _avg_count(o, s, p, k, size, include_pad):
    start = o * s - p
    end = min(start + k, size + p)
    if not include_pad:
        start, end = max(start, 0), min(end, size)
    return end - start


@njit(parallel=True, cache=True, error_model="numpy")
def avg_pool_fwd(x, out, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    nn, nc, h, w = x.shape
    _, _, oh, ow = out.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for y in range(oh):
            ch = _avg_count(y, sh, ph, kh, h, include_pad)
            for z in range(ow):
                s = 0.0
                for i in range(kh):
                    ih = y * sh - ph + i
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = z * sw - pw + j
                        if iw >= 0 and iw < w:
                            s += x[n, c, ih, iw]
                d = divisor if divisor > 0 else ch * _avg_count(z, sw, pw, kw, w, include_pad)
                out[n, c, y, z] = s / d


@njit(parallel=True, cache=True, error_model="numpy")
def avg_pool_bwd(gy, gx, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    nn, nc, h, w = gx.shape
    _, _, oh, ow = gy.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for a in range(h):
            for b in range(w):
                gx[n, c, a, b] = 0
        for y in range(oh):
            ch = _avg_count(y, sh, ph, kh, h, include_pad)
            for z in range(ow):
                d = divisor if divisor > 0 else ch * _avg_count(z, sw, pw, kw, w, include_pad)
                share = gy[n, c, y, z] / d
                for i in range(kh):
                    ih = y * sh - ph + i
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = z * sw - pw + j
                        if iw >= 0 and iw < w:
                            gx[n, c, ih, iw] += share


@njit(cache=True)
def _window(i, size, out):
    return (i * size) // out, -(-((i + 1) * size) // out)


@njit(parallel=True, cache=True, error_model="numpy")
def adaptive_avg_fwd(x, out):
    nn, nc, h, w = x.shape
    _, _, oh, ow = out.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for y in range(oh):
            h0, h1 = _window(y, h, oh)
            for z in range(ow):
                w0, w1 = _window(z, w, ow)
                s = 0.0
                for a in range(h0, h1):
                    for b in range(w0, w1):
                        s += x[n, c, a, b]
                out[n, c, y, z] = s / ((h1 - h0) * (w1 - w0))


@njit(parallel=True, cache=True, error_model="numpy")
def adaptive_avg_bwd(gy, gx):
    nn, nc, h, w = gx.shape
    _, _, oh, ow = gy.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for a in range(h):
            for b in range(w):
                gx[n, c, a, b] = 0
        for y in range(oh):
            h0, h1 = _window(y, h, oh)
            for z in range(ow):
                w0, w1 = _window(z, w, ow)
                share = gy[n, c, y, z] / ((h1 - h0) * (w1 - w0))
                for a in range(h0, h1):
                    for b in range(w0, w1):
                        gx[n, c, a, b] += share


@njit(cache=True)
def _adaptive_argmax(x, n, c, h0, h1, w0, w1):
    """Row-major first maximum of a window (the first NaN if any): (value, row, col)."""
    best, ba, bb = x[n, c, h0, w0], h0, w0
    if best != best:
        return best, ba, bb
    for a in range(h0, h1):
        for b in range(w0, w1):
            v = x[n, c, a, b]
            if v != v:
                return v, a, b
            if v > best:
                best, ba, bb = v, a, b
    return best, ba, bb


@njit(parallel=True, cache=True)
def adaptive_max_fwd(x, out):
    nn, nc, h, w = x.shape
    _, _, oh, ow = out.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for y in range(oh):
            h0, h1 = _window(y, h, oh)
            for z in range(ow):
                w0, w1 = _window(z, w, ow)
                out[n, c, y, z] = _adaptive_argmax(x, n, c, h0, h1, w0, w1)[0]


@njit(parallel=True, cache=True)
def adaptive_max_bwd(gy, x, gx):
    nn, nc, h, w = x.shape
    _, _, oh, ow = gy.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for a in range(h):
            for b in range(w):
                gx[n, c, a, b] = 0
        for y in range(oh):
            h0, h1 = _window(y, h, oh)
            for z in range(ow):
                w0, w1 = _window(z, w, ow)
                _, a, b = _adaptive_argmax(x, n, c, h0, h1, w0, w1)
                gx[n, c, a, b] += gy[n, c, y, z]


def _c(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


@backend.register("max_pool2d")
def max_pool2d(x, out, kernel, stride, padding, dilation, ceil_mode) -> None:
    max_pool_fwd(_c(x), out, *kernel, *stride, *padding, *dilation)


@backend.register("max_pool2d_grad")
def max_pool2d_grad(gy, x, out, kernel, stride, padding, dilation, ceil_mode) -> None:
    max_pool_bwd(_c(gy), _c(x), out, *kernel, *stride, *padding, *dilation)


@backend.register("avg_pool2d")
def avg_pool2d(x, out, kernel, stride, padding, ceil_mode, count_include_pad, divisor) -> None:
    avg_pool_fwd(_c(x), out, *kernel, *stride, *padding, bool(count_include_pad), int(divisor))


@backend.register("avg_pool2d_grad")
def avg_pool2d_grad(gy, out, input_shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor) -> None:
    avg_pool_bwd(_c(gy), out, *kernel, *stride, *padding, bool(count_include_pad), int(divisor))


@backend.register("adaptive_avg_pool2d")
def adaptive_avg_pool2d(x, out, output_size) -> None:
    adaptive_avg_fwd(_c(x), out)


@backend.register("adaptive_avg_pool2d_grad")
def adaptive_avg_pool2d_grad(gy, out, output_size, input_shape) -> None:
    adaptive_avg_bwd(_c(gy), out)


@backend.register("adaptive_max_pool2d")
def adaptive_max_pool2d(x, out, output_size) -> None:
    adaptive_max_fwd(_c(x), out)


@backend.register("adaptive_max_pool2d_grad")
def adaptive_max_pool2d_grad(gy, x, out, output_size) -> None:
    adaptive_max_bwd(_c(gy), _c(x), out)
