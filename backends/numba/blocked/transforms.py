"""The Winograd transforms of :mod:`.winograd` as vector code over the VL lanes of one channel block (llvmlite, as
:mod:`.tile`: the transforms read and write scratch the compiler cannot prove apart from the input, so a numba
loop over the lanes stays scalar). Addresses in bytes, strides in elements. For F(m x m, 3x3), a = m + 2:

- ``input_tile(src, rs, dst, xs)``: V[a*i + j] = (B^T d B)[i, j] for the a x a patch of vectors d[i][j] at
  src + (i*rs + j*VL), V[xi] stored at dst + xi*xs.
- ``output_tile(m, ms, bias, dst, drs, nrows, ncols, res, has_res, lo, hi)``: Y = A^T M A for the a x a vectors
  M[xi] at m + xi*ms, then clamp(Y + bias + residual, lo, hi) stored at dst + (r*drs + c*VL) for r < nrows,
  c < ncols (the residual read at the same offsets from res).
"""

from __future__ import annotations

from fractions import Fraction

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..codegen import VL, join, splat, vector_intrinsic
from .toom import toom_cook

BT2 = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
AT2 = ((1, 1, 1, 0), (0, 1, -1, -1))
# F(4x4) on the points 0, +-1, 1/2, -2 (not the classic +-2: see .toom), so its G differs from the NCHW path's G4
F4_POINTS = (0, 1, -1, Fraction(1, 2), -2)
AT4, G4, BT4 = toom_cook(F4_POINTS, 4)


class _Vec:
    """The vector type and helpers of one codegen."""

    def __init__(self, builder):
        self.b = builder
        self.f32, self.i64, self.i32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)
        self.vty = ir.VectorType(self.f32, VL)
        self.vptr = ir.PointerType(self.vty)
        self.fptr = ir.PointerType(self.f32)
        self.zero = ir.Constant(self.vty, [0.0] * VL)
        self.fma = vector_intrinsic(builder, "fma", 3)

    def ptr(self, addr):
        return self.b.inttoptr(addr, self.fptr)

    def at(self, base, off):
        return self.b.bitcast(self.b.gep(base, [off]), self.vptr)

    def load(self, base, off):
        return self.b.load(self.at(base, off), align=4)

    def off(self, stride, k: int, extra: int = 0):
        return self.b.add(self.b.mul(stride, ir.Constant(self.i64, k)), ir.Constant(self.i64, extra))

    def splat(self, s):
        return splat(self.b, s)

    def combine(self, coeffs, vecs):
        """sum_k coeffs[k] * vecs[k]: +-1 as adds and subtracts, other coefficients as one multiply or fused
        multiply-add each."""
        acc = None
        for cf, v in zip(coeffs, vecs):
            if cf == 0:
                continue
            if abs(cf) != 1:
                c = ir.Constant(self.vty, [float(cf)] * VL)
                acc = self.b.fmul(v, c) if acc is None else self.b.call(self.fma, [v, c, acc])
            elif acc is None:
                acc = v if cf > 0 else self.b.fsub(self.zero, v)
            else:
                acc = self.b.fadd(acc, v) if cf > 0 else self.b.fsub(acc, v)
        return acc

    def sandwich(self, left, d):
        """left @ d @ left^T over a grid of vectors d (rows of ``left`` combine rows, then columns)."""
        rows = [[self.combine(cf, [d[i][j] for i in range(len(d))]) for j in range(len(d[0]))] for cf in left]
        return [[self.combine(cf, r) for cf in left] for r in rows]

    def intr(self, name: str):
        return vector_intrinsic(self.b, name, 2)


def make_transforms(bt: tuple, at: tuple):
    """(input_tile, output_tile) for the transform matrices B^T (a x a) and A^T (m x a)."""
    a, m = len(bt), len(at)

    @intrinsic
    def input_tile(typingctx, src, rs, dst, xs):
        sig = types.void(types.uintp, types.intp, types.uintp, types.intp)

        def codegen(context, builder, signature, args):
            src, rs, dst, xs = args
            v = _Vec(builder)
            sp, dp = v.ptr(src), v.ptr(dst)
            d = [[v.load(sp, v.off(rs, i, j * VL)) for j in range(a)] for i in range(a)]
            y = v.sandwich(bt, d)
            for i in range(a):
                for j in range(a):
                    builder.store(y[i][j], v.at(dp, v.off(xs, a * i + j)), align=4)
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def output_tile(typingctx, mm, ms, bias, dst, drs, nrows, ncols, res, has_res, lo, hi):
        sig = types.void(types.uintp, types.intp, types.uintp, types.uintp, types.intp, types.intp, types.intp,
                         types.uintp, types.boolean, types.float32, types.float32)

        def codegen(context, builder, signature, args):
            mm, ms, bias, dst, drs, nrows, ncols, res, has_res, lo, hi = args
            v = _Vec(builder)
            mp, dp, rp = v.ptr(mm), v.ptr(dst), v.ptr(res)
            y = v.sandwich(at, [[v.load(mp, v.off(ms, a * i + j)) for j in range(a)] for i in range(a)])
            bv = v.load(v.ptr(bias), ir.Constant(v.i64, 0))
            lov, hiv = v.splat(lo), v.splat(hi)
            vmax, vmin = v.intr("maxnum"), v.intr("minnum")
            for r in range(m):
                for c in range(m):
                    ok = builder.and_(builder.icmp_signed(">", nrows, ir.Constant(v.i64, r)),
                                      builder.icmp_signed(">", ncols, ir.Constant(v.i64, c)))
                    with builder.if_then(ok):
                        off = v.off(drs, r, c * VL)
                        e = builder.fadd(y[r][c], bv)
                        with builder.if_else(has_res) as (then, otherwise):
                            with then:
                                e_res = builder.fadd(e, v.load(rp, off))
                                blk_res = builder.block
                            with otherwise:
                                blk_no = builder.block
                        phi, = join(builder, [e_res], blk_res, [e], blk_no)
                        builder.store(builder.call(vmin, [builder.call(vmax, [phi, lov]), hiv]), v.at(dp, off),
                                      align=4)
            return context.get_dummy_value()

        return sig, codegen

    return input_tile, output_tile


input_tile2, output_tile2 = make_transforms(BT2, AT2)
input_tile4, output_tile4 = make_transforms(BT4, AT4)


@njit(cache=True, inline="always")
def input_tile_m(m, src, rs, dst, xs):
    """``input_tile`` of F(m x m, 3x3) for the output tile m (2 or 4)."""
    if m == 2:
        input_tile2(src, rs, dst, xs)
    else:
        input_tile4(src, rs, dst, xs)
