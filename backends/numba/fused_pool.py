"""numba kernels of conv2d_relu_pool and max_pool2d_tap_relu_grad (engine/ops/fused_pool.py).

``conv2d_relu_pool``: where the convolution runs as ``gemm-planes`` (float32, stride 1, groups 1: what the
heuristic picks for few output channels and taps, LeNet-5's conv1), one item per (image, pooled row) computes the
two conv rows of its windows into a per-thread buffer with the planes' register tile, adds the bias, applies the
ReLU and writes each window's max and winning tap: the conv output never reaches memory. Elsewhere the convolution
(the fused_conv2d kernel, its own algorithm) writes into scratch and one pass pools it. Both compute the same sums
as fused_conv2d + max_pool2d, so the pooled values are bit-identical to the unfused nodes'.

``max_pool2d_tap_relu_grad``: one pass over (n, c) planes writes the gradient at each window's winner (none
where the window's max was <= 0) and zeros elsewhere, with per-plane float64 sums for the bias gradient in the order
max_pool2d_relu_grad adds them (so the bias gradient is bit-identical too).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from engine.ops.fused_pool import NO_GRAD, conv_shape
from engine.primitive import Spec

from ._layout import by_size, serial_twin
from .conv.geometry import conv_attrs
from .conv.planes import MR, NR, _tile, prepare
from .conv.select import choose
from .conv.workspace import current_workspace, scratch
from .fused import fused_conv2d
from .gemm import KC
from .pool import _chunks
from .table import backend
from .window2x2 import close_plane, scatter_rows, window_tap


@njit(parallel=True, cache=True, error_model="numpy")
def _planes_relu_pool(xp, plane, w2, boff, bias, has_bias, pooled, tap, oh, wp, ybuf):
    """pooled[n, o, r, z], tap[n, o, r, z] of relu(conv + bias) per image: the register tile computes the
    image's output grid (oh rows of wp, the columns past the output width junk and never read) into ybuf[thread],
    rows of oh * wp, then one pass pools it from there (L2) instead of from memory. Panels run last to first: a
    panel that reaches past its row's end spills into the next row's first columns, which panel 0 then writes."""
    nn, no, ph, pw = pooled.shape
    k = boff.shape[0]
    nrt = w2.shape[0]
    ld = oh * wp
    npan = (ld + NR - 1) // NR
    x_addr, w_addr, b_addr = xp.ctypes.data, w2.ctypes.data, boff.ctypes.data
    zero = np.float32(0.0)
    for n in prange(nn):
        yt = ybuf[numba.get_thread_id()]
        y_addr = yt.ctypes.data
        for pan in range(npan - 1, -1, -1):
            for rt in range(nrt):
                for k0 in range(0, k, KC):
                    _tile(min(KC, k - k0), w_addr + (rt * k + k0) * MR * 4, 1, MR,
                          x_addr + (n * plane + pan * NR) * 4, b_addr + k0 * 8,
                          y_addr + (rt * MR * ld + pan * NR) * 4, ld, k0 > 0)
        y = yt[:nrt * MR * ld].reshape(nrt * MR, oh, wp)
        for o in range(no):
            bo = bias[o] if has_bias else zero
            for r in range(ph):
                for z in range(pw):
                    # fused_conv2d's epilogue (bias, then ReLU keeping NaN), then the pool's compare
                    a, b = y[o, 2 * r, 2 * z] + bo, y[o, 2 * r, 2 * z + 1] + bo
                    p, q = y[o, 2 * r + 1, 2 * z] + bo, y[o, 2 * r + 1, 2 * z + 1] + bo
                    a = zero if a < zero else a
                    b = zero if b < zero else b
                    p = zero if p < zero else p
                    q = zero if q < zero else q
                    m, w = window_tap(a, b, p, q)
                    pooled[n, o, r, z] = m
                    tap[n, o, r, z] = NO_GRAD if m <= zero else w


@njit(parallel=True, cache=True)
def pool_taps_2x2(y, pooled, tap):
    """pooled, tap = each 2x2 window's max and winning tap (see :func:`.window2x2.window_tap`)."""
    nn, nc, ph, pw = pooled.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for r in range(ph):
            for z in range(pw):
                m, w = window_tap(y[n, c, 2 * r, 2 * z], y[n, c, 2 * r, 2 * z + 1], y[n, c, 2 * r + 1, 2 * z],
                                  y[n, c, 2 * r + 1, 2 * z + 1])
                pooled[n, c, r, z] = m
                tap[n, c, r, z] = NO_GRAD if m <= 0 else w


@njit(parallel=True, cache=True)
def tap_relu_bwd_2x2(gp, tap, gy, part, nch):
    """gy = gp at each window's winning tap (nowhere where the tap is NO_GRAD), else 0; part[n*C + c] = the
    plane's sum, per column over rows then across columns, in float64 (the order of max_pool2d_relu_grad's
    kernel)."""
    nn, nc, _, _ = gy.shape
    _, _, ph, pw = gp.shape
    planes = nn * nc
    for k in prange(nch):
        col = np.empty(pw, np.float64)
        g = np.empty(pw, gy.dtype)
        zero = gy.dtype.type(0)
        for t in range(k * planes // nch, (k + 1) * planes // nch):
            n, c = t // nc, t % nc
            col[:] = 0
            for r in range(ph):
                taps = tap[n, c, r]
                for z in range(pw):
                    g[z] = zero if taps[z] == NO_GRAD else gp[n, c, r, z]
                for z in range(pw):
                    col[z] += g[z]
                scatter_rows(g, taps, gy[n, c, 2 * r], gy[n, c, 2 * r + 1])
            part[t] = close_plane(gy, n, c, 2 * ph, col)


_pool_taps_serial, _tap_relu_bwd_serial = serial_twin(pool_taps_2x2), serial_twin(tap_relu_bwd_2x2)


def _planes_applies(x: np.ndarray, w: np.ndarray, attrs: dict) -> bool:
    """float32, stride 1, groups 1 and the heuristic's algorithm for this conv is gemm-planes (so the sums are
    those of the unfused fused_conv2d)."""
    if not (x.dtype == w.dtype == np.float32 and attrs["stride"] == (1, 1) and attrs["groups"] == 1):
        return False
    return choose("forward", x.shape, w.shape, attrs, np.float32, None).algorithm == "gemm-planes"


@backend.register("conv2d_relu_pool")
def conv2d_relu_pool(*ins: np.ndarray, out: tuple, stride, padding, dilation, groups: int, has_bias: bool) -> None:
    x, w = ins[0], ins[1]
    b = ins[2] if has_bias else None
    pooled, tap = out
    attrs = conv_attrs(stride, padding, dilation, groups)
    if pooled.size == 0:
        return
    y_shape = conv_shape(*(Spec(a.shape, a.dtype) for a in ins), has_bias=has_bias, **attrs).shape
    if _planes_applies(x, w, attrs):
        flat, plane, w2, boff, wp, _ = prepare(x, w, attrs["dilation"], attrs["padding"], current_workspace())
        oh = y_shape[2]
        ybuf = current_workspace().per_thread("planes_pool_y", w2.shape[0] * MR * oh * wp + NR)
        _planes_relu_pool(flat, plane, w2, boff, np.ascontiguousarray(b) if b is not None else pooled.reshape(-1)[:1],
                          b is not None, pooled, tap, oh, wp, ybuf)
        return
    y = scratch("conv_relu_pool_y", y_shape, pooled.dtype)
    fused_conv2d(*ins, out=y, has_bias=has_bias, has_residual=False, activation="relu", **attrs)
    by_size(pool_taps_2x2, _pool_taps_serial, y.size)(y, pooled, tap)


@backend.register("max_pool2d_tap_relu_grad")
def max_pool2d_tap_relu_grad(gp: np.ndarray, tap: np.ndarray, out: tuple, y_shape, bias_grad: bool) -> None:
    gy = out[0]
    n, c = gy.shape[:2]
    part = np.empty(n * c, np.float64)
    by_size(tap_relu_bwd_2x2, _tap_relu_bwd_serial, gy.size)(np.ascontiguousarray(gp), tap, gy, part,
                                                             _chunks(gy.shape))
    if bias_grad:
        out[1][...] = part.reshape(n, c).sum(axis=0)
