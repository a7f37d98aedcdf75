"""The tiled GEMM main loop every conv and matmul kernel of this backend shares.

``C[g][m, n] = sum_k A[g][m, k] * B[g][k, n]`` where A and B are never materialised: the role's ``load_a`` /
``load_b`` device functions read an element of them from the real operands (an implicit GEMM: a conv reads its
input patch on the fly, so there is no im2col buffer), and ``store`` applies the epilogue and writes one result.

A block computes a ``bm x bn`` tile of C with ``(bm/tm) x (bn/tn)`` threads, each holding ``tm x tn`` accumulators
in registers. Per ``bk`` step the block stages ``A[bm, bk]`` and ``B[bk, bn]`` in shared memory; the next step's
elements are loaded into registers while the current tile is multiplied (a register prefetch, so global latency
overlaps the FMAs). Thread (ty, tx) owns rows ``ty + i*(bm/tm)`` and columns ``tx + j*(bn/tn)``: consecutive
threads read consecutive shared words (no bank conflicts) and write consecutive output columns (coalesced).
Shared rows are padded by :data:`PAD` words so the transposing stores of a k-fast operand hit distinct banks.

Grid: ``(ceil(N/bn), ceil(M/bm), groups * ksplit)``. ``blockIdx.z = g * ksplit + s``: g is the group (conv
groups, matmul batch), s the slice of K this block reduces (split-K; its partial sums go to a buffer that a
second kernel adds in a fixed order, so results never depend on scheduling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import config, cuda, int32
from numba.np.numpy_support import from_dtype

PAD = 4

# the simulator's cuda.jit has no forceinline; on a real target forceinline lets LLVM keep the loaders' values and
# the accumulators in registers (a device function taking a local array would put it in local memory)
_INLINE: dict[str, Any] = {} if config.ENABLE_CUDASIM else {"forceinline": True}


def device_function(fn):
    """``cuda.jit(device=True)``, force-inlined where the target supports it."""
    return cuda.jit(device=True, **_INLINE)(fn)


@dataclass(frozen=True)
class Tile:
    """Block tile ``bm x bn`` stepping ``bk`` along K, ``tm x tn`` outputs per thread."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    def __post_init__(self) -> None:
        if self.bm % self.tm or self.bn % self.tn:
            raise ValueError(f"Tile {self.name}: tm must divide bm and tn must divide bn")
        if (self.bm * self.bk) % self.threads or (self.bn * self.bk) % self.threads:
            raise ValueError(f"Tile {self.name}: the {self.threads} threads must divide bm*bk and bn*bk")

    @property
    def block(self) -> tuple[int, int]:
        return self.bn // self.tn, self.bm // self.tm  # (x: threads along n, y: threads along m)

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def name(self) -> str:
        return f"{self.bm}x{self.bn}x{self.bk}/{self.tm}x{self.tn}"

    def grid(self, m: int, n: int, z: int) -> tuple[int, int, int]:
        return -(-n // self.bn), -(-m // self.bm), z


SMS = 132  # streaming multiprocessors of an H100 SXM: the heuristics aim to give each of them work

# the production tiles, by dtype: 128x128 with 8x8 accumulators per thread (256 threads; each k step does 64 FMAs
# per 16 shared loads), and 64x64 with 4x4 for layers too small to give every SM two 128-tiles. float64 keeps to
# 4x4 (64 accumulator registers).
TILES: dict[str, dict[str, Tile]] = {
    "float32": {"128x128": Tile(128, 128, 8, 8, 8), "64x64": Tile(64, 64, 8, 4, 4)},
    "float64": {"64x64": Tile(64, 64, 8, 4, 4)},
}


def tiles(dtype: Any) -> dict[str, Tile]:
    """The tiles kernels of this dtype run with, by name."""
    name = np.dtype(dtype).name
    if name not in TILES:
        raise NotImplementedError(f"backend 'cuda': no GEMM/conv kernels for dtype {name} (float32, float64)")
    return TILES[name]


def tile_order(m: int, n: int, z: int, dtype: Any) -> list[str]:
    """Tile names for an M x N result in z groups, the heuristic's pick first: the largest tile that fills at least
    3/4 of its rows and columns and still gives every SM a block (a larger tile reuses each loaded element more,
    but idle SMs and empty tile rows cost more than that); else the smallest tile."""
    by_size = sorted(tiles(dtype).items(), key=lambda kv: -kv[1].bm * kv[1].bn)
    names = [name for name, _ in by_size]
    for name, t in by_size:
        gm, gn = -(-m // t.bm), -(-n // t.bn)
        if m * n >= 0.75 * gm * t.bm * gn * t.bn and gm * gn * z >= SMS:
            return [name] + [a for a in names if a != name]
    return names[-1:] + names[:-1]


@device_function
def same_group(geo, g):
    return g


@device_function
def column_index(geo, gb, n):
    return n, 0, 0


def make_gemm_kernel(tile: Tile, dtype: Any, load_a, load_b, store, a_k_fast: bool, b_k_fast: bool,
                     a_group=same_group, b_group=same_group, b_column=column_index):
    """A ``cuda.jit`` kernel ``(A, B, out, bias, res, geo, M, N, K, ksplit, flags, act, alpha)`` for one role.

    ``load_a(A, geo, ga, m, k)`` / ``load_b(B, geo, gb, k, c0, c1, c2)`` return one element (they are only called
    in bounds), where ``ga = a_group(geo, g)`` and ``gb = b_group(geo, g)`` are computed once per block from the
    group g (default: g itself; matmul maps it to each operand's broadcast batch index), and
    ``(c0, c1, c2) = b_column(geo, gb, n)`` once per block for each column n a thread loads (each thread loads the
    same columns at every k step: a conv decomposes its pixel or tap there instead of per element; default
    ``(n, 0, 0)``). ``store(out, bias, res, geo, g, s, ksplit, m, n, v, flags, act, alpha)`` writes one result.
    ``a_k_fast`` / ``b_k_fast``: consecutive threads load consecutive k (the operand is contiguous along K) rather
    than consecutive rows/columns, so the global loads coalesce either way."""
    bm, bn, bk, tm, tn = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn
    ry, rx = bm // tm, bn // tn  # threads along m and n
    nt = tile.threads
    la, lb = bm * bk // nt, bn * bk // nt  # elements each thread stages per k step
    a_cols, b_cols = bm + PAD, bn + PAD  # shared shapes must be compile-time constants
    nbt = from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0)

    @device_function
    def prefetch(A, B, geo, ga, gb, t, M, N, K, m0, n0, tid, ra, rb, cols):
        for e in range(la):
            f = tid + e * nt
            if a_k_fast:
                r, k = f // bk, f % bk
            else:
                k, r = f // bm, f % bm
            gm, gk = m0 + r, t * bk + k
            ra[e] = load_a(A, geo, ga, gm, gk) if gm < M and gk < K else zero
        for e in range(lb):
            f = tid + e * nt
            if b_k_fast:
                c, k = f // bk, f % bk
            else:
                k, c = f // bn, f % bn
            gn, gk = n0 + c, t * bk + k
            rb[e] = load_b(B, geo, gb, gk, cols[e, 0], cols[e, 1], cols[e, 2]) if gn < N and gk < K else zero

    def gemm(A, B, out, bias, res, geo, M, N, K, ksplit, flags, act, alpha):
        a_s = cuda.shared.array((bk, a_cols), nbt)
        b_s = cuda.shared.array((bk, b_cols), nbt)
        acc = cuda.local.array((tm, tn), nbt)
        res_t = cuda.local.array((tm, tn), nbt)
        ra = cuda.local.array(la, nbt)
        rb = cuda.local.array(lb, nbt)
        cols = cuda.local.array((lb, 3), int32)  # int32: 12 registers for the 4 columns of a 256-thread tile
        fa = cuda.local.array(tm, nbt)
        fb = cuda.local.array(tn, nbt)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * rx + tx
        m0, n0 = cuda.blockIdx.y * bm, cuda.blockIdx.x * bn
        g = cuda.blockIdx.z // ksplit
        s = cuda.blockIdx.z - g * ksplit
        ga, gb = a_group(geo, g), b_group(geo, g)
        per = (K + bk * ksplit - 1) // (bk * ksplit)  # k tiles per split
        t0 = s * per
        t1 = min((K + bk - 1) // bk, t0 + per)
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = zero
        for e in range(lb):
            f = tid + e * nt
            gn = n0 + (f // bk if b_k_fast else f % bn)
            c0, c1, c2 = b_column(geo, gb, gn if gn < N else 0)
            cols[e, 0], cols[e, 1], cols[e, 2] = c0, c1, c2
        if t0 < t1:
            prefetch(A, B, geo, ga, gb, t0, M, N, K, m0, n0, tid, ra, rb, cols)
        for t in range(t0, t1):
            for e in range(la):
                f = tid + e * nt
                if a_k_fast:
                    a_s[f % bk, f // bk] = ra[e]
                else:
                    a_s[f // bm, f % bm] = ra[e]
            for e in range(lb):
                f = tid + e * nt
                if b_k_fast:
                    b_s[f % bk, f // bk] = rb[e]
                else:
                    b_s[f // bn, f % bn] = rb[e]
            # Wait until the whole tile is staged
            cuda.syncthreads()
            if t + 1 < t1:  # the next tile's global loads overlap this tile's FMAs
                prefetch(A, B, geo, ga, gb, t + 1, M, N, K, m0, n0, tid, ra, rb, cols)
            for kk in range(bk):
                for i in range(tm):
                    fa[i] = a_s[kk, ty + i * ry]
                for j in range(tn):
                    fb[j] = b_s[kk, tx + j * rx]
                for i in range(tm):
                    for j in range(tn):
                        acc[i, j] += fa[i] * fb[j]
            # Wait until every thread has read the tile before it is overwritten
            cuda.syncthreads()
        # The store loop (index arithmetic, epilogue) is too big for LLVM to unroll, and one dynamic index would
        # put acc in local memory for the whole main loop: hand the results over in a copy that is unrolled
        for i in range(tm):
            for j in range(tn):
                res_t[i, j] = acc[i, j]
        for i in range(tm):
            m = m0 + ty + i * ry
            for j in range(tn):
                n = n0 + tx + j * rx
                if m < M and n < N:
                    store(out, bias, res, geo, g, s, ksplit, m, n, res_t[i, j], flags, act, alpha)

    return cuda.jit(gemm)


MAX_GRID_Z = 65535
_SCRATCH: dict[str, Any] = {}


def scratch(shape: tuple[int, ...], dtype: Any) -> Any:
    """A device array for partial results, from one buffer per dtype that grows to the largest request and is
    reused: kernels on the default stream run in launch order, so the next user waits for the previous one."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    buf = _SCRATCH.get(dtype.name)
    if buf is None or buf.size < n:
        buf = _SCRATCH[dtype.name] = cuda.device_array(n, dtype)
    return buf[:n].reshape(shape)


def launch(kernel, tile: Tile, z: int, A, B, out, bias, res, geo: tuple, M: int, N: int, K: int, ksplit: int = 1,
           flags: int = 0, act: int = 0, alpha: Any = 0.0) -> None:
    """Launch a :func:`make_gemm_kernel` kernel over an ``M x N`` result in ``z`` groups (asynchronous)."""
    if M <= 0 or N <= 0 or z <= 0:
        return
    if z * ksplit > MAX_GRID_Z:
        raise NotImplementedError(f"backend 'cuda': {z} GEMMs x {ksplit} K slices exceed the grid's z limit "
                                  f"{MAX_GRID_Z} (batch of matmul, or conv groups)")
    kernel[tile.grid(M, N, z * ksplit), tile.block](A, B, out, bias, res, geo, M, N, K, ksplit, flags, act, alpha)
