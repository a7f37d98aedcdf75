"""numba kernels: matmul and linear. The GEMM itself is BLAS (``np.matmul``); the bias epilogue of linear is a
parallel row kernel over the GEMM output."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import backend


@njit(parallel=True, cache=True)
def add_row_bias(y, b):
    """y[r, :] += b for every row r of a 2-D array."""
    rows, cols = y.shape
    for r in prange(rows):
        for c in range(cols):
            y[r, c] += b[c]


@backend.register("matmul")
def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    np.matmul(a, b, out=out)


@backend.register("linear")
def linear(x: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray) -> None:
    np.matmul(x, w.T, out=out)
    if b and out.size:
        add_row_bias(out.reshape(-1, out.shape[-1]), b[0])
