"""Run a Graph by calling a backend's kernels, node by node, in schedule order.

- :class:`Executor` allocates each intermediate with ``np.empty`` and drops it after its last use.
- :class:`ArenaExecutor` runs inside one planned arena (a :class:`graph.memory.MemoryPlan`): every intermediate
  is a view into a single ``uint8`` buffer allocated once, at the offset the planner chose; graph outputs get
  fresh arrays (they outlive the call). Nodes the plan marks in-place write over their dying input; a ``reshape``
  planned in place is free (the bytes are already where they belong), so its kernel is skipped.

Kernels are ``kernel(*inputs, out=..., **attrs)``. Fused primitives that a backend has no kernel for are run by
the reference composition in ``backends.numpy.fused`` built from *that backend's* unfused kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine import profiler as _profiler
from engine.backend import Backend, Step, get_backend
from engine.primitive import FUSED

from .ir import Graph, Node, Value

Kernel = Callable[..., None]


def kernel_for(backend: Backend, node: Node) -> Kernel:
    name = node.op.name
    if node.op.kind == FUSED and not backend.has_kernel(name):
        from backends.numpy import fused as _fused

        return _fused.composed_kernel(name, backend.kernel)
    try:
        return backend.kernel(name)
    except NotImplementedError as e:
        raise NotImplementedError(f"{e} (needed by node {node.name}: {node.format()})") from None


def _to_array(x: Any, v: Value) -> np.ndarray:
    arr = x.data if hasattr(x, "_spec") else np.asarray(x)
    if arr.shape != v.shape or arr.dtype != v.dtype:
        raise ValueError(f"input %{v.name}: expected {v.spec!r}, got {arr.dtype}{list(arr.shape)}")
    return arr


class Executor:
    """Interpret ``graph`` on ``backend`` (a name or :class:`engine.Backend`). ``run(*arrays) -> list[array]``."""

    def __init__(self, graph: Graph, backend: str | Backend = "numpy", *, autotune: bool = False):
        self.graph = graph
        self.backend = get_backend(backend)
        self._kernels = [kernel_for(self.backend, n) for n in graph.nodes]
        # the backend's state for this executor (derived constants, kernel workspaces), entered around every run
        consts = {id(v): v.data for v in graph.inputs if v.kind == "const" and v.data is not None}
        self.context = self.backend.prepare(
            list(consts.values()), [Step(n.op.name, k, [consts.get(id(v), v.spec) for v in n.inputs],
                                         [o.spec for o in n.outputs], n.attrs)
                                    for n, k in zip(graph.nodes, self._kernels)], autotune=autotune)
        # last schedule position reading each value, so intermediates are dropped as soon as they die
        last: dict[int, int] = {}
        for i, n in enumerate(graph.nodes):
            for v in n.inputs:
                last[id(v)] = i
        keep = {id(v) for v in graph.outputs}
        self._free_after: list[list[Value]] = [[] for _ in graph.nodes]
        for i, n in enumerate(graph.nodes):
            for v in n.outputs:
                if id(v) not in keep:
                    self._free_after[last.get(id(v), i)].append(v)

    def _frozen_env(self) -> dict[int, np.ndarray]:
        env = {}
        for v in self.graph.inputs:
            if v.kind != "input":
                if v.data is None:
                    raise ValueError(f"{v.kind} %{v.name} has no data (traced abstractly from an abstract tensor)")
                env[id(v)] = v.data
        return env

    def _allocate(self, node: Node) -> list[np.ndarray]:
        return [np.empty(o.shape, o.dtype) for o in node.outputs]

    def run(self, *inputs: Any) -> list[np.ndarray]:
        with self.context:
            return self._run(*inputs)

    def _run(self, *inputs: Any) -> list[np.ndarray]:
        g = self.graph
        if len(inputs) != len(g.user_inputs):
            raise TypeError(f"graph takes {len(g.user_inputs)} inputs "
                            f"({', '.join(repr(v) for v in g.user_inputs)}), got {len(inputs)}")
        env = self._frozen_env()
        for v, x in zip(g.user_inputs, inputs):
            env[id(v)] = _to_array(x, v)
        for i, (node, kernel) in enumerate(zip(g.nodes, self._kernels)):
            args = [env[id(v)] for v in node.inputs]
            outs = self._allocate(node)
            if not self._skip(node):
                out = tuple(outs) if node.op.multiple_results else outs[0]
                try:
                    _profiler.call("graph", (node.meta.get("module", ""), node.meta.get("module_type", "")),
                                   node.op.name, kernel, *args, out=out, **node.attrs)
                except Exception as e:
                    raise type(e)(f"{e}\n  while running node {node.name}: {node.format()}") from e
            for o, a in zip(node.outputs, outs):
                env[id(o)] = a
            for v in self._free_after[i]:
                env.pop(id(v), None)
        return [env[id(v)] for v in g.outputs]

    def _skip(self, node: Node) -> bool:
        return False


class ArenaExecutor(Executor):
    """Run inside one arena laid out by ``plan`` (see :func:`graph.memory.plan_memory`). The arena is
    allocated once and reused by every call, so one ArenaExecutor must not run two calls concurrently."""

    def __init__(self, graph: Graph, plan: Any, backend: str | Backend = "numpy", *, autotune: bool = False):
        if [id(n) for n in plan.schedule] != [id(n) for n in graph.nodes]:
            raise ValueError("ArenaExecutor: the plan was made for another schedule; set graph.nodes = plan.schedule")
        super().__init__(graph, backend, autotune=autotune)
        self.plan = plan
        self.arena = np.empty(max(plan.arena_bytes, 1), np.uint8)
        self.views: dict[int, np.ndarray] = {}
        for v, off in plan.offsets.items():
            self.views[id(v)] = self.arena[off:off + v.nbytes].view(v.dtype).reshape(v.shape)
        self._inplace_reshape = {id(n) for n in plan.inplace if n.op.name == "reshape"}

    def _allocate(self, node: Node) -> list[np.ndarray]:
        return [self.views[id(o)] if id(o) in self.views else np.empty(o.shape, o.dtype) for o in node.outputs]

    def _skip(self, node: Node) -> bool:
        return id(node) in self._inplace_reshape


def run_graph(graph: Graph, *inputs: Any, backend: str | Backend = "numpy") -> list[np.ndarray]:
    """Convenience: interpret ``graph`` once on ``inputs`` and return the output arrays."""
    return Executor(graph, backend).run(*inputs)


def evaluate_nodes(nodes: Sequence[Node], env: dict[int, np.ndarray], backend: str | Backend = "numpy") -> None:
    """Run ``nodes`` in order, reading/writing arrays in ``env`` (keyed by ``id(Value)``). Used by passes that
    evaluate subgraphs at compile time (constant folding, fold-error measurement)."""
    b = get_backend(backend)
    for node in nodes:
        args = [env[id(v)] for v in node.inputs]
        outs = [np.empty(o.shape, o.dtype) for o in node.outputs]
        kernel_for(b, node)(*args, out=tuple(outs) if node.op.multiple_results else outs[0], **node.attrs)
        for o, a in zip(node.outputs, outs):
            env[id(o)] = a


def eval_op(op: Any, *arrays: np.ndarray, backend: str | Backend = "numpy", **attrs: Any) -> Any:
    """Apply one primitive to arrays outside any graph (its shape rule gives the outputs); returns an array, or
    a tuple for multi-result primitives."""
    from engine.primitive import Spec

    specs = op.abstract_eval(*(Spec(a.shape, a.dtype) for a in arrays), **attrs)
    outs = tuple(np.empty(s.shape, s.dtype) for s in specs)
    get_backend(backend).kernel(op.name)(*arrays, out=outs if op.multiple_results else outs[0], **attrs)
    return outs if op.multiple_results else outs[0]
