"""A 1x1 ``blocked_conv2d`` (the expand), the depthwise layer that reads its output and the 1x1 after that (the
project) in one parallel region on the numba backend: MobileNetV2's inverted residual block, the expanded tensor
(6x the block's channels) never written to memory.

Each thread takes an equal band of the depthwise layer's output rows (:func:`.chain.row_schedule`), cut into
segments. For a segment it computes the expand's output rows the depthwise rows read (the segment's rows, strided,
plus the kernel's halo) into its own scratch planes (:data:`EXPAND_BYTES`: they stay in L2), keeping the rows the
previous segment already computed (moved to the front), then runs the depthwise rows of every channel block from
that scratch into the depthwise output (its planned buffer) and the 1x1 tiles of those pixels
(:func:`.chain.depthwise_pointwise`'s second half) while they are in cache. The threads share no rows but the halo
at their band's edges, which each computes for itself.

The depthwise output is still written (where the executor planned it); the expand's planned output is not: the
executor offers the three layers only where the depthwise layer is the expand output's one reader.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
from numba import njit, prange

from engine.ops.fused import split_inputs

from .._layout import bind, for_reuse, in_order, serial_twin
from ..conv.workspace import current_workspace
from ..gemm import VL
from . import conv as _conv
from . import steal
from .chain import (
    _bands,
    _phases,
    _pointwise_band,
    chain_call,
    pair_operands,
    pair_schedule,
    plain_1x1,
    pointwise_operands,
    row_schedule,
)
from .conv import KC, MR, NV, dense_segments, group_tiles
from .depthwise import depthwise_band

# Scratch for the expanded rows of one segment, per thread: with the depthwise rows and the 1x1's weights it stays
# in Zen 4's 1 MiB L2. A segment of r output rows recomputes no rows (the next one keeps its halo) but ends in a
# partial expand tile per output-block group, so fewer, longer segments waste less.
EXPAND_BYTES = 512 << 10
# Expanded tensors smaller than this stay in L2 between separate layers anyway (MobileNetV2's 28x28 and smaller
# blocks) while the thread bands' halo rows add to the expand's work (28x28 on two threads: 1 row per 14; 14x14: 2
# per 7): there the three layers run as the depthwise -> 1x1 pair and the expand on its own. Taking the 28x28 blocks
# too (512 KiB) measured within noise: MobileNetV2 b1, 15 interleaved rounds at load 5, two threads 0.977-0.963 of
# the time, one thread 1.00-1.01.
MIN_EXPANDED_BYTES = 1 << 20
# Those smaller blocks still run as one call on two or more threads (:func:`expand_then_pair`): the expand, a wait,
# then the pair; False: the expand on its own and the pair (tests)
SMALL_BLOCKS_IN_ONE_REGION = True


@njit(parallel=True, cache=True)
def expand_depthwise_pointwise(xe, etab, taps_e, wpk_e, bias_e, lo_e, hi_e, escr, rmax, h, w, xcol, taps, wpk, ccls,
                               cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt, dh, dw, kh, kw, ox0,
                               ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, sbuf, segs,
                               starts, kc_max):
    """e = clamp(1x1 conv of xe + bias_e) (xe (N, L) the blocked input images of h x w pixels, taps_e its tap
    table, etab[thread] rmax*w + MR entries for its row table, wpk_e its packed weights; never stored whole), mid =
    :func:`.depthwise.depthwise` of e (its operands from ``xcol``), out2 = the 1x1 of mid (:func:`.chain.
    depthwise_pointwise`'s operands from ``rows2``). escr[thread] holds CB planes of rmax expanded rows. Thread
    ``th`` runs the segments segs[starts[th]:starts[th + 1]], each (image, first depthwise output row, end row)."""
    ecb, ow = mid.shape[1], xcol.shape[0]
    ke = taps_e.shape[0]
    kext = (kh - 1) * dh + 1
    plane = rmax * w * VL  # elements per scratch plane
    lo_e32, hi_e32 = np.float32(lo_e), np.float32(hi_e)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    for th in prange(starts.shape[0] - 1):
        tid = numba.get_thread_id()
        s, e, rt = sbuf[tid], escr[tid], etab[tid]
        eo = e[:ecb * plane].reshape((1, ecb, rmax * w, VL))  # the expand's output tiles write here
        sc, sr = s[:NV * MR * VL], s[NV * MR * VL:]
        held_n, held0, held1 = -1, 0, 0  # the expanded rows [held0, held1) of image held_n in the scratch
        for si in range(starts[th], starts[th + 1]):
            n, r0, r1 = segs[si, 0], segs[si, 1], segs[si, 2]
            a = max(0, r0 * sh - pt)  # the expanded rows this segment reads: [a, b)
            b = min(h, (r1 - 1) * sh - pt + kext)
            new0 = a
            if held_n == n and held0 <= a < held1:  # keep the rows the last segment computed
                d, keep = (a - held0) * w * VL, (held1 - a) * w * VL
                if d > 0:
                    for cb in range(ecb):
                        for q in range(cb * plane, cb * plane + keep, w * VL):  # row by row: d is whole rows,
                            e[q:q + w * VL] = e[q + d:q + d + w * VL]  # so a row never overlaps the one it replaces
                new0 = held1
            if b > new0:
                x_addr = xe[n].ctypes.data + new0 * w * VL * 4
                p0, p1 = (new0 - a) * w, (b - a) * w
                for i in range(p1 - p0):  # past the rows, zeros: a partial tile reads no pixel after the image's
                    rt[i] = i * VL
                rt[p1 - p0:p1 - p0 + MR] = 0
                for g in range(wpk_e.shape[0]):
                    group_tiles(x_addr, rt.ctypes.data, taps_e.ctypes.data, wpk_e, g, ke, kc_max, p0, p1, p1, p0,
                                eo, eo, 0, False, bias_e, lo_e32, hi_e32, sc, sr)
            held_n, held0, held1 = n, a, b
            for cb in range(ecb):
                depthwise_band(e[cb * plane:].ctypes.data, h, w, a, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res,
                               mid, has_res, lo32, hi32, sh, sw, pt, dh, dw, kh, kw, ox0, ox1, n, cb, r0, r1)
            _pointwise_band(mid, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, s, n, r0 * ow,
                            r1 * ow, kc_max)


_expand_depthwise_pointwise_serial = serial_twin(expand_depthwise_pointwise)


@njit(parallel=True, cache=True)
def expand_then_pair(xe, rows_e, taps_e, wpk_e, bias_e, res_e, e4, has_res_e, lo_e, hi_e, pf_e, esegs, estarts, kc_e,
                     x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt, dh, dw, kh,
                     kw, ox0, ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, sbuf, flags,
                     dstarts, segs, starts, kc_max, two_phases):
    """The three layers of a small block in one region: the expand 1x1 of xe (5-D blocked) into its planned output
    ``x`` (e4 its (N, ECB, P, VL) view; :func:`.conv.dense_segments` of esegs / estarts, each counted), a wait until
    every segment is done, then the depthwise -> 1x1 pair on ``x`` as :func:`.chain.pair_schedule` planned it
    (``two_phases``: :func:`.chain._phases`, else :func:`.chain._bands`). ``flags``: one per expand segment, the
    count, then the pair's (two phases). One parallel region and one call where the three layers took two of each
    (MobileNetV2's 28x28 and smaller blocks, whose expanded tensor stays in L2 anyway)."""
    ne = esegs.shape[0]
    nd = mid.shape[0] * mid.shape[1]
    steal.clear(flags, ne + 1 + (nd + segs.shape[0] + 1 if two_phases else 0))
    f_addr = flags.ctypes.data
    done = f_addr + ne * steal.FLAG_STRIDE * 8
    for th in prange(starts.shape[0] - 1):
        s = sbuf[numba.get_thread_id()]
        dense_segments(th, xe.ctypes.data, xe[0].size * 4, rows_e, taps_e, wpk_e, bias_e, res_e, e4, has_res_e, lo_e,
                       hi_e, pf_e, s, f_addr, esegs, estarts, kc_e, done)
        steal.wait_for(done, ne)
        if two_phases:
            _phases(th, x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt, dh, dw,
                    kh, kw, ox0, ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, s,
                    done + steal.FLAG_STRIDE * 8, dstarts, segs, starts, kc_max)
        else:
            _bands(th, x, xcol, taps, wpk, ccls, cn, ctaps, cwpk, bias, res, mid, has_res, lo, hi, sh, sw, pt, dh, dw,
                   kh, kw, ox0, ox1, rows2, taps2, wpk2, bias2, res2, out2, has_res2, lo2, hi2, pf2, s, segs, starts,
                   kc_max)


def phased_call(xe: np.ndarray, we: np.ndarray, be, a0: dict, out0: np.ndarray, depthwise: tuple,
                project: tuple) -> Callable[[], None] | None:
    """:func:`expand_then_pair` for the expand layer (xe -> out0; checked by :func:`inverted_call`) and the pair
    after it, on two or more threads; None where the pair would not chain (:func:`.chain.pair_schedule`) or the
    layers are too small for threads (then the layers run as the pair and the expand apart)."""
    threads = numba.get_num_threads()
    if threads < 2 or not SMALL_BLOCKS_IN_ONE_REGION:
        return None
    (ins1, out1, a1), (ins2, out2, a2) = depthwise, project
    _, w1, b1, r1 = split_inputs(ins1, a1["has_bias"], a1["has_residual"])
    mid, w2, b2, r2 = split_inputs(ins2, a2["has_bias"], a2["has_residual"])
    n, ecb, h, w, _ = out0.shape
    _, cb, oh, ow, _ = out1.shape
    ob = out2.shape[1]
    ew_args, fill0 = pointwise_operands(we, be, None, a0, out0)
    dw_args, fill1, pw_args, fill2 = pair_operands(out0, w1, b1, r1, a1, out1, w2, b2, r2, a2, out2)
    plan = pair_schedule(n, cb, oh, ow, ob, pw_args[2], threads)
    if plan is None or _block_macs(out0, out1, out2, ew_args[1], w1, pw_args[1]) < _conv.SERIAL_MACS:
        return None
    two_phases, dstarts, segs, starts = plan
    esegs, estarts = _conv.dense_items(n, ecb, h * w, ew_args[2], threads)
    flags = steal.flags_for(esegs.shape[0] + 1 + (n * cb + segs.shape[0] + 1 if two_phases else 0))
    sbuf = current_workspace().per_thread("blocked_tile", 2 * NV * MR * VL)
    steps = [f for f in (fill0, fill1, fill2) if f is not None]
    steps.append(bind(expand_then_pair, xe, *ew_args, esegs, estarts,
                      _conv.k_block(ew_args[1].size, h * w), *dw_args, *pw_args, sbuf, flags, dstarts,
                      segs, starts, _conv.k_block(pw_args[1].size, oh * ow), two_phases))
    return in_order(steps)


def inverted_call(expand: tuple, depthwise: tuple, project: tuple) -> Callable[[], None] | None:
    """The 1x1 layer ``expand``, the depthwise layer ``depthwise`` reading its output and the 1x1 layer ``project``
    reading that (each ``(inputs, out, attrs)`` of ``blocked_conv2d``) as one zero-argument call of
    :func:`expand_depthwise_pointwise`; None where they do not fit it: an expand with a residual or that is no
    plain 1x1, a project that is no plain 1x1, activations that are no clamp, operands that are not C-contiguous
    float32 blocked arrays, or an output (the depthwise's, the project's) that overlaps an input the call still
    reads (the expand's, a residual) or the other output. An expanded tensor under :data:`MIN_EXPANDED_BYTES`:
    :func:`phased_call` instead."""
    (ins0, out0, a0), (ins1, out1, a1), (ins2, out2, a2) = expand, depthwise, project
    xe, we, be, re = split_inputs(ins0, a0["has_bias"], a0["has_residual"])
    e, w1, b1, r1 = split_inputs(ins1, a1["has_bias"], a1["has_residual"])
    mid, w2, b2, r2 = split_inputs(ins2, a2["has_bias"], a2["has_residual"])
    if e is not out0 or mid is not out1 or re is not None or a1["groups"] == 1 or not plain_1x1(xe, we, a0) or \
            not plain_1x1(mid, w2, a2):
        return None
    if any(a["activation"] not in ("none", "relu", "clamp") for a in (a0, a1, a2)):
        return None
    arrays = [xe, out0, out1, out2] + [r for r in (r1, r2) if r is not None]
    if any(a.dtype != np.float32 or not a.flags.c_contiguous or a.shape[-1] != VL for a in arrays):
        return None
    read = [xe] + [r for r in (r1, r2) if r is not None]
    if np.may_share_memory(out1, out2) or any(np.may_share_memory(o, r) for o in (out1, out2) for r in read):
        return None
    if out0.nbytes < MIN_EXPANDED_BYTES:
        return phased_call(xe, we, be, a0, out0, depthwise, project) if not np.may_share_memory(out0, xe) else None
    n, ecb, h, w, _ = out0.shape
    oh = out1.shape[2]
    (_, taps0, wpk0, bias0, _, _, _, lo0, hi0, _), fill0 = pointwise_operands(we, be, None, a0, out0)
    dw_args, fill1, pw_args, fill2 = pair_operands(out0, w1, b1, r1, a1, out1, w2, b2, r2, a2, out2)
    sh, kh, dh = dw_args[14], dw_args[19], dw_args[17]
    kext = (kh - 1) * dh + 1
    # segments of depthwise output rows whose expanded rows fit EXPAND_BYTES
    row_bytes = ecb * w * VL * 4
    seg_rows = max(1, (max(kext, EXPAND_BYTES // row_bytes) - kext) // sh + 1)
    rmax = min(h, (seg_rows - 1) * sh + kext)
    ws = current_workspace()
    sbuf = ws.per_thread("blocked_tile", 2 * NV * MR * VL)
    escr = ws.per_thread("blocked_expanded", ecb * rmax * w * VL)
    etab = ws.per_thread("blocked_expanded_rows", rmax * w + MR, np.int64)
    parallel = _block_macs(out0, out1, out2, taps0, w1, pw_args[1]) >= _conv.SERIAL_MACS
    segs, starts = row_schedule(n, oh, seg_rows, numba.get_num_threads() if parallel else 1)
    kernel = expand_depthwise_pointwise if parallel else _expand_depthwise_pointwise_serial
    steps = [f for f in (fill0, fill1, fill2) if f is not None]
    steps.append(bind(kernel, xe.reshape(n, -1), etab, taps0, wpk0, bias0, lo0, hi0, escr, rmax, h, w,
                      *dw_args[1:], *pw_args, sbuf, segs, starts, KC))
    return in_order(steps)


def _block_macs(e: np.ndarray, mid: np.ndarray, out: np.ndarray, taps_e: np.ndarray, w1: np.ndarray,
                taps2: np.ndarray) -> int:
    """The block's multiply-adds as the threads' threshold counts them: expand (into e, over taps_e), depthwise
    (into mid, weights w1, each counted :data:`.conv.DEPTHWISE_MAC_COST` times), project (into out, over taps2)."""
    n, ecb, h, w, _ = e.shape
    _, cb, oh, ow, _ = mid.shape
    return n * (h * w * ecb * VL * taps_e.size + oh * ow * VL * (cb * w1.shape[2] * w1.shape[3] *
                                                                 _conv.DEPTHWISE_MAC_COST + out.shape[1] * taps2.size))


def specialize_chain(*layers: tuple) -> Callable[[], None] | None:
    """``blocked_conv2d.specialize_chain``: consecutive layers (graph/executor.py's ArenaExecutor offers two or three,
    each reading the one before) as one call: :func:`inverted_call` for three, :func:`.chain.chain_call` for two."""
    if len(layers) == 3:
        return inverted_call(*layers)
    return chain_call(*layers) if len(layers) == 2 else None


_conv.blocked_conv2d.specialize_chain = for_reuse(specialize_chain)
