"""numba kernels: matmul and linear. 2-D float32 products run on :mod:`.gemm` (LeNet-5's fc1 at batch 64: forward
0.27 -> 0.24 ms, input gradient 0.24 -> 0.17, weight gradient 0.23 -> 0.22 vs BLAS), everything else on BLAS
(``np.matmul``); the bias epilogue of linear is a parallel row kernel over the GEMM output."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .gemm import matmul as gemm_matmul
from .gemm import supported as gemm_supported
from .table import backend


@njit(parallel=True, cache=True)
def add_row_bias(y, b):
    """y[r, :] += b for every row r of a 2-D array."""
    rows, cols = y.shape
    for r in prange(rows):
        for c in range(cols):
            y[r, c] += b[c]


def product(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a @ b: the numba GEMM for 2-D float32 operands it supports, else BLAS."""
    if a.ndim == b.ndim == out.ndim == 2 and gemm_supported(a, b, out):
        gemm_matmul(a, b, out)
    else:
        np.matmul(a, b, out=out)


@backend.register("matmul")
def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    product(a, b, out)


@backend.register("linear")
def linear(x: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray) -> None:
    product(x, w.T, out)
    if b and out.size:
        add_row_bias(out.reshape(-1, out.shape[-1]), b[0])
