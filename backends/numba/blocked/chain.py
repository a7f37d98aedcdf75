"""A depthwise ``blocked_conv2d`` and the 1x1 convolution that reads its output, in one parallel region on the numba
backend (MobileNet's depthwise -> project pair).

Each thread takes an equal band of output rows (of every image): it writes the depthwise rows of the band, every
channel block, into the depthwise output (its planned buffer, read by any other user too), then runs the 1x1's
register tiles (:func:`.conv.pixel_tile`) over the band's pixels while those rows are still in its cache. The 1x1
reads only the pixels of its own band, so the threads never wait for each other: one region instead of two (or
instead of a serial depthwise layer and a parallel 1x1), and the depthwise work is split over the threads too. A
band is cut into segments of rows whose depthwise output fits :data:`SEGMENT_BYTES`, each segment's last pixel tile
a partial one.

Where whole-row bands split unevenly (a 7x7 plane on two threads: 4 / 3 rows), the pair runs in two phases
instead (:func:`depthwise_then_pointwise`): every depthwise channel block split evenly, a wait, then the 1x1's
items as the layer alone splits them, so each thread also streams only its output groups' weights.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
from numba import njit, prange

from engine.ops.fused import split_inputs

from .._layout import bind, in_order, serial_twin
from ..conv.workspace import current_workspace
from ..gemm import VL
from . import conv as _conv
from . import steal
from .conv import (
    MR,
    NV,
    _bias_filler,
    _packed,
    clamp_bounds,
    dense_segments,
    depthwise_operands,
    group_tiles,
    pack_dense,
)
from .depthwise import depthwise_band
from .select import DIRECT
from .select import choose as choose_blocked
from .steal import even_runs

SEGMENT_BYTES = 1 << 20  # depthwise output rows per segment: Zen 4's L2 (shorter segments only add partial tiles)
PHASED = "auto"  # "always" / "never": tests run a pair either way
PHASED_EXCESS = 1.05
CHAIN_TILE_WASTE = 1.1  # the most 1x1 tiles the busiest thread's bands may run, relative to its even share


@njit(parallel=True, cache=True)
def depthwise_pointwise(x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt, dh,
                        dw, kh, kw, ox0, ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, sbuf,
                        segs, starts, kc_max):
    """mid = :func:`.depthwise.depthwise` (its operands up to ``ox1``, ``mid`` its output (N, CB, P, VL)), then
    out2 = the 1x1 convolution of mid as :func:`.conv._conv_dense` (rows2 / taps2 / wpk2 / bias2 / res2 / out2 /
    has_res2 / lo2 / hi2, pf2 its pf_next; rows2 holds P + MR entries: a tile may start at any pixel). Thread
    ``th`` runs :func:`_bands`."""
    for th in prange(starts.shape[0] - 1):
        _bands(th, x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt, dh, dw, kh,
               kw, ox0, ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2,
               sbuf[numba.get_thread_id()], segs, starts, kc_max)


@njit(cache=True)
def _bands(th, x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt, dh, dw, kh, kw,
           ox0, ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, s, segs, starts, kc_max):
    """Thread ``th``'s segments segs[starts[th]:starts[th + 1]] of :func:`depthwise_pointwise` (:func:`band_schedule`),
    each (image, first output row, end row, first pixel, end pixel): the depthwise rows first, then the 1x1 tiles
    of the pixels, output-block group by group, every K block; ``s`` the thread's scratch."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    for si in range(starts[th], starts[th + 1]):
        n, r0, r1 = segs[si, 0], segs[si, 1], segs[si, 2]
        for cb in range(mid.shape[1]):
            depthwise_band(x[n, cb].ctypes.data, x.shape[2], x.shape[3], 0, xcol, taps, wpk, ccls, cn, ctaps, cwpk,
                           bias, res, mid, has_res, lo32, hi32, sh, sw, pt, dh, dw, kh, kw, ox0, ox1, n, cb, r0, r1)
        _pointwise_band(mid, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, s, n, segs[si, 3],
                        segs[si, 4], kc_max)


@njit(cache=True)
def _pointwise_band(mid, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, s, n, p0, pe, kc_max):
    """The 1x1 tiles of pixels [p0, pe) of image ``n`` (:func:`depthwise_pointwise`'s operands, ``s`` the thread's
    scratch), output-block group by group, every K block. A function of its own, like
    :func:`.depthwise.depthwise_band`: inlined into one function, each slowed the other's code."""
    k = taps2.shape[0]
    lo32, hi32 = np.float32(lo2), np.float32(hi2)
    sc, sr = s[:NV * MR * VL], s[NV * MR * VL:]
    for g in range(wpk2.shape[0]):
        group_tiles(mid[n].ctypes.data, rows2.ctypes.data, taps2.ctypes.data, wpk2, g, k, kc_max, p0, pe, pe, 0, out2,
                    res2, n, has_res2, bias2, lo32, hi32, sc, sr, pf2)


_depthwise_pointwise_serial = serial_twin(depthwise_pointwise)


@njit(parallel=True, cache=True)
def depthwise_then_pointwise(x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt,
                             dh, dw, kh, kw, ox0, ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2,
                             sbuf, flags, dstarts, segs, starts, kc_max):
    """:func:`depthwise_pointwise`'s two layers in one region, in two phases (:func:`_phases`; ``flags`` one per
    depthwise item and 1x1 segment, then the count of depthwise items done)."""
    nd, nseg = mid.shape[0] * mid.shape[1], segs.shape[0]
    steal.clear(flags, nd + nseg + 1)
    for th in prange(starts.shape[0] - 1):
        _phases(th, x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt, dh, dw,
                kh, kw, ox0, ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2,
                sbuf[numba.get_thread_id()], flags.ctypes.data, dstarts, segs, starts, kc_max)


@njit(cache=True)
def _phases(th, x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt, dh, dw, kh,
            kw, ox0, ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, s, f_addr, dstarts, segs,
            starts, kc_max):
    """Thread ``th``'s part of the pair in two phases: the depthwise layer's items (image, channel block; every
    row) from dstarts[th], then, once every item is done, the 1x1's segments (:func:`.conv.dense_segments`) from
    starts[th]; each phase with stealing (:mod:`.steal`; the flags from f_addr: one per depthwise item, one per
    segment, then the count of depthwise items done). For small planes, whose rows do not split evenly (7x7:
    4 / 3 rows): both phases split evenly, and each thread streams only its output groups' weights."""
    ncb = mid.shape[1]
    nd = mid.shape[0] * ncb
    oh = mid.shape[2] // xcol.shape[0]
    lo32, hi32 = np.float32(lo), np.float32(hi)
    s_addr = f_addr + nd * steal.FLAG_STRIDE * 8
    done = s_addr + segs.shape[0] * steal.FLAG_STRIDE * 8
    nth = starts.shape[0] - 1
    u, it = steal.claim(th, 0, dstarts[th], dstarts, f_addr)
    while u < nth:
        n, cb = it // ncb, it % ncb
        depthwise_band(x[n, cb].ctypes.data, x.shape[2], x.shape[3], 0, xcol, taps, wpk, ccls, cn, ctaps, cwpk,
                       bias, res, mid, has_res, lo32, hi32, sh, sw, pt, dh, dw, kh, kw, ox0, ox1, n, cb, 0, oh)
        steal.add(done, 1)
        u, it = steal.claim(th, u, it + 1 if u == 0 else it - 1, dstarts, f_addr)
    steal.wait_for(done, nd)
    dense_segments(th, mid.ctypes.data, mid[0].size * 4, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2,
                   pf2, s, s_addr, segs, starts, kc_max)


def band_schedule(nn: int, oh: int, ow: int, seg_rows: int, threads: int, align: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(segs, starts) of :func:`depthwise_pointwise`: the nn images of oh x ow output pixels cut into ``threads``
    equal runs of ``align``-pixel units (an image's last unit may be shorter; one unit apart at most), each cut at
    image ends and into segments of at most ``seg_rows`` rows; a segment is (image, first row, end row, first
    pixel, end pixel): its 1x1 tiles cover those pixels, its depthwise rows all the rows they touch. With ``align``
    a multiple of ``ow`` the runs are whole rows; otherwise two threads may both compute the row a cut falls in
    (the same values, into the same place), so that each runs whole 1x1 tiles."""
    npix = oh * ow
    units = -(-npix // align)

    def cut(th: int) -> int:
        n, u = divmod(nn * units * th // threads, units)
        return n * npix + min(npix, u * align)

    segs: list[tuple[int, int, int, int, int]] = []
    starts = [0]
    for th in range(threads):
        a, b = cut(th), cut(th + 1)
        while a < b:
            n, p = divmod(a, npix)
            pe = min(b - n * npix, npix)
            r0 = p // ow
            r1 = min(-(-pe // ow), r0 + seg_rows)
            q1 = min(pe, r1 * ow)
            segs.append((n, r0, r1, p, q1))
            a = n * npix + q1
        starts.append(len(segs))
    return np.array(segs, np.int64).reshape(-1, 5), np.array(starts, np.int64)


def row_schedule(nn: int, oh: int, seg_rows: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(segs, starts) of whole rows: :func:`band_schedule` of one-pixel rows, each segment (image, first row, end
    row)."""
    segs, starts = band_schedule(nn, oh, 1, seg_rows, threads, 1)
    return np.ascontiguousarray(segs[:, :3]), starts


def _busiest(segs: np.ndarray, starts: np.ndarray) -> int:
    """The 1x1 tiles the busiest thread's segments run (each segment's last one partial)."""
    cum = np.concatenate([[0], np.cumsum(-(-(segs[:, 4] - segs[:, 3]) // MR))])
    return int(np.max(cum[starts[1:]] - cum[starts[:-1]]))


def chain_call(first: tuple, second: tuple) -> Callable[[], None] | None:
    """The depthwise layer ``first`` and the 1x1 layer ``second`` (each ``(inputs, out, attrs)`` of
    ``blocked_conv2d``; second's input is first's output) as one zero-argument call of
    :func:`depthwise_pointwise`; None where the pair does not fit it (then each layer runs on its own): second
    not a plain 1x1 (stride 1, no padding, groups 1), an activation that is no clamp, operands that are not
    C-contiguous float32 blocked arrays, or second's output overlapping what the depthwise layer still reads."""
    (ins1, out1, a1), (ins2, out2, a2) = first, second
    x, w1, b1, r1 = split_inputs(ins1, a1["has_bias"], a1["has_residual"])
    mid, w2, b2, r2 = split_inputs(ins2, a2["has_bias"], a2["has_residual"])
    if mid is not out1 or a1["groups"] == 1 or x.ndim != 5 or not plain_1x1(mid, w2, a2):
        return None
    if any(a["activation"] not in ("none", "relu", "clamp") for a in (a1, a2)):
        return None
    arrays = [x, out1, out2] + [r for r in (r1, r2) if r is not None]
    if any(a.dtype != np.float32 or not a.flags.c_contiguous or a.shape[-1] != VL for a in arrays):
        return None
    if any(np.may_share_memory(out2, a) for a in (x, out1) + (() if r1 is None else (r1,))):
        return None
    n, cb, oh, ow, _ = out1.shape
    ob = out2.shape[1]
    npix = oh * ow
    dw_args, fill1, pw_args, fill2 = pair_operands(x, w1, b1, r1, a1, out1, w2, b2, r2, a2, out2)
    taps2 = pw_args[1]
    sbuf = current_workspace().per_thread("blocked_tile", 2 * NV * MR * VL)
    kh, kw = w1.shape[2:]
    parallel = n * npix * VL * (cb * kh * kw * _conv.DEPTHWISE_MAC_COST + ob * taps2.size) >= _conv.SERIAL_MACS
    plan = pair_schedule(n, cb, oh, ow, ob, pw_args[2], numba.get_num_threads() if parallel else 1)
    if plan is None:
        return None
    two_phases, dstarts, segs, starts = plan
    steps = [f for f in (fill1, fill2) if f is not None]
    kc_max = _conv.k_block(taps2.size, npix)
    if two_phases:
        flags = steal.flags_for(n * cb + segs.shape[0] + 1)
        steps.append(bind(depthwise_then_pointwise, *dw_args, *pw_args, sbuf, flags, dstarts, segs,
                          starts, kc_max))
    else:
        kernel = depthwise_pointwise if parallel else _depthwise_pointwise_serial
        steps.append(bind(kernel, *dw_args, *pw_args, sbuf, segs, starts, kc_max))
    return in_order(steps)


def pair_schedule(n: int, cb: int, oh: int, ow: int, ob: int, wpk2: np.ndarray, threads: int
                  ) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray] | None:
    """How a depthwise layer of ``cb`` channel blocks on ``n`` planes of oh x ow output pixels and the 1x1 after it
    (``ob`` output blocks, packed weights ``wpk2``) split over ``threads``: (two phases, dstarts, segs, starts),
    either the bands of :func:`depthwise_pointwise` (dstarts unused) or the two phases of
    :func:`depthwise_then_pointwise`; None where the busiest thread's bands would run too many 1x1 tiles (then the
    layers run apart)."""
    npix = oh * ow
    seg_rows = max(1, SEGMENT_BYTES // (cb * ow * VL * 4))
    segs, starts = band_schedule(n, oh, ow, seg_rows, threads, ow)
    # each segment ends in a partial 1x1 tile: where whole-row bands give the busiest thread more tiles than its
    # share (3 rows of 13 pixels split 2 / 1: 3 tiles where 2 are due), cut the bands at whole tiles instead, both
    # threads computing the depthwise row a cut falls in; where they do not (7x7 split 4 / 3 rows: 3 tiles each, 6
    # for 5), whole rows: two threads writing the same depthwise row at the same time cost more than the spare
    # tile (MobileNetV2's 960x7 pairs, two threads at load ~2: 143 / 225 us cut inside row 2, 114 / 196 in whole
    # rows); where the busiest thread still runs too many tiles, the 1x1 alone, its tiles split evenly, costs less
    # than the depthwise saves
    share = -(-n * -(-npix // MR) // threads)
    if threads > 1 and phased(segs, starts, n * oh, share, threads):
        return (True, even_runs(n * cb, threads)) + _conv.dense_items(n, ob, npix, wpk2, threads)
    if _busiest(segs, starts) > share:
        tiled = band_schedule(n, oh, ow, seg_rows, threads, MR)
        if _busiest(*tiled) < _busiest(segs, starts):
            segs, starts = tiled
    if _busiest(segs, starts) > CHAIN_TILE_WASTE * share:
        return None
    return False, starts, segs, starts


def phased(segs: np.ndarray, starts: np.ndarray, rows: int, share: int, threads: int) -> bool:
    """Whether a pair runs in two phases (:func:`depthwise_then_pointwise`) rather than in the whole-row bands
    ``segs`` / ``starts``: where they give the busiest thread more than :data:`PHASED_EXCESS` of its even share of
    the depthwise rows (``rows`` in all images), or more 1x1 tiles than its ``share``. :data:`PHASED` forces
    either."""
    if PHASED != "auto":
        return PHASED == "always"
    cum = np.concatenate([[0], np.cumsum(segs[:, 2] - segs[:, 1])])
    busiest_rows = int(np.max(cum[starts[1:]] - cum[starts[:-1]]))
    return busiest_rows * threads > PHASED_EXCESS * rows or _busiest(segs, starts) > share


def plain_1x1(x: np.ndarray, w: np.ndarray, a: dict) -> bool:
    """A dense 1x1 layer on blocked x that the direct kernel runs (stride 1, no padding, no block of its own):
    the shape a chained 1x1 must have."""
    return a["groups"] == 1 and w.shape[2:] == (1, 1) and tuple(a["stride"]) == (1, 1) and \
        not any(p for side in a["padding"] for p in side) and not a.get("block", 0) and x.ndim == 5 and \
        choose_blocked(x.shape, w.shape, a["stride"], a["padding"], a["dilation"]).algorithm == DIRECT


def pair_operands(x: np.ndarray, w1: np.ndarray, b1, r1, a1: dict, out1: np.ndarray, w2: np.ndarray, b2, r2,
                  a2: dict, out2: np.ndarray) -> tuple[tuple, Callable | None, tuple, Callable | None]:
    """The operands of a depthwise layer (x -> out1) and the 1x1 layer after it (out1 -> out2) as the chained
    kernels take them: (the depthwise's, its bias filler, :func:`pointwise_operands`' two)."""
    n, cb, oh, ow, _ = out1.shape
    mid4 = out1.reshape(n, cb, oh * ow, VL)
    res1 = mid4 if r1 is None else r1.reshape(mid4.shape)
    lo1, hi1 = clamp_bounds(a1["activation"], a1.get("act_attrs", ()))
    dw_args, fill1 = depthwise_operands(x, w1, b1, res1, mid4, ow, r1 is not None, a1["stride"], a1["padding"],
                                        a1["dilation"], lo1, hi1)
    return (dw_args, fill1) + pointwise_operands(w2, b2, r2, a2, out2)


def pointwise_operands(w: np.ndarray, b, r, a: dict, out: np.ndarray) -> tuple[tuple, Callable | None]:
    """The operands of a plain 1x1 layer (:func:`plain_1x1`) into the blocked ``out`` as the chained kernels take
    them: (``rows, taps, packed w, bias, residual, out, has_res, lo, hi, pf_next`` (:func:`.conv.group_tiles`,
    rows with MR spare entries: a tile may start at any pixel; out and residual as (N, OB, P, VL); its weights
    prefetched from ``PREFETCH_BYTES``), its bias filler)."""
    n, ob, oh, ow, _ = out.shape
    npix = oh * ow
    out4 = out.reshape(n, ob, npix, VL)
    res = out4 if r is None else r.reshape(out4.shape)
    lo, hi = clamp_bounds(a["activation"], a.get("act_attrs", ()))
    bias, fill = _bias_filler(b, -(-ob // NV) * NV * VL)
    wpk = _packed(w, "blocked_dense", pack_dense)
    _, taps = _conv.offset_tables(w.shape[1], oh, ow, 1, 1, 1, 1, 1, 1, oh, ow)
    rows = np.zeros(npix + MR, np.int64)
    rows[:npix] = np.arange(npix) * VL
    return (rows, taps, wpk, bias, res, out4, r is not None, lo, hi, wpk.nbytes >= _conv.PREFETCH_BYTES), fill
