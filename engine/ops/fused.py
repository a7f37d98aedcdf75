"""Fused inference primitives created by graph passes (graph/passes/fuse_epilogue.py), never by user code.

- ``fused_conv2d(x, w, [b], [residual]; stride, padding, dilation, groups, has_bias, has_residual, activation,
  act_attrs)`` = ``act(conv2d(x, w, b) + residual)``
- ``fused_linear(x, w, [b], [residual]; has_bias, has_residual, activation, act_attrs)``
  = ``act(linear(x, w, b) + residual)``

``activation`` is ``"none"`` or the name of a unary elementwise primitive of the ReLU family (``relu``,
``leaky_relu``, ``elu``, ``sigmoid``, ``tanh``, ``silu``); ``act_attrs`` is a tuple of ``(name, value)`` pairs
passed to it (``(("negative_slope", 0.01),)``). The shape rules are the unfused ones plus a residual check; the
cost is the sum of the parts; the decomposition runs the unfused kernels in place on ``out`` (the numpy reference
kernel, and any backend without a fused kernel of its own). There is no vjp: these primitives exist only in
inference graphs.
"""

from __future__ import annotations

from typing import Any

from ..primitive import FUSED, PRIMITIVES, Cost, Spec, fail, primitive

__all__: list[str] = []

ACTIVATIONS = ("none", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "silu")

fused_conv2d_p = primitive("fused_conv2d", FUSED)
fused_linear_p = primitive("fused_linear", FUSED)


def split_inputs(ins: tuple, has_bias: bool, has_residual: bool) -> tuple[Any, Any, Any, Any]:
    """(x, w, b | None, residual | None) from the positional inputs of a fused node."""
    x, w = ins[0], ins[1]
    b = ins[2] if has_bias else None
    r = ins[2 + int(has_bias)] if has_residual else None
    if len(ins) != 2 + int(has_bias) + int(has_residual):
        raise TypeError(f"fused op: expected {2 + int(has_bias) + int(has_residual)} inputs "
                        f"(has_bias={has_bias}, has_residual={has_residual}), got {len(ins)}")
    return x, w, b, r


def _epilogue_shape(op: str, y: Spec, r: Spec | None, activation: str) -> Spec:
    if activation not in ACTIVATIONS:
        fail(op, f"activation must be one of {ACTIVATIONS}", activation=activation)
    if r is not None and (r.shape != y.shape or r.dtype != y.dtype):
        fail(op, "residual must have the output's shape and dtype", residual=r, output=y)
    return y


def _base(name: str) -> Any:
    return PRIMITIVES[name]


@fused_conv2d_p.def_shape
def _fused_conv2d_shape(*ins: Spec, stride: tuple[int, int], padding: Any, dilation: tuple[int, int], groups: int,
                        has_bias: bool, has_residual: bool, activation: str, act_attrs: tuple = ()) -> Spec:
    x, w, b, r = split_inputs(ins, has_bias, has_residual)
    y = _base("conv2d").shape_rule(*([x, w] + ([b] if b is not None else [])), stride=stride, padding=padding,
                                   dilation=dilation, groups=groups)
    return _epilogue_shape("fused_conv2d", y, r, activation)


@fused_linear_p.def_shape
def _fused_linear_shape(*ins: Spec, has_bias: bool, has_residual: bool, activation: str,
                        act_attrs: tuple = ()) -> Spec:
    x, w, b, r = split_inputs(ins, has_bias, has_residual)
    y = _base("linear").shape_rule(*([x, w] + ([b] if b is not None else [])))
    return _epilogue_shape("fused_linear", y, r, activation)


def _fused_cost(base: str, conv_attrs: tuple[str, ...]):
    def cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], **attrs: Any) -> Cost:
        x, w, b, r = split_inputs(ins, attrs["has_bias"], attrs["has_residual"])
        core = _base(base).cost(tuple(s for s in (x, w, b) if s is not None), outs,
                                **{k: attrs[k] for k in conv_attrs})
        act = _base(attrs["activation"]).flops_per_element if attrs["activation"] != "none" else 0
        extra = outs[0].size * (act + int(r is not None))
        # the epilogue runs on the output while it is in cache: only the residual adds memory traffic
        return Cost(core.macs, core.flops + extra, core.bytes_read + (r.nbytes if r is not None else 0),
                    core.bytes_written)

    return cost


def _fused_decompose(base: str, conv_attrs: tuple[str, ...]):
    def decompose(kernel: Any, *ins: Any, out: Any, has_bias: bool, has_residual: bool, activation: str,
                  act_attrs: tuple = (), **attrs: Any) -> None:
        x, w, b, r = split_inputs(ins, has_bias, has_residual)
        kernel(base)(*(a for a in (x, w, b) if a is not None), out=out, **{k: attrs[k] for k in conv_attrs})
        if r is not None:
            kernel("add")(out, r, out=out)
        if activation != "none":
            kernel(activation)(out, out=out, **dict(act_attrs))

    return decompose


_CONV_ATTRS = ("stride", "padding", "dilation", "groups")
fused_conv2d_p.def_cost(_fused_cost("conv2d", _CONV_ATTRS))
fused_conv2d_p.def_decompose(_fused_decompose("conv2d", _CONV_ATTRS))
fused_linear_p.def_cost(_fused_cost("linear", ()))
fused_linear_p.def_decompose(_fused_decompose("linear", ()))
