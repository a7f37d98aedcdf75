"""``blocked_conv2d`` reading the network's NCHW image (``block`` set: a first convolution of a few input channels,
graph/passes/layout.py) on the numba backend, without a padded copy of the image.

Every output row splits into border pixels (some tap falls outside the image) and one interior run. The interior
runs as register tiles of :data:`MR` consecutive output pixels x NV output blocks over the reduction (input
channel, kernel row, kernel column): per step one broadcast of the image value at r*sw + tap per pixel r, against
NV weight vectors; a run's last tile is shifted back to end with the run (it recomputes a few pixels of the tile
before it, the same sums, on the same thread). Border pixels run the same tile over their in-image taps only,
down their column RB rows at a time (pixel by pixel where those rows differ in their kernel rows in the image).
The taps of each class (valid kernel rows, valid kernel columns), and the packed weights' rows in their
order, are made once per geometry. The epilogue (bias = folded BN, residual, clamp) runs on the accumulators.
Threads take contiguous runs of (image, RB output rows), each with every output-block group: one parallel region,
each thread reading its band of the image once (then the rows left of the others').
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from engine.ops.blocked import blocks

from .._layout import bind, serial_twin
from ..codegen import AVX512, VL, counted_loop, splat, vector_intrinsic
from . import steal
from .conv import NV, _bias_filler, _packed
from .tile import store_epilogue

MR = 14 if AVX512 else 6  # output pixels per tile: MR*NV accumulators, NV weight vectors, broadcasts (14 beat 12, 13)


def make_stem_tile(mr: int, nv: int, si: int | None, so: int | None = VL):
    """The mr x nv tile: C[r*so + v*ldv + q] = clamp(bias[v*VL + q] + sum_kk a[r*si + taps[kk]] B[kk*bks + v*VL +
    q] (+ res, same layout as C)), addresses in bytes, offsets in elements. ``si`` (the pixel step in the image:
    the conv's column stride along a row) fixed here makes every broadcast one load at a constant offset from the
    tap's address; None takes it at run time (``si_rt``), as ``so`` (the pixel step in the output: VL along a
    row) takes ``so_rt``: a tile down a column of border pixels."""

    @intrinsic
    def tile(typingctx, k, a, si_rt, so_rt, taps, b, bks, c, ldv, res, bias, has_res, lo, hi):
        sig = types.void(types.intp, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp,
                         types.intp, types.intp, types.intp, types.intp, types.boolean, types.float32, types.float32)

        def codegen(context, builder, signature, args):
            k, a, si_rt, so_rt, taps, b, bks, c, ldv, res, bias, has_res, lo, hi = args
            f32, i64 = ir.FloatType(), ir.IntType(64)
            fptr, vptr = ir.PointerType(f32), ir.PointerType(ir.VectorType(f32, VL))
            fma = vector_intrinsic(builder, "fma", 3)
            ap, bp, cp, rp, biasp = (builder.inttoptr(v, fptr) for v in (a, b, c, res, bias))
            kt = builder.inttoptr(taps, ir.PointerType(i64))
            step_px = ir.Constant(i64, si) if si is not None else si_rt
            offs = [builder.mul(step_px, ir.Constant(i64, r)) for r in range(mr)]

            def vec(base, off):
                return builder.bitcast(builder.gep(base, [off]), vptr)

            def step(kk, acc):
                brow = builder.gep(bp, [builder.mul(kk, bks)])
                bv = [builder.load(vec(brow, ir.Constant(i64, v * VL)), align=4) for v in range(nv)]
                tap = builder.gep(ap, [builder.load(builder.gep(kt, [kk]))])
                new = []
                for r in range(mr):
                    s = splat(builder, builder.load(builder.gep(tap, [offs[r]])))
                    new += [builder.call(fma, [s, bv[v], acc[r * nv + v]]) for v in range(nv)]
                return new

            bvec = [builder.load(vec(biasp, ir.Constant(i64, v * VL)), align=4) for v in range(nv)]
            init = [bvec[v] for _ in range(mr) for v in range(nv)]
            zero = ir.Constant(bvec[0].type, [0.0] * VL)
            two = ir.Constant(i64, 2)

            def pair(kp, acc):  # two steps on their own sums: twice the FMA chains of a narrow tile
                kk = builder.mul(kp, two)
                return step(kk, acc[:mr * nv]) + step(builder.add(kk, ir.Constant(i64, 1)), acc[mr * nv:])

            # guards: a pixel whose taps all fall outside the image (padding >= kernel) is its bias
            if mr * nv > 4:
                sums = counted_loop(builder, "stem", 0, k, init, step, guard=True, unroll=False)
            else:  # a border pixel: its 1-2 FMA chains alone would wait on the FMA latency
                both = counted_loop(builder, "stem2", 0, builder.sdiv(k, two), init + [zero] * len(init), pair,
                                    guard=True, unroll=False)
                sums = [builder.fadd(p, q) for p, q in zip(both[:len(init)], both[len(init):])]
                sums = counted_loop(builder, "stem1", builder.sub(k, builder.srem(k, two)), k, sums, step, guard=True)

            def caddr(base, r, v):
                roff = ir.Constant(i64, r * so) if so is not None else builder.mul(so_rt, ir.Constant(i64, r))
                return vec(base, builder.add(roff, builder.mul(ldv, ir.Constant(i64, v))))

            cs = [caddr(cp, r, v) for r in range(mr) for v in range(nv)]
            rs = [caddr(rp, r, v) for r in range(mr) for v in range(nv)]
            store_epilogue(builder, sums, cs, rs, has_res, lo, hi)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_any1, _any2 = (make_stem_tile(MR, nv, None) for nv in (1, 2))
_s1n1, _s1n2 = (make_stem_tile(MR, nv, 1) for nv in (1, 2))
_s2n1, _s2n2 = (make_stem_tile(MR, nv, 2) for nv in (1, 2))
_px1, _px2 = (make_stem_tile(1, nv, 0) for nv in (1, 2))
RB = 4  # output rows per work item, and pixels per tile down a border column (RB*NV FMA chains)
_col1, _col2 = (make_stem_tile(RB, nv, None, None) for nv in (1, 2))


@njit(cache=True, inline="always")
def _run_tile(nv, sw, k, a, taps, b, bks, c, ldv, res, bias, has_res, lo, hi):
    """The MR-pixel tile with the column stride ``sw`` (constant offsets for strides 1 and 2)."""
    if sw == 2:
        if nv == 2:
            _s2n2(k, a, sw, VL, taps, b, bks, c, ldv, res, bias, has_res, lo, hi)
        else:
            _s2n1(k, a, sw, VL, taps, b, bks, c, ldv, res, bias, has_res, lo, hi)
    elif sw == 1:
        if nv == 2:
            _s1n2(k, a, sw, VL, taps, b, bks, c, ldv, res, bias, has_res, lo, hi)
        else:
            _s1n1(k, a, sw, VL, taps, b, bks, c, ldv, res, bias, has_res, lo, hi)
    elif nv == 2:
        _any2(k, a, sw, VL, taps, b, bks, c, ldv, res, bias, has_res, lo, hi)
    else:
        _any1(k, a, sw, VL, taps, b, bks, c, ldv, res, bias, has_res, lo, hi)


@intrinsic
def _prefetch(typingctx, addr):
    """Ask for the cache line at ``addr`` (into L2, to be read)."""
    sig = types.void(types.intp)

    def codegen(context, builder, signature, args):
        i8p, i32 = ir.PointerType(ir.IntType(8)), ir.IntType(32)
        mod = builder.module
        fn = mod.globals.get("llvm.prefetch.p0") or \
            ir.Function(mod, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), name="llvm.prefetch.p0")
        builder.call(fn, [builder.inttoptr(args[0], i8p)] + [ir.Constant(i32, v) for v in (0, 2, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def _prefetch_item(it, nb, x0, c, h, w, kh, sh, pt, dh, oh):
    """Prefetch the image rows item ``it`` reads: a thread asks for the next item's rows before it runs this one
    (cold image, one thread: ~4% of MobileNetV2's stem. Prefetching the output rows for writing cost ~7%)."""
    n, y0 = it // nb, (it % nb) * RB
    y1 = min(oh, y0 + RB)
    r0, r1 = max(0, y0 * sh - pt), min(h, (y1 - 1) * sh - pt + (kh - 1) * dh + 1)
    for ci in range(c):
        base = x0 + ((n * c + ci) * h * w) * 4
        for off in range(r0 * w * 4, r1 * w * 4, 64):
            _prefetch(base + off)


@njit(cache=True, inline="always")
def _stem_rows(it, x, wcls, ctaps, cstart, row_cls, bstart, bx, bcls, xl, xr, sh, sw, pt, pl, bias, res, out,
               has_res, lo32, hi32):
    """Item ``it`` of :func:`stem_conv`: output rows y0 = RB*b .. y0 + RB of image n (it = n*ceil(OH/RB) + b),
    every output-block group: each row's interior run, then the border pixels, RB rows at a time down each border
    column where the RB rows have the same kernel rows in the image (their border pixels then the same classes),
    else pixel by pixel."""
    nn, c, h, w = x.shape
    ob, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    ng, ktot, bks = wcls.shape
    ldv = oh * ow * VL
    o0, r0 = np.int64(out.ctypes.data), np.int64(res.ctypes.data)
    w0, t0, b0 = np.int64(wcls.ctypes.data), np.int64(ctaps.ctypes.data), np.int64(bias.ctypes.data)
    nb = (oh + RB - 1) // RB
    n, y0 = it // nb, (it % nb) * RB
    y1 = min(oh, y0 + RB)
    column = y1 - y0 == RB and row_cls[y0] >= 0
    for y in range(y0 + 1, y1):
        column = column and row_cls[y] == row_cls[y0]
    for g in range(ng):
        nv = 2 if 2 * g + 1 < ob else 1
        wg, bg = w0 + g * ktot * bks * 4, b0 + g * NV * VL * 4
        for y in range(y0, y1):
            row = (((n * ob + 2 * g) * oh + y) * ow) * VL * 4
            orig = np.int64(x.ctypes.data) + (n * c * h * w + (y * sh - pt) * w - pl) * 4  # tap (0, 0) of (y, 0)
            cl = row_cls[y]
            if cl >= 0:
                k0, k = cstart[cl], cstart[cl + 1] - cstart[cl]
                for xs in range(xl, xr, MR):
                    xs = min(xs, xr - MR)
                    _run_tile(nv, sw, k, orig + xs * sw * 4, t0 + k0 * 8, wg + k0 * bks * 4, bks,
                              o0 + row + xs * VL * 4, ldv, r0 + row + xs * VL * 4, bg, has_res, lo32, hi32)
            if column and y > y0:
                continue
            for bi in range(bstart[y], bstart[y + 1]):
                xb, cl = bx[bi], bcls[bi]
                k0, k = cstart[cl], cstart[cl + 1] - cstart[cl]
                a, cb, rb = orig + xb * sw * 4, o0 + row + xb * VL * 4, r0 + row + xb * VL * 4
                tk, bk = t0 + k0 * 8, wg + k0 * bks * 4
                if column:  # the RB rows' pixels in this column
                    if nv == 2:
                        _col2(k, a, sh * w, ow * VL, tk, bk, bks, cb, ldv, rb, bg, has_res, lo32, hi32)
                    else:
                        _col1(k, a, sh * w, ow * VL, tk, bk, bks, cb, ldv, rb, bg, has_res, lo32, hi32)
                elif nv == 2:
                    _px2(k, a, 0, VL, tk, bk, bks, cb, ldv, rb, bg, has_res, lo32, hi32)
                else:
                    _px1(k, a, 0, VL, tk, bk, bks, cb, ldv, rb, bg, has_res, lo32, hi32)


@njit(parallel=True, cache=True)
def stem_conv(x, wcls, ctaps, cstart, row_cls, bstart, bx, bcls, xl, xr, sh, sw, pt, pl, bias, res, out, has_res,
              lo, hi, starts, flags, kh, dh):
    """out (N, OB, OH, OW, VL) = clamp(conv(x (N, C, H, W)) + bias + res) over the classes of :func:`stem_plan`:
    wcls (G, sum K, NV*VL) the packed weights' rows of every class in turn, ctaps their image offsets, class ``i``
    the rows cstart[i]:cstart[i + 1]; row y's interior run [xl, xr) of class row_cls[y] (-1: none), its border
    pixels bx[bstart[y]:bstart[y + 1]] of classes bcls; kh / dh the kernel's height and row dilation.

    Thread ``th`` runs the items (image, RB output rows) starts[th]:starts[th + 1] from the first, then the other
    threads' items from their last, each item once (:mod:`.steal`, ``flags`` one per item): a thread that starts
    late (a worker woken from sleep at the network's first layer, or one the OS runs late on a busy machine) finds
    part of its rows done, and the region ends about when the work does. Each row's sums are the same whichever
    thread computes it. Before an item a thread prefetches the image rows of its next one."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    nth = starts.shape[0] - 1
    steal.clear(flags, starts[nth])
    f_addr = flags.ctypes.data
    nn, c, h, w = x.shape
    oh = out.shape[2]
    nb = (oh + RB - 1) // RB
    x0 = np.int64(x.ctypes.data)
    for th in prange(nth):
        u, it = steal.claim(th, 0, starts[th], starts, f_addr)
        while u < nth:
            v = (th + u) % nth
            nxt = it + 1 if u == 0 else it - 1
            if starts[v] <= nxt < starts[v + 1]:
                _prefetch_item(nxt, nb, x0, c, h, w, kh, sh, pt, dh, oh)
            # one call site: inlined twice, the tiles' code doubled; not inlined, each call's array arguments
            # cost reference-count updates that the two threads contend for
            _stem_rows(it, x, wcls, ctaps, cstart, row_cls, bstart, bx, bcls, xl, xr, sh, sw, pt, pl, bias, res, out,
                       has_res, lo32, hi32)
            u, it = steal.claim(th, u, nxt, starts, f_addr)


_stem_conv_serial = serial_twin(stem_conv)


def _valid(n_out: int, n_in: int, k: int, s: int, p: int, d: int) -> list[tuple[int, int]]:
    """Per output position: the range [i0, i1) of kernel taps whose input index lies inside [0, n_in)."""
    spans = []
    for y in range(n_out):
        o = y * s - p
        i0 = min(k, max(0, -(o // d)))  # first i with o + i*d >= 0
        i1 = max(i0, min(k, (n_in - 1 - o) // d + 1)) if n_in - 1 - o >= 0 else i0
        spans.append((i0, i1))
    return spans


@functools.lru_cache(maxsize=64)
def stem_plan(c: int, h: int, w: int, kh: int, kw: int, sh: int, sw: int, pt: int, pl: int, dh: int, dw: int,
              oh: int, ow: int) -> tuple:
    """The tables of :func:`stem_conv` for one geometry: (kidx, ctaps, cstart, row_cls, bstart, bx, bcls, xl, xr);
    kidx the reduction index (c*kh + i)*kw + j of each class row (to gather the packed weights)."""
    rows, cols = _valid(oh, h, kh, sh, pt, dh), _valid(ow, w, kw, sw, pl, dw)
    inner = [x for x in range(ow) if cols[x] == (0, kw)]
    xl, xr = (inner[0], inner[-1] + 1) if len(inner) >= MR else (0, 0)
    classes: dict[tuple, int] = {}
    kidx: list[np.ndarray] = []
    taps: list[np.ndarray] = []

    def cls(ri: tuple[int, int], cj: tuple[int, int]) -> int:
        key = ri + cj
        if key not in classes:
            classes[key] = len(classes)
            ci, i, j = np.meshgrid(np.arange(c), np.arange(*ri), np.arange(*cj), indexing="ij")
            kidx.append(((ci * kh + i) * kw + j).ravel())
            taps.append((ci * (h * w) + i * (dh * w) + j * dw).ravel())
        return classes[key]

    row_cls = np.array([cls(rows[y], (0, kw)) if xr > xl else -1 for y in range(oh)], np.int64)
    edge = [x for x in range(ow) if not xl <= x < xr]  # the same border columns in every row
    border = [[(x, cls(rows[y], cols[x])) for x in edge] for y in range(oh)]
    bstart = np.cumsum([0] + [len(b) for b in border]).astype(np.int64)
    flat = [p for b in border for p in b]
    bx = np.array([p[0] for p in flat], np.int64)
    bcls = np.array([p[1] for p in flat], np.int64)
    cstart = np.cumsum([0] + [t.size for t in taps]).astype(np.int64)
    return (np.concatenate(kidx), np.concatenate(taps).astype(np.int64), cstart, row_cls, bstart, bx, bcls, xl, xr)


def pack_stem(w: np.ndarray, kidx: np.ndarray) -> np.ndarray:
    """w (O, C, kh, kw) -> (G, len(kidx), NV*VL): [g, t, v*VL + q] = w[(g*NV + v)*VL + q] at the reduction index
    kidx[t] = (c*kh + i)*kw + j, zeros past O."""
    o = w.shape[0]
    ng = blocks(blocks(o, VL), NV)
    full = np.zeros((ng * NV * VL, w[0].size), np.float32)
    full[:o] = w.reshape(o, -1)
    return np.ascontiguousarray(full[:, kidx].reshape(ng, NV * VL, kidx.size).transpose(0, 2, 1))


def stem_call(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, res: np.ndarray, out: np.ndarray,
              has_res: bool, geometry: tuple[int, int, int, int, int, int], lo: float, hi: float,
              parallel: bool) -> tuple[Callable[[], None], Callable[[], None] | None]:
    """(call, fill): :func:`stem_conv` (or its serial twin) on these arrays, x (N, C, H, W) C-contiguous, out and
    res (N, OB, OH, OW, VL); ``geometry`` (sh, sw, pt, pl, dh, dw); fill the bias refresh of
    :func:`.conv._bias_filler`."""
    sh, sw, pt, pl, dh, dw = geometry
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    oh, ow = out.shape[2:4]
    kidx, ctaps, cstart, row_cls, bstart, bx, bcls, xl, xr = stem_plan(c, h, wd, kh, kw, sh, sw, pt, pl, dh, dw,
                                                                       oh, ow)
    wcls = _packed(w, f"blocked_stem{(h, wd) + geometry}", functools.partial(pack_stem, kidx=kidx))
    bias, fill = _bias_filler(b, wcls.shape[0] * NV * VL)
    items = n * -(-oh // RB)
    starts = steal.even_runs(items, numba.get_num_threads() if parallel else 1)
    kernel = stem_conv if parallel else _stem_conv_serial
    call = bind(kernel, x, wcls, ctaps, cstart, row_cls, bstart, bx, bcls, xl, xr, sh, sw, pt, pl,
                bias, res, out, has_res, lo, hi, starts, steal.flags_for(items), kh, dh)
    return call, fill
