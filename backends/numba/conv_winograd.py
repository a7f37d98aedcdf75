"""Winograd conv2d F(m x m, 3x3), m = 2 or 4, for 3x3 / stride 1 / dilation 1 / groups 1 layers (padding 0..2
per side).

Each m x m output tile is ``A^T [(G g G^T) * (B^T d B)] A`` for the a x a input tile ``d`` (a = m + 2) at stride
m. The elementwise product over the a*a transform positions is, summed over input channels, a*a independent GEMMs
``M[k] (O, T) = U[k] (O, C) @ V[k] (C, T)`` (T = tiles): a^2/m^2 multiply-adds per output pixel and channel pair
instead of im2col's 9 (F(2x2): 4, F(4x4): 2.25). Steps:

1. weights ``U[a*a, O, C]`` (:func:`winograd_weights`; a caller may transform once and pass ``u=``),
2. input transform into ``V[a*a, C, T]`` (T contiguous): one prange item per (image, channel) plane, each pass
   one flat vectorizable loop over the plane's tiles per output (tile layout: see :func:`_input_plane`),
3. ``np.matmul(U, V, out=M)``: a*a BLAS GEMMs,
4. output transform of ``M[a*a, O, T]`` fused with the conv epilogue (:mod:`.conv_epilogue`), writing only the
   valid pixels (odd sizes: 7x7 is covered by 4x4 tiles of F(2x2) or 2x2 of F(4x4)).

The batch runs in chunks of whole images so V and M of one chunk stay in L3 between the transforms and the GEMMs.
Output planes up to :data:`ROWS_MAX_OW` wide instead run channels-last (V[a*a, T, C], M = V @ U^T; see the
section above :func:`_rows_out`): no junk tiles, and long transform loops on planes of a few tiles per row.
:func:`winograd_tile` picks m per layer.

Float32 accuracy (max |error| / max |y| vs a float64 conv; ReLU inputs, He-initialised weights, the ResNet-18
3x3 layers at batch 8): F(2x2) 3e-7..6e-7 (torch's float32 conv: 2.5e-7), F(4x4) 7e-6..1.2e-5 (its transforms
have entries up to 8 and 1/24). The input gradient of the same conv is itself a
stride-1 3x3 conv (of gy with the flipped, transposed kernel, padded 2 - p), so it runs through the forward.

The weight gradient (:func:`winograd_weight_grad`) is a*a GEMMs ``dU[k] (O, C) = Gy[k] (O, T) @ V[k]^T`` over
the batch's tiles (Gy: the output-gradient tiles transformed by A), then ``dW = G^T dU G``; its transforms run
channels-last (see the section above :func:`_pack_phases`). Float32 error (max |error| / max |gw| vs float64,
ResNet-18 CIFAR 3x3 layers, batch 32, ReLU inputs): F(2x2) 4e-7..6e-7, F(4x4) 3e-6..9e-6 (im2col: 3e-7,
torch's float32: 6e-7..2.6e-6).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from .conv import scratch
from .conv_epilogue import HAS_RES, Epilogue, _epilogue_row
from .gemm import matmul as gemm_matmul
from .gemm import supported as gemm_supported
from .shape import fill

__all__ = ["winograd_applicable", "winograd_tile", "winograd_weight_grad_tile", "winograd_weights", "winograd_forward",
           "winograd_input_grad", "winograd_weight_grad"]

MAX_TILE = 4  # set 2 to keep every layer on F(2x2) (its float32 error is ~20x smaller, see above)
CHUNK_BYTES = 16 << 20  # V + M of one batch chunk (half of L3), or 2x U where that is bigger
FORWARD_LAYOUT: str | None = None  # "planes" / "rows" forces the forward's layout; None: by ROWS_MAX_OW
# The forward runs channels-last ("rows", see _rows_out) for output planes at most this wide. Measured (2 cores,
# float32, rows vs planes, same m): 4x4x512 b32 F2 7.5 vs 14.5 ms, 8x8x256 b32 F4 5.4 vs 13.8, 16x16x128 b32
# F4 6.0 vs 11.0, 28x28x128 b8 F4 4.3 vs 5.4, but 32x32x64 b32 F4 10.2 vs 9.2, 56x56x64 b8 F4 6.0 vs 6.0.
ROWS_MAX_OW = 28
WGRAD_CHUNK_BYTES = CHUNK_BYTES  # the same for the weight gradient: V + Gy + packed planes, or 2x dU


def winograd_applicable(x_shape: Any, w_shape: Any, attrs: dict[str, Any]) -> bool:
    """3x3 kernel, stride 1, dilation 1, groups 1, padding 0..2 per side (so the input gradient, padded by
    2 - p, is one too)."""
    w_shape = tuple(getattr(w_shape, "shape", w_shape))
    if len(w_shape) != 4 or w_shape[2:] != (3, 3):
        return False
    if tuple(attrs["stride"]) != (1, 1) or tuple(attrs["dilation"]) != (1, 1) or attrs["groups"] != 1:
        return False
    return all(0 <= p <= 2 for side in attrs["padding"] for p in side)


def winograd_tile(oh: int, ow: int, o: int, n: int) -> int:
    """Output tile size m (2 or 4). F(4x4) needs 36 multiplies per 16 outputs against F(2x2)'s 16 per 4, but its
    transforms cost more per element, its weights U are 36*O*C (re-read by the GEMMs, re-made per call) and the
    junk tile per tile row (see :func:`_input_plane`) wastes more of a small plane. So F(4x4) only where it does
    under 70% of F(2x2)'s multiplies and has at least as many tiles per GEMM as output channels (its U is then no
    bigger than its V). Measured at batch 8 on 2 cores (ResNet-18 layers, float32, F4 vs F2): 56x56x64 5.8 vs
    7.5 ms, 28x28x128 5.9 vs 6.8, 14x14x256 8.5 vs 7.0, 7x7x512 13.1 vs 11.3."""
    th2, tw2, th4, tw4 = (oh + 1) // 2, (ow + 1) // 2, (oh + 3) // 4, (ow + 3) // 4
    mul2, mul4 = 16 * th2 * (tw2 + 1), 36 * th4 * (tw4 + 1)
    return 4 if MAX_TILE >= 4 and mul4 < 0.7 * mul2 and n * th4 * (tw4 + 1) >= o else 2


def winograd_weight_grad_tile(oh: int, ow: int) -> int:
    """Output tile size m for the weight gradient: 4 where F(4x4) needs under 70% of F(2x2)'s GEMM work (36
    per 4x4 tile against 16 per 2x2 tile; no junk tiles here), else 2. Measured on ResNet-18 CIFAR at batch 32
    (2 cores, float32, F4 vs F2): 32x32x64 7.0 vs 10.2 ms, 16x16x128 5.0 vs 7.2, 8x8x256 4.6 vs 6.5, 4x4x512
    6.6 vs 7.3."""
    th2, tw2, th4, tw4 = (oh + 1) // 2, (ow + 1) // 2, (oh + 3) // 4, (ow + 3) // 4
    return 4 if MAX_TILE >= 4 and 36 * th4 * tw4 < 0.7 * 16 * th2 * tw2 else 2


# --- 1-D transforms over rows of tiles (inlined): one flat loop per output row, each a plain vectorizable loop
@njit(cache=True, inline="always")
def _bt2_rows(o0, o1, o2, o3, d0, d1, d2, d3, nt):
    """B^T d for d = (d0..d3)[t], t < nt; B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]."""
    for t in range(nt):
        o0[t] = d0[t] - d2[t]
    for t in range(nt):
        o1[t] = d1[t] + d2[t]
    for t in range(nt):
        o2[t] = d2[t] - d1[t]
    for t in range(nt):
        o3[t] = d1[t] - d3[t]


@njit(cache=True, inline="always")
def _bt4_rows(o0, o1, o2, o3, o4, o5, d0, d1, d2, d3, d4, d5, nt):
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


@njit(cache=True, inline="always")
def _at2_rows(o0, o1, d0, d1, d2, d3, nt):
    """A^T d, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    for t in range(nt):
        o0[t] = d0[t] + d1[t] + d2[t]
    for t in range(nt):
        o1[t] = d1[t] - d2[t] - d3[t]


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def _a2_rows(o0, o1, o2, o3, g0, g1, nt):
    """A g for g = (g0, g1)[t] (the transpose of :func:`_at2_rows`): A = [[1, 0], [1, 1], [1, -1], [0, -1]]."""
    for t in range(nt):
        o0[t] = g0[t]
    for t in range(nt):
        o1[t] = g0[t] + g1[t]
    for t in range(nt):
        o2[t] = g0[t] - g1[t]
    for t in range(nt):
        o3[t] = -g1[t]


@njit(cache=True, inline="always")
def _a4_rows(o0, o1, o2, o3, o4, o5, g0, g1, g2, g3, nt):
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


# --- kernels -----------------------------------------------------------------------------------------------
_G2 = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
_G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])


@njit(parallel=True, cache=True)
def _weight_transform(w, u, g, flip):
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


# Tile layout: image n's tiles are row-major with a row pitch of tw + 1, one junk tile past each tile row (it
# covers only columns past the output and is never written out). With that pitch, tile (ty, tx + 1) and the first
# tile of row ty + 1 are both one step on, so every transform pass below is one flat loop over a whole plane of
# tiles; without it the horizontal passes ran per tile row, tw = 2..28 elements, mostly in scalar remainder code
# (F(4x4): 2x slower). The GEMMs pay 1/tw more work.
@njit(cache=True, inline="always")
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
            _bt2_rows(hs[0, p], hs[1, p], hs[2, p], hs[3, p], ph[b0:b0 + nr], ph[b1:b1 + nr], ph[b0 + 1:b0 + 1 + nr],
                      ph[b1 + 1:b1 + 1 + nr], nr)
        else:
            _bt4_rows(hs[0, p], hs[1, p], hs[2, p], hs[3, p], hs[4, p], hs[5, p], ph[b0:b0 + nr], ph[b1:b1 + nr],
                      ph[b2:b2 + nr], ph[b3:b3 + nr], ph[b0 + 1:b0 + 1 + nr], ph[b1 + 1:b1 + 1 + nr], nr)
    t0 = c * nimg * ntile + (n - n0) * ntile
    t1 = t0 + ntile
    for j in range(a):  # vertical pass B^T (d B): row r of tile row ty is row phase r % m of tile row ty + r // m
        if m == 2:
            _bt2_rows(v[j, t0:t1], v[4 + j, t0:t1], v[8 + j, t0:t1], v[12 + j, t0:t1], hs[j, 0, :ntile],
                      hs[j, 1, :ntile], hs[j, 0, tp:tp + ntile], hs[j, 1, tp:tp + ntile], ntile)
        else:
            _bt4_rows(v[j, t0:t1], v[6 + j, t0:t1], v[12 + j, t0:t1], v[18 + j, t0:t1], v[24 + j, t0:t1],
                      v[30 + j, t0:t1], hs[j, 0, :ntile], hs[j, 1, :ntile], hs[j, 2, :ntile], hs[j, 3, :ntile],
                      hs[j, 0, tp:tp + ntile], hs[j, 1, tp:tp + ntile], ntile)


@njit(parallel=True, cache=True)
def _input_transform2(x, v, n0, nimg, pt, pl, th, tw):
    nc = x.shape[1]
    for q in prange(nimg * nc):
        _input_plane(x, v, 2, n0 + q // nc, q % nc, n0, nimg, pt, pl, th, tw)


@njit(parallel=True, cache=True)
def _input_transform4(x, v, n0, nimg, pt, pl, th, tw):
    nc = x.shape[1]
    for q in prange(nimg * nc):
        _input_plane(x, v, 4, n0 + q // nc, q % nc, n0, nimg, pt, pl, th, tw)


@njit(cache=True, inline="always")
def _output_plane(mm, out, m, n, o, n0, nimg, th, tw, flags, bias, scale, res, act, alpha):
    """out[n, o, m*ty + i, m*tx + j] = epilogue((A^T M A)[i, j]) for the tiles of mm[k, o*T + tile] of image n
    (layout as in :func:`_input_plane`); valid pixels only."""
    oh, ow = out.shape[2], out.shape[3]
    a = m + 2
    tp = tw + 1
    ntile = th * tp
    t0 = o * nimg * ntile + (n - n0) * ntile
    t1 = t0 + ntile
    s = np.empty((m, a, ntile), mm.dtype)  # vertical pass A^T M
    for j in range(a):
        if m == 2:
            _at2_rows(s[0, j], s[1, j], mm[j, t0:t1], mm[4 + j, t0:t1], mm[8 + j, t0:t1], mm[12 + j, t0:t1], ntile)
        else:
            _at4_rows(s[0, j], s[1, j], s[2, j], s[3, j], mm[j, t0:t1], mm[6 + j, t0:t1], mm[12 + j, t0:t1],
                      mm[18 + j, t0:t1], mm[24 + j, t0:t1], mm[30 + j, t0:t1], ntile)
    yp = np.empty((m, m, ntile), mm.dtype)  # horizontal pass: yp[i, k, ty*tp + tx] = out pixel (m*ty + i, m*tx + k)
    for i in range(m):
        si = s[i]
        if m == 2:
            _at2_rows(yp[i, 0], yp[i, 1], si[0], si[1], si[2], si[3], ntile)
        else:
            _at4_rows(yp[i, 0], yp[i, 1], yp[i, 2], yp[i, 3], si[0], si[1], si[2], si[3], si[4], si[5], ntile)
    y = np.empty(m * tw, mm.dtype)
    for ty in range(th):
        for i in range(min(m, oh - m * ty)):  # interleave the column phases into one output row, then the epilogue
            for k in range(m):
                src = yp[i, k, ty * tp:ty * tp + tw]
                for tx in range(tw):
                    y[m * tx + k] = src[tx]
            oy = m * ty + i
            res_row = res[n, o, oy] if flags & HAS_RES else res[0, 0, 0]
            _epilogue_row(out[n, o, oy], y[:ow], o, flags, bias, scale, res_row, act, alpha)


@njit(parallel=True, cache=True, error_model="numpy")
def _output_transform(mm, out, m, n0, nimg, th, tw, flags, bias, scale, res, act, alpha):
    # one kernel for both m: unlike the input pass, specialising on m did not speed this one up (1 thread:
    # 56x56x64 F2 3.1 vs 2.9 ms), and each parallel kernel costs ~4 s of cold JIT
    no = out.shape[1]
    for q in prange(nimg * no):
        _output_plane(mm, out, m, n0 + q // no, q % no, n0, nimg, th, tw, flags, bias, scale, res, act, alpha)


# --- weight gradient ---------------------------------------------------------------------------------------
# The forward's tile y_t = A^T [U * V_t] A (U = G w G^T, V_t = B^T d_t B) gives dL/dU[k][o, c] = sum over tiles t
# of (A gy_t A^T)[k][o] V_t[k][c], gy_t the m x m tile of gy (zero past the output). So the weight gradient is
# the gradient tiles transformed into Gy[a*a, T, O], the input tiles into V[a*a, T, C], a*a GEMMs
# dU[k] (O, C) = Gy[k]^T @ V[k] whose inner dimension is the batch's tile count T (long: ~200 GFLOP/s on 2
# cores, 80% of a large sgemm), then dW = G^T dU G per (o, c). Here the transforms run channels-last, tile
# t = (image*th + ty)*tw + tx (no junk tiles): each chunk's planes are first packed channels-last and split by
# column phase (:func:`_pack_phases`), so every transform pass is one flat loop over a run of (tile, channel)
# values whatever the plane size. The forward's plane-wise passes cost 3-15 ms per layer on the 8x8 and 4x4
# planes of ResNet-18 CIFAR at batch 32 (2-4 tiles per plane row) against 0.9-1.5 ms here.
@njit(parallel=True, cache=True)
def _pack_phases(x, xs, n0, pt, pl, rb):
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


@njit(cache=True, inline="always")
def _rows_in(xs, v, m, i, ty, th, tw):
    """v[k, ((i*th + ty)*tw + tx)*C + c] = (B^T d B)[k // a, k % a] for the a x a windows d of channel c at
    rows m*ty.., columns m*tx.. of the phase-split chunk xs (:func:`_pack_phases`): one tile row, in blocks of
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
                _bt2_rows(hs[r, 0], hs[r, 1], hs[r, 2], hs[r, 3], b[0, lo:hi], b[1, lo:hi], b[0, lo + nc:hi + nc],
                          b[1, lo + nc:hi + nc], nt)
            else:
                _bt4_rows(hs[r, 0], hs[r, 1], hs[r, 2], hs[r, 3], hs[r, 4], hs[r, 5], b[0, lo:hi], b[1, lo:hi],
                          b[2, lo:hi], b[3, lo:hi], b[0, lo + nc:hi + nc], b[1, lo + nc:hi + nc], nt)
        t0 = (i * th + ty) * tw * nc + lo
        t1 = t0 + nt
        for j in range(a):
            if m == 2:
                _bt2_rows(v[j, t0:t1], v[4 + j, t0:t1], v[8 + j, t0:t1], v[12 + j, t0:t1], hs[0, j], hs[1, j],
                          hs[2, j], hs[3, j], nt)
            else:
                _bt4_rows(v[j, t0:t1], v[6 + j, t0:t1], v[12 + j, t0:t1], v[18 + j, t0:t1], v[24 + j, t0:t1],
                          v[30 + j, t0:t1], hs[0, j], hs[1, j], hs[2, j], hs[3, j], hs[4, j], hs[5, j], nt)


@njit(cache=True, inline="always")
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
                _a2_rows(hs[r, 0], hs[r, 1], hs[r, 2], hs[r, 3], b[0, lo:hi], b[1, lo:hi], nt)
            else:
                _a4_rows(hs[r, 0], hs[r, 1], hs[r, 2], hs[r, 3], hs[r, 4], hs[r, 5], b[0, lo:hi], b[1, lo:hi],
                         b[2, lo:hi], b[3, lo:hi], nt)
        t0 = (i * th + ty) * tw * no + lo
        t1 = t0 + nt
        for k in range(a):
            if m == 2:
                _a2_rows(gm[k, t0:t1], gm[4 + k, t0:t1], gm[8 + k, t0:t1], gm[12 + k, t0:t1], hs[0, k], hs[1, k], nt)
            else:
                _a4_rows(gm[k, t0:t1], gm[6 + k, t0:t1], gm[12 + k, t0:t1], gm[18 + k, t0:t1], gm[24 + k, t0:t1],
                         gm[30 + k, t0:t1], hs[0, k], hs[1, k], hs[2, k], hs[3, k], nt)


@njit(parallel=True, cache=True)
def _wgrad_rows2(xs, gs, v, gm, th, tw):
    nimg = xs.shape[0]
    for q in prange(2 * nimg * th):
        if q < nimg * th:
            _rows_in(xs, v, 2, q // th, q % th, th, tw)
        else:
            _rows_grad(gs, gm, 2, (q - nimg * th) // th, q % th, th, tw)


@njit(parallel=True, cache=True)
def _wgrad_rows4(xs, gs, v, gm, th, tw):
    nimg = xs.shape[0]
    for q in prange(2 * nimg * th):
        if q < nimg * th:
            _rows_in(xs, v, 4, q // th, q % th, th, tw)
        else:
            _rows_grad(gs, gm, 4, (q - nimg * th) // th, q % th, th, tw)


@njit(parallel=True, cache=True)
def _weight_grad_transform(du, out, g, ob):
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
                    src = du[q, k1 * a + k2, o0 * nc:o1 * nc]
                    d0, d1, d2 = t[0, k2], t[1, k2], t[2, k2]
                    for j in range(nl):
                        d0[j] += g0 * src[j]
                    for j in range(nl):
                        d1[j] += g1 * src[j]
                    for j in range(nl):
                        d2[j] += g2 * src[j]
        taps = np.zeros((9, nl), du.dtype)  # (G^T dU G)[r, s]
        for r in range(3):
            for k2 in range(a):
                g0, g1, g2 = gg[k2, 0], gg[k2, 1], gg[k2, 2]
                src = t[r, k2]
                d0, d1, d2 = taps[3 * r], taps[3 * r + 1], taps[3 * r + 2]
                for j in range(nl):
                    d0[j] += g0 * src[j]
                for j in range(nl):
                    d1[j] += g1 * src[j]
                for j in range(nl):
                    d2[j] += g2 * src[j]
        for oo in range(o1 - o0):
            for c in range(nc):
                for rs in range(9):
                    out[o0 + oo, c, rs // 3, rs % 3] = taps[rs, oo * nc + c]


# --- forward, channels-last (small planes) -------------------------------------------------------------------
# On small planes (a few tiles per row) the plane-wise passes above run short loops and the junk tile per row
# adds up to 1/tw to the GEMMs. There the forward packs each batch chunk like the weight gradient does
# (:func:`_pack_phases`), transforms it with :func:`_rows_in` into V[a*a, T, C] (no junk tiles), runs
# M[k] (T, O) = V[k] @ U[k]^T and transforms M back with :func:`_rows_out`, fused with the epilogue.
@njit(cache=True, inline="always")
def _rows_out(mm, out, m, n0, i, ty, th, tw, flags, bias, scale, res, act, alpha):
    """out[n0 + i, o, m*ty + r, m*tx + s] = epilogue((A^T M A)[r, s]) for the tiles of tile row ty of image i,
    M[k, ((i*th + ty)*tw + tx)*O + o] (channels-last); valid pixels only."""
    no, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    a = m + 2
    nt = tw * no
    t0 = (i * th + ty) * nt
    t1 = t0 + nt
    s = np.empty((m, a, nt), mm.dtype)  # vertical pass A^T M
    for j in range(a):
        if m == 2:
            _at2_rows(s[0, j], s[1, j], mm[j, t0:t1], mm[4 + j, t0:t1], mm[8 + j, t0:t1], mm[12 + j, t0:t1], nt)
        else:
            _at4_rows(s[0, j], s[1, j], s[2, j], s[3, j], mm[j, t0:t1], mm[6 + j, t0:t1], mm[12 + j, t0:t1],
                      mm[18 + j, t0:t1], mm[24 + j, t0:t1], mm[30 + j, t0:t1], nt)
    yp = np.empty((m, m, nt), mm.dtype)  # yp[r, k, tx*O + o] = out pixel (m*ty + r, m*tx + k) of channel o
    for r in range(m):
        sr = s[r]
        if m == 2:
            _at2_rows(yp[r, 0], yp[r, 1], sr[0], sr[1], sr[2], sr[3], nt)
        else:
            _at4_rows(yp[r, 0], yp[r, 1], yp[r, 2], yp[r, 3], sr[0], sr[1], sr[2], sr[3], sr[4], sr[5], nt)
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
            _epilogue_row(out[n, o, oy], y[:ow], o, flags, bias, scale, res_row, act, alpha)


@njit(parallel=True, cache=True)
def _fwd_rows_in2(xs, v, th, tw):
    for q in prange(xs.shape[0] * th):
        _rows_in(xs, v, 2, q // th, q % th, th, tw)


@njit(parallel=True, cache=True)
def _fwd_rows_in4(xs, v, th, tw):
    for q in prange(xs.shape[0] * th):
        _rows_in(xs, v, 4, q // th, q % th, th, tw)


@njit(parallel=True, cache=True, error_model="numpy")
def _fwd_rows_out(mm, out, m, n0, nimg, th, tw, flags, bias, scale, res, act, alpha):
    for q in prange(nimg * th):
        _rows_out(mm, out, m, n0, q // th, q % th, th, tw, flags, bias, scale, res, act, alpha)


# --- host-side drivers -------------------------------------------------------------------------------------
SPLIT_GEMMS = True  # see _batched_matmul
_GEMM_POOL: list = []  # [threadpoolctl controller, executor, BLAS thread count], made on first use


def _batched_matmul(u: np.ndarray, v: np.ndarray, mm: np.ndarray) -> None:
    """mm[k] = u[k] @ v[k] for the a*a transform positions. These GEMMs are small (K = C), and a multi-threaded
    BLAS splits and re-synchronises each one; running them single-threaded, one group of k per BLAS thread,
    measured faster on 2 cores (GEMM phase: 56x56x64 F4 3.8 -> 2.9 ms, 28x28x128 F4 3.1 -> 2.6, 7x7x512 F2
    6.7 -> 6.4). BLAS's thread count is lowered to 1 only for the duration of the call."""
    if gemm_supported(u, v, mm):  # the numba GEMM (AVX-512 where the CPU has it; gemm.py), all threads
        gemm_matmul(u, v, mm)
        return
    if not SPLIT_GEMMS:
        np.matmul(u, v, out=mm)
        return
    if not _GEMM_POOL:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import ThreadpoolController

        ctl = ThreadpoolController()
        nt = max([1] + [d["num_threads"] for d in ctl.info() if d["user_api"] == "blas"])
        _GEMM_POOL.extend([ctl, ThreadPoolExecutor(max(1, nt - 1), thread_name_prefix="winograd-gemm"), nt])
    ctl, pool, nt = _GEMM_POOL
    a2 = u.shape[0]
    groups = min(nt, a2)
    if groups == 1:
        np.matmul(u, v, out=mm)
        return
    bounds = [a2 * g // groups for g in range(groups + 1)]
    with ctl.limit(limits=1, user_api="blas"):
        futs = [pool.submit(np.matmul, u[b0:b1], v[b0:b1], out=mm[b0:b1]) for b0, b1 in zip(bounds[1:-1], bounds[2:])]
        np.matmul(u[:bounds[1]], v[:bounds[1]], out=mm[:bounds[1]])
        for f in futs:
            f.result()


def _streams(role: str, count: int, rows: int, cols: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(flat, view): a (count, rows*cols) scratch workspace as the kernels index it and as the GEMMs take it."""
    flat = scratch(role, (count, rows * cols), dtype)
    return flat, flat.reshape(count, rows, cols)


def winograd_weights(w: np.ndarray, m: int = 2, flip: bool = False) -> np.ndarray:
    """U as a new (a*a, O, C) array for w (O, C, 3, 3) (``flip``: (a*a, C, O), the kernel of the input
    gradient), to pass as ``u=`` to :func:`winograd_forward` while w is unchanged (same m)."""
    o, c = w.shape[:2]
    if flip:
        o, c = c, o
    u = np.empty(((m + 2) ** 2, o * c), w.dtype)
    _weight_transform(np.ascontiguousarray(w), u, _G2 if m == 2 else _G4, flip)
    return u.reshape(-1, o, c)


def winograd_forward(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep: Epilogue, padding,
                     u: np.ndarray | None = None, m: int | None = None, flip: bool = False) -> None:
    """out (N, O, Ho, Wo) = epilogue(conv2d(x, w, stride 1, padding)) for a 3x3 kernel; ``padding`` is
    ((top, bottom), (left, right)) or an int. ``m``: output tile (2, 4; None: :func:`winograd_tile`).
    ``u``: precomputed :func:`winograd_weights` for that m. ``flip``: w is (C, O, 3, 3) and the conv uses
    w.transpose(1, 0)[..., ::-1, ::-1] (the input gradient's kernel)."""
    n, o, oh, ow = out.shape
    if out.size == 0:
        return
    c = x.shape[1]
    if c == 0:  # empty sum: the epilogue of zeros
        y = np.zeros(out.shape, out.dtype)
        ep.apply_inplace(y.reshape(n, o, oh * ow))
        out[...] = y
        return
    (pt, _), (pl, _) = ((padding, padding), (padding, padding)) if np.isscalar(padding) else padding
    m = m or winograd_tile(oh, ow, o, n)
    a2 = (m + 2) ** 2
    x = np.ascontiguousarray(x)
    dt = out.dtype
    if u is None:
        uf, u = _streams("wino_u", a2, o, c, dt)
        _weight_transform(np.ascontiguousarray(w), uf, _G2 if m == 2 else _G4, flip)
    th, tw = (oh + m - 1) // m, (ow + m - 1) // m
    res = ep.residual.reshape(out.shape) if ep.flags & HAS_RES else np.zeros((1, 1, 1, 1), dt)
    res = np.ascontiguousarray(res, dt)
    layout = FORWARD_LAYOUT or ("rows" if ow <= ROWS_MAX_OW else "planes")
    if layout == "rows":
        _forward_rows(x, u, out, ep, res, m, pt, pl, th, tw)
        return
    ntile = th * (tw + 1)  # per image, with the junk tile per row (see _input_plane)
    # Chunks of images keep V and M in cache between the passes (1 thread, 56x56x64 F4: 10.5 vs 12.0 ms
    # unchunked), but every chunk's GEMMs re-read U: with 512x512 weights at 7x7 one chunk is best.
    budget = max(CHUNK_BYTES, 2 * u.nbytes)
    nb = max(1, min(n, budget // (a2 * (c + o) * ntile * dt.itemsize)))
    for n0 in range(0, n, nb):
        k = min(nb, n - n0)
        vf, v = _streams("wino_v", a2, c, k * ntile, dt)
        mf, mm = _streams("wino_m", a2, o, k * ntile, dt)
        (_input_transform2 if m == 2 else _input_transform4)(x, vf, n0, k, pt, pl, th, tw)
        _batched_matmul(u, v, mm)
        _output_transform(mf, out, m, n0, k, th, tw, ep.flags, ep.bias, ep.scale, res, ep.act, ep.alpha)


def _forward_rows(x, u, out, ep, res, m, pt, pl, th, tw) -> None:
    """The channels-last forward (see the section above :func:`_rows_out`), per batch chunk: pack x, V, the
    GEMMs M[k] = V[k] @ U[k]^T, the output transform with the epilogue."""
    n, o = out.shape[:2]
    c = x.shape[1]
    a2 = (m + 2) ** 2
    dt = out.dtype
    ntile = th * tw
    xrows = m * th + 2
    per_image = (a2 * ntile * (c + o) + xrows * m * (tw + 1) * c) * dt.itemsize
    budget = max(CHUNK_BYTES, 2 * u.nbytes)
    nq = -(-n // max(1, min(n, budget // per_image)))
    nb = -(-n // nq)  # even chunks
    ut = u.transpose(0, 2, 1)  # (a*a, C, O)
    for n0 in range(0, n, nb):
        k = min(nb, n - n0)
        xs = scratch("wino_fxs", (k, xrows, m, tw + 1, c), dt)
        _pack_phases(x, xs, n0, pt, pl, max(1, 512 // x.shape[3]))
        v = scratch("wino_v", (a2, k * ntile, c), dt)
        mm = scratch("wino_m", (a2, k * ntile, o), dt)
        (_fwd_rows_in2 if m == 2 else _fwd_rows_in4)(xs, v.reshape(a2, -1), th, tw)
        _batched_matmul(v, ut, mm)
        _fwd_rows_out(mm.reshape(a2, -1), out, m, n0, k, th, tw, ep.flags, ep.bias, ep.scale, res, ep.act, ep.alpha)


def winograd_input_grad(gy: np.ndarray, w: np.ndarray, out: np.ndarray, padding, m: int | None = None) -> None:
    """out (N, C, H, W) = the input gradient of y = conv2d(x, w, stride 1, padding) for a 3x3 kernel: the
    stride-1 conv of gy with w[:, :, ::-1, ::-1] transposed to (C, O), padded by 2 - p per side."""
    if out.size == 0:
        return
    if gy.size == 0:
        fill(out, 0)
        return
    (pt, pb), (pl, pr) = ((padding, padding), (padding, padding)) if np.isscalar(padding) else padding
    winograd_forward(gy, w, out, Epilogue(out.dtype), ((2 - pt, 2 - pb), (2 - pl, 2 - pr)), m=m, flip=True)


def winograd_weight_grad(x: np.ndarray, gy: np.ndarray, out: np.ndarray, padding, m: int | None = None) -> None:
    """out (O, C, 3, 3) = the weight gradient of y = conv2d(x, w, stride 1, padding) for a 3x3 kernel, given
    gy (N, O, Ho, Wo); ``padding`` is ((top, bottom), (left, right)) or an int. ``m``: output tile (2, 4; None:
    :func:`winograd_weight_grad_tile`). Per batch chunk: pack x and gy channels-last, transform them into V and
    Gy, dU[k] = Gy[k]^T @ V[k] (a*a BLAS GEMMs); then dW = G^T dU G summed over the chunks (see the "weight
    gradient" section above). x and gy are cast to out's dtype."""
    o, c = out.shape[:2]
    if out.size == 0:
        return
    n, _, oh, ow = gy.shape
    if gy.size == 0:
        fill(out, 0)
        return
    (pt, _), (pl, _) = ((padding, padding), (padding, padding)) if np.isscalar(padding) else padding
    m = m or winograd_weight_grad_tile(oh, ow)
    a2 = (m + 2) ** 2
    dt = out.dtype
    x, gy = np.ascontiguousarray(x, dt), np.ascontiguousarray(gy, dt)
    h, w = x.shape[2:]
    th, tw = (oh + m - 1) // m, (ow + m - 1) // m
    ntile = th * tw
    xrows, grows = m * th + 2, m * th
    # Chunks of images keep V, Gy and the packed planes of one chunk in cache between the passes and the GEMMs;
    # every chunk adds one partial dU (summed by the final transform), so large weights take one chunk.
    per_image = (a2 * ntile * (c + o) + xrows * m * (tw + 1) * c + grows * m * tw * o) * dt.itemsize
    budget = max(WGRAD_CHUNK_BYTES, 2 * a2 * o * c * dt.itemsize)
    nq = -(-n // max(1, min(n, budget // per_image)))
    nb = -(-n // nq)  # even chunks
    duf = scratch("wino_du", (nq, a2, o * c), dt)
    du = duf.reshape(nq, a2, o, c)
    for q in range(nq):
        n0 = q * nb
        k = min(nb, n - n0)
        xs = scratch("wino_xs", (k, xrows, m, tw + 1, c), dt)
        gs = scratch("wino_gs", (k, grows, m, tw, o), dt)
        _pack_phases(x, xs, n0, pt, pl, max(1, 512 // w))
        _pack_phases(gy, gs, n0, 0, 0, max(1, 512 // ow))
        v = scratch("wino_v", (a2, k * ntile, c), dt)
        gm = scratch("wino_m", (a2, k * ntile, o), dt)
        (_wgrad_rows2 if m == 2 else _wgrad_rows4)(xs, gs, v.reshape(a2, -1), gm.reshape(a2, -1), th, tw)
        _batched_matmul(gm.transpose(0, 2, 1), v, du[q])  # dU[k] (O, C) = Gy[k]^T @ V[k], inner dimension T
    _weight_grad_transform(duf, out, _G2 if m == 2 else _G4, max(1, min(4096 // c, o // 8)))
