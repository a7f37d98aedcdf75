"""Run a Graph by calling a backend's kernels, node by node, in schedule order.

- :class:`Executor` allocates each intermediate with the backend's ``empty`` and drops it after its last use.
- :class:`ArenaExecutor` runs inside one planned arena (a :class:`graph.memory.MemoryPlan`): every
  intermediate is a view (``backend.view``) into one byte buffer (``backend.arena``) allocated once, at the
  offset the planner chose; graph outputs get fresh arrays (they outlive the call). Nodes the plan marks
  in-place write over their dying input; a ``reshape`` planned in place is free (the bytes are already where
  they belong), so its kernel is skipped.

Memory belongs to the backend (engine/backend.py), so the same executor runs on a device: the graph's constants
(host arrays in the IR) are uploaded once per executor, host inputs are copied in once per call (counted in
``transfer``), and results stay on the device until the caller fetches them (:meth:`Executor.fetch`).

Kernels are ``kernel(*inputs, out=..., **attrs)``. A primitive that a backend has no kernel for but that has a
decomposition (the fused ones, engine/ops/fused.py) runs as that decomposition with *that backend's* kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine import profiler as _profiler
from engine.backend import Backend, Step, device_of, get_backend, to_host
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


def _to_array(x: Any, v: Value) -> Any:
    arr = x.data if hasattr(x, "_spec") else x if device_of(x) is not None else np.asarray(x)
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
        # constants live on the backend's device for the executor's life: uploaded here, once
        self._resident: dict[int, Any] = {id(v): self._place(v.data, count=False) for v in graph.inputs
                                          if v.kind == "const" and v.data is not None}
        self.transfer = {"h2d_bytes": 0, "d2h_bytes": 0}  # host <-> device copies of the last call
        consts = self._resident
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

    def _place(self, array: Any, count: bool = True) -> Any:
        """``array`` where the backend's kernels read it (a host array is copied to a device backend)."""
        if self.backend.is_native(array):
            return array
        if count:
            self.transfer["h2d_bytes"] += array.nbytes
        return self.backend.from_host(to_host(array))

    def fetch(self, arrays: Sequence[Any]) -> list[np.ndarray]:
        """Host copies of result arrays of the last call (the arrays themselves on a host backend)."""
        out = []
        for a in arrays:
            if not isinstance(a, np.ndarray):
                self.transfer["d2h_bytes"] += a.nbytes
            out.append(self.backend.to_host(a))
        return out

    def _frozen_env(self, with_state: bool) -> dict[int, Any]:
        env = {}
        for v in self.graph.inputs:
            if v.kind == "key":  # a fresh random key per call, in input (= trace) order, as eager mode draws them
                env[id(v)] = self._place(next_key())
            elif v.kind != "input" and not (with_state and v.kind in ("param", "buffer")):
                a = self._resident.get(id(v))
                if a is None:
                    if v.data is None:
                        raise ValueError(f"{v.kind} %{v.name} has no data (traced abstractly from an abstract tensor)")
                    a = self._resident[id(v)] = self._place(v.data, count=False)  # uploaded once
                env[id(v)] = a
        return env

    def _state_array(self, v: Value, a: Any) -> Any:
        """A live param/buffer/state array: on a device backend it must live there already (it is written in place),
        except a scalar (the learning rate), which is copied in."""
        if self.backend.is_native(a):
            return a
        if getattr(a, "ndim", 1) == 0:
            return self._place(a)
        raise RuntimeError(f"{v.kind} %{v.name} lives on {device_of(a)}, the graph runs on backend "
                           f"{self.backend.name!r} ({self.backend.device}); move the model there first "
                           f"(model.to({self.backend.device!r}))")

    def _allocate(self, node: Node) -> list[Any]:
        return [self._target.get(id(o)) if id(o) in self._target else self.backend.empty(o.shape, o.dtype)
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
        self.transfer = {"h2d_bytes": 0, "d2h_bytes": 0}
        env = self._frozen_env(state is not None)
        for v, x in zip(g.user_inputs, inputs):
            env[id(v)] = self._place(_to_array(x, v))
        if state is not None:
            for v, a in zip(self._state_inputs, state, strict=True):
                env[id(v)] = self._state_array(v, a)
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
                self.backend.copy_(a, env[id(v)])
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
        b = self.backend
        if plan.alignment % b.alignment:
            raise ValueError(f"ArenaExecutor: the plan aligns buffers to {plan.alignment} bytes, backend {b.name!r} "
                             f"needs a multiple of {b.alignment} (plan_memory(..., alignment={b.alignment}))")
        self.arena = b.arena(plan.arena_bytes)
        self.views: dict[int, Any] = {id(v): b.view(self.arena, off, v.shape, v.dtype)
                                      for v, off in plan.offsets.items()}
        self._inplace_reshape = {id(n) for n in plan.inplace if n.op.name == "reshape"}

    def _allocate(self, node: Node) -> list[np.ndarray]:
        return [self.views[id(o)] if id(o) in self.views else
                self._target[id(o)] if id(o) in self._target else self.backend.empty(o.shape, o.dtype)
                for o in node.outputs]

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
        outs = run_node(b, node, [env[id(v)] for v in node.inputs])
        for o, a in zip(node.outputs, outs):
            env[id(o)] = a


def run_node(backend: Backend, node: Node, arrays: Sequence[Any]) -> tuple:
    """One node on ``backend``, outputs allocated by it (:meth:`engine.Backend.run`, with the node's kernel, which
    may be a decomposition)."""
    return backend.run(node.op, arrays, node.attrs, out_specs=[o.spec for o in node.outputs],
                       kernel=kernel_for(backend, node))


def eval_op(op: Any, *arrays: np.ndarray, backend: str | Backend = "numpy", **attrs: Any) -> Any:
    """Apply one primitive to arrays outside any graph (its shape rule gives the outputs); returns an array, or
    a tuple for multi-result primitives."""
    outs = get_backend(backend).run(op, arrays, attrs)
    return outs if op.multiple_results else outs[0]
