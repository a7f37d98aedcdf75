"""The Winograd F(2x2, 3x3) transforms of :mod:`.winograd` as vector code over the VL lanes of one channel block
(llvmlite, as :mod:`.tile`: the transforms read and write scratch the compiler cannot prove apart from the input,
so a numba loop over the lanes stays scalar). Addresses in bytes, strides in elements.

- :func:`input_tile` ``(src, rs, dst, xs)``: V[4i + j] = (B^T d B)[i, j] for the 4x4 patch of vectors d[i][j] at
  src + (i*rs + j*VL), V[xi] stored at dst + xi*xs.
- :func:`output_tile` ``(m, ms, bias, dst, drs, nvalid_rows, nvalid_cols, res, has_res, lo, hi)``:
  Y = A^T M A for the 4x4 vectors M[xi] at m + xi*ms, then clamp(Y + bias + residual, lo, hi) stored at
  dst + (a*drs + b*VL) for a < nvalid_rows, b < nvalid_cols (the residual read at the same offsets from res).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..gemm import VL

BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def _combine(builder, coeffs, vecs, zero):
    """sum_k coeffs[k] * vecs[k] for coefficients in {-1, 0, 1}: adds and subtracts only."""
    acc = None
    for cf, v in zip(coeffs, vecs):
        if cf == 0:
            continue
        if acc is None:
            acc = v if cf == 1 else builder.fsub(zero, v)
        else:
            acc = builder.fadd(acc, v) if cf == 1 else builder.fsub(acc, v)
    return acc


def _sandwich(builder, left, d, zero):
    """left @ d @ left^T over a grid of vectors d (rows of ``left`` combine rows, then columns)."""
    rows = [[_combine(builder, cf, [d[i][j] for i in range(len(d))], zero) for j in range(len(d[0]))]
            for cf in left]
    return [[_combine(builder, cf, r, zero) for cf in left] for r in rows]


def _types(builder):
    f32, i64 = ir.FloatType(), ir.IntType(64)
    vty = ir.VectorType(f32, VL)
    return f32, i64, vty, ir.PointerType(vty), ir.Constant(vty, [0.0] * VL)


def _vec_at(builder, base, off, vptr):
    return builder.bitcast(builder.gep(base, [off]), vptr)


@intrinsic
def input_tile(typingctx, src, rs, dst, xs):
    sig = types.void(types.uintp, types.intp, types.uintp, types.intp)

    def codegen(context, builder, signature, args):
        src, rs, dst, xs = args
        f32, i64, vty, vptr, zero = _types(builder)
        sp, dp = builder.inttoptr(src, ir.PointerType(f32)), builder.inttoptr(dst, ir.PointerType(f32))
        d = [[builder.load(_vec_at(builder, sp, builder.add(builder.mul(rs, ir.Constant(i64, i)),
                                                            ir.Constant(i64, j * VL)), vptr), align=4)
              for j in range(4)] for i in range(4)]
        v = _sandwich(builder, BT, d, zero)
        for i in range(4):
            for j in range(4):
                builder.store(v[i][j], _vec_at(builder, dp, builder.mul(xs, ir.Constant(i64, 4 * i + j)), vptr),
                              align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def output_tile(typingctx, m, ms, bias, dst, drs, nrows, ncols, res, has_res, lo, hi):
    sig = types.void(types.uintp, types.intp, types.uintp, types.uintp, types.intp, types.intp, types.intp,
                     types.uintp, types.boolean, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        m, ms, bias, dst, drs, nrows, ncols, res, has_res, lo, hi = args
        f32, i64, vty, vptr, zero = _types(builder)
        fptr = ir.PointerType(f32)
        mp, dp, rp = (builder.inttoptr(a, fptr) for a in (m, dst, res))
        d = [[builder.load(_vec_at(builder, mp, builder.mul(ms, ir.Constant(i64, 4 * i + j)), vptr), align=4)
              for j in range(4)] for i in range(4)]
        y = _sandwich(builder, AT, d, zero)
        bv = builder.load(builder.bitcast(builder.inttoptr(bias, fptr), vptr), align=4)
        i32 = ir.IntType(32)
        splat = ir.Constant(ir.VectorType(i32, VL), [0] * VL)

        def bcast(s):
            sv = builder.insert_element(ir.Constant(vty, ir.Undefined), s, ir.Constant(i32, 0))
            return builder.shuffle_vector(sv, sv, splat)

        lov, hiv = bcast(lo), bcast(hi)
        mod = builder.module

        def intr(name: str):
            full = f"llvm.{name}.v{VL}f32"
            return mod.globals.get(full) or ir.Function(mod, ir.FunctionType(vty, [vty, vty]), name=full)

        vmax, vmin = intr("maxnum"), intr("minnum")
        for a in range(2):
            for b in range(2):
                ok = builder.and_(builder.icmp_signed(">", nrows, ir.Constant(i64, a)),
                                  builder.icmp_signed(">", ncols, ir.Constant(i64, b)))
                with builder.if_then(ok):
                    off = builder.add(builder.mul(drs, ir.Constant(i64, a)), ir.Constant(i64, b * VL))
                    e = builder.fadd(y[a][b], bv)
                    with builder.if_else(has_res) as (then, otherwise):
                        with then:
                            rv = builder.load(_vec_at(builder, rp, off, vptr), align=4)
                            e_res = builder.fadd(e, rv)
                            blk_res = builder.block
                        with otherwise:
                            blk_no = builder.block
                    phi = builder.phi(vty)
                    phi.add_incoming(e_res, blk_res)
                    phi.add_incoming(e, blk_no)
                    e = builder.call(vmin, [builder.call(vmax, [phi, lov]), hiv])
                    builder.store(e, _vec_at(builder, dp, off, vptr), align=4)
        return context.get_dummy_value()

    return sig, codegen
