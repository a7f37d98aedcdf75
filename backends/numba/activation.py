"""numba kernels: softmax / log_softmax along one axis, max-shifted, as (A, K, C) with the reduced axis K;
parallel over A x C-chunks (each work item owns its output columns). Also clamp and the single-pass activation
gradients (``relu_grad`` ... ``clamp_grad``, semantics in engine/ops/elementwise.py): one ``prange`` over
CHUNK-element pieces of the flattened (C-contiguous) operands, whose inner loops are branch-free selects LLVM
vectorizes (those calling ``exp``, elu and silu, stay scalar without SVML). Scalars arrive in the arrays' dtype,
so float32 math stays float32. ``out`` may alias an input (graph in-place plans): every element is read before
it is written. One kernel per gradient on purpose: a single kernel dispatching on an op code inside the loop
measured 25-30% slower for relu_grad and sigmoid_grad on 2M float32 (LLVM did not unswitch the dispatch)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numba import njit, prange

from ._layout import CHUNK, by_size, nothing, same_storage, serial_twin
from .table import backend

_CW = 256  # columns per work item


@njit(parallel=True, cache=True, error_model="numpy")
def softmax_akc(x, out, log):
    na, nk, nc = x.shape
    nch = (nc + _CW - 1) // _CW
    for t in prange(na * nch):
        a, q = t // nch, t % nch
        c0 = q * _CW
        c1 = min(nc, c0 + _CW)
        m = np.full(c1 - c0, -math.inf)
        s = np.zeros(c1 - c0)
        for k in range(nk):
            for c in range(c0, c1):
                m[c - c0] = max(m[c - c0], x[a, k, c])
        for k in range(nk):
            for c in range(c0, c1):
                s[c - c0] += math.exp(x[a, k, c] - m[c - c0])
        for k in range(nk):
            for c in range(c0, c1):
                d = x[a, k, c] - m[c - c0]
                out[a, k, c] = d - math.log(s[c - c0]) if log else math.exp(d) / s[c - c0]


softmax_akc_serial = serial_twin(softmax_akc)


def _run(x: np.ndarray, out: np.ndarray, axis: int, log: bool) -> None:
    if out.size == 0:
        return
    x = np.ascontiguousarray(x)
    sh = x.shape
    shape3 = (math.prod(sh[:axis]), sh[axis], math.prod(sh[axis + 1:]))
    by_size(softmax_akc, softmax_akc_serial, x.size)(x.reshape(shape3), out.reshape(shape3), log)


@backend.register("softmax")
def softmax(x: np.ndarray, out: np.ndarray, axis: int) -> None:
    _run(x, out, axis, False)


@backend.register("log_softmax")
def log_softmax(x: np.ndarray, out: np.ndarray, axis: int) -> None:
    _run(x, out, axis, True)


# --- clamp and the activation gradients: flat, contiguous, one prange over chunks -------------------------------
# Each work item loops over chunk views (x[i0:i1]) from index 0: LLVM then knows the index is non-negative, drops
# numba's negative-index wraparound and emits unit-stride vector loads/stores (indexing x[i] with i from
# range(c * CHUNK, ...) compiled to AVX-512 gathers/scatters instead).
@njit(parallel=True, cache=True, error_model="numpy")
def clamp_flat(x, out, lo, hi):
    n = out.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        xc, oc = x[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = xc[i]
            v = lo if v < lo else v  # NaN stays NaN; lo > hi gives hi, as torch
            oc[i] = hi if v > hi else v


@njit(parallel=True, cache=True, error_model="numpy")
def relu_grad_flat(g, y, out):
    n = out.shape[0]
    z = out.dtype.type(0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, yc, oc = g[i0:i1], y[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            oc[i] = z if yc[i] <= z else gc[i]  # a select, not gy * (y > 0): NaN y passes gy, NaN gy at y <= 0 is 0


# In-place forms of relu_grad, for when the planner makes the output the storage of a dying input: with ``out``
# aliasing an operand, LLVM's runtime alias check fails and the loop above runs unvectorized (4-5x slower).
@njit(parallel=True, cache=True, error_model="numpy")
def relu_grad_into_g(g, y):
    n = g.shape[0]
    z = g.dtype.type(0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, yc = g[i0:i1], y[i0:i1]
        for i in range(i1 - i0):
            gc[i] = z if yc[i] <= z else gc[i]


@njit(parallel=True, cache=True, error_model="numpy")
def relu_grad_into_y(g, y):
    n = y.shape[0]
    z = y.dtype.type(0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, yc = g[i0:i1], y[i0:i1]
        for i in range(i1 - i0):
            yc[i] = z if yc[i] <= z else gc[i]


@njit(parallel=True, cache=True, error_model="numpy")
def leaky_relu_grad_flat(g, x, out, slope):
    n = out.shape[0]
    z = out.dtype.type(0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, xc, oc = g[i0:i1], x[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            gi = gc[i]
            oc[i] = gi if xc[i] > z else gi * slope


@njit(parallel=True, cache=True, error_model="numpy")
def elu_grad_flat(g, x, out, alpha):
    n = out.shape[0]
    z = out.dtype.type(0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, xc, oc = g[i0:i1], x[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = xc[i]
            oc[i] = gc[i] * alpha * np.exp(v) if v <= z else gc[i]


@njit(parallel=True, cache=True, error_model="numpy")
def sigmoid_grad_flat(g, y, out):
    n = out.shape[0]
    one = out.dtype.type(1)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, yc, oc = g[i0:i1], y[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = yc[i]
            oc[i] = gc[i] * (one - v) * v


@njit(parallel=True, cache=True, error_model="numpy")
def tanh_grad_flat(g, y, out):
    n = out.shape[0]
    one = out.dtype.type(1)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, yc, oc = g[i0:i1], y[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = yc[i]
            oc[i] = gc[i] * (one - v * v)


@njit(parallel=True, cache=True, error_model="numpy")
def silu_grad_flat(g, x, out):
    n = out.shape[0]
    z = out.dtype.type(0)
    one = out.dtype.type(1)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, xc, oc = g[i0:i1], x[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = xc[i]
            e = np.exp(-abs(v))  # sigmoid split by sign, as the forward kernel: exp never overflows
            s = one / (one + e) if v >= z else e / (one + e)
            oc[i] = gc[i] * s * (one + v * (one - s))


@njit(parallel=True, cache=True, error_model="numpy")
def clamp_grad_flat(g, x, out, lo, hi):
    n = out.shape[0]
    z = out.dtype.type(0)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, xc, oc = g[i0:i1], x[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = xc[i]
            oc[i] = gc[i] if (v >= lo) & (v <= hi) else z  # NaN x: 0


@njit(parallel=True, cache=True, error_model="numpy")
def clamp_into(x, lo, hi):
    """clamp_flat with ``out`` = ``x`` (the planner's in-place form; see relu_grad_into_g)."""
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        xc = x[c * CHUNK:min(n, (c + 1) * CHUNK)]
        for i in range(xc.shape[0]):
            v = xc[i]
            v = lo if v < lo else v
            xc[i] = hi if v > hi else v


# the serial twins of the hot flat kernels, for small arrays (see _layout.SERIAL_BELOW)
_SERIAL = {fn: serial_twin(fn) for fn in (clamp_flat, clamp_into, relu_grad_flat, relu_grad_into_g, relu_grad_into_y)}


def _flat_call(fn, out: np.ndarray, *arrays: np.ndarray, scalars: tuple = ()) -> Callable[[], None] | None:
    """``fn(*flat operands, *scalars)`` as a call when ``out`` and every operand are C-contiguous (flat views,
    never copies), else None; the serial twin of ``fn`` where it has one and the array is small."""
    if out.size == 0:
        return nothing
    if not (out.flags.c_contiguous and all(a.flags.c_contiguous for a in arrays)):
        return None
    fn = by_size(fn, _SERIAL.get(fn, fn), out.size)
    return functools.partial(fn, *(a.reshape(-1) for a in arrays), *scalars)


def _flat(fn, out: np.ndarray, *arrays: np.ndarray, scalars: tuple = ()) -> None:
    """Run ``fn(*flat inputs, flat out, *scalars)`` on C-contiguous 1-D views (copies only for strided operands)."""
    call = _flat_call(fn, out, *arrays, out, scalars=scalars)
    if call is not None:
        call()
        return
    ins = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    dst = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
    fn(*ins, dst.reshape(-1), *scalars)
    if dst is not out:
        out[...] = dst


def _bounds(dtype: np.dtype, lo: float | None, hi: float | None) -> tuple:
    t = dtype.type
    return t(-np.inf if lo is None else lo), t(np.inf if hi is None else hi)


def _clamp_call(x: np.ndarray, out: np.ndarray, min: float | None, max: float | None  # noqa: A002
                ) -> Callable[[], None] | None:
    if same_storage(out, x):
        return _flat_call(clamp_into, out, out, scalars=_bounds(out.dtype, min, max))
    return _flat_call(clamp_flat, out, x, out, scalars=_bounds(out.dtype, min, max))


@backend.register("clamp")
def clamp(x: np.ndarray, out: np.ndarray, min: float | None, max: float | None) -> None:  # noqa: A002
    call = _clamp_call(x, out, min, max)
    if call is None:
        _flat(clamp_flat, out, x, scalars=_bounds(out.dtype, min, max))
    else:
        call()


clamp.specialize = _clamp_call


def _relu_grad_call(gy: np.ndarray, y: np.ndarray, out: np.ndarray) -> Callable[[], None] | None:
    if out.size and same_storage(out, gy):
        return _flat_call(relu_grad_into_g, out, out, y)
    if out.size and same_storage(out, y):
        return _flat_call(relu_grad_into_y, out, gy, out)
    return _flat_call(relu_grad_flat, out, gy, y, out)


@backend.register("relu_grad")
def relu_grad(gy: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    call = _relu_grad_call(gy, y, out)
    if call is None:
        _flat(relu_grad_flat, out, gy, y)
    else:
        call()


relu_grad.specialize = _relu_grad_call


@backend.register("leaky_relu_grad")
def leaky_relu_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray, negative_slope: float) -> None:
    _flat(leaky_relu_grad_flat, out, gy, x, scalars=(out.dtype.type(negative_slope),))


@backend.register("elu_grad")
def elu_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray, alpha: float) -> None:
    _flat(elu_grad_flat, out, gy, x, scalars=(out.dtype.type(alpha),))


@backend.register("sigmoid_grad")
def sigmoid_grad(gy: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    _flat(sigmoid_grad_flat, out, gy, y)


@backend.register("tanh_grad")
def tanh_grad(gy: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    _flat(tanh_grad_flat, out, gy, y)


@backend.register("silu_grad")
def silu_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    _flat(silu_grad_flat, out, gy, x)


@backend.register("clamp_grad")
def clamp_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray, min: float | None, max: float | None) -> None:  # noqa: A002
    _flat(clamp_grad_flat, out, gy, x, scalars=_bounds(out.dtype, min, max))
