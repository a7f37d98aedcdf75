"""The graph IR: :class:`Value`, :class:`Node`, :class:`Graph`.

A ``Graph`` is an ordered list of ``Node``s; the order is always a valid schedule (every input of a node is a
graph input or an output of an earlier node). Each ``Node`` applies one primitive of the engine's table:

- ``op``: the :class:`engine.Primitive` (its shape, cost and vjp rules are the only definition of what it does);
- ``inputs``: the :class:`Value`s it reads, positionally, exactly as ``bind(op, *inputs, **attrs)`` takes them;
- ``attrs``: hashable keyword attributes, exactly as the functional wrapper bound them;
- ``outputs``: the :class:`Value`s it defines (one, or several for ``multiple_results`` primitives);
- ``meta``: analysis results and provenance (``"module"``: dotted module path; ``"fused"``: the ops folded
  into a fused node; ``"fold_error"``; ...). Passes never add ad hoc attributes.

A ``Value`` is either an output of a node (``kind="intermediate"``) or a graph input, whose ``kind`` says what
it is: ``"input"`` (a runtime argument), ``"param"`` / ``"buffer"`` (a named model parameter or buffer, its
array in ``data``), ``"const"`` (any other captured array, in ``data``) or ``"key"`` (a random key, drawn from the
engine's generator by the executor on every call). ``users`` is an insertion-ordered
dict used as an ordered set (deterministic iteration), maintained by the mutation methods of ``Graph``.

Mutate graphs only through ``Graph`` methods (``add_input``, ``create_node``, ``replace_all_uses``,
``set_input``, ``erase_node``, ``remove_input``) so ``users`` stays consistent; ``verify()`` checks it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import networkx as nx
import numpy as np

from engine.backend import to_host
from engine.primitive import Cost, Primitive, Spec, get_primitive

INPUT_KINDS = ("input", "param", "buffer", "const", "key")
FROZEN_KINDS = ("param", "buffer", "const")


class GraphError(ValueError):
    """``Graph.verify()`` found a broken invariant; the message says what and how to fix it."""


class Value:
    """A tensor in the graph: a name, a :class:`Spec` (shape/dtype), its producer (``None`` for graph inputs)."""

    __slots__ = ("name", "spec", "producer", "index", "kind", "data", "users", "meta")

    def __init__(self, name: str, spec: Spec, producer: Node | None = None, index: int = 0,
                 kind: str = "intermediate", data: np.ndarray | None = None):
        self.name = name
        self.spec = spec
        self.producer = producer
        self.index = index
        self.kind = kind
        self.data = data
        self.users: dict[Node, None] = {}
        self.meta: dict[str, Any] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.shape

    @property
    def dtype(self) -> np.dtype:
        return self.spec.dtype

    @property
    def ndim(self) -> int:
        return len(self.spec.shape)

    @property
    def nbytes(self) -> int:
        return self.spec.nbytes

    @property
    def is_input(self) -> bool:
        return self.producer is None

    @property
    def is_frozen(self) -> bool:
        """A param, buffer or const: its value is known at compile time (in inference graphs)."""
        return self.kind in FROZEN_KINDS

    def __repr__(self) -> str:
        return f"%{self.name}: {self.spec!r}"


class Node:
    """One primitive application. See the module docstring for the meaning of each field."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "name", "meta")

    def __init__(self, op: Primitive, inputs: list[Value], attrs: dict[str, Any], name: str):
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs)
        self.outputs: list[Value] = []
        self.name = name
        self.meta: dict[str, Any] = {}

    @property
    def out(self) -> Value:
        """The single output (most primitives have exactly one)."""
        return self.outputs[0]

    @property
    def kind(self) -> str:
        return self.op.kind

    @property
    def module(self) -> str:
        """The dotted path of the module whose forward made this node ("" for ops called outside any module)."""
        return self.meta.get("module") or ""

    def specs(self) -> tuple[tuple[Spec, ...], tuple[Spec, ...]]:
        """(input specs, output specs)."""
        return tuple(v.spec for v in self.inputs), tuple(v.spec for v in self.outputs)

    def cost(self) -> Cost:
        """The primitive's cost rule applied to this node's specs and attributes."""
        return self.op.cost(*self.specs(), **self.attrs)

    def format(self) -> str:
        outs = ", ".join(repr(o) for o in self.outputs)
        args = ", ".join(f"%{v.name}" for v in self.inputs)
        attrs = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        s = f"{outs} = {self.op.name}({args}{'; ' + attrs if attrs else ''})"
        notes = [f"{k}={self.meta[k]}" for k in ("module", "fused") if self.meta.get(k)]
        return s + (f"  # {' '.join(notes)}" if notes else "")

    def __repr__(self) -> str:
        return f"Node({self.name}: {self.op.name})"


class Graph:
    """An ordered list of nodes (a valid schedule) with graph inputs and outputs. ``meta`` holds graph-level
    facts: ``"training"`` (bool: traced in training mode), ``"frozen"`` (params may be folded), ...
    """

    def __init__(self) -> None:
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self.meta: dict[str, Any] = {}
        self._names: set[str] = set()
        self._counter = itertools.count()

    # --- naming ----------------------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        base = base or "v"
        if base not in self._names:
            self._names.add(base)
            return base
        while True:
            name = f"{base}_{next(self._counter)}"
            if name not in self._names:
                self._names.add(name)
                return name

    # --- construction and mutation ---------------------------------------------------------------------
    def add_input(self, name: str, spec: Spec, kind: str = "input", data: np.ndarray | None = None) -> Value:
        """Append a graph input. ``kind`` is one of ``input | param | buffer | const``; non-``input`` kinds
        carry their array in ``data`` (``None`` only for abstract consts). Graphs hold host arrays: a device
        array (a parameter of a model moved to a GPU) is copied to the host here, so passes read numpy arrays and
        an executor uploads what it needs once."""
        if kind not in INPUT_KINDS:
            raise ValueError(f"add_input: kind must be one of {INPUT_KINDS} (got {kind!r})")
        v = Value(self.unique_name(name), spec, None, 0, kind, None if data is None else to_host(data))
        self.inputs.append(v)
        return v

    def add_const(self, name: str, data: np.ndarray, kind: str = "const") -> Value:
        data = np.ascontiguousarray(data)
        return self.add_input(name, Spec(data.shape, data.dtype), kind, data)

    def create_node(self, op: Primitive | str, inputs: Sequence[Value], attrs: dict[str, Any] | None = None, *,
                    name: str | None = None, meta: dict[str, Any] | None = None, before: Node | None = None,
                    after: Node | None = None, out_names: Sequence[str] | None = None,
                    out_specs: Sequence[Spec] | None = None) -> Node:
        """Create a node, infer its outputs with the primitive's shape rule (unless the caller already has them
        in ``out_specs``), and insert it at the end (or just before ``before`` / after ``after``)."""
        prim = get_primitive(op) if isinstance(op, str) else op
        attrs = dict(attrs or {})
        specs = tuple(out_specs) if out_specs is not None else prim.abstract_eval(*(v.spec for v in inputs), **attrs)
        node = Node(prim, list(inputs), attrs, self.unique_name(name or prim.name))
        if meta:
            node.meta.update(meta)
        for i, s in enumerate(specs):
            base = out_names[i] if out_names else (node.name if len(specs) == 1 else f"{node.name}.{i}")
            node.outputs.append(Value(base if base == node.name else self.unique_name(base), s, node, i))
        for v in node.inputs:
            v.users[node] = None
        if before is not None:
            self.nodes.insert(self.nodes.index(before), node)
        elif after is not None:
            self.nodes.insert(self.nodes.index(after) + 1, node)
        else:
            self.nodes.append(node)
        return node

    def set_input(self, node: Node, i: int, value: Value) -> None:
        old = node.inputs[i]
        node.inputs[i] = value
        value.users[node] = None
        if not any(v is old for v in node.inputs):
            old.users.pop(node, None)

    def replace_all_uses(self, old: Value, new: Value, *, except_node: Node | None = None) -> bool:
        """Make every user of ``old`` (and the graph outputs) read ``new`` instead. Returns whether anything
        changed."""
        changed = False
        for user in list(old.users):
            if user is except_node:
                continue
            for i, v in enumerate(user.inputs):
                if v is old:
                    self.set_input(user, i, new)
                    changed = True
        for i, v in enumerate(self.outputs):
            if v is old:
                self.outputs[i] = new
                changed = True
        return changed

    def erase_node(self, node: Node) -> None:
        """Remove a node whose outputs are unused."""
        for o in node.outputs:
            if o.users or self.is_output(o):
                users = [u.name for u in o.users] + (["<graph output>"] if self.is_output(o) else [])
                raise GraphError(f"erase_node: output %{o.name} of {node.name} is still used by {users}; "
                                 f"call replace_all_uses first")
        self.erase_nodes({node})

    def erase_nodes(self, dead: set[Node]) -> None:
        """Remove many nodes at once (their outputs may only be used among themselves); their names are freed."""
        for n in dead:
            for v in n.inputs:
                v.users.pop(n, None)
            self._names.discard(n.name)
            self._names.difference_update(o.name for o in n.outputs)
        self.nodes = [n for n in self.nodes if n not in dead]

    def rename(self, node: Node, base: str) -> None:
        """Give ``node`` (and its single output) the name ``base`` if free, else a fresh ``base_N``."""
        single = len(node.outputs) == 1 and node.outputs[0].name == node.name
        self._names.discard(node.name)
        if single:
            self._names.discard(node.outputs[0].name)
        node.name = self.unique_name(base)
        if single:
            node.outputs[0].name = node.name

    def remove_input(self, value: Value) -> None:
        if value.users or self.is_output(value):
            raise GraphError(f"remove_input: %{value.name} is still used; replace its uses first")
        self.inputs.remove(value)
        self._names.discard(value.name)

    def remove_unused_inputs(self) -> bool:
        """Drop params/buffers/consts nobody reads (runtime inputs stay: they are the call signature)."""
        unused = [v for v in self.inputs if v.kind != "input" and not v.users and not self.is_output(v)]
        if unused:
            gone = set(map(id, unused))
            self.inputs = [v for v in self.inputs if id(v) not in gone]
            self._names.difference_update(v.name for v in unused)
        return bool(unused)

    def is_output(self, value: Value) -> bool:
        return any(o is value for o in self.outputs)

    # --- views -----------------------------------------------------------------------------------------
    @property
    def user_inputs(self) -> list[Value]:
        """The runtime arguments, in call order."""
        return [v for v in self.inputs if v.kind == "input"]

    @property
    def params(self) -> list[Value]:
        return [v for v in self.inputs if v.kind in ("param", "buffer")]

    @property
    def consts(self) -> list[Value]:
        return [v for v in self.inputs if v.kind == "const"]

    def values(self) -> Iterator[Value]:
        yield from self.inputs
        for n in self.nodes:
            yield from n.outputs

    def find(self, op: str) -> list[Node]:
        """Nodes applying primitive ``op`` (by name), in schedule order."""
        return [n for n in self.nodes if n.op.name == op]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op.name] = counts.get(n.op.name, 0) + 1
        return counts

    def stats(self) -> dict[str, int]:
        """Kernel count, MACs, FLOPs and bytes moved, summed from the primitives' cost rules."""
        total = Cost()
        for n in self.nodes:
            total = total + n.cost()
        return {"nodes": len(self.nodes), "kernels": len(self.nodes), "macs": total.macs, "flops": total.flops,
                "bytes": total.bytes_read + total.bytes_written,
                "param_bytes": sum(v.nbytes for v in self.inputs if v.is_frozen)}

    def to_networkx(self, include_inputs: bool = False) -> nx.DiGraph:
        """A ``networkx.DiGraph`` over the nodes (and the graph-input Values if ``include_inputs``); edges carry
        ``values`` (the Values flowing along them) and ``bytes``. Use it for dominators, reachability, ..."""
        g = nx.DiGraph()
        for v in self.inputs if include_inputs else ():
            g.add_node(v)
        for n in self.nodes:
            g.add_node(n)
            for v in n.inputs:
                src = v.producer if v.producer is not None else (v if include_inputs else None)
                if src is None:
                    continue
                if g.has_edge(src, n):
                    if all(x is not v for x in g.edges[src, n]["values"]):
                        g.edges[src, n]["values"].append(v)
                        g.edges[src, n]["bytes"] += v.nbytes
                else:
                    g.add_edge(src, n, values=[v], bytes=v.nbytes)
        return g

    def copy(self) -> Graph:
        """A structural copy (new Values/Nodes, same arrays and attrs); passes may then rewrite either."""
        new = Graph()
        new.meta = dict(self.meta)
        new._names = set(self._names)
        new._counter = itertools.count(next(self._counter))
        vmap: dict[int, Value] = {}
        for v in self.inputs:
            nv = Value(v.name, v.spec, None, 0, v.kind, v.data)
            nv.meta = dict(v.meta)
            new.inputs.append(nv)
            vmap[id(v)] = nv
        for n in self.nodes:
            nn = Node(n.op, [vmap[id(v)] for v in n.inputs], n.attrs, n.name)
            nn.meta = dict(n.meta)
            for o in n.outputs:
                no = Value(o.name, o.spec, nn, o.index)
                no.meta = dict(o.meta)
                nn.outputs.append(no)
                vmap[id(o)] = no
            for v in nn.inputs:
                v.users[nn] = None
            new.nodes.append(nn)
        new.outputs = [vmap[id(v)] for v in self.outputs]
        return new

    # --- checking --------------------------------------------------------------------------------------
    def verify(self) -> Graph:
        """Check topology, shapes, dtypes and bookkeeping; raise :class:`GraphError` saying what is wrong and how
        to fix it. Returns the graph so calls chain."""
        defined: set[int] = set()
        names: dict[str, Value] = {}

        def define(v: Value, where: str) -> None:
            if id(v) in defined:
                raise GraphError(f"value %{v.name} is defined twice ({where}); every Value has one producer")
            if v.name in names:
                raise GraphError(f"two values are named %{v.name} ({where}); create names with graph.unique_name()")
            defined.add(id(v))
            names[v.name] = v

        for v in self.inputs:
            if v.producer is not None or v.kind not in INPUT_KINDS:
                raise GraphError(f"graph input %{v.name} has kind {v.kind!r} and producer {v.producer}; inputs have "
                                 f"no producer and a kind in {INPUT_KINDS}")
            if v.kind != "input" and v.data is not None and (v.data.shape != v.shape or v.data.dtype != v.dtype):
                raise GraphError(f"{v.kind} %{v.name} is declared {v.spec!r} but holds an array "
                                 f"{v.data.dtype}{list(v.data.shape)}; rebuild it with graph.add_const(name, array)")
            define(v, "graph input")
        users: dict[int, dict[Node, None]] = {id(v): {} for v in self.values()}
        for pos, n in enumerate(self.nodes):
            for i, v in enumerate(n.inputs):
                if id(v) not in defined:
                    known = id(v) in users
                    raise GraphError(
                        f"node {pos} ({n.name} = {n.op.name}) reads %{v.name} (input {i}) before it is defined"
                        + ("; move the node after the producer of that value (nodes must be topologically ordered)"
                           if known else "; the value is not in this graph (was its producer erased? use "
                           "replace_all_uses before erase_node)") + f"\n{self}")
                users.setdefault(id(v), {})[n] = None
            try:
                specs = n.op.abstract_eval(*(v.spec for v in n.inputs), **n.attrs)
            except Exception as e:
                raise GraphError(f"node {n.name} ({n.op.name}) fails its shape rule: {e}\n  {n.format()}") from e
            if len(specs) != len(n.outputs):
                raise GraphError(f"node {n.name} ({n.op.name}) has {len(n.outputs)} outputs but its primitive "
                                 f"gives {len(specs)}; create nodes with graph.create_node()")
            for i, (s, o) in enumerate(zip(specs, n.outputs)):
                if o.spec != s:
                    raise GraphError(f"node {n.name} ({n.op.name}) output {i} is declared {o.spec!r} but the shape "
                                     f"rule gives {s!r}; recreate the node instead of editing its inputs/attrs")
                if o.producer is not n or o.index != i or o.kind != "intermediate":
                    raise GraphError(f"output %{o.name} of {n.name} has a wrong producer/index/kind")
                define(o, f"output of {n.name}")
        for i, v in enumerate(self.outputs):
            if id(v) not in defined:
                raise GraphError(f"graph output {i} (%{v.name}) is not defined in the graph; "
                                 f"point graph.outputs at a live value")
        for v in self.values():
            if set(v.users) != set(users.get(id(v), {})):
                raise GraphError(f"users of %{v.name} are out of date ({[u.name for u in v.users]} recorded, "
                                 f"{[u.name for u in users.get(id(v), {})]} actual); mutate through Graph methods")
        return self

    # --- printing --------------------------------------------------------------------------------------
    def __str__(self) -> str:
        lines = ["graph(" + ", ".join(repr(v) for v in self.user_inputs) + ") {"]
        for kind in FROZEN_KINDS:
            vs = [v for v in self.inputs if v.kind == kind]
            if vs:
                shown = ", ".join(repr(v) for v in vs[:8]) + (f", ... ({len(vs)} in all)" if len(vs) > 8 else "")
                lines.append(f"  # {kind}s: {shown}")
        lines += ["  " + n.format() for n in self.nodes]
        lines.append("  return " + ", ".join(f"%{v.name}" for v in self.outputs))
        lines.append("}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Graph({len(self.user_inputs)} inputs, {len(self.params)} params, {len(self.nodes)} nodes)"
