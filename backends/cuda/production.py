"""Every GEMM / conv kernel configuration the cuda backend launches, with the argument types it is launched with,
so tests and docs can compile each one to PTX and read its ptxas resources (tests/backend/test_cuda_ptx.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from numba import types
from numba.np.numpy_support import from_dtype

from .conv import select
from .conv.direct import direct_forward_kernel, direct_input_grad_kernel, direct_weight_grad_kernel
from .conv.igemm import ROLES, _sum_splits_kernel, conv_kernel
from .gemm import GEMM_ROLES, MAX_BATCH_DIMS, gemm_kernel
from .tiling import TILES

DTYPES = tuple(np.dtype(d) for d in TILES)


class KernelConfig(NamedTuple):
    name: str  # "conv forward 128x128x8/8x8 float32"
    kernel: Any  # the numba.cuda dispatcher
    signature: tuple  # numba argument types
    stack_bytes: int  # the local memory it may use: the tile loop stages its tm x tn results (0 elsewhere)
    max_registers: int  # per thread: 128 keeps two 256-thread blocks of the small float32 tile on an SM


def _arr(dt: np.dtype, ndim: int) -> types.Array:
    return types.Array(from_dtype(dt), ndim, "C")


def _gemm_sig(dt: np.dtype, a: int, b: int, out: int, res: int, geo: int) -> tuple:
    i64 = types.int64
    return (_arr(dt, a), _arr(dt, b), _arr(dt, out), _arr(dt, 1), _arr(dt, res), types.UniTuple(i64, geo),
            i64, i64, i64, i64, i64, i64, from_dtype(dt))


# (operand ndims a, b, out, residual, len(geo)) of each tiled role
_CONV_GEO = 14
_TILED = {"forward": (2, 4, 3, 3, _CONV_GEO), "input_grad": (3, 4, 3, 3, _CONV_GEO),
          "weight_grad": (3, 4, 3, 3, _CONV_GEO), "matmul": (3, 3, 3, 2, 3 * MAX_BATCH_DIMS),
          "linear": (2, 2, 2, 2, 1)}


def production_kernels() -> Iterator[KernelConfig]:
    i64 = types.int64
    geo = types.UniTuple(i64, _CONV_GEO)
    for dt in DTYPES:
        for tile in TILES[dt.name].values():
            staged = tile.tm * tile.tn * dt.itemsize
            regs = 65536 // (2 * tile.threads) if dt == np.float32 and tile.bm * tile.bn <= 64 * 64 else 255
            for role in ROLES:
                yield KernelConfig(f"conv {role} {tile.name} {dt.name}", conv_kernel(role, tile, dt),
                                   _gemm_sig(dt, *_TILED[role]), staged, regs)
            for role in GEMM_ROLES:
                yield KernelConfig(f"{role} {tile.name} {dt.name}", gemm_kernel(role, tile, dt),
                                   _gemm_sig(dt, *_TILED[role]), staged, regs)
        a4, a1, a3 = _arr(dt, 4), _arr(dt, 1), _arr(dt, 3)
        yield KernelConfig(f"conv forward direct {dt.name}", direct_forward_kernel(dt),
                           (a4, a4, a4, a1, a4, geo, i64, i64, from_dtype(dt)), 0, 255)
        yield KernelConfig(f"conv input_grad direct {dt.name}", direct_input_grad_kernel(dt), (a4, a4, a4, geo), 0, 255)
        yield KernelConfig(f"conv weight_grad direct/{select.REDUCE_THREADS} {dt.name}",
                           direct_weight_grad_kernel(select.REDUCE_THREADS, dt), (a4, a4, a4, geo), 0, 255)
        yield KernelConfig(f"conv weight_grad split-K sum {dt.name}", _sum_splits_kernel(dt), (a3, _arr(dt, 2)), 0, 255)


def resources_table(ccs: tuple[tuple[int, int], ...] = ((8, 0), (9, 0))) -> str:
    """A markdown table of every configuration's ptxas resources per architecture (docs/cuda_backend.md)."""
    from .ptx import compile_ptx, kernel_resources

    archs = [f"sm_{a}{b}" for a, b in ccs]
    rows = ["| kernel | " + " | ".join(f"{a} regs / spill st, ld / stack / smem" for a in archs) + " |",
            "|---|" + "---|" * len(archs)]
    for cfg in production_kernels():
        cells = []
        for cc, ptx in compile_ptx(cfg.kernel.py_func, cfg.signature, ccs).items():
            r = kernel_resources(ptx, f"sm_{cc[0]}{cc[1]}")
            cells.append(f"{r.registers} / {r.spill_stores}, {r.spill_loads} / {r.stack} B / {r.shared} B")
        rows.append(f"| {cfg.name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(resources_table())
