"""cuda kernels: softmax and log_softmax along one axis, max-shifted for stability. The input is viewed as
(A, L, C) with the softmax axis in the middle; one block per (a, c) row takes the max and the sum of exponentials
with two shared-memory trees (:mod:`.tree`), then writes the row."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda, float64

from .elementwise import contiguous, copy
from .launch import BLOCK, rows_grid
from .table import backend
from .tree import MAX, SUM, block_reduce
from .views import reshaped


@cuda.jit
def softmax3(x, out, log):
    sh = cuda.shared.array(BLOCK, float64)
    na, nl, nc = x.shape
    t = cuda.threadIdx.x
    for row in range(cuda.blockIdx.x, na * nc, cuda.gridDim.x):
        a, c = row // nc, row % nc
        m = -math.inf
        for e in range(t, nl, BLOCK):
            v = x[a, e, c]
            m = v if (v > m or v != v) else m
        m = block_reduce(MAX, sh, m)
        s = 0.0
        for e in range(t, nl, BLOCK):
            s += math.exp(x[a, e, c] - m)
        s = block_reduce(SUM, sh, s)
        if log:
            ls = math.log(s)
            for e in range(t, nl, BLOCK):
                out[a, e, c] = (x[a, e, c] - m) - ls
        else:
            for e in range(t, nl, BLOCK):
                out[a, e, c] = math.exp(x[a, e, c] - m) / s


def _as3(x: Any, axis: int) -> Any:
    a = int(np.prod(x.shape[:axis], dtype=np.int64))
    return reshaped(x, (a, x.shape[axis], x.size // max(a * x.shape[axis], 1)))


def _softmax(log: bool):
    def kernel(x: Any, out: Any, axis: int) -> None:
        if out.size == 0:
            return
        ax = axis % x.ndim
        dst = contiguous(out)
        x3 = _as3(contiguous(x), ax)
        softmax3[rows_grid(x3.shape[0] * x3.shape[2])](x3, _as3(dst, ax), log)
        if dst is not out:
            copy(dst, out)

    return kernel


backend.register("softmax")(_softmax(False))
backend.register("log_softmax")(_softmax(True))
