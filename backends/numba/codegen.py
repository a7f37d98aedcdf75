"""What every hand-written LLVM kernel of the numba backend needs (the register tiles of :mod:`.gemm` and
:mod:`.blocked.tile`, the depthwise row tile, the blocked max pool and conv prologue): the vector width of the
host, vector intrinsics, a scalar broadcast and one counted loop with values carried around it. Why by hand at
all: those kernels address scratch the compiler cannot prove apart from their inputs, so numba's loop over the
lanes stays scalar; written as LLVM vectors they run one SIMD instruction per VL lanes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import llvmlite.binding as llvm
from llvmlite import ir

AVX512 = bool(llvm.get_host_cpu_features().get("avx512f", False))
VL = 16 if AVX512 else 8  # float32 lanes per vector register

I64 = ir.IntType(64)


def vector_intrinsic(builder: ir.IRBuilder, name: str, nargs: int) -> ir.Function:
    """The LLVM intrinsic ``llvm.<name>.v<VL>f32`` (fma, maxnum, minnum, ...) on ``nargs`` VL-float vectors,
    declared once per module: what every register tile and vector transform here calls."""
    vty = ir.VectorType(ir.FloatType(), VL)
    mod, full = builder.module, f"llvm.{name}.v{VL}f32"
    return mod.globals.get(full) or ir.Function(mod, ir.FunctionType(vty, [vty] * nargs), name=full)


def splat(builder: ir.IRBuilder, s: ir.Value) -> ir.Value:
    """The float32 scalar ``s`` in every lane of a VL-vector."""
    i32 = ir.IntType(32)
    sv = builder.insert_element(ir.Constant(ir.VectorType(ir.FloatType(), VL), ir.Undefined), s, ir.Constant(i32, 0))
    return builder.shuffle_vector(sv, sv, ir.Constant(ir.VectorType(i32, VL), [0] * VL))


def counted_loop(builder: ir.IRBuilder, name: str, start: ir.Value | int, stop: ir.Value,
                 inits: Sequence[ir.Value], body: Callable[[ir.Value, list[ir.Value]], Sequence[ir.Value]], *,
                 guard: bool = False, unroll: bool = True) -> list[ir.Value]:
    """``for i in range(start, stop)`` in LLVM, the values ``inits`` carried around it (phi nodes):
    ``body(i, carried)`` emits one iteration and returns the carried values' next state. Returns their state
    after the loop; the builder is left at its end. Without ``guard`` the body runs at least once (callers
    that know ``stop > start`` save the test); with it, a loop of no iterations returns ``inits``.
    ``unroll=False`` marks the loop not to be unrolled: unrolled, a register tile's next broadcasts were hoisted
    and its accumulators spilled."""
    start = ir.Constant(I64, start) if isinstance(start, int) else start
    pre = builder.block
    loop = builder.append_basic_block(f"{name}.loop")
    done = builder.append_basic_block(f"{name}.done")
    if guard:
        builder.cbranch(builder.icmp_signed("<", start, stop), loop, done)
    else:
        builder.branch(loop)
    builder.position_at_end(loop)
    i = builder.phi(I64)
    i.add_incoming(start, pre)
    carried = [builder.phi(v.type) for v in inits]
    for p, v in zip(carried, inits):
        p.add_incoming(v, pre)
    new = list(body(i, list(carried)))
    nxt = builder.add(i, ir.Constant(I64, 1))
    end = builder.block
    i.add_incoming(nxt, end)
    for p, v in zip(carried, new):
        p.add_incoming(v, end)
    br = builder.cbranch(builder.icmp_signed("<", nxt, stop), loop, done)
    if not unroll:
        mod = builder.module
        off = mod.add_metadata([ir.MetaDataString(mod, "llvm.loop.unroll.disable")])
        loop_id = mod.add_metadata([off, off])
        loop_id.operands = (loop_id, off)  # a loop id refers to itself
        br.set_metadata("llvm.loop", loop_id)
    builder.position_at_end(done)
    if not guard:
        return new
    return join(builder, inits, pre, new, end)


def join(builder: ir.IRBuilder, a: Sequence[ir.Value], a_block: ir.Block, b: Sequence[ir.Value],
         b_block: ir.Block) -> list[ir.Value]:
    """Where two branches meet: a phi per pair, a[i] arriving from ``a_block`` and b[i] from ``b_block``."""
    out = []
    for x, y in zip(a, b):
        p = builder.phi(x.type)
        p.add_incoming(x, a_block)
        p.add_incoming(y, b_block)
        out.append(p)
    return out
