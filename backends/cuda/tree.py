"""Block-wide reduction trees in shared memory, and the host plumbing that gives a reduction its (A, B, C) view.

Every reduction kernel of this backend gives one block of :data:`.launch.BLOCK` threads to one output (a row):
each thread folds a strided share of the row serially, then the block combines the partial results pairwise in
shared memory, log2(BLOCK) levels with a barrier between levels. The order of every addition is fixed by the shape
and BLOCK alone (no atomics), so results are bit-identical from run to run. Every thread of a block calls the tree
(none returns early), as the barriers require.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from numba import cuda

from .elementwise import contiguous, copy
from .launch import BLOCK
from .table import backend
from .views import reshaped, transposed

SUM, MAX, MIN = range(3)


@cuda.jit(device=True)
def combine(op, a, b):
    if op == SUM:
        return a + b
    if op == MAX:
        return a if (a > b or a != a) else b  # NaN wins, as np.max
    return a if (a < b or a != a) else b


@cuda.jit(device=True)
def block_reduce(op, sh, v):
    """Combine ``v`` over the block (``sh``: a shared array of BLOCK); every thread gets the result."""
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    s = BLOCK // 2
    while s > 0:
        if t < s:
            sh[t] = combine(op, sh[t], sh[t + s])
        cuda.syncthreads()
        s //= 2
    r = sh[0]
    cuda.syncthreads()  # sh is free again for the next tree
    return r


@cuda.jit(device=True)
def block_sum(sh, v):
    return block_reduce(SUM, sh, v)


# --- host side ---------------------------------------------------------------------------------------------------
def abc_view(x: Any, axes: Sequence[int]) -> Any:
    """``x`` as a 3-D (A, B, C) device array whose axes 0 and 2 hold the reduced elements of ``axes`` and axis 1 the
    kept ones in order: a view when the reduced axes of C-contiguous ``x`` sit before and after the kept ones (rows,
    columns, BatchNorm's (N, C, H*W)); otherwise a transposed copy (kept axes first)."""
    red = {a % x.ndim for a in axes}
    x = contiguous(x)
    kinds = [(d, ax in red) for ax, d in enumerate(x.shape) if d != 1]
    runs: list[list] = []
    for d, r in kinds:
        if runs and runs[-1][1] == r:
            runs[-1][0] *= d
        else:
            runs.append([d, r])
    pattern = tuple(r for _, r in runs)
    sizes = [d for d, _ in runs]
    shapes = {(): (1, 1, 1), (True,): (1, 1, *sizes), (False,): (1, *sizes, 1), (True, False): (*sizes, 1),
              (False, True): (1, *sizes), (True, False, True): tuple(sizes)}
    if pattern in shapes:
        return reshaped(x, shapes[pattern])
    kept = [ax for ax in range(x.ndim) if ax not in red]
    perm = kept + sorted(red)
    t = backend.empty([x.shape[p] for p in perm], x.dtype)
    copy(transposed(x, perm), t)
    return reshaped(t, (1, math.prod(x.shape[p] for p in kept), math.prod(x.shape[p] for p in sorted(red))))
