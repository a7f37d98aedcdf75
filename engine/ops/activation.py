"""softmax / log_softmax (numerically stable primitives) and dropout."""

from __future__ import annotations

from ..autograd import bind
from ..primitive import ELEMENTWISE, Spec, fail, primitive
from ..tensor import Tensor
from .random import bernoulli_mask
from .reduce import sum as _sum

__all__ = ["softmax", "log_softmax", "dropout"]


def _softmax_like(name: str):
    p = primitive(name, ELEMENTWISE, flops_per_element=5)

    @p.def_shape
    def _shape(x: Spec, axis: int) -> Spec:
        if x.dtype.kind != "f":
            fail(name, "input must be floating point", dtype=x.dtype.name)
        if not 0 <= axis < x.ndim:
            fail(name, f"axis must be in [0, {x.ndim})", axis=axis)
        return x

    return p


softmax_p = _softmax_like("softmax")
log_softmax_p = _softmax_like("log_softmax")
# d softmax: y * (g - sum(g * y)); d log_softmax: g - softmax * sum(g)
softmax_p.def_vjp(lambda g, y, x, axis: (y * (g - _sum(g * y, axis, keepdims=True)),))
log_softmax_p.def_vjp(lambda g, y, x, axis: (g - y.exp() * _sum(g, axis, keepdims=True),))


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    return bind(softmax_p, x, axis=dim % x.ndim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    return bind(log_softmax_p, x, axis=dim % x.ndim)


dropout_p = primitive("dropout", ELEMENTWISE)  # y = x * mask / (1 - p); the mask is an input, drawn by the caller


@dropout_p.def_shape
def _dropout_shape(x: Spec, mask: Spec, p: float) -> Spec:
    if mask.shape != x.shape:
        fail("dropout", "mask must have the input's shape", input=list(x.shape), mask=list(mask.shape))
    if not 0.0 <= p < 1.0:
        fail("dropout", "p must be in [0, 1)", p=p)
    return x


dropout_p.def_vjp(lambda g, y, x, mask, p: (bind(dropout_p, g, mask, p=p), None))


def dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1] (got {p})")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    mask = bernoulli_mask(x.shape, 1.0 - p, x.dtype.name, x.device)
    return bind(dropout_p, x, mask, p=float(p))
