"""The register tile of the blocked convolution: MR output pixels x NV output-channel blocks of VL lanes, the
epilogue (bias, residual, clamp) applied while the accumulators are still in registers.

Layouts (all float32, addresses in bytes, offsets in elements):

- A (the input): A(r, kk) = a[rows[r] + taps[kk]] (depthwise: the VL-vector there): ``rows`` (MR int64) the
  offsets of the tile's output pixels' first taps in the padded blocked image, ``taps`` (k int64) the offsets of
  the reduction index (input block, kernel row, kernel column, input lane). One broadcast load per (r, kk).
- B (the packed weights): B[kk*bks + v*VL + q]: VL output lanes of block v at reduction index kk.
- C (the output, blocked): C[r*VL + v*ldv + q] (ldv: the distance of two output blocks, H*W*VL in place);
  residual the same layout at ``res``.

``first``: start from zero (else from C, the partial sums of an earlier K block; first and last: from the bias);
``last``: the bias vector (``bias``, NV*VL floats) in the sums and, with ``has_res``, the residual added, then clamp
to [lo, hi] (ReLU: [0, inf), ReLU6: [0, 6], none: (-inf, inf): no clamp) before the store.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..codegen import VL, counted_loop, join, splat, vector_intrinsic


def store_epilogue(builder: ir.IRBuilder, vals: list, cs: list, rs: list, has_res: ir.Value, lo: ir.Value,
                   hi: ir.Value) -> None:
    """Store vals[i] (+ the residual vector at rs[i] where ``has_res``), clamped to [lo, hi], at cs[i] (vector
    pointers). Branches, not selects: each path does only the work its flags ask for, the clamp skipped where both
    bounds are infinite (a K=16 tile spent a fifth of its time on a residual add of zeros and a clamp to +-inf)."""
    f32 = ir.FloatType()
    lov, hiv = splat(builder, lo), splat(builder, hi)
    clamp = builder.or_(builder.fcmp_ordered(">", lo, ir.Constant(f32, float("-inf"))),
                        builder.fcmp_ordered("<", hi, ir.Constant(f32, float("inf"))))

    def store(with_res: bool, with_clamp: bool) -> None:
        for v, c_ptr, r_ptr in zip(vals, cs, rs):
            if with_res:
                v = builder.fadd(v, builder.load(r_ptr, align=4))
            if with_clamp:  # compare and select: one vmaxps / vminps each (llvm.maxnum adds a NaN test and blend)
                v = builder.select(builder.fcmp_ordered(">", v, lov), v, lov)
                v = builder.select(builder.fcmp_ordered("<", v, hiv), v, hiv)
            builder.store(v, c_ptr, align=4)

    with builder.if_else(has_res) as (with_res, without):
        with with_res:
            store(True, True)
        with without:
            with builder.if_else(clamp) as (clamped, plain):
                with clamped:
                    store(False, True)
                with plain:
                    store(False, False)


def make_blocked_tile(mr: int, nv: int, depthwise: bool = False, prefetch: bool = False):
    """The mr x nv tile. ``depthwise``: A(r, kk) is the VL-lane vector at a[rows[r] + taps[kk]] (each lane its own
    channel) instead of a broadcast scalar, and nv must be 1: a depthwise layer's tile over mr output pixels of one
    channel block. ``prefetch``: the tile takes one more argument, ``pf``, an address laid out as B, and asks for
    pf's row kk (nv*VL floats) into the cache at each reduction step kk: the next weight panel streams in while this
    tile computes (a panel cold in L3 otherwise stalls its first tile)."""
    assert not depthwise or nv == 1
    lines = -(-nv * VL * 4 // 64)  # cache lines of one B row

    def build(context, builder, args):
        return _codegen(context, builder, args, mr, nv, depthwise, lines if prefetch else 0)

    if prefetch:
        @intrinsic
        def tile_pf(typingctx, k, a, rows, taps, b, bks, c, ldv, res, bias, first, last, has_res, lo, hi, pf):
            sig = types.void(*_ARGS, types.uintp)
            return sig, lambda context, builder, signature, args: build(context, builder, args)

        return tile_pf

    @intrinsic
    def tile(typingctx, k, a, rows, taps, b, bks, c, ldv, res, bias, first, last, has_res, lo, hi):
        return types.void(*_ARGS), lambda context, builder, signature, args: build(context, builder, args)

    return tile


_ARGS = (types.intp, types.uintp, types.uintp, types.uintp, types.uintp, types.intp, types.uintp, types.intp,
         types.uintp, types.uintp, types.boolean, types.boolean, types.boolean, types.float32, types.float32)


def _codegen(context, builder: ir.IRBuilder, args, mr: int, nv: int, depthwise: bool, pf_lines: int):
    """The tile's body (:func:`make_blocked_tile`); ``pf_lines`` > 0: prefetch that many cache lines of the row kk
    of args[15] at each step."""
    k, a, rows, taps, b, bks, c, ldv, res, bias, first, last, has_res, lo, hi = args[:15]
    f32, i64 = ir.FloatType(), ir.IntType(64)
    fptr = ir.PointerType(f32)
    vty = ir.VectorType(f32, VL)
    vptr = ir.PointerType(vty)

    fma = vector_intrinsic(builder, "fma", 3)
    ap, bp, cp, rp, biasp = (builder.inttoptr(v, fptr) for v in (a, b, c, res, bias))
    rt, kt = (builder.inttoptr(v, ir.PointerType(i64)) for v in (rows, taps))
    rowp = [builder.gep(ap, [builder.load(builder.gep(rt, [ir.Constant(i64, r)]))]) for r in range(mr)]
    zero = ir.Constant(vty, [0.0] * VL)

    def caddr(base, r, v):
        off = builder.add(ir.Constant(i64, r * VL), builder.mul(ldv, ir.Constant(i64, v)))
        return builder.bitcast(builder.gep(base, [off]), vptr)

    if pf_lines:
        i32 = ir.IntType(32)
        pfn = builder.module.globals.get("llvm.prefetch.p0i8") or ir.Function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.PointerType(ir.IntType(8)), i32, i32, i32]),
            name="llvm.prefetch.p0i8")
        pfp = builder.inttoptr(args[15], fptr)

    def step(kk, acc):
        brow = builder.gep(bp, [builder.mul(kk, bks)])
        if pf_lines:  # read, L2-ish locality, data cache
            prow = builder.bitcast(builder.gep(pfp, [builder.mul(kk, bks)]), ir.PointerType(ir.IntType(8)))
            for line in range(pf_lines):
                builder.call(pfn, [builder.gep(prow, [ir.Constant(i64, 64 * line)]), ir.Constant(i32, 0),
                                   ir.Constant(i32, 2), ir.Constant(i32, 1)])
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

    bvec = [builder.load(builder.bitcast(builder.gep(biasp, [ir.Constant(i64, v * VL)]), vptr), align=4)
            for v in range(nv)]
    # branches, not selects: C is not loaded for a first K block (and the epilogue: store_epilogue)
    with builder.if_else(first) as (then, otherwise):
        with then:  # one K block: the sums start from the bias
            t_init = [builder.select(last, bvec[v], zero) for _ in range(mr) for v in range(nv)]
            t_blk = builder.block
        with otherwise:  # the partial sums of the K blocks before
            o_init = [builder.load(caddr(cp, r, v), align=4) for r in range(mr) for v in range(nv)]
            o_blk = builder.block
    init = join(builder, t_init, t_blk, o_init, o_blk)
    flat = counted_loop(builder, "btile", 0, k, init, step, unroll=False)
    cs = [caddr(cp, r, v) for r in range(mr) for v in range(nv)]
    rs = [caddr(rp, r, v) for r in range(mr) for v in range(nv)]
    with builder.if_else(last) as (then, otherwise):
        with then:
            with builder.if_else(first) as (had_bias, late):
                with had_bias:
                    h_blk = builder.block
                with late:  # K blocks: the bias was not in the first one's sums
                    l_vals = [builder.fadd(flat[r * nv + v], bvec[v]) for r in range(mr) for v in range(nv)]
                    l_blk = builder.block
            vals = join(builder, flat, h_blk, l_vals, l_blk)
            store_epilogue(builder, vals, cs, rs, has_res, lo, hi)
        with otherwise:
            for v, c_ptr in zip(flat, cs):
                builder.store(v, c_ptr, align=4)
    return context.get_dummy_value()
