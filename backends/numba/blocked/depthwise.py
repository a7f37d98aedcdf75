"""Depthwise ``blocked_conv2d`` (groups = C = O) on the numba backend: every output row of one channel block is
tiles of MRD output pixels through the register tile (:mod:`.tile`, one VL-lane vector FMA per tap and pixel),
read straight from the unpadded input plane.

No padded copy of the plane: an output row's valid kernel rows are a contiguous run of the tap table, so rows at
the top and bottom edges still run the wide tile over the interior columns (with fewer taps); only the pixels of
the left and right border columns (and the few interior ones left over after whole tiles) take the one-pixel tile,
once per valid kernel row. The layer is memory bound (a handful of FMAs per 64-byte vector it reads): the input
plane is read once, row after row, so the rows a tile needs are in L1. prange items are (image, channel block,
band of output rows); the epilogue (bias = folded BN, residual, clamp) runs on the accumulators.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..gemm import AVX512, VL
from .tile import make_blocked_tile

MRD = 12 if AVX512 else 6  # output pixels per tile: MRD accumulators + one weight vector + a load
_tile = make_blocked_tile(MRD, 1, depthwise=True)
_one = make_blocked_tile(1, 1, depthwise=True)
F32 = 4  # bytes per element: the tile takes byte addresses


@njit(cache=True)
def _bias_only(out, res, has_res, bias, lo, hi, n, cb, p):
    """out[n, cb, p] = clamp(bias + res) for a pixel that no tap reaches (padding wider than the kernel)."""
    for q in range(VL):
        v = bias[cb * VL + q] + (res[n, cb, p, q] if has_res else np.float32(0.0))
        out[n, cb, p, q] = min(max(v, lo), hi)


@njit(parallel=True, cache=True)
def depthwise(x, xcol, taps, wpk, bias, res, out, has_res, lo, hi, sh, sw, pt, pl, dh, dw, kh, kw, band):
    """out[n, cb, oy*OW + ox, :] = clamp(bias + sum_{i,j} x[n, cb, oy*sh - pt + i*dh, ox*sw - pl + j*dw, :] *
    w[cb, i*kw + j, :] + res) over the taps inside the input, for x (N, CB, H, W, VL), out / res (N, CB, OH*OW, VL),
    wpk (CB, kh*kw, VL), xcol[ox] = ox*sw*VL, taps[i*kw + j] = (i*dh*W + j*dw)*VL (int64, elements).
    ``band``: output rows per prange item."""
    nn, ncb, npix, _ = out.shape
    h, w = x.shape[2], x.shape[3]
    ow = xcol.shape[0]
    oh = npix // ow
    lo32, hi32 = np.float32(lo), np.float32(hi)
    # interior columns [ox0, ox1): every kernel column inside the input
    ox0 = min(ow, (pl + sw - 1) // sw)
    ox1 = max(ox0, min(ow, (w - 1 - (kw - 1) * dw + pl) // sw + 1))
    nband = (oh + band - 1) // band
    t_addr, col_addr = taps.ctypes.data, xcol.ctypes.data
    for t in prange(nn * ncb * nband):
        n = t // (ncb * nband)
        cb = (t // nband) % ncb
        bi = t % nband
        x_addr = x[n, cb].ctypes.data
        c_base = out[n, cb].ctypes.data
        r_base = res[n, cb].ctypes.data if has_res else c_base
        w_base = wpk[cb].ctypes.data
        b_addr = bias[cb * VL:].ctypes.data
        for oy in range(bi * band, min(oh, (bi + 1) * band)):
            iy = oy * sh - pt
            i0 = max(0, (dh - 1 - iy) // dh)  # the kernel rows inside the input: [i0, i1)
            i1 = min(kh, (h - 1 - iy) // dh + 1)
            if i1 <= i0:
                for ox in range(ow):
                    _bias_only(out, res, has_res, bias, lo32, hi32, n, cb, oy * ow + ox)
                continue
            row = x_addr + (iy * w - pl) * VL * F32  # the tap offsets and xcol[ox] add the rest
            k = (i1 - i0) * kw
            tp, wp = t_addr + i0 * kw * 8, w_base + i0 * kw * VL * F32
            c_row, r_row = c_base + oy * ow * VL * F32, r_base + oy * ow * VL * F32
            ox = ox0
            while ox + MRD <= ox1:
                _tile(k, row, col_addr + ox * 8, tp, wp, VL, c_row + ox * VL * F32, 0, r_row + ox * VL * F32,
                      b_addr, True, True, has_res, lo32, hi32)
                ox += MRD
            for q in range(ow - (ox - ox0)):  # the border columns and the interior ones left over
                p = q if q < ox0 else q + (ox - ox0)
                ix = p * sw - pl
                j0 = max(0, (dw - 1 - ix) // dw)
                j1 = min(kw, (w - 1 - ix) // dw + 1)
                c, r = c_row + p * VL * F32, r_row + p * VL * F32
                if j1 <= j0:
                    _bias_only(out, res, has_res, bias, lo32, hi32, n, cb, oy * ow + p)
                elif j0 == 0 and j1 == kw:
                    _one(k, row, col_addr + p * 8, tp, wp, VL, c, 0, r, b_addr, True, True, has_res, lo32, hi32)
                else:  # a partial kernel row each: the sums stay in the output pixel between the calls
                    for i in range(i0, i1):
                        e = i * kw + j0
                        _one(j1 - j0, row, col_addr + p * 8, t_addr + e * 8, w_base + e * VL * F32, VL, c, 0, r,
                             b_addr, i == i0, i == i1 - 1, has_res, lo32, hi32)
