"""Convolution as an implicit GEMM over offset tables (algorithm ``gemm-tables``): no im2col matrix, no col2im.

With x zero-padded to planes of Hp x Wp (x itself when the layer has no padding), every entry of the im2col
matrix is one load from the flat padded input at the sum of two offsets:

    im2col[k, p] = xp[toff[k] + poff[p]]
    poff[n*P + y*Wo + z]    = n*C*Hp*Wp + y*sh*Wp + z*sw      (output pixel -> its first tap's input position)
    toff[(c*kh + i)*kw + j] = c*Hp*Wp + i*dh*Wp + j*dw         (tap -> its offset from that position)

The register tile of :mod:`.gemm` in its ``tables`` form reads A(r, kk) = a[roff[r] + aoff[kk]] as broadcasts,
so the gathered operand never needs packing; the other operand is a small packed panel or read in place:

- forward: out^T (P x O) = X (rows: poff, inner: toff) @ W^T (packed NR-column panels); groups of row tiles per
  prange item, the epilogue (bias, scale, residual, activation) as each group's result moves to NCHW.
- weight gradient: gW^T (K x O) = X^T (rows: toff, inner: poff) @ gy^T (packed panels), the pixel range split in
  chunks so that small layers still occupy every thread; the chunks' partial sums are added at the end.
- input gradient: per image, gcols (K x P) = W^T (rows: tap index, inner: o*K) @ gy[n] (read in place), each
  register tile scatter-added into gx at toff[k] + poff[p] right away (col2im without the matrix).

Why: for small planes (LeNet conv2, 20->50 5x5 on 12x12, batch 64) the im2col matrix (8 MiB) and col2im passes
cost more than the GEMMs. There (ms, 2-core Zen 5): forward 0.54 vs 1.9 im2col + GEMM; weight gradient 0.64 vs
1.4 reusing the forward's im2col matrix (2.9 without).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..gemm import AVX512, KC, VL, make_tile, round_up
from .direct import pad_planes
from .epilogue import HAS_RES, Epilogue, epilogue_row
from .workspace import Workspace

MR, NV = (10, 2) if AVX512 else (5, 2)  # register tile rows x vectors (20 / 10 accumulators + 2 loads + bcast)
NR = NV * VL
GROUP = 8  # row tiles per prange item (forward, weight gradient): a B panel block is reused GROUP times from L1
_tile = make_tile(MR, NV, tables=True)


@njit(parallel=True, cache=True)
def pack_panels(src, bp):
    """bp[pan, g*P + p, q] = src[g, pan*NR + q, p] (0 past src's rows): (G, R, P) -> NR-column panels of the
    (G*P, R) matrix; W^T from W (1, O, K), gy^T from gy (N, O, P). A transpose, in blocks of 16 pixels x 16 (then
    4, then 1) rows with constant trip counts, so LLVM unrolls them (row by row with strided stores it ran 1.5x
    slower: LeNet conv1's gy, (64, 20, 576), 0.85 -> 0.55 ms on one thread)."""
    ng, nrow, npix = src.shape
    npan, _, nr = bp.shape
    for t in prange(npan * ng):
        pan, g = t // ng, t % ng
        dst, s = bp[pan], src[g]
        r0 = pan * nr
        rows = min(nr, nrow - r0)
        base = g * npix
        pfull = npix - npix % 16
        for p0 in range(0, pfull, 16):
            q0 = 0
            while q0 + 16 <= rows:
                for q in range(16):
                    for p in range(16):
                        dst[base + p0 + p, q0 + q] = s[r0 + q0 + q, p0 + p]
                q0 += 16
            while q0 + 4 <= rows:
                for q in range(4):
                    for p in range(16):
                        dst[base + p0 + p, q0 + q] = s[r0 + q0 + q, p0 + p]
                q0 += 4
            for q in range(q0, rows):
                for p in range(16):
                    dst[base + p0 + p, q] = s[r0 + q, p0 + p]
            for p in range(16):
                d = dst[base + p0 + p]
                for q in range(rows, nr):
                    d[q] = 0
        for p in range(pfull, npix):
            d = dst[base + p]
            for q in range(rows):
                d[q] = s[r0 + q, p]
            for q in range(rows, nr):
                d[q] = 0


@njit(parallel=True, cache=True)
def crop_planes(xp, x, pt, pl, wp):
    """x[n, c] = the (H, W) window at (pt, pl) of the flat padded plane xp[n, c] of row width wp."""
    nn, nc, h, w = x.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        src, dst = xp[n, c], x[n, c]
        for a in range(h):
            row = src[(a + pt) * wp + pl:(a + pt) * wp + pl + w]
            for b in range(w):
                dst[a, b] = row[b]


@njit(parallel=True, cache=True, error_model="numpy")
def _forward(xp, poff, toff, bp, out, flags, bias, scale, res, act, alpha, ybuf):
    """out[n, o, :] = epilogue(X @ W^T) over groups of GROUP row tiles (MR output pixels each; poff is padded to
    whole tiles). ybuf[thread]: a flat (GROUP*MR, npan*NR) result block."""
    nn, no, npix = out.shape
    npan, k = bp.shape[0], bp.shape[1]
    ldc = npan * NR
    total = nn * npix
    nrt = (total + MR - 1) // MR
    x_addr, p_addr, t_addr, b_addr = xp.ctypes.data, poff.ctypes.data, toff.ctypes.data, bp.ctypes.data
    for g in prange((nrt + GROUP - 1) // GROUP):
        y = ybuf[numba.get_thread_id()]
        y_addr = y.ctypes.data
        r0, r1 = g * GROUP, min(nrt, (g + 1) * GROUP)
        for pan in range(npan):
            for k0 in range(0, k, KC):
                kc = min(KC, k - k0)
                for rt in range(r0, r1):
                    _tile(kc, x_addr, p_addr + rt * MR * 8, t_addr + k0 * 8, b_addr + (pan * k + k0) * NR * 4, NR,
                          y_addr + ((rt - r0) * MR * ldc + pan * NR) * 4, ldc, k0 > 0)
        p, pend = r0 * MR, min(total, r1 * MR)
        while p < pend:  # rows of y -> NCHW, in runs inside one image
            n, q = p // npix, p % npix
            run = min(pend - p, npix - q)
            y0 = p - r0 * MR
            for o in range(no):
                res_row = res[n, o, q:q + run] if flags & HAS_RES else res[0, 0]
                src = y[y0 * ldc + o:(y0 + run) * ldc:ldc]
                epilogue_row(out[n, o, q:q + run], src, o, flags, bias, scale, res_row, act, alpha)
            p += run


@njit(parallel=True, cache=True)
def _weight_grad(xp, toff, poff, bp, cpart, npix):
    """cpart[ch] = X^T @ gy^T over chunk ch of the pixels (whole KC blocks), rows in groups of GROUP tiles."""
    nch, ntp, ldc = cpart.shape
    npan = bp.shape[0]
    nrt = ntp // MR
    ngr = (nrt + GROUP - 1) // GROUP
    kch = ((npix + nch - 1) // nch + KC - 1) // KC * KC
    x_addr, p_addr, t_addr, b_addr, c_addr = (xp.ctypes.data, poff.ctypes.data, toff.ctypes.data, bp.ctypes.data,
                                              cpart.ctypes.data)
    for item in prange(ngr * nch):
        g, ch = item // nch, item % nch
        ks, ke = ch * kch, min(npix, (ch + 1) * kch)
        r0, r1 = g * GROUP, min(nrt, (g + 1) * GROUP)
        if ks >= ke:
            cpart[ch, r0 * MR:r1 * MR] = 0
            continue
        for pan in range(npan):
            for k0 in range(ks, ke, KC):
                kc = min(KC, ke - k0)
                for rt in range(r0, r1):
                    _tile(kc, x_addr, t_addr + rt * MR * 8, p_addr + k0 * 8, b_addr + (pan * npix + k0) * NR * 4,
                          NR, c_addr + ((ch * ntp + rt * MR) * ldc + pan * NR) * 4, ldc, k0 > ks)


@njit(parallel=True, cache=True)
def _input_grad(gy, w2, rows, ooff, toff, poff, gxp, ntaps, bbuf, tbuf):
    """Per image n: gxp[n] = 0, then for each (tap tile, pixel panel) the register tile W^T @ gy[n] (K = O) is
    added into gxp[n] at toff[k] + poff[p]. gy (N, O, P) is read in place (a panel crossing its image's end is
    copied into bbuf first); rows[r] = r (tap index, 0 in the padding) addresses W^T through w2 (O, K). The adds
    run over the panel's runs of consecutive input positions (one per output row at stride 1) as slices, which
    LLVM vectorizes (element by element through poff: LeNet conv2, batch 64, 3.05 -> 2.72 ms on one thread); each
    element still gets its adds in the same order. Runs shorter than 4 on average (strided layers) stay element by
    element: a slice per element cost more (3x3/2 64->128 at 32x32 b32: 15 vs 25 ms)."""
    nn, no, npix = gy.shape
    ntp = rows.shape[0]
    w_addr, r_addr, o_addr = w2.ctypes.data, rows.ctypes.data, ooff.ctypes.data
    for n in prange(nn):
        tid = numba.get_thread_id()
        g = gxp[n]
        g[:] = 0
        bb, tile = bbuf[tid], tbuf[tid]
        t_base = tile.ctypes.data
        starts = np.empty(NR + 1, np.int64)
        for q0 in range(0, npix, NR):
            cols = min(NR, npix - q0)
            if cols == NR:
                b_addr, bks = gy[n, 0, q0:].ctypes.data, npix
            else:  # the image's last, partial panel: zero-padded copy
                for o in range(no):
                    for e in range(NR):
                        bb[o * NR + e] = gy[n, o, q0 + e] if e < cols else 0
                b_addr, bks = bb.ctypes.data, NR
            pcols = poff[q0:q0 + cols]
            nrun = 0
            starts[0] = 0
            for e in range(1, cols):
                if pcols[e] != pcols[e - 1] + 1:
                    nrun += 1
                    starts[nrun] = e
            nrun += 1
            starts[nrun] = cols
            for r0 in range(0, ntp, MR):
                for k0 in range(0, no, KC):
                    _tile(min(KC, no - k0), w_addr, r_addr + r0 * 8, o_addr + k0 * 8, b_addr + k0 * bks * 4, bks,
                          t_base, NR, k0 > 0)
                for r in range(min(MR, ntaps - r0)):
                    base = toff[r0 + r]
                    if 4 * nrun > cols:  # short runs (strided layers): element by element, no slices
                        trow = tile[r * NR:r * NR + cols]
                        for e in range(cols):
                            g[base + pcols[e]] += trow[e]
                        continue
                    for u in range(nrun):
                        e0, e1 = starts[u], starts[u + 1]
                        dst = g[base + pcols[e0]:base + pcols[e0] + e1 - e0]
                        src = tile[r * NR + e0:r * NR + e1]
                        for e in range(e1 - e0):
                            dst[e] += src[e]


@njit(parallel=True, cache=True)
def _sum_transposed(cpart, gw):
    """gw[o, k] = sum over chunks of cpart[ch, k, o], in 32 x 32 blocks (a strided numpy transpose of the
    4608 x 512 gradient of a 512-channel 3x3 layer took 6.5 ms)."""
    nch = cpart.shape[0]
    no, nk = gw.shape
    nbo = (no + 31) // 32
    for t in prange(((nk + 31) // 32) * nbo):
        k0, o0 = (t // nbo) * 32, (t % nbo) * 32
        k1, o1 = min(nk, k0 + 32), min(no, o0 + 32)
        for o in range(o0, o1):
            for k in range(k0, k1):
                v = cpart[0, k, o]
                for ch in range(1, nch):
                    v += cpart[ch, k, o]
                gw[o, k] = v


# --- host side ------------------------------------------------------------------------------------------------
_TABLES: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def tables(n: int, c: int, hp: int, wp: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, oh: int,
           ow: int) -> tuple[np.ndarray, np.ndarray]:
    """(poff, toff) for n images of c padded planes hp x wp, each padded with zeros (a valid offset) to whole
    MR-row tiles; cached per geometry."""
    key = (n, c, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow)
    hit = _TABLES.get(key)
    if hit is not None:
        return hit
    plane = hp * wp
    pix = (np.arange(n)[:, None, None] * (c * plane) + np.arange(oh)[None, :, None] * (sh * wp)
           + np.arange(ow)[None, None, :] * sw).ravel()
    taps = (np.arange(c)[:, None, None] * plane + np.arange(kh)[None, :, None] * (dh * wp)
            + np.arange(kw)[None, None, :] * dw).ravel()
    out = []
    for t in (pix, taps):
        full = np.zeros(round_up(t.size, MR), np.int64)
        full[:t.size] = t
        out.append(full)
    if len(_TABLES) >= 64:
        _TABLES.clear()
    _TABLES[key] = (out[0], out[1])
    return out[0], out[1]


def _padded_input(x: np.ndarray, padding, ws: Workspace) -> tuple[np.ndarray, int, int]:
    """x as (N, C, Hp*Wp) zero-padded planes (x itself, reshaped, without padding) and (Hp, Wp)."""
    (pt, pb), (pl, pr) = padding
    n, c, h, w = x.shape
    hp, wp = h + pt + pb, w + pl + pr
    x = np.ascontiguousarray(x)
    if pt == pb == pl == pr == 0:
        return x.reshape(n, c, h * w), hp, wp
    xp = ws.get("xpad", (n, c, hp * wp), x.dtype)
    pad_planes(x, xp, pt, pl, wp)
    return xp, hp, wp


def _panels(src3: np.ndarray, ws: Workspace | None = None, role: str = "") -> np.ndarray:
    """:func:`pack_panels` of src3 (G, R, P) into the workspace buffer ``role``, or a new array (to keep)."""
    g, rows, p = src3.shape
    shape = (-(-rows // NR), g * p, NR)
    bp = np.empty(shape, np.float32) if ws is None else ws.get(role, shape, np.float32)
    pack_panels(src3, bp)
    return bp


def weight_panels(w: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
    """W^T of w (O, C, kh, kw) in the forward's NR-column panels: in the workspace, or a new array (to keep)."""
    return _panels(np.ascontiguousarray(w).reshape(1, w.shape[0], -1), ws, "tables_w")


def forward(x: np.ndarray, w: np.ndarray, out: np.ndarray, ep, geom: tuple[int, ...], padding, ws: Workspace,
            panels: np.ndarray | None = None) -> None:
    """out = epilogue(conv2d(x, w)) for float32, groups = 1; geom = (sh, sw, dh, dw). ``panels``: w already
    packed by :func:`weight_panels` (kept for a compiled graph's constant weights), else packed here."""
    sh, sw, dh, dw = geom
    n, o, oh, ow = out.shape
    _, c, kh, kw = w.shape
    xp, hp, wp = _padded_input(x, padding, ws)
    poff, toff = tables(n, c, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow)
    bp = panels if panels is not None else weight_panels(w, ws)
    ybuf = ws.per_thread("tables_y", GROUP * MR * bp.shape[0] * NR)
    _forward(xp, poff, toff, bp, out.reshape(n, o, oh * ow), ep.flags, ep.bias, ep.scale, ep.res3((n, o, oh * ow)),
             ep.act, ep.alpha, ybuf)


def weight_grad(x: np.ndarray, gy: np.ndarray, out: np.ndarray, geom: tuple[int, ...], padding, ws: Workspace
                ) -> None:
    """out (O, C, kh, kw) = the weight gradient for float32, groups = 1."""
    sh, sw, dh, dw = geom
    n, o, oh, ow = gy.shape
    _, c, kh, kw = out.shape
    xp, hp, wp = _padded_input(x, padding, ws)
    poff, toff = tables(n, c, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow)
    npix, ntaps = n * oh * ow, c * kh * kw
    bp = _panels(gy.reshape(n, o, oh * ow), ws, "tables_gy")
    groups = -(-toff.size // MR // GROUP)
    threads = numba.get_num_threads()
    nch = max(1, min(-(-4 * threads // groups), -(-npix // (4 * KC))))  # >= 4 items per thread, chunks >= 4 KC
    cpart = ws.get("tables_gw", (nch, toff.size, bp.shape[0] * NR), np.float32)
    _weight_grad(xp, toff, poff, bp, cpart, npix)
    _sum_transposed(cpart, out.reshape(o, ntaps))


def input_grad(gy: np.ndarray, w: np.ndarray, out: np.ndarray, geom: tuple[int, ...], padding, ws: Workspace
               ) -> None:
    """out (N, C, H, W) = the input gradient for float32, groups = 1. Stride 1 with about as many input as output
    pixels ("same" padding): the forward kernel on gy with the flipped, transposed kernel (the full correlation
    computes no padding zeros there, and needs no scatter: 32x32x64 b32 6.5 vs 10.7 ms); else the scatter form."""
    sh, sw, dh, dw = geom
    (pt, pb), (pl, pr) = padding
    n, o, oh, ow = gy.shape
    _, c, h, wd = out.shape
    _, _, kh, kw = w.shape
    full = ((dh * (kh - 1) - pt, dh * (kh - 1) - pb), (dw * (kw - 1) - pl, dw * (kw - 1) - pr))
    if sh == sw == 1 and min(min(full)) >= 0 and h * wd <= 1.25 * oh * ow:
        wf = ws.get("tables_wflip", (c, o, kh, kw), w.dtype)
        wf[...] = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
        forward(gy, wf, out, Epilogue(out.dtype), geom, full, ws)
        return
    hp, wp = h + pt + pb, wd + pl + pr
    poff, toff = tables(1, c, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow)
    ntaps = c * kh * kw
    rows = _rows(toff.size, ntaps)
    padded = pt or pb or pl or pr
    gxp = ws.get("tables_gx", (n, c * hp * wp), np.float32) if padded else out.reshape(n, c * h * wd)
    _input_grad(np.ascontiguousarray(gy).reshape(n, o, oh * ow), np.ascontiguousarray(w).reshape(o, ntaps), rows,
                np.arange(o, dtype=np.int64) * ntaps, toff, poff, gxp, ntaps, ws.per_thread("tables_b", o * NR),
                ws.per_thread("tables_t", MR * NR))
    if padded:
        crop_planes(gxp.reshape(n, c, hp * wp), out, pt, pl, wp)


def _rows(size: int, valid: int) -> np.ndarray:
    r = np.zeros(size, np.int64)
    r[:valid] = np.arange(valid)
    return r
