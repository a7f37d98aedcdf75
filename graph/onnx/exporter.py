"""export(model_or_compiled, example_inputs, path=None, opset=18) -> onnx.ModelProto, from the traced graph.

- A model is traced in eval mode (as torch.onnx.export does by default) on shape-only inputs, so exporting costs no
  kernel time; parameters and buffers become initializers under their state-dict names (``layer1.0.conv1.weight``).
- ``training=True`` traces train mode instead: BatchNorm normalizes by batch statistics (exported as ReduceMean /
  Sub / Div, the batch mean and biased variance feeding the traced running-statistics update), and the updated
  buffers are extra outputs ``<buffer>.updated`` after the model's. A train-mode Dropout draws random keys: an error.
- ``fused=True`` exports the inference pipeline's graph (BatchNorm folded into convolutions, epilogues fused, then
  lowered back to Conv/Gemm + Add + activation); a :class:`graph.CompiledModule` exports its compiled graph.
- Every primitive needs an export rule (graph/onnx/export_ops.py); a graph holding one without a rule (a gradient
  primitive, an optimizer update, a training-only op) is an :class:`OnnxExportError` naming the primitives and nodes.
- The batch dimension is dynamic (``dim_param "N"``) where the graph allows it (graph/onnx/dynamic.py: the graph is
  traced again at batch + 1 and the batch-dependent attributes rewritten); ``dynamic_batch=True`` makes a graph that
  does not allow it an error saying why, ``False`` keeps every shape static. Other dims are always static.
- BatchNormalization carries the momentum of the module that made it (ONNX's ``1 - torch momentum``), so an
  exported model imported and trained updates its running statistics as the original does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import onnx
from onnx import ModelProto, helper

from ..compile import CompiledModule, spec_of
from ..ir import Graph, Value
from ..passes import run_passes
from ..trace import trace
from .dynamic import DynamicBatch, compare, twin_inputs
from .errors import OnnxExportError
from .export_ops import EXPORTERS, Builder

MIN_OPSET = 13  # Softmax/ReduceSum/Split/Squeeze semantics of opset 13 are what the rules write


def _graph_of(model: Any, inputs: Sequence[Any], fused: bool, training: bool = False) -> tuple[Graph, str]:
    if fused and training:
        raise OnnxExportError("export: fused=True runs the inference passes; it cannot be combined with training=True")
    if isinstance(model, CompiledModule):
        if training:
            raise OnnxExportError("export: training=True traces the model itself; pass the model, not its "
                                  "CompiledModule")
        compiled = model.compile_for(*inputs)
        if compiled.graph.meta.get("training"):
            raise OnnxExportError("export: the compiled module is in train mode; call .eval() on its model first")
        if compiled.graph.meta.get("layout", {}).get("blocked_nodes"):
            raise OnnxExportError("export: the compiled graph runs on channel-blocked values (the layout pass), "
                                  "which ONNX has no operators for; export the model itself (fused=True for the "
                                  "fused graph) or compile it with layout='nchw'")
        return compiled.graph, type(model.model).__name__
    was = bool(getattr(model, "training", False))
    if hasattr(model, "train"):
        model.train(training)
    try:
        g = trace(model, *inputs, abstract=True)
    finally:
        if hasattr(model, "train"):
            model.train(was)
    if fused:
        g, _ = run_passes(g, "inference")
    return g, type(model).__name__


def _bn_momentum(model: Any, g: Graph) -> dict[str, float]:
    """ONNX momentum (``1 - torch momentum``) of each batch_norm_infer node's module, where it has a float one."""
    root = model.model if isinstance(model, CompiledModule) else model
    out = {}
    for node in g.find("batch_norm_infer"):
        try:
            mod = root.get_submodule(node.module) if node.module else root
        except (AttributeError, KeyError):
            continue
        m = getattr(mod, "momentum", None)
        if isinstance(m, (int, float)) and not isinstance(m, bool):
            out[node.name] = 1.0 - float(m)
    return out


def _dynamic(model: Any, g: Graph, inputs: tuple[Any, ...], fused: bool, training: bool,
             want: bool | None) -> DynamicBatch | None:
    """The dynamic-batch view of ``g`` (None: static), from a second trace at batch + 1."""
    if want is False:
        return None
    twin = twin_inputs(inputs, spec_of)
    try:
        if twin is None:
            raise ValueError("the example inputs do not share a leading batch dimension")
        return compare(g, _graph_of(model, twin, fused, training)[0], spec_of(inputs[0]).shape[0])
    except ValueError as e:
        if want:
            raise OnnxExportError(f"export: dynamic_batch=True, but the batch size cannot be dynamic: {e}") from None
        return None


def _value_info(name: str, v: Value, dyn: DynamicBatch | None) -> onnx.ValueInfoProto:
    shape = dyn.shape(v) if dyn is not None else list(v.shape)
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), shape)


def graph_to_onnx(g: Graph, opset: int = 18, name: str = "convgraph", input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None, dynamic: DynamicBatch | None = None,
                  bn_momentum: dict[str, float] | None = None, training: bool = False) -> ModelProto:
    """Translate a traced graph into an ONNX model (see the module docstring)."""
    if any(v.kind == "key" for v in g.inputs):
        raise OnnxExportError("export: the graph draws random keys (dropout in train mode); export in eval mode")
    missing = sorted({(n.op.name, n.name) for n in g.nodes if n.op.name not in EXPORTERS})
    if missing:
        prims = sorted({p for p, _ in missing})
        raise OnnxExportError(f"export: no ONNX mapping for primitive(s) {prims} (nodes "
                              f"{[n for _, n in missing][:8]}); export an eval-mode inference graph")
    b = Builder(g, opset, dynamic.overrides if dynamic else None, bn_momentum)
    names = b.names
    graph_inputs = []
    runtime = [v for v in g.inputs if v.kind == "input"]
    in_names = list(input_names) if input_names else [v.name for v in runtime]
    for v, n in zip(runtime, in_names):
        names[id(v)] = b.unique(n)
        graph_inputs.append(_value_info(names[id(v)], v, dynamic))
    for v in g.inputs:
        if v.kind != "input":
            names[id(v)] = b.const(v.data, v.name)
    n_model = g.meta.get("n_outputs", len(g.outputs))
    outs = list(g.outputs) if training else g.outputs[:n_model]  # training: the updated buffers follow
    out_names = list(output_names) if output_names else (["output"] if n_model == 1 else
                                                         [f"output_{i}" for i in range(n_model)])
    out_names += [f"{s}.updated" for s in g.meta.get("state_outputs", [])][:len(outs) - len(out_names)]
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
        graph_outputs.append(_value_info(src, v, dynamic))
    og = helper.make_graph(b.nodes, name, graph_inputs, graph_outputs, b.initializers)
    return helper.make_model(og, opset_imports=[helper.make_opsetid("", opset)], producer_name="convgraph")


def export(model_or_compiled: Any, example_inputs: Any, path: str | os.PathLike | None = None, opset: int = 18, *,
           fused: bool = False, input_names: Sequence[str] | None = None,
           output_names: Sequence[str] | None = None, check: bool = True,
           dynamic_batch: bool | None = None, training: bool = False) -> ModelProto:
    """Export a model (or a CompiledModule) as ONNX; writes ``path`` when given and returns the ModelProto.
    ``check`` runs ``onnx.checker.check_model`` on the result. ``dynamic_batch``: None (default) makes the batch
    dimension dynamic where the graph allows it, True requires it (an error says why not), False keeps it static.
    ``training=True`` exports the train-mode graph (batch statistics; the updated buffers as extra outputs)."""
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(f"export: opset must be in [{MIN_OPSET}, {newest}] (got {opset})")
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    g, name = _graph_of(model_or_compiled, inputs, fused, training)
    dyn = _dynamic(model_or_compiled, g, inputs, fused, training, dynamic_batch)
    model = graph_to_onnx(g, opset, name, input_names, output_names, dyn, _bn_momentum(model_or_compiled, g),
                          training)
    if check:
        onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
