"""``blocked_prologue_conv2d`` on the numba backend: the 1x1 blocked convolution of :mod:`.conv` whose input is
``clamp(x * scale + shift, lo, hi)`` (an inference BatchNorm + ReLU that no convolution absorbs).

Each prange item (image, group of pixel tiles, range of output-block groups) first writes the transformed input of
its pixels, every input block, into a per-thread scratch laid out like a small blocked image (Cb, pixels, VL); that
scratch (at most :data:`SCRATCH_BYTES`) stays in cache while the register tile of :mod:`.conv` runs every output
block group and K block over it, so the tile's inner loop is the plain one (one broadcast load per pixel and
reduction step), each input element is transformed once per item, and the normalized input never goes to memory.
With ``pool`` 2 the scratch holds the 2x2 means of the transformed input (DenseNet's transitions: the 1x1
convolution then runs on a quarter of the pixels). Other shapes (kernel > 1, stride, padding) run the
decomposition.
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
from engine.ops.blocked_prologue import blocked_prologue_conv2d_p, split_prologue
from engine.ops.fused import split_inputs

from .._layout import bind, for_reuse, in_order, serial_twin
from ..codegen import VL, counted_loop, splat, vector_intrinsic
from ..conv.workspace import current_workspace
from ..table import backend
from .conv import (
    GROUP,
    KC,
    MR,
    NV,
    SERIAL_MACS,
    _bias_filler,
    _packed,
    clamp_bounds,
    group_tiles,
    pack_dense,
)

# the per-thread scratch of transformed input: its pixel tiles shrink until (input blocks x pixels x VL) fits here,
# a quarter of Zen 4's 1 MiB L2 (the weight panel of a K block takes another 64 KiB)
SCRATCH_BYTES = 256 << 10
ITEMS_PER_THREAD = 4  # prange items per thread below which an item covers only some output-block groups


def _make_scale_shift(pool: int):
    """An intrinsic ``f(src, row, dst, nvec, scale, shift, lo, hi)``: for ``nvec`` VL-float vectors at byte address
    dst, f(v) = min(max(v * scale + shift, lo), hi) of the vectors at src (pool 1), or the mean of f over the 2x2
    window of vectors at src + 2i and src + row + 2i (pool 2, ``row`` the bytes between two input rows); scale /
    shift one VL-float vector each. Written as vector code: numba's loop over the lanes compiles to scalar code."""

    @intrinsic
    def scale_shift(typingctx, src, row, dst, nvec, scale, shift, lo, hi):
        sig = types.void(types.uintp, types.intp, types.uintp, types.intp, types.uintp, types.uintp, types.float32,
                         types.float32)

        def codegen(context, builder, signature, args):
            src, row, dst, nvec, sp, tp, lo, hi = args
            f32, i64 = ir.FloatType(), ir.IntType(64)
            vty = ir.VectorType(f32, VL)
            vptr = ir.PointerType(vty)

            fma, vmax, vmin = (vector_intrinsic(builder, nm, k) for nm, k in (("fma", 3), ("maxnum", 2), ("minnum", 2)))

            sv = builder.load(builder.inttoptr(sp, vptr), align=4)
            tv = builder.load(builder.inttoptr(tp, vptr), align=4)
            lov, hiv = splat(builder, lo), splat(builder, hi)
            srcp, dstp = builder.inttoptr(src, vptr), builder.inttoptr(dst, vptr)
            belowp = builder.inttoptr(builder.add(src, row), vptr)

            def f(p, at):
                v = builder.load(builder.gep(p, [at]), align=4)
                return builder.call(vmin, [builder.call(vmax, [builder.call(fma, [v, sv, tv]), lov]), hiv])

            def step(i, _):
                if pool == 1:
                    y = f(srcp, i)
                else:
                    j = builder.mul(i, ir.Constant(i64, 2))
                    j1 = builder.add(j, ir.Constant(i64, 1))
                    y = builder.fadd(builder.fadd(f(srcp, j), f(srcp, j1)), builder.fadd(f(belowp, j), f(belowp, j1)))
                    y = builder.fmul(y, splat(builder, ir.Constant(f32, 0.25)))
                builder.store(y, builder.gep(dstp, [i]), align=4)
                return []

            counted_loop(builder, "ss", 0, nvec, [], step, guard=True)
            return context.get_dummy_value()

        return sig, codegen

    return scale_shift


_scale_shift1, _scale_shift2 = _make_scale_shift(1), _make_scale_shift(2)


@njit(cache=True, inline="always")
def _transform(x, n, scale, shift, plo, phi, xs, ps, p0, p1, ptiles, pool, iw, ow):
    """xs[cb, p - p0, :] = clamp(x[n, cb, p, :] * scale[cb] + shift[cb], plo, phi) for the output pixels p in
    [p0, p1) (pool 2: the mean of that over the pixel's 2x2 input window, ``iw`` / ``ow`` the input / output
    widths), zeros up to ptiles*MR pixels (the last tile's rows past the image): the scratch image (Cb, ps, VL)."""
    npix = x.shape[1] // scale.shape[0]  # input pixels
    x_addr, xs_addr = x[n].ctypes.data, xs.ctypes.data
    s_addr, t_addr = scale.ctypes.data, shift.ctypes.data
    for cb in range(scale.shape[0] // VL):
        sa, ta = s_addr + cb * VL * 4, t_addr + cb * VL * 4
        dst = xs_addr + cb * ps * VL * 4
        if pool == 1:
            _scale_shift1(x_addr + (cb * npix + p0) * VL * 4, 0, dst, p1 - p0, sa, ta, plo, phi)
        else:
            p = p0
            while p < p1:  # one run of output pixels per output row
                oy, ox = p // ow, p % ow
                run = min(p1 - p, ow - ox)
                src = x_addr + (cb * npix + 2 * oy * iw + 2 * ox) * VL * 4
                _scale_shift2(src, iw * VL * 4, dst + (p - p0) * VL * 4, run, sa, ta, plo, phi)
                p += run
        for e in range((cb * ps + p1 - p0) * VL, (cb * ps + ptiles * MR) * VL):
            xs[e] = 0.0


@njit(parallel=True, cache=True)
def _conv_prologue(x, scale, shift, plo, phi, rows, taps, wpk, bias, res, out, has_res, lo, hi, sbuf, xbuf, group,
                   gsplit, kc_max, pool, iw):
    """out[n, ob, p, :] = clamp(sum_k A(p, k) B(k, ob) + bias + res) as :func:`.conv._conv_dense`, where A is read
    from xbuf[thread], (Cb, group*MR, VL): the item's pixels transformed by :func:`_transform`; x (N, Cb*P*VL) the
    blocked input (pool 2: of width ``iw``, 2x2-averaged after the prologue into out's ow-wide pixels), rows / taps
    the offset tables of that scratch (rows[r] = r*VL, taps over (input block, lane) with a block stride of
    group*MR*VL). prange items are (image, group of pixel tiles, range of output-block groups): each transforms
    its pixels once for ``ng / gsplit`` output-block groups."""
    nn, ob, npix, _ = out.shape
    ow = npix if pool == 1 else iw // 2
    ng = wpk.shape[0]
    k = taps.shape[0]
    nrt = (npix + MR - 1) // MR
    nchunk = (nrt + group - 1) // group
    gper = (ng + gsplit - 1) // gsplit
    ps = group * MR
    lo32, hi32 = np.float32(lo), np.float32(hi)
    plo32, phi32 = np.float32(plo), np.float32(phi)
    r_addr, t_addr = rows.ctypes.data, taps.ctypes.data
    for t in prange(nn * nchunk * gsplit):
        n = t // (nchunk * gsplit)
        ch = (t // gsplit) % nchunk
        gs = t % gsplit
        tid = numba.get_thread_id()
        rt0, rt1 = ch * group, min(nrt, (ch + 1) * group)
        xs = xbuf[tid]
        _transform(x, n, scale, shift, plo32, phi32, xs, ps, rt0 * MR, min(npix, rt1 * MR), rt1 - rt0, pool, iw,
                   ow)
        s = sbuf[tid]
        sc, sr = s[:NV * MR * VL], s[NV * MR * VL:]
        for g in range(gs * gper, min(ng, (gs + 1) * gper)):
            group_tiles(xs.ctypes.data, r_addr, t_addr, wpk, g, k, kc_max, rt0 * MR, rt1 * MR, npix, rt0 * MR, out, res,
                        n, has_res, bias, lo32, hi32, sc, sr)


_conv_prologue_serial = serial_twin(_conv_prologue)


def _split(n: int, ntiles: int, ng: int, ncb: int) -> tuple[int, int]:
    """(pixel tiles per prange item, ranges of output-block groups): each item's scratch fits
    :data:`SCRATCH_BYTES`, and every item covers all output-block groups (its pixels transformed once) unless
    that leaves fewer than :data:`ITEMS_PER_THREAD` items per thread."""
    group = max(1, min(GROUP, SCRATCH_BYTES // (ncb * MR * VL * 4)))
    want = ITEMS_PER_THREAD * numba.config.NUMBA_NUM_THREADS
    group = max(1, min(group, ntiles * n // want))  # smaller pixel groups before splitting the output blocks
    items = n * blocks(ntiles, group)
    return group, min(ng, blocks(want, items))


def _prologue_call(ins: tuple, out: np.ndarray, prologue: str, prologue_attrs: tuple, stride, padding, dilation,
                   groups: int, has_bias: bool, has_residual: bool, activation: str, act_attrs: tuple = (),
                   pool: int = 1) -> Callable[[], None] | None:
    """The fused kernel on these arrays as a zero-argument call (packed weights, padded bias, offset tables and
    scratch chosen once), or None where it does not apply (the decomposition runs)."""
    scale, shift, conv_ins = split_prologue(ins)
    x, w, b, r = split_inputs(conv_ins, has_bias, has_residual)
    one = w.shape[2:] == (1, 1) and groups == 1 and tuple(stride) == (1, 1) and \
        all(p == 0 for pair in padding for p in pair)
    if not one or out.dtype != np.float32 or x.shape[4] != VL or not x.flags.c_contiguous or \
            not out.flags.c_contiguous or not scale.flags.c_contiguous or not shift.flags.c_contiguous:
        return None
    n, ncb, _, iw, _ = x.shape
    ob, oh, ow = out.shape[1:4]
    steps: list[Callable[[], None]] = []
    res = out if r is None else r
    if not res.flags.c_contiguous:  # copied on every call: the call must see the residual's current values
        res = np.empty(r.shape, r.dtype)
        steps.append(functools.partial(np.copyto, res, r))
    out4, res4 = out.reshape(n, ob, oh * ow, VL), res.reshape(n, ob, oh * ow, VL)
    ng = blocks(ob, NV)
    bias, fill = _bias_filler(b, ng * NV * VL)
    if fill is not None:
        steps.insert(0, fill)
    wpk = _packed(w, "blocked_dense", pack_dense)
    group, gsplit = _split(n, blocks(oh * ow, MR), ng, ncb)
    ps = group * MR
    rows = np.arange(ps, dtype=np.int64) * VL
    lanes = (np.arange(ncb)[:, None] * (ps * VL) + np.arange(VL)[None, :]).ravel()
    taps = lanes[np.arange(ncb * VL) < w.shape[1]].astype(np.int64)  # the real input channels, as pack_dense
    ws = current_workspace()
    sbuf = ws.per_thread("blocked_tile", 2 * NV * MR * VL)
    xbuf = ws.per_thread("blocked_prologue", ncb * ps * VL)
    lo, hi = clamp_bounds(activation, act_attrs)
    plo, phi = clamp_bounds(prologue, prologue_attrs)
    kernel = _conv_prologue if n * oh * ow * ob * VL * taps.size >= SERIAL_MACS else _conv_prologue_serial
    steps.append(bind(kernel, x.reshape(n, -1), scale.reshape(-1), shift.reshape(-1), plo, phi, rows,
                      taps, wpk, bias, res4, out4, r is not None, lo, hi, sbuf, xbuf, group, gsplit, KC,
                      pool, iw))
    if activation not in ("none", "relu", "clamp"):
        steps.append(functools.partial(backend.kernel(activation), out, out=out, **dict(act_attrs)))
    return in_order(steps)


@backend.register("blocked_prologue_conv2d")
def blocked_prologue_conv2d(*ins: np.ndarray, out: np.ndarray, prologue: str, prologue_attrs: tuple = (),
                            **attrs) -> None:
    call = _prologue_call(ins, out, prologue, prologue_attrs, **attrs)
    if call is None:
        blocked_prologue_conv2d_p.decomposed_kernel(backend.kernel)(*ins, out=out, prologue=prologue,
                                                                   prologue_attrs=prologue_attrs, **attrs)
        return
    call()


def _specialize(*ins: np.ndarray, out: np.ndarray, prologue: str, prologue_attrs: tuple = (),
                **attrs) -> Callable[[], None] | None:
    return _prologue_call(ins, out, prologue, prologue_attrs, **attrs)


blocked_prologue_conv2d.specialize = for_reuse(_specialize)
blocked_prologue_conv2d.algorithm = lambda specs, **attrs: "blocked-direct-prologue"
