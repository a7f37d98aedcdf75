"""numpy reference kernels: batch norm (training forward + its fused backward, inference).

Statistics are per channel (axis 1) over every other axis; per-channel vectors are viewed as (1, C, 1, ...).
"""

from __future__ import annotations

import numpy as np

from .table import backend


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.ndim))


def _col(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


@backend.register("batch_norm_train")
def batch_norm_train(x: np.ndarray, w: np.ndarray, b: np.ndarray, out: tuple[np.ndarray, ...], eps: float) -> None:
    y, mean, var = out
    axes = _axes(x)
    mean[...] = np.mean(x, axis=axes)
    xc = x - _col(mean, x)
    var[...] = np.mean(xc * xc, axis=axes)  # biased: this is what normalizes the batch
    invstd = 1.0 / np.sqrt(var + x.dtype.type(eps))
    y[...] = xc * _col(invstd * w, x) + _col(b, x)


@backend.register("batch_norm_train_grad")
def batch_norm_train_grad(gy: np.ndarray, x: np.ndarray, w: np.ndarray, mean: np.ndarray, var: np.ndarray,
                          out: tuple[np.ndarray, ...], eps: float) -> None:
    gx, gw, gb = out
    axes = _axes(x)
    m = x.size // x.shape[1]
    invstd = 1.0 / np.sqrt(var + x.dtype.type(eps))
    xhat = (x - _col(mean, x)) * _col(invstd, x)
    gb[...] = np.sum(gy, axis=axes)
    gw[...] = np.sum(gy * xhat, axis=axes)
    # d/dx of the normalized batch: remove the parts of gy explained by the mean and by the variance
    gx[...] = _col(w * invstd / m, x) * (m * gy - _col(gb, x) - xhat * _col(gw, x))


@backend.register("batch_norm_apply")
def batch_norm_apply(x: np.ndarray, w: np.ndarray, b: np.ndarray, mean: np.ndarray, var: np.ndarray,
                     out: np.ndarray, eps: float, relu: bool) -> None:
    # batch_norm_train's arithmetic from its stored statistics (bit for bit its y), then the relu kernel's
    xc = x - _col(mean, x)
    invstd = 1.0 / np.sqrt(var + x.dtype.type(eps))
    out[...] = xc * _col(invstd * w, x) + _col(b, x)
    if relu:
        out[...] = np.maximum(out, 0)


@backend.register("batch_norm_infer")
def batch_norm_infer(x: np.ndarray, w: np.ndarray, b: np.ndarray, mean: np.ndarray, var: np.ndarray,
                     out: np.ndarray, eps: float) -> None:
    scale = w / np.sqrt(var + x.dtype.type(eps))
    out[...] = x * _col(scale, x) + _col(b - mean * scale, x)
