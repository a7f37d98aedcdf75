"""Winograd F(m x m, 3x3) for ``blocked_conv2d`` (3x3, stride 1, dilation 1, groups 1) on the NCHW16c layout.

Each m x m block of output pixels (a tile) reads an a x a input patch d (a = m + 2); with the kernel transform
U = G w G^T made once per constant, out = A^T [sum_c (B^T d_c B) * U_c] A: a*a multiplies per tile and channel
pair where the direct kernel does 9*m*m (F(2x2): 16 vs 36). In the blocked layout every transform is a vector op
over the VL lanes of one channel block (:mod:`.transforms`), and the multiply stage is a*a independent GEMMs
(tiles x C) @ (C x O), one per position xi of the transform, run by the blocked register tile (:mod:`.tile`) with
the transformed inputs as A (a scalar broadcast per (tile, channel)) and U packed like :func:`.conv.pack_dense`
panels as B.

Work is split into items of (a strip of tiles, a chunk of output-block groups); per group of NV output blocks an
item runs the a*a GEMMs into the thread's M buffer (a*a, NV, S, VL), then the output transform with the epilogue
(bias = folded BN, residual, clamp) straight into the output. Where all of U fits in L2 (the early, wide layers),
each item first transforms its own strip's input into the thread's V buffer (a*a, CB, S, VL) and runs every
output group: one pass over the layer, V and M in L2. Where U is larger (the deep layers), V is transformed once
for all tiles in a first parallel loop, and items take chunks of output groups whose U panels fit in L2, over long
strips (U's reuse). F(4x4) runs on layers of many tiles, F(2x2) on the others (:mod:`.select`); F(4x4)'s
transforms use the points 0, +-1, 1/2, -2 (:mod:`.transforms`, :mod:`.toom`).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
from numba import njit, prange

from engine.ops.blocked import blocks

from .._layout import bind, serial_twin
from ..conv.winograd.math import G2
from ..conv.workspace import current_workspace
from ..gemm import VL
from . import steal
from .conv import MR, NV, _call, _tile2_prefetch, _valid_lanes
from .steal import even_runs
from .tile import make_blocked_tile
from .transforms import G4, input_tile_m, output_tile2, output_tile4


def pack_winograd(w: np.ndarray, m: int = 2) -> np.ndarray:
    """w (O, C, 3, 3) -> (a*a, G, C, NV*VL): per position xi = a*i + j the panels :func:`.conv.pack_dense` makes of
    the 1x1 kernel U[:, :, i, j], U = G w G^T (computed in float64) for F(m x m, 3x3), a = m + 2 (F(4x4): the G of
    :mod:`.transforms`' points)."""
    g = G2 if m == 2 else G4
    a, (o, c) = m + 2, w.shape[:2]
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1), np.float64).reshape(3, -1)  # (3, 3*O*C)
    gw = (g @ taps).reshape(a, 3, -1)
    u = np.stack([g @ gw[i] for i in range(a)])  # (a, a, O*C): G w G^T, as a few long GEMMs
    ng = blocks(blocks(o, VL), NV)
    full = np.zeros((a * a, ng * NV * VL, c), np.float32)
    full[:, :o] = u.reshape(a * a, o, c)
    # a 1x1 layer's pack_dense panels per position: [xi, g, c, j] = U[xi, g*NV*VL + j, c] (every lane of C valid)
    return np.ascontiguousarray(full.reshape(a * a, ng, NV * VL, c).transpose(0, 1, 3, 2))


# Register tiles of SHORT_MR tiles for strips whose length they cover with fewer padded rows than MR (ResNet-50's
# 512 -> 512 at 7x7, batch 1: 16 F(2x2) tiles in two tiles of 8, not 20 rows of which 4 are padding); on AVX-512
# only (MR = 10: 8 x NV accumulators still leave registers free; with MR = 5 they would not)
SHORT_MR = 8 if MR == 10 else MR
_short2, _short1 = make_blocked_tile(SHORT_MR, 2), make_blocked_tile(SHORT_MR, 1)
_short2_prefetch = make_blocked_tile(SHORT_MR, 2, prefetch=True)
_TABLES: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def gemm_tables(c: int, spad: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, taps) of the multiply stage on a V buffer with a tile stride of ``spad`` tiles: rows[s] = s*VL,
    taps[kk] = cb*spad*VL + lane for the valid (channel block, lane) reduction indices (the order of
    :func:`pack_winograd`)."""
    hit = _TABLES.get((c, spad))
    if hit is None:
        if len(_TABLES) >= 256:
            _TABLES.clear()
        rows = np.arange(spad, dtype=np.int64) * VL
        taps = (np.arange(blocks(c, VL))[:, None] * (spad * VL) + np.arange(VL)[None, :]).ravel()
        hit = _TABLES[(c, spad)] = (rows, taps[_valid_lanes(c, 1, 1)].astype(np.int64))
    return hit


@njit(cache=True, inline="always")
def _transform_tiles(x, p, m, t0, ns, th, tw, pt, pl, v_addr, vt, vx, c0, c1):
    """V[xi][c][s] (at v_addr, tile stride vt*VL, position stride vx) for tiles t0 .. t0 + ns - 1, channel blocks
    c0 .. c1 - 1; ``p`` holds a border tile's zero-padded patch."""
    nn, ncb, h, w, _ = x.shape
    a = m + 2
    xf = x.reshape(-1)
    x_addr, p_addr = x.ctypes.data, p.ctypes.data
    for s in range(ns):
        n, r = (t0 + s) // (th * tw), (t0 + s) % (th * tw)
        y0, x0 = m * (r // tw) - pt, m * (r % tw) - pl
        inside = y0 >= 0 and y0 + a <= h and x0 >= 0 and x0 + a <= w
        for c in range(c0, c1):
            d_addr = v_addr + (c * vt + s) * VL * 4
            if inside:
                input_tile_m(m, x_addr + (((n * ncb + c) * h + y0) * w + x0) * VL * 4, w * VL, d_addr, vx)
            else:  # a border tile: its patch with zeros outside the image
                for i in range(a):
                    for j in range(a):
                        yy, xx = y0 + i, x0 + j
                        ok = yy >= 0 and yy < h and xx >= 0 and xx < w
                        src = (((n * ncb + c) * h + yy) * w + xx) * VL
                        for q in range(VL):
                            p[(a * i + j) * VL + q] = xf[src + q] if ok else np.float32(0.0)
                input_tile_m(m, p_addr, a * VL, d_addr, vx)


@njit(cache=True, inline="always")
def _gemm_tile(mr, nv, pf, k, a, rows, taps, b, bks, c, ldc, bias, lo, hi):
    """One register tile of mr tiles x nv output blocks of the multiply stage into M at ``c`` (no bias, no
    epilogue); ``pf`` != 0 (nv = 2): it also prefetches the panel there."""
    if mr == MR:
        if pf != 0:
            _tile2_prefetch(k, a, rows, taps, b, bks, c, ldc, c, bias, True, False, False, lo, hi, pf)
        else:
            _call(nv, k, a, rows, taps, b, bks, c, ldc, c, bias, True, False, False, lo, hi)
    elif pf != 0:
        _short2_prefetch(k, a, rows, taps, b, bks, c, ldc, c, bias, True, False, False, lo, hi, pf)
    elif nv == 2:
        _short2(k, a, rows, taps, b, bks, c, ldc, c, bias, True, False, False, lo, hi)
    else:
        _short1(k, a, rows, taps, b, bks, c, ldc, c, bias, True, False, False, lo, hi)


@njit(cache=True)
def _item(upk, r_addr, t_addr, bias, o_addr, res_addr, has_res, lo32, hi32, v_addr, m_addr, m, t0, ns, g0, g1, ob,
          oh, ow, th, tw, spad, vx, prefetch):
    """Output-block groups g0 .. g1 - 1 of the tiles t0 .. t0 + ns - 1 (their V at ``v_addr``): per group the a*a
    GEMMs into the M buffer at ``m_addr``, then the output transform with the epilogue. ``prefetch`` (a count):
    register tile j < prefetch of each panel asks for the item's panel j + 1 places further (the next positions',
    then the next group's) into the cache while it computes: in a network U comes from memory, and a panel the
    hardware prefetcher has not reached stalls its first tile."""
    npos, k, bks = upk.shape[0], upk.shape[2], upk.shape[3]
    mx = NV * spad * VL  # M's stride between positions
    mr = SHORT_MR if (ns + SHORT_MR - 1) // SHORT_MR * SHORT_MR < (ns + MR - 1) // MR * MR else MR
    for g in range(g0, g1):
        nv = 2 if 2 * g + 1 < ob else 1
        bias_addr = bias.ctypes.data + 2 * g * VL * 4
        for xi in range(npos):
            a_addr = v_addr + xi * vx * 4
            b_addr = upk[xi, g].ctypes.data
            q = (g - g0) * npos + xi + 1  # the item's next panel
            for rt in range(0, ns, mr):
                j = rt // mr
                pf = 0
                if j < prefetch and nv == 2 and q + j < (g1 - g0) * npos:
                    pf = upk[(q + j) % npos, g0 + (q + j) // npos].ctypes.data
                _gemm_tile(mr, nv, pf, k, a_addr, r_addr + rt * 8, t_addr, b_addr, bks,
                           m_addr + (xi * mx + rt * VL) * 4, spad * VL, bias_addr, lo32, hi32)
        for vv in range(nv):
            o = 2 * g + vv
            for s in range(ns):
                n, r = (t0 + s) // (th * tw), (t0 + s) % (th * tw)
                oy, ox = m * (r // tw), m * (r % tw)
                dst = ((((n * ob + o) * oh + oy) * ow + ox) * VL) * 4
                args = (m_addr + (vv * spad + s) * VL * 4, mx, bias_addr + vv * VL * 4, o_addr + dst, ow * VL,
                        min(m, oh - oy), min(m, ow - ox), res_addr + dst, has_res, lo32, hi32)
                if m == 2:
                    output_tile2(*args)
                else:
                    output_tile4(*args)


@njit(parallel=True, cache=True)
def _winograd(x, upk, rows, taps, bias, res, out, has_res, lo, hi, vbuf, mbuf, pbuf, m, ssz, spad, vt, ocg, pt, pl,
              shared, prefetch, flags, vstarts, starts):
    """out (N, OB, OH, OW, VL) = clamp(conv3x3(x) + bias + res) by F(m x m, 3x3) for x (N, CB, H, W, VL), upk
    (a*a, G, K, NV*VL) the packed U, rows / taps from :func:`gemm_tables` for V's tile stride ``vt``, items of
    ``ssz`` tiles (``spad``: whole MR tiles) x ``ocg`` output-block groups; mbuf / pbuf per-thread M
    (a*a*NV*spad*VL) and patch (a*a*VL) scratch. ``shared``: vbuf[0] holds V of every tile (a*a*CB*vt*VL),
    transformed once before the items (items (strip, channel block), thread runs ``vstarts``); else vbuf[thread]
    the item's strip (vt = spad). Thread ``th`` runs the items starts[th]:starts[th + 1] (chunk-major: a thread's
    consecutive items share the chunk's U panels), then steals the others' from their ends (:mod:`.steal`; the
    transform's items flagged first in ``flags``, then the multiply's), so a worker that wakes late does not hold
    up the region; whichever thread runs an item computes the same bits. ``prefetch``: as in :func:`_item`."""
    nn, ncb = x.shape[0], x.shape[1]
    ob, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    ng = upk.shape[1]
    th_, tw = (oh + m - 1) // m, (ow + m - 1) // m
    ntile = nn * th_ * tw
    nstrip = (ntile + ssz - 1) // ssz
    nchunk = (ng + ocg - 1) // ocg
    lo32, hi32 = np.float32(lo), np.float32(hi)
    r_addr, t_addr = rows.ctypes.data, taps.ctypes.data
    o_addr, res_addr = out.ctypes.data, res.ctypes.data
    vx = ncb * vt * VL  # V's stride between positions
    nth = starts.shape[0] - 1
    nv1 = nstrip * ncb if shared else 0
    steal.clear(flags, nv1 + nchunk * nstrip)
    f1 = flags.ctypes.data
    f2 = f1 + nv1 * steal.FLAG_STRIDE * 8
    if shared:  # items of (strip, channel block): the deep layers have one or two strips
        for th in prange(nth):
            p = pbuf[numba.get_thread_id()]
            u, sc = steal.claim(th, 0, vstarts[th], vstarts, f1)
            while u < nth:
                st, cb = sc // ncb, sc % ncb
                _transform_tiles(x, p, m, st * ssz, min(ntile, st * ssz + ssz) - st * ssz, th_, tw, pt, pl,
                                 vbuf[0].ctypes.data + st * ssz * VL * 4, vt, vx, cb, cb + 1)
                u, sc = steal.claim(th, u, sc + 1 if u == 0 else sc - 1, vstarts, f1)
    for th in prange(nth):
        tid = numba.get_thread_id()
        m_addr = mbuf[tid].ctypes.data
        u, it = steal.claim(th, 0, starts[th], starts, f2)
        while u < nth:
            chunk, strip = it // nstrip, it % nstrip
            t0 = strip * ssz
            ns = min(ntile, t0 + ssz) - t0
            if shared:
                v_addr = vbuf[0].ctypes.data + t0 * VL * 4
            else:
                v_addr = vbuf[tid].ctypes.data
                _transform_tiles(x, pbuf[tid], m, t0, ns, th_, tw, pt, pl, v_addr, vt, vx, 0, ncb)
            _item(upk, r_addr, t_addr, bias, o_addr, res_addr, has_res, lo32, hi32, v_addr, m_addr, m, t0, ns,
                  chunk * ocg, min(ng, (chunk + 1) * ocg), ob, oh, ow, th_, tw, spad, vx, prefetch)
            u, it = steal.claim(th, u, it + 1 if u == 0 else it - 1, starts, f2)


_winograd_serial = serial_twin(_winograd)
# Zen 4's L2 per core: a layer whose U is at most this runs one pass per strip (CPU ms on one core, 512 KiB vs this:
# F(2x2) 128 -> 128 channels at 28x28 batch 8 11.1 vs 9.5, 256 at 14x14 10.5 vs 9.8; F(4x4) 64 at 56x56 9.6 vs 7.8)
L2_BYTES = 1 << 20
STRIP, LONG_STRIP = 40, 160  # tiles per strip: U in L2 / U streamed once per strip (its reuse), V and M in L3
# Register tiles per U panel that prefetch a later panel of the item (_item's ``prefetch``)
PREFETCH = 1


def strip_plan(c: int, o: int, ntile: int, threads: int, npos: int = 16) -> tuple[int, int, bool]:
    """(tiles per strip, output-block groups per chunk, shared V) for ``npos`` transform positions. Where the whole
    U (4*npos*C*O bytes) fits in :data:`L2_BYTES`, each item transforms its own strip and runs every output group:
    :data:`STRIP` tiles, fewer where the strip's V and M (4*npos*(C + NV*VL) bytes a tile) would take more than half
    of what U leaves of L2 (the strip's input and output pass through it too: F(4x4) 64 -> 64 at 56x56, batch 8, two
    threads, ms by strip length 10 / 20 / 40: 2.92 / 2.89 / 3.19; DenseNet-121's 128 -> 32 at 56x56, batch 1, one
    thread 0.80 / 0.92 / 0.95, two 0.41 / 0.46 / 0.46). Else V is transformed once for all tiles (shared), chunks
    hold as many groups as keep their U panels within :data:`L2_BYTES`, and strips are :data:`LONG_STRIP` tiles
    (each streams its chunk's U once: on 512 -> 512 channels at 7x7, batch 8, F(2x2) with 160-tile strips ran 13 ms
    on one core where 40-tile ones took 17). Strips are shortened (whole MR tiles) where they would leave fewer than
    two items per thread, then evened out (196 tiles: two strips of 100, not 160 + 36), then split further where
    that evens out the threads' shares (:func:`_balanced`)."""
    ng = blocks(blocks(o, VL), NV)
    shared = 4 * npos * c * o > L2_BYTES
    ocg = max(1, min(ng, L2_BYTES // (4 * npos * c * NV * VL))) if shared else ng
    ssz = min(LONG_STRIP if shared else STRIP, blocks(ntile, MR) * MR)
    if not shared:
        per_tile = 4 * npos * (blocks(c, VL) * VL + NV * VL)
        ssz = min(ssz, max(MR, (L2_BYTES - 4 * npos * c * o) // (2 * per_tile) // MR * MR))
    while ssz > MR and blocks(ng, ocg) * blocks(ntile, ssz) < 2 * threads:
        ssz -= MR
    return _balanced(ntile, blocks(ntile, ssz), blocks(ng, ocg), threads), ocg, shared


def _strip(ntile: int, nstrip: int) -> int:
    """The length of ``nstrip`` equal strips over ``ntile`` tiles, in whole MR tiles."""
    return blocks(blocks(ntile, nstrip), MR) * MR


def _balanced(ntile: int, nstrip: int, nchunk: int, threads: int) -> int:
    """The strip length, from ``nstrip`` strips up to twice as many, that gives the busiest thread the fewest tiles:
    prange hands each thread an equal run of the nchunk x strips items, so 5 items on 2 threads leave one thread
    3/5 of the layer (F(4x4) on 56x56 at batch 1: 196 tiles, 5 strips of 40; 10 strips of 20 give both 5)."""
    def busiest(ns: int) -> tuple[int, int]:
        s = _strip(ntile, ns)
        return blocks(nchunk * blocks(ntile, s), threads) * s, ns

    return _strip(ntile, min(range(nstrip, 2 * nstrip + 1), key=busiest) if threads > 1 else nstrip)


def winograd_step(x: np.ndarray, wpk: np.ndarray, c: int, bias: np.ndarray, res: np.ndarray, out: np.ndarray,
                  has_res: bool, pt: int, pl: int, lo: float, hi: float, serial: bool) -> Callable[[], None]:
    """The F(m x m) kernel on these arrays as a call: x / res / out blocked 5-D, ``wpk`` from :func:`pack_winograd`
    (its a*a positions tell m) for ``c`` input channels, ``bias`` padded to whole NV groups; strips and scratch
    planned here."""
    n, cb = x.shape[:2]
    oh, ow = out.shape[2:4]
    npos = wpk.shape[0]
    m = 2 if npos == 16 else 4
    ntile = n * blocks(oh, m) * blocks(ow, m)
    threads = 1 if serial else numba.get_num_threads()
    ssz, ocg, shared = strip_plan(c, wpk.shape[1] * NV * VL, ntile, threads, npos)
    spad = blocks(ssz, MR) * MR
    vt = ntile + MR if shared else spad  # a strip's last register tile may read MR - 1 tiles past its end
    rows, taps = gemm_tables(c, vt)
    ws = current_workspace()
    vbuf = ws.get("blocked_wino_v", (1, npos * cb * vt * VL), np.float32) if shared else \
        ws.per_thread("blocked_wino_v", npos * cb * vt * VL)
    mbuf = ws.per_thread("blocked_wino_m", npos * NV * spad * VL)
    pbuf = ws.per_thread("blocked_wino_patch", npos * VL)
    kernel = _winograd_serial if serial else _winograd
    nv1, nitem = (blocks(ntile, ssz) * cb if shared else 0), blocks(wpk.shape[1], ocg) * blocks(ntile, ssz)
    return bind(kernel, x, wpk, rows, taps, bias, res, out, has_res, lo, hi, vbuf, mbuf, pbuf, m, ssz,
                spad, vt, ocg, pt, pl, shared, PREFETCH, steal.flags_for(nv1 + nitem),
                even_runs(nv1, threads), even_runs(nitem, threads))


