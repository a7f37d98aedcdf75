"""The scalar definition of every elementwise op as a numba.cuda device function, selected by a small int op code
(uniform across a launch, so the branch costs nothing). Semantics follow the numpy reference kernels
(backends/numpy/elementwise.py, activation.py): NaN propagates through maximum/minimum/clamp, log and sqrt give -inf
and NaN outside their domain instead of raising, sigmoid splits by sign so exp never overflows.

The functions are made once per floating type (:func:`make`): every constant is a scalar of that type, so float32
operands are computed in float32 registers with float32 ``exp``/``erf``, as numpy computes them (a float64 literal
would promote the whole expression to float64)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda

# --- unary: f(x; alpha, beta, flags) ---------------------------------------------------------------------------
NEG, EXP, LOG, SQRT, ABS, RELU, TANH, LEAKY_RELU, ELU, SIGMOID, SILU, GELU, CLAMP = range(13)
UNARY = {"neg": NEG, "exp": EXP, "log": LOG, "sqrt": SQRT, "abs": ABS, "relu": RELU, "tanh": TANH,
         "sigmoid": SIGMOID, "silu": SILU, "gelu": GELU}
# --- binary: f(a, b; alpha, beta, flags); the gradients take (gy, y) or (gy, x) as their primitive does ----------
(ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM, DROPOUT, RELU_GRAD, LEAKY_RELU_GRAD, ELU_GRAD, SIGMOID_GRAD, TANH_GRAD,
 SILU_GRAD, GELU_GRAD, CLAMP_GRAD) = range(16)
BINARY = {"add": ADD, "sub": SUB, "mul": MUL, "div": DIV, "pow": POW, "maximum": MAXIMUM, "minimum": MINIMUM}
GRADS = {"relu_grad": RELU_GRAD, "sigmoid_grad": SIGMOID_GRAD, "tanh_grad": TANH_GRAD, "silu_grad": SILU_GRAD,
         "gelu_grad": GELU_GRAD}
# --- comparisons (bool results) ---------------------------------------------------------------------------------
GREATER, EQUAL, GREATER_EQUAL, NOT_EQUAL = range(4)
COMPARE = {"greater": GREATER, "equal": EQUAL, "greater_equal": GREATER_EQUAL, "not_equal": NOT_EQUAL}

HAS_MIN, HAS_MAX = 1, 2  # flags of clamp / clamp_grad: which bounds are given


def make(ft: type) -> tuple[Any, Any]:
    """``unary(op, v, alpha, beta, flags)`` and ``binary(op, a, b, alpha, beta, flags)`` computing in ``ft``
    (np.float32 or np.float64; alpha and beta are passed as ``ft`` scalars)."""
    zero, one, half = ft(0.0), ft(1.0), ft(0.5)
    rsqrt2, rsqrt2pi = ft(1.0 / math.sqrt(2.0)), ft(1.0 / math.sqrt(2.0 * math.pi))
    ninf, nan = ft(-math.inf), ft(math.nan)

    @cuda.jit(device=True)
    def sigmoid(v):
        e = math.exp(-abs(v))
        return one / (one + e) if v >= zero else e / (one + e)

    @cuda.jit(device=True)
    def normal_cdf(v):
        return half * (one + math.erf(v * rsqrt2))

    @cuda.jit(device=True)
    def unary(op, v, alpha, beta, flags):
        if op == RELU:
            return v if not v <= zero else zero * v
        if op == NEG:
            return -v
        if op == EXP:
            return math.exp(v)
        if op == LOG:
            return math.log(v) if v > zero else (ninf if v == zero else nan)
        if op == SQRT:
            return math.sqrt(v) if v >= zero else nan
        if op == ABS:
            return abs(v)
        if op == TANH:
            return math.tanh(v)
        if op == LEAKY_RELU:
            return v if v > zero else v * alpha
        if op == ELU:
            return v if v > zero else alpha * math.expm1(min(v, zero))
        if op == SIGMOID:
            return sigmoid(v)
        if op == SILU:
            return v * sigmoid(v)
        if op == GELU:
            return v * normal_cdf(v)
        # CLAMP: a NaN stays NaN, as np.clip
        r = v
        if flags & HAS_MIN and r < alpha:
            r = alpha
        if flags & HAS_MAX and r > beta:
            r = beta
        return r

    @cuda.jit(device=True)
    def binary(op, a, b, alpha, beta, flags):
        if op == ADD:
            return a + b
        if op == SUB:
            return a - b
        if op == MUL:
            return a * b
        if op == DIV:
            return a / b
        if op == POW:
            return a ** b
        if op == MAXIMUM:
            return a if (a > b or a != a) else b  # NaN in either wins, as np.maximum
        if op == MINIMUM:
            return a if (a < b or a != a) else b
        if op == DROPOUT:
            return a * b * alpha
        if op == RELU_GRAD:  # (gy, y): NaN y passes gy, a NaN gy where y <= 0 is dropped
            return zero if b <= zero else a
        if op == LEAKY_RELU_GRAD:  # (gy, x)
            return a if b > zero else a * alpha
        if op == ELU_GRAD:
            return a * alpha * math.exp(min(b, zero)) if b <= zero else a
        if op == SIGMOID_GRAD:  # (gy, y)
            return a * (one - b) * b
        if op == TANH_GRAD:
            return a * (one - b * b)
        if op == SILU_GRAD:  # (gy, x)
            s = sigmoid(b)
            return a * s * (one + b * (one - s))
        if op == GELU_GRAD:
            return a * (normal_cdf(b) + b * math.exp(-half * b * b) * rsqrt2pi)
        # CLAMP_GRAD (gy, x): gy where min <= x <= max (a missing bound always holds), else 0
        keep = True
        if flags & HAS_MIN:
            keep = b >= alpha
        if flags & HAS_MAX:
            keep = keep and b <= beta
        return a if keep else zero

    return unary, binary


F32, F64 = make(np.float32), make(np.float64)  # (unary, binary) pairs


@cuda.jit(device=True)
def compare(op, a, b):
    if op == GREATER:
        return a > b
    if op == EQUAL:
        return a == b
    if op == GREATER_EQUAL:
        return a >= b
    return a != b
