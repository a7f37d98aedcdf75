"""numpy reference kernels: row_norm and row_norm_grad (engine/ops/sample_norm.py), statistics per row of (R, M)."""

from __future__ import annotations

import numpy as np

from .table import backend


@backend.register("row_norm")
def row_norm(x: np.ndarray, out: tuple[np.ndarray, ...], eps: float) -> None:
    y, mean, var = out
    mean[...] = np.mean(x, axis=1)
    xc = x - mean[:, None]
    var[...] = np.mean(xc * xc, axis=1)  # biased: this is what normalizes the row
    y[...] = xc / np.sqrt(var[:, None] + x.dtype.type(eps))


@backend.register("row_norm_grad")
def row_norm_grad(gy: np.ndarray, x: np.ndarray, mean: np.ndarray, var: np.ndarray, out: np.ndarray,
                  eps: float) -> None:
    m = x.shape[1]
    invstd = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xhat = (x - mean[:, None]) * invstd[:, None]
    sg = np.sum(gy, axis=1, keepdims=True)
    sgx = np.sum(gy * xhat, axis=1, keepdims=True)
    # the parts of gy explained by the row mean and by the row variance do not reach x
    out[...] = (invstd / m)[:, None] * (m * gy - sg - xhat * sgx)
