"""numba kernels: exact GELU and its gradient (engine/ops/smooth_activation.py), flat over C-contiguous
operands like the other activation gradients (:func:`.activation._flat`).

float64 calls ``math.erf``. float32 evaluates erf with the rational approximation of Eigen/XLA's float32 erf
(odd degree-13 numerator over even degree-8 denominator on x clamped to [-4, 4]; max relative error 4.2e-7 against
``math.erf``, i.e. a few float32 ulps): pure multiply-adds and one division, which LLVM vectorizes, where a libm
call per element does not.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._layout import CHUNK
from .activation import _flat
from .table import backend

_RSQRT2 = 1.0 / math.sqrt(2.0)
_RSQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)

# erf(x) ~= x P(x^2) / Q(x^2) on [-4, 4] (beyond, erf is +-1 in float32)
_A = np.array([-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04, -5.69250639462346e-05,
               -2.10102402082508e-06, 2.77068142495902e-08, -2.72614225801306e-10], np.float32)
_B = np.array([-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03, -2.13374055278905e-04,
               -1.45660718464996e-05], np.float32)
_A0, _A1, _A2, _A3, _A4, _A5, _A6 = (np.float32(a) for a in _A)
_B0, _B1, _B2, _B3, _B4 = (np.float32(b) for b in _B)


@njit(inline="always", cache=True)
def erf32(x):
    x = min(max(x, np.float32(-4.0)), np.float32(4.0))
    x2 = x * x
    p = ((((((_A6 * x2 + _A5) * x2 + _A4) * x2 + _A3) * x2 + _A2) * x2 + _A1) * x2 + _A0) * x
    q = (((_B4 * x2 + _B3) * x2 + _B2) * x2 + _B1) * x2 + _B0
    return p / q


def _cdf(v):
    """Phi(v) = (1 + erf(v / sqrt 2)) / 2 in v's precision (typed per dtype by the overload below)."""
    return 0.5 * (1.0 + math.erf(v * _RSQRT2))


@overload(_cdf, inline="always")
def _cdf_typed(v):
    if v == types.float32:
        return lambda v: np.float32(0.5) * (np.float32(1.0) + erf32(v * np.float32(_RSQRT2)))
    return lambda v: 0.5 * (1.0 + math.erf(v * _RSQRT2))


@njit(parallel=True, cache=True, error_model="numpy")
def gelu_flat(x, out):
    n = out.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        xc, oc = x[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = xc[i]
            oc[i] = v * _cdf(v)


@njit(parallel=True, cache=True, error_model="numpy")
def gelu_grad_flat(g, x, out):
    n = out.shape[0]
    half = out.dtype.type(-0.5)
    k = out.dtype.type(_RSQRT2PI)
    for c in prange((n + CHUNK - 1) // CHUNK):
        i0, i1 = c * CHUNK, min(n, (c + 1) * CHUNK)
        gc, xc, oc = g[i0:i1], x[i0:i1], out[i0:i1]
        for i in range(i1 - i0):
            v = xc[i]
            oc[i] = gc[i] * (_cdf(v) + v * np.exp(half * v * v) * k)


@backend.register("gelu")
def gelu(x: np.ndarray, out: np.ndarray) -> None:
    _flat(gelu_flat, out, x)


@backend.register("gelu_grad")
def gelu_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    _flat(gelu_grad_flat, out, gy, x)
