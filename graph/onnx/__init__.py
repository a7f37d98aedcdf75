"""ONNX in and out: ``load`` turns an .onnx model into an :class:`engine.nn.Module` (initializers become trainable
parameters, the forward runs the ONNX graph through engine primitives, so it traces, compiles, renders and trains
like a zoo model); ``export`` writes any model or compiled module as a standard ONNX model from its traced graph.

    import graph.onnx as gx
    model = gx.load("resnet50.onnx")           # an nn.Module in eval mode
    gx.export(model, x, "resnet50.onnx")        # unfused primitives, parameter names kept
    gx.export(model, x, "fused.onnx", fused=True)  # the compiled (BN-folded, epilogue-fused) graph
    gx.export(model, x, "train.onnx", training=True)  # batch statistics; updated buffers as extra outputs

Exports have a dynamic batch dimension where the graph allows it (``dynamic_batch``).

The ``onnx`` package does the format and ``onnx.reference`` folds constant subgraphs and gives Resize its
interpolation matrices; both are the optional extra
``convgraph[onnx]`` (``onnxruntime`` is only a test oracle). See docs/onnx.md for the supported ops.
"""

try:
    import onnx  # noqa: F401
except ImportError as e:  # an optional extra: say how to get it
    raise ImportError("graph.onnx needs the 'onnx' package: pip install 'convgraph[onnx]'") from e

from .errors import OnnxExportError, OnnxImportError  # noqa: E402
from .exporter import EXPORTERS, export  # noqa: E402
from .importer import CONVERTERS, OnnxModule, load  # noqa: E402

__all__ = ["load", "export", "OnnxModule", "OnnxImportError", "OnnxExportError", "CONVERTERS", "EXPORTERS"]
