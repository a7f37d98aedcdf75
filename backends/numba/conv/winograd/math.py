"""Winograd F(2x2, 3x3) / F(4x4, 3x3) arithmetic shared by both layouts (:mod:`.driver`): the 1-D input
(B^T), output (A^T) and gradient (A) transforms over rows of tiles, and the kernel transform U = G w G^T."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...blocked.transforms import G4 as G4_BLOCKED
from ...codegen import VL
from ..sandwich import make_sandwich


# --- 1-D transforms over rows of tiles: one flat loop per output row, each a plain vectorizable loop. None of the
# Winograd helpers is inlined at numba's IR level (inline="always"): each one is a call over a row of hundreds of
# values, so the call costs nothing, while IR inlining re-types every helper inside every kernel and multiplies
# the cold JIT time (LLVM still inlines what pays)
@njit(cache=True)
def bt2_rows(o0, o1, o2, o3, d0, d1, d2, d3, nt):
    """B^T d for d = (d0..d3)[t], t < nt; B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]."""
    for t in range(nt):
        o0[t] = d0[t] - d2[t]
    for t in range(nt):
        o1[t] = d1[t] + d2[t]
    for t in range(nt):
        o2[t] = d2[t] - d1[t]
    for t in range(nt):
        o3[t] = d1[t] - d3[t]


@njit(cache=True)
def bt4_rows(o0, o1, o2, o3, o4, o5, d0, d1, d2, d3, d4, d5, nt):
    """B^T d, B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]."""
    for t in range(nt):
        o0[t] = 4 * d0[t] - 5 * d2[t] + d4[t]
    for t in range(nt):
        o1[t] = (d4[t] - 4 * d2[t]) + (d3[t] - 4 * d1[t])
    for t in range(nt):
        o2[t] = (d4[t] - 4 * d2[t]) - (d3[t] - 4 * d1[t])
    for t in range(nt):
        o3[t] = (d4[t] - d2[t]) + 2 * (d3[t] - d1[t])
    for t in range(nt):
        o4[t] = (d4[t] - d2[t]) - 2 * (d3[t] - d1[t])
    for t in range(nt):
        o5[t] = 4 * d1[t] - 5 * d3[t] + d5[t]


@njit(cache=True)
def _at2_rows(o0, o1, d0, d1, d2, d3, nt):
    """A^T d, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    for t in range(nt):
        o0[t] = d0[t] + d1[t] + d2[t]
    for t in range(nt):
        o1[t] = d1[t] - d2[t] - d3[t]


@njit(cache=True)
def _at4_rows(o0, o1, o2, o3, d0, d1, d2, d3, d4, d5, nt):
    """A^T d, A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]."""
    for t in range(nt):
        o0[t] = d0[t] + (d1[t] + d2[t]) + (d3[t] + d4[t])
    for t in range(nt):
        o1[t] = (d1[t] - d2[t]) + 2 * (d3[t] - d4[t])
    for t in range(nt):
        o2[t] = (d1[t] + d2[t]) + 4 * (d3[t] + d4[t])
    for t in range(nt):
        o3[t] = (d1[t] - d2[t]) + 8 * (d3[t] - d4[t]) + d5[t]


@njit(cache=True)
def a2_rows(o0, o1, o2, o3, g0, g1, nt):
    """A g for g = (g0, g1)[t] (the transpose of :func:`_at2_rows`): A = [[1, 0], [1, 1], [1, -1], [0, -1]]."""
    for t in range(nt):
        o0[t] = g0[t]
    for t in range(nt):
        o1[t] = g0[t] + g1[t]
    for t in range(nt):
        o2[t] = g0[t] - g1[t]
    for t in range(nt):
        o3[t] = -g1[t]


@njit(cache=True)
def a4_rows(o0, o1, o2, o3, o4, o5, g0, g1, g2, g3, nt):
    """A g, A = [[1, 0, 0, 0], [1, 1, 1, 1], [1, -1, 1, -1], [1, 2, 4, 8], [1, -2, 4, -8], [0, 0, 0, 1]]."""
    for t in range(nt):
        o0[t] = g0[t]
    for t in range(nt):
        o1[t] = (g0[t] + g2[t]) + (g1[t] + g3[t])
    for t in range(nt):
        o2[t] = (g0[t] + g2[t]) - (g1[t] + g3[t])
    for t in range(nt):
        o3[t] = (g0[t] + 4 * g2[t]) + (2 * g1[t] + 8 * g3[t])
    for t in range(nt):
        o4[t] = (g0[t] + 4 * g2[t]) - (2 * g1[t] + 8 * g3[t])
    for t in range(nt):
        o5[t] = g3[t]


@njit(cache=True)
def output_tiles(mm, t0, nt, m):
    """yp[r, k, t] = (A^T M_t A)[r, k] for the nt tiles t of mm[:, t0:t0 + nt] (M laid out (a*a, tiles)): the
    vertical pass A^T M, then the horizontal one. Shared by the plane-wise and the channels-last output passes."""
    a = m + 2
    t1 = t0 + nt
    s = np.empty((m, a, nt), mm.dtype)  # vertical pass A^T M
    for j in range(a):
        if m == 2:
            _at2_rows(s[0, j], s[1, j], mm[j, t0:t1], mm[4 + j, t0:t1], mm[8 + j, t0:t1], mm[12 + j, t0:t1], nt)
        else:
            _at4_rows(s[0, j], s[1, j], s[2, j], s[3, j], mm[j, t0:t1], mm[6 + j, t0:t1], mm[12 + j, t0:t1],
                      mm[18 + j, t0:t1], mm[24 + j, t0:t1], mm[30 + j, t0:t1], nt)
    yp = np.empty((m, m, nt), mm.dtype)  # horizontal pass
    for r in range(m):
        sr = s[r]
        if m == 2:
            _at2_rows(yp[r, 0], yp[r, 1], sr[0], sr[1], sr[2], sr[3], nt)
        else:
            _at4_rows(yp[r, 0], yp[r, 1], yp[r, 2], yp[r, 3], sr[0], sr[1], sr[2], sr[3], sr[4], sr[5], nt)
    return yp


# --- the kernel transform -----------------------------------------------------------------------------------
G2 = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])


@njit(parallel=True, cache=True)
def weight_transform(w, u, g, flip):
    """u[k, o*C + c] = (G w[o, c] G^T)[k // a, k % a] (flip: of w[c, o, ::-1, ::-1], the kernel of the input
    gradient) for the (a, 3) matrix g = G, in float64. u is (a*a, >= O*C) with O, C the output/input channels.
    Per output channel: the 9 taps are gathered into rows over c first, so every loop below runs over c with one
    contiguous store stream (the per-(o, c) scalar version took 12 ms for 512x512 F(4x4))."""
    if flip:
        nc, no = w.shape[0], w.shape[1]
    else:
        no, nc = w.shape[0], w.shape[1]
    a = g.shape[0]
    for o in prange(no):
        taps = np.empty((9, nc))
        for i in range(3):
            for j in range(3):
                row = taps[3 * i + j]
                if flip:
                    for c in range(nc):
                        row[c] = w[c, o, 2 - i, 2 - j]
                else:
                    for c in range(nc):
                        row[c] = w[o, c, i, j]
        t = np.empty((a, 3, nc))  # G g
        for i in range(a):
            g0, g1, g2 = g[i, 0], g[i, 1], g[i, 2]
            for j in range(3):
                d, t0, t1, t2 = t[i, j], taps[j], taps[3 + j], taps[6 + j]
                for c in range(nc):
                    d[c] = g0 * t0[c] + g1 * t1[c] + g2 * t2[c]
        for i in range(a):  # (G g) G^T
            t0, t1, t2 = t[i, 0], t[i, 1], t[i, 2]
            for k in range(a):
                g0, g1, g2 = g[k, 0], g[k, 1], g[k, 2]
                d = u[i * a + k, o * nc:(o + 1) * nc]
                for c in range(nc):
                    d[c] = g0 * t0[c] + g1 * t1[c] + g2 * t2[c]


# U = G w G^T as vector code (:mod:`..sandwich`) for the panels below, one per G (a compile-time constant there):
# PANEL_FORMS[form]. F(4x4) has two: the NCHW path's points (G4) and the blocked kernel's (its U is that kernel's
# packing, see ..nchwc)
PANEL_FORMS = (G2, G4, G4_BLOCKED)
_u_tiles = tuple(make_sandwich(g, wide=True) for g in PANEL_FORMS)
_u2, _u4, _u4b = _u_tiles


@njit(cache=True, inline="always")
def _u_tile(form, src, rs, cs, dst, ds):
    if form == 0:
        _u2(src, rs, cs, dst, ds)
    elif form == 1:
        _u4(src, rs, cs, dst, ds)
    else:
        _u4b(src, rs, cs, dst, ds)


@njit(parallel=True, cache=True)
def weight_transform_panels(w, u, form, flip, cb=8):
    """:func:`weight_transform` by ``G = PANEL_FORMS[form]`` into U^T cut into the GEMM's column panels, float32:
    u (a*a, P, C, nr) gets u[k, o // nr, c, o % nr] = U[k][o, c] (zeros in the padding columns of the last panel).
    One prange item per panel, channels in blocks of ``cb``: the block's taps are gathered into (9, cb, nr) (in L1),
    then per input channel and VL output channels G g G^T runs in registers (float64 arithmetic, one rounding),
    its a*a vectors stored straight into U (with loops over intermediates in L1 instead, one thread: 512x512 F(2x2)
    3.4 vs 2.3 ms, 256x256 F(4x4) 1.25 vs 0.7). Gathering the taps with the output channel innermost (strided
    reads) ran 1.4-2x slower."""
    if flip:
        nc, no = w.shape[0], w.shape[1]
    else:
        no, nc = w.shape[0], w.shape[1]
    nr, ncu = u.shape[3], u.shape[2]
    w9 = w.reshape(w.shape[0], w.shape[1], 9)
    ds = u.strides[0] // 4  # elements between transform positions
    u_addr = u.ctypes.data
    for p in prange(u.shape[1]):
        o0 = p * nr
        nq = min(nr, no - o0)
        taps = np.zeros((9, cb, nr), np.float32)  # lanes past the last output channel stay zero
        t_addr = taps.ctypes.data
        for c0 in range(0, nc, cb):
            ncb = min(cb, nc - c0)
            # the 9 taps of one (o, c) pair are contiguous in w9; the branch stays outside the loops
            if flip:
                for cc in range(ncb):
                    for q in range(nq):
                        src = w9[c0 + cc, o0 + q]
                        for k in range(9):
                            taps[k, cc, q] = src[8 - k]
            else:
                for cc in range(ncb):
                    for q in range(nq):
                        src = w9[o0 + q, c0 + cc]
                        for k in range(9):
                            taps[k, cc, q] = src[k]
            for cc in range(ncb):
                for h in range(0, nr, VL):
                    _u_tile(form, t_addr + (cc * nr + h) * 4, 3 * cb * nr, cb * nr,
                            u_addr + ((p * ncu + c0 + cc) * nr + h) * 4, ds)
