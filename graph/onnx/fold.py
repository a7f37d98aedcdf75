"""Constant folding for the importer: nodes whose inputs are all known before the graph runs (initializers that are
not parameters, Constant outputs, shapes) are evaluated in numpy, so shape computations never reach the engine.

Constant, ConstantOfShape, Shape, Size and Identity fold here directly; any other op folds through the ONNX
reference evaluator (``onnx.reference``), which defines ONNX semantics, one node at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import NodeProto, helper
from onnx.reference import ReferenceEvaluator

from .errors import OnnxImportError
from .node import attribute_value

# ops whose value is not a function of their inputs: never folded
RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
                        "Multinomial"})


def constant_value(node: NodeProto) -> np.ndarray:
    for a in node.attribute:
        v = attribute_value(a)
        if a.name == "value":
            return np.asarray(v)
        if a.name in ("value_float", "value_floats"):
            return np.asarray(v, dtype=np.float32)
        if a.name in ("value_int", "value_ints"):
            return np.asarray(v, dtype=np.int64)
    raise OnnxImportError(f"Constant node '{node.name}': only value / value_float(s) / value_int(s) are supported "
                          f"(got {[a.name for a in node.attribute]})")


def shape_of(node: NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    attrs = {a.name: attribute_value(a) for a in node.attribute}
    r = len(shape)
    start, end = attrs.get("start", 0), attrs.get("end", r)
    start, end = (min(max(s + r if s < 0 else s, 0), r) for s in (start, end))
    return np.asarray(shape[start:end], dtype=np.int64)


class Folder:
    """Folds one node at a time; keeps one reference evaluator per node (building one costs more than running it)."""

    def __init__(self, opset: int):
        self.opset = opset
        self._evaluators: dict[int, ReferenceEvaluator] = {}

    def __call__(self, node: NodeProto, name: str, inputs: list[Any]) -> list[np.ndarray]:
        op = node.op_type
        if op == "Constant":
            return [constant_value(node)]
        if op in ("Shape", "Size"):
            shape = tuple(np.shape(inputs[0]))
            return [shape_of(node, shape) if op == "Shape" else np.asarray(int(np.prod(shape)), dtype=np.int64)]
        if op == "Identity":
            return [np.asarray(inputs[0])]
        if op == "ConstantOfShape":
            attrs = {a.name: attribute_value(a) for a in node.attribute}
            value = np.asarray(attrs.get("value", np.zeros(1, np.float32))).reshape(-1)
            return [np.full(tuple(int(d) for d in np.asarray(inputs[0]).reshape(-1)), value[0], dtype=value.dtype)]
        feeds = {n: np.asarray(v) for n, v in zip(node.input, inputs) if n}
        ev = self._evaluators.get(id(node))
        try:
            if ev is None:  # a one-node model, so the node runs in the model's opset version
                ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                       for n, v in feeds.items()]
                outs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
                model = helper.make_model(helper.make_graph([node], "fold", ins, outs),
                                          opset_imports=[helper.make_opsetid("", self.opset)])
                ev = self._evaluators[id(node)] = ReferenceEvaluator(model)
            return list(ev.run(None, feeds))
        except Exception as e:  # the reference evaluator raises many types; say which node failed
            raise OnnxImportError(f"{op} node '{name}' (opset {self.opset}): folding its constant inputs failed: "
                                  f"{type(e).__name__}: {e}") from e
