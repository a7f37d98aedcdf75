"""Import converters for elementwise math (numpy broadcasting), comparisons, casts, reductions and data movement
(Reshape, Flatten, Transpose, Squeeze/Unsqueeze, Concat, Split, Slice, Pad, Gather, Expand, Tile)."""

from __future__ import annotations

import builtins
import math

import numpy as np
from onnx import helper

import engine.functional as F
from engine.ops.resample import pad_modes
from engine.ops.shape import constant_pad
from engine.tensor import Tensor

from .node import OnnxNode, converter


def _pair(n: OnnxNode, i: int = 0, j: int = 1) -> tuple[Tensor, Tensor]:
    """Two operands as Tensors; a static one takes the other's dtype."""
    if isinstance(n.inputs[i], Tensor):
        a = n.inputs[i]
        b = n.tensor(j, like=a)
    else:
        b = n.tensor(j)
        a = n.tensor(i, like=b)
    if n.opset < 7 and n.attr("broadcast") and n.attr("axis") is not None:  # legacy: b aligned at `axis` of a
        axis = n.axis(int(n.attr("axis")), a.ndim)
        b = F.reshape(b, (1,) * axis + b.shape + (1,) * (a.ndim - axis - b.ndim))
    return a, b


# --- elementwise ------------------------------------------------------------------------------------------------
_BINARY = {"Add": F.add, "Sub": F.sub, "Mul": F.mul, "Div": F.div}


@converter("Add", "Sub", "Mul", "Div")
def binary(n: OnnxNode) -> Tensor:
    a, b = _pair(n)
    if n.op == "Div" and a.dtype.kind in "iub" and b.dtype.kind in "iub":
        raise n.unsupported(f"integer Div ({a.dtype.name} / {b.dtype.name}: ONNX truncates, the engine's div is a "
                            f"floating-point division)")
    return _BINARY[n.op](a, b)


@converter("Pow")
def pow_(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    e = n.tensor(1, like=x)
    return F.pow(x, e if e.dtype == x.dtype else F.astype(e, x.dtype))


_UNARY = {"Neg": F.neg, "Abs": F.abs, "Sqrt": F.sqrt, "Exp": F.exp, "Log": F.log, "Identity": lambda x: x,
          "Reciprocal": lambda x: 1.0 / x}


@converter(*_UNARY)
def unary(n: OnnxNode) -> Tensor:
    return _UNARY[n.op](n.tensor(0))


@converter("Sum", "Mean", "Max", "Min")
def variadic(n: OnnxNode) -> Tensor:
    first = next(v for v in n.inputs if isinstance(v, Tensor))
    xs = [n.tensor(i, like=first) for i in range(len(n.inputs))]
    fn = {"Sum": F.add, "Mean": F.add, "Max": F.maximum, "Min": F.minimum}[n.op]
    y = xs[0]
    for x in xs[1:]:
        y = fn(y, x)
    return y * (1.0 / len(xs)) if n.op == "Mean" else y


@converter("Greater", "Less", "Equal")
def compare(n: OnnxNode) -> Tensor:
    a, b = _pair(n)
    return F.greater(a, b) if n.op == "Greater" else F.greater(b, a) if n.op == "Less" else F.equal(a, b)


@converter("Where")
def where(n: OnnxNode) -> Tensor:
    a, b = _pair(n, 1, 2)
    return F.where(n.tensor(0), a, b)


@converter("Cast", "CastLike")
def cast(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    if n.op == "CastLike":
        dtype = (n.inputs[1].dtype if isinstance(n.inputs[1], Tensor) else np.asarray(n.inputs[1]).dtype)
    else:
        dtype = helper.tensor_dtype_to_np_dtype(int(n.attr("to")))
    if np.dtype(dtype).kind not in "fiub":
        raise n.unsupported(f"cast to {np.dtype(dtype).name}")
    return F.astype(x, dtype)


# --- reductions -------------------------------------------------------------------------------------------------
_AXES_AS_INPUT = {"ReduceSum": 13}  # the other reductions take axes as an input from opset 18


def _reduce_axes(n: OnnxNode, x: Tensor) -> tuple[int, ...] | None:
    if n.opset >= _AXES_AS_INPUT.get(n.op, 18):
        axes = n.static_ints(1, "axes")
    else:
        axes = n.ints("axes")
    if not axes:
        if n.attr("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.ndim))
    return tuple(sorted({n.axis(a, x.ndim) for a in axes}))


_EMPTY = {"ReduceMean": np.nan, "ReduceSum": 0.0, "ReduceMax": -np.inf, "ReduceMin": np.inf, "ReduceSumSquare": 0.0,
          "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceLogSum": -np.inf, "ReduceLogSumExp": -np.inf}


@converter("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL1", "ReduceL2",
           "ReduceLogSum", "ReduceLogSumExp", static=(1,))
def reduce(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    axes = _reduce_axes(n, x)
    if axes is None:
        return x
    keep = bool(n.attr("keepdims", 1))
    if any(x.shape[a] == 0 for a in axes):  # an empty reduction is the op's identity element: a constant
        if x.dtype.kind != "f":
            raise n.unsupported(f"reducing an empty axis of a {x.dtype.name} tensor")
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        return np.full(shape, _EMPTY[n.op], dtype=x.dtype)
    op = n.op
    if op == "ReduceMean":
        return F.mean(x, axes, keep)
    if op == "ReduceSum":
        return F.sum(x, axes, keep)
    if op == "ReduceMax":
        return F.amax(x, axes, keep)
    if op == "ReduceMin":
        return -F.amax(-x, axes, keep)
    if op == "ReduceSumSquare":
        return F.sum(x * x, axes, keep)
    if op == "ReduceL1":
        return F.sum(F.abs(x), axes, keep)
    if op == "ReduceL2":
        return F.sqrt(F.sum(x * x, axes, keep))
    if op == "ReduceLogSum":
        return F.log(F.sum(x, axes, keep))
    m = F.amax(x, axes, True)  # ReduceLogSumExp, shifted by the max so exp cannot overflow
    y = F.log(F.sum(F.exp(x - m), axes, True)) + m
    return y if keep else F.reshape(y, tuple(d for i, d in enumerate(y.shape) if i not in axes))


@converter("ArgMax", "ArgMin")
def arg_extreme(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    axis = n.axis(int(n.attr("axis", 0)), x.ndim)
    x = x if n.op == "ArgMax" else -x
    if not n.attr("select_last_index", 0):
        return F.argmax(x, axis, bool(n.attr("keepdims", 1)))
    last = x.shape[axis] - 1  # the first maximum of the reversed axis is the last one
    i = F.argmax(take(x, axis, list(range(last, -1, -1))), axis, bool(n.attr("keepdims", 1)))
    return F.sub(Tensor(np.asarray(last, np.int64)), i)


# --- data movement ----------------------------------------------------------------------------------------------
def take(x: Tensor, axis: int, index: list[int]) -> Tensor:
    """``x`` at the given positions along ``axis``: one slice per run of consecutive positions, concatenated."""
    runs: list[list[int]] = []
    for i in index:
        if runs and i == runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([i, i + 1])
    if not runs:
        return F.slice(x, axis, 0, 0)
    return F.concat([F.slice(x, axis, a, b) for a, b in runs], axis)


@converter("Reshape", static=(1,))
def reshape(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    shape = n.static_ints(1, "shape") if n.opset >= 5 else n.ints("shape")
    if not n.attr("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return F.reshape(x, tuple(shape))


@converter("Flatten")
def flatten(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    axis = int(n.attr("axis", 1))
    if not -x.ndim <= axis <= x.ndim:
        raise n.fail(f"axis must be in [{-x.ndim}, {x.ndim}] (got {axis})")
    axis = axis + x.ndim if axis < 0 else axis
    return F.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


@converter("Transpose")
def transpose(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    perm = n.ints("perm", list(range(x.ndim))[::-1])
    return F.permute(x, tuple(perm))


def _axes_arg(n: OnnxNode, since: int) -> list[int] | None:
    return n.static_ints(1, "axes") if n.opset >= since else n.ints("axes")


@converter("Squeeze", static=(1,))
def squeeze(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    axes = _axes_arg(n, 13)
    axes = {n.axis(a, x.ndim) for a in axes} if axes else {i for i, d in enumerate(x.shape) if d == 1}
    if any(x.shape[a] != 1 for a in axes):
        raise n.fail(f"cannot squeeze axes {sorted(axes)} of shape {list(x.shape)} (size != 1)")
    return F.reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


@converter("Unsqueeze", static=(1,))
def unsqueeze(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    axes = _axes_arg(n, 13) or []
    rank = x.ndim + len(axes)
    new = {n.axis(a, rank) for a in axes}
    dims = iter(x.shape)
    return F.reshape(x, tuple(1 if i in new else next(dims) for i in range(rank)))


@converter("Concat")
def concat(n: OnnxNode) -> Tensor:
    first = next(v for v in n.inputs if isinstance(v, Tensor))
    xs = [n.tensor(i, like=first) for i in range(len(n.inputs)) if n.has(i)]
    axis = n.axis(int(n.attr("axis")), first.ndim)
    kept = [x for x in xs if x.shape[axis] > 0] or xs[:1]
    return F.concat(kept, axis)


@converter("Split", static=(1,))
def split(n: OnnxNode) -> tuple[Tensor, ...]:
    x = n.tensor(0)
    axis = n.axis(int(n.attr("axis", 0)), x.ndim)
    sizes = n.static_ints(1, "split") if n.opset >= 13 else n.ints("split")
    if sizes is None:
        parts = int(n.attr("num_outputs", len(n.proto.output)))
        chunk = -(-x.shape[axis] // parts)
        sizes = [min(chunk, max(x.shape[axis] - chunk * i, 0)) for i in range(parts)]
    if sum(sizes) != x.shape[axis]:
        raise n.fail(f"split sizes {sizes} must add up to the axis size {x.shape[axis]}")
    starts = np.cumsum([0] + sizes)
    return tuple(F.slice(x, axis, int(a), int(b)) for a, b in zip(starts[:-1], starts[1:]))


@converter("Slice", static=(1, 2, 3, 4))
def slice_(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    if n.opset < 10:
        starts, ends, axes, steps = n.ints("starts"), n.ints("ends"), n.ints("axes"), None
    else:
        starts, ends = n.static_ints(1, "starts"), n.static_ints(2, "ends")
        axes, steps = n.static_ints(3, "axes"), n.static_ints(4, "steps")
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [builtins.slice(None)] * x.ndim
    reverse = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise n.fail("steps must be non-zero")
        a = n.axis(axis, x.ndim)
        index[a] = builtins.slice(start, end, step)
        if step < 0:
            reverse.append(a)
    forward = [builtins.slice(None) if a in reverse else s for a, s in enumerate(index)]
    y = F.getitem(x, tuple(forward))
    for a in reverse:  # negative steps: pick the positions one run at a time
        y = take(y, a, list(range(*index[a].indices(x.shape[a]))))
    return y


@converter("Gather", static=(1,))
def gather(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    idx = np.asarray(n.static(1, "indices")).astype(np.int64)
    axis = n.axis(int(n.attr("axis", 0)), x.ndim)
    d = x.shape[axis]
    if idx.size and (idx.min() < -d or idx.max() >= d):
        raise n.fail(f"indices must be in [{-d}, {d}) (got {idx.min()}..{idx.max()})")
    y = take(x, axis, [int(i) % d for i in idx.reshape(-1)])
    return F.reshape(y, x.shape[:axis] + idx.shape + x.shape[axis + 1:])


@converter("Expand", static=(1,))
def expand(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    shape = tuple(np.broadcast_shapes(x.shape, tuple(n.static_ints(1, "shape"))))
    return F.broadcast_to(F.reshape(x, (1,) * (len(shape) - x.ndim) + x.shape), shape)


@converter("Tile", static=(1,))
def tile(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    for axis, r in enumerate(n.static_ints(1, "repeats")):
        if r != 1:
            x = F.concat([x] * r, axis) if r > 0 else F.slice(x, axis, 0, 0)
    return x


_PAD_MODES = {"edge": "replicate", "reflect": "reflect", "wrap": "circular"}  # ONNX name -> engine pad_modes name


@converter("Pad", static=(1, 2, 3))
def pad(n: OnnxNode) -> Tensor:
    """Negative pads crop first (ONNX crops before it pads), then the positive pads are added by ``mode``."""
    x = n.tensor(0)
    mode = n.attr("mode", "constant")
    if mode != "constant" and mode not in _PAD_MODES:
        raise n.fail(f"mode must be constant, edge, reflect or wrap (got {mode!r})")
    if n.opset < 11:
        pads, value, axes = n.ints("pads"), float(n.attr("value", 0.0)), None
    else:
        pads = n.static_ints(1, "pads")
        v = n.static(2, "constant_value")
        value = 0.0 if v is None or np.size(v) == 0 else float(np.asarray(v).reshape(-1)[0])
        axes = n.static_ints(3, "axes")
    axes = list(range(x.ndim)) if axes is None else [n.axis(a, x.ndim) for a in axes]
    if len(pads) != 2 * len(axes):
        raise n.fail(f"pads must hold 2 values per padded axis (got {pads} for axes {axes})")
    pairs = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        pairs[a] = (pads[i], pads[i + len(axes)])
    if any(min(p) < 0 for p in pairs):
        x = F.getitem(x, tuple(builtins.slice(-min(b, 0), d - (-min(e, 0))) for (b, e), d in zip(pairs, x.shape)))
    grow = tuple((max(b, 0), max(e, 0)) for b, e in pairs)
    if mode == "constant":
        return constant_pad(x, grow, value)
    if mode == "reflect" and any(max(p) >= d for p, d in zip(grow, x.shape)):
        raise n.fail(f"reflect pads must be smaller than the padded axis (pads {list(grow)}, shape {list(x.shape)})")
    if mode == "wrap" and any(max(p) > d for p, d in zip(grow, x.shape)):
        raise n.unsupported(f"wrap pads larger than the padded axis (pads {list(grow)}, shape {list(x.shape)})")
    return pad_modes(x, grow, _PAD_MODES[mode])


@converter("ConstantOfShape", static=(0,))
def constant_of_shape(n: OnnxNode) -> np.ndarray:
    """A shape given at run time (a graph input read as a value): the result is a constant, not a traced op."""
    value = np.asarray(n.attr("value", np.zeros(1, np.float32))).reshape(-1)
    return np.full(tuple(n.static_ints(0, "shape")), value[0], dtype=value.dtype)
