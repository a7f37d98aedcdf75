"""Smooth activations: gelu (a primitive), and the composites softplus, logsigmoid, mish, hardswish.

- ``gelu(x)`` = ``x * Phi(x)`` with the standard normal CDF ``Phi(x) = (1 + erf(x / sqrt 2)) / 2``: erf is no
  composite of the other primitives, so exact GELU is a primitive with a single-pass gradient primitive
  ``gelu_grad(gy, x) = gy * (Phi(x) + x * phi(x))`` (``phi`` the normal density), as the activations of
  engine/ops/elementwise.py have. ``approximate="tanh"`` is the composite
  ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
- ``logsigmoid(x) = min(x, 0) - log(1 + exp(-|x|))`` never overflows; at ``x = 0`` minimum splits its gradient
  evenly and ``|x|`` has gradient 0, so the composite's derivative there is the exact 1/2 (and softplus's too).
- ``hardswish(x) = x * clamp(x + 3, 0, 6) / 6`` is written with two selects (``x <= -3``: 0, ``x >= 3``: x), which
  gives torch's one-sided gradients at the kinks.
"""

from __future__ import annotations

import math

from ..autograd import bind
from ..tensor import Tensor
from .elementwise import _act_grad, _unary, exp, greater, log, minimum, tanh, where
from .elementwise import abs as _abs

__all__ = ["gelu", "softplus", "logsigmoid", "mish", "hardswish"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

gelu_p = _unary("gelu", 12)
gelu_grad_p = _act_grad("gelu_grad", 16, "x")
gelu_p.def_vjp(lambda g, y, x: (bind(gelu_grad_p, g, x),))


@gelu_grad_p.def_vjp
def _gelu_grad_vjp(g: Tensor, gx: Tensor, gy: Tensor, x: Tensor) -> tuple[Tensor, Tensor | None]:
    gv = None
    if x.requires_grad:  # d/dx (Phi + x phi) = phi (2 - x^2)
        gv = g * gy * exp(x * x * -0.5) * _INV_SQRT_2PI * (2.0 - x * x)
    return bind(gelu_grad_p, g, x), gv


def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """torch.nn.functional.gelu: ``x * Phi(x)`` (``approximate="none"``) or its tanh approximation."""
    if approximate == "none":
        return bind(gelu_p, input)
    if approximate != "tanh":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh' (got {approximate!r})")
    x = input
    inner = (x + x * x * x * 0.044715) * math.sqrt(2.0 / math.pi)
    return x * 0.5 * (tanh(inner) + 1.0)


def logsigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """torch.nn.functional.logsigmoid: ``log(1 / (1 + exp(-x)))``, stable for every x."""
    return minimum(input, 0.0) - log(exp(-_abs(input)) + 1.0)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    """torch.nn.functional.softplus: ``log(1 + exp(beta x)) / beta``, and ``x`` where ``beta x > threshold``."""
    bx = input * float(beta) if beta != 1.0 else input
    soft = -logsigmoid(-bx)  # log(1 + exp(bx)) without overflow
    if beta != 1.0:
        soft = soft * (1.0 / float(beta))
    return where(greater(bx, float(threshold)), input, soft)


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """torch.nn.functional.mish: ``x * tanh(softplus(x))``."""
    return input * tanh(softplus(input))


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """torch.nn.functional.hardswish: ``x * clamp(x + 3, 0, 6) / 6``, as selects so the gradient at the
    kinks is torch's: 0 at ``x = -3``, 1 at ``x = 3``."""
    x = input
    inner = where(greater(3.0, x), x * (x + 3.0) * (1.0 / 6.0), x)
    return where(greater(x, -3.0), inner, 0.0)
