"""Elementwise primitives: unary math, activations, broadcasting binary ops, comparisons, where, astype.

Activation gradients are primitives of their own, one kernel pass each (PyTorch's ``*_backward`` ops), and the
activations' vjp rules bind them; each takes the cotangent ``gy`` and one saved value of the activation's shape:

- ``relu_grad(gy, y)``: ``0 if y <= 0 else gy`` (torch ``threshold_backward(gy, y, 0)``: NaN ``y`` passes ``gy``,
  and a NaN ``gy`` where ``y <= 0`` gives 0).
- ``leaky_relu_grad(gy, x)``, attr ``negative_slope``: ``gy if x > 0 else gy * negative_slope``.
- ``elu_grad(gy, x)``, attr ``alpha``: ``gy * alpha * exp(x) if x <= 0 else gy`` (torch's non-inplace form).
- ``sigmoid_grad(gy, y)``: ``gy * (1 - y) * y``; ``tanh_grad(gy, y)``: ``gy * (1 - y * y)``.
- ``silu_grad(gy, x)``: ``gy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``.
- ``clamp_grad(gy, x)``, attrs ``min``, ``max`` (float or None): ``gy if min <= x <= max else 0`` (bounds
  inclusive and NaN ``x`` gives 0, as torch.clamp; the bounds are compared in ``x``'s dtype).

Each is linear in ``gy``, so its own vjp rule binds it again for ``gy`` (double backward works); the derivative
with respect to the saved value is zero for the piecewise-constant ones (``None``) and written with ops for
sigmoid, tanh, silu and elu. ``clamp(x)`` with scalar bounds is a primitive (attrs ``min``, ``max``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import bind
from ..primitive import ELEMENTWISE, Spec, broadcast_shapes, fail, primitive, same_float_dtype
from ..tensor import Tensor
from ._util import lift, result_type
from .shape import unbroadcast

__all__ = ["add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "pow", "maximum", "minimum", "where", "abs",
           "relu", "leaky_relu", "elu", "sigmoid", "tanh", "silu", "greater", "greater_equal", "less", "less_equal",
           "equal", "not_equal", "gt", "ge", "lt", "le", "eq", "ne", "astype", "square", "clamp"]


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
clamp_p = primitive("clamp", ELEMENTWISE, flops_per_element=2)  # attrs: min, max (float or None)


@clamp_p.def_shape
def _clamp_shape(x: Spec, min: float | None, max: float | None) -> Spec:  # noqa: A002
    if x.dtype.kind != "f":
        fail("clamp", "input must be floating point", dtype=x.dtype.name)
    if min is None and max is None:
        fail("clamp", "at least one of min and max must not be None")
    return x


# --- single-pass activation gradients (see the module docstring) ------------------------------------------------
def _act_grad(name: str, flops: int, saved: str):
    """``gx = name(gy, v)``: ``v`` is the activation's output ``y`` or input ``x`` (named by ``saved``)."""
    p = primitive(name, ELEMENTWISE, flops_per_element=flops)

    @p.def_shape
    def _shape(gy: Spec, v: Spec, **attrs: Any) -> Spec:
        if v.dtype.kind != "f":
            fail(name, f"{saved} must be floating point", dtype=v.dtype.name)
        same_float_dtype(name, gy, v)
        if gy.shape != v.shape:
            fail(name, f"gy must have the shape of {saved}", gy=list(gy.shape), **{saved: list(v.shape)})
        return v

    return p


relu_grad_p = _act_grad("relu_grad", 1, "y")
leaky_relu_grad_p = _act_grad("leaky_relu_grad", 2, "x")  # attrs: negative_slope
elu_grad_p = _act_grad("elu_grad", 7, "x")  # attrs: alpha
sigmoid_grad_p = _act_grad("sigmoid_grad", 3, "y")
tanh_grad_p = _act_grad("tanh_grad", 3, "y")
silu_grad_p = _act_grad("silu_grad", 10, "x")
clamp_grad_p = _act_grad("clamp_grad", 2, "x")  # attrs: min, max

relu_p.def_vjp(lambda g, y, x: (bind(relu_grad_p, g, y),))
leaky_relu_p.def_vjp(lambda g, y, x, negative_slope: (bind(leaky_relu_grad_p, g, x, negative_slope=negative_slope),))
elu_p.def_vjp(lambda g, y, x, alpha: (bind(elu_grad_p, g, x, alpha=alpha),))
sigmoid_p.def_vjp(lambda g, y, x: (bind(sigmoid_grad_p, g, y),))
tanh_p.def_vjp(lambda g, y, x: (bind(tanh_grad_p, g, y),))
silu_p.def_vjp(lambda g, y, x: (bind(silu_grad_p, g, x),))
clamp_p.def_vjp(lambda g, y, x, min, max: (bind(clamp_grad_p, g, x, min=min, max=max),))  # noqa: A006

# second order: every gradient is linear in gy (so d/dgy binds the same primitive on the new cotangent); d/dv is
# zero for the piecewise-constant ones
relu_grad_p.def_vjp(lambda g, gx, gy, y: (bind(relu_grad_p, g, y), None))
leaky_relu_grad_p.def_vjp(lambda g, gx, gy, x, negative_slope: (
    bind(leaky_relu_grad_p, g, x, negative_slope=negative_slope), None))
clamp_grad_p.def_vjp(lambda g, gx, gy, x, min, max: (bind(clamp_grad_p, g, x, min=min, max=max), None))  # noqa: A006


@elu_grad_p.def_vjp
def _elu_grad_vjp(g: Tensor, gx: Tensor, gy: Tensor, x: Tensor, alpha: float) -> tuple[Tensor, Tensor | None]:
    gv = None
    if x.requires_grad:  # d/dx (gy * alpha * exp(x)) on x <= 0, else 0
        gv = where(greater(x, 0.0), 0.0, g * gy * exp(minimum(x, 0.0)) * alpha)
    return bind(elu_grad_p, g, x, alpha=alpha), gv


@sigmoid_grad_p.def_vjp
def _sigmoid_grad_vjp(g: Tensor, gx: Tensor, gy: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
    return bind(sigmoid_grad_p, g, y), (g * gy * (1.0 - y * 2.0) if y.requires_grad else None)


@tanh_grad_p.def_vjp
def _tanh_grad_vjp(g: Tensor, gx: Tensor, gy: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
    return bind(tanh_grad_p, g, y), (g * gy * y * -2.0 if y.requires_grad else None)


@silu_grad_p.def_vjp
def _silu_grad_vjp(g: Tensor, gx: Tensor, gy: Tensor, x: Tensor) -> tuple[Tensor, Tensor | None]:
    gv = None
    if x.requires_grad:  # silu'' = s (1 - s) (2 + x (1 - 2 s))
        s = sigmoid(x)
        gv = g * gy * (s * (1.0 - s) * (2.0 + x * (1.0 - s * 2.0)))
    return bind(silu_grad_p, g, x), gv


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
    """True division: integer and bool operands give the default float dtype, as in PyTorch."""
    a, b = lift_pair(a, b)
    if a.dtype.kind not in "fc":
        a, b = astype(a, np.float32), astype(b, np.float32)
    return bind(div_p, a, b)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - the PyTorch name
    return bind(pow_p, *lift_pair(a, b))


def maximum(a: Any, b: Any) -> Tensor:
    return bind(maximum_p, *lift_pair(a, b))


def minimum(a: Any, b: Any) -> Tensor:
    return bind(minimum_p, *lift_pair(a, b))


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, np.integer, np.floating))


def clamp(x: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """torch.clamp: scalar bounds bind the ``clamp`` primitive (gradient where ``min <= x <= max``); tensor
    bounds compose maximum / minimum."""
    if min is None and max is None:
        return x
    if _is_scalar(min) and _is_scalar(max):
        return bind(clamp_p, x, min=None if min is None else float(min), max=None if max is None else float(max))
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
        same_float_dtype(name, a, b)  # the functions below promote first
        return Spec(broadcast_shapes(name, a.shape, b.shape), np.bool_)

    return p


# less / less_equal are these with the operands swapped; ``a >= b`` is its own primitive, not ``not a < b``, so
# comparisons with NaN are False as in IEEE (and PyTorch); ``a != b`` is True for NaN
greater_p = _compare("greater")
greater_equal_p = _compare("greater_equal")
equal_p = _compare("equal")
not_equal_p = _compare("not_equal")


def greater(a: Any, b: Any) -> Tensor:
    return bind(greater_p, *lift_pair(a, b))


def greater_equal(a: Any, b: Any) -> Tensor:
    return bind(greater_equal_p, *lift_pair(a, b))


def less(a: Any, b: Any) -> Tensor:
    return bind(greater_p, *reversed(lift_pair(a, b)))


def less_equal(a: Any, b: Any) -> Tensor:
    return bind(greater_equal_p, *reversed(lift_pair(a, b)))


def equal(a: Any, b: Any) -> Tensor:
    """Elementwise ``a == b`` (torch.eq; unlike torch.equal, which answers one bool for the whole tensors)."""
    return bind(equal_p, *lift_pair(a, b))


def not_equal(a: Any, b: Any) -> Tensor:
    return bind(not_equal_p, *lift_pair(a, b))


# PyTorch's short names
gt, ge, lt, le, eq, ne = greater, greater_equal, less, less_equal, equal, not_equal


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


def to_dtype(x: Any, dtype: np.dtype) -> Tensor:
    """``x`` as a Tensor of ``dtype``: Tensors through the ``astype`` primitive (gradients flow), values directly."""
    if isinstance(x, Tensor):
        if x.dtype == dtype:
            return x
        return astype(x, dtype)
    return Tensor(np.asarray(x, dtype=dtype))


def lift_pair(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Both operands as Tensors of their promoted dtype (:func:`result_type`)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype == b.dtype:
        return a, b  # the common cases, kept cheap
    if isinstance(a, Tensor) and isinstance(b, float) and a.dtype.kind == "f":
        return a, Tensor(np.asarray(b, a.dtype))
    dtype = result_type(a, b)
    return to_dtype(a, dtype), to_dtype(b, dtype)
