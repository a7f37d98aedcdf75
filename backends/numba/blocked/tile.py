"""The register tile of the blocked convolution: MR output pixels x NV output-channel blocks of VL lanes, the
epilogue (bias, residual, clamp) applied while the accumulators are still in registers.

Layouts (all float32, addresses in bytes, offsets in elements):

- A (the input): A(r, kk) = a[rows[r] + taps[kk]] (depthwise: the VL-vector there): ``rows`` (MR int64) the
  offsets of the tile's output pixels' first taps in the padded blocked image, ``taps`` (k int64) the offsets of
  the reduction index (input block, kernel row, kernel column, input lane). One broadcast load per (r, kk).
- B (the packed weights): B[kk*bks + v*VL + q]: VL output lanes of block v at reduction index kk.
- C (the output, blocked): C[r*VL + v*ldv + q] (ldv: the distance of two output blocks, H*W*VL in place);
  residual the same layout at ``res``.

``first``: start from zero (else from C, the partial sums of an earlier K block); ``last``: add the bias vector
(``bias``, NV*VL floats) and, with ``has_res``, the residual, then clamp to [lo, hi] (ReLU: [0, inf), ReLU6:
[0, 6], none: (-inf, inf)) before the store.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..codegen import VL, counted_loop, splat, vector_intrinsic


def make_blocked_tile(mr: int, nv: int, depthwise: bool = False):
    """The mr x nv tile. ``depthwise``: A(r, kk) is the VL-lane vector at a[rows[r] + taps[kk]] (each lane its own
    channel) instead of a broadcast scalar, and nv must be 1: a depthwise layer's tile over mr output pixels of one
    channel block."""
    assert not depthwise or nv == 1

    @intrinsic
    def tile(typingctx, k, a, rows, taps, b, bks, c, ldv, res, bias, first, last, has_res, lo, hi):
        sig = types.void(types.intp, types.uintp, types.uintp, types.uintp, types.uintp, types.intp, types.uintp,
                         types.intp, types.uintp, types.uintp, types.boolean, types.boolean, types.boolean,
                         types.float32, types.float32)

        def codegen(context, builder, signature, args):
            k, a, rows, taps, b, bks, c, ldv, res, bias, first, last, has_res, lo, hi = args
            f32, i64 = ir.FloatType(), ir.IntType(64)
            fptr = ir.PointerType(f32)
            vty = ir.VectorType(f32, VL)
            vptr = ir.PointerType(vty)

            fma, vmax, vmin = (vector_intrinsic(builder, nm, k) for nm, k in (("fma", 3), ("maxnum", 2), ("minnum", 2)))
            ap, bp, cp, rp, biasp = (builder.inttoptr(v, fptr) for v in (a, b, c, res, bias))
            rt, kt = (builder.inttoptr(v, ir.PointerType(i64)) for v in (rows, taps))
            rowp = [builder.gep(ap, [builder.load(builder.gep(rt, [ir.Constant(i64, r)]))]) for r in range(mr)]
            zero = ir.Constant(vty, [0.0] * VL)

            def caddr(base, r, v):
                off = builder.add(ir.Constant(i64, r * VL), builder.mul(ldv, ir.Constant(i64, v)))
                return builder.bitcast(builder.gep(base, [off]), vptr)

            def step(kk, acc):
                brow = builder.gep(bp, [builder.mul(kk, bks)])
                bv = [builder.load(builder.bitcast(builder.gep(brow, [ir.Constant(i64, v * VL)]), vptr), align=4)
                      for v in range(nv)]
                ko = builder.load(builder.gep(kt, [kk]))
                new = []
                for r in range(mr):
                    src = builder.gep(rowp[r], [ko])
                    if depthwise:  # each lane its own channel
                        s = builder.load(builder.bitcast(src, vptr), align=4)
                    else:
                        s = splat(builder, builder.load(src))
                    new += [builder.call(fma, [s, bv[v], acc[r * nv + v]]) for v in range(nv)]
                return new

            init = [builder.select(first, zero, builder.load(caddr(cp, r, v), align=4))
                    for r in range(mr) for v in range(nv)]
            flat = counted_loop(builder, "btile", 0, k, init, step, unroll=False)
            new = [flat[r * nv:(r + 1) * nv] for r in range(mr)]
            lov, hiv = splat(builder, lo), splat(builder, hi)
            bvec = [builder.load(builder.bitcast(builder.gep(biasp, [ir.Constant(i64, v * VL)]), vptr), align=4)
                    for v in range(nv)]
            for r in range(mr):
                for v in range(nv):
                    y = new[r][v]
                    e = builder.fadd(y, bvec[v])
                    rv = builder.select(has_res, builder.load(caddr(rp, r, v), align=4), zero)
                    e = builder.fadd(e, rv)
                    e = builder.call(vmin, [builder.call(vmax, [e, lov]), hiv])
                    builder.store(builder.select(last, e, y), caddr(cp, r, v), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile
