"""numpy reference kernels: softmax and log_softmax (max-shifted for stability), clamp, and the single-pass
activation gradients (``relu_grad`` ... ``clamp_grad``, semantics in engine/ops/elementwise.py). Scalars are
cast to the arrays' dtype first, so float32 arithmetic stays float32 (as in PyTorch)."""

from __future__ import annotations

import math

import numpy as np

from .elementwise import sigmoid_of
from .table import backend


@backend.register("softmax")
def softmax(x: np.ndarray, out: np.ndarray, axis: int) -> None:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    out[...] = e / np.sum(e, axis=axis, keepdims=True)


@backend.register("log_softmax")
def log_softmax(x: np.ndarray, out: np.ndarray, axis: int) -> None:
    s = x - np.max(x, axis=axis, keepdims=True)
    out[...] = s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


@backend.register("clamp")
def clamp(x: np.ndarray, out: np.ndarray, min: float | None, max: float | None) -> None:  # noqa: A002
    t = x.dtype.type
    np.clip(x, None if min is None else t(min), None if max is None else t(max), out=out)


@backend.register("relu_grad")
def relu_grad(gy: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    out[...] = np.where(y <= 0, gy.dtype.type(0), gy)  # not gy * (y > 0): NaN y passes gy, NaN gy at y <= 0 is 0


@backend.register("leaky_relu_grad")
def leaky_relu_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray, negative_slope: float) -> None:
    out[...] = np.where(x > 0, gy, gy * x.dtype.type(negative_slope))


@backend.register("elu_grad")
def elu_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray, alpha: float) -> None:
    neg = gy * x.dtype.type(alpha) * np.exp(np.minimum(x, 0))  # min: no overflow where the branch is unused
    out[...] = np.where(x <= 0, neg, gy)


@backend.register("sigmoid_grad")
def sigmoid_grad(gy: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    out[...] = gy * (1 - y) * y


@backend.register("tanh_grad")
def tanh_grad(gy: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    out[...] = gy * (1 - y * y)


@backend.register("silu_grad")
def silu_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    s = sigmoid_of(x)
    out[...] = gy * s * (1 + x * (1 - s))


@backend.register("clamp_grad")
def clamp_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray, min: float | None, max: float | None) -> None:  # noqa: A002
    t = x.dtype.type
    keep = np.ones(x.shape, bool) if min is None else x >= t(min)
    if max is not None:
        keep &= x <= t(max)
    out[...] = np.where(keep, gy, t(0))


# --- gelu (engine/ops/smooth_activation.py): numpy has no erf, so math.erf per element (the reference, not fast)
_erf = np.frompyfunc(math.erf, 1, 1)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return ((1 + _erf(x.astype(np.float64) * (1 / math.sqrt(2))).astype(np.float64)) * 0.5).astype(x.dtype)


@backend.register("gelu")
def gelu(x: np.ndarray, out: np.ndarray) -> None:
    out[...] = x * _normal_cdf(x)


@backend.register("gelu_grad")
def gelu_grad(gy: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    pdf = np.exp(x * x * x.dtype.type(-0.5)) * x.dtype.type(1 / math.sqrt(2 * math.pi))
    out[...] = gy * (_normal_cdf(x) + x * pdf)
