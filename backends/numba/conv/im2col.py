"""im2col + GEMM (the float64 path, and a forcible float32 candidate): the im2col matrix ``cols (C*kh*kw,
N*Ho*Wo)`` (one column per output pixel of the whole batch), its transpose col2im, and the channels-first pack
that is a 1x1 layer's whole im2col. The GEMMs themselves run in the drivers (:mod:`.drivers`)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .geometry import geom, is_pointwise, valid_range
from .workspace import scratch

SMALL_PLANE = 256  # output planes below this many pixels use im2col_planes

@njit(cache=True, inline="always")
def _col_row(dst, plane, ih, lo, hi, s0, sw):
    """One output row of an im2col row: dst[z] = plane[ih, s0 + (z - lo)*sw] for z in [lo, hi), 0 elsewhere and
    everywhere when row ``ih`` is padding. Explicit loops: slice assignment cost more than these short rows."""
    if ih < 0 or ih >= plane.shape[0]:
        for z in range(dst.shape[0]):
            dst[z] = 0
        return
    for z in range(lo):
        dst[z] = 0
    for z in range(hi, dst.shape[0]):
        dst[z] = 0
    seg = dst[lo:hi]
    if sw == 1:
        src = plane[ih, s0:s0 + hi - lo]
        for k in range(hi - lo):
            seg[k] = src[k]
    else:
        src = plane[ih]
        for k in range(hi - lo):
            seg[k] = src[s0 + k * sw]


@njit(parallel=True, cache=True)
def im2col(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """cols[(c*kh + i)*kw + j, n*Ho*Wo + y*Wo + z] = x[n, c, y*sh + i*dh - pt, z*sw + j*dw - pl] (0 outside), one
    thread per (row of cols, image): each writes one contiguous stretch (best for large planes)."""
    nn, nc, h, w = x.shape
    npix = oh * ow
    for t in prange(nc * kh * kw * nn):
        ck, n = t // nn, t % nn
        c, i, j = ck // (kh * kw), (ck // kw) % kh, ck % kw
        lo, hi = valid_range(j * dw - pl, sw, w, ow)
        s0 = lo * sw + j * dw - pl
        crow = cols[ck, n * npix:(n + 1) * npix]
        for y in range(oh):
            _col_row(crow[y * ow:(y + 1) * ow], x[n, c], y * sh + i * dh - pt, lo, hi, s0, sw)


@njit(parallel=True, cache=True)
def im2col_planes(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """:func:`im2col` with one thread per input plane (n, c) writing its kh*kw rows: for small planes the
    per-thread setup of :func:`im2col` dominates (LeNet conv2, 12x12 -> 8x8, batch 64: 1.58 -> 1.16 ms; 7x7x512
    batch 8: 1.94 -> 1.38 ms), for large ones its one-stretch-per-thread order writes better (56x56: 2.5 vs 2.9)."""
    nn, nc, h, w = x.shape
    npix = oh * ow
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        for i in range(kh):
            for j in range(kw):
                lo, hi = valid_range(j * dw - pl, sw, w, ow)
                s0 = lo * sw + j * dw - pl
                crow = cols[(c * kh + i) * kw + j, n * npix:(n + 1) * npix]
                for y in range(oh):
                    _col_row(crow[y * ow:(y + 1) * ow], x[n, c], y * sh + i * dh - pt, lo, hi, s0, sw)


@njit(parallel=True, cache=True)
def col2im(cols, gx, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):
    """The transpose of :func:`im2col`: gx[n, c] = sum of the columns that read it (one thread per plane). Plain
    2-D indexing per output row: a row view and a helper call per row cost more than the adds on short rows
    (LeNet conv2 1.13 -> 0.94 ms, 3x3/2 32x32x64 b32 5.78 -> 2.00, 7x7x512 b8 1.30 -> 0.95)."""
    nn, nc, h, w = gx.shape
    npix = oh * ow
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        g = gx[n, c]
        g[:, :] = 0
        for i in range(kh):
            for j in range(kw):
                crow = cols[(c * kh + i) * kw + j]
                lo, hi = valid_range(j * dw - pl, sw, w, ow)
                s0 = lo * sw + j * dw - pl
                for y in range(oh):
                    ih = y * sh + i * dh - pt
                    if ih < 0 or ih >= h:
                        continue
                    b = n * npix + y * ow + lo
                    if sw == 1:
                        for k in range(hi - lo):
                            g[ih, s0 + k] += crow[b + k]
                    else:
                        for k in range(hi - lo):
                            g[ih, s0 + k * sw] += crow[b + k]


@njit(parallel=True, cache=True)
def pack_channels_first(y, yt):
    """yt[o, n*P + p] = y[n, o, p]: (N, O, P) -> (O, N*P)."""
    nn, no, npix = y.shape
    for t in prange(no * nn):
        o, n = t // nn, t % nn
        for p in range(npix):
            yt[o, n * npix + p] = y[n, o, p]


def im2col_matrix(x: np.ndarray, kernel, oh: int, ow: int, stride, padding, dilation) -> np.ndarray:
    """The (C*kh*kw, N*Ho*Wo) im2col matrix in the workspace; for a 1x1 kernel without padding it is just the
    channels-first pack (N, C, P) -> (C, N*P): no kh*kw expansion. Always recomputed: a cached matrix would have to
    remember x, and an arena buffer or a caller's array may hold new data under the same identity."""
    kh, kw = kernel
    n, c, h, w = x.shape
    cols = scratch("cols", (c * kh * kw, n * oh * ow), x.dtype)
    x = np.ascontiguousarray(x)
    if is_pointwise(kernel, stride, (oh, ow), (h, w)):
        pack_channels_first(x.reshape(n, c, h * w), cols)
    else:
        (im2col_planes if oh * ow < SMALL_PLANE else im2col)(x, cols, kh, kw, *geom(stride, padding, dilation), oh, ow)
    return cols


def pack_gy(gy: np.ndarray) -> np.ndarray:
    """gy (N, O, Ho, Wo) as (O, N*Ho*Wo) in the workspace."""
    n, o, oh, ow = gy.shape
    gyt = scratch("gyt", (o, n * oh * ow), gy.dtype)
    pack_channels_first(np.ascontiguousarray(gy).reshape(n, o, oh * ow), gyt)
    return gyt
