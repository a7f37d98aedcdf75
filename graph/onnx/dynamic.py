"""A dynamic batch dimension for export: which dims and attributes of a traced graph follow the batch size.

Shapes are static in the engine, so a traced graph bakes the batch size into its attributes (a Reshape's target
shape, an Expand's shape, a full-range Slice's end). The graph is traced a second time at batch + 1 and the two are
compared position by position: a dim that differs follows the batch, and an attribute that differs must be one the
ONNX form can express independently of the batch, or the graph keeps its static batch:

- reshape: exactly one target entry differs -> ``-1`` there (ONNX infers it);
- broadcast_to: differing entries where the input's aligned dim also differs -> ``1`` (Expand keeps the input's dim);
- slice: differing stops on a full-range positive-step axis -> the largest int64 (Slice clamps to the dim);
- unslice / conv2d_input_grad: the batch only enters the full shape, not the pads they export.

Anything else (a constant whose shape follows the batch, a structural difference, two differing reshape entries)
is the reason the batch stays static.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.primitive import Spec

from ..ir import Graph, Node, Value

INT64_MAX = 2**63 - 1
BATCH = "N"


@dataclass
class DynamicBatch:
    """The result of comparing the two traces: per value (by id) the dims that follow the batch, and per node (by
    id) the attribute values to export instead of the traced ones."""

    batch: int
    dims: dict[int, set[int]] = field(default_factory=dict)
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)

    def shape(self, v: Value) -> list[int | str | None]:
        """The ONNX shape of a graph input/output: ``N`` for a batch-sized dim that follows the batch, unknown for
        another that does (a batch-derived size such as N * C), else the traced size."""
        varying = self.dims.get(id(v), set())
        return [(BATCH if d == self.batch else None) if i in varying else d for i, d in enumerate(v.shape)]


def twin_inputs(inputs: tuple[Any, ...], spec_of: Any) -> tuple[Spec, ...] | None:
    """The example inputs at batch + 1 (as Specs), or None when they do not share a leading batch dim."""
    specs = [spec_of(x) for x in inputs]
    if not specs or any(s.ndim == 0 for s in specs) or len({s.shape[0] for s in specs}) != 1:
        return None
    return tuple(Spec((s.shape[0] + 1,) + tuple(s.shape[1:]), s.dtype) for s in specs)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))) if (
            isinstance(a, (tuple, list)) and isinstance(b, (tuple, list))) else bool(a == b)
    except (TypeError, ValueError):
        return a is b


def _override(node: Node, twin: Node, key: str, varying: dict[int, set[int]]) -> Any:
    """The batch-independent value of ``node.attrs[key]``, or raise ValueError saying why there is none."""
    op, a, b = node.op.name, node.attrs[key], twin.attrs[key]
    if op == "reshape" and key == "shape":
        diff = [i for i, (p, q) in enumerate(zip(a, b)) if p != q]
        if len(diff) == 1 and len(a) == len(b):
            return tuple(-1 if i == diff[0] else d for i, d in enumerate(a))
        raise ValueError(f"{len(diff)} entries of its target shape {tuple(a)} follow the batch")
    if op == "broadcast_to" and key == "shape":
        x = node.inputs[0]
        lead = len(a) - x.ndim
        vx = varying.get(id(x), set())
        out = list(a)
        for i, (p, q) in enumerate(zip(a, b)):
            if p != q:
                if i < lead or (i - lead) not in vx:
                    raise ValueError(f"entry {i} of its shape {tuple(a)} follows the batch but its input's does not")
                out[i] = 1
        return tuple(out)
    if op == "slice" and key == "stops":
        x = node.inputs[0]
        out = list(a)
        for i, (p, q) in enumerate(zip(a, b)):
            if p != q:
                if not (node.attrs["steps"][i] > 0 and p == x.shape[i] and q == twin.inputs[0].shape[i]):
                    raise ValueError(f"its stop {p} on axis {i} follows the batch without being the full axis")
                out[i] = INT64_MAX
        return tuple(out)
    if op == "unslice" and key == "shape":
        after = [[d - s - n for s, d, n in zip(nd.attrs["starts"], nd.attrs["shape"], nd.inputs[0].shape)]
                 for nd in (node, twin)]
        if after[0] == after[1]:
            return a
        raise ValueError("its padding follows the batch")
    if op == "conv2d_input_grad" and key == "input_shape" and tuple(a[1:]) == tuple(b[1:]):
        return a
    raise ValueError(f"its attribute {key}={a!r} follows the batch")


def compare(g: Graph, twin: Graph, batch: int) -> DynamicBatch:
    """The dynamic-batch view of ``g`` given its trace ``twin`` at batch + 1; ValueError names what keeps the batch
    static."""
    if len(g.inputs) != len(twin.inputs) or len(g.nodes) != len(twin.nodes):
        raise ValueError("the graph's structure depends on the batch size")
    dyn = DynamicBatch(batch)
    same: dict[int, Value] = {id(v): w for v, w in zip(g.inputs, twin.inputs)}
    for v, w in zip(g.inputs, twin.inputs):
        if v.kind != w.kind or v.ndim != w.ndim:
            raise ValueError(f"input {v.name!r} differs between batch sizes")
        varying = {i for i, (p, q) in enumerate(zip(v.shape, w.shape)) if p != q}
        if varying and v.kind != "input":
            raise ValueError(f"the {v.kind} {v.name!r} has a batch-sized shape {list(v.shape)}")
        if v.kind == "const" and not varying and not np.array_equal(v.data, w.data):
            raise ValueError(f"the constant {v.name!r} depends on the batch size (e.g. an unbiased variance's "
                             f"n / (n - 1))")
        if varying:
            dyn.dims[id(v)] = varying
    for node, other in zip(g.nodes, twin.nodes):
        if node.op.name != other.op.name or len(node.outputs) != len(other.outputs) or \
                [same.get(id(v)) for v in node.inputs] != list(other.inputs):
            raise ValueError(f"node {node.name!r} differs between batch sizes")
        for key in node.attrs:
            if not _same(node.attrs[key], other.attrs.get(key)):
                try:
                    new = _override(node, other, key, dyn.dims)
                except ValueError as e:
                    raise ValueError(f"{node.op.name} node {node.name!r}: {e}") from None
                dyn.overrides.setdefault(id(node), {})[key] = new
        for v, w in zip(node.outputs, other.outputs):
            same[id(v)] = w
            if v.ndim != w.ndim:
                raise ValueError(f"node {node.name!r}: its output rank depends on the batch size")
            varying = {i for i, (p, q) in enumerate(zip(v.shape, w.shape)) if p != q}
            if varying:
                dyn.dims[id(v)] = varying
    return dyn
