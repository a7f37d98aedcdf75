"""numba kernels: softmax / log_softmax along one axis, max-shifted, as (A, K, C) with the reduced axis K;
parallel over A x C-chunks (each work item owns its output columns)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import backend

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


def _run(x: np.ndarray, out: np.ndarray, axis: int, log: bool) -> None:
    if out.size == 0:
        return
    x = np.ascontiguousarray(x)
    sh = x.shape
    shape3 = (math.prod(sh[:axis]), sh[axis], math.prod(sh[axis + 1:]))
    softmax_akc(x.reshape(shape3), out.reshape(shape3), log)


@backend.register("softmax")
def softmax(x: np.ndarray, out: np.ndarray, axis: int) -> None:
    _run(x, out, axis, False)


@backend.register("log_softmax")
def log_softmax(x: np.ndarray, out: np.ndarray, axis: int) -> None:
    _run(x, out, axis, True)
