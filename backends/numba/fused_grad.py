"""numba kernels for the fused backward primitives of joint graphs (engine/ops/fused_grad.py).

``max_pool2d_relu_grad``: for the common 2x2 / stride 2 pool without padding (windows do not overlap) one
parallel pass over (n, c) planes finds each window's first maximum as max_pool2d_grad does, writes the incoming
gradient there unless the maximum (the ReLU output at that tap) is <= 0, zeros elsewhere, and adds what it wrote
into a per-plane partial sum for the bias gradient. Other pools run the decomposition on the numba kernels.

``log_softmax_nll``: one serial pass over the rows of the (N, C) logits (a classifier's few hundred values: a
parallel launch would cost more than the work), the log-sum-exp once per row, float64 sums, the one-hot class
coefficients implied by the targets; class weights or label smoothing run the decomposition.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numba import njit, prange

from engine.ops.fused_grad import log_softmax_nll_p, max_pool2d_relu_grad_p
from engine.ops.loss import check_class_targets

from ._layout import by_size, serial_twin
from .pool import _chunks, _is_2x2
from .table import backend
from .window2x2 import close_plane, scatter_rows, window_tap


@njit(parallel=True, cache=True)
def pool_relu_bwd_2x2(gy, y, gx, part, nch):
    """gx = relu_grad(max_pool_bwd_2x2(gy, y), y) and part[n*C + c] = the sum of plane (n, c) of gx (float64).
    Tie and NaN rules as max_pool_bwd_2x2 (first maximum in row-major order, a NaN wins); the ReLU mask as
    relu_grad (``y <= 0`` gives 0, a NaN y passes the gradient)."""
    nn, nc, _, _ = y.shape
    _, _, oh, ow = gy.shape
    planes = nn * nc
    for k in prange(nch):
        win = np.empty(ow, np.int32)
        g = np.empty(ow, gx.dtype)
        col = np.empty(ow, np.float64)  # per-column sums: a scalar float reduction would not vectorize
        zero = gx.dtype.type(0)
        for t in range(k * planes // nch, (k + 1) * planes // nch):
            n, c = t // nc, t % nc
            col[:] = 0
            for r in range(oh):
                for z in range(ow):
                    m, win[z] = window_tap(y[n, c, 2 * r, 2 * z], y[n, c, 2 * r, 2 * z + 1], y[n, c, 2 * r + 1, 2 * z],
                                           y[n, c, 2 * r + 1, 2 * z + 1])
                    g[z] = zero if m <= zero else gy[n, c, r, z]
                for z in range(ow):
                    col[z] += g[z]
                scatter_rows(g, win, gx[n, c, 2 * r], gx[n, c, 2 * r + 1])
            part[t] = close_plane(gx, n, c, 2 * oh, col)


_pool_relu_bwd_2x2_serial = serial_twin(pool_relu_bwd_2x2)


def _call(gy: np.ndarray, y: np.ndarray, out: tuple, kernel, stride, padding, dilation, ceil_mode,
          bias_grad: bool) -> Callable[[], None] | None:
    """The fused pass on these arrays, or None where it does not apply (then the decomposition runs)."""
    gx = out[0]
    pool = tuple(tuple(a) for a in (kernel, stride, padding, dilation))
    ok = all(a.flags.c_contiguous and a.dtype == gx.dtype for a in (gy, y, gx)) and gx.dtype.kind == "f"
    if not ok or not _is_2x2(y.shape, gy.shape, *pool) or gx.size == 0:
        return None
    n, c = y.shape[:2]
    part = np.empty(n * c, np.float64)
    fn = by_size(pool_relu_bwd_2x2, _pool_relu_bwd_2x2_serial, gx.size)
    nch = _chunks(y.shape)
    gb = out[1] if bias_grad else None

    def run() -> None:
        fn(gy, y, gx, part, nch)
        if gb is not None:
            gb[...] = part.reshape(n, c).sum(axis=0)

    return run


@backend.register("max_pool2d_relu_grad")
def max_pool2d_relu_grad(gy: np.ndarray, y: np.ndarray, out: tuple, **attrs) -> None:
    call = _call(gy, y, out, **attrs)
    if call is None:
        max_pool2d_relu_grad_p.decomposed_kernel(backend.kernel)(gy, y, out=out, **attrs)
    else:
        call()


max_pool2d_relu_grad.specialize = _call


@njit(cache=True, error_model="numpy")
def log_softmax_nll_rows(x, t, g, ignore_index, loss, gx):
    """class_coef's one-hot coefficients (unweighted, no smoothing) on the fly: loss[()] = -sum over counted rows of
    log_softmax(x)[i, t[i]] / denom and gx = m - exp(log_softmax(x)) * rowsum(m), m = -(g / denom) * onehot(t),
    denom the count of rows whose target is not ``ignore_index``. Every value the unfused float32 kernels round is
    rounded here too (through ``r``, an array of gx's dtype): Adam's update amplifies a last-bit difference in a
    near-zero gradient. Returns the first out-of-range target's row, else -1 (nothing written)."""
    n, c = x.shape
    count = 0
    for i in range(n):
        if t[i] != ignore_index:
            if t[i] < 0 or t[i] >= c:
                return i
            count += 1
    r = np.empty(c + 4, gx.dtype)  # r[:c]: a row's log-probabilities; r[c:]: -scale, 0, denom, a product
    r[c + 2] = count
    r[c] = g[0] / r[c + 2]
    r[c] = -r[c]
    r[c + 1] = 0
    total = 0.0
    for i in range(n):
        ti = t[i] if t[i] != ignore_index else -1
        mx = -math.inf
        for j in range(c):
            mx = max(mx, x[i, j])
        se = 0.0
        for j in range(c):
            se += math.exp(x[i, j] - mx)
        lse = math.log(se)
        for j in range(c):
            r[j] = (x[i, j] - mx) - lse  # as log_softmax's kernel
        if ti >= 0:
            total -= r[ti]
        rm = r[c] if ti >= 0 else r[c] * r[c + 1]
        for j in range(c):
            r[c + 3] = math.exp(r[j]) * rm
            gx[i, j] = (r[c] if j == ti else r[c] * r[c + 1]) - r[c + 3]
    loss[()] = total / r[c + 2]
    return -1


def _nll_call(x: np.ndarray, t: np.ndarray, g: np.ndarray, out: tuple, weight: tuple, label_smoothing: float,
              ignore_index: int, op: str, **coef_attrs) -> Callable[[], None] | None:
    """The one-pass kernel on these arrays, or None where it does not apply (then the decomposition runs)."""
    loss, gx = out
    if weight or label_smoothing or x.dtype.kind != "f" or t.ndim != 1 or not x.dtype == gx.dtype == g.dtype \
            or not (x.flags.c_contiguous and gx.flags.c_contiguous):
        return None
    g1 = g.reshape(1)

    def run() -> None:
        if log_softmax_nll_rows(x, t, g1, ignore_index, loss, gx) >= 0:
            check_class_targets(t, x.shape[1], ignore_index, op)  # class_coef's own error

    return run


@backend.register("log_softmax_nll")
def log_softmax_nll(x: np.ndarray, t: np.ndarray, g: np.ndarray, out: tuple, **attrs) -> None:
    call = _nll_call(x, t, g, out, **attrs)
    if call is None:
        log_softmax_nll_p.decomposed_kernel(backend.kernel)(x, t, g, out=out, **attrs)
    else:
        call()


log_softmax_nll.specialize = _nll_call
