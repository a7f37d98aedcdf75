"""numba kernels: row_norm and row_norm_grad (engine/ops/sample_norm.py) are batch norm's statistics with rows in
the role of channels, so they run the batch-norm kernels (:mod:`.norm`, parallel over rows, float64 sums) on a
``(1, R, M)`` view with unit weight and zero bias."""

from __future__ import annotations

import numpy as np

from .norm import bn_train, bn_train_grad
from .table import backend


def _view(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.reshape(1, a.shape[0], a.shape[1])


@backend.register("row_norm")
def row_norm(x: np.ndarray, out: tuple[np.ndarray, ...], eps: float) -> None:
    y, mean, var = out
    r = x.shape[0]
    x3 = _view(x)
    y3 = y.reshape(x3.shape) if y.flags.c_contiguous else np.empty(x3.shape, y.dtype)
    bn_train(x3, np.ones(r, x.dtype), np.zeros(r, x.dtype), y3, mean, var, float(eps))
    if not y.flags.c_contiguous:
        y[...] = y3.reshape(y.shape)


@backend.register("row_norm_grad")
def row_norm_grad(gy: np.ndarray, x: np.ndarray, mean: np.ndarray, var: np.ndarray, out: np.ndarray,
                  eps: float) -> None:
    r = x.shape[0]
    x3 = _view(x)
    gx = out.reshape(x3.shape) if out.flags.c_contiguous else np.empty(x3.shape, out.dtype)
    scratch = np.empty(r, x.dtype)  # batch norm's weight and bias gradients: unused here
    bn_train_grad(_view(gy), x3, np.ones(r, x.dtype), np.ascontiguousarray(mean), np.ascontiguousarray(var), gx,
                  scratch, scratch.copy(), float(eps))
    if not out.flags.c_contiguous:
        out[...] = gx.reshape(out.shape)
