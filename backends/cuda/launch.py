"""Launch configuration shared by the cuda kernels: ceil-division grid sizes for grid-stride loops, and the block
size of the shared-memory reduction trees.

Under numba's simulator every simulated thread is a Python thread (a launch of ~2k threads takes about a second),
so there the grids are capped to a few small blocks; the grid-stride loops make any grid size compute the same
result, so only the speed changes. The reduction block size is a compile-time constant (it sizes the shared
arrays): 256 threads on a GPU, 8 in the simulator. Results depend on it only through the summation order, which is
fixed for a given block size, so every run on a machine gives the same bits.
"""

from __future__ import annotations

from numba import config

SIM = bool(config.ENABLE_CUDASIM)

THREADS = 32 if SIM else 256  # threads per block of an elementwise (grid-stride) launch
MAX_BLOCKS = 2 if SIM else 65535  # a grid-stride loop covers the rest
BLOCK = 8 if SIM else 256  # threads per block of a reduction tree (a power of two)
MAX_ROW_BLOCKS = 2 if SIM else 65535  # blocks of a row-per-block reduction; each block strides over rows
SPLIT_BLOCKS = 8 if SIM else 512  # a reduction with fewer rows than this splits long rows over several blocks


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads) for a grid-stride loop over ``n`` items."""
    return max(1, min(MAX_BLOCKS, -(-int(n) // THREADS))), THREADS


def rows_grid(rows: int) -> tuple[int, int]:
    """(blocks, threads) for a reduction that gives each of ``rows`` rows one block of :data:`BLOCK` threads."""
    return max(1, min(MAX_ROW_BLOCKS, int(rows))), BLOCK
