"""numpy reference kernels: elementwise math, activations, comparisons, where, astype, dropout."""

from __future__ import annotations

import numpy as np

from .table import backend

_UNARY = {
    "neg": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs,
    "relu": lambda x: np.maximum(x, 0), "tanh": np.tanh,
}
_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
    "maximum": np.maximum, "minimum": np.minimum, "greater": np.greater, "equal": np.equal,
    "greater_equal": np.greater_equal, "not_equal": np.not_equal,
}


def _unary_kernel(fn):
    def kernel(x: np.ndarray, out: np.ndarray) -> None:
        out[...] = fn(x)

    return kernel


def _binary_kernel(fn):
    def kernel(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        fn(a, b, out=out)

    return kernel


for _name, _fn in _UNARY.items():
    backend.register(_name)(_unary_kernel(_fn))
for _name, _fn in _BINARY.items():
    backend.register(_name)(_binary_kernel(_fn))


@backend.register("leaky_relu")
def leaky_relu(x: np.ndarray, out: np.ndarray, negative_slope: float) -> None:
    out[...] = np.where(x > 0, x, x * x.dtype.type(negative_slope))


@backend.register("elu")
def elu(x: np.ndarray, out: np.ndarray, alpha: float) -> None:
    out[...] = np.where(x > 0, x, x.dtype.type(alpha) * np.expm1(np.minimum(x, 0)))


def sigmoid_of(x: np.ndarray) -> np.ndarray:
    # split by sign so exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@backend.register("sigmoid")
def sigmoid(x: np.ndarray, out: np.ndarray) -> None:
    out[...] = sigmoid_of(x)


@backend.register("silu")
def silu(x: np.ndarray, out: np.ndarray) -> None:
    out[...] = x * sigmoid_of(x)


@backend.register("where")
def where(c: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    out[...] = np.where(c, a, b)


@backend.register("astype")
def astype(x: np.ndarray, out: np.ndarray, dtype: str) -> None:
    out[...] = x.astype(dtype)


@backend.register("dropout")
def dropout(x: np.ndarray, mask: np.ndarray, out: np.ndarray, p: float) -> None:
    out[...] = x * mask * x.dtype.type(1.0 / (1.0 - p))
