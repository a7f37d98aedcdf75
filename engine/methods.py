"""Tensor operator overloads and methods: each is a one-line call of the functional definition."""

from __future__ import annotations

from typing import Any

from . import functional as F
from .tensor import Tensor


def _r(fn):
    return lambda self, other: fn(other, self)


_METHODS: dict[str, Any] = {
    "__add__": F.add, "__radd__": _r(F.add), "__sub__": F.sub, "__rsub__": _r(F.sub),
    "__mul__": F.mul, "__rmul__": _r(F.mul), "__truediv__": F.div, "__rtruediv__": _r(F.div),
    "__pow__": F.pow, "__rpow__": _r(F.pow), "__neg__": F.neg, "__matmul__": F.matmul, "__rmatmul__": _r(F.matmul),
    "__gt__": F.greater, "__lt__": lambda a, b: F.greater(b, a), "__getitem__": F.getitem, "__abs__": F.abs,
    "exp": F.exp, "log": F.log, "sqrt": F.sqrt, "abs": F.abs, "relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh,
    "silu": F.silu, "sum": F.sum, "mean": F.mean, "max": F.max, "amax": F.amax, "argmax": F.argmax, "var": F.var,
    "reshape": F.reshape, "view": F.reshape, "flatten": F.flatten, "permute": F.permute, "transpose": F.transpose,
    "squeeze": F.squeeze, "unsqueeze": F.unsqueeze, "matmul": F.matmul, "astype": F.astype, "clamp": F.clamp,
    "pow": F.pow, "maximum": F.maximum, "expand": F.broadcast_to, "broadcast_to": F.broadcast_to,
    "softmax": lambda x, dim=-1: F.softmax(x, dim), "log_softmax": lambda x, dim=-1: F.log_softmax(x, dim),
}


def install() -> None:
    for name, fn in _METHODS.items():
        setattr(Tensor, name, fn)
    Tensor.T = property(lambda self: F.permute(self, tuple(reversed(range(self.ndim)))))
    Tensor.float = lambda self: F.astype(self, "float32")
    Tensor.double = lambda self: F.astype(self, "float64")
