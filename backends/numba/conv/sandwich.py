"""Winograd transforms as vector code: ``Y = L D L^T`` over a grid of VL-lane float32 vectors, one LLVM vector op per
term (llvmlite, through the blocked kernels' vector helpers), for transforms whose every lane is its own channel:
the weight gradient's (:mod:`.nchwc_wgrad`) and the kernel transform U = G w G^T (:mod:`.winograd.math`)."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..blocked.transforms import _Vec
from ..codegen import VL


def _lane_major(builder: ir.IRBuilder, vecs: list) -> list:
    """The k VL-vectors vecs[i] rearranged so that output vector j holds values j*VL .. j*VL + VL - 1 of the
    lane-major order (lane l of vecs[i] at l*k + i): all joined into one wide vector by a tree of shuffles, then k
    shuffles of VL lanes out of it."""
    k = len(vecs)
    parts, width = list(vecs), VL
    while len(parts) > 1:
        if len(parts) % 2:
            parts.append(ir.Constant(parts[0].type, None))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), 2 * width), list(range(2 * width)))
        parts = [builder.shuffle_vector(a, b, mask) for a, b in zip(parts[::2], parts[1::2])]
        width *= 2
    wide, out = parts[0], []
    for j in range(k):
        idx = [(f % k) * VL + f // k for f in range(j * VL, (j + 1) * VL)]
        out.append(builder.shuffle_vector(wide, ir.Constant(wide.type, None),
                                          ir.Constant(ir.VectorType(ir.IntType(32), VL), idx)))
    return out


class _Vec64(_Vec):
    """:class:`_Vec`'s combine and sandwich on VL-lane float64 vectors (loads and stores stay float32)."""

    def __init__(self, builder: ir.IRBuilder):
        super().__init__(builder)
        self.vty = ir.VectorType(ir.DoubleType(), VL)
        self.zero = ir.Constant(self.vty, [0.0] * VL)
        mod, name = builder.module, f"llvm.fma.v{VL}f64"
        self.fma = mod.globals.get(name) or ir.Function(mod, ir.FunctionType(self.vty, [self.vty] * 3), name=name)


def make_sandwich(left: np.ndarray, lane_major: bool = False, wide: bool = False):
    """An intrinsic ``f(src, rs, cs, dst, ds)``: Y = L D L^T for L = ``left`` (p x r) and the r x r grid of
    VL-vectors D[i][j] at src + i*rs + j*cs elements, Y[p][q] stored at dst + (p*len(left) + q)*ds (float32,
    addresses in bytes): one vector op per combination, like the blocked forward's input and output tiles.
    ``lane_major``: instead, lane l of Y[p][q] goes to dst + (l*p + p)*p + q (ds unused): each lane's p*p values
    contiguous (a 3x3 weight gradient per lane's channel, as (O, C, 3, 3) holds it), the vectors transposed in
    registers by shuffles and stored as p*p whole vectors. ``wide``: the arithmetic in float64, one rounding at
    the store (U = G w G^T: its entries such as 1/3 and 16/15 in float32 doubled U's error)."""
    left = tuple(tuple(float(v) for v in row) for row in np.asarray(left))
    n, r = len(left), len(left[0])

    @intrinsic
    def sandwich(typingctx, src, rs, cs, dst, ds):
        sig = types.void(types.uintp, types.intp, types.intp, types.uintp, types.intp)

        def codegen(context, builder, signature, args):
            src, rs, cs, dst, ds = args
            v = _Vec64(builder) if wide else _Vec(builder)
            sp, dp = v.ptr(src), v.ptr(dst)
            d = [[v.load(sp, builder.add(v.off(rs, i), v.off(cs, j))) for j in range(r)] for i in range(r)]
            if wide:
                d = [[builder.fpext(e, v.vty) for e in row] for row in d]
            y = v.sandwich(left, d)
            if wide:
                f32 = ir.VectorType(ir.FloatType(), VL)
                y = [[builder.fptrunc(e, f32) for e in row] for row in y]
            if lane_major:
                for j, vec in enumerate(_lane_major(builder, [y[p][q] for p in range(n) for q in range(n)])):
                    builder.store(vec, v.at(dp, ir.Constant(v.i64, j * VL)), align=4)
                return context.get_dummy_value()
            for p in range(n):
                for q in range(n):
                    builder.store(y[p][q], v.at(dp, v.off(ds, n * p + q)), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return sandwich
