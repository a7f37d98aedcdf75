"""Rematerialization: fit a training graph's planned peak under a memory budget by recomputing forward values in
the backward pass instead of keeping them (a graph rewrite the memory planner then measures).

A value the backward reads is *saved*: it stays live from the forward to its last backward reader. To recompute
it, its producer is cloned (recursively, through values that are not kept) right before its first backward
reader, and backward readers read the clone. Clones run the same primitives with the same attributes on the same
inputs, so gradients are bit for bit those of the unrewritten graph; random ops recompute the same mask from the
same key input. A training batch norm's output is the exception: ``batch_norm_apply`` recomputes it from the kept
statistics (with the relu after it, where that is its only reader), bit for bit as well (a blocked one,
``blocked_batch_norm_apply``).

Policy (``rematerialize``), on the graph in its peak-lowering schedule (clones go before their first reader in
that order):
1. Cheap ops first: conv and matmul outputs stay saved (anchors); everything else the backward reads (batch-norm
   outputs, activations, pooling, adds, reshapes) is recomputed from them, largest first, until the planned peak
   fits (a binary search over how many candidates, so the planner runs ~log2(n) times) Concats stored as channel-prefix
   views of a longer one (DenseNet's, graph/prefix_views.py) stay saved in 1 and 2: recomputing one frees nothing
   while the rest of its family is kept, and its clone is a copy.
2. Cheap ops and the cheapest convolutions: block boundaries (every 1st, 2nd or 3rd articulation point of the
   forward graph) stay saved, every other cheap value is recomputed, and conv / matmul outputs are recomputed in
   order of bytes freed per FLOP (1x1 convs with few input channels and full-resolution convs first), fewest
   that fit. Each recomputation stays inside a block or two, so its clones live only during that backward.
   Each spacing is tried with private clones (below) and with shared ones (``share``: nothing recomputed twice).
3. Segment checkpoints (Chen et al. 2016): keep only every k-th articulation point of the forward graph
   (k ~ sqrt(#points)) and recompute everything else, convolutions included, from them.
Of 2 and 3 the fitting rewrite with the fewest extra FLOPs wins; when it adds more than ``_REFINE_ABOVE`` of the
step's FLOPs, a local search refines it (:func:`_refine`: one value at a time is kept again, or its clone shared by
the chains that reach it, while that saves FLOPs and the peak still fits). When none fits, 1-3 again with *deep*
private chains (see :func:`recompute`): more FLOPs, a lower floor (policy "... (deep)"). A budget below what the
most aggressive plan reaches is an error that names the smallest feasible budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from engine.ops.blocked_train import blocked_batch_norm_apply_p
from engine.ops.norm import batch_norm_apply_p
from engine.primitive import CONV, FUSED, MATMUL

from .ir import Graph, Node, Value
from .memory import _intermediates, plan_memory
from .prefix_views import prefix_families

_NEVER = (CONV, MATMUL, FUSED)  # expensive: never recomputed by the cheap policy
_TINY = 4096  # a saved value under 1/_TINY of the planned peak is never recomputed
_BOUND_STRIDES = (1, 2, 3)  # cheap+convs keeps every 1st, 2nd or 3rd articulation point (each tried)
# the best fit is refined (:func:`_refine`, a plan per tried value) when it adds more than this share of the step's
# FLOPs: where recomputed convolutions cost that much time, the search pays for itself
_REFINE_ABOVE = 0.15


class BudgetError(ValueError):
    """No rematerialization fits the planned peak under the requested budget; ``smallest`` is the smallest planned
    peak (bytes) any tried rewrite reached, ``base`` the peak without recomputation."""

    def __init__(self, message: str, smallest: int = 0, base: int = 0):
        super().__init__(message)
        self.smallest, self.base = smallest, base


@dataclass
class RematResult:
    graph: Graph
    policy: str  # "none" | "cheap" | "cheap+convs" | "segments", + " (deep)" for the second search
    peak_before: int
    peak_after: int
    budget: int
    recomputed: list[str] = field(default_factory=list)  # names of the recomputed values
    extra_flops: int = 0

    def summary(self) -> dict[str, Any]:
        return {"policy": self.policy, "budget_bytes": self.budget, "peak_no_recompute_bytes": self.peak_before,
                "planned_peak_bytes": self.peak_after, "recomputed": len(self.recomputed),
                "recomputed_values": list(self.recomputed), "extra_flops": self.extra_flops}


def _phase(n: Node) -> str:
    return n.meta.get("phase", "forward")


def saved_values(graph: Graph) -> list[Value]:
    """Forward-phase intermediates read by backward-phase nodes, in schedule order."""
    out: dict[int, Value] = {}
    for n in graph.nodes:
        if _phase(n) != "forward":
            continue
        for o in n.outputs:
            if any(_phase(u) == "backward" for u in o.users):
                out[id(o)] = o
    return list(out.values())


def saved_bytes_by_op(graph: Graph) -> dict[str, int]:
    """Bytes the forward keeps for the backward, by the primitive that produced them (largest first)."""
    by: dict[str, int] = {}
    for v in saved_values(graph):
        by[v.producer.op.name] = by.get(v.producer.op.name, 0) + v.nbytes
    return dict(sorted(by.items(), key=lambda kv: -kv[1]))


def planned_peak(graph: Graph, prefix_views: bool = True) -> int:
    return plan_memory(graph, reorder=True, prefix_views=prefix_views).arena_bytes


def recompute(graph: Graph, values: list[Value], anchors: set[int], verify: bool = True, deep: bool = False,
              share: bool | set[int] = False) -> tuple[Graph, list[str], int]:
    """A copy of ``graph`` where the backward reads a recomputed clone of each of ``values`` (cloning producers
    back to ``anchors`` / graph inputs). Returns the graph, the recomputed value names and the FLOPs added.
    ``verify=False`` skips the structural check (the search verifies only the rewrite it returns). ``share``: a
    target reached while recomputing another is cloned once for both (nothing runs twice; the clone lives until
    its last reader) instead of privately (below); True for every target, or the ids of the ones to share."""
    g = graph.copy()
    vmap = {id(a): b for a, b in zip(graph.values(), g.values())}
    targets = [vmap[id(v)] for v in values]
    anchor_ids = {id(vmap[a]) for a in anchors if a in vmap}
    target_ids = {id(v) for v in targets}
    shared_ids = target_ids if share is True else {id(vmap[a]) for a in share or () if a in vmap}
    clones: dict[int, Value] = {}  # original value id -> its recomputed clone
    extra = 0
    names: list[str] = []

    def kept(v: Value) -> bool:
        """Saved anyway (read by the backward and not being recomputed): clones read it instead of recomputing."""
        return id(v) not in target_ids and any(_phase(u) == "backward" for u in v.users)

    # another target reached while recomputing this one gets a clone of its own here (with ``deep``, so does what
    # it is recomputed from), dropped after this chain: sharing it would keep it live from here to its own (later)
    # backward readers (ResNet's stem output, reached when a later block's input is recomputed, would stay live
    # through every block in between). ``deep`` recomputes more and keeps less (DenseNet's dense layers, reached
    # from every later concatenation)
    private: dict[int, Value] = {}
    current: list[Value] = []

    def clone_of(v: Value, before: Node, priv: bool = False) -> Value:
        nonlocal extra
        if id(v) in clones:
            return clones[id(v)]
        if id(v) in private:
            return private[id(v)]
        if v.producer is None or id(v) in anchor_ids or kept(v):
            return v
        n = v.producer
        mine = any(id(o) in target_ids and id(o) not in shared_ids and o is not current[0] for o in n.outputs)
        priv = (priv and deep) or mine
        # y again from the kept statistics (and the relu after it): one pass, no reductions. A relu cloned
        # privately, or over a batch norm already cloned, stays a node of its own over the batch norm's clone, so
        # that clone is shared as any other would be
        bn = _applicable_batch_norm(n, kept)
        if bn is not None and bn is not n and (priv or id(bn.outputs[0]) in clones or id(bn.outputs[0]) in private):
            bn = None
        if bn is not None:
            x, w, b = (clone_of(x, before, priv) for x in bn.inputs)
            apply = batch_norm_apply_p if bn.op.name == "batch_norm_train" else blocked_batch_norm_apply_p
            c = g.create_node(apply, [x, w, b, *bn.outputs[1:]],
                              {"eps": bn.attrs["eps"], "relu": n is not bn}, name=f"{n.name}.recompute",
                              before=before, meta={**n.meta, "phase": "backward", "recomputed": n.name},
                              out_specs=[v.spec])
            extra += c.cost().flops
            (private if priv else clones)[id(v)] = c.outputs[0]
            names.append(v.name)
            return c.outputs[0]
        ins = [clone_of(x, before, priv) for x in n.inputs]
        c = g.create_node(n.op, ins, n.attrs, name=f"{n.name}.recompute", before=before,
                          meta={**n.meta, "phase": "backward", "recomputed": n.name},
                          out_specs=[o.spec for o in n.outputs])
        extra += c.cost().flops
        cache = private if priv else clones
        for o, co in zip(n.outputs, c.outputs):
            cache[id(o)] = co
        names.append(v.name)
        return cache[id(v)]

    pos = {id(n): i for i, n in enumerate(g.nodes)}
    work = []
    for v in targets:
        readers = [u for u in v.users if _phase(u) == "backward"]
        if readers:
            work.append((min(pos[id(u)] for u in readers), v, readers))
    # in order of first backward reader, so a clone shared by several targets precedes all their readers
    for _, v, readers in sorted(work, key=lambda w: w[0]):
        first = min(readers, key=lambda u: pos[id(u)])
        private.clear()
        current[:] = [v]
        c = clone_of(v, first)
        for u in readers:
            for i, x in enumerate(u.inputs):
                if x is v:
                    g.set_input(u, i, c)
    if verify:
        g.verify()
    return g, names, extra


def _applicable_batch_norm(n: Node, kept: Any) -> Node | None:
    """The training batch norm whose ``y`` a clone of ``n`` can compute with ``batch_norm_apply`` from its kept
    statistics: ``n`` itself, or the one feeding ``n`` when ``n`` is a relu that is its y's only reader (the relu
    then runs in the same pass); None otherwise."""
    bn = n
    if n.op.name == "relu":
        y = n.inputs[0]
        bn = y.producer
        if bn is None or y is not bn.outputs[0] or len(y.users) != 1:
            return None
    if bn.op.name not in ("batch_norm_train", "blocked_batch_norm_train") or not all(kept(s) for s in bn.outputs[1:]):
        return None
    return bn


def _articulation_values(graph: Graph) -> list[Value]:
    """Outputs of forward nodes every forward path goes through (articulation points), in schedule order."""
    # forward nodes the first output (the loss, or the model output) depends on: running-statistics chains and
    # other side branches would be articulation points of no use as checkpoints
    needed: set[int] = set()
    stack = [graph.outputs[0].producer] if graph.outputs and graph.outputs[0].producer is not None else []
    while stack:
        n = stack.pop()
        if id(n) in needed or _phase(n) != "forward":
            continue
        needed.add(id(n))
        stack.extend(v.producer for v in n.inputs if v.producer is not None)
    fwd = [n for n in graph.nodes if id(n) in needed]
    ug = nx.Graph()
    for n in fwd:
        ug.add_node(n)
        for v in n.inputs:
            if v.producer is not None and _phase(v.producer) == "forward":
                ug.add_edge(v.producer, n)
    cut = set(nx.articulation_points(ug)) if ug.number_of_nodes() > 2 else set()
    return [n.outputs[0] for n in fwd if n in cut and len(n.outputs) == 1]


def rematerialize(graph: Graph, budget: int | float, prefix_views: bool = True) -> RematResult:
    """Rewrite ``graph`` (a training graph with forward/backward phases) so its planned peak fits ``budget``
    (bytes, or a fraction of the peak with no recomputation when <= 1). See the module docstring.
    ``prefix_views``: plan as the executor will (:func:`graph.memory.plan_memory`'s option of that name)."""
    plan = plan_memory(graph, reorder=True, prefix_views=prefix_views)
    base = plan.arena_bytes
    if plan.reordered:  # clones go before their first reader in this order: start from the peak-lowering one
        index = {id(n): i for i, n in enumerate(graph.nodes)}
        graph = graph.copy()
        graph.nodes = [graph.nodes[index[id(n)]] for n in plan.schedule]
    limit = int(budget * base) if isinstance(budget, float) and budget <= 1.0 else int(budget)
    if limit >= base:
        return RematResult(graph, "none", base, base, limit)
    try:
        return _search(graph, base, limit, prefix_views, deep=False)
    except BudgetError as shallow:  # recomputing whole chains privately: more FLOPs, a lower floor
        try:
            result = _search(graph, base, limit, prefix_views, deep=True)
            result.policy += " (deep)"
            return result
        except BudgetError as e:
            smallest = min(shallow.smallest, e.smallest)
    raise BudgetError(f"memory_budget: {limit:,} bytes cannot be met; the smallest feasible planned peak is "
                      f"{smallest:,} bytes ({smallest / base:.2f} of the {base:,} bytes planned without "
                      f"recomputation)", smallest, base)


@dataclass
class _Rewrite:
    """One tried rewrite: what it recomputes from what, and what that costs."""

    targets: list[Value]
    anchors: set[int]
    share: bool | set[int]
    graph: Graph
    names: list[str]
    extra: int
    peak: int
    policy: str = ""


def _rewrite(graph: Graph, targets: list[Value], anchors: set[int], prefix_views: bool, deep: bool,
             share: bool | set[int] = False, policy: str = "") -> _Rewrite:
    g, names, extra = recompute(graph, targets, anchors, verify=False, deep=deep, share=share)
    return _Rewrite(targets, anchors, share, g, names, extra, planned_peak(g, prefix_views), policy)


def _search(graph: Graph, base: int, limit: int, prefix_views: bool, deep: bool) -> RematResult:
    """The policies of the module docstring, in order; BudgetError (with the smallest peak reached) if none fits."""
    # tiny values (batch-norm statistics, pooled features) stay saved: recomputing a 256-byte mean reruns a whole
    # batch norm and allocates its full-size output for nothing
    saved = [v for v in saved_values(graph) if v.nbytes * _TINY >= base]
    # concats stored as channel-prefix views of a block's longest one (graph/prefix_views.py) free nothing unless
    # the whole family goes, and a clone is a full copy: they stay saved under the cheap policies
    shared = {id(v) for pair in prefix_families(graph, _intermediates(graph)).items() for v in pair} \
        if prefix_views else set()
    cheap = sorted((v for v in saved if v.producer.op.kind not in _NEVER and id(v) not in shared),
                   key=lambda v: -v.nbytes)
    anchors = {id(v) for v in saved if v.producer.op.kind in _NEVER}

    def attempt(k: int) -> _Rewrite:
        return _rewrite(graph, cheap[:k], anchors, prefix_views, deep, policy="cheap")

    best = attempt(len(cheap)) if cheap else _Rewrite([], anchors, False, graph, [], 0, base)
    if best.peak <= limit:  # fewest recomputations that fit: binary search on the prefix length
        r = _fewest(attempt, 0, len(cheap), limit, best)
        r.graph.verify()
        return RematResult(r.graph, "cheap", base, r.peak, limit, r.names, r.extra)
    smallest = best.peak
    fits: list[_Rewrite] = []
    # 2. block boundaries (every 1st, 2nd or 3rd articulation point) kept, every other cheap value recomputed,
    # plus the expensive values that free the most bytes per recomputed FLOP (a 1x1 conv with few input channels,
    # a conv at full resolution), fewest that fit. Kept boundaries bound every recomputation to a block or two:
    # a recomputed block output would recompute the residual chain back to the stem, its clones live meanwhile.
    points = _articulation_values(graph)
    costly = sorted((v for v in saved if v.producer.op.kind in _NEVER),
                    key=lambda v: -v.nbytes / max(v.producer.cost().flops, 1))
    # each also with shared clones: a conv output reached from a later block's recomputation is not recomputed a
    # second time for its own readers (fewer FLOPs where the longer-lived clone still fits)
    for stride, share in [(s, sh) for s in _BOUND_STRIDES for sh in ((False,) if deep else (True, False))]:
        bounds = {id(v) for v in points[stride - 1::stride]}
        inner = [v for v in cheap if id(v) not in bounds]

        def attempt_costly(k: int, inner: list[Value] = inner, bounds: set[int] = bounds, share: bool = share
                           ) -> _Rewrite:
            dropped = {id(v) for v in costly[:k]}
            return _rewrite(graph, inner + costly[:k], (anchors - dropped) | bounds, prefix_views, deep, share,
                            "cheap+convs")

        # the peak need not fall monotonically with k (a recomputed DenseNet feature map is read by every later
        # concatenation: recomputing it early keeps its clone, and what it was made from, live longer), so look
        # at nine points of the curve first and search between the first that fits and the one before
        lo = 0
        for k in sorted({round(len(costly) * i / 8) for i in range(9)}):
            trial = attempt_costly(k)
            smallest = min(smallest, trial.peak)
            if trial.peak <= limit:
                fits.append(_fewest(attempt_costly, lo, k, limit, trial) if k else trial)
                break
            lo = k
    # 3. segment checkpoints: keep every k-th articulation point, recompute the rest of the forward
    for k in _segment_strides(len(points)):  # sqrt(n) first; the fitting stride with the fewest extra FLOPs wins
        keep = {id(v) for v in points[k - 1::k]}
        trial = _rewrite(graph, [v for v in saved if id(v) not in keep], keep, prefix_views, deep,
                         policy="segments")
        smallest = min(smallest, trial.peak)
        if trial.peak <= limit:
            fits.append(trial)
    if not fits:
        raise BudgetError("", smallest, base)
    r = min(fits, key=lambda f: (f.extra, f.peak))
    if r.extra > _REFINE_ABOVE * graph.stats()["flops"]:
        r = _refine(graph, r, limit, prefix_views, deep)
    r.graph.verify()
    return RematResult(r.graph, r.policy, base, r.peak, limit, r.names, r.extra)


def _refine(graph: Graph, fit: _Rewrite, limit: int, prefix_views: bool, deep: bool) -> _Rewrite:
    """Local search from a fitting rewrite: stop recomputing one value at a time (it stays saved, and the chains
    that reached it stop there), the fewest bytes per FLOP first, or share one more value's clone (it is no
    longer recomputed again inside each chain that reaches it), whenever that cuts the extra FLOPs and the peak
    still fits; until no move is left. The policies above pick their targets for the whole graph at once, while
    the peak is one step of it: ResNet-18 CIFAR's at 0.3 lies in the backward of the full-resolution stages, so
    the later stages' convolutions, recomputed there too, can stay saved (their values are dead by then)."""
    order = sorted(fit.targets, key=lambda v: v.nbytes / max(v.producer.cost().flops, 1))
    shared = {id(v) for v in fit.targets} if fit.share is True else set(fit.share or ())
    fit = _Rewrite(fit.targets, fit.anchors, shared, fit.graph, fit.names, fit.extra, fit.peak, fit.policy)
    improved = True
    while improved:
        improved = False
        for move, v in [("keep", v) for v in order] + [("share", v) for v in order]:
            if v not in fit.targets or (move == "share" and id(v) in fit.share):
                continue
            targets, anchors, share = fit.targets, fit.anchors, fit.share
            if move == "keep":
                targets, anchors = [t for t in targets if t is not v], anchors | {id(v)}
            else:
                share = share | {id(v)}
            g, names, extra = recompute(graph, targets, anchors, verify=False, deep=deep, share=share)
            if extra >= fit.extra:  # planning is the costly part: only for a rewrite that saves FLOPs
                continue
            peak = planned_peak(g, prefix_views)
            if peak <= limit:
                fit = _Rewrite(targets, anchors, share, g, names, extra, peak, fit.policy)
                improved = True
    return fit


def _fewest(attempt: Any, lo: int, hi: int, limit: int, fit: _Rewrite) -> _Rewrite:
    """``attempt(k)`` for the smallest k in (lo, hi] found to fit ``limit`` by binary search (``fit`` is
    ``attempt(hi)``, which fits)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = attempt(mid)
        if trial.peak <= limit:
            hi, fit = mid, trial
        else:
            lo = mid
    return fit


def _segment_strides(n: int) -> list[int]:
    """Checkpoint strides to try: sqrt(n) first (Chen et al.), then its neighbours."""
    if n == 0:
        return []
    s = max(1, round(math.sqrt(n)))
    return sorted({max(1, s // 2), s, min(n, 2 * s), max(1, s - 1), min(n, s + 1)}, key=lambda k: abs(k - s))
