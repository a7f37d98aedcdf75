"""numba kernels: batch norm (training forward, its fused backward, inference), parallel over channels
(statistics) or over (n, c) planes (the inference affine map). Statistics accumulate in float64.
Input ``(N, C, *spatial)`` is viewed as ``(N, C, L)``."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numba import njit, prange

from .table import backend

# fastmath "reassoc" (only): lets LLVM vectorize the float64 channel sums with several partial accumulators; a
# strict left-to-right sum is one dependent add per element. (32, 64, 32x32) float32: forward 1.32 -> 0.30 ms,
# backward 1.11 -> 0.55 ms. NaN/inf semantics are unchanged (no "nnan"/"ninf").
_REASSOC = {"reassoc"}


@njit(cache=True, error_model="numpy")
def _affine(w, b, mean, var, eps):
    """A channel's (scale, shift) from its statistics: y = x * scale + shift."""
    scale = w / math.sqrt(var + eps)
    return scale, b - mean * scale


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_REASSOC)
def bn_train(x, w, b, y, mean, var, eps):
    nn, nl, nc = x.shape[0], x.shape[2], w.shape[0]  # x may be the parent of a channel prefix (_ncl)
    m = nn * nl
    for c in prange(nc):
        s = 0.0
        for n in range(nn):
            for i in range(nl):
                s += x[n, c, i]
        mu = s / m
        q = 0.0
        for n in range(nn):
            for i in range(nl):
                d = x[n, c, i] - mu
                q += d * d
        mean[c] = mu
        var[c] = q / m
        # normalize with the statistics as stored (rounded to x's dtype), as bn_apply does from them
        scale, shift = _affine(w[c], b[c], mean[c], var[c], eps)
        for n in range(nn):
            for i in range(nl):
                y[n, c, i] = x[n, c, i] * scale + shift


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_REASSOC)
def bn_train_grad(gy, x, w, mean, var, gx, gw, gb, eps):
    nn, nl, nc = x.shape[0], x.shape[2], w.shape[0]
    m = nn * nl
    for c in prange(nc):
        invstd = 1.0 / math.sqrt(var[c] + eps)
        mu = mean[c]
        sg, sgx = 0.0, 0.0
        for n in range(nn):
            for i in range(nl):
                g = gy[n, c, i]
                sg += g
                sgx += g * (x[n, c, i] - mu)
        sgx *= invstd  # sum(gy * xhat)
        gb[c] = sg
        gw[c] = sgx
        k = w[c] * invstd / m
        for n in range(nn):
            for i in range(nl):
                xhat = (x[n, c, i] - mu) * invstd
                gx[n, c, i] = k * (m * gy[n, c, i] - sg - xhat * sgx)


@njit(parallel=True, cache=True, error_model="numpy")
def bn_apply(x, w, b, mean, var, y, eps, relu):
    """bn_train's y from its stored statistics, bit for bit, then relu (the elementwise kernel's: 0 unless the
    value is > 0 or NaN; taken before the float32 store, which keeps the sign or gives +0), over (n, c) planes.
    ``x`` may be the parent of a channel prefix."""
    nn, nl, nc = x.shape[0], x.shape[2], w.shape[0]
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        scale, shift = _affine(w[c], b[c], mean[c], var[c], eps)
        if relu:
            for i in range(nl):
                v = x[n, c, i] * scale + shift
                y[n, c, i] = v if not v <= 0 else 0.0
        else:
            for i in range(nl):
                y[n, c, i] = x[n, c, i] * scale + shift


@njit(parallel=True, cache=True, error_model="numpy")
def bn_infer(x, w, b, mean, var, y, eps):
    nn, nc, nl = x.shape
    for t in prange(nn * nc):
        n, c = t // nc, t % nc
        scale = w[c] / math.sqrt(var[c] + eps)
        shift = b[c] - mean[c] * scale
        for i in range(nl):
            y[n, c, i] = x[n, c, i] * scale + shift


def _ncl(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], -1)


def _prefix_parent(a: np.ndarray) -> np.ndarray | None:
    """A channel slice ``a`` of a larger contiguous (N, C', ...) array (a concat the memory plan stores as a view of
    a longer one, graph/prefix_views.py) as the contiguous (N, C', L) array that starts where ``a`` starts; None
    for any other layout. The training kernels take C from the weights and read only its first C channels, at full
    speed: a strided array would compile numba's generic-layout loops, 3-4x slower."""
    n, c = a.shape[0], a.shape[1]
    ell = a[0, 0].size if n and c else 0
    row, item = ell * a.itemsize, a.itemsize
    if a.flags.c_contiguous or n < 2 or not row or not a[0].flags.c_contiguous or a.strides[0] % row \
            or a.strides[0] <= c * row:
        return None
    return np.lib.stride_tricks.as_strided(a, (n, a.strides[0] // row, ell), (a.strides[0], row, item))


def _ncl_parent(a: np.ndarray) -> np.ndarray:
    p = _prefix_parent(a)
    return _ncl(a) if p is None else p


def _calls_on_views(*arrays: np.ndarray) -> bool:
    """Whether (N, C, L) reshapes of these arrays are views (then a specialized call may keep them)."""
    return all(a.flags.c_contiguous for a in arrays)


def _ncl_view(x: np.ndarray) -> bool:
    return x.flags.c_contiguous or _prefix_parent(x) is not None


def _bn_train_call(x, w, b, out, eps) -> Callable[[], None]:
    y, mean, var = out
    return functools.partial(bn_train, _ncl_parent(x), w, b, _ncl(y), mean, var, float(eps))


def _bn_train_grad_call(gy, x, w, mean, var, out, eps) -> Callable[[], None]:
    gx, gw, gb = out
    return functools.partial(bn_train_grad, _ncl(gy), _ncl_parent(x), w, mean, var, _ncl(gx), gw, gb, float(eps))


def _bn_apply_call(x, w, b, mean, var, out, eps, relu) -> Callable[[], None]:
    return functools.partial(bn_apply, _ncl_parent(x), w, b, mean, var, _ncl(out), float(eps), bool(relu))


def _bn_infer_call(x, w, b, mean, var, out, eps) -> Callable[[], None]:
    x3 = _ncl(x)
    return functools.partial(bn_infer, x3, w, b, mean, var, out.reshape(x3.shape), float(eps))


@backend.register("batch_norm_train")
def batch_norm_train(x, w, b, out, eps) -> None:
    _bn_train_call(x, w, b, out, eps)()


@backend.register("batch_norm_train_grad")
def batch_norm_train_grad(gy, x, w, mean, var, out, eps) -> None:
    _bn_train_grad_call(gy, x, w, mean, var, out, eps)()


@backend.register("batch_norm_apply")
def batch_norm_apply(x, w, b, mean, var, out, eps, relu) -> None:
    _bn_apply_call(x, w, b, mean, var, out, eps, relu)()


@backend.register("batch_norm_infer")
def batch_norm_infer(x, w, b, mean, var, out, eps) -> None:
    _bn_infer_call(x, w, b, mean, var, out, eps)()


batch_norm_train.specialize = lambda x, w, b, out, eps: (
    _bn_train_call(x, w, b, out, eps) if _calls_on_views(*out, w, b) and _ncl_view(x) else None)
batch_norm_train_grad.specialize = lambda gy, x, w, mean, var, out, eps: (
    _bn_train_grad_call(gy, x, w, mean, var, out, eps) if _calls_on_views(gy, *out, w, mean, var) and _ncl_view(x)
    else None)
batch_norm_infer.specialize = lambda x, w, b, mean, var, out, eps: (
    _bn_infer_call(x, w, b, mean, var, out, eps) if _calls_on_views(x, out, w, b, mean, var) else None)
batch_norm_apply.specialize = lambda x, w, b, mean, var, out, eps, relu: (
    _bn_apply_call(x, w, b, mean, var, out, eps, relu) if _calls_on_views(out, w, b, mean, var) and _ncl_view(x)
    else None)
