"""The 2x2 / stride-2 max-pool window shared by the pool's backward (pool.py) and the fused kernels around it
(fused_grad.py, fused_pool.py): which tap wins, and how a row of window gradients lands on the input plane. The
windows do not overlap, so each input element is written exactly once."""

from __future__ import annotations

from numba import njit


@njit(cache=True, inline="always")
def window_tap(a, b, p, q):
    """(max, tap) of a window a b / p q: tap 0..3 in row-major order, the first maximum; a NaN wins (the first)."""
    t1 = (b > a) | ((b != b) & (a == a))
    m = b if t1 else a
    t2 = (p > m) | ((p != p) & (m == m))
    m = p if t2 else m
    t3 = (q > m) | ((q != q) & (m == m))
    m = q if t3 else m
    return m, 3 if t3 else (2 if t2 else (1 if t1 else 0))


@njit(cache=True, inline="always")
def scatter_rows(g, tap, top, bottom):
    """The two input rows ``top``, ``bottom`` under a row of windows: g[z] at window z's tap tap[z] (0..3; any
    other value: nowhere), zeros at the other taps and in the columns past the last window. One row per loop:
    fewer streams per loop keep LLVM's alias checks vectorizable."""
    pw = g.shape[0]
    zero = top.dtype.type(0)
    for z in range(pw):
        v, s = g[z], tap[z]
        top[2 * z] = v if s == 0 else zero
        top[2 * z + 1] = v if s == 1 else zero
    for z in range(pw):
        v, s = g[z], tap[z] - 2
        bottom[2 * z] = v if s == 0 else zero
        bottom[2 * z + 1] = v if s == 1 else zero
    top[2 * pw:] = 0
    bottom[2 * pw:] = 0


@njit(cache=True)
def zero_rows_from(gx, n, c, row):
    """Rows row.. of plane (n, c) of gx: the rows below the last window."""
    for a in range(row, gx.shape[2]):
        for b in range(gx.shape[3]):
            gx[n, c, a, b] = 0


@njit(cache=True)
def close_plane(gx, n, c, row, col):
    """:func:`zero_rows_from` and the plane's gradient sum for the bias from its per-column float64 sums ``col``
    (added across the columns in order: the fused kernels' bias gradients agree bit for bit)."""
    zero_rows_from(gx, n, c, row)
    acc = 0.0
    for z in range(col.shape[0]):
        acc += col[z]
    return acc
