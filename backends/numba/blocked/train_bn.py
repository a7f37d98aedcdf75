"""numba kernels of the blocked training batch norm and its gradient (engine/ops/blocked_train.py).

x is (N, CB, H, W, c), seen as (N, CB, L, c). Statistics accumulate in float64 per lane (one channel each) over
(N, L), one prange item per channel block, the c lanes in the innermost loop so they vectorize; the elementwise
passes run one prange item per (image, channel block). Same formulas, orders and roundings per channel as the
NCHW kernels (backends/numba/norm.py), so the statistics match theirs up to the float64 summation order. Pad lanes
(channels >= C) take no part in the statistics and are written as zeros.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._layout import serial_twin
from ..table import backend
from .reorder import SERIAL_ELEMENTS

_REASSOC = {"reassoc"}  # as norm.py: several partial float64 accumulators per lane


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_REASSOC)
def _stats(x, mean, var):
    nn, ncb, nl, vl = x.shape
    nc = mean.shape[0]
    m = nn * nl
    for cb in prange(ncb):
        s = np.zeros(vl, np.float64)
        for n in range(nn):
            for i in range(nl):
                for q in range(vl):
                    s[q] += x[n, cb, i, q]
        mu = s / m
        sq = np.zeros(vl, np.float64)
        for n in range(nn):
            for i in range(nl):
                for q in range(vl):
                    d = x[n, cb, i, q] - mu[q]
                    sq[q] += d * d
        for q in range(min(vl, nc - cb * vl)):
            mean[cb * vl + q] = mu[q]
            var[cb * vl + q] = sq[q] / m


@njit(parallel=True, cache=True, error_model="numpy")
def _apply(x, scale, shift, y, relu):
    """y = x * scale + shift per lane, then (``relu``) norm.py's bn_apply relu before the store."""
    nn, ncb, nl, vl = x.shape
    for t in prange(nn * ncb):
        n, cb = t // ncb, t % ncb
        sc, sh = scale[cb], shift[cb]
        if relu:
            for i in range(nl):
                for q in range(vl):
                    v = x[n, cb, i, q] * sc[q] + sh[q]
                    y[n, cb, i, q] = v if not v <= 0 else 0.0
        else:
            for i in range(nl):
                for q in range(vl):
                    y[n, cb, i, q] = x[n, cb, i, q] * sc[q] + sh[q]


@njit(parallel=True, cache=True, error_model="numpy", fastmath=_REASSOC)
def _grad_sums(gy, x, mean, var, eps, sg, sgx):
    """sg[c] = sum(gy), sgx[c] = sum(gy * xhat) per real channel."""
    nn, ncb, nl, vl = x.shape
    nc = mean.shape[0]
    for cb in prange(ncb):
        mu = np.zeros(vl, np.float64)
        for q in range(min(vl, nc - cb * vl)):
            mu[q] = mean[cb * vl + q]
        a = np.zeros(vl, np.float64)
        ax = np.zeros(vl, np.float64)
        for n in range(nn):
            for i in range(nl):
                for q in range(vl):
                    g = gy[n, cb, i, q]
                    a[q] += g
                    ax[q] += g * (x[n, cb, i, q] - mu[q])
        for q in range(min(vl, nc - cb * vl)):
            c = cb * vl + q
            sg[c] = a[q]
            sgx[c] = ax[q] * (1.0 / math.sqrt(var[c] + eps))  # norm.py's rounding: times invstd


@njit(parallel=True, cache=True, error_model="numpy")
def _grad_apply(gy, x, k, mu, invstd, sg, sgx, m, gx):
    """gx = k * (m * gy - sg - xhat * sgx) per lane, with k = 0 on pad lanes (so they stay zero)."""
    nn, ncb, nl, vl = x.shape
    for t in prange(nn * ncb):
        n, cb = t // ncb, t % ncb
        kk, mm, iv, s0, s1 = k[cb], mu[cb], invstd[cb], sg[cb], sgx[cb]
        for i in range(nl):
            for q in range(vl):
                xhat = (x[n, cb, i, q] - mm[q]) * iv[q]
                gx[n, cb, i, q] = kk[q] * (m * gy[n, cb, i, q] - s0[q] - xhat * s1[q])


_stats_s, _apply_s, _grad_sums_s, _grad_apply_s = (serial_twin(f) for f in (_stats, _apply, _grad_sums, _grad_apply))


def _l4(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], -1, a.shape[4])


def _lanes(v: np.ndarray, ncb: int, vl: int) -> np.ndarray:
    """A (C,) float64 vector as (CB, vl), zeros on pad lanes."""
    out = np.zeros(ncb * vl, np.float64)
    out[:v.shape[0]] = v
    return out.reshape(ncb, vl)


@backend.register("blocked_batch_norm_train")
def blocked_batch_norm_train(x: np.ndarray, w: np.ndarray, b: np.ndarray, out: tuple, eps: float) -> None:
    y, mean, var = out
    x4 = _l4(x)
    (_stats_s if x.size <= SERIAL_ELEMENTS else _stats)(x4, mean, var)
    # normalize with the statistics as stored (rounded to x's dtype), as the NCHW kernel does
    _normalize(x4, w, b, mean, var, eps, y, False)


def _normalize(x4: np.ndarray, w: np.ndarray, b: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float,
               y: np.ndarray, relu: bool) -> None:
    scale = w / np.sqrt(var.astype(np.float64) + eps)  # in float64, as norm.py's _affine
    shift = b - mean * scale
    ncb, vl = x4.shape[1], x4.shape[3]
    scale, shift = _lanes(scale, ncb, vl), _lanes(shift, ncb, vl)  # zeros on pad lanes: y stays 0 there
    dst = _dense(y)
    (_apply_s if x4.size <= SERIAL_ELEMENTS else _apply)(x4, scale, shift, dst.reshape(x4.shape), relu)
    if dst is not y:
        y[...] = dst


def _dense(out: np.ndarray) -> np.ndarray:
    """``out``, or a contiguous array to write and copy into it (a strided output's reshape would be a copy)."""
    return out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)


@backend.register("blocked_batch_norm_apply")
def blocked_batch_norm_apply(x: np.ndarray, w: np.ndarray, b: np.ndarray, mean: np.ndarray, var: np.ndarray,
                             out: np.ndarray, eps: float, relu: bool) -> None:
    """The blocked training batch norm's y from its kept statistics (rematerialization), bit for bit."""
    _normalize(_l4(x), w, b, mean, var, eps, out, bool(relu))


@backend.register("blocked_batch_norm_train_grad")
def blocked_batch_norm_train_grad(gy: np.ndarray, x: np.ndarray, w: np.ndarray, mean: np.ndarray, var: np.ndarray,
                                  out: tuple, eps: float) -> None:
    gx, gw, gb = out
    x4, gy4 = _l4(x), _l4(gy)
    nn, ncb, nl, vl = x4.shape
    c = w.shape[0]
    serial = x.size <= SERIAL_ELEMENTS
    sg, sgx = np.empty(c, np.float64), np.empty(c, np.float64)
    (_grad_sums_s if serial else _grad_sums)(gy4, x4, mean, var, float(eps), sg, sgx)
    gb[:] = sg
    gw[:] = sgx
    m = nn * nl
    invstd = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    k = _lanes(w * invstd / m, ncb, vl)
    dst = _dense(gx)
    (_grad_apply_s if serial else _grad_apply)(gy4, x4, k, _lanes(mean, ncb, vl), _lanes(invstd, ncb, vl),
                                               _lanes(sg, ncb, vl), _lanes(sgx, ncb, vl), float(m),
                                               dst.reshape(x4.shape))
    if dst is not gx:
        gx[...] = dst
