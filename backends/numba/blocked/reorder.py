"""numba kernels of the reorders between NCHW and the blocked layout, and of the pools on blocked values."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from engine.ops.blocked import blocked_pool_p, blocked_scale_shift_p

from .._layout import bind, for_reuse, serial_twin
from ..codegen import counted_loop
from ..gemm import VL
from ..table import backend
from .maxpool import max_pool, max_pool_serial, window_offsets

# Below SERIAL_ELEMENTS a kernel runs its loop without threads: a parallel launch costs more than it saves (and
# much more when other processes hold the cores: 0.42 vs 0.15 ms for a 125k-float pass on the loaded 2-core VM).
SERIAL_ELEMENTS = 1 << 18


def _pick(parallel, serial, size: int):
    return serial if size <= SERIAL_ELEMENTS else parallel


@njit(parallel=True, cache=True)
def _to_blocked(x, out):
    nn, c, h, w = x.shape
    ncb, nl = out.shape[1], out.shape[4]
    for t in prange(nn * ncb * h):
        n, cb, y = t // (ncb * h), (t // h) % ncb, t % h
        for q in range(nl):
            k = cb * nl + q
            if k < c:
                row = x[n, k, y]
                for z in range(w):
                    out[n, cb, y, z, q] = row[z]
            else:
                for z in range(w):
                    out[n, cb, y, z, q] = 0.0


@njit(parallel=True, cache=True)
def _from_blocked(x, out):
    """out (N, C, H, W) = x (N, CB, H, W, VL), both C-contiguous, with one prange item per (image, channel block),
    each writing its channels' whole planes: items of one row of one channel did too little work each on the
    deep layers' small planes (one core, batch 32, ms, per row vs per block: 512 channels at 4x4 1.01 vs 0.15, 256
    at 8x8 1.02 vs 0.33, 128 at 16x16 1.33 vs 0.44, 64 at 32x32 1.95 vs 1.80)."""
    nn, c, h, w = out.shape
    ncb, nl = x.shape[1], x.shape[4]
    hw = h * w
    xf = x.reshape(nn, ncb, hw * nl)
    of = out.reshape(nn, c, hw)
    for t in prange(nn * ncb):
        n, cb = t // ncb, t % ncb
        src = xf[n, cb]
        for q in range(min(nl, c - cb * nl)):
            dst = of[n, cb * nl + q]
            for p in range(hw):
                dst[p] = src[p * nl + q]


_to_blocked_serial, _from_blocked_serial = serial_twin(_to_blocked), serial_twin(_from_blocked)


@backend.register("to_blocked")
def to_blocked(x: np.ndarray, out: np.ndarray, block: int) -> None:
    _pick(_to_blocked, _to_blocked_serial, out.size)(x, out)


@njit(cache=True)
def _pixel_channels(x, out):
    """out (N, C) = the first C lanes of each image's blocks of x (N, CB*VL): one pixel per image (after a global
    pool, before the classifier), whose channels are already in order."""
    for n in range(out.shape[0]):
        for k in range(out.shape[1]):
            out[n, k] = x[n, k]


def _from_blocked_call(x: np.ndarray, out: np.ndarray, channels: int) -> Callable[[], None] | None:
    """from_blocked(x, out) as one call into its compiled loop, for C-contiguous operands; else None."""
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        return None
    n, c, h, w = out.shape
    if h * w == 1:
        return bind(_pixel_channels, x.reshape(n, -1), out.reshape(n, c))
    return bind(_pick(_from_blocked, _from_blocked_serial, x.size), x, out)


@backend.register("from_blocked")
def from_blocked(x: np.ndarray, out: np.ndarray, channels: int) -> None:
    dst = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
    _from_blocked_call(np.ascontiguousarray(x), dst, channels)()
    if dst is not out:
        out[...] = dst


# in a compiled graph the reorder before the classifier and the global pool call their compiled loops directly: the
# Python around them, run once per call at the end of a network whose weights have pushed the interpreter's code out
# of the caches, cost 10-20 us each there (MobileNetV2 b1; 2 us when hot)
from_blocked.specialize = for_reuse(_from_blocked_call)


@njit(parallel=True, cache=True, fastmath=True)
def _max_pool(x, out, kh, kw, sh, sw, pt, pl, dh, dw):
    nn, ncb, h, w, nl = x.shape
    _, _, oh, ow, _ = out.shape
    for t in prange(nn * ncb * oh):
        n, cb, y = t // (ncb * oh), (t // oh) % ncb, t % oh
        acc = np.empty(nl, x.dtype)
        for z in range(ow):
            for q in range(nl):
                acc[q] = -np.inf
            for i in range(kh):
                a = y * sh - pt + i * dh
                if a < 0 or a >= h:
                    continue
                for j in range(kw):
                    b = z * sw - pl + j * dw
                    if b < 0 or b >= w:
                        continue
                    src = x[n, cb, a, b]
                    for q in range(nl):
                        acc[q] = max(acc[q], src[q])
            dst = out[n, cb, y, z]
            for q in range(nl):
                dst[q] = acc[q]


@njit(parallel=True, cache=True, fastmath=True)
def _avg_pool(x, out, kh, kw, sh, sw, scale):
    """Unpadded windows that fit: out = scale * the window sum."""
    nn, ncb, h, w, nl = x.shape
    _, _, oh, ow, _ = out.shape
    for t in prange(nn * ncb * oh):
        n, cb, y = t // (ncb * oh), (t // oh) % ncb, t % oh
        acc = np.empty(nl, x.dtype)
        for z in range(ow):
            for q in range(nl):
                acc[q] = 0.0
            for i in range(kh):
                for j in range(kw):
                    src = x[n, cb, y * sh + i, z * sw + j]
                    for q in range(nl):
                        acc[q] += src[q]
            dst = out[n, cb, y, z]
            for q in range(nl):
                dst[q] = acc[q] * scale


@intrinsic
def _pixel_mean(typingctx, src, npix, dst, scale):
    """The VL floats at ``dst`` = ``scale`` x the sum of the ``npix`` VL-float vectors from ``src`` (addresses),
    summed in float64: numba's own loop kept its lanes' sums in memory (it cannot tell them apart from x), 14 us
    for MobileNetV2's 1280x7x7 pool."""
    sig = types.void(types.intp, types.intp, types.intp, types.float64)

    def codegen(context, builder, signature, args):
        s_addr, n, d_addr, sc = args
        vty, dty = ir.VectorType(ir.FloatType(), VL), ir.VectorType(ir.DoubleType(), VL)
        base = builder.inttoptr(s_addr, vty.as_pointer())

        def body(i, acc):
            v = builder.load(builder.gep(base, [i]), align=4)
            return [builder.fadd(acc[0], builder.fpext(v, dty))]

        (acc,) = counted_loop(builder, "pixel_mean", 0, n, [ir.Constant(dty, [0.0] * VL)], body, guard=True)
        scv = builder.insert_element(ir.Constant(dty, ir.Undefined), sc, ir.Constant(ir.IntType(32), 0))
        scv = builder.shuffle_vector(scv, scv, ir.Constant(ir.VectorType(ir.IntType(32), VL), [0] * VL))
        builder.store(builder.fptrunc(builder.fmul(acc, scv), vty), builder.inttoptr(d_addr, vty.as_pointer()),
                      align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(parallel=True, cache=True)
def _global_avg(x, out):
    """out[n, cb, 0, 0] = the mean of x[n, cb] over its pixels (x C-contiguous with VL lanes)."""
    nn, ncb, h, w, _ = x.shape
    for t in prange(nn * ncb):
        n, cb = t // ncb, t % ncb
        _pixel_mean(x[n, cb].ctypes.data, h * w, out[n, cb].ctypes.data, 1.0 / (h * w))


_max_pool_serial, _avg_pool_serial = serial_twin(_max_pool), serial_twin(_avg_pool)
_global_avg_serial = serial_twin(_global_avg)


def _pool_call(x: np.ndarray, out: np.ndarray, op: str, op_attrs: tuple) -> Callable[[], None] | None:
    """The blocked pool as one call into its compiled loop, for a C-contiguous input and the ops that have one
    (max, unpadded average whose windows fit, global average); else None (the decomposition runs)."""
    if not x.flags.c_contiguous:
        return None
    a = dict(op_attrs)
    if op == "max_pool2d":
        (kh, kw), (sh, sw), (pt, pl), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
        if x.shape[4] == VL and x.dtype == out.dtype == np.float32 and out.flags.c_contiguous:
            return bind(_pick(max_pool, max_pool_serial, x.size), x, out,
                        window_offsets(kh, kw, dh, dw, x.shape[3]), kh, kw, sh, sw, pt, pl, dh, dw)
        return bind(_pick(_max_pool, _max_pool_serial, x.size), x, out, kh, kw, sh, sw, pt, pl, dh, dw)
    if op == "adaptive_avg_pool2d" and tuple(a["output_size"]) == (1, 1):
        if x.shape[4] == VL and x.dtype == out.dtype == np.float32 and out.flags.c_contiguous:
            return bind(_pick(_global_avg, _global_avg_serial, x.size), x, out)
        return None
    if op == "avg_pool2d" and tuple(a["padding"]) == (0, 0):
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        n, cb, oh, ow, _ = out.shape
        if (oh - 1) * sh + kh <= x.shape[2] and (ow - 1) * sw + kw <= x.shape[3]:  # every window inside
            return bind(_pick(_avg_pool, _avg_pool_serial, x.size), x, out, kh, kw, sh, sw,
                        1.0 / (a["divisor"] or kh * kw))
    return None


@backend.register("blocked_pool")
def blocked_pool(x: np.ndarray, out: np.ndarray, op: str, op_attrs: tuple, channels: int) -> None:
    call = _pool_call(np.ascontiguousarray(x), out, op, op_attrs)
    if call is not None:
        call()
        return
    blocked_pool_p.decomposed_kernel(backend.kernel)(x, out=out, op=op, op_attrs=op_attrs, channels=channels)


blocked_pool.specialize = for_reuse(lambda x, out, op, op_attrs, channels: _pool_call(x, out, op, op_attrs))


@njit(parallel=True, cache=True, fastmath=True)
def _scale_shift(x, scale, shift, out, lo, hi):
    """out = clamp(x * scale + shift, lo, hi) per lane, for flat (N*CB, P*VL) arrays and (CB, VL) scale / shift."""
    rows, size = x.shape
    ncb, nl = scale.shape
    lo32, hi32 = np.float32(lo), np.float32(hi)
    for t in prange(rows):
        s, b = scale[t % ncb], shift[t % ncb]
        src, dst = x[t], out[t]
        for p in range(0, size, nl):
            for q in range(nl):
                dst[p + q] = min(max(src[p + q] * s[q] + b[q], lo32), hi32)


_scale_shift_serial = serial_twin(_scale_shift)


@backend.register("blocked_scale_shift")
def blocked_scale_shift(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, out: np.ndarray, activation: str,
                        act_attrs: tuple = ()) -> None:
    a = dict(act_attrs)
    if activation in ("none", "relu", "clamp") and x.flags.c_contiguous and x.dtype == np.float32:
        lo = 0.0 if activation == "relu" else (a.get("min") if a.get("min") is not None else -np.inf)
        hi = a.get("max") if activation == "clamp" and a.get("max") is not None else np.inf
        n, cb, h, w, nl = x.shape
        run = _pick(_scale_shift, _scale_shift_serial, x.size)
        run(x.reshape(n * cb, h * w * nl), scale.reshape(cb, nl), shift.reshape(cb, nl),
            out.reshape(n * cb, h * w * nl), lo if activation != "none" else -np.inf, hi)
        return
    blocked_scale_shift_p.decomposed_kernel(backend.kernel)(x, scale, shift, out=out, activation=activation,
                                                            act_attrs=act_attrs)
