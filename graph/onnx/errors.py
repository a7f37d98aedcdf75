"""The two errors of graph.onnx; both say which op, which node and what constraint failed."""

from __future__ import annotations


class OnnxImportError(ValueError):
    """An ONNX model uses an op, attribute or input form that the importer cannot run exactly."""


class OnnxExportError(ValueError):
    """A traced graph holds a primitive (or attribute value) with no ONNX equivalent."""
