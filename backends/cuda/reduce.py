"""cuda kernels: sum/max/min over any axes, argmax/argmin along one axis (first occurrence; NaN counts as the
maximum, as numpy). One block per output element, shared-memory trees (:mod:`.tree`); the input is viewed as
(A, B, C) with B kept (:func:`.tree.abc_view`). Sums accumulate in float64 (int64 for integers and bools)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda, float64, int64

from .elementwise import contiguous, copy
from .launch import BLOCK, SPLIT_BLOCKS, rows_grid
from .table import backend
from .tree import MAX, MIN, SUM, abc_view, block_reduce, combine
from .views import is_c_contiguous, reshaped

ARGMAX, ARGMIN = range(2)


def _reduce3(acc):
    @cuda.jit
    def reduce3(op, x, out, init, nseg):
        """out[b * nseg + s] = op over segment s (of nseg equal runs) of x[:, b, :] in flat order; one block per
        (b, s)."""
        sh = cuda.shared.array(BLOCK, acc)
        na, nb, nc = x.shape
        m = na * nc
        seg = (m + nseg - 1) // nseg
        for row in range(cuda.blockIdx.x, nb * nseg, cuda.gridDim.x):
            b, lo = row // nseg, (row % nseg) * seg
            v = init
            for e in range(lo + cuda.threadIdx.x, min(lo + seg, m), BLOCK):
                v = combine(op, v, x[e // nc, b, e % nc])
            r = block_reduce(op, sh, v)
            if cuda.threadIdx.x == 0:
                out[row] = r
    return reduce3


@cuda.jit(device=True)
def _wins(op, v1, i1, v2, i2):
    """Whether candidate (v1, i1) beats (v2, i2): NaN beats numbers, then the larger (argmax) or smaller value,
    then the smaller index; index -1 is no candidate."""
    if i2 < 0:
        return True
    if i1 < 0:
        return False
    n1, n2 = v1 != v1, v2 != v2
    if n1 or n2:
        return i1 < i2 if n1 and n2 else n1
    if v1 == v2:
        return i1 < i2
    return v1 > v2 if op == ARGMAX else v1 < v2


def _arg3(acc):
    @cuda.jit
    def arg3(op, x, out):
        """out[a * C + c] = index along L of the first max/min of x[a, :, c] (one block per (a, c))."""
        sv = cuda.shared.array(BLOCK, acc)
        si = cuda.shared.array(BLOCK, int64)
        na, nl, nc = x.shape
        t = cuda.threadIdx.x
        for row in range(cuda.blockIdx.x, na * nc, cuda.gridDim.x):
            a, c = row // nc, row % nc
            v, i = x[a, 0, c], -1
            for e in range(t, nl, BLOCK):
                if _wins(op, x[a, e, c], e, v, i):
                    v, i = x[a, e, c], e
            sv[t], si[t] = v, i
            cuda.syncthreads()
            s = BLOCK // 2
            while s > 0:
                if t < s and _wins(op, sv[t + s], si[t + s], sv[t], si[t]):
                    sv[t], si[t] = sv[t + s], si[t + s]
                cuda.syncthreads()
                s //= 2
            if t == 0:
                out[row] = si[0]
            cuda.syncthreads()
    return arg3


_REDUCE3 = {"f": _reduce3(float64), "i": _reduce3(int64)}
_ARG3 = {"f": _arg3(float64), "i": _arg3(int64)}


def _kind(dtype: Any) -> str:
    return "f" if np.dtype(dtype).kind == "f" else "i"


def _init(op: int, dtype: Any) -> Any:
    if op == SUM:
        return 0.0 if _kind(dtype) == "f" else 0
    if _kind(dtype) == "f":
        return -np.inf if op == MAX else np.inf
    info = np.iinfo(np.int64)
    return int(info.min if op == MAX else info.max)


def into_flat(out: Any, fn: Any) -> None:
    """``fn(o1)`` with ``o1`` = ``out`` as a 1-D device array (a C-contiguous scratch copied into ``out`` after, when
    ``out`` is strided)."""
    if is_c_contiguous(out):
        fn(reshaped(out, (out.size,)))
        return
    tmp = backend.empty(out.shape, out.dtype)
    fn(reshaped(tmp, (out.size,)))
    copy(tmp, out)


def segments(rows: int, m: int) -> int:
    """How many blocks share one of ``rows`` reductions of ``m`` elements: enough blocks for the device when the
    rows are few and long (a whole-tensor sum would otherwise run on one block), each with >= 16 x BLOCK elements."""
    return max(1, min(SPLIT_BLOCKS // max(rows, 1), m // (16 * BLOCK)))


def reduce_axes(op: int, x: Any, out: Any, axes: tuple[int, ...]) -> None:
    """Two stages when the rows are few and long: blocks reduce segments of a row into partials (kept at the
    accumulator's precision), then one block per row reduces its partials. The segments depend only on the shape,
    so the order of operations, and the result, stay fixed."""
    if out.size == 0:
        return
    x3 = abc_view(x, axes)
    kind, init = _kind(x.dtype), _init(op, x.dtype)
    nseg = segments(out.size, x3.shape[0] * x3.shape[2])
    if nseg == 1:
        into_flat(out, lambda o1: _REDUCE3[kind][rows_grid(o1.size)](op, x3, o1, init, 1))
        return
    part = backend.empty((out.size * nseg,), np.float64 if kind == "f" else np.int64)
    _REDUCE3[kind][rows_grid(part.size)](op, x3, part, init, nseg)
    part3 = reshaped(part, (1, out.size, nseg))
    into_flat(out, lambda o1: _REDUCE3[kind][rows_grid(o1.size)](op, part3, o1, init, 1))


def _reduce_kernel(op: int):
    def kernel(x: Any, out: Any, axes: tuple[int, ...], keepdims: bool) -> None:
        reduce_axes(op, x, out, axes)

    return kernel


backend.register("sum")(_reduce_kernel(SUM))
backend.register("max")(_reduce_kernel(MAX))
backend.register("min")(_reduce_kernel(MIN))


def _arg_kernel(op: int):
    def kernel(x: Any, out: Any, axis: int, keepdims: bool) -> None:
        if out.size == 0:
            return
        ax = axis % x.ndim
        x = contiguous(x)
        a = int(np.prod(x.shape[:ax], dtype=np.int64))
        x3 = reshaped(x, (a, x.shape[ax], x.size // max(a * x.shape[ax], 1)))
        into_flat(out, lambda o1: _ARG3[_kind(x.dtype)][rows_grid(o1.size)](op, x3, o1))

    return kernel


backend.register("argmax")(_arg_kernel(ARGMAX))
backend.register("argmin")(_arg_kernel(ARGMIN))
