"""export(model_or_compiled, example_inputs, path=None, opset=18) -> onnx.ModelProto, from the traced graph.

- A model is traced in eval mode (as torch.onnx.export does by default) on shape-only inputs, so exporting costs no
  kernel time; parameters and buffers become initializers under their state-dict names (``layer1.0.conv1.weight``).
- ``fused=True`` exports the inference pipeline's graph (BatchNorm folded into convolutions, epilogues fused, then
  lowered back to Conv/Gemm + Add + activation); a :class:`graph.CompiledModule` exports its compiled graph.
- Every primitive needs an export rule (graph/onnx/export_ops.py); a graph holding one without a rule (a gradient
  primitive, an optimizer update, a training-only op) is an :class:`OnnxExportError` naming the primitives and nodes.
- Shapes are static: the model takes exactly the example inputs' shapes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import onnx
from onnx import ModelProto, helper

from ..compile import CompiledModule
from ..ir import Graph, Value
from ..passes import run_passes
from ..trace import trace
from .errors import OnnxExportError
from .export_ops import EXPORTERS, Builder

MIN_OPSET = 13  # Softmax/ReduceSum/Split/Squeeze semantics of opset 13 are what the rules write


def _graph_of(model: Any, inputs: Sequence[Any], fused: bool) -> tuple[Graph, str]:
    if isinstance(model, CompiledModule):
        compiled = model.compile_for(*inputs)
        if compiled.graph.meta.get("training"):
            raise OnnxExportError("export: the compiled module is in train mode; call .eval() on its model first")
        if compiled.graph.meta.get("layout", {}).get("blocked_nodes"):
            raise OnnxExportError("export: the compiled graph runs on channel-blocked values (the layout pass), "
                                  "which ONNX has no operators for; export the model itself (fused=True for the "
                                  "fused graph) or compile it with layout='nchw'")
        return compiled.graph, type(model.model).__name__
    was = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        g = trace(model, *inputs, abstract=True)
    finally:
        if was and hasattr(model, "train"):
            model.train(True)
    if fused:
        g, _ = run_passes(g, "inference")
    return g, type(model).__name__


def _value_info(name: str, v: Value) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))


def graph_to_onnx(g: Graph, opset: int = 18, name: str = "convgraph", input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None) -> ModelProto:
    """Translate a traced graph into an ONNX model (see the module docstring)."""
    missing = sorted({(n.op.name, n.name) for n in g.nodes if n.op.name not in EXPORTERS})
    if missing:
        prims = sorted({p for p, _ in missing})
        raise OnnxExportError(f"export: no ONNX mapping for primitive(s) {prims} (nodes "
                              f"{[n for _, n in missing][:8]}); export an eval-mode inference graph")
    if any(v.kind == "key" for v in g.inputs):
        raise OnnxExportError("export: the graph draws random keys (dropout in train mode); export in eval mode")
    b = Builder(g, opset)
    names: dict[int, str] = {}
    graph_inputs = []
    runtime = [v for v in g.inputs if v.kind == "input"]
    in_names = list(input_names) if input_names else [v.name for v in runtime]
    for v, n in zip(runtime, in_names):
        names[id(v)] = b.unique(n)
        graph_inputs.append(_value_info(names[id(v)], v))
    for v in g.inputs:
        if v.kind != "input":
            names[id(v)] = b.const(v.data, v.name)
    outs = [o for o in g.outputs[:g.meta.get("n_outputs", len(g.outputs))]]
    out_names = list(output_names) if output_names else (["output"] if len(outs) == 1 else
                                                         [f"output_{i}" for i in range(len(outs))])
    final: dict[int, str] = {}
    for v, n in zip(outs, out_names):
        if v.producer is None or id(v) in final:  # an input passed straight through needs a node of its own
            continue
        final[id(v)] = b.unique(n)
    for node in g.nodes:
        for o in node.outputs:
            names[id(o)] = final.get(id(o)) or b.unique(o.name)
        EXPORTERS[node.op.name](b, node, [names[id(v)] for v in node.inputs], names[id(node.outputs[0])])
    graph_outputs, used = [], set()
    for v, n in zip(outs, out_names):
        src = names[id(v)]
        if final.get(id(v)) != src or src in used:  # a graph input or a repeated output: give it its own name
            dst = b.unique(n)
            b.nodes.append(helper.make_node("Identity", [src], [dst], name=b.unique(f"{dst}/Identity")))
            src = dst
        used.add(src)
        graph_outputs.append(_value_info(src, v))
    og = helper.make_graph(b.nodes, name, graph_inputs, graph_outputs, b.initializers)
    return helper.make_model(og, opset_imports=[helper.make_opsetid("", opset)], producer_name="convgraph")


def export(model_or_compiled: Any, example_inputs: Any, path: str | os.PathLike | None = None, opset: int = 18, *,
           fused: bool = False, input_names: Sequence[str] | None = None,
           output_names: Sequence[str] | None = None, check: bool = True) -> ModelProto:
    """Export a model (or a CompiledModule) as ONNX; writes ``path`` when given and returns the ModelProto.
    ``check`` runs ``onnx.checker.check_model`` on the result."""
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(f"export: opset must be in [{MIN_OPSET}, {newest}] (got {opset})")
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    g, name = _graph_of(model_or_compiled, inputs, fused)
    model = graph_to_onnx(g, opset, name, input_names, output_names)
    if check:
        onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
