"""Fused backward primitives created by graph passes on joint (forward + backward) graphs, never by user code.

- ``max_pool2d_relu_grad(gy, y; kernel, stride, padding, dilation, ceil_mode, bias_grad)`` -> ``(gx,)`` or
  ``(gx, gb)``: the gradient through ``max_pool2d(relu_out)`` and the ReLU that made ``y = relu_out``, i.e.
  ``gx = relu_grad(max_pool2d_grad(gy, y), y)``, and with ``bias_grad`` also ``gb = sum(gx, axes=(0, 2, 3))``
  (the bias gradient of the conv in front of the ReLU). The pool attrs are max_pool2d's. One pass instead of
  three: the winning tap of each window is found once, masked by its own value (the window's max is the ReLU
  output at that tap) and summed per channel.

- ``log_softmax_nll(x, t, g; class_coef's attrs)`` -> ``(loss, gx)``: a joint graph's mean cross-entropy over
  2-D logits ``x`` and class targets ``t``, forward and backward, ``g`` the 0-d gradient reaching the loss. With
  ``coef, denom = class_coef(t)``: ``loss = -sum(log_softmax(x, 1) * coef) / denom`` and, with
  ``m = -(g / denom) * coef``, ``gx = m - exp(log_softmax(x, 1)) * sum(m, 1, keepdims)``. One pass over the rows
  instead of ~17 small nodes (the softmax is computed once, the one-hot coefficients never materialized).

- ``matmul_tn(a, b)`` -> ``transpose(a) @ b`` for a 2-D ``a``: the weight gradients of linear layers
  (``g^T @ x``) without the transposed copy of ``g``; a kernel reads ``a`` in place through a transposed view.

The decompositions run the unfused kernels (max_pool2d_grad, relu_grad in place, sum), so the numpy reference
and any backend without a fused kernel give the unfused results exactly. There is no vjp: these primitives live
only in backward graphs (double backward through max pooling is not supported anyway).
"""

from __future__ import annotations

from typing import Any

from ..primitive import FUSED, PRIMITIVES, Cost, Spec, primitive
from .blocked import _apply

__all__: list[str] = []

max_pool2d_relu_grad_p = primitive("max_pool2d_relu_grad", FUSED, multiple_results=True)

POOL_ATTRS = ("kernel", "stride", "padding", "dilation", "ceil_mode")
BIAS_AXES = (0, 2, 3)


@max_pool2d_relu_grad_p.def_shape
def _shape(gy: Spec, y: Spec, *, bias_grad: bool, **pool: Any) -> tuple[Spec, ...]:
    gx = PRIMITIVES["max_pool2d_grad"].shape_rule(gy, y, **pool)
    return (gx, Spec((y.shape[1],), y.dtype)) if bias_grad else (gx,)


@max_pool2d_relu_grad_p.def_cost
def _cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], *, bias_grad: bool, kernel, **pool: Any) -> Cost:
    gy, y = ins
    taps = kernel[0] * kernel[1]
    # re-find each window's max, one select per input element, one add per gradient element for the bias
    flops = gy.size * taps + y.size + (outs[0].size if bias_grad else 0)
    return Cost(0, flops, gy.nbytes + y.nbytes, sum(s.nbytes for s in outs))


@max_pool2d_relu_grad_p.def_decompose
def _decompose(lookup: Any, gy: Any, y: Any, /, *, out: tuple, bias_grad: bool, **pool: Any) -> None:
    # positional-only: the pool's own attrs include one named ``kernel``
    gx = out[0]
    lookup("max_pool2d_grad")(gy, y, out=gx, **pool)
    lookup("relu_grad")(gx, y, out=gx)
    if bias_grad:
        lookup("sum")(gx, out=out[1], axes=BIAS_AXES, keepdims=False)


# --- cross-entropy forward and backward in one node -------------------------------------------------------------

log_softmax_nll_p = primitive("log_softmax_nll", FUSED, multiple_results=True)


@log_softmax_nll_p.def_shape
def _ce_shape(x: Spec, t: Spec, g: Spec, **coef_attrs: Any) -> tuple[Spec, ...]:
    coef, _ = PRIMITIVES["class_coef"].shape_rule(t, **coef_attrs)
    if x.ndim != 2 or coef.shape != x.shape or g.shape != ():
        raise ValueError(f"log_softmax_nll: needs 2-D logits, one target per row and a 0-d loss gradient, got "
                         f"logits {x.shape}, targets {t.shape}, gradient {g.shape}")
    return Spec((), x.dtype), Spec(x.shape, x.dtype)


@log_softmax_nll_p.def_cost
def _ce_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], **coef_attrs: Any) -> Cost:
    x, t, _ = ins
    return Cost(0, 8 * x.size, x.nbytes + t.nbytes, outs[1].nbytes)


@log_softmax_nll_p.def_decompose
def _ce_decompose(lookup: Any, x: Any, t: Any, g: Any, /, *, out: tuple, **coef_attrs: Any) -> None:
    # the unfused nodes the pass replaced, in their order: the numpy reference stays bit for bit
    coef, denom = _apply(lookup, "class_coef", t, **coef_attrs)
    logp = _apply(lookup, "log_softmax", x, axis=1)
    s1 = _apply(lookup, "sum", _apply(lookup, "mul", logp, coef), axes=(1,), keepdims=False)
    s0 = _apply(lookup, "sum", _apply(lookup, "neg", s1), axes=(0,), keepdims=False)
    _apply(lookup, "div", s0, denom, out=out[0])
    m = _apply(lookup, "mul", _apply(lookup, "neg", _apply(lookup, "div", g, denom)), coef)
    r = _apply(lookup, "sum", m, axes=(1,), keepdims=True)
    _apply(lookup, "sub", m, _apply(lookup, "mul", _apply(lookup, "exp", logp), r), out=out[1])


# --- a matmul reading its first operand transposed --------------------------------------------------------------

matmul_tn_p = primitive("matmul_tn", FUSED)


@matmul_tn_p.def_shape
def _tn_shape(a: Spec, b: Spec) -> Spec:
    if a.ndim != 2:
        raise ValueError(f"matmul_tn: the transposed operand must be 2-D, got a {a.shape}")
    return PRIMITIVES["matmul"].shape_rule(Spec(a.shape[::-1], a.dtype), b)


@matmul_tn_p.def_cost
def _tn_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...]) -> Cost:
    a, b = ins
    return PRIMITIVES["matmul"].cost((Spec(a.shape[::-1], a.dtype), b), outs)


@matmul_tn_p.def_decompose
def _tn_decompose(lookup: Any, a: Any, b: Any, /, *, out: Any) -> None:
    _apply(lookup, "matmul", _apply(lookup, "transpose", a, perm=(1, 0)), b, out=out)
