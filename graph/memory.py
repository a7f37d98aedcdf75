"""Inference memory planning: liveness, in-place reuse, a peak-lowering schedule, and one arena laid out by
best-fit with decreasing size (the strategy of XLA's GlobalDecreasingSizeBestFitHeap).

Every intermediate (a node output that is not a graph output) gets a live interval ``[def step, last use step]``
over the schedule. An elementwise node whose same-sized input dies at that node writes over it (in place), and
a ``reshape`` of a dying input is a free alias; values that share storage form one :class:`Buffer`. Buffers are
placed biggest first, each at the smallest gap (among buffers live at the same time) that fits, else on top.

The four numbers reported (bytes, sizes rounded up to ``alignment``):
- ``naive_bytes``: every intermediate in its own allocation (sum of all intermediates);
- ``arena_bytes``: the planned arena;
- ``lower_bound_bytes``: the most bytes live at any one step of the chosen schedule (no layout can do better);
- ``fragmentation``: ``1 - lower_bound / arena``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.primitive import ELEMENTWISE

from .concat_views import ConcatViews, concat_views
from .ir import Graph, Node, Value
from .prefix_views import merge_prefix_buffers, prefix_families


@dataclass
class Buffer:
    """One arena allocation: the values stored in it (in-place chains), bytes, live steps and offset."""

    values: list[Value]
    size: int
    start: int
    end: int
    offset: int = -1


@dataclass
class MemoryPlan:
    schedule: list[Node]
    buffers: list[Buffer]
    offsets: dict[Value, int]
    inplace: dict[Node, Value]  # node -> the dying input whose storage its output reuses
    arena_bytes: int
    naive_bytes: int
    lower_bound_bytes: int
    peak_step: int
    alignment: int
    reordered: bool = False
    peak_original_order: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    elided: list[Node] = field(default_factory=list)  # concats whose inputs were written in place (no kernel runs)
    prefix_of: dict[Value, Value] = field(default_factory=dict)  # concat stored as a view of a longer one's

    @property
    def fragmentation(self) -> float:
        return 1.0 - self.lower_bound_bytes / self.arena_bytes if self.arena_bytes else 0.0

    def summary(self) -> dict[str, Any]:
        return {"naive_bytes": self.naive_bytes, "arena_bytes": self.arena_bytes,
                "lower_bound_bytes": self.lower_bound_bytes, "fragmentation": round(self.fragmentation, 4),
                "arena_over_lower_bound": round(self.arena_bytes / max(self.lower_bound_bytes, 1), 4),
                "arena_over_naive": round(self.arena_bytes / max(self.naive_bytes, 1), 4),
                "buffers": len(self.buffers), "inplace_nodes": len(self.inplace), "concats_in_place": len(self.elided),
                "reordered": self.reordered,
                "peak_original_order_bytes": self.peak_original_order}

    def __str__(self) -> str:
        mib = 1 << 20
        return (f"memory plan: naive {self.naive_bytes / mib:.2f} MiB, arena {self.arena_bytes / mib:.2f} MiB, "
                f"lower bound {self.lower_bound_bytes / mib:.2f} MiB, fragmentation {self.fragmentation:.1%} "
                f"({len(self.buffers)} buffers, {len(self.inplace)} in place"
                f"{f', {len(self.elided)} concats in place' if self.elided else ''}"
                f"{', schedule reordered' if self.reordered else ''})")


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _intermediates(graph: Graph) -> set[int]:
    outs = {id(v) for v in graph.outputs}
    return {id(o) for n in graph.nodes for o in n.outputs if id(o) not in outs}


def _peak(schedule: list[Node], inter: set[int]) -> int:
    """Max bytes of intermediates live at one step (a value is live from its producer to its last reader)."""
    last: dict[int, int] = {}
    for i, n in enumerate(schedule):
        for v in n.inputs:
            last[id(v)] = i
    delta = [0] * (len(schedule) + 1)
    for i, n in enumerate(schedule):
        for o in n.outputs:
            if id(o) in inter:
                delta[i] += o.nbytes
                delta[last.get(id(o), i) + 1] -= o.nbytes
    peak = cur = 0
    for d in delta:
        cur += d
        peak = max(peak, cur)
    return peak


def greedy_schedule(graph: Graph) -> list[Node]:
    """List scheduling that, among ready nodes, runs the one that grows live memory least (bytes it allocates
    minus bytes of inputs it is the last reader of); ties keep the original order. Lowers the peak of branchy
    graphs (Inception, DenseNet) where the traced order computes every branch before consuming any."""
    inter = _intermediates(graph)
    index = {n: i for i, n in enumerate(graph.nodes)}
    readers: dict[int, set[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            readers.setdefault(id(v), set()).add(n)
    distinct = {n: list({id(v): v for v in n.inputs}.values()) for n in graph.nodes}
    pending = {n: sum(1 for v in distinct[n] if v.producer is not None) for n in graph.nodes}
    remaining = {k: len(s) for k, s in readers.items()}
    alloc = {n: sum(o.nbytes for o in n.outputs if id(o) in inter) for n in graph.nodes}
    done: set[Node] = set()
    order: list[Node] = []

    def score(n: Node) -> tuple[int, int]:
        freed = sum(v.nbytes for v in distinct[n] if id(v) in inter and remaining[id(v)] == 1)
        return alloc[n] - freed, index[n]

    # a heap of (score, index, node) with stale entries skipped: a ready node's score only changes when one of
    # its inputs drops to a single remaining reader (then it is pushed again with the new score)
    current: dict[Node, tuple[int, int]] = {}
    heap: list[tuple[int, int, Node]] = []

    def push(n: Node) -> None:
        current[n] = score(n)
        heapq.heappush(heap, (*current[n], n))

    for n in graph.nodes:
        if pending[n] == 0:
            push(n)
    while heap:
        sc, i, n = heapq.heappop(heap)
        if n in done or current[n] != (sc, i):
            continue
        done.add(n)
        order.append(n)
        for v in distinct[n]:
            remaining[id(v)] -= 1
            if remaining[id(v)] == 1:
                u = next(r for r in readers[id(v)] if r not in done)
                if u in current:
                    push(u)
        for o in n.outputs:
            for u in readers.get(id(o), ()):
                pending[u] -= sum(1 for v in distinct[u] if v is o)
                if pending[u] == 0:
                    push(u)
    if len(order) != len(graph.nodes):
        raise ValueError("greedy_schedule: the graph has a cycle or a node reading an undefined value; "
                         "run graph.verify()")
    return order


# elementwise-kind ops that read a whole row before writing it: a kernel may not tolerate out aliasing x
_NO_INPLACE = frozenset({"softmax", "log_softmax"})


# multi-output ops whose first output may overwrite one of these inputs (same shape) when it dies there: every
# backend's kernel reads an element of them, in its last pass, only to write the same element of that output
# (batch norm's backward: gx over gy or x)
_INPLACE_FIRST = {"batch_norm_train_grad": (0, 1)}


def _can_reuse(node: Node, v: Value, out: Value, last: dict[int, int], step: int, inter: set[int]) -> bool:
    if id(v) not in inter or last.get(id(v)) != step or v.nbytes != out.nbytes or v.dtype != out.dtype:
        return False
    if node.op.name == "reshape":
        return True
    if node.op.name in _INPLACE_FIRST:
        return out is node.outputs[0] and v.shape == out.shape and \
            any(node.inputs[k] is v for k in _INPLACE_FIRST[node.op.name])
    return node.op.kind == ELEMENTWISE and node.op.name not in _NO_INPLACE and v.shape == out.shape


def plan_memory(graph: Graph, *, reorder: bool = True, inplace: bool = True, alignment: int = 64,
                concat_in_place: bool = True, prefix_views: bool = True) -> MemoryPlan:
    """Plan one arena for every intermediate of ``graph``. With ``reorder`` the peak-lowering schedule is used
    when it beats the graph's order (``plan.schedule``; set ``graph.nodes = plan.schedule`` to run it). With
    ``prefix_views`` a concat that is a channel prefix of a longer one is stored as a view of it
    (graph/prefix_views.py; ``plan.prefix_of``): only for backends whose kernels take such strided arrays. With
    ``concat_in_place`` the inputs of a concat that allows it (graph/concat_views.py) live in its output's buffer
    at their slice, and ``plan.elided`` lists the concats left with nothing to do; a graph with prefix views
    (DenseNet's training step) keeps its concats as copies, so the two never claim the same storage."""
    inter = _intermediates(graph)
    prefix_of = prefix_families(graph, inter) if prefix_views else {}
    shared = {id(v) for pair in prefix_of.items() for v in pair}  # never written over in place
    schedule = list(graph.nodes)
    peak_orig = _peak(schedule, inter)
    reordered = False
    if reorder and len(schedule) > 2:
        alt = greedy_schedule(graph)
        if _peak(alt, inter) < peak_orig:
            schedule, reordered = alt, True
    last: dict[int, int] = {}
    for i, n in enumerate(schedule):
        for v in n.inputs:
            last[id(v)] = i
    # a node that a backend may run with the next k as one call reads its inputs while they write their outputs
    # (meta "inputs_live_for" = k, graph/passes/chains.py): its inputs stay live, out of their buffers, through them
    for i, n in enumerate(schedule):
        for v in n.inputs if n.meta.get("inputs_live_for") else ():
            if id(v) in last:
                last[id(v)] = max(last[id(v)], min(len(schedule) - 1, i + n.meta["inputs_live_for"]))
    views = concat_views(schedule, inter, alignment) if concat_in_place and not prefix_of else ConcatViews()
    place, roots = views.place, views.roots
    # values -> buffers, merging in-place chains; a placed value only widens its root's live range
    buf_of: dict[int, Buffer] = {}
    buffers: list[Buffer] = []
    inplace_map: dict[Node, Value] = {}
    spans: dict[int, list[tuple[Value, int, int]]] = {}  # id(root) -> (placed value, def step, last use)
    for i, n in enumerate(schedule):
        for o in n.outputs:
            if id(o) not in inter:
                continue
            end = last.get(id(o), i)
            if id(o) in place:
                spans.setdefault(id(place[id(o)][0]), []).append((o, i, end))
                continue
            src = None
            if inplace and (len(n.outputs) == 1 or n.op.name in _INPLACE_FIRST) and id(o) not in roots:
                src = next((v for v in n.inputs if id(v) not in shared and id(v) not in place and id(v) not in roots
                            and _can_reuse(n, v, o, last, i, inter)), None)
            if src is not None and not any(x is not src and id(x) in buf_of and buf_of[id(x)] is buf_of[id(src)]
                                           for x in n.inputs):
                b = buf_of[id(src)]
                b.values.append(o)
                b.end = max(b.end, end)
                inplace_map[n] = src
            else:
                b = Buffer([o], _align(o.nbytes, alignment), i, end)
                buffers.append(b)
            buf_of[id(o)] = b
    for rid, members in spans.items():
        b = buf_of[rid]
        b.values.extend(v for v, _, _ in members)
        b.start = min(b.start, *(s for _, s, _ in members))
        b.end = max(b.end, *(e for _, _, e in members))
    if prefix_of:
        buffers = merge_prefix_buffers(buffers, buf_of, prefix_of)
    # lower bound: max bytes live at one step, over the buffers actually planned
    delta = [0] * (len(schedule) + 1)
    for b in buffers:
        delta[b.start] += b.size
        delta[b.end + 1] -= b.size
    lower = cur = peak_step = 0
    for i, d in enumerate(delta):
        cur += d
        if cur > lower:
            lower, peak_step = cur, i
    arena = _best_fit(buffers)
    offsets = {v: b.offset for b in buffers for v in b.values}
    for b in buffers:
        for v in b.values:
            if id(v) in place:
                root, at = place[id(v)]
                offsets[v] = offsets[root] + at
    naive = sum(_align(o.nbytes, alignment) for n in schedule for o in n.outputs if id(o) in inter)
    return MemoryPlan(schedule, buffers, offsets, inplace_map, arena, naive, lower, peak_step, alignment, reordered,
                      peak_orig, elided=views.elided, prefix_of=prefix_of)


def _best_fit(buffers: list[Buffer]) -> int:
    """Place buffers biggest first; each goes to the smallest gap between buffers live at the same time that
    fits it (the lowest such gap on ties), else on top of them. Returns the arena size."""
    n = len(buffers)
    start, end = np.empty(n, np.int64), np.empty(n, np.int64)
    offset, size = np.empty(n, np.int64), np.empty(n, np.int64)
    top = 0
    for k, b in enumerate(sorted(buffers, key=lambda b: (-b.size, b.start))):
        live = np.flatnonzero((start[:k] <= b.end) & (end[:k] >= b.start))
        cursor = 0
        if live.size:
            order = live[np.argsort(offset[live], kind="stable")]
            lo, hi = offset[order], offset[order] + size[order]
            # the gap before each live buffer: from the highest end below it (or 0) to its offset
            below = np.concatenate(([0], np.maximum.accumulate(hi)[:-1]))
            gaps = lo - below
            fit = np.flatnonzero(gaps >= b.size)
            cursor = int(below[fit[np.argmin(gaps[fit])]]) if fit.size else max(int(hi.max()), 0)
        b.offset = cursor
        start[k], end[k], offset[k], size[k] = b.start, b.end, b.offset, b.size
        top = max(top, b.offset + b.size)
    return top
