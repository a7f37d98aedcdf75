"""Export rules: one function per primitive that writes the ONNX nodes computing it (opset >= 13 semantics).

A rule is ``fn(b: Builder, node: Node, ins: list[str], out: str)``. Fused primitives are lowered back to standard ops
(Conv/Gemm, Add for the residual, then the activation); a primitive with no rule is an export error that names it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from engine.ops.fused import split_inputs
from engine.ops.pool import adaptive_windows

from ..ir import Graph, Node
from .errors import OnnxExportError


class Builder:
    """Collects ONNX nodes and initializers with unique names."""

    def __init__(self, graph: Graph, opset: int, overrides: dict[int, dict[str, Any]] | None = None,
                 bn_momentum: dict[str, float] | None = None):
        self.graph = graph
        self.opset = opset
        self.overrides = overrides or {}  # per node id: batch-independent attribute values (graph/onnx/dynamic.py)
        self.bn_momentum = bn_momentum or {}  # per batch_norm_infer node name: ONNX momentum of its module
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.names: dict[int, str] = {}  # value id -> its ONNX name (a rule's extra outputs are named here)
        self._used: set[str] = set()

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name

    def const(self, array: Any, hint: str, dtype: Any = None) -> str:
        arr = np.asarray(array, dtype=dtype)
        name = self.unique(hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def ints(self, values: Any, hint: str) -> str:
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), hint)

    def attr(self, node: Node, key: str) -> Any:
        """``node.attrs[key]``, or the value that does not bake the batch size in (dynamic-batch export)."""
        return self.overrides.get(id(node), {}).get(key, node.attrs[key])

    def add(self, op: str, inputs: list[str], node: Node, out: str | None = None, **attrs: Any) -> str:
        out = out or self.unique(f"{node.name}.{op}")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.unique(f"{node.name}/{op}"), **attrs))
        return out


Rule = Callable[[Builder, Node, list[str], str], None]
EXPORTERS: dict[str, Rule] = {}


def rule(*prims: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for p in prims:
            EXPORTERS[p] = fn
        return fn

    return deco


def _fail(node: Node, constraint: str) -> OnnxExportError:
    return OnnxExportError(f"{node.op.name} node '{node.name}': {constraint}")


def _onnx_pads(padding: Any) -> list[int]:
    """((pt, pb), (pl, pr)) -> ONNX [pt, pl, pb, pr]."""
    (pt, pb), (pl, pr) = padding
    return [pt, pl, pb, pr]


# --- elementwise ------------------------------------------------------------------------------------------------
_SIMPLE = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max", "minimum": "Min",
           "neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs", "relu": "Relu",
           "sigmoid": "Sigmoid", "tanh": "Tanh", "greater": "Greater", "equal": "Equal", "where": "Where",
           "matmul": "MatMul"}


@rule(*_SIMPLE)
def _simple(b: Builder, node: Node, ins: list[str], out: str) -> None:
    b.add(_SIMPLE[node.op.name], ins, node, out)


def _activation(b: Builder, node: Node, name: str, attrs: dict[str, Any], x: str, out: str) -> None:
    if name == "silu":
        b.add("Mul", [x, b.add("Sigmoid", [x], node)], node, out)
    elif name == "leaky_relu":
        b.add("LeakyRelu", [x], node, out, alpha=float(attrs["negative_slope"]))
    elif name == "elu":
        b.add("Elu", [x], node, out, alpha=float(attrs["alpha"]))
    else:
        b.add(_SIMPLE[name], [x], node, out)


@rule("leaky_relu", "elu", "silu")
def _param_activation(b: Builder, node: Node, ins: list[str], out: str) -> None:
    _activation(b, node, node.op.name, node.attrs, ins[0], out)


@rule("clamp")
def _clamp(b: Builder, node: Node, ins: list[str], out: str) -> None:
    dt = node.inputs[0].dtype
    lo, hi = node.attrs["min"], node.attrs["max"]
    args = [ins[0], "" if lo is None else b.const(lo, f"{node.name}.min", dt)]
    if hi is not None:
        args.append(b.const(hi, f"{node.name}.max", dt))
    b.add("Clip", args, node, out)


@rule("astype")
def _astype(b: Builder, node: Node, ins: list[str], out: str) -> None:
    b.add("Cast", ins, node, out, to=helper.np_dtype_to_tensor_dtype(np.dtype(node.attrs["dtype"])))


@rule("softmax", "log_softmax")
def _softmax(b: Builder, node: Node, ins: list[str], out: str) -> None:
    b.add("Softmax" if node.op.name == "softmax" else "LogSoftmax", ins, node, out, axis=int(node.attrs["axis"]))


# --- reductions -------------------------------------------------------------------------------------------------
@rule("sum", "max")
def _reduce(b: Builder, node: Node, ins: list[str], out: str) -> None:
    op = "ReduceSum" if node.op.name == "sum" else "ReduceMax"
    axes, keep = list(node.attrs["axes"]), int(node.attrs["keepdims"])
    if not axes:  # reducing nothing: ONNX's empty axes would mean "all"
        b.add("Identity", ins, node, out)
    elif op == "ReduceSum" or b.opset >= 18:
        b.add(op, [ins[0], b.ints(axes, f"{node.name}.axes")], node, out, keepdims=keep)
    else:
        b.add(op, ins, node, out, axes=axes, keepdims=keep)


@rule("argmax")
def _argmax(b: Builder, node: Node, ins: list[str], out: str) -> None:
    b.add("ArgMax", ins, node, out, axis=int(node.attrs["axis"]), keepdims=int(node.attrs["keepdims"]))


# --- data movement ----------------------------------------------------------------------------------------------
@rule("reshape")
def _reshape(b: Builder, node: Node, ins: list[str], out: str) -> None:
    b.add("Reshape", [ins[0], b.ints(b.attr(node, "shape"), f"{node.name}.shape")], node, out)


@rule("transpose")
def _transpose(b: Builder, node: Node, ins: list[str], out: str) -> None:
    b.add("Transpose", ins, node, out, perm=[int(p) for p in node.attrs["perm"]])


@rule("broadcast_to")
def _expand(b: Builder, node: Node, ins: list[str], out: str) -> None:
    b.add("Expand", [ins[0], b.ints(b.attr(node, "shape"), f"{node.name}.shape")], node, out)


@rule("concat")
def _concat(b: Builder, node: Node, ins: list[str], out: str) -> None:
    b.add("Concat", ins, node, out, axis=int(node.attrs["axis"]))


def _pad_to(b: Builder, node: Node, x: str, pairs: list[tuple[int, int]], value: float, out: str) -> None:
    pads = [p for p, _ in pairs] + [q for _, q in pairs]
    b.add("Pad", [x, b.ints(pads, f"{node.name}.pads"), b.const(value, f"{node.name}.value", node.inputs[0].dtype)],
          node, out, mode="constant")


@rule("pad")
def _pad(b: Builder, node: Node, ins: list[str], out: str) -> None:
    _pad_to(b, node, ins[0], list(node.attrs["pads"]), float(node.attrs["value"]), out)


@rule("slice")
def _slice(b: Builder, node: Node, ins: list[str], out: str) -> None:
    a = node.attrs
    args = [ins[0], b.ints(a["starts"], f"{node.name}.starts"), b.ints(b.attr(node, "stops"), f"{node.name}.ends"),
            b.ints(range(len(a["starts"])), f"{node.name}.axes"), b.ints(a["steps"], f"{node.name}.steps")]
    b.add("Slice", args, node, out)


@rule("unslice")
def _unslice(b: Builder, node: Node, ins: list[str], out: str) -> None:
    a = node.attrs
    if any(k != 1 for k in a["steps"]):
        raise _fail(node, f"only unit steps have an ONNX form (Pad); got steps {a['steps']}")
    g = node.inputs[0].shape
    _pad_to(b, node, ins[0], [(s, d - s - n) for s, d, n in zip(a["starts"], a["shape"], g)], 0.0, out)


# --- network ops ------------------------------------------------------------------------------------------------
def _conv(b: Builder, node: Node, x: str, w: str, bias: str | None, attrs: dict[str, Any], out: str) -> None:
    wv = node.inputs[1]
    b.add("Conv", [x, w] + ([bias] if bias else []), node, out, kernel_shape=list(wv.shape[2:]),
          strides=list(attrs["stride"]), pads=_onnx_pads(attrs["padding"]), dilations=list(attrs["dilation"]),
          group=int(attrs["groups"]))


@rule("conv2d")
def _conv2d(b: Builder, node: Node, ins: list[str], out: str) -> None:
    _conv(b, node, ins[0], ins[1], ins[2] if len(ins) > 2 else None, node.attrs, out)


@rule("conv2d_input_grad")
def _conv_transpose(b: Builder, node: Node, ins: list[str], out: str) -> None:
    a = node.attrs
    gy, w = node.inputs
    pads = _onnx_pads(a["padding"])
    out_pad = []
    for i in range(2):
        extent = a["dilation"][i] * (w.shape[2 + i] - 1) + 1
        full = (gy.shape[2 + i] - 1) * a["stride"][i] - pads[i] - pads[i + 2] + extent
        out_pad.append(a["input_shape"][2 + i] - full)
    b.add("ConvTranspose", ins, node, out, kernel_shape=list(w.shape[2:]), strides=list(a["stride"]), pads=pads,
          dilations=list(a["dilation"]), group=int(a["groups"]), output_padding=out_pad)


@rule("max_pool2d", "avg_pool2d")
def _pool(b: Builder, node: Node, ins: list[str], out: str) -> None:
    a = node.attrs
    ph, pw = a["padding"]
    common = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=[ph, pw, ph, pw],
                  ceil_mode=int(a["ceil_mode"]))
    if node.op.name == "max_pool2d":
        b.add("MaxPool", ins, node, out, dilations=list(a["dilation"]), **common)
    elif a["divisor"]:
        raise _fail(node, f"divisor_override={a['divisor']} has no ONNX form")
    else:
        b.add("AveragePool", ins, node, out, count_include_pad=int(a["count_include_pad"]), **common)


@rule("adaptive_avg_pool2d", "adaptive_max_pool2d")
def _adaptive_pool(b: Builder, node: Node, ins: list[str], out: str) -> None:
    avg = node.op.name == "adaptive_avg_pool2d"
    (oh, ow), (h, w) = node.attrs["output_size"], node.inputs[0].shape[2:]
    if (oh, ow) == (1, 1):
        b.add("GlobalAveragePool" if avg else "GlobalMaxPool", ins, node, out)
    elif h % oh == 0 and w % ow == 0:  # equal, non-overlapping windows: a plain pool
        k = [h // oh, w // ow]
        b.add("AveragePool" if avg else "MaxPool", ins, node, out, kernel_shape=k, strides=k)
    else:  # PyTorch's overlapping windows, one axis at a time (a mean/max of a rectangle is separable)
        x = ins[0]
        for axis, size, o in ((2, h, oh), (3, w, ow)):
            parts = []
            for s, e in adaptive_windows(size, o):
                sl = b.add("Slice", [x, b.ints([s], f"{node.name}.s"), b.ints([e], f"{node.name}.e"),
                                     b.ints([axis], f"{node.name}.a")], node)
                red = "ReduceMean" if avg else "ReduceMax"
                parts.append(b.add(red, [sl, b.ints([axis], f"{node.name}.axes")], node, keepdims=1)
                             if b.opset >= 18 else b.add(red, [sl], node, axes=[axis], keepdims=1))
            x = b.add("Concat", parts, node, out if axis == 3 else None, axis=axis)


def _moments(b: Builder, node: Node, x: str, axes: list[int], eps: float, y: str | None) -> tuple[str, str, str]:
    """Normalize ``x`` by its mean and biased variance over ``axes`` (kept as 1s): (y, mean, var)."""
    ax = b.ints(axes, f"{node.name}.axes")
    mean = b.add("ReduceMean", [x, ax], node, keepdims=1) if b.opset >= 18 else \
        b.add("ReduceMean", [x], node, axes=axes, keepdims=1)
    d = b.add("Sub", [x, mean], node)
    sq = b.add("Mul", [d, d], node)
    var = b.add("ReduceMean", [sq, ax], node, keepdims=1) if b.opset >= 18 else \
        b.add("ReduceMean", [sq], node, axes=axes, keepdims=1)
    std = b.add("Sqrt", [b.add("Add", [var, b.const(eps, f"{node.name}.eps", node.inputs[0].dtype)], node)], node)
    return b.add("Div", [d, std], node, y), mean, var


def _stat(b: Builder, node: Node, stat: str, i: int) -> None:
    """A kept-dims statistic as the node's 1-D output ``i`` ((R,) or (C,); -1, as R may follow the batch)."""
    b.add("Reshape", [stat, b.ints([-1], f"{node.name}.stat_shape")], node, b.names[id(node.outputs[i])])


@rule("row_norm")
def _row_norm(b: Builder, node: Node, ins: list[str], out: str) -> None:
    _, mean, var = _moments(b, node, ins[0], [1], float(node.attrs["eps"]), out)
    _stat(b, node, mean, 1)
    _stat(b, node, var, 2)


@rule("batch_norm_train")
def _batch_norm_train(b: Builder, node: Node, ins: list[str], out: str) -> None:
    """Training-mode BatchNorm: batch statistics over all axes but the channels, then the affine map; the batch mean
    and biased variance are its other outputs (the traced graph updates the running buffers from them)."""
    x = node.inputs[0]
    y, mean, var = _moments(b, node, ins[0], [a for a in range(x.ndim) if a != 1], float(node.attrs["eps"]), None)
    shape = b.ints([1, -1] + [1] * (x.ndim - 2), f"{node.name}.channel_shape")
    y = b.add("Mul", [y, b.add("Reshape", [ins[1], shape], node)], node)
    b.add("Add", [y, b.add("Reshape", [ins[2], shape], node)], node, out)
    _stat(b, node, mean, 1)
    _stat(b, node, var, 2)


@rule("gelu")
def _gelu(b: Builder, node: Node, ins: list[str], out: str) -> None:
    if b.opset >= 20:
        b.add("Gelu", ins, node, out)
        return
    dt = node.inputs[0].dtype  # x * (1 + erf(x / sqrt 2)) / 2
    erf = b.add("Erf", [b.add("Mul", [ins[0], b.const(2 ** -0.5, f"{node.name}.rsqrt2", dt)], node)], node)
    half = b.add("Mul", [ins[0], b.const(0.5, f"{node.name}.half", dt)], node)
    b.add("Mul", [half, b.add("Add", [erf, b.const(1.0, f"{node.name}.one", dt)], node)], node, out)


@rule("batch_norm_infer")
def _batch_norm(b: Builder, node: Node, ins: list[str], out: str) -> None:
    momentum = b.bn_momentum.get(node.name)  # ONNX's default (0.9) where the graph does not say
    extra = {} if momentum is None else {"momentum": momentum}
    b.add("BatchNormalization", ins, node, out, epsilon=float(node.attrs["eps"]), **extra)


def _linear(b: Builder, node: Node, x: str, w: str, bias: str | None, out: str) -> None:
    if node.inputs[0].ndim == 2:
        b.add("Gemm", [x, w] + ([bias] if bias else []), node, out, transB=1)
        return
    y = b.add("MatMul", [x, b.add("Transpose", [w], node, perm=[1, 0])], node, None if bias else out)
    if bias:
        b.add("Add", [y, bias], node, out)


@rule("linear")
def _linear_rule(b: Builder, node: Node, ins: list[str], out: str) -> None:
    _linear(b, node, ins[0], ins[1], ins[2] if len(ins) > 2 else None, out)


@rule("fused_conv2d", "fused_linear")
def _fused(b: Builder, node: Node, ins: list[str], out: str) -> None:
    a = node.attrs
    x, w, bias, res = split_inputs(tuple(ins), a["has_bias"], a["has_residual"])
    act = a["activation"]
    y = out if res is None and act == "none" else None
    y = y or b.unique(f"{node.name}.core")
    if node.op.name == "fused_conv2d":
        _conv(b, node, x, w, bias, a, y)
    else:
        _linear(b, node, x, w, bias, y)
    if res is not None:
        y = b.add("Add", [y, res], node, out if act == "none" else None)
    if act != "none":
        _activation(b, node, act, dict(a.get("act_attrs", ())), y, out)
