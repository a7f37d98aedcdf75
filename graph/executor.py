"""Run a Graph by calling a backend's kernels, node by node, in schedule order.

- :class:`Executor` allocates each intermediate with the backend's ``empty`` and drops it after its last use.
- :class:`ArenaExecutor` runs inside one planned arena (a :class:`graph.memory.MemoryPlan`): every intermediate
  is a view into a single byte buffer (the backend's ``arena``) allocated once, at the offset the planner chose;
  graph outputs get fresh arrays (they outlive the call; small ones are written into an array the executor keeps
  and copied into the fresh one). Nodes the plan marks in-place write over their dying
  input; a ``reshape`` planned in place and a concat whose inputs the plan put in its output's slices
  (``plan.elided``) are free (the bytes are already where they belong), so their kernels are skipped.

Kernels are ``kernel(*inputs, out=..., **attrs)``. A primitive that a backend has no kernel for but that has a
decomposition (the fused ones, engine/ops/fused.py) runs as that decomposition with *that backend's* kernels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine import profiler as _profiler
from engine.backend import Backend, Step, device_of, get_backend, specialize, to_host
from engine.random import next_key

from .input_alias import alias, layout_key
from .ir import Graph, Node, Value
from .prefix_views import prefix_view

# graph outputs up to this size are written into an array the ArenaExecutor keeps and copied out (_own_output): the
# copy costs ~1 us, re-specializing their writer every run far more
OWN_OUTPUT_BYTES = 64 << 10

Kernel = Callable[..., None]


def _nothing() -> None:
    pass


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
    running statistics), so the write happens only after the input's last reader.

    The per-node work is done once, when the executor is built: every value has a slot in one list and every node
    is a zero-argument call with its kernel, slots and attrs bound, so a run is one loop over those calls with no
    per-node dict, kwargs or profiler work. One executor runs one call at a time."""

    def __init__(self, graph: Graph, backend: str | Backend = "numpy", writes: dict[int, Value] | None = None, *,
                 autotune: bool = False):
        self.graph = graph
        self.backend = get_backend(backend)
        self._kernels = [kernel_for(self.backend, n) for n in graph.nodes]
        self.transfer = {"h2d_bytes": 0, "d2h_bytes": 0}  # host <-> device copies of the last call
        # constants (and, for graphs run without state=, params/buffers) live on the backend's device for the
        # executor's life: uploaded once (constants here, the others on first use)
        self._resident: dict[int, Any] = {id(v): self._place(v.data, count=False) for v in graph.inputs
                                          if v.kind == "const" and v.data is not None}
        consts = self._resident
        # the backend's state for this executor (derived constants, kernel workspaces), entered around every run
        self.context = self.backend.prepare(
            list(consts.values()), [Step(n.op.name, k, [consts.get(id(v), v.spec) for v in n.inputs],
                                         [o.spec for o in n.outputs], n.attrs)
                                    for n, k in zip(graph.nodes, self._kernels)], autotune=autotune)
        self._state_inputs = [v for v in graph.inputs if v.kind in ("param", "buffer")]
        self._direct = self._direct_outputs(writes or {})
        self._build()

    # --- construction: one slot per value, one call per node ------------------------------------------------
    def _build(self) -> None:
        g = self.graph
        slot: dict[int, int] = {}
        for v in [*g.inputs, *(o for n in g.nodes for o in n.outputs)]:
            slot.setdefault(id(v), len(slot))
        self._slot = slot
        self._vals: list[Any] = [None] * len(slot)  # this run's arrays, by slot
        for v in g.inputs:
            if v.kind == "const":
                self._vals[slot[id(v)]] = self._resident.get(id(v))
        self._user_inputs = g.user_inputs
        self._user_slots = [slot[id(v)] for v in self._user_inputs]
        self._key_slots = [slot[id(v)] for v in g.inputs if v.kind == "key"]
        self._state_slots = [slot[id(v)] for v in self._state_inputs]
        self._unfilled = [v for v in g.inputs if v.kind == "const" and v.data is None]
        self._allocated: list[int] = []
        self._out_slots = [slot[id(v)] for v in g.outputs]
        # graph outputs a node writes get the caller's target (outs=, where direct) or a fresh array, at run start
        produced = {id(o) for n in g.nodes for o in n.outputs}
        self._fresh: list[tuple[int, int, Value]] = []  # (slot, output index, value)
        for j, v in enumerate(g.outputs):
            if id(v) in produced and slot[id(v)] not in {s for s, _, _ in self._fresh} and not self._is_static(v):
                self._fresh.append((slot[id(v)], j, v))
        fresh = {s for s, _, _ in self._fresh}
        # per-run intermediates (not static, not graph outputs) are dropped after their last reader
        last: dict[int, Node] = {}
        for n in g.nodes:
            for v in n.inputs:
                last[id(v)] = n
        dead_after: dict[int, list[int]] = {}
        for n in g.nodes:
            for o in n.outputs:
                if slot[id(o)] not in fresh and not self._is_static(o):
                    dead_after.setdefault(id(last.get(id(o), n)), []).append(slot[id(o)])
        self._nodes: list[Node] = []  # the nodes that call a kernel, in schedule order
        self._node_kernels: list[Kernel] = []
        self._calls: list[Callable[[], None]] = []
        for node, kernel in zip(g.nodes, self._kernels):
            if self._skip(node):
                continue
            self._nodes.append(node)
            self._node_kernels.append(kernel)
            allocate = [o for o in node.outputs if slot[id(o)] not in fresh and not self._is_static(o)]
            self._calls.append(self._plain_call(node, kernel, allocate, dead_after.get(id(node), [])))
        self._profile_keys = [(n.meta.get("module", ""), n.meta.get("module_type", "")) for n in self._nodes]

    def _plain_call(self, node: Node, kernel: Kernel, allocate: Sequence[Value], free: Sequence[int]
                    ) -> Callable[[], None]:
        """``kernel(*inputs, out=..., **attrs)`` on this run's slots; allocates the outputs in ``allocate`` and
        drops the slots in ``free`` (intermediates read for the last time) after the call."""
        vals, attrs, slot = self._vals, node.attrs, self._slot
        ins = tuple(slot[id(v)] for v in node.inputs)
        outs = tuple(slot[id(o)] for o in node.outputs)
        alloc = [(slot[id(o)], o) for o in allocate]
        multiple = node.op.multiple_results

        def call() -> None:
            for s, o in alloc:
                vals[s] = self._empty(o)
            out = tuple(vals[s] for s in outs) if multiple else vals[outs[0]]
            kernel(*[vals[s] for s in ins], out=out, **attrs)
            for s in free:
                vals[s] = None

        return call

    def _empty(self, v: Value) -> Any:
        return self.backend.empty(v.shape, v.dtype)

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

    def _is_static(self, v: Value) -> bool:
        """Whether ``v``'s array is fixed when the executor is built (an arena view)."""
        return False

    def _skip(self, node: Node) -> bool:
        return False

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

    # --- running --------------------------------------------------------------------------------------------
    def run(self, *inputs: Any, state: Sequence[np.ndarray] | None = None,
            outs: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        with self.context:
            return self._run(inputs, state, outs)

    def _run(self, inputs: Sequence[Any], state: Sequence[np.ndarray] | None,
             outs: Sequence[np.ndarray | None] | None) -> list[np.ndarray]:
        prof = _profiler.current()
        if prof is not None:
            return self._run_profiled(prof, inputs, state, outs)
        self._load(inputs, state, outs)
        i = 0
        try:
            for i, call in enumerate(self._calls):  # noqa: B007 - i names the failing node
                call()
        except Exception as e:
            self._failed(e, i)
        return self._results(outs)

    def _run_profiled(self, prof: _profiler.Profile, inputs: Sequence[Any], state: Sequence[np.ndarray] | None,
                      outs: Sequence[np.ndarray | None] | None) -> list[np.ndarray]:
        """:meth:`_run`, timing every kernel call, and the run as a whole, into ``prof``."""
        clock = time.perf_counter
        t_run = clock()
        self._load(inputs, state, outs)
        times = []
        i = 0
        try:
            for i, call in enumerate(self._calls):  # noqa: B007
                t0 = clock()
                call()
                times.append(clock() - t0)
        except Exception as e:
            self._failed(e, i)
        result = self._results(outs)
        prof.record_graph_run(len(times), clock() - t_run, sum(times))
        for node, key, dt in zip(self._nodes, self._profile_keys, times):
            prof.record("graph", key, node.op.name, dt)
        return result

    def _failed(self, e: Exception, i: int) -> None:
        node = self._nodes[i]
        e.add_note(f"while running node {node.name}: {node.format()}")
        self._release()
        raise e

    def _load(self, inputs: Sequence[Any], state: Sequence[np.ndarray] | None,
              outs: Sequence[np.ndarray | None] | None) -> None:
        """Fill this run's slots: user inputs, fresh random keys, params/buffers, graph outputs."""
        vals, user = self._vals, self._user_inputs
        if len(inputs) != len(user):
            raise TypeError(f"graph takes {len(user)} inputs ({', '.join(repr(v) for v in user)}), got {len(inputs)}")
        for v in self._unfilled:
            raise ValueError(f"{v.kind} %{v.name} has no data (traced abstractly from an abstract tensor)")
        self.transfer = {"h2d_bytes": 0, "d2h_bytes": 0}
        for s, v, x in zip(self._user_slots, user, inputs):
            vals[s] = self._place(_to_array(x, v))
        for s in self._key_slots:  # a fresh random key per call, in input (= trace) order, as eager mode draws them
            vals[s] = self._place(next_key())
        if state is None:
            resident = self._resident
            for s, v in zip(self._state_slots, self._state_inputs):
                a = resident.get(id(v))
                if a is None:
                    if v.data is None:
                        raise ValueError(f"{v.kind} %{v.name} has no data (traced abstractly from an abstract tensor)")
                    a = resident[id(v)] = self._place(v.data, count=False)  # uploaded once
                vals[s] = a
        else:
            if len(state) != len(self._state_slots):
                raise ValueError(f"state: the graph reads {len(self._state_slots)} params/buffers, got {len(state)}")
            for s, v, a in zip(self._state_slots, self._state_inputs, state):
                vals[s] = self._state_array(v, a)
        self._allocated = []  # the fresh outputs of this run (slots), the caller's once it returns
        self._copied = []  # the outputs written into the executor's own array, copied out at the end (slots)
        for s, j, v in self._fresh:
            target = outs[j] if outs is not None and self._direct[j] else None
            if target is None:
                target = self._own_output(s, v)
                if target is not None:
                    self._copied.append(s)
                else:
                    target = self._empty(v)
                    self._allocated.append(s)
            vals[s] = target

    def _own_output(self, s: int, v: Value) -> Any:
        """An array the executor keeps for graph output ``v`` (slot ``s``), written by its node and copied into a
        fresh array at the end of every run; None: the node writes a fresh array."""
        return None

    def _results(self, outs: Sequence[np.ndarray | None] | None) -> list[np.ndarray]:
        vals = self._vals
        for s in self._copied:
            fresh = self.backend.empty(vals[s].shape, vals[s].dtype)
            self.backend.copy_(fresh, vals[s])
            vals[s] = fresh
        got = [self._vals[s] for s in self._out_slots]
        self._release()
        if outs is None:
            return got
        result = []
        for a, arr in zip(outs, got):
            if a is not None and arr is not a:
                self.backend.copy_(a, arr)
            result.append(arr if a is None else a)
        return result

    def _release(self) -> None:
        """Drop this run's references to arrays the caller owns or gets (inputs, keys, outputs, intermediates)."""
        vals = self._vals
        for s in (*self._user_slots, *self._key_slots, *self._state_slots):
            vals[s] = None
        for s, _, _ in self._fresh:
            vals[s] = None


class ArenaExecutor(Executor):
    """Run inside one arena laid out by ``plan`` (see :func:`graph.memory.plan_memory`). The arena is
    allocated once and reused by every call, so one ArenaExecutor must not run two calls concurrently.

    Intermediates never move, so a node whose arrays are all arena views, constants, params/buffers, output
    targets or user inputs calls its kernel *specialized* to them (:func:`engine.backend.specialize`: made on its
    first run, kept while those arrays stay the same objects); nodes reading a random key call the plain kernel.
    A user input is seen through an alias of its bytes (graph/input_alias.py: the executor keeps no reference to
    the caller's array): its readers run specialized from the second run in a row whose input has the same
    address, shape, strides and dtype (a caller reusing one input buffer), plain otherwise."""

    def __init__(self, graph: Graph, plan: Any, backend: str | Backend = "numpy",
                 writes: dict[int, Value] | None = None, *, autotune: bool = False):
        if [id(n) for n in plan.schedule] != [id(n) for n in graph.nodes]:
            raise ValueError("ArenaExecutor: the plan was made for another schedule; set graph.nodes = plan.schedule")
        self.plan = plan
        b = get_backend(backend)
        if plan.alignment % b.alignment:
            raise ValueError(f"ArenaExecutor: the plan aligns buffers to {plan.alignment} bytes, backend {b.name!r} "
                             f"needs a multiple of {b.alignment} (plan_memory(..., alignment={b.alignment}))")
        self.arena = b.arena(plan.arena_bytes)
        prefix_of = getattr(plan, "prefix_of", {})
        self.views: dict[int, Any] = {id(v): b.view(self.arena, off, v.shape, v.dtype) if v not in prefix_of
                                      else prefix_view(b.view, self.arena, off, v, prefix_of[v])
                                      for v, off in plan.offsets.items()}
        # nodes with nothing to do: a reshape planned in place, a concat whose inputs were written into its slices
        self._free_nodes = {id(n) for n in plan.inplace if n.op.name == "reshape"} | \
            {id(n) for n in plan.elided}
        super().__init__(graph, backend, writes, autotune=autotune)

    def _is_static(self, v: Value) -> bool:
        return id(v) in self.views

    def _skip(self, node: Node) -> bool:
        return id(node) in self._free_nodes

    def _build(self) -> None:
        super()._build()
        slot, vals = self._slot, self._vals
        for n in self.graph.nodes:
            for o in n.outputs:
                if id(o) in self.views:
                    vals[slot[id(o)]] = self.views[id(o)]
        static = {slot[id(v)] for v in self.graph.inputs if v.kind == "const"} | \
            {slot[i] for i in self.views if i in slot}
        # slots filled before the first node runs and kept, or checked, from run to run
        checked = set(self._state_slots) | {s for s, _, _ in self._fresh}
        # user inputs seen through aliases (not one the graph returns: the caller gets its own array back)
        inputs = set(self._user_slots) - set(self._out_slots) if self.backend.is_native(np.empty(0, np.float32)) \
            else set()
        self._users: dict[int, list[int]] = {}  # checked slot -> positions of the specialized calls using it
        self._input_users: dict[int, list[int]] = {}  # user input slot -> the same
        self._plain = list(self._calls)
        self._specializers: dict[int, Callable[[], None]] = {}
        for i, node in enumerate(self._nodes):
            used = {slot[id(v)] for v in (*node.inputs, *node.outputs)}
            if used <= static | checked | inputs:
                for s in used & checked:
                    self._users.setdefault(s, []).append(i)
                for s in used & inputs:
                    self._input_users.setdefault(s, []).append(i)
                self._specializers[i] = self._specializer(i)
                self._calls[i] = self._specializers[i] if not used & inputs else self._plain[i]
        self._input_keys: dict[int, tuple | None] = {}  # user input slot -> its last run's layout_key
        self._aliases: dict[int, np.ndarray] = {}  # user input slot -> the alias its readers are specialized to
        self._chain_pairs()
        self._bound: dict[int, Any] = {}  # checked slot -> the array its calls are specialized to
        self._owned: dict[int, Any] = {}  # graph output slot -> the executor's own array for it (_own_output)

    def _chain_pairs(self) -> None:
        """Node i and the next one (or the next two), each reading the one before's first output, where their
        common kernel offers ``kernel.specialize_chain(*layers)`` (layers ``(inputs, out, attrs)``; one call for
        all: the numba depthwise -> 1x1 pair in one parallel region, the expand 1x1 -> depthwise -> 1x1 block): i's
        call runs them, the others' calls nothing. Only for runs whose arrays never move between runs (no
        re-specialization can split them again), and three only where node i's output has no other reader (the
        call need not write it). A kernel that declines three is offered the pair (i, i + 1)."""
        self.chained: list[tuple[Node, ...]] = []  # runs of nodes as one call (added as a first run takes them)
        moving = {i for users in (*self._users.values(), *self._input_users.values()) for i in users}
        nodes, kernels = self._nodes, self._node_kernels
        outputs = {id(v) for v in self.graph.outputs}

        def linked(i: int) -> bool:  # node i + 1 may run in node i's call
            a, b = nodes[i], nodes[i + 1]
            return kernels[i] is kernels[i + 1] and hasattr(kernels[i], "specialize_chain") and \
                {i, i + 1} <= self._specializers.keys() and not {i, i + 1} & moving and \
                bool(b.inputs) and b.inputs[0] is a.outputs[0] and not a.op.multiple_results

        pairs = [i for i in range(len(nodes) - 1) if linked(i)]
        for i in pairs:  # a run taken on the first run blanks the calls of its later nodes
            out = nodes[i].outputs[0]
            three = i + 1 in pairs and len(out.users) == 1 and id(out) not in outputs
            self._calls[i] = self._specializers[i] = self._chain_specializer(i, 3 if three else 2)

    def _chain_specializer(self, i: int, count: int) -> Callable[[], None]:
        """:meth:`_specializer` of the run of ``count`` nodes from i: one call from ``kernel.specialize_chain``, or,
        where the kernel declines it, the run one shorter, down to node i's own specialized call (the later nodes
        keep their own)."""
        kernel, vals, calls, slot = self._node_kernels[i], self._vals, self._calls, self._slot
        layers = [(tuple(slot[id(v)] for v in n.inputs), slot[id(n.outputs[0])], n.attrs)
                  for n in self._nodes[i:i + count]]

        def specialize_and_call() -> None:
            arrays = [([vals[s] for s in ins], vals[out], attrs) for ins, out, attrs in layers]
            call, k = None, count
            while call is None and k > 1:
                call = kernel.specialize_chain(*arrays[:k])
                k -= 1
            if call is None:
                call = specialize(kernel, *arrays[0])
            else:
                for j in range(i + 1, i + k + 1):
                    calls[j] = _nothing
                self.chained.append(tuple(self._nodes[i:i + k + 1]))
            calls[i] = call
            call()

        return specialize_and_call

    def _specializer(self, i: int) -> Callable[[], None]:
        """A call that specializes node ``i``'s kernel to this run's arrays, puts it in its place and runs it."""
        node, kernel, vals, calls = self._nodes[i], self._node_kernels[i], self._vals, self._calls
        ins = tuple(self._slot[id(v)] for v in node.inputs)
        outs = tuple(self._slot[id(o)] for o in node.outputs)
        multiple, attrs = node.op.multiple_results, node.attrs

        def specialize_and_call() -> None:
            out = tuple(vals[s] for s in outs) if multiple else vals[outs[0]]
            call = specialize(kernel, [vals[s] for s in ins], out, attrs)
            calls[i] = call
            call()

        return specialize_and_call

    def _load(self, inputs: Sequence[Any], state: Sequence[np.ndarray] | None,
              outs: Sequence[np.ndarray | None] | None) -> None:
        super()._load(inputs, state, outs)
        vals, bound = self._vals, self._bound
        for s, users in self._users.items():  # re-specialize the calls whose param, state or output array moved
            if bound.get(s) is not vals[s]:
                bound[s] = vals[s]
                for i in users:
                    self._calls[i] = self._specializers[i]
        self._load_inputs()

    def _load_inputs(self) -> None:
        """The readers of a user input whose layout key (address, shape, strides, dtype) is the last run's read it
        through its alias (specialized, once, on the alias's first run); the others run plain this run. After the
        loop above: a reader of a new input runs plain even where its param or output moved."""
        vals, calls, keys, aliases = self._vals, self._calls, self._input_keys, self._aliases
        for s, users in self._input_users.items():
            a = vals[s]
            key = layout_key(a)
            if key is not None and key == keys.get(s):
                if s not in aliases:
                    aliases[s] = alias(a)
                    for i in users:
                        calls[i] = self._specializers[i]
                vals[s] = aliases[s]
                continue
            keys[s] = key
            aliases.pop(s, None)
            for i in users:
                calls[i] = self._plain[i]

    def _own_output(self, s: int, v: Value) -> Any:
        """Small outputs (logits, a loss) are written into the executor's own array and copied out: their writers
        stay specialized from run to run, where a fresh array per run would make them specialize again each time
        (MobileNetV2 b1's classifier)."""
        own = self._owned.get(s)
        if own is None and s in self._users and v.nbytes <= OWN_OUTPUT_BYTES:
            own = self._owned[s] = self._empty(v)
        return own

    def _release(self) -> None:
        super()._release()
        for s in self._allocated:  # a fresh output is the caller's now: no call may keep it
            if self._bound.pop(s, None) is not None:
                for i in self._users[s]:
                    self._calls[i] = self._specializers[i]


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
