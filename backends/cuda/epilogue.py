"""The conv/GEMM epilogue on the GPU: ``act(y + bias + residual)``, applied to each accumulator as a tile is
written, never as a separate sweep over the output (fused_conv2d / fused_linear semantics, engine/ops/fused.py).

Folded BatchNorm reaches these kernels as weight and bias (graph/passes fold it), so bias is the BN shift.
The flags and the activation are run-time arguments: one compiled kernel serves every epilogue, and the branch
runs once per output element, outside the main loop.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any, NamedTuple

import numpy as np
from numba import cuda

from .tiling import device_function

HAS_BIAS, HAS_RES = 1, 2
ACT_NONE, ACT_RELU, ACT_LEAKY_RELU, ACT_ELU, ACT_SIGMOID, ACT_TANH, ACT_SILU = range(7)
ACT_CODES = {"none": ACT_NONE, "relu": ACT_RELU, "leaky_relu": ACT_LEAKY_RELU, "elu": ACT_ELU,
             "sigmoid": ACT_SIGMOID, "tanh": ACT_TANH, "silu": ACT_SILU}
_ALPHA_ATTR = {"leaky_relu": "negative_slope", "elu": "alpha"}


def act_args(activation: str, act_attrs: tuple, dtype: np.dtype) -> tuple[int, np.generic]:
    """(activation code, alpha in the output dtype) for a fused node's ``activation`` / ``act_attrs``."""
    if activation not in ACT_CODES:
        raise NotImplementedError(f"backend 'cuda' has no fused epilogue for activation {activation!r}")
    alpha = dict(act_attrs).get(_ALPHA_ATTR.get(activation, ""), 0.0)
    return ACT_CODES[activation], np.dtype(dtype).type(alpha)


@cache
def make_epilogue(dtype: np.dtype):
    """``epilogue(v, bias_v, res_v, flags, act, alpha)`` for one dtype: its constants are of that dtype, so a
    float32 kernel never computes in float64."""
    zero, one = np.dtype(dtype).type(0), np.dtype(dtype).type(1)

    @device_function
    def sigmoid(v):
        e = math.exp(-abs(v))  # split by sign so exp never overflows
        return one / (one + e) if v >= zero else e / (one + e)

    @device_function
    def epilogue(v, bias_v, res_v, flags, act, alpha):
        if flags & HAS_BIAS:
            v += bias_v
        if flags & HAS_RES:
            v += res_v
        if act == ACT_RELU:
            v = v if not v <= zero else zero * v  # NaN stays NaN, as np.maximum(v, 0)
        elif act == ACT_LEAKY_RELU:
            v = v if v > zero else v * alpha
        elif act == ACT_ELU:
            v = v if v > zero else alpha * math.expm1(v)
        elif act == ACT_SIGMOID:
            v = sigmoid(v)
        elif act == ACT_TANH:
            v = math.tanh(v)
        elif act == ACT_SILU:
            v = v * sigmoid(v)
        return v

    return epilogue


@cache
def _dummy(dtype: np.dtype, ndim: int) -> Any:
    """A 1-element device array standing in for an absent bias/residual (never read: its flag is off)."""
    return cuda.device_array((1,) * ndim, dtype)


class Epilogue(NamedTuple):
    """The epilogue arguments of a launch: bias and residual device arrays (dummies where absent), flags, the
    activation code and its alpha in the output dtype."""

    bias: Any
    res: Any
    flags: int
    act: int
    alpha: Any

    @staticmethod
    def of(dtype: Any, bias: Any = None, res: Any = None, activation: str = "none", act_attrs: tuple = (),
           res_ndim: int = 4) -> Epilogue:
        dtype = np.dtype(dtype)
        act, alpha = act_args(activation, act_attrs, dtype)
        flags = (HAS_BIAS if bias is not None else 0) | (HAS_RES if res is not None else 0)
        return Epilogue(_dummy(dtype, 1) if bias is None else bias, _dummy(dtype, res_ndim) if res is None else res,
                        flags, act, alpha)
