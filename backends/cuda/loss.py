"""cuda kernel of class_coef (engine/ops/loss.py): the coefficients of a class-index loss, one thread per
coefficient (a gather of the class weights at the targets), and their normalizer, the summed weights of the counted
targets, by one block's shared-memory tree (deterministic). The targets are read back to the host only to raise
the range error by value, as the host backends do (a device assert could not name the class)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numba import cuda, float64

from engine.ops.loss import check_class_targets

from .launch import BLOCK, grid
from .table import backend
from .tree import block_sum
from .views import reshaped


@cuda.jit
def coef3(t, w, coef, ignore_index, keep, spread):
    """coef[n, c, j] = w[t] * keep at c == t, plus w[c] * spread, for counted targets t = t[n, j]."""
    nc, nd = coef.shape[1], coef.shape[2]
    for e in range(cuda.grid(1), coef.size, cuda.gridsize(1)):
        n, c, j = e // (nc * nd), (e // nd) % nc, e % nd
        tv = t[n, j]
        v = 0.0
        if tv != ignore_index:
            v = w[c] * spread
            if tv == c:
                v += w[c] * keep
        coef[n, c, j] = v


@cuda.jit
def denom1(t, w, out, ignore_index):
    sh = cuda.shared.array(BLOCK, float64)
    s = 0.0
    for e in range(cuda.threadIdx.x, t.size, BLOCK):
        tv = t[e // t.shape[1], e % t.shape[1]]
        if tv != ignore_index:
            s += w[tv]
    s = block_sum(sh, s)
    if cuda.threadIdx.x == 0:
        out[0] = s


@functools.lru_cache(maxsize=64)
def _weights(weight: tuple, classes: int, dtype: str) -> Any:
    """The class weights on the device, uploaded once per (weights, dtype)."""
    return backend.from_host(np.asarray(weight, dtype) if weight else np.ones((classes,), dtype))


@backend.register("class_coef")
def class_coef(t: Any, out: tuple, classes: int, weight: tuple, ignore_index: int, label_smoothing: float,
               dtype: str, op: str) -> None:
    coef, denom = out
    check_class_targets(backend.to_host(t), classes, ignore_index, op)
    w = _weights(tuple(weight), classes, np.dtype(dtype).name)
    n = 1 if t.ndim == 0 else t.shape[0]
    t2 = reshaped(t, (n, t.size // n))
    coef3[grid(coef.size)](t2, w, reshaped(coef, (n, classes, t.size // n)), int(ignore_index),
                           float(1.0 - label_smoothing), float(label_smoothing / classes))
    denom1[1, BLOCK](t2, w, reshaped(denom, (1,)), int(ignore_index))
