"""Elementwise primitives: unary math, activations, broadcasting binary ops, comparisons, where, astype."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import bind
from ..primitive import ELEMENTWISE, Spec, broadcast_shapes, fail, primitive, same_float_dtype
from ..tensor import Tensor
from ._util import lift, lift_pair

__all__ = ["add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "pow", "maximum", "minimum", "where", "abs",
           "relu", "leaky_relu", "elu", "sigmoid", "tanh", "silu", "greater", "equal", "astype", "square",
           "clamp", "unbroadcast"]


# --- unary -----------------------------------------------------------------------------------------------
def _unary(name: str, flops: int = 1):
    p = primitive(name, ELEMENTWISE, flops_per_element=flops)

    @p.def_shape
    def _shape(x: Spec, **attrs: Any) -> Spec:
        if x.dtype.kind != "f":
            fail(name, "input must be floating point", dtype=x.dtype.name)
        return x

    return p


neg_p = _unary("neg")
exp_p = _unary("exp", 4)
log_p = _unary("log", 4)
sqrt_p = _unary("sqrt", 2)
abs_p = _unary("abs")
relu_p = _unary("relu")
leaky_relu_p = _unary("leaky_relu", 2)  # attrs: negative_slope
elu_p = _unary("elu", 5)  # attrs: alpha
sigmoid_p = _unary("sigmoid", 5)
tanh_p = _unary("tanh", 5)
silu_p = _unary("silu", 6)

neg_p.def_vjp(lambda g, y, x: (-g,))
exp_p.def_vjp(lambda g, y, x: (g * y,))
log_p.def_vjp(lambda g, y, x: (g / x,))
sqrt_p.def_vjp(lambda g, y, x: (g / (y * 2.0),))
abs_p.def_vjp(lambda g, y, x: (where(greater(x, 0.0), g, where(greater(-x, 0.0), -g, 0.0)),))  # sign(x) * g
relu_p.def_vjp(lambda g, y, x: (where(greater(x, 0.0), g, 0.0),))
leaky_relu_p.def_vjp(lambda g, y, x, negative_slope: (where(greater(x, 0.0), g, g * negative_slope),))
elu_p.def_vjp(lambda g, y, x, alpha: (where(greater(x, 0.0), g, g * (y + alpha)),))
sigmoid_p.def_vjp(lambda g, y, x: (g * y * (1.0 - y),))
tanh_p.def_vjp(lambda g, y, x: (g * (1.0 - y * y),))


@silu_p.def_vjp
def _silu_vjp(g: Tensor, y: Tensor, x: Tensor) -> tuple[Tensor]:
    s = sigmoid(x)
    return (g * (s * (1.0 + x * (1.0 - s))),)


def neg(x: Tensor) -> Tensor:
    return bind(neg_p, x)


def exp(x: Tensor) -> Tensor:
    return bind(exp_p, x)


def log(x: Tensor) -> Tensor:
    return bind(log_p, x)


def sqrt(x: Tensor) -> Tensor:
    return bind(sqrt_p, x)


def abs(x: Tensor) -> Tensor:  # noqa: A001 - the PyTorch name
    return bind(abs_p, x)


def relu(x: Tensor, inplace: bool = False) -> Tensor:
    return bind(relu_p, x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return bind(leaky_relu_p, x, negative_slope=float(negative_slope))


def elu(x: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return bind(elu_p, x, alpha=float(alpha))


def sigmoid(x: Tensor) -> Tensor:
    return bind(sigmoid_p, x)


def tanh(x: Tensor) -> Tensor:
    return bind(tanh_p, x)


def silu(x: Tensor, inplace: bool = False) -> Tensor:
    return bind(silu_p, x)


def square(x: Tensor) -> Tensor:
    return x * x


# --- binary (numpy broadcasting; vjp rules reduce gradients back to each operand's shape) ---------------
def _binary(name: str, flops: int = 1):
    p = primitive(name, ELEMENTWISE, flops_per_element=flops)

    @p.def_shape
    def _shape(a: Spec, b: Spec) -> Spec:
        dtype = same_float_dtype(name, a, b)
        return Spec(broadcast_shapes(name, a.shape, b.shape), dtype)

    return p


add_p = _binary("add")
sub_p = _binary("sub")
mul_p = _binary("mul")
div_p = _binary("div")
pow_p = _binary("pow", 8)
maximum_p = _binary("maximum")
minimum_p = _binary("minimum")


def unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum ``g`` over the axes numpy broadcasting added or stretched, so it has ``shape``."""
    from .reduce import sum as _sum
    from .shape import reshape

    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    return reshape(_sum(g, axes), shape) if axes else reshape(g, shape)


add_p.def_vjp(lambda g, y, a, b: (unbroadcast(g, a.shape), unbroadcast(g, b.shape)))
sub_p.def_vjp(lambda g, y, a, b: (unbroadcast(g, a.shape), unbroadcast(-g, b.shape)))
mul_p.def_vjp(lambda g, y, a, b: (unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)))
div_p.def_vjp(lambda g, y, a, b: (unbroadcast(g / b, a.shape), unbroadcast(-g * y / b, b.shape)))


@pow_p.def_vjp
def _pow_vjp(g: Tensor, y: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor | None]:
    ga = unbroadcast(g * b * pow(a, b - 1.0), a.shape)
    if not b.requires_grad:
        return ga, None
    safe_log = log(where(greater(a, 0.0), a, 1.0))  # d/db a**b = a**b log a, defined for a > 0
    return ga, unbroadcast(g * y * safe_log, b.shape)


def _minmax_vjp(g: Tensor, y: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    # ties split the gradient evenly, as torch does
    ea = astype(equal(a, y), g.dtype)
    eb = astype(equal(b, y), g.dtype)
    share = g / (ea + eb)
    return unbroadcast(share * ea, a.shape), unbroadcast(share * eb, b.shape)


maximum_p.def_vjp(_minmax_vjp)
minimum_p.def_vjp(_minmax_vjp)


def add(a: Any, b: Any) -> Tensor:
    return bind(add_p, *lift_pair(a, b))


def sub(a: Any, b: Any) -> Tensor:
    return bind(sub_p, *lift_pair(a, b))


def mul(a: Any, b: Any) -> Tensor:
    return bind(mul_p, *lift_pair(a, b))


def div(a: Any, b: Any) -> Tensor:
    return bind(div_p, *lift_pair(a, b))


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - the PyTorch name
    return bind(pow_p, *lift_pair(a, b))


def maximum(a: Any, b: Any) -> Tensor:
    return bind(maximum_p, *lift_pair(a, b))


def minimum(a: Any, b: Any) -> Tensor:
    return bind(minimum_p, *lift_pair(a, b))


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    if min is not None:
        x = maximum(x, min)
    if max is not None:
        x = minimum(x, max)
    return x


# --- comparisons and selection (no gradient flows through the condition) ------------------------------
def _compare(name: str):
    p = primitive(name, ELEMENTWISE)

    @p.def_shape
    def _shape(a: Spec, b: Spec) -> Spec:
        same_float_dtype(name, a, b)
        return Spec(broadcast_shapes(name, a.shape, b.shape), np.bool_)

    return p


greater_p = _compare("greater")
equal_p = _compare("equal")


def greater(a: Any, b: Any) -> Tensor:
    return bind(greater_p, *lift_pair(a, b))


def equal(a: Any, b: Any) -> Tensor:
    return bind(equal_p, *lift_pair(a, b))


where_p = primitive("where", ELEMENTWISE)


@where_p.def_shape
def _where_shape(c: Spec, a: Spec, b: Spec) -> Spec:
    if c.dtype != np.bool_:
        fail("where", "condition must be a bool tensor", dtype=c.dtype.name)
    dtype = same_float_dtype("where", a, b)
    return Spec(broadcast_shapes("where", c.shape, a.shape, b.shape), dtype)


@where_p.def_vjp
def _where_vjp(g: Tensor, y: Tensor, c: Tensor, a: Tensor, b: Tensor) -> tuple[None, Tensor, Tensor]:
    zero = Tensor(np.zeros((), g.dtype))
    return None, unbroadcast(where(c, g, zero), a.shape), unbroadcast(where(c, zero, g), b.shape)


def where(cond: Tensor, a: Any, b: Any) -> Tensor:
    if not isinstance(cond, Tensor):
        cond = Tensor(np.asarray(cond, dtype=bool))
    a, b = lift_pair(a, b)
    return bind(where_p, cond, a, b)


astype_p = primitive("astype", ELEMENTWISE)


@astype_p.def_shape
def _astype_shape(x: Spec, dtype: str) -> Spec:
    return Spec(x.shape, np.dtype(dtype))


astype_p.def_vjp(lambda g, y, x, dtype: (astype(g, x.dtype.name) if x.dtype.kind == "f" else None,))


def astype(x: Tensor, dtype: Any) -> Tensor:
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    return bind(astype_p, lift(x), dtype=dtype.name)
