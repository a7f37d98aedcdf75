"""Depthwise ``blocked_conv2d`` (groups = C = O) on the numba backend, read straight from the unpadded input plane:
every output row of one channel block is tiles of output pixels with their accumulators in registers.

No padded copy of the plane: an output row's kernel rows inside the input are a contiguous run of the taps, so
rows at the top and bottom edges run the same tiles over the interior columns with fewer taps. Interior columns go
through :func:`make_row_tile` for 3x3 layers of stride 1 or 2 (each input vector of a kernel row loaded once for
every tap that reads it), else the tap-table tile of :mod:`.tile` (MRD pixels, then 4, then 1); each border column
is one call of the one-pixel tile over exactly its taps (:func:`column_classes`). A 3x3 output vector costs about
its 9 FMAs and 4 epilogue operations on the FP pipes; the plane is read once, row after row. prange items are
(image, channel block, band of output rows); the epilogue (bias = folded BN, residual, clamp) runs on the
accumulators.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from ..codegen import AVX512, VL, counted_loop, vector_intrinsic
from .tile import make_blocked_tile, store_epilogue


def make_row_tile(mr: int, kw: int, sw: int, edge: bool = False):
    """The depthwise tile of ``mr`` output pixels of one row for kernel width ``kw``, stride ``sw`` (dilation 1), all
    kernel columns inside the input: per kernel row, each input vector of the row is loaded once and feeds every
    (pixel, kernel column) that reads it (stride 1: mr + kw - 1 loads for mr*kw FMAs, where the tap-table tile
    loads mr*kw), the kw weight vectors held in registers. ``tile(ni, a, rstride, b, c, res, bias, has_res, lo,
    hi)``: ``a`` the byte address of the first pixel's first tap, ``rstride`` the bytes between kernel rows, ``b``
    the first kernel row's kw weight vectors (the next row's follow), C / residual the mr output vectors; the
    epilogue of :func:`.tile.make_blocked_tile` (bias, residual, clamp).

    ``edge``: a tile at a row's ends, three more arguments ``ulo, uhi, nstore``: only the input vectors u in
    [ulo, uhi) of each kernel row are read (the others, outside the image, count as zeros), and only the first
    ``nstore`` pixels are stored (the others' stores go to pixel 0 before its own, their residual read from pixel
    0's). A row's border pixels and its last, short run then take one tile instead of a one-pixel tile each
    (7x7 planes: four of a row's seven pixels)."""
    span = (mr - 1) * sw + kw  # input vectors of one kernel row

    def build(context, builder, args):
        ni, a, rstride, b, c, res, bias, has_res, lo, hi = args[:10]
        f32, i64 = ir.FloatType(), ir.IntType(64)
        vty = ir.VectorType(f32, VL)
        vptr = ir.PointerType(vty)
        zero = ir.Constant(vty, [0.0] * VL)
        fma = vector_intrinsic(builder, "fma", 3)

        def addr(base, k):  # the byte address of the k-th vector from base
            return builder.add(base, ir.Constant(i64, k * VL * 4))

        def vec(base, k):
            return builder.inttoptr(addr(base, k), vptr)

        def load_input(arow, u):
            if not edge:
                return builder.load(vec(arow, u), align=4)
            ulo, uhi = args[10], args[11]
            ok = builder.and_(builder.icmp_signed("<=", ulo, ir.Constant(i64, u)),
                              builder.icmp_signed(">", uhi, ir.Constant(i64, u)))
            safe = builder.add(arow, builder.mul(ulo, ir.Constant(i64, VL * 4)))  # a vector inside the image
            v = builder.load(builder.inttoptr(builder.select(ok, addr(arow, u), safe), vptr), align=4)
            return builder.select(ok, v, zero)

        def step(i, acc):
            arow = builder.add(a, builder.mul(i, rstride))
            brow = builder.add(b, builder.mul(i, ir.Constant(i64, kw * VL * 4)))
            wv = [builder.load(vec(brow, j), align=4) for j in range(kw)]
            new = list(acc)
            for u in range(span):
                v = load_input(arow, u)
                for j in range(kw):
                    r, rem = divmod(u - j, sw)
                    if rem == 0 and 0 <= r < mr:
                        new[r] = builder.call(fma, [v, wv[j], new[r]])
            return new

        bvec = builder.load(builder.inttoptr(bias, vptr), align=4)
        new = counted_loop(builder, "rtile", 0, ni, [bvec] * mr, step)  # the sums start from the bias
        cs, rs = [vec(c, r) for r in range(mr)], [vec(res, r) for r in range(mr)]
        if edge:  # pixels from nstore on: stored first, into pixel 0, which its own store then overwrites
            keep = [builder.icmp_signed("<", ir.Constant(i64, r), args[12]) for r in range(mr)]
            cs = [builder.select(k, p, cs[0]) for k, p in zip(keep, cs)][::-1]
            rs = [builder.select(k, p, rs[0]) for k, p in zip(keep, rs)][::-1]
            new = new[::-1]
        store_epilogue(builder, new, cs, rs, has_res, lo, hi)
        return context.get_dummy_value()

    base = [types.intp] * 7 + [types.boolean, types.float32, types.float32]
    if edge:
        @intrinsic
        def tile(typingctx, ni, a, rstride, b, c, res, bias, has_res, lo, hi, ulo, uhi, nstore):
            return types.void(*base, types.intp, types.intp, types.intp), \
                lambda context, builder, signature, args: build(context, builder, args)
    else:
        @intrinsic
        def tile(typingctx, ni, a, rstride, b, c, res, bias, has_res, lo, hi):
            return types.void(*base), lambda context, builder, signature, args: build(context, builder, args)

    return tile


MRD = 12 if AVX512 else 6  # output pixels per tile: MRD accumulators + one weight vector + a load
_tile = make_blocked_tile(MRD, 1, depthwise=True)
_tile4 = make_blocked_tile(4, 1, depthwise=True)  # the interior pixels left over after whole MRD tiles
_one = make_blocked_tile(1, 1, depthwise=True)
_row3s1, _row3s2 = make_row_tile(MRD, 3, 1), make_row_tile(MRD, 3, 2)  # MobileNet's 3x3 layers
# a row of at most MRD pixels as one tile over its border columns too, of the first of these sizes that holds it:
# where each border pixel and the interior's leftover took a one-pixel tile (its FMAs waiting on each other), a 7x7
# row of 960 channels ran at 14.6 GMAC/s on one core
EDGE_MR = (MRD // 3, 2 * MRD // 3, MRD)
# and the pixels wider rows leave after whole MRD tiles (112 -> 56: 55 = 4 x 12 + 7): a tap-table tile per 4 or per
# pixel cost several times a row tile's time per pixel (edge tiles there, their selects on every input vector, cost
# more than the border pixels' one-pixel tiles: 14x14 rows 22.6 -> 25.8 us on one core)
_row3s1_6, _row3s2_6 = make_row_tile(6, 3, 1), make_row_tile(6, 3, 2)
_row3s1_3, _row3s2_3 = make_row_tile(3, 3, 1), make_row_tile(3, 3, 2)
_edge1 = [make_row_tile(m, 3, 1, edge=True) for m in EDGE_MR]
_edge2 = [make_row_tile(m, 3, 2, edge=True) for m in EDGE_MR]
_e1a, _e1b, _e1c = _edge1
_e2a, _e2b, _e2c = _edge2
F32 = 4  # bytes per element: the tile takes byte addresses


@njit(cache=True)
def _bias_only(out, res, has_res, bias, lo, hi, n, cb, p):
    """out[n, cb, p] = clamp(bias + res) for a pixel that no tap reaches (padding wider than the kernel)."""
    for q in range(VL):
        v = bias[cb * VL + q] + (res[n, cb, p, q] if has_res else np.float32(0.0))
        out[n, cb, p, q] = min(max(v, lo), hi)


@njit(parallel=True, cache=True)
def depthwise(x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, out, has_res, lo, hi, sh, sw, pt, dh, dw, kh, kw,
              ox0, ox1, band):
    """out[n, cb, oy*OW + ox, :] = clamp(bias + sum_{i,j} x[n, cb, oy*sh - pt + i*dh, ox*sw - pl + j*dw, :] *
    w[cb, i*kw + j, :] + res) over the taps inside the input, for x (N, CB, H, W, VL), out / res (N, CB, OH*OW, VL),
    wpk (CB, kh*kw, VL), taps[i*kw + j] = (i*dh*W + j*dw)*VL and xcol[ox] = (ox*sw - pl)*VL (int64, elements).
    Columns [ox0, ox1) have every kernel column inside the input; a border column ox has class c = ccls[ox] (-1:
    no kernel column inside) whose kernel columns inside are the run j0 .. j0 + cn[c]: ctaps[c, i*cn[c] + j'] and
    cwpk[c, cb, i*cn[c] + j'] the tap and weights of kernel column j0 + j' (:func:`column_classes`). ``band``:
    output rows per prange item."""
    nn, ncb, npix, _ = out.shape
    oh = npix // xcol.shape[0]
    lo32, hi32 = np.float32(lo), np.float32(hi)
    nband = (oh + band - 1) // band
    for t in prange(nn * ncb * nband):
        n = t // (ncb * nband)
        cb = (t // nband) % ncb
        bi = t % nband
        depthwise_rows(x[n, cb].ctypes.data, x.shape[2], x.shape[3], 0, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias,
                       res, out, has_res, lo32, hi32, sh, sw, pt, dh, dw, kh, kw, ox0, ox1, n, cb, bi * band,
                       min(oh, (bi + 1) * band))


@njit(cache=True, inline="always")
def depthwise_rows(x_addr, h, w, y0, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, out, has_res, lo32, hi32, sh,
                   sw, pt, dh, dw, kh, kw, ox0, ox1, n, cb, oy0, oy1):
    """Output rows [oy0, oy1) of channel block ``cb`` of image ``n`` (:func:`depthwise`'s operands, ``lo32`` /
    ``hi32`` the float32 clamp bounds), the input plane of (n, cb) an (h, w, VL) image of which the rows from
    ``y0`` on are held at byte address ``x_addr`` (the whole plane: y0 = 0; blocked/inverted.py holds a band of
    rows). A call per band of rows, not per row: each array argument of an inlined call costs reference-count
    updates, too many when paid per row."""
    ow = xcol.shape[0]
    t_addr, col_addr = taps.ctypes.data, xcol.ctypes.data
    ct_addr, cw_addr, ct_len, cw_cb = ctaps.ctypes.data, cwpk.ctypes.data, ctaps.shape[1], cwpk.shape[1]
    c_base = out[n, cb].ctypes.data
    r_base = res[n, cb].ctypes.data if has_res else c_base
    w_base = wpk[cb].ctypes.data
    b_addr = bias[cb * VL:].ctypes.data
    # a row of at most MRD pixels is one edge tile where the row tiles below would leave three or more pixels to
    # the one-pixel tile (7x7 stride 1: two border pixels and two of the five interior ones; 14 -> 7 stride 2 leaves
    # one, and the edge tile's selects cost more: 13.1 -> 15.8 us on one core for 576 channels)
    left = (ox1 - ox0) % MRD
    left = left - 6 if left >= 6 else left
    left = left - 3 if left >= 3 else left
    whole_row = ow <= MRD and left + ow - (ox1 - ox0) >= 3
    for oy in range(oy0, oy1):
        iy = oy * sh - pt
        if dh == 1:  # the kernel rows inside the input: [i0, i1) (no division: it costs as much as a narrow row)
            i0, i1 = max(0, -iy), min(kh, h - iy)
        else:
            i0, i1 = max(0, (dh - 1 - iy) // dh), min(kh, (h - 1 - iy) // dh + 1)
        if i1 <= i0:
            for ox in range(ow):
                _bias_only(out, res, has_res, bias, lo32, hi32, n, cb, oy * ow + ox)
            continue
        row = x_addr + (iy - y0) * w * VL * F32  # the tap offsets and xcol[ox] add the rest
        k = (i1 - i0) * kw
        tp, wp = t_addr + i0 * kw * 8, w_base + i0 * kw * VL * F32
        c_row, r_row = c_base + oy * ow * VL * F32, r_base + oy * ow * VL * F32
        if kw == 3 and dw == 1 and sw <= 2 and whole_row:  # the whole row as one edge tile
            at = x_addr + ((iy - y0 + i0 * dh) * w * VL + xcol[0]) * F32  # column -pl: xcol[0] = -pl * VL
            rs = dh * w * VL * F32
            m = EDGE_MR[0] if ow <= EDGE_MR[0] else EDGE_MR[1] if ow <= EDGE_MR[1] else MRD
            ulo, uhi = max(0, xcol[0] // -VL), min((m - 1) * sw + 3, w - xcol[0] // VL)
            if ulo >= uhi:  # no input column in reach (padding wider than the kernel)
                for p in range(ow):
                    _bias_only(out, res, has_res, bias, lo32, hi32, n, cb, oy * ow + p)
            elif sw == 1:
                if m == EDGE_MR[0]:
                    _e1a(i1 - i0, at, rs, wp, c_row, r_row, b_addr, has_res, lo32, hi32, ulo, uhi, ow)
                elif m == EDGE_MR[1]:
                    _e1b(i1 - i0, at, rs, wp, c_row, r_row, b_addr, has_res, lo32, hi32, ulo, uhi, ow)
                else:
                    _e1c(i1 - i0, at, rs, wp, c_row, r_row, b_addr, has_res, lo32, hi32, ulo, uhi, ow)
            elif m == EDGE_MR[0]:
                _e2a(i1 - i0, at, rs, wp, c_row, r_row, b_addr, has_res, lo32, hi32, ulo, uhi, ow)
            elif m == EDGE_MR[1]:
                _e2b(i1 - i0, at, rs, wp, c_row, r_row, b_addr, has_res, lo32, hi32, ulo, uhi, ow)
            else:
                _e2c(i1 - i0, at, rs, wp, c_row, r_row, b_addr, has_res, lo32, hi32, ulo, uhi, ow)
            continue
        ox = ox0
        if kw == 3 and dw == 1 and sw <= 2:
            a0 = x_addr + ((iy - y0 + i0 * dh) * w * VL + xcol[0]) * F32
            rs = dh * w * VL * F32
            while ox + MRD <= ox1:
                at, ct, rt = a0 + ox * sw * VL * F32, c_row + ox * VL * F32, r_row + ox * VL * F32
                if sw == 1:
                    _row3s1(i1 - i0, at, rs, wp, ct, rt, b_addr, has_res, lo32, hi32)
                else:
                    _row3s2(i1 - i0, at, rs, wp, ct, rt, b_addr, has_res, lo32, hi32)
                ox += MRD
            # the interior's last pixels (fewer than MRD): a row tile of 6, then of 3, where they fill one
            if ox + 6 <= ox1:
                at, ct, rt = a0 + ox * sw * VL * F32, c_row + ox * VL * F32, r_row + ox * VL * F32
                if sw == 1:
                    _row3s1_6(i1 - i0, at, rs, wp, ct, rt, b_addr, has_res, lo32, hi32)
                else:
                    _row3s2_6(i1 - i0, at, rs, wp, ct, rt, b_addr, has_res, lo32, hi32)
                ox += 6
            if ox + 3 <= ox1:
                at, ct, rt = a0 + ox * sw * VL * F32, c_row + ox * VL * F32, r_row + ox * VL * F32
                if sw == 1:
                    _row3s1_3(i1 - i0, at, rs, wp, ct, rt, b_addr, has_res, lo32, hi32)
                else:
                    _row3s2_3(i1 - i0, at, rs, wp, ct, rt, b_addr, has_res, lo32, hi32)
                ox += 3
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
            # addresses, not views (ctaps[c], cwpk[c, cb]): a view costs reference-count updates, per border pixel
            _one((i1 - i0) * nj, row, col_addr + p * 8, ct_addr + (c * ct_len + i0 * nj) * 8,
                 cw_addr + ((c * cw_cb + cb) * ct_len + i0 * nj) * VL * F32, VL, c_row + p * VL * F32, 0,
                 r_row + p * VL * F32, b_addr, True, True, has_res, lo32, hi32)


@njit(cache=True)
def depthwise_band(x_addr, h, w, y0, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, out, has_res, lo32, hi32, sh,
                   sw, pt, dh, dw, kh, kw, ox0, ox1, n, cb, oy0, oy1):
    """:func:`depthwise_rows` compiled as a function of its own, for a caller with other work in its loop
    (blocked/chain.py, blocked/inverted.py): inlined into one function with the 1x1 tiles, both loops compiled to
    slower code."""
    depthwise_rows(x_addr, h, w, y0, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, out, has_res, lo32, hi32, sh,
                   sw, pt, dh, dw, kh, kw, ox0, ox1, n, cb, oy0, oy1)


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
