"""The channels-last Winograd passes (:mod:`.driver`): batch chunks packed channels-last and split by
column phase, transformed into V[a*a, T, C] without junk tiles; used by the weight gradient and by the forward on
small planes."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..epilogue import HAS_RES, epilogue_row
from .math import a2_rows, a4_rows, bt2_rows, bt4_rows, output_tiles


# --- weight gradient ---------------------------------------------------------------------------------------
# The forward's tile y_t = A^T [U * V_t] A (U = G w G^T, V_t = B^T d_t B) gives dL/dU[k][o, c] = sum over tiles t
# of (A gy_t A^T)[k][o] V_t[k][c], gy_t the m x m tile of gy (zero past the output). So the weight gradient is
# the gradient tiles transformed into Gy[a*a, T, O], the input tiles into V[a*a, T, C], a*a GEMMs
# dU[k] (O, C) = Gy[k]^T @ V[k] whose inner dimension is the batch's tile count T (long: ~200 GFLOP/s on 2
# cores, 80% of a large sgemm), then dW = G^T dU G per (o, c). Here the transforms run channels-last, tile
# t = (image*th + ty)*tw + tx (no junk tiles): each chunk's planes are first packed channels-last and split by
# column phase (:func:`pack_phases`), so every transform pass is one flat loop over a run of (tile, channel)
# values whatever the plane size. The forward's plane-wise passes cost 3-15 ms per layer on the 8x8 and 4x4
# planes of ResNet-18 CIFAR at batch 32 (2-4 tiles per plane row) against 0.9-1.5 ms here.
@njit(parallel=True, cache=True)
def pack_phases(x, xs, n0, pt, pl, rb):
    """xs[i, r, p, k, c] = x[n0 + i, c, r - pt, m*k + p - pl] (m = xs.shape[2]; zero outside x): the planes of a
    batch chunk channels-last and split by column phase, so that tap column s of tiles tx.. is the contiguous
    run xs[i, r, s % m, tx + s // m:, :]. One prange item per block of ``rb`` rows; 16 channels at a time are
    read (rb contiguous rows each) into a small buffer before the strided stores (row by row, 64 channels'
    128-byte rows 4 KiB apart, it ran 3x slower from DRAM)."""
    nimg, hp, m, kk, nc = xs.shape
    h, w = x.shape[2], x.shape[3]
    nrb = (hp + rb - 1) // rb
    for q in prange(nimg * nrb):
        i, r0 = q // nrb, (q % nrb) * rb
        r1 = min(hp, r0 + rb)
        v0, v1 = max(r0, pt), min(r1, pt + h)  # rows inside x
        for r in range(r0, r1):
            dst = xs[i, r]
            if r < v0 or r >= v1:
                dst[:] = 0
                continue
            for p in range(m):
                klo = min(kk, max(0, (pl - p + m - 1) // m))  # k with 0 <= m*k + p - pl < w
                khi = min(kk, max(klo, (w - 1 - p + pl) // m + 1))
                dst[p, :klo] = 0
                dst[p, khi:] = 0
        if v1 <= v0:
            continue
        nv = (v1 - v0) * w
        tmp = np.empty((16, nv), x.dtype)
        for c0 in range(0, nc, 16):
            cn = min(16, nc - c0)
            for cc in range(cn):
                src, t = x[n0 + i, c0 + cc].reshape(-1)[(v0 - pt) * w:(v1 - pt) * w], tmp[cc]
                for j in range(nv):
                    t[j] = src[j]
            for r in range(v0, v1):
                dst = xs[i, r]
                for p in range(m):
                    klo = min(kk, max(0, (pl - p + m - 1) // m))
                    khi = min(kk, max(klo, (w - 1 - p + pl) // m + 1))
                    for k in range(klo, khi):
                        d = dst[p, k, c0:c0 + cn]
                        j = (r - v0) * w + m * k + p - pl
                        for cc in range(cn):
                            d[cc] = tmp[cc, j]


@njit(cache=True)
def _rows_in(xs, v, m, i, ty, th, tw):
    """v[k, ((i*th + ty)*tw + tx)*C + c] = (B^T d B)[k // a, k % a] for the a x a windows d of channel c at
    rows m*ty.., columns m*tx.. of the phase-split chunk xs (:func:`pack_phases`): one tile row, in blocks of
    tiles whose passes are flat loops over (tile, channel)."""
    nc = xs.shape[4]
    a = m + 2
    bt = max(1, 512 // nc)  # tiles per block: the block's a*a horizontal-pass rows stay in L1
    hs = np.empty((a, a, bt * nc), xs.dtype)
    for tx0 in range(0, tw, bt):
        nt = min(bt, tw - tx0) * nc
        lo, hi = tx0 * nc, tx0 * nc + nt
        for r in range(a):
            b = xs[i, m * ty + r].reshape(m, -1)
            if m == 2:
                bt2_rows(hs[r, 0], hs[r, 1], hs[r, 2], hs[r, 3], b[0, lo:hi], b[1, lo:hi], b[0, lo + nc:hi + nc],
                          b[1, lo + nc:hi + nc], nt)
            else:
                bt4_rows(hs[r, 0], hs[r, 1], hs[r, 2], hs[r, 3], hs[r, 4], hs[r, 5], b[0, lo:hi], b[1, lo:hi],
                          b[2, lo:hi], b[3, lo:hi], b[0, lo + nc:hi + nc], b[1, lo + nc:hi + nc], nt)
        t0 = (i * th + ty) * tw * nc + lo
        t1 = t0 + nt
        for j in range(a):
            if m == 2:
                bt2_rows(v[j, t0:t1], v[4 + j, t0:t1], v[8 + j, t0:t1], v[12 + j, t0:t1], hs[0, j], hs[1, j],
                          hs[2, j], hs[3, j], nt)
            else:
                bt4_rows(v[j, t0:t1], v[6 + j, t0:t1], v[12 + j, t0:t1], v[18 + j, t0:t1], v[24 + j, t0:t1],
                          v[30 + j, t0:t1], hs[0, j], hs[1, j], hs[2, j], hs[3, j], hs[4, j], hs[5, j], nt)


@njit(cache=True)
def _rows_grad(gs, gm, m, i, ty, th, tw):
    """gm[k, ((i*th + ty)*tw + tx)*O + o] = (A g A^T)[k // a, k % a] for the m x m tiles g of channel o at rows
    m*ty.., columns m*tx.. of the phase-split gradient chunk gs: the gradient of the forward's M."""
    no = gs.shape[4]
    a = m + 2
    bt = max(1, 512 // no)
    hs = np.empty((m, a, bt * no), gs.dtype)
    for tx0 in range(0, tw, bt):
        nt = min(bt, tw - tx0) * no
        lo, hi = tx0 * no, tx0 * no + nt
        for r in range(m):
            b = gs[i, m * ty + r].reshape(m, -1)
            if m == 2:
                a2_rows(hs[r, 0], hs[r, 1], hs[r, 2], hs[r, 3], b[0, lo:hi], b[1, lo:hi], nt)
            else:
                a4_rows(hs[r, 0], hs[r, 1], hs[r, 2], hs[r, 3], hs[r, 4], hs[r, 5], b[0, lo:hi], b[1, lo:hi],
                         b[2, lo:hi], b[3, lo:hi], nt)
        t0 = (i * th + ty) * tw * no + lo
        t1 = t0 + nt
        for k in range(a):
            if m == 2:
                a2_rows(gm[k, t0:t1], gm[4 + k, t0:t1], gm[8 + k, t0:t1], gm[12 + k, t0:t1], hs[0, k], hs[1, k], nt)
            else:
                a4_rows(gm[k, t0:t1], gm[6 + k, t0:t1], gm[12 + k, t0:t1], gm[18 + k, t0:t1], gm[24 + k, t0:t1],
                         gm[30 + k, t0:t1], hs[0, k], hs[1, k], hs[2, k], hs[3, k], nt)


# The weight gradient transforms x with the forward's kernels (in_rows2/4 below) and gy with these: one prange
# kernel over both (x tiles, then gy tiles) balanced the threads a little better, but compiled _rows_in a second
# time for each m (~7 s of the ResNet-18 cold JIT for no measurable speed).
@njit(parallel=True, cache=True)
def grad_rows2(gs, gm, th, tw):
    for q in prange(gs.shape[0] * th):
        _rows_grad(gs, gm, 2, q // th, q % th, th, tw)


@njit(parallel=True, cache=True)
def grad_rows4(gs, gm, th, tw):
    for q in prange(gs.shape[0] * th):
        _rows_grad(gs, gm, 4, q // th, q % th, th, tw)


@njit(cache=True)
def _axpy3(d0, d1, d2, g0, g1, g2, src, n):
    """d_i[:n] += g_i * src[:n] for i = 0, 1, 2, skipping the zero terms of G (F(2x2): 4 of 12, F(4x4): 4 of 18)."""
    if g0 != 0:
        for j in range(n):
            d0[j] += g0 * src[j]
    if g1 != 0:
        for j in range(n):
            d1[j] += g1 * src[j]
    if g2 != 0:
        for j in range(n):
            d2[j] += g2 * src[j]


@njit(parallel=True, cache=True)
def weight_grad_transform(du, out, g, ob):
    """out[o, c, r, s] = sum over chunks q and k = k1*a + k2 of G[k1, r] du[q, k, o*C + c] G[k2, s] for the
    (a, 3) matrix g = G: the gradient of U = G w G^T from the chunks' partial dU, in du's dtype. One prange item
    per ``ob`` output channels, so each pass is a flat loop over ob*C values and du is read in long runs (one
    output channel per item, in float64: 3.8 vs 2.2 ms for 512x512 F(4x4) with du in DRAM)."""
    no, nc = out.shape[0], out.shape[1]
    a = g.shape[0]
    gg = g.astype(du.dtype)
    for b in prange((no + ob - 1) // ob):
        o0 = b * ob
        o1 = min(no, o0 + ob)
        nl = (o1 - o0) * nc
        t = np.zeros((3, a, nl), du.dtype)  # (G^T dU)[r, k2]
        for q in range(du.shape[0]):
            for k1 in range(a):
                g0, g1, g2 = gg[k1, 0], gg[k1, 1], gg[k1, 2]
                for k2 in range(a):
                    _axpy3(t[0, k2], t[1, k2], t[2, k2], g0, g1, g2, du[q, k1 * a + k2, o0 * nc:o1 * nc], nl)
        taps = np.zeros((9, nl), du.dtype)  # (G^T dU G)[r, s]
        for r in range(3):
            for k2 in range(a):
                g0, g1, g2 = gg[k2, 0], gg[k2, 1], gg[k2, 2]
                _axpy3(taps[3 * r], taps[3 * r + 1], taps[3 * r + 2], g0, g1, g2, t[r, k2], nl)
        for oo in range(o1 - o0):
            for c in range(nc):
                for rs in range(9):
                    out[o0 + oo, c, rs // 3, rs % 3] = taps[rs, oo * nc + c]


# --- forward, channels-last (small planes) -------------------------------------------------------------------
# On small planes (a few tiles per row) the plane-wise passes above run short loops and the junk tile per row
# adds up to 1/tw to the GEMMs. There the forward packs each batch chunk like the weight gradient does
# (:func:`pack_phases`), transforms it with :func:`_rows_in` into V[a*a, T, C] (no junk tiles), runs
# M[k] (T, O) = V[k] @ U[k]^T and transforms M back with :func:`_rows_out`, fused with the epilogue.
@njit(cache=True)
def _rows_out(mm, out, m, n0, i, ty, th, tw, flags, bias, scale, res, act, alpha):
    """out[n0 + i, o, m*ty + r, m*tx + s] = epilogue((A^T M A)[r, s]) for the tiles of tile row ty of image i,
    M[k, ((i*th + ty)*tw + tx)*O + o] (channels-last); valid pixels only."""
    no, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    nt = tw * no
    yp = output_tiles(mm, (i * th + ty) * nt, nt, m)  # yp[r, k, tx*O + o] = out pixel (m*ty + r, m*tx + k)
    n = n0 + i
    y = np.empty(m * tw, mm.dtype)
    for r in range(min(m, oh - m * ty)):
        oy = m * ty + r
        for o in range(no):  # gather channel o's output row from the channels-last tiles, then the epilogue
            for k in range(m):
                src = yp[r, k]
                for tx in range(tw):
                    y[m * tx + k] = src[tx * no + o]
            res_row = res[n, o, oy] if flags & HAS_RES else res[0, 0, 0]
            epilogue_row(out[n, o, oy], y[:ow], o, flags, bias, scale, res_row, act, alpha)


@njit(parallel=True, cache=True)
def in_rows2(xs, v, th, tw):
    for q in prange(xs.shape[0] * th):
        _rows_in(xs, v, 2, q // th, q % th, th, tw)


@njit(parallel=True, cache=True)
def in_rows4(xs, v, th, tw):
    for q in prange(xs.shape[0] * th):
        _rows_in(xs, v, 4, q // th, q % th, th, tw)


@njit(parallel=True, cache=True, error_model="numpy")
def fwd_rows_out(mm, out, m, n0, nimg, th, tw, flags, bias, scale, res, act, alpha):
    for q in prange(nimg * th):
        _rows_out(mm, out, m, n0, q // th, q % th, th, tw, flags, bias, scale, res, act, alpha)
