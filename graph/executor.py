"""Run a Graph by calling a backend's kernels, node by node, in schedule order.

- :class:`Executor` allocates each intermediate with ``np.empty`` and drops it after its last use.
- :class:`ArenaExecutor` runs inside one planned arena (a :class:`graph.memory.MemoryPlan`): every intermediate
  is a view into a single ``uint8`` buffer allocated once, at the offset the planner chose; graph outputs get
  fresh arrays (they outlive the call). Nodes the plan marks in-place write over their dying input; a ``reshape``
  planned in place is free (the bytes are already where they belong), so its kernel is skipped.

Kernels are ``kernel(*inputs, out=..., **attrs)``. A primitive that a backend has no kernel for but that has a
decomposition (the fused ones, engine/ops/fused.py) runs as that decomposition with *that backend's* kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine import profiler as _profiler
from engine.backend import Backend, Step, get_backend
from engine.random import next_key

from .ir import Graph, Node, Value

Kernel = Callable[..., None]


def kernel_for(backend: Backend, node: Node) -> Kernel:
    name = node.op.name
    if node.op.decompose_rule is not None and not backend.has_kernel(name):
        return node.op.decomposed_kernel(backend.kernel)
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
    """Interpret ``graph`` on ``backend`` (a name or :class:`engine.Backend`). ``run(*arrays) -> list[array]``.

    ``run(..., state=arrays)`` supplies the current arrays of the graph's params and buffers (training graphs read
    the live model, not the arrays captured when tracing); ``run(..., outs=arrays)`` writes the graph outputs into
    the caller's arrays, straight from the producing kernel where that is safe. ``writes={output index: input}``
    declares outputs whose target is that input's own array (in-place updates of parameters, optimizer state and
    running statistics), so the write happens only after the input's last reader."""

    def __init__(self, graph: Graph, backend: str | Backend = "numpy", writes: dict[int, Value] | None = None, *,
                 autotune: bool = False):
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
        self._state_inputs = [v for v in graph.inputs if v.kind in ("param", "buffer")]
        self._direct = self._direct_outputs(writes or {})
        self._target: dict[int, np.ndarray] = {}

    def _direct_outputs(self, writes: dict[int, Value]) -> list[bool]:
        """Per graph output: may its producer write straight into the caller's target array? Not for graph
        inputs passed through, repeated outputs, or an output whose target is the array of input ``writes[i]``
        while a later node still reads that input (it would see the new value)."""
        pos = {id(n): i for i, n in enumerate(self.graph.nodes)}
        seen: set[int] = set()
        direct = []
        for i, v in enumerate(self.graph.outputs):
            ok = v.producer is not None and id(v) not in seen
            seen.add(id(v))
            src = writes.get(i)
            if ok and src is not None:
                at = pos[id(v.producer)]
                ok = all(pos[id(u)] <= at for u in src.users)
            direct.append(ok)
        return direct

    def _frozen_env(self) -> dict[int, np.ndarray]:
        env = {}
        for v in self.graph.inputs:
            if v.kind == "key":  # a fresh random key per call, in input (= trace) order, as eager mode draws them
                env[id(v)] = next_key()
            elif v.kind != "input":
                if v.data is None:
                    raise ValueError(f"{v.kind} %{v.name} has no data (traced abstractly from an abstract tensor)")
                env[id(v)] = v.data
        return env

    def _allocate(self, node: Node) -> list[np.ndarray]:
        return [self._target.get(id(o)) if id(o) in self._target else np.empty(o.shape, o.dtype)
                for o in node.outputs]

    def run(self, *inputs: Any, state: Sequence[np.ndarray] | None = None,
            outs: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        with self.context:
            return self._run(inputs, state, outs)

    def _run(self, inputs: Sequence[Any], state: Sequence[np.ndarray] | None,
             outs: Sequence[np.ndarray | None] | None) -> list[np.ndarray]:
        g = self.graph
        if len(inputs) != len(g.user_inputs):
            raise TypeError(f"graph takes {len(g.user_inputs)} inputs "
                            f"({', '.join(repr(v) for v in g.user_inputs)}), got {len(inputs)}")
        env = self._frozen_env()
        for v, x in zip(g.user_inputs, inputs):
            env[id(v)] = _to_array(x, v)
        if state is not None:
            for v, a in zip(self._state_inputs, state, strict=True):
                env[id(v)] = a
        self._target = {} if outs is None else \
            {id(v): a for v, a, d in zip(g.outputs, outs, self._direct) if d and a is not None}
        for i, (node, kernel) in enumerate(zip(g.nodes, self._kernels)):
            args = [env[id(v)] for v in node.inputs]
            arrays = self._allocate(node)
            if not self._skip(node):
                out = tuple(arrays) if node.op.multiple_results else arrays[0]
                try:
                    _profiler.call("graph", (node.meta.get("module", ""), node.meta.get("module_type", "")),
                                   node.op.name, kernel, *args, out=out, **node.attrs)
                except Exception as e:
                    e.add_note(f"while running node {node.name}: {node.format()}")
                    raise
            for o, a in zip(node.outputs, arrays):
                env[id(o)] = a
            for v in self._free_after[i]:
                env.pop(id(v), None)
        if outs is None:
            return [env[id(v)] for v in g.outputs]
        result = []
        for v, a in zip(g.outputs, outs):
            if a is not None and env[id(v)] is not a:
                np.copyto(a, env[id(v)])
            result.append(env[id(v)] if a is None else a)
        self._target = {}
        return result

    def _skip(self, node: Node) -> bool:
        return False


class ArenaExecutor(Executor):
    """Run inside one arena laid out by ``plan`` (see :func:`graph.memory.plan_memory`). The arena is
    allocated once and reused by every call, so one ArenaExecutor must not run two calls concurrently."""

    def __init__(self, graph: Graph, plan: Any, backend: str | Backend = "numpy",
                 writes: dict[int, Value] | None = None, *, autotune: bool = False):
        if [id(n) for n in plan.schedule] != [id(n) for n in graph.nodes]:
            raise ValueError("ArenaExecutor: the plan was made for another schedule; set graph.nodes = plan.schedule")
        super().__init__(graph, backend, writes, autotune=autotune)
        self.plan = plan
        self.arena = np.empty(max(plan.arena_bytes, 1), np.uint8)
        self.views: dict[int, np.ndarray] = {}
        for v, off in plan.offsets.items():
            self.views[id(v)] = self.arena[off:off + v.nbytes].view(v.dtype).reshape(v.shape)
        self._inplace_reshape = {id(n) for n in plan.inplace if n.op.name == "reshape"}

    def _allocate(self, node: Node) -> list[np.ndarray]:
        return [self.views[id(o)] if id(o) in self.views else
                self._target[id(o)] if id(o) in self._target else np.empty(o.shape, o.dtype) for o in node.outputs]

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
