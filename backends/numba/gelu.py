"""numba kernels: exact GELU and its gradient (engine/ops/smooth_activation.py), flat over C-contiguous
operands like the other activation gradients (:func:`.activation._flat`). ``math.erf`` evaluates in float64;
the result is stored in the output's dtype."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import backend
from ._layout import CHUNK
from .activation import _flat

_RSQRT2 = 1.0 / math.sqrt(2.0)
_RSQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(parallel=True, cache=True, error_model="numpy")
def gelu_flat(x, out):
    n = out.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        xc, oc = x[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = np.float64(xc[i])
            oc[i] = v * 0.5 * (1.0 + math.erf(v * _RSQRT2))


@njit(parallel=True, cache=True, error_model="numpy")
def gelu_grad_flat(g, x, out):
    n = out.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, xc, oc = g[i0:i1], x[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = np.float64(xc[i])
            cdf = 0.5 * (1.0 + math.erf(v * _RSQRT2))
            oc[i] = gc[i] * (cdf + v * math.exp(-0.5 * v * v) * _RSQRT2PI)


@backend.register("gelu")
def gelu(x: np.ndarray, out: np.ndarray) -> None:
    _flat(gelu_flat, out, x)


@backend.register("gelu_grad")
def gelu_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    _flat(gelu_grad_flat, out, gy, x)
