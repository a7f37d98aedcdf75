"""A float32 GEMM in numba whose inner kernel is explicit SIMD, reading the conv layouts in place and applying
the conv epilogue to each output block while it is in cache.

Why: numpy's BLAS is whatever OpenBLAS picks for the CPU, and on the test machine (Zen 5, AVX-512) the environment
pins OpenBLAS to its Haswell (AVX2) kernels (``OPENBLAS_CORETYPE=Haswell``): ~240 GFLOP/s on 2 cores. numba
compiles for the host CPU, so a micro-kernel written as LLVM vector FMAs runs AVX-512 where the CPU has it
(261 GFLOP/s on one core with its operands in L1; 1024^3 on 2 cores: 400 vs 240 GFLOP/s for numpy).

Structure (Goto / BLIS): the output is cut into blocks of at most ``MC x NC``, one block per prange item; per K
block of ``KC`` the item packs what must be packed (an operand that is strided or laid out as images) into its
own thread's buffers and runs an ``MR x NR`` register tile per (row panel,
column panel). A plain matrix operand with a unit stride where the tile reads it is used in place (packing it
cost more than the whole tile at K = 64). Two register tiles: 12 x 32 and 8 x 48 (AVX-512; 6 x 16 and 4 x 24 on
AVX2), chosen per GEMM by the padded area (channel counts are multiples of 8, pixel counts often not of 32).

Operand layouts, so that no pack / unpack pass is needed around the GEMM: ``A[i, k] = a3[k // pa, i, k % pa]``,
``B[k, j] = b3[j // pb, k, j % pb]`` and ``C[i, j] = c3[j // pc, i, j % pc]``. A plain matrix X is ``X[None]``
(p = its column count); an NCHW activation (N, C, H*W) read as the (C, N*H*W) matrix is itself (p = H*W). (An
implicit-im2col B packed from x was tried and dropped: :mod:`.conv.tables` reads x through offset tables
without packing, 1.5x faster on the ResNet-18 stem.)
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .codegen import AVX512, VL, counted_loop, splat, vector_intrinsic
from .conv.epilogue import HAS_RES, NO_ACT, epilogue_row
from .conv.workspace import current_workspace

# Register tiles (rows, vectors per row): MR*NV accumulators + NV B vectors + 1 broadcast fit the 32 zmm (16 ymm)
TILES = ((12, 2), (8, 3)) if AVX512 else ((6, 2), (4, 3))
MR0, NR0 = TILES[0][0], TILES[0][1] * VL
MR1, NR1 = TILES[1][0], TILES[1][1] * VL
MR_MAX, NR_MAX = max(MR0, MR1), max(NR0, NR1)
KC = 256  # K block: an A panel (MR x KC) and a B panel (KC x NR) stay in L1 while the tile runs
MC = 480  # rows per output block (a multiple of both MRs); the packed A block is MC x KC (L2)
NC = 384  # columns per output block (a multiple of both NRs); the packed B block is KC x NC


def make_tile(mr: int, nv: int, tables: bool = False, b_table: bool = False):
    """The mr x (nv*VL) register tile as a numba intrinsic. ``tables``: A is addressed through offset tables
    (the implicit GEMM of :mod:`.conv.tables`) instead of strides. ``b_table``: row kk of B starts at
    ``b + bks[kk]`` elements, ``bks`` the address of an int64 table (the padded-plane forward of
    :mod:`.conv.planes`), instead of ``b + kk*bks``."""

    @intrinsic
    def tile(typingctx, k, a, ars, aks, b, bks, c, ldc, add):
        """C[r*ldc + q] (+= if add else =) sum over kk < k of A(r, kk) * B[kk*bks + q] for the mr x nr register
        tile; a, b, c are float32 addresses, strides in elements, k >= 1. A(r, kk) = A[r*ars + kk*aks], or with
        ``tables`` A[ars[r] + aks[kk]] where ars / aks are the addresses of int64 offset tables. mr*nv vector
        accumulators (phi nodes), one broadcast of A and nv vector loads of B per kk, LLVM fma, vector loads /
        stores of C."""
        idx = types.uintp if tables else types.intp
        sig = types.void(types.intp, types.uintp, idx, idx, types.uintp, types.uintp if b_table else types.intp,
                         types.uintp, types.intp, types.boolean)

        def codegen(context, builder, signature, args):
            k, a, ars, aks, b, bks, c, ldc, add = args
            f32, i64 = ir.FloatType(), ir.IntType(64)
            fptr = ir.PointerType(f32)
            ap, bp, cp = (builder.inttoptr(v, fptr) for v in (a, b, c))
            if tables:  # per-row base addresses, loaded once
                rp, kp = (builder.inttoptr(v, ir.PointerType(i64)) for v in (ars, aks))
                rows = [builder.gep(ap, [builder.load(builder.gep(rp, [ir.Constant(i64, r)]))]) for r in range(mr)]
            if b_table:
                btp = builder.inttoptr(bks, ir.PointerType(i64))
            vty = ir.VectorType(f32, VL)
            vptr = ir.PointerType(vty)
            fma = vector_intrinsic(builder, "fma", 3)
            zero = ir.Constant(vty, [0.0] * VL)

            def step(kk, acc):
                brow = builder.gep(bp, [builder.load(builder.gep(btp, [kk])) if b_table else builder.mul(kk, bks)])
                bv = [builder.load(builder.bitcast(builder.gep(brow, [ir.Constant(i64, v * VL)]), vptr), align=4)
                      for v in range(nv)]
                if tables:
                    ko = builder.load(builder.gep(kp, [kk]))
                    addr = [builder.gep(rows[r], [ko]) for r in range(mr)]
                else:
                    arow = builder.gep(ap, [builder.mul(kk, aks)])
                    addr = [builder.gep(arow, [builder.mul(ars, ir.Constant(i64, r))]) for r in range(mr)]
                new = []
                for r in range(mr):
                    s = splat(builder, builder.load(addr[r]))
                    new += [builder.call(fma, [s, bv[v], acc[r * nv + v]]) for v in range(nv)]
                return new

            # no unrolling with tables: unrolled by 2, the scheduler hoisted the next iteration's broadcasts and
            # spilled accumulators (LeNet conv2 forward with an 8x48 tile: 2.3 -> 0.78 ms; 12x32 spilled either way)
            flat = counted_loop(builder, "tile", 0, k, [zero] * (mr * nv), step, unroll=not (tables or b_table))
            new = [flat[r * nv:(r + 1) * nv] for r in range(mr)]
            for r in range(mr):
                crow = builder.gep(cp, [builder.mul(ldc, ir.Constant(i64, r))])
                for v in range(nv):
                    q = builder.bitcast(builder.gep(crow, [ir.Constant(i64, v * VL)]), vptr)
                    old = builder.select(add, builder.load(q, align=4), zero)
                    builder.store(builder.fadd(old, new[r][v]), q, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile0 = make_tile(*TILES[0])
_tile1 = make_tile(*TILES[1])


@njit(cache=True)
def _pack_a(a3, pa, i0, mc, k0, kc, buf, mr, i_unit):
    """buf[panel][kk][r] = A[i0 + panel*mr + r, k0 + kk] (0 past row mc): mr-row panels of an A block.
    ``i_unit``: a3 is contiguous along i (a transposed operand), so each kk reads mr consecutive values."""
    for ip in range(0, mc, mr):
        base = (ip // mr) * kc * mr
        rows = min(mr, mc - ip)
        if i_unit:
            ka, p = k0 // pa, k0 % pa
            for kk in range(kc):
                d0 = base + kk * mr
                for r in range(rows):
                    buf[d0 + r] = a3[ka, i0 + ip + r, p]
                for r in range(rows, mr):
                    buf[d0 + r] = 0
                p += 1
                if p == pa:
                    p = 0
                    ka += 1
            continue
        for r in range(mr):
            if r < rows:
                i = i0 + ip + r
                ka, p = k0 // pa, k0 % pa
                for kk in range(kc):
                    buf[base + kk * mr + r] = a3[ka, i, p]
                    p += 1
                    if p == pa:
                        p = 0
                        ka += 1
            else:
                for kk in range(kc):
                    buf[base + kk * mr + r] = 0


@njit(cache=True)
def _pack_b(b3, pb, j0, nc, k0, kc, buf, nr):
    """buf[panel][kk][q] = B[k0 + kk, j0 + panel*nr + q] (0 past column nc): nr-column panels of a B block, row
    by row of B (one long read per row: panel by panel, kc short strided streams ran at half the speed from
    DRAM); a row's columns are cut into runs inside one b3[n], and those at panel edges."""
    npan = (nc + nr - 1) // nr
    for kk in range(kc):
        q = 0
        while q < nc:
            j = j0 + q
            n, p = j // pb, j % pb
            run = min(nc - q, pb - p)
            src = b3[n, k0 + kk]
            t = 0
            while t < run:  # plain indexing: a slice per segment cost more than its copy
                qq = q + t
                seg = min(run - t, nr - qq % nr)
                d0 = ((qq // nr) * kc + kk) * nr + qq % nr
                s0 = p + t
                for e in range(seg):
                    buf[d0 + e] = src[s0 + e]
                t += seg
            q += run
        for qq in range(nc, npan * nr):
            buf[((qq // nr) * kc + kk) * nr + qq % nr] = 0


@njit(cache=True)
def _pack_b_kunit(b3, j0, nc, k0, kc, buf, nr):
    """:func:`_pack_b` of a plain-matrix B that is contiguous along k (a transposed operand, e.g. U^T of a
    Winograd forward): column by column, each a contiguous read, stored with stride nr inside the L1-sized panel
    (the row-by-row gather of :func:`_pack_b` loads every element from another cache line)."""
    npan = (nc + nr - 1) // nr
    for q in range(npan * nr):
        d0 = (q // nr) * kc * nr + q % nr
        if q < nc:
            src = b3[0, k0:k0 + kc, j0 + q]
            for kk in range(kc):
                buf[d0 + kk * nr] = src[kk]
        else:
            for kk in range(kc):
                buf[d0 + kk * nr] = 0


@njit(cache=True)
def _write_tile(tile, nr_tile, c3, pc, i0, mr, j0, nr, add):
    """C[i0 + r, j0 + q] (+)= tile[r*nr_tile + q] for the valid mr x nr corner of an edge tile (or one whose
    columns cross an image of c3), in runs inside one c3[n]."""
    q = 0
    while q < nr:
        n, p = (j0 + q) // pc, (j0 + q) % pc
        w = min(nr - q, pc - p)
        for r in range(mr):
            dst = c3[n, i0 + r]
            base = r * nr_tile + q
            if add:
                for e in range(w):
                    dst[p + e] += tile[base + e]
            else:
                for e in range(w):
                    dst[p + e] = tile[base + e]
        q += w


@njit(cache=True)
def _epilogue_block(c3, pc, i0, mc, j0, nc, flags, bias, scale, res, act, alpha):
    """The conv epilogue over C[i0:i0+mc, j0:j0+nc] in place, after the block's last K block (still in cache):
    :func:`.conv.epilogue.epilogue_row` per output row and run inside one c3[n]."""
    q = 0
    while q < nc:
        n, p = (j0 + q) // pc, (j0 + q) % pc
        w = min(nc - q, pc - p)
        for r in range(mc):
            i = i0 + r
            row = c3[n, i, p:p + w]
            res_row = res[n, i, p:p + w] if flags & HAS_RES else res[0, 0]
            epilogue_row(row, row, i, flags, bias, scale, res_row, act, alpha)  # elementwise: in place is fine
        q += w


# One explicit signature with every array typed as any-layout ('A'): contiguous and strided operands share one
# compiled _gemm (lazily typed, the layout combinations of a ResNet-18 step compiled it 4 times, ~9 s each).
# The inputs are typed read-only, which writable arrays convert to (a compiled graph's weights are read-only).
_F4, _F2 = (types.Array(types.float32, d, "A") for d in (4, 2))
_R4, _R3, _R1 = (types.Array(types.float32, d, "A", readonly=True) for d in (4, 3, 1))
_I = types.intp
_GEMM_SIG = types.void(_I, _R4, _I, _R4, _I, _F4, _I, _I, _I, _I, _I, _I, types.boolean, _I, _R1, _R1, _R3, _I,
                       types.float64, _F2, _F2, _F2)


@njit(_GEMM_SIG, parallel=True, cache=True, error_model="numpy")
def _gemm(kern, a4, pa, b4, pb, c4, pc, m, n, k, mc, nc, accumulate, flags, bias, scale, res, act, alpha, abuf, bbuf,
          tiles):
    """C[g] (+)= A[g] @ B[g] for each g of c4's leading axis (a4 / b4 with a leading axis of 1 are shared) over
    the grid of (mc x nc) output blocks: one (g, block) per prange item, each thread packing into its own rows
    of abuf / bbuf / tiles. ``kern``: register tile 0 or 1 (TILES)."""
    mr, nr = (MR0, NR0) if kern == 0 else (MR1, NR1)
    # read in place: a plain-matrix A (pa >= k) and a plain-matrix B (pb >= n) with unit stride along j
    a_direct = pa >= k
    b_direct = pb >= n and b4.strides[3] == b4.itemsize
    i_unit = a4.strides[2] == a4.itemsize and a4.shape[2] > 1
    b_kunit = not b_direct and pb >= n and b4.strides[2] == b4.itemsize and b4.shape[2] > 1
    # B already in the tile's panels (pb == nr, rows of nr contiguous): read in place, no pack (a pre-packed
    # weight such as Winograd's U, or an activation whose planes are exactly nr wide)
    b_panel = not b_direct and pb == nr and b4.strides[3] == b4.itemsize and b4.strides[2] == nr * b4.itemsize
    c_unit = c4.strides[3] == c4.itemsize or c4.shape[3] == 1
    isz = c4.itemsize
    as1, as2 = a4.strides[2] // isz, a4.strides[3] // isz
    bs0, bs1 = b4.strides[1] // isz, b4.strides[2] // isz
    cs0, cs1 = c4.strides[1] // isz, c4.strides[2] // isz
    epilogue = flags != 0 or act != NO_ACT
    nbm, nbn = (m + mc - 1) // mc, (n + nc - 1) // nc
    for item in prange(c4.shape[0] * nbm * nbn):
        tid = numba.get_thread_id()
        ab, bb, tile = abuf[tid], bbuf[tid], tiles[tid]
        g, blk = item // (nbm * nbn), item % (nbm * nbn)
        a3 = a4[g if a4.shape[0] > 1 else 0]
        b3 = b4[g if b4.shape[0] > 1 else 0]
        c3 = c4[g]
        i0, j0 = (blk % nbm) * mc, (blk // nbm) * nc
        mcb, ncb = min(mc, m - i0), min(nc, n - j0)
        a_base, b_base, c_base = a3.ctypes.data, b3.ctypes.data, c3.ctypes.data
        ab_base, bb_base, t_base = ab.ctypes.data, bb.ctypes.data, tile.ctypes.data
        for k0 in range(0, k, KC):
            kc = min(KC, k - k0)
            if not b_direct and not b_panel:
                if b_kunit:
                    _pack_b_kunit(b3, j0, ncb, k0, kc, bb, nr)
                else:
                    _pack_b(b3, pb, j0, ncb, k0, kc, bb, nr)
            if not a_direct:
                _pack_a(a3, pa, i0, mcb, k0, kc, ab, mr, i_unit)
            add = accumulate or k0 > 0
            for jp in range(0, ncb, nr):
                j = j0 + jp
                n_img, p = j // pc, j % pc
                cols = min(nr, ncb - jp)
                c_direct = cols == nr and p + nr <= pc and c_unit
                if b_panel:  # panel j // nr of b3, rows from k0 (an edge panel reads past n: those columns are dropped)
                    b_addr, bks = b_base + ((j // nr) * bs0 + k0 * nr) * isz, nr
                elif not b_direct:
                    b_addr, bks = bb_base + ((jp // nr) * kc * nr) * isz, nr
                elif cols == nr:
                    b_addr, bks = b_base + (k0 * bs1 + j) * isz, bs1
                else:  # the edge panel of an in-place B
                    _pack_b(b3, pb, j, cols, k0, kc, bb, nr)
                    b_addr, bks = bb_base, nr
                for ip in range(0, mcb, mr):
                    rows = min(mr, mcb - ip)
                    if not a_direct:
                        a_addr, ars, aks = ab_base + ((ip // mr) * kc * mr) * isz, 1, mr
                    elif rows == mr:
                        a_addr, ars, aks = a_base + ((i0 + ip) * as1 + k0 * as2) * isz, as1, as2
                    else:  # the edge panel of an in-place A
                        _pack_a(a3, pa, i0 + ip, rows, k0, kc, ab, mr, i_unit)
                        a_addr, ars, aks = ab_base, 1, mr
                    if c_direct and rows == mr:
                        c_addr, ldc, into = c_base + (n_img * cs0 + (i0 + ip) * cs1 + p) * isz, cs1, add
                    else:
                        c_addr, ldc, into = t_base, nr, False
                    if kern == 0:
                        _tile0(kc, a_addr, ars, aks, b_addr, bks, c_addr, ldc, into)
                    else:
                        _tile1(kc, a_addr, ars, aks, b_addr, bks, c_addr, ldc, into)
                    if c_addr == t_base:
                        _write_tile(tile, nr, c3, pc, i0 + ip, rows, j, cols, add)
        if epilogue:
            _epilogue_block(c3, pc, i0, mcb, j0, ncb, flags, bias, scale, res, act, alpha)


def _buffers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-thread buffers (packed A block, packed B block, one register tile) in the current workspace."""
    ws = current_workspace()
    return (ws.per_thread("gemm_a", (MC + MR_MAX) * KC), ws.per_thread("gemm_b", (NC + NR_MAX) * KC),
            ws.per_thread("gemm_tile", MR_MAX * NR_MAX))


def round_up(v: int, to: int) -> int:
    return -(-v // to) * to


def tile_kernel(m: int, n: int) -> int:
    """The register tile with the least padded output area (ties: tile 0)."""
    return 0 if round_up(m, MR0) * round_up(n, NR0) <= round_up(m, MR1) * round_up(n, NR1) else 1


def tile_nr(kern: int) -> int:
    """The column count NR of register tile ``kern`` (the panel width of a B that :func:`batched_gemm` reads in
    place)."""
    return NR0 if kern == 0 else NR1


def _blocks(m: int, n: int, batch: int, mr: int, nr: int) -> tuple[int, int]:
    """Block sizes: MC x NC, halved (in whole panels) while that leaves a thread without an output block."""
    threads = numba.get_num_threads()
    mc, nc = min(MC, round_up(m, mr)), min(NC, round_up(n, nr))
    while batch * -(-m // mc) * -(-n // nc) < 2 * threads and (mc > mr or nc > nr):
        if nc >= mc and nc > nr:
            nc = max(nr, round_up(nc // 2, nr))
        else:
            mc = max(mr, round_up(mc // 2, mr))
    return mc, nc


_DUMMY1 = np.zeros(1, np.float32)
_DUMMY3 = np.zeros((1, 1, 1), np.float32)


def batched_gemm(a4: np.ndarray, pa: int, b4: np.ndarray, pb: int, c4: np.ndarray, pc: int, m: int, n: int, k: int,
                 accumulate: bool = False, flags: int = 0, bias: np.ndarray | None = None,
                 scale: np.ndarray | None = None, res: np.ndarray | None = None, act: int = NO_ACT,
                 alpha: float = 0.0, kern: int | None = None) -> None:
    """C[g] (m x n) = A[g] (m x k) @ B[g] (k x n) (+ C[g] if ``accumulate``) for each g of c4's leading axis,
    then the epilogue ``act(C * scale[i] + bias[i] + res)`` (flags as in conv.epilogue; res laid out like c4[g],
    for a batch of one), float32, where ``A[i, k] = a4[g, k // pa, i, k % pa]``, ``B[k, j] = b4[g, j // pb, k,
    j % pb]``, ``C[i, j] = c4[g, j // pc, i, j % pc]`` (a4 / b4 with a leading axis of 1 are shared)."""
    if m == 0 or n == 0 or c4.shape[0] == 0:
        return
    if k == 0:
        if not accumulate:
            c4[...] = 0
        return
    kern = tile_kernel(m, n) if kern is None else kern
    mc, nc = _blocks(m, n, c4.shape[0], *((MR0, NR0) if kern == 0 else (MR1, NR1)))
    abuf, bbuf, tiles = _buffers()
    _gemm(kern, a4, int(pa), b4, int(pb), c4, int(pc), int(m), int(n), int(k), mc, nc,
          bool(accumulate), int(flags), _DUMMY1 if bias is None else bias, _DUMMY1 if scale is None else scale,
          _DUMMY3 if res is None else res, int(act), float(alpha), abuf, bbuf, tiles)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> None:
    """out (..., M, N) (+)= a (..., M, K) @ b (..., K, N) for float32 matrices or one stack of them (any strides;
    a stack axis of 1 broadcasts)."""
    if a.ndim == 2:
        a, b, out = a[None], b[None], out[None]
    m, k = a.shape[1:]
    n = b.shape[2]
    batched_gemm(a[:, None], k, b[:, None], n, out[:, None], n, m, n, k, accumulate)


def gemm(a3: np.ndarray, pa: int, b3: np.ndarray, pb: int, c3: np.ndarray, pc: int, m: int, n: int, k: int,
         accumulate: bool = False, ep=None) -> None:
    """One (unbatched) :func:`batched_gemm` with the epilogue of a conv.epilogue.Epilogue ``ep`` (None: none)."""
    if ep is None or ep.empty:
        batched_gemm(a3[None], pa, b3[None], pb, c3[None], pc, m, n, k, accumulate)
        return
    res = ep.res3(c3.shape) if ep.residual is not None else None
    batched_gemm(a3[None], pa, b3[None], pb, c3[None], pc, m, n, k, accumulate, ep.flags, ep.bias, ep.scale, res,
                 ep.act, ep.alpha)


def supported(*arrays: np.ndarray) -> bool:
    """Whether this GEMM takes these operands (float32 only; other dtypes go to numpy's BLAS)."""
    return all(a.dtype == np.float32 for a in arrays)
