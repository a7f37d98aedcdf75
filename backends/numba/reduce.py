"""numba kernels: sum / max / min over axes and argmax / argmin over one axis.

Every reduction is brought to a 3-D form ``(A, B, C)`` reducing over A and C and keeping B (sum over N, H, W
of an NCHW tensor is ``(N, C, H*W)``; a trailing reduction is ``(1, rows, K)``; a full one ``(1, 1, size)``).
Kept axes that are not one contiguous block are first moved together by a strided copy. Sums accumulate in
float64 (numpy's pairwise float32 sum is about as accurate). Parallel work items are blocks of B when B is
large, else (A-block, C-block) tiles whose partial results are combined serially.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._layout import CHUNK, by_size, serial_twin
from .elementwise import COPY, run_unary
from .table import backend

SUM, MAX, MIN = 0, 1, 2
_B_BLOCK = 64


@njit(cache=True, error_model="numpy")
def _init(op):
    return 0.0 if op == SUM else (-math.inf if op == MAX else math.inf)


@njit(cache=True, error_model="numpy")
def _combine(op, acc, v):
    if op == SUM:
        return acc + v
    if op == MAX:
        return v if (v > acc or v != v) else acc  # NaN wins, as in np.max
    return v if (v < acc or v != v) else acc


@njit(parallel=True, cache=True, error_model="numpy")
def reduce_abc(op, x, out):
    """out[b] = reduce_{a, c} x[a, b, c]."""
    na, nb, nc = x.shape
    if nb >= 16:
        bblk = max(1, min(_B_BLOCK, nb // 16))
        nblk = (nb + bblk - 1) // bblk
        for t in prange(nblk):
            b0 = t * bblk
            b1 = min(nb, b0 + bblk)
            acc = np.full(b1 - b0, _init(op))
            for a in range(na):
                for b in range(b0, b1):
                    s = acc[b - b0]
                    for c in range(nc):
                        s = _combine(op, s, x[a, b, c])
                    acc[b - b0] = s
            for b in range(b0, b1):
                out[b] = acc[b - b0]
        return
    ta = min(na, 64)
    cch = max(1, (nc + ta * CHUNK - 1) // (ta * CHUNK)) if nc > CHUNK else 1
    cw = (nc + cch - 1) // cch
    part = np.empty((ta * cch, nb))
    for t in prange(ta * cch):
        ia, ic = t // cch, t % cch
        a0, a1 = ia * na // ta, (ia + 1) * na // ta
        c0, c1 = ic * cw, min(nc, (ic + 1) * cw)
        for b in range(nb):
            s = _init(op)
            for a in range(a0, a1):
                for c in range(c0, c1):
                    s = _combine(op, s, x[a, b, c])
            part[t, b] = s
    for b in range(nb):
        s = _init(op)
        for t in range(ta * cch):
            s = _combine(op, s, part[t, b])
        out[b] = s


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def sum_rows_b(x, out):
    """out[b] = sum_{a, c} x[a, b, c], one thread per b: :func:`reduce_abc`'s SUM for B >= 16 without the op
    dispatch, and with fastmath "reassoc" so LLVM vectorizes the float64 sum (bias gradients: (64, 20, 24*24)
    0.43 -> 0.04 ms, (32, 64, 32*32) 1.14 -> 0.12 ms). NaN/inf propagate as before."""
    na, nb, nc = x.shape
    for b in prange(nb):
        s = 0.0
        for a in range(na):
            row = x[a, b]
            for c in range(nc):
                s += row[c]
        out[b] = s


@njit(parallel=True, cache=True)
def argmax_akc(x, out, largest):
    """out[a, c] = first index k of the maximum (``largest``) or minimum of x[a, :, c] (the first NaN if any,
    as numpy)."""
    na, nk, nc = x.shape
    for t in prange(na * nc):
        a, c = t // nc, t % nc
        best, arg = x[a, 0, c], 0
        if best == best:
            for k in range(1, nk):
                v = x[a, k, c]
                if v != v:
                    arg = k
                    break
                if (v > best) if largest else (v < best):
                    best, arg = v, k
        out[a, c] = arg


# the work split depends on the shape only, never on threads: the serial twins give the same sums
reduce_abc_serial, sum_rows_b_serial = serial_twin(reduce_abc), serial_twin(sum_rows_b)


def _contiguous(x: np.ndarray) -> np.ndarray:
    if x.flags.c_contiguous:
        return x
    out = np.empty(x.shape, x.dtype)
    run_unary(COPY, x, out)
    return out


def as_abc(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous (A, B, C) view (or copy) of ``x``: reduce over A and C, keep B."""
    kept = [i for i in range(x.ndim) if i not in axes and x.shape[i] != 1]
    if not kept:
        return _contiguous(x).reshape(1, 1, x.size)
    lo, hi = kept[0], kept[-1]
    if any(i in axes and x.shape[i] != 1 for i in range(lo, hi + 1)):  # kept axes not one block: move them
        red = [i for i in range(x.ndim) if i not in kept]
        x = _contiguous(x.transpose(red + kept))
        lo, hi = len(red), x.ndim - 1
    x = _contiguous(x)
    sh = x.shape
    return x.reshape(math.prod(sh[:lo]), math.prod(sh[lo:hi + 1]), math.prod(sh[hi + 1:]))


def _reduce(op: int, x: np.ndarray, out: np.ndarray, axes: tuple[int, ...]) -> None:
    if out.size == 0:
        return
    x3 = as_abc(x, axes)
    if op == SUM and x3.shape[1] >= 16:
        kernel = by_size(sum_rows_b, sum_rows_b_serial, x3.size)
    else:
        rk = by_size(reduce_abc, reduce_abc_serial, x3.size)
        kernel = lambda a, o: rk(op, a, o)  # noqa: E731
    if out.flags.c_contiguous:
        kernel(x3, out.reshape(-1))
        return
    tmp = np.empty(out.size, out.dtype)
    kernel(x3, tmp)
    run_unary(COPY, tmp.reshape(out.shape), out)


@backend.register("sum")
def sum_(x: np.ndarray, out: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> None:
    if x.size == 0:
        out[...] = 0
        return
    _reduce(SUM, x, out, axes)


@backend.register("max")
def max_(x: np.ndarray, out: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> None:
    _reduce(MAX, x, out, axes)


@backend.register("min")
def min_(x: np.ndarray, out: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> None:
    _reduce(MIN, x, out, axes)


def _arg(x: np.ndarray, out: np.ndarray, axis: int, largest: bool) -> None:
    x = _contiguous(x)
    sh = x.shape
    x3 = x.reshape(math.prod(sh[:axis]), sh[axis], math.prod(sh[axis + 1:]))
    argmax_akc(x3, out.reshape(x3.shape[0], x3.shape[2]), largest)


@backend.register("argmax")
def argmax(x: np.ndarray, out: np.ndarray, axis: int, keepdims: bool) -> None:
    _arg(x, out, axis, True)


@backend.register("argmin")
def argmin(x: np.ndarray, out: np.ndarray, axis: int, keepdims: bool) -> None:
    _arg(x, out, axis, False)
