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
_tile4 = make_blocked_tile(4, 1, depthwise=True)  # the interior pixels left over after whole MRD tiles
_one = make_blocked_tile(1, 1, depthwise=True)
F32 = 4  # bytes per element: the tile takes byte addresses


@njit(cache=True)
def _bias_only(out, res, has_res, bias, lo, hi, n, cb, p):
    """out[n, cb, p] = clamp(bias + res) for a pixel that no tap reaches (padding wider than the kernel)."""
    for q in range(VL):
        v = bias[cb * VL + q] + (res[n, cb, p, q] if has_res else np.float32(0.0))
        out[n, cb, p, q] = min(max(v, lo), hi)


@njit(parallel=True, cache=True)
def depthwise(x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, out, has_res, lo, hi, sh, pt, dh, kh, kw, ox0, ox1,
              band):
    """out[n, cb, oy*OW + ox, :] = clamp(bias + sum_{i,j} x[n, cb, oy*sh - pt + i*dh, ox*sw - pl + j*dw, :] *
    w[cb, i*kw + j, :] + res) over the taps inside the input, for x (N, CB, H, W, VL), out / res (N, CB, OH*OW, VL),
    wpk (CB, kh*kw, VL), taps[i*kw + j] = (i*dh*W + j*dw)*VL and xcol[ox] = (ox*sw - pl)*VL (int64, elements).
    Columns [ox0, ox1) have every kernel column inside the input; a border column ox has class c = ccls[ox] (-1:
    no kernel column inside) whose kernel columns inside are the run j0 .. j0 + cn[c]: ctaps[c, i*cn[c] + j'] and
    cwpk[c, cb, i*cn[c] + j'] the tap and weights of kernel column j0 + j' (:func:`column_classes`). ``band``:
    output rows per prange item."""
    nn, ncb, npix, _ = out.shape
    h, w = x.shape[2], x.shape[3]
    ow = xcol.shape[0]
    oh = npix // ow
    lo32, hi32 = np.float32(lo), np.float32(hi)
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
            row = x_addr + iy * w * VL * F32  # the tap offsets and xcol[ox] add the rest
            k = (i1 - i0) * kw
            tp, wp = t_addr + i0 * kw * 8, w_base + i0 * kw * VL * F32
            c_row, r_row = c_base + oy * ow * VL * F32, r_base + oy * ow * VL * F32
            ox = ox0
            while ox + MRD <= ox1:
                _tile(k, row, col_addr + ox * 8, tp, wp, VL, c_row + ox * VL * F32, 0, r_row + ox * VL * F32,
                      b_addr, True, True, has_res, lo32, hi32)
                ox += MRD
            while ox + 4 <= ox1:
                _tile4(k, row, col_addr + ox * 8, tp, wp, VL, c_row + ox * VL * F32, 0, r_row + ox * VL * F32,
                       b_addr, True, True, has_res, lo32, hi32)
                ox += 4
            for p in range(ox, ox1):
                _one(k, row, col_addr + p * 8, tp, wp, VL, c_row + p * VL * F32, 0, r_row + p * VL * F32, b_addr,
                     True, True, has_res, lo32, hi32)
            for q in range(ox0 + ow - ox1):  # the border columns: the taps of their class
                p = q if q < ox0 else ox1 + q - ox0
                c = ccls[p]
                if c < 0:
                    _bias_only(out, res, has_res, bias, lo32, hi32, n, cb, oy * ow + p)
                    continue
                nj = cn[c]
                _one((i1 - i0) * nj, row, col_addr + p * 8, ctaps[c].ctypes.data + i0 * nj * 8,
                     cwpk[c, cb].ctypes.data + i0 * nj * VL * F32, VL, c_row + p * VL * F32, 0, r_row + p * VL * F32,
                     b_addr, True, True, has_res, lo32, hi32)


def column_classes(w: int, kw: int, sw: int, pl: int, dw: int, ow: int, taps: np.ndarray,
                   wpk: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ox0, ox1, ccls, cn, ctaps, cwpk) of :func:`depthwise` for an input of width ``w``: the interior columns
    [ox0, ox1) and, per border column, the class of its run of kernel columns inside the input with that run's taps
    and weights, so a border pixel is one call of the one-pixel tile over exactly its taps."""
    kh = taps.size // kw
    ox0 = min(ow, -(-pl // sw))
    ox1 = max(ox0, min(ow, (w - 1 - (kw - 1) * dw + pl) // sw + 1))
    runs: dict[tuple[int, int], int] = {}
    ccls = np.full(ow, -1, np.int64)
    for ox in [*range(ox0), *range(ox1, ow)]:
        ix = ox * sw - pl
        j0, j1 = max(0, -(ix // dw)), min(kw, (w - 1 - ix) // dw + 1)
        if j1 > j0:
            ccls[ox] = runs.setdefault((j0, j1), len(runs))
    cn = np.ones(max(1, len(runs)), np.int64)
    ctaps = np.zeros((cn.size, taps.size), np.int64)
    cwpk = np.zeros((cn.size,) + wpk.shape, np.float32)
    for (j0, j1), c in runs.items():
        cols = [i * kw + j for i in range(kh) for j in range(j0, j1)]
        cn[c] = j1 - j0
        ctaps[c, :len(cols)] = taps[cols]
        cwpk[c, :, :len(cols)] = wpk[:, cols]
    return ox0, ox1, ccls, cn, ctaps, cwpk
