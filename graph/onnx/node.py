"""The converter table of the importer and the view of one ONNX node that every converter receives.

A converter is ``fn(node: OnnxNode) -> Tensor | np.ndarray | tuple[...]`` registered with
``@converter("Relu", static=())``; ``static`` lists the input positions that must be known when the graph runs
(shapes, axes, pads, clip bounds: initializers, Constant outputs or shape computations), which the importer folds
to numpy instead of tracing. Every error names the op, the node and the opset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import AttributeProto, NodeProto, helper, numpy_helper

from engine.tensor import Tensor

from .errors import OnnxImportError


@dataclass(frozen=True)
class Converter:
    fn: Callable[[OnnxNode], Any]
    static: tuple[int, ...]


CONVERTERS: dict[str, Converter] = {}


def converter(*op_types: str, static: tuple[int, ...] = ()) -> Callable:
    def deco(fn: Callable[[OnnxNode], Any]) -> Callable[[OnnxNode], Any]:
        for op in op_types:
            CONVERTERS[op] = Converter(fn, static)
        return fn

    return deco


def attribute_value(a: AttributeProto) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if a.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [s.decode() for s in v]
    return v


class OnnxNode:
    """One ONNX node while it runs: its attributes, its inputs (Tensor, numpy array for static values, or None for
    an omitted optional input), the model's opset and whether the module is in training mode."""

    def __init__(self, proto: NodeProto, name: str, opset: int, inputs: list[Any], training: bool):
        self.proto = proto
        self.op = proto.op_type
        self.name = name
        self.opset = opset
        self.inputs = inputs
        self.training = training
        self.attrs = {a.name: attribute_value(a) for a in proto.attribute}
        self.n_outputs = sum(1 for o in proto.output if o)

    def where(self) -> str:
        return f"{self.op} node '{self.name}' (opset {self.opset})"

    def fail(self, constraint: str) -> OnnxImportError:
        return OnnxImportError(f"{self.where()}: {constraint}")

    def unsupported(self, what: str) -> OnnxImportError:
        return self.fail(f"{what} is not supported (docs/onnx.md lists what is)")

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def ints(self, name: str, default: Any = None) -> list[int] | None:
        v = self.attrs.get(name)
        return default if v is None else [int(i) for i in v]

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def tensor(self, i: int, like: Tensor | None = None) -> Tensor:
        """Input ``i`` as a Tensor (a static value becomes a constant, in ``like``'s dtype for scalars)."""
        if not self.has(i):
            raise self.fail(f"input {i} is required")
        v = self.inputs[i]
        if isinstance(v, Tensor):
            return v
        arr = np.asarray(v)
        if like is not None and arr.dtype != like.dtype and arr.dtype.kind == like.dtype.kind:
            arr = arr.astype(like.dtype)
        return Tensor(arr)

    def opt_tensor(self, i: int) -> Tensor | None:
        return self.tensor(i) if self.has(i) else None

    def static(self, i: int, what: str, default: Any = None) -> np.ndarray | None:
        """Input ``i`` as a numpy array known before the graph runs (a parameter is read at its current value)."""
        if not self.has(i):
            return None if default is None else np.asarray(default)
        v = self.inputs[i]
        if isinstance(v, Tensor):
            if v._data is None:
                raise self.fail(f"input {i} ({what}) must be a constant (an initializer, a Constant or a shape "
                                f"computation); data-dependent {what} is not supported")
            return v._data
        return np.asarray(v)

    def static_ints(self, i: int, what: str) -> list[int] | None:
        v = self.static(i, what)
        return None if v is None else [int(e) for e in np.asarray(v).reshape(-1)]

    def axis(self, a: int, ndim: int, what: str = "axis") -> int:
        if not -ndim <= a < ndim:
            raise self.fail(f"{what} must be in [{-ndim}, {ndim})" + f" (got {what}={a}, rank {ndim})")
        return a % ndim
