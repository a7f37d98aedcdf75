"""load(path_or_model) -> OnnxModule: an ONNX graph as an engine module.

- Float initializers read by a converter as tensors become :class:`engine.nn.Parameter` (trainable), named by the
  initializer's name: a dotted name (``layer1.0.conv1.weight``) becomes nested sub-modules, so the state dict keys are
  the ONNX names (sanitized: characters other than letters, digits and ``_`` become ``_``). BatchNormalization's
  ``mean``/``var`` initializers become buffers (running statistics).
- Values known before the graph runs (other initializers, Constant/ConstantOfShape outputs and whatever is computed
  from them only) are folded at load; Shape/Size of a runtime tensor and what is computed from it fold when the
  forward runs (shapes are static in the engine). Nothing folded reaches the traced graph.
- Every other node runs its converter (graph/onnx/ops_*.py): engine functional ops, so ``graph.trace`` records
  primitives and ``compile``/``summary``/``render`` work on the module. An op without a converter whose inputs are
  not all constant is a load-time error naming the op, the node and the opset.
- The module loads in eval mode. In train mode BatchNormalization uses batch statistics and updates its running
  buffers (ONNX momentum m means running = m * running + (1 - m) * batch) and Dropout drops, as PyTorch layers do.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto, numpy_helper

import engine.nn as nn
from engine.autograd import module_scope
from engine.primitive import ShapeError
from engine.tensor import Tensor

from . import ops_nn, ops_resize, ops_tensor  # noqa: F401 - they fill CONVERTERS
from .errors import OnnxImportError
from .fold import RANDOM_OPS, Folder
from .node import CONVERTERS, OnnxNode

MIN_OPSET = 6  # opset 6's legacy broadcast attribute is honoured (ops_tensor._pair)
_BN_STATS = {"BatchNormalization": (3, 4)}


def _opset(model: ModelProto) -> int:
    versions = {o.domain: o.version for o in model.opset_import}
    opset = versions.get("", versions.get("ai.onnx"))
    if opset is None:
        raise OnnxImportError(f"the model imports no default-domain opset (got {dict(versions)})")
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise OnnxImportError(f"opset {opset} is not supported: opsets {MIN_OPSET} to {newest} are")
    return opset


def _segment(s: str) -> str:
    s = re.sub(r"\W", "_", s) or "_"
    return "_" + s if s[0].isdigit() and not s.isdigit() else s


def _declared_shape(info: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    t = info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


class _Holder(nn.Module):
    """A container that only holds imported parameters (never called)."""


def _free(module: nn.Module, name: str) -> bool:
    return not hasattr(module, name) and name not in module._modules


def _place(root: nn.Module, onnx_name: str, tensor: Tensor, kind: str) -> str:
    """Register ``tensor`` under a module path derived from ``onnx_name``; returns its state-dict name."""
    parts = [_segment(p) for p in onnx_name.split(".")]
    mod, ok = root, True
    for p in parts[:-1]:
        child = mod._modules.get(p)
        if child is None:
            if not _free(mod, p):
                ok = False
                break
            child = _Holder()
            mod.add_module(p, child)
        mod = child
    if not ok or not _free(mod, parts[-1]):
        mod, leaf, k = root, "_".join(parts), 1
        base = leaf
        while not _free(root, leaf):
            leaf, k = f"{base}_{k}", k + 1
        parts = [leaf]
    else:
        leaf = parts[-1]
    if kind == "param":
        mod.register_parameter(leaf, tensor)
    else:
        mod.register_buffer(leaf, tensor)
    return ".".join(parts)


def _model(path_or_model: str | os.PathLike | bytes | ModelProto) -> ModelProto:
    if isinstance(path_or_model, ModelProto):
        return path_or_model
    if isinstance(path_or_model, bytes):
        return onnx.load_from_string(path_or_model)
    return onnx.load(os.fspath(path_or_model))


class OnnxModule(nn.Module):
    """An imported ONNX graph. ``forward(*inputs)`` takes the graph's runtime inputs in order and returns its
    output (a tuple when the graph has several). ``onnx_names`` maps each state-dict name to its ONNX name."""

    def __init__(self, model: ModelProto, name: str = "OnnxModule"):
        super().__init__()
        g = model.graph
        self.onnx_name = name
        self.opset = _opset(model)
        for node in g.node:
            if node.domain not in ("", "ai.onnx"):
                raise OnnxImportError(f"{node.op_type} node '{node.name}' (opset {self.opset}): custom domain "
                                      f"{node.domain!r} is not supported")
        self._nodes = list(g.node)
        self._node_names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(g.node)]
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.input_names = [i.name for i in g.input if i.name not in inits]
        runtime = [i for i in g.input if i.name not in inits]
        # declared input shapes (None for a symbolic or missing dim): what a CLI uses as the default input size
        self.input_shapes = [_declared_shape(i) for i in runtime]
        self.input_ranks = [None if s is None else len(s) for s in self.input_shapes]
        self.output_names = [o.name for o in g.output]
        self._folder = Folder(self.opset)
        self._kinds, self._consts = self._classify(inits)
        self._state: dict[str, str] = {}  # onnx name -> state-dict path
        self.onnx_names: dict[str, str] = {}
        for name, arr in inits.items():
            kind = self._kinds.get(name)
            if kind in ("param", "buffer"):
                t = nn.Parameter(np.array(arr)) if kind == "param" else Tensor(np.array(arr))
                path = _place(self, name, t, kind)
                self._state[name] = path
                self.onnx_names[path] = name
        # a node reading a nested parameter (layer1.0.conv1.weight) runs in that holder's module scope, so trace
        # attributes it to "layer1.0.conv1" and summary/render group it like the layer of a zoo model
        self._scopes = [next((self._state[i].rpartition(".")[0] for i in n.input if "." in self._state.get(i, "")),
                             "") for n in self._nodes]
        for node, scope in zip(self._nodes, self._scopes):
            if node.op_type == "BatchNormalization" and scope:  # torch's convention, as a BatchNorm layer holds it
                m = next((a.f for a in node.attribute if a.name == "momentum"), 0.9)
                self.get_submodule(scope).momentum = 1.0 - float(m)
        self._shape_cache: dict[tuple, dict[str, np.ndarray]] = {}
        self.eval()

    # --- load-time analysis ------------------------------------------------------------------------------------
    def _source_kinds(self, inits: dict[str, np.ndarray]) -> dict[str, str]:
        """Initializers: 'param' / 'buffer' when a converter reads them as float tensors (BatchNormalization's
        statistics are buffers), else 'const'. Graph inputs: 'shape' when read only where a value must be known
        (axes, shapes given at run time), else 'dynamic'."""
        roles: dict[str, set[str]] = {}
        static_only: dict[str, bool] = {}
        for node in self._nodes:
            conv = CONVERTERS.get(node.op_type)
            for i, name in enumerate(node.input):
                static = conv is not None and i in conv.static
                if name in inits and conv is not None and not static:
                    roles.setdefault(name, set()).add("buffer" if i in _BN_STATS.get(node.op_type, ()) else "param")
                if name in self.input_names:
                    static_only[name] = static_only.get(name, True) and static
        kinds = {}
        for name, arr in inits.items():
            r = roles.get(name)
            kinds[name] = ("param" if "param" in r else "buffer") if r and arr.dtype.kind == "f" else "const"
        for name in self.input_names:
            kinds[name] = "shape" if static_only.get(name) else "dynamic"
        return kinds

    def _node_kind(self, node: Any, nname: str, ins: list[str | None]) -> str:
        """What a node's outputs are, from its inputs' kinds; a traced node must have a converter whose constant
        inputs are known."""
        where = f"{node.op_type} node '{nname}' (opset {self.opset})"
        missing = [n for n, k in zip(node.input, ins) if n and k is None]
        if missing:
            raise OnnxImportError(f"{where}: reads {missing} which no earlier node, initializer or graph input defines")
        present = {k for k in ins if k is not None}
        if node.op_type in ("Shape", "Size") and ins and ins[0] != "const":
            return "shape" if ins[0] in ("dynamic", "shape") else "const"  # a parameter's shape is fixed
        if node.op_type not in RANDOM_OPS and not present & {"dynamic", "param", "buffer"}:
            return "shape" if "shape" in present else "const"
        conv = CONVERTERS.get(node.op_type)
        if conv is None:
            raise OnnxImportError(f"{where}: op {node.op_type} is not supported (docs/onnx.md lists the supported ops)")
        for i in conv.static:
            if i < len(ins) and ins[i] == "dynamic":
                raise OnnxImportError(f"{where}: input {i} ('{node.input[i]}') must be a constant or a shape "
                                      f"computation; data-dependent values are not supported there")
        return "dynamic"

    def _classify(self, inits: dict[str, np.ndarray]) -> tuple[dict[str, str], dict[str, Any]]:
        """Kinds: 'param' / 'buffer' (state), 'const' (folded at load), 'shape' (folded per input shape),
        'dynamic' (a traced tensor). Returns the kinds and the load-time constants."""
        kinds = self._source_kinds(inits)
        consts: dict[str, Any] = {n: a for n, a in inits.items() if kinds[n] == "const"}
        for node, nname in zip(self._nodes, self._node_names):
            out = self._node_kind(node, nname, [kinds.get(n) if n else None for n in node.input])
            if out == "const":
                if node.op_type in ("Shape", "Size"):  # of a parameter or buffer
                    vals = self._folder(node, nname, [inits[node.input[0]]])
                else:
                    vals = self._folder(node, nname, [consts[n] if n else None for n in node.input])
                consts.update((o, v) for o, v in zip(node.output, vals) if o)
            kinds.update((o, out) for o in node.output if o)
        return kinds, consts

    # --- running -----------------------------------------------------------------------------------------------
    def _state_tensor(self, name: str) -> Tensor:
        mod_path, _, leaf = self._state[name].rpartition(".")
        mod = self.get_submodule(mod_path) if mod_path else self
        return getattr(mod, leaf)

    @staticmethod
    def _as_value(v: Any, op: str) -> Any:
        """A folded node's input as numpy; Shape/Size of a traced tensor only need its shape (no data read)."""
        if not isinstance(v, Tensor):
            return v
        return np.broadcast_to(np.zeros((), v.dtype), v.shape) if op in ("Shape", "Size") else v.numpy()

    def forward(self, *inputs: Any) -> Tensor | tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"{self.onnx_name}: the graph takes {len(self.input_names)} inputs "
                            f"{self.input_names} (got {len(inputs)})")
        env: dict[str, Any] = dict(self._consts)
        for name in self._state:
            env[name] = self._state_tensor(name)
        key: list[Any] = []
        for name, rank, x in zip(self.input_names, self.input_ranks, inputs):
            if self._kinds[name] == "shape":  # read as a value: shapes, axes, pads given at run time
                env[name] = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
                key.append((name, env[name].dtype.str, env[name].shape, env[name].tobytes()))
                continue
            t = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
            if rank is not None and t.ndim != rank:
                raise ValueError(f"{self.onnx_name}: input '{name}' must have rank {rank} (got shape {list(t.shape)})")
            env[name] = t
            key.append((t.shape, t.dtype.str))
        shapes = self._shape_cache.setdefault(tuple(key), {})
        for node, nname, scope in zip(self._nodes, self._node_names, self._scopes):
            kind = self._kinds[node.output[0]] if node.output and node.output[0] else "dynamic"
            if kind == "const":
                continue
            if kind == "shape":
                if node.output[0] not in shapes:
                    ins = [self._as_value(env[n], node.op_type) if n else None for n in node.input]
                    for o, v in zip(node.output, self._folder(node, nname, ins)):
                        shapes[o] = v
                for o in node.output:
                    if o:
                        env[o] = shapes[o]
                continue
            ins = [env[n] if n else None for n in node.input]
            with module_scope(self.get_submodule(scope)) if scope else contextlib.nullcontext():
                try:
                    outs = CONVERTERS[node.op_type].fn(OnnxNode(node, nname, self.opset, ins, self.training))
                except ShapeError as e:  # an engine primitive's constraint: say which ONNX node met it
                    raise OnnxImportError(f"{node.op_type} node '{nname}' (opset {self.opset}): {e}") from e
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            for i, o in enumerate(node.output):
                if not o:
                    continue
                if i >= len(outs) or outs[i] is None:
                    raise OnnxImportError(f"{node.op_type} node '{nname}' (opset {self.opset}): output {i} ('{o}') "
                                          f"is not supported")
                env[o] = outs[i]
        result = tuple(v if isinstance(v, Tensor) else Tensor(np.asarray(v)) for v in
                       (env[n] for n in self.output_names))
        return result[0] if len(result) == 1 else result

    def extra_repr(self) -> str:
        return f"{self.onnx_name}: opset {self.opset}, {len(self._nodes)} nodes, inputs {self.input_names}"


def load(path_or_model: str | os.PathLike | bytes | ModelProto) -> OnnxModule:
    """Import an ONNX model (a path, serialized bytes or a ModelProto) as an :class:`OnnxModule` in eval mode."""
    model = _model(path_or_model)
    name = model.graph.name or (os.path.basename(os.fspath(path_or_model)) if isinstance(path_or_model, (str,
                                                                                                          os.PathLike))
                                else "OnnxModule")
    return OnnxModule(model, name)
