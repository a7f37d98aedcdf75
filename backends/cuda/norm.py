"""cuda kernels: batch norm (training forward, its backward, inference) and row_norm (+ grad), which are the same
computation on different views: statistics per channel ``b`` of an (A, B, C) view (BatchNorm: (N, C, H*W);
row_norm: (1, R, M)). One block per channel: two shared-memory trees give the mean and then the centred variance
(two passes, as the reference), a third pass writes the normalized output; the backward takes sum(gy) and
sum(gy * xhat) with two trees, then writes gx. Accumulation is float64."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float64

from .elementwise import contiguous
from .launch import BLOCK, grid, rows_grid
from .table import backend
from .tree import block_sum
from .views import reshaped


@cuda.jit
def norm3(x, w, b, y, mean, var, eps, affine):
    sh = cuda.shared.array(BLOCK, float64)
    na, nb, nc = x.shape
    m = na * nc
    t = cuda.threadIdx.x
    for ch in range(cuda.blockIdx.x, nb, cuda.gridDim.x):
        s = 0.0
        for e in range(t, m, BLOCK):
            s += x[e // nc, ch, e % nc]
        mu = block_sum(sh, s) / m
        s = 0.0
        for e in range(t, m, BLOCK):
            d = x[e // nc, ch, e % nc] - mu
            s += d * d
        v = block_sum(sh, s) / m
        invstd = 1.0 / math.sqrt(v + eps)
        scale, shift = invstd, 0.0
        if affine:
            scale, shift = invstd * w[ch], b[ch]
        for e in range(t, m, BLOCK):
            y[e // nc, ch, e % nc] = (x[e // nc, ch, e % nc] - mu) * scale + shift
        if t == 0:
            mean[ch] = mu
            var[ch] = v


@cuda.jit
def norm3_grad(gy, x, w, mean, var, gx, gw, gb, eps, affine):
    sh = cuda.shared.array(BLOCK, float64)
    na, nb, nc = x.shape
    m = na * nc
    t = cuda.threadIdx.x
    for ch in range(cuda.blockIdx.x, nb, cuda.gridDim.x):
        mu = mean[ch]
        invstd = 1.0 / math.sqrt(var[ch] + eps)
        s = 0.0
        for e in range(t, m, BLOCK):
            s += gy[e // nc, ch, e % nc]
        sg = block_sum(sh, s)
        s = 0.0
        for e in range(t, m, BLOCK):
            s += gy[e // nc, ch, e % nc] * (x[e // nc, ch, e % nc] - mu) * invstd
        sgx = block_sum(sh, s)
        k = (w[ch] if affine else 1.0) * invstd / m
        # the parts of gy explained by the mean and by the variance do not reach x
        for e in range(t, m, BLOCK):
            i, j = e // nc, e % nc
            xhat = (x[i, ch, j] - mu) * invstd
            gx[i, ch, j] = k * (m * gy[i, ch, j] - sg - xhat * sgx)
        if t == 0:
            gb[ch] = sg
            gw[ch] = sgx


def _nbc(x: Any) -> tuple[int, int, int]:
    """(N, C, spatial) of a (N, C, ...) batch."""
    return x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))


def _rows_view(x: Any, shape: tuple[int, int, int]) -> Any:
    return reshaped(contiguous(x), shape)


@backend.register("batch_norm_train")
def batch_norm_train(x: Any, w: Any, b: Any, out: tuple, eps: float) -> None:
    y, mean, var = out
    if x.size == 0:
        return
    s = _nbc(x)
    norm3[rows_grid(s[1])](_rows_view(x, s), w, b, reshaped(y, s), mean, var, float(eps), True)


@backend.register("batch_norm_train_grad")
def batch_norm_train_grad(gy: Any, x: Any, w: Any, mean: Any, var: Any, out: tuple, eps: float) -> None:
    gx, gw, gb = out
    if x.size == 0:
        return
    s = _nbc(x)
    norm3_grad[rows_grid(s[1])](_rows_view(gy, s), _rows_view(x, s), w, mean, var, reshaped(gx, s), gw, gb,
                                float(eps), True)


@backend.register("row_norm")
def row_norm(x: Any, out: tuple, eps: float) -> None:
    y, mean, var = out
    s = (1, x.shape[0], x.shape[1])
    if x.size:
        norm3[rows_grid(s[1])](_rows_view(x, s), mean, mean, reshaped(y, s), mean, var, float(eps), False)


@backend.register("row_norm_grad")
def row_norm_grad(gy: Any, x: Any, mean: Any, var: Any, out: Any, eps: float) -> None:
    s = (1, x.shape[0], x.shape[1])
    if x.size:
        sums = backend.empty((2, s[1]), np.float64)  # sum(gy) and sum(gy * xhat), not outputs of row_norm_grad
        norm3_grad[rows_grid(s[1])](_rows_view(gy, s), _rows_view(x, s), mean, mean, var, reshaped(out, s),
                                    sums[0], sums[1], float(eps), False)


@cuda.jit
def _bn_infer(x, w, b, mean, var, out, eps):
    nb, nc = x.shape[1], x.shape[2]
    for e in range(cuda.grid(1), out.size, cuda.gridDim.x * cuda.blockDim.x):
        i, ch, j = e // (nb * nc), (e // nc) % nb, e % nc
        scale = w[ch] / math.sqrt(var[ch] + eps)
        out[i, ch, j] = x[i, ch, j] * scale + (b[ch] - mean[ch] * scale)


@backend.register("batch_norm_infer")
def batch_norm_infer(x: Any, w: Any, b: Any, mean: Any, var: Any, out: Any, eps: float) -> None:
    if x.size == 0:
        return
    s = _nbc(x)
    _bn_infer[grid(x.size)](_rows_view(x, s), w, b, mean, var, reshaped(out, s), float(eps))

