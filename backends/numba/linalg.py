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


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def rows_dot(x, w, out):
    """out[m, j] = sum_k x[m, k] * w[j, k] for a few rows m: one dot product per (m, j) over contiguous rows, each
    row of w read once, in parallel over j ("reassoc" lets LLVM vectorize the sum)."""
    mm, kk = x.shape
    for j in prange(w.shape[0]):
        wr = w[j]
        for m in range(mm):
            xr = x[m]
            s = 0.0
            for k in range(kk):
                s += xr[k] * wr[k]
            out[m, j] = s


FEW_ROWS = 4  # up to this many rows a linear layer is dot products: the GEMM would pack all of W for each call


def product(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a @ b: dot products over W's rows for a few rows of ``a`` times a transposed C-contiguous W (a linear
    layer at batch 1: MobileNetV2's classifier, 1280 x 1000), the numba GEMM for 2-D float32 operands it supports,
    else BLAS."""
    if a.ndim == b.ndim == out.ndim == 2 and a.shape[0] <= FEW_ROWS and b.T.flags.c_contiguous and \
            a.flags.c_contiguous and a.dtype == b.dtype == out.dtype and a.dtype.kind == "f":
        rows_dot(a, b.T, out)
    elif a.ndim == b.ndim == out.ndim == 2 and gemm_supported(a, b, out):
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


@backend.register("matmul_tn")
def matmul_tn(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    product(a.T, b, out)  # the numba GEMM packs its panels from any strides; BLAS takes the transposed view
