"""``blocked_conv2d`` on the numba backend: a direct convolution on channel-blocked (NCHWc) values.

Dense layers (groups = 1): every output pixel row of MR pixels x NV output blocks is one register tile
(:mod:`.tile`) over the reduction (input block, kernel row, kernel column, input lane), reading the zero-padded
blocked input through offset tables (any kernel size, stride and dilation; a 1x1 layer without padding reads the
input in place: a GEMM on the blocked layout), the weights packed once per constant as (group of NV output blocks,
K, NV*VL) panels. The epilogue (bias = folded BN, residual, ReLU / clamp) runs on the accumulators before the
store; other activations run in place on the output right after. prange items are (image, output-block group,
group of pixel tiles), so batch 1 keeps every thread busy. Depthwise layers (groups = C = O) run
:mod:`.depthwise`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
from numba import njit, prange

from engine.ops.blocked import blocked_conv2d_p, blocks
from engine.ops.fused import split_inputs

from .._layout import bind, by_size, for_reuse, in_order, serial_twin
from ..conv.geometry import geom, shape_of
from ..conv.workspace import current_workspace, derived
from ..gemm import AVX512, VL
from ..table import backend
from . import steal
from .depthwise import column_classes, depthwise
from .select import DIRECT, WINOGRADS
from .select import choose as choose_blocked
from .tile import make_blocked_tile

MR = 10 if AVX512 else 5  # output pixels per tile: MR*NV accumulators + NV weight vectors + a broadcast
NV = 2
KC = 512  # reduction steps per K block: a (KC, NV*VL) weight panel (64 KiB) stays in L2 across the tiles
# Images of at most this many output pixels (7x7 and smaller: 5 or fewer pixel tiles) reduce over a K of up to
# 2 KC in one block (:func:`k_block`): K blocks pay where many tiles share a block of the panel in L2; a few tiles
# read each panel once per tile either way, and one block lets the next group's panel be prefetched
# (PREFETCH_BYTES). MobileNetV2's 7x7 depthwise -> 1x1 pairs (K = 576 / 960), one K block against two, profiled
# in one process, four runs: 0.975, 0.958, 0.946, 0.920
ONE_K_BLOCK_PIXELS = 64
GROUP = 4  # pixel tiles per prange item
_tile2 = make_blocked_tile(MR, 2)
_tile1 = make_blocked_tile(MR, 1)
_tile2_prefetch = make_blocked_tile(MR, 2, prefetch=True)

# Packed weights up to this size: pixel-chunk-major items (see _conv_dense): a thread then reads its share of the
# input once and keeps the small weights in L2 (one core, CPU ms group- vs pixel-major, ResNet-50 b1 1x1 layers with
# 64-256 KiB of weights: 256->64 at 56x56 0.94 vs 0.91, 512->128 at 28x28 0.93 vs 0.91; 0.2-1.5% either way on
# those with 0.5-9 MiB)
PIX_MAJOR_BYTES = 256 << 10
# Packed weights from this size: the first tile of each output-block group run prefetches the next group's panel
# (tile.make_blocked_tile's ``prefetch``). In a network every layer's weights come from L3 or memory, and a panel
# the hardware prefetcher has not reached stalls its first tile; group-major layers stream panels of 20-130 KiB
# one after the other (MobileNetV2's 7x7 1x1 layers, ResNet-50's 14x14 and 7x7 ones). Below it the weights are few
# and the pixel-chunk-major items reuse them from L2 (bench/pointwise_shares.py)
PREFETCH_BYTES = PIX_MAJOR_BYTES
_ACT_CLAMP = {"none": (-np.inf, np.inf), "relu": (0.0, np.inf)}


def clamp_bounds(activation: str, act_attrs: tuple) -> tuple[float, float]:
    """[lo, hi] of a ReLU / clamp / no activation (the others: (-inf, inf), applied by a separate step)."""
    if activation == "clamp":
        a = dict(act_attrs)
        return (-np.inf if a.get("min") is None else a["min"]), (np.inf if a.get("max") is None else a["max"])
    return _ACT_CLAMP.get(activation, (-np.inf, np.inf))


@njit(cache=True, inline="always")
def _call(nv, kc, a, rows, taps, b, bks, c, ldv, res, bias, first, last, has_res, lo, hi):
    if nv == 2:
        _tile2(kc, a, rows, taps, b, bks, c, ldv, res, bias, first, last, has_res, lo, hi)
    else:
        _tile1(kc, a, rows, taps, b, bks, c, ldv, res, bias, first, last, has_res, lo, hi)


@njit(cache=True, inline="always")
def pixel_tile(nv, kc, a, rows, taps, b, bks, p, npix, c_base, res_base, ldv, bias, first, last, has_res, lo, hi):
    """The tile of MR output pixels from pixel ``p`` of output blocks ob0.. (``_call``'s operands) straight into
    the output at ``c_base``, where the tile ends by ``npix``; else False, and the caller runs
    :func:`partial_tile`. Plain integers only: an array argument of an inlined call costs reference-count updates
    on every tile."""
    if p + MR > npix:
        return False
    _call(nv, kc, a, rows, taps, b, bks, c_base + p * VL * 4, ldv, res_base + p * VL * 4, bias, first, last, has_res,
          lo, hi)
    return True


@njit(cache=True)
def partial_tile(nv, kc, a, rows, taps, b, bks, out, res, n, ob0, p, npix, bias, first, last, has_res, lo, hi, sc,
                 sr):
    """The partial tile (the last before ``npix``) of :func:`pixel_tile` on the scratch ``sc`` (its sums stay there
    across K blocks; residual copied into ``sr``), copied out to ``out`` after the last K block."""
    valid = npix - p
    if last and has_res:
        for v in range(nv):
            for r in range(valid):
                for q in range(VL):
                    sr[(v * MR + r) * VL + q] = res[n, ob0 + v, p + r, q]
    _call(nv, kc, a, rows, taps, b, bks, sc.ctypes.data, MR * VL, sr.ctypes.data, bias, first, last, has_res, lo, hi)
    if last:
        for v in range(nv):
            for r in range(valid):
                for q in range(VL):
                    out[n, ob0 + v, p + r, q] = sc[(v * MR + r) * VL + q]


@njit(cache=True)
def group_tiles(x_addr, r_addr, t_addr, wpk, g, k, kc_max, p0, p1, npix, rbase, out, res, n, has_res, bias, lo, hi,
                sc, sr, pf_next=False):
    """Output-block group ``g`` (blocks 2g and, where it exists, 2g + 1) of image ``n`` for the pixel tiles starting
    at p0, p0 + MR, ... below p1, over the ``k`` taps in equal K blocks of at most ``kc_max`` (no short last
    block): :func:`pixel_tile` where a tile ends by ``npix``, else :func:`partial_tile`. A is read at x_addr
    through the row table at r_addr (pixel p's entry at r_addr + (p - rbase)*8) and the tap table at t_addr; wpk
    (G, K, NV*VL) the packed weights; lo / hi float32; ``pf_next``: the run's first tile also prefetches group
    g + 1's weights (where the reduction is one K block, both groups hold two blocks and the tile is whole). The
    loop of every dense blocked kernel (:func:`_conv_dense`, the prologue conv, the chained 1x1): one call per
    group and pixel run, so its array arguments cost nothing per tile."""
    ob = out.shape[1]
    bks = wpk.shape[2]
    ldv = out.shape[2] * VL
    nv = 2 if 2 * g + 1 < ob else 1
    c_base = out[n, 2 * g].ctypes.data
    res_base = res[n, 2 * g].ctypes.data if has_res else c_base
    b_base = wpk[g].ctypes.data
    bias_addr = bias[2 * g * VL:].ctypes.data
    nkb = (k + kc_max - 1) // kc_max
    kstep = (k + nkb - 1) // nkb
    # one K block only: with several, group g + 1's first block would arrive while g's other blocks still stream
    # through the same caches (ResNet-50's 2048 -> 512 at 7x7, four K blocks: 2-7% slower with it)
    pf = wpk[g + 1].ctypes.data if pf_next and g + 1 < wpk.shape[0] and nv == 2 and k <= kc_max else 0
    for k0 in range(0, k, kstep):
        kc = min(kstep, k - k0)
        first, last = k0 == 0, k0 + kc >= k
        for p in range(p0, p1, MR):
            a, bk = r_addr + (p - rbase) * 8, b_base + k0 * bks * 4
            if pf != 0 and p == p0 and p + MR <= npix:
                _tile2_prefetch(kc, x_addr, a, t_addr + k0 * 8, bk, bks, c_base + p * VL * 4, ldv,
                                res_base + p * VL * 4, bias_addr, first, last, has_res, lo, hi, pf)
            elif not pixel_tile(nv, kc, x_addr, a, t_addr + k0 * 8, bk, bks, p, npix, c_base, res_base, ldv, bias_addr,
                              first, last, has_res, lo, hi):
                partial_tile(nv, kc, x_addr, a, t_addr + k0 * 8, bk, bks, out, res, n, 2 * g, p, npix, bias_addr,
                             first, last, has_res, lo, hi, sc, sr)


def k_block(k: int, npix: int) -> int:
    """Reduction steps per K block of a dense blocked layer (or chained 1x1) of ``k`` taps on images of ``npix``
    output pixels: all of them on a small image (:data:`ONE_K_BLOCK_PIXELS`, k up to 2 KC), else KC. Chained and
    standalone 1x1 layers share it, so a layer sums in the same order either way (the same bits)."""
    return k if npix <= ONE_K_BLOCK_PIXELS and k <= 2 * KC else KC


@njit(parallel=True, cache=True)
def _conv_dense(xp, rows, taps, wpk, bias, res, out, has_res, lo, hi, pf_next, sbuf, flags, segs, starts, kc_max):
    """out[n, ob, p, :] = clamp(sum_k A(p, k) B(k, ob) + bias + res) for out (N, OB, P, VL); xp (N, L) the padded
    blocked images, rows (P padded to whole tiles) / taps the offset tables, wpk (G, K, NV*VL) the packed weights,
    sbuf[thread] scratch for the last, partial pixel tile (its C and residual), pf_next as in :func:`group_tiles`.
    Thread ``th`` runs :func:`dense_segments`."""
    steal.clear(flags, segs.shape[0])
    for th in prange(starts.shape[0] - 1):
        dense_segments(th, xp.ctypes.data, xp.shape[1] * 4, rows, taps, wpk, bias, res, out, has_res, lo, hi, pf_next,
                       sbuf[numba.get_thread_id()], flags.ctypes.data, segs, starts, kc_max)


@njit(cache=True)
def dense_segments(th, x_addr, x_bytes, rows, taps, wpk, bias, res, out, has_res, lo, hi, pf_next, s, f_addr, segs,
                   starts, kc_max, done=0):
    """Thread ``th``'s part of a dense blocked layer (:func:`_conv_dense`'s operands; image n's input at x_addr +
    n * x_bytes, ``s`` the thread's scratch): its segments segs[starts[th]:starts[th + 1]], each (image,
    output-block group, first pixel tile, end tile) with every K block (:func:`dense_schedule`), then the others'
    from their ends (:mod:`.steal`, flags at f_addr, one per segment, cleared by the caller); each segment run
    counted at ``done`` (an address; 0: not counted) for a phase after this one to wait on."""
    npix = out.shape[2]
    k = taps.shape[0]
    lo32, hi32 = np.float32(lo), np.float32(hi)
    r_addr, t_addr = rows.ctypes.data, taps.ctypes.data
    sc, sr = s[:NV * MR * VL], s[NV * MR * VL:]
    nth = starts.shape[0] - 1
    u, si = steal.claim(th, 0, starts[th], starts, f_addr)
    while u < nth:
        n, g, rt0, rt1 = segs[si, 0], segs[si, 1], segs[si, 2], segs[si, 3]
        group_tiles(x_addr + n * x_bytes, r_addr, t_addr, wpk, g, k, kc_max, rt0 * MR, rt1 * MR, npix, 0, out, res,
                    n, has_res, bias, lo32, hi32, sc, sr, pf_next)
        if done != 0:
            steal.add(done, 1)
        u, si = steal.claim(th, u, si + 1 if u == 0 else si - 1, starts, f_addr)


def dense_items(nn: int, ob: int, npix: int, wpk: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dense_schedule` for a dense layer of ``nn`` images of ``npix`` output pixels and ``ob`` output
    blocks with packed weights ``wpk``: :data:`GROUP` pixel tiles per item, or every tile of the image where
    images x groups alone give enough items (deep layers at batch 1: each weight panel is then read once);
    pixel-chunk-major up to :data:`PIX_MAJOR_BYTES` of weights."""
    ntiles = blocks(npix, MR)
    group = min(ntiles, 16) if nn * blocks(ob, NV) >= 16 else GROUP
    return dense_schedule(nn, ob, ntiles, group, wpk.nbytes <= PIX_MAJOR_BYTES, threads)


@functools.lru_cache(maxsize=256)  # by geometry: a first conv reading the user's image builds its call every run
def dense_schedule(nn: int, ob: int, ntiles: int, group: int, pix_major: bool,
                   threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(segs, starts) of :func:`_conv_dense`: the items (image, output-block group, chunk of ``group`` pixel
    tiles) in pixel-chunk-major (each thread reads its share of the input once) or group-major order (each weight
    panel read once), cut into ``threads`` contiguous runs of equal work (a tile of a one-block group counts
    half), so the threads finish together whatever the chunk and group counts (a static split of the items does
    not where the last chunk is short or the groups are few)."""
    ng = blocks(ob, NV)
    nchunk = blocks(ntiles, group)
    t = np.arange(nn * ng * nchunk)
    if pix_major:
        g, n, ch = t % ng, t // (ng * nchunk), (t // ng) % nchunk
    else:
        g, n, ch = t // (nn * nchunk), (t // nchunk) % nn, t % nchunk
    rt0, rt1 = ch * group, np.minimum(ntiles, (ch + 1) * group)
    work = np.where(2 * g + 1 < ob, 2, 1)  # per tile
    cum = np.concatenate([[0], np.cumsum(work * (rt1 - rt0))])
    parts, starts = [], [0]
    for th in range(threads):  # a tile goes to the thread whose share of the work holds its start
        lo, hi = cum[-1] * th // threads, cum[-1] * (th + 1) // threads
        a = np.clip(rt0 - (cum[:-1] - lo) // work, rt0, rt1)
        b = np.clip(rt0 - (cum[:-1] - hi) // work, rt0, rt1)
        keep = b > a
        parts.append(np.stack([n[keep], g[keep], a[keep], b[keep]], axis=1))
        starts.append(starts[-1] + int(keep.sum()))
    return np.concatenate(parts).astype(np.int64), np.array(starts, np.int64)


@njit(parallel=True, cache=True)
def pad_blocked(x, xp, pt, pl):
    """xp (N, CB, Hp, Wp, VL) = x (N, CB, H, W, VL) at (pt, pl), zeros around (row by row, flat)."""
    nn, ncb, h, w, nl = x.shape
    hp, wp = xp.shape[2], xp.shape[3]
    xf, pf = x.reshape(-1), xp.reshape(-1)
    for t in prange(nn * ncb * hp):
        a = t % hp
        plane = t // hp
        dst = t * wp * nl
        ia = a - pt
        # slices, not element loops: numba cannot tell xf and pf apart, and its element loop stayed scalar (3x slower)
        if ia < 0 or ia >= h:
            pf[dst:dst + wp * nl] = 0.0
            continue
        pf[dst:dst + pl * nl] = 0.0
        src = (plane * h + ia) * w * nl
        pf[dst + pl * nl:dst + (pl + w) * nl] = xf[src:src + w * nl]
        pf[dst + (pl + w) * nl:dst + wp * nl] = 0.0


_conv_dense_serial, _depthwise_serial = serial_twin(_conv_dense), serial_twin(depthwise)
_pad_blocked_serial = serial_twin(pad_blocked)


def _valid_lanes(c: int, kh: int, kw: int) -> np.ndarray:
    """Which reduction indices ((icb*kh + i)*kw + j)*VL + lane hold a real input channel: the pad lanes of the
    last input block are left out of the reduction (the 3-channel stem reduces over 3 lanes, not 16)."""
    icb = blocks(c, VL)
    lane = np.arange(icb)[:, None, None, None] * VL + np.arange(VL)[None, None, None, :]
    return np.broadcast_to(lane < c, (icb, kh, kw, VL)).ravel()


def pack_dense(w: np.ndarray) -> np.ndarray:
    """w (O, C, kh, kw) -> (G, K, NV*VL) panels: [g, kk, v*VL + q] = w[(g*NV + v)*VL + q, icb*VL + lane, i, j] for
    the valid reduction indices kk = ((icb*kh + i)*kw + j)*VL + lane (:func:`_valid_lanes`), zeros past O."""
    o, c, kh, kw = w.shape
    ng = blocks(blocks(o, VL), NV)
    icb = blocks(c, VL)
    full = np.zeros((ng * NV * VL, icb * VL, kh, kw), np.float32)
    full[:o, :c] = w
    packed = full.reshape(ng, NV * VL, icb, VL, kh, kw).transpose(0, 2, 4, 5, 3, 1)
    return np.ascontiguousarray(packed.reshape(ng, icb * kh * kw * VL, NV * VL)[:, _valid_lanes(c, kh, kw)])


def pack_depthwise(w: np.ndarray) -> np.ndarray:
    """w (C, 1, kh, kw) -> (CB, kh*kw, VL), zeros past C."""
    c, _, kh, kw = w.shape
    cb = blocks(c, VL)
    full = np.zeros((cb * VL, kh, kw), np.float32)
    full[:c] = w[:, 0]
    return np.ascontiguousarray(full.reshape(cb, VL, kh * kw).transpose(0, 2, 1))


_TABLES: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def offset_tables(c: int, hp: int, wp: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, oh: int,
                  ow: int, mr: int = MR) -> tuple[np.ndarray, np.ndarray]:
    """(rows, taps) in elements of one padded blocked image of c channels: rows[y*ow + x] = (y*sh*wp + x*sw)*VL
    (padded with 0 to whole MR tiles), taps[((b*kh + i)*kw + j)*VL + q] = ((b*hp + i*dh)*wp + j*dw)*VL + q for the
    valid lanes (:func:`_valid_lanes`, the order of :func:`pack_dense`); cached by geometry."""
    key = (c, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow, mr)
    icb = blocks(c, VL)
    hit = _TABLES.get(key)
    if hit is None:
        pix = ((np.arange(oh)[:, None] * (sh * wp) + np.arange(ow)[None, :] * sw) * VL).ravel()
        rows = np.zeros(blocks(pix.size, mr) * mr, np.int64)
        rows[:pix.size] = pix
        chan = np.arange(icb)[:, None, None, None] * (hp * wp * VL) + np.arange(VL)[None, None, None, :]
        taps = ((np.arange(kh)[None, :, None, None] * (dh * wp) + np.arange(kw)[None, None, :, None] * dw) * VL
                + chan).ravel()
        if len(_TABLES) >= 256:
            _TABLES.clear()
        hit = _TABLES[key] = (rows, taps[_valid_lanes(c, kh, kw)].astype(np.int64))
    return hit


def _packed(w: np.ndarray, form: str, pack) -> np.ndarray:
    got = derived(w, form, pack)
    return got if got is not None else pack(w)


def _bias_filler(b: np.ndarray | None, size: int):
    """(bias, fill): the bias padded with zeros to ``size`` lanes, and a call that refreshes it from ``b`` before
    each run (None where the running executor keeps a padded copy of the constant ``b``, or there is no bias)."""
    if b is None:
        return np.zeros(size, np.float32), None
    pad = functools.partial(_pad_bias, size=size)
    got = derived(b, f"blocked_bias{size}", pad)
    if got is not None:
        return got, None
    bias = pad(b)
    return bias, functools.partial(np.copyto, bias[:b.size], b)


def _pad_bias(b: np.ndarray, size: int) -> np.ndarray:
    bias = np.zeros(size, np.float32)
    bias[:b.size] = b
    return bias


def depthwise_operands(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, res4: np.ndarray, out4: np.ndarray,
                       ow: int, has_res: bool, stride, padding, dilation, lo: float, hi: float
                       ) -> tuple[tuple, Callable | None]:
    """(args, fill): the operands of :func:`.depthwise.depthwise` before ``band`` for these arrays (packed weights,
    column tables; ``ow`` the output width, out4 holding its rows as one pixel axis), and the bias refresh of
    :func:`_bias_filler`."""
    sh, sw, pt, pl, dh, dw = geom(stride, padding, dilation)
    kh, kw = w.shape[2:]
    bias, fill = _bias_filler(b, out4.shape[1] * VL)
    wpk = _packed(w, "blocked_depthwise", pack_depthwise)
    xcol = (np.arange(ow, dtype=np.int64) * sw - pl) * VL
    taps = ((np.arange(kh)[:, None] * (dh * x.shape[3]) + np.arange(kw)[None, :] * dw) * VL).ravel()
    cols = column_classes(x.shape[3], kw, sw, pl, dw, ow, taps, wpk)
    return (x, xcol, taps.astype(np.int64), wpk, *cols[2:], bias, res4, out4, has_res, lo, hi, sh, sw, pt, dh, dw, kh,
            kw, *cols[:2]), fill


# Below this many multiply-adds a convolution runs on the calling thread (its serial twin: the same loop, so the
# same sums). 512k MACs is ~10 us on one core: below it, the parallel region's start and barrier (~2 us while the
# workers still spin from the last region, engine/_env.py; tens of us when they sleep) eat what the second thread
# saves. MobileNetV2 b1 with workers that spin: 4.87 ms at 4M, 4.56 at 512k, 4.67 at 0 (medians of 5 rounds,
# bench/threads_env.py, load 1.1); ResNet-50 and DenseNet-121 b1 within noise. Most depthwise layers run inside the
# region of the 1x1 after them (chain.py).
SERIAL_MACS = 1 << 19
# A depthwise multiply-add costs about two of a dense layer's (one vector load and one FMA per output vector per
# tap, no register reuse: MobileNetV2's 3x3 layers run at 40-57 GFLOP/s on one core, its 1x1 layers at 80-105), so
# it counts twice against SERIAL_MACS (MobileNetV2's 112x112 stride-2 layer gets both threads)
DEPTHWISE_MAC_COST = 2


def _conv_call(ins: tuple, out: np.ndarray, stride, padding, dilation, groups: int, has_bias: bool,
               has_residual: bool, activation: str, act_attrs: tuple, algorithm: str | None = None
               ) -> Callable[[], None] | None:
    """``blocked_conv2d`` on these arrays as a zero-argument call: the algorithm (dense layers, :mod:`.select`;
    None: by the policy), packed weights, padded bias, offset tables, scratch and kernel (parallel or serial by
    work) chosen once; the call pads the input and runs the kernel. None where the numba kernels do not apply (the
    decomposition runs)."""
    x, w, b, r = split_inputs(ins, has_bias, has_residual)
    nchw = x.ndim == 4  # a first convolution reading the network's NCHW image (``block`` > 0)
    if out.dtype != np.float32 or x.dtype != np.float32 or out.shape[4] != VL or x.shape[-1] != VL and not nchw \
            or not x.flags.c_contiguous or not out.flags.c_contiguous:
        return None
    sh, sw, pt, pl, dh, dw = geom(stride, padding, dilation)
    pb, pr = padding[0][1], padding[1][1]
    n, ob, oh, ow, _ = out.shape
    lo, hi = clamp_bounds(activation, act_attrs)
    kh, kw = w.shape[2:]
    ws = current_workspace()
    steps: list[Callable[[], None]] = []
    res = out if r is None else r
    if not res.flags.c_contiguous:  # copied on every call: the call must see the residual's current values
        res = np.empty(r.shape, r.dtype)
        steps.append(functools.partial(np.copyto, res, r))
    out4, res4 = out.reshape(n, ob, oh * ow, VL), res.reshape(n, ob, oh * ow, VL)
    if groups == 1 and algorithm is None:
        def run(algo: str) -> None:  # measuring: this layer with ``algo`` into a scratch output
            _conv_call(ins, np.empty_like(out), stride, padding, dilation, groups, has_bias, has_residual,
                       activation, act_attrs, algo)()

        # the NCHW image into the first conv: only the direct kernel's offset tables read it
        algorithm = DIRECT if nchw else choose_blocked(x.shape, w.shape, stride, padding, dilation, run).algorithm
    if nchw:  # the image into the first conv (groups 1): read in place, borders apart
        from .stem import stem_call  # it builds on this module's packing and bias
        parallel = n * oh * ow * ob * VL * w[0].size >= SERIAL_MACS
        step, fill = stem_call(x, w, b, res, out, r is not None, (sh, sw, pt, pl, dh, dw), lo, hi, parallel)
        steps.append(step)
    elif groups == 1 and algorithm in WINOGRADS:
        from .winograd import pack_winograd, winograd_step  # it builds on this module's tile and packing
        ng = blocks(ob, NV)
        bias, fill = _bias_filler(b, ng * NV * VL)
        m = WINOGRADS[algorithm]
        wpk = _packed(w, f"blocked_winograd_f{m}", functools.partial(pack_winograd, m=m))
        serial = n * oh * ow * ob * VL * w.shape[1] * 9 < SERIAL_MACS
        steps.append(winograd_step(x, wpk, w.shape[1], bias, res, out, r is not None, pt, pl, lo, hi, serial))
    elif groups == 1:
        hp, wp = x.shape[2] + pt + pb, x.shape[3] + pl + pr
        xp = x
        rows, taps = offset_tables(w.shape[1], hp, wp, kh, kw, sh, sw, dh, dw, oh, ow)
        parallel = n * oh * ow * ob * VL * taps.size >= SERIAL_MACS
        if (hp, wp) != x.shape[2:4]:
            xp = ws.get("blocked_xpad", (n, x.shape[1], hp, wp, VL), x.dtype)
            # a serial conv pads serially too: its padding pass is the smaller job
            pad = by_size(pad_blocked, _pad_blocked_serial, xp.size) if parallel else _pad_blocked_serial
            steps.append(bind(pad, x, xp, pt, pl))
        ng = blocks(ob, NV)
        bias, fill = _bias_filler(b, ng * NV * VL)
        wpk = _packed(w, "blocked_dense", pack_dense)
        sbuf = ws.per_thread("blocked_tile", 2 * NV * MR * VL)
        kernel = _conv_dense if parallel else _conv_dense_serial
        segs, starts = dense_items(n, ob, oh * ow, wpk, numba.get_num_threads() if parallel else 1)
        steps.append(bind(kernel, xp.reshape(n, -1), rows, taps, wpk, bias, res4, out4,
                          r is not None, lo, hi, wpk.nbytes >= PREFETCH_BYTES, sbuf,
                          steal.flags_for(segs.shape[0]), segs, starts, k_block(taps.size, oh * ow)))
    else:
        args, fill = depthwise_operands(x, w, b, res4, out4, ow, r is not None, stride, padding, dilation, lo, hi)
        parallel = n * oh * ow * ob * VL * kh * kw * DEPTHWISE_MAC_COST >= SERIAL_MACS
        # parallel: about four items per thread, each a band of whole output rows of one channel block
        band = -(-oh // max(1, -(-4 * numba.get_num_threads() // (n * ob)))) if parallel else oh
        kernel = depthwise if parallel else _depthwise_serial
        steps.append(bind(kernel, *args, band))
    if fill is not None:
        steps.insert(0, fill)
    if activation not in _ACT_CLAMP and activation != "clamp":
        steps.append(functools.partial(backend.kernel(activation), out, out=out, **dict(act_attrs)))
    return in_order(steps)


@backend.register("blocked_conv2d")
def blocked_conv2d(*ins: np.ndarray, out: np.ndarray, stride, padding, dilation, groups: int, has_bias: bool,
                   has_residual: bool, activation: str, act_attrs: tuple = (), block: int = 0) -> None:
    call = _conv_call(ins, out, stride, padding, dilation, groups, has_bias, has_residual, activation, act_attrs)
    if call is None:
        fallback = blocked_conv2d_p.decomposed_kernel(backend.kernel)
        fallback(*ins, out=out, stride=stride, padding=padding, dilation=dilation, groups=groups,
                 has_bias=has_bias, has_residual=has_residual, activation=activation, act_attrs=act_attrs, block=block)
        return
    call()


def _specialize(*ins: np.ndarray, out: np.ndarray, stride, padding, dilation, groups: int, has_bias: bool,
                has_residual: bool, activation: str, act_attrs: tuple = (),
                block: int = 0) -> Callable[[], None] | None:
    return _conv_call(ins, out, stride, padding, dilation, groups, has_bias, has_residual, activation, act_attrs)


blocked_conv2d.specialize = for_reuse(_specialize)


def _note(specs, groups: int, stride, padding, dilation, **attrs) -> str:
    if groups != 1:
        return "blocked-depthwise"
    return choose_blocked(shape_of(specs[0]), shape_of(specs[1]), stride, padding, dilation).describe()


blocked_conv2d.algorithm = _note
