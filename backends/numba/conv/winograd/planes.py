"""The plane-wise Winograd forward (:mod:`.driver`, output planes wider than ``ROWS_MAX_OW``): input
transform into V[a*a, C, T] per (image, channel) plane, output transform of M[a*a, O, T] fused with the epilogue."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..epilogue import HAS_RES, epilogue_row
from .math import bt2_rows, bt4_rows, output_tiles


# Tile layout: image n's tiles are row-major with a row pitch of tw + 1, one junk tile past each tile row (it
# covers only columns past the output and is never written out). With that pitch, tile (ty, tx + 1) and the first
# tile of row ty + 1 are both one step on, so every transform pass below is one flat loop over a whole plane of
# tiles; without it the horizontal passes ran per tile row, tw = 2..28 elements, mostly in scalar remainder code
# (F(4x4): 2x slower). The GEMMs pay 1/tw more work.
@njit(cache=True)
def _input_plane(x, v, m, n, c, n0, nimg, pt, pl, th, tw):
    """v[k, c*T + (n - n0)*th*tp + ty*tp + tx] = (B^T d B)[k // a, k % a] for the a x a tiles d of plane x[n, c]
    at rows m*ty - pt.., columns m*tx - pl.. (zero outside); tp = tw + 1, T = nimg*th*tp. Inlined into one
    prange kernel per m, so m is a constant there (a runtime m measured 15-40% slower)."""
    h, w = x.shape[2], x.shape[3]
    a = m + 2
    tp = tw + 1
    ntile = th * tp
    nr = (th + 1) * tp  # tiles of the phase planes below (tile rows 0..th)
    # ph[(q*m + p)*nr + ty*tp + k] = padded x[m*ty + p, m*k + q]: the plane split by row and column phase, so
    # tap (r, s) of tile (ty, tx) is phase plane (r % m, s % m) at tile (ty + r // m, tx + s // m); +1 element
    # for the last junk tile's read one past
    ph = np.zeros(m * m * nr + 1, x.dtype)
    for ty in range(th + 1):
        for p in range(m):
            ih = m * ty + p - pt
            if ih < 0 or ih >= h:
                continue
            src = x[n, c, ih]
            for q in range(m):
                klo = max(0, (pl - q + m - 1) // m)  # k with 0 <= m*k + q - pl < w
                khi = min(tp, max(klo, (w - 1 - q + pl) // m + 1))
                off = (q * m + p) * nr + ty * tp
                dst = ph[off:off + tp]
                s0 = m * klo + q - pl
                for k in range(khi - klo):
                    dst[klo + k] = src[s0 + m * k]
    hs = np.empty((a, m, nr), x.dtype)  # horizontal pass d B per row phase: hs[j, p, ty*tp + tx]
    for p in range(m):
        b0, b1, b2, b3 = p * nr, (m + p) * nr, (2 * m + p) * nr, (3 * m + p) * nr
        if m == 2:
            bt2_rows(hs[0, p], hs[1, p], hs[2, p], hs[3, p], ph[b0:b0 + nr], ph[b1:b1 + nr], ph[b0 + 1:b0 + 1 + nr],
                      ph[b1 + 1:b1 + 1 + nr], nr)
        else:
            bt4_rows(hs[0, p], hs[1, p], hs[2, p], hs[3, p], hs[4, p], hs[5, p], ph[b0:b0 + nr], ph[b1:b1 + nr],
                      ph[b2:b2 + nr], ph[b3:b3 + nr], ph[b0 + 1:b0 + 1 + nr], ph[b1 + 1:b1 + 1 + nr], nr)
    t0 = c * nimg * ntile + (n - n0) * ntile
    t1 = t0 + ntile
    for j in range(a):  # vertical pass B^T (d B): row r of tile row ty is row phase r % m of tile row ty + r // m
        if m == 2:
            bt2_rows(v[j, t0:t1], v[4 + j, t0:t1], v[8 + j, t0:t1], v[12 + j, t0:t1], hs[j, 0, :ntile],
                      hs[j, 1, :ntile], hs[j, 0, tp:tp + ntile], hs[j, 1, tp:tp + ntile], ntile)
        else:
            bt4_rows(v[j, t0:t1], v[6 + j, t0:t1], v[12 + j, t0:t1], v[18 + j, t0:t1], v[24 + j, t0:t1],
                      v[30 + j, t0:t1], hs[j, 0, :ntile], hs[j, 1, :ntile], hs[j, 2, :ntile], hs[j, 3, :ntile],
                      hs[j, 0, tp:tp + ntile], hs[j, 1, tp:tp + ntile], ntile)


@njit(parallel=True, cache=True)
def input_transform2(x, v, n0, nimg, pt, pl, th, tw):
    nc = x.shape[1]
    for q in prange(nimg * nc):
        _input_plane(x, v, 2, n0 + q // nc, q % nc, n0, nimg, pt, pl, th, tw)


@njit(parallel=True, cache=True)
def input_transform4(x, v, n0, nimg, pt, pl, th, tw):
    nc = x.shape[1]
    for q in prange(nimg * nc):
        _input_plane(x, v, 4, n0 + q // nc, q % nc, n0, nimg, pt, pl, th, tw)


@njit(cache=True)
def _output_plane(mm, out, m, n, o, n0, nimg, th, tw, flags, bias, scale, res, act, alpha):
    """out[n, o, m*ty + i, m*tx + j] = epilogue((A^T M A)[i, j]) for the tiles of mm[k, o*T + tile] of image n
    (layout as in :func:`_input_plane`); valid pixels only."""
    oh, ow = out.shape[2], out.shape[3]
    tp = tw + 1
    ntile = th * tp
    # yp[i, k, ty*tp + tx] = out pixel (m*ty + i, m*tx + k)
    yp = output_tiles(mm, o * nimg * ntile + (n - n0) * ntile, ntile, m)
    y = np.empty(m * tw, mm.dtype)
    for ty in range(th):
        for i in range(min(m, oh - m * ty)):  # interleave the column phases into one output row, then the epilogue
            for k in range(m):
                src = yp[i, k, ty * tp:ty * tp + tw]
                for tx in range(tw):
                    y[m * tx + k] = src[tx]
            oy = m * ty + i
            res_row = res[n, o, oy] if flags & HAS_RES else res[0, 0, 0]
            epilogue_row(out[n, o, oy], y[:ow], o, flags, bias, scale, res_row, act, alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def output_transform(mm, out, m, n0, nimg, th, tw, flags, bias, scale, res, act, alpha):
    # one kernel for both m: unlike the input pass, specialising on m did not speed this one up (1 thread:
    # 56x56x64 F2 3.1 vs 2.9 ms), and each parallel kernel costs ~4 s of cold JIT
    no = out.shape[1]
    for q in prange(nimg * no):
        _output_plane(mm, out, m, n0 + q // no, q % no, n0, nimg, th, tw, flags, bias, scale, res, act, alpha)
