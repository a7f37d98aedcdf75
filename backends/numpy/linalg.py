"""numpy reference kernels: matmul and linear (BLAS through numpy)."""

from __future__ import annotations

import numpy as np

from .table import backend


@backend.register("matmul")
def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    np.matmul(a, b, out=out)


@backend.register("linear")
def linear(x: np.ndarray, w: np.ndarray, *b_and_out: np.ndarray, out: np.ndarray) -> None:
    np.matmul(x, w.T, out=out)
    if b_and_out:
        out += b_and_out[0]
