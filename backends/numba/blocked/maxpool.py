"""Max pooling on blocked values as vector code: each output pixel whose window lies inside the image is the
lane-wise max of its kh*kw input vectors (``llvm.maxnum`` on VL lanes, one load per tap); the border pixels
(windows over the padding, which max pooling treats as -inf) take the scalar path of the taps inside. The numba
lane loop of the plain kernel stayed scalar (ResNet's 3x3/2 pool of 64 channels at 112x112: 0.79 ms on one core)."""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .._layout import serial_twin
from ..codegen import VL, counted_loop, vector_intrinsic


@intrinsic
def _vmax_taps(typingctx, src, offs, k, dst):
    """dst[0:VL] = max over kk < k of src[offs[kk] : offs[kk] + VL] (float32 addresses in bytes, offs an int64
    table in elements, k >= 1)."""
    sig = types.void(types.uintp, types.uintp, types.intp, types.uintp)

    def codegen(context, builder, signature, args):
        src, offs, k, dst = args
        f32, i64 = ir.FloatType(), ir.IntType(64)
        vty = ir.VectorType(f32, VL)
        vptr = ir.PointerType(vty)
        sp, dp = builder.inttoptr(src, ir.PointerType(f32)), builder.inttoptr(dst, vptr)
        op = builder.inttoptr(offs, ir.PointerType(i64))
        vmax = vector_intrinsic(builder, "maxnum", 2)

        def tap(kk):
            return builder.load(builder.bitcast(builder.gep(sp, [builder.load(builder.gep(op, [kk]))]), vptr),
                                align=4)

        def step(kk, acc):
            return [builder.call(vmax, [acc[0], tap(kk)])]

        res, = counted_loop(builder, "vmax", 1, k, [tap(ir.Constant(i64, 0))], step, guard=True)
        builder.store(res, dp, align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(parallel=True, cache=True, fastmath=True)
def max_pool(x, out, offs, kh, kw, sh, sw, pt, pl, dh, dw):
    """out (N, CB, OH, OW, VL) = max pool of x (N, CB, H, W, VL); offs the kh*kw window offsets in elements
    (:func:`window_offsets`)."""
    nn, ncb, h, w, _ = x.shape
    _, _, oh, ow, _ = out.shape
    x_addr, o_addr, t_addr = x.ctypes.data, out.ctypes.data, offs.ctypes.data
    for t in prange(nn * ncb * oh):
        plane, y = t // oh, t % oh
        a0 = y * sh - pt
        rows_in = a0 >= 0 and a0 + (kh - 1) * dh < h
        for z in range(ow):
            b0 = z * sw - pl
            dst = ((t * ow) + z) * VL
            if rows_in and b0 >= 0 and b0 + (kw - 1) * dw < w:
                _vmax_taps(x_addr + ((plane * h + a0) * w + b0) * VL * 4, t_addr, kh * kw, o_addr + dst * 4)
                continue
            n, cb = plane // ncb, plane % ncb
            for q in range(VL):
                out[n, cb, y, z, q] = -np.inf
            for i in range(kh):
                a = a0 + i * dh
                if a < 0 or a >= h:
                    continue
                for j in range(kw):
                    b = b0 + j * dw
                    if b < 0 or b >= w:
                        continue
                    for q in range(VL):
                        out[n, cb, y, z, q] = max(out[n, cb, y, z, q], x[n, cb, a, b, q])


max_pool_serial = serial_twin(max_pool)


@functools.lru_cache(maxsize=64)
def window_offsets(kh: int, kw: int, dh: int, dw: int, w: int) -> np.ndarray:
    """The window's taps in elements from its first: (i*dh*w + j*dw)*VL."""
    return ((np.arange(kh)[:, None] * (dh * w) + np.arange(kw)[None, :] * dw) * VL).ravel().astype(np.int64)
