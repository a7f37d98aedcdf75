"""An ``onnx.backend.base.Backend`` for convgraph: ``prepare`` imports the model with graph.onnx.load, ``run`` calls
the module (eagerly, or through graph.compile with ``compiled=True``) and returns numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import ModelProto
from onnx.backend.base import Backend, BackendRep

import graph
from graph.onnx import load


class ConvgraphRep(BackendRep):
    def __init__(self, model: ModelProto, compiled: bool):
        self.module = load(model)
        self.compiled = compiled

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        inputs = list(inputs)
        fn = graph.compile(self.module, *inputs) if self.compiled else self.module
        out = fn(*inputs)
        out = out if isinstance(out, tuple) else (out,)
        return tuple(np.asarray(o) for o in out)


class ConvgraphBackend(Backend):
    @classmethod
    def prepare(cls, model: ModelProto, device: str = "CPU", compiled: bool = False, **kwargs: Any) -> ConvgraphRep:
        super().prepare(model, device, **kwargs)  # runs onnx.checker
        return ConvgraphRep(model, compiled)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"
