"""Diagrams of graphs and memory plans, through the ``graphviz`` package and the system ``dot`` binary.

- :func:`render` draws one graph: an op node per primitive call (op, module, output shape, params, MACs), the
  runtime inputs and outputs as ellipses, edges labelled with the tensor's shape and size, and fused groups as
  clusters (a node whose ``meta["fused"]`` lists the ops folded into it, nodes sharing ``meta["fusion_group"]``,
  or a fused primitive).
- :func:`render_before_after` draws two graphs side by side (e.g. before and after a pass), one cluster each.
- :func:`render_memory_plan` draws a memory plan with matplotlib: arena offset against schedule step, one box per
  buffer spanning its live range.

Parameters, buffers and constants are not drawn as nodes; their sizes are added to their consumer's "params".
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from engine.primitive import FUSED

from .ir import Graph, Node, Value
from .memory import MemoryPlan
from .summary import fmt_bytes, fmt_count, module_groups

__all__ = ["to_dot", "render", "render_before_after", "render_memory_plan", "FORMATS"]

FORMATS = ("svg", "png", "dot", "pdf")
_BIG = 300  # edges above which dot gets cheaper layout settings
_PARAM_KINDS = ("param", "const")
_COLORS = {"conv": "#cfe2f3", "matmul": "#cfe2f3", "pool": "#d9ead3", "norm": "#fff2cc", "elementwise": "#f4f4f4",
           "shape": "#eeeeee", "fused": "#f4cccc", "reduce": "#ead1dc"}


def _id(prefix: str, name: str) -> str:
    return f"{prefix}{name}".replace(":", "_").replace('"', "_")


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape) or "scalar"


def _node_params(node: Node) -> int:
    return sum(v.spec.size for v in node.inputs if v.kind in _PARAM_KINDS)


def _node_label(node: Node) -> str:
    prim = node.op
    fused = node.meta.get("fused")
    title = f"{prim.name}" + (f" [{'+'.join(map(str, fused))}]" if fused and not isinstance(fused, bool) else "")
    lines = [f"<B>{html.escape(title)}</B>"]
    if node.module:
        lines.append(f'<FONT POINT-SIZE="9">{html.escape(node.module)}</FONT>')
    lines.append(html.escape(" · ".join(_shape(o.shape) for o in node.outputs)))
    layout = _layout(node.outputs[0]) if node.outputs else None
    if layout is not None:  # the layout pass's work: blocked values and the reorders that remain
        what = f"reorder → {layout}" if prim.name in ("to_blocked", "from_blocked") else f"layout {layout}"
        lines.append(f'<FONT POINT-SIZE="9" COLOR="#1f5fbf">{html.escape(what)}</FONT>')
    cost = node.cost()
    params = _node_params(node)
    facts = []
    if params:
        facts.append(f"params {fmt_count(params)}")
    if cost.macs:
        facts.append(f"MACs {fmt_count(cost.macs)}")
    if facts:
        lines.append(html.escape(" · ".join(facts)))
    return "<" + "<BR/>".join(lines) + ">"


def _fusion_key(node: Node) -> str | None:
    group = node.meta.get("fusion_group")
    if group is not None:
        return str(group)
    if node.meta.get("fused") or node.op.kind == FUSED:
        return node.name
    return None


def _fusion_label(nodes: list[Node]) -> str:
    ops: list[str] = []
    for n in nodes:
        fused = n.meta.get("fused")
        ops.extend(map(str, fused) if fused and not isinstance(fused, bool) else [n.op.name])
    return "fused: " + " + ".join(ops)


def _add_graph(dot: Any, graph: Graph, prefix: str = "", depth: int | None = None) -> None:
    """Add ``graph``'s nodes and edges to the graphviz (sub)graph ``dot``; ids are prefixed with ``prefix``.
    ``depth``: draw one box per module call at that module depth instead of one per primitive."""
    producer_id: dict[int, str] = {}
    for v in graph.user_inputs:
        vid = _id(prefix, "in_" + v.name)
        dot.node(vid, f"{v.name}\n{_shape(v.shape)}", shape="ellipse", style="filled", fillcolor="#ffffff")
        producer_id[id(v)] = vid
    if depth is not None:
        units = _module_units(dot, graph, prefix, depth)
    else:
        units = _op_units(dot, graph, prefix)
    for unit_id, nodes in units:
        for n in nodes:
            for o in n.outputs:
                producer_id[id(o)] = unit_id
    seen: set[tuple[str, str, int]] = set()
    for unit_id, nodes in units:
        for n in nodes:
            for v in n.inputs:
                src = producer_id.get(id(v))
                if src is not None and src != unit_id and (src, unit_id, id(v)) not in seen:
                    seen.add((src, unit_id, id(v)))
                    dot.edge(src, unit_id, label=_edge_label(v))
    for i, v in enumerate(graph.outputs):
        out_id = _id(prefix, f"out_{i}")
        dot.node(out_id, f"output {i}\n{_shape(v.shape)}", shape="ellipse")
        src = producer_id.get(id(v))
        if src is not None:
            dot.edge(src, out_id, label=_edge_label(v))


def _op_units(dot: Any, graph: Graph, prefix: str) -> list[tuple[str, list[Node]]]:
    """One box per node; fused groups drawn as clusters around their nodes."""
    clusters: dict[str, list[Node]] = {}
    for n in graph.nodes:
        key = _fusion_key(n)
        if key is not None:
            clusters.setdefault(key, []).append(n)
    in_cluster = {id(n) for ns in clusters.values() for n in ns}
    for key, ns in clusters.items():
        with dot.subgraph(name=_id("cluster_" + prefix, "fused_" + key)) as sub:
            sub.attr(label=_fusion_label(ns), style="rounded,filled", fillcolor="#fdf0f0", color="#cc0000",
                     fontsize="10")
            for n in ns:
                _add_op(sub, n, prefix)
    for n in graph.nodes:
        if id(n) not in in_cluster:
            _add_op(dot, n, prefix)
    return [(_id(prefix, n.name), [n]) for n in graph.nodes]


def _module_units(dot: Any, graph: Graph, prefix: str, depth: int) -> list[tuple[str, list[Node]]]:
    """One box per call of a module at ``depth`` (consecutive nodes sharing the cut module path)."""
    units = []
    for i, (key, nodes) in enumerate(module_groups(graph.nodes, depth)):
        unit_id = _id(prefix, f"m{i}_{key or 'root'}")
        ops = list(dict.fromkeys(n.op.name for n in nodes))
        macs = sum(n.cost().macs for n in nodes)
        params = sum(_node_params(n) for n in nodes)
        types = {n.meta.get("module_type") for n in nodes if n.module == key}
        title = key or "(root)"
        if len(types) == 1 and None not in types:
            title += f" ({types.pop()})"
        lines = [f"<B>{html.escape(title)}</B>",
                 f'<FONT POINT-SIZE="9">{html.escape(", ".join(ops[:4]) + (", ..." if len(ops) > 4 else ""))}</FONT>',
                 html.escape(_shape(nodes[-1].outputs[0].shape))]
        facts = ([f"params {fmt_count(params)}"] if params else []) + ([f"MACs {fmt_count(macs)}"] if macs else [])
        if facts:
            lines.append(html.escape(" · ".join(facts)))
        kind = next((n.op.kind for n in nodes if n.op.kind in ("fused", "conv", "matmul")), "shape")
        dot.node(unit_id, "<" + "<BR/>".join(lines) + ">", shape="box", style="rounded,filled",
                 fillcolor=_COLORS.get(kind, "#ffffff"))
        units.append((unit_id, nodes))
    return units


# Training graphs: the border says which pass a node belongs to (forward: thin black; backward: blue; optimizer
# update: green), and a node recomputed in the backward under a memory budget is dashed red.
_PHASE_BORDER = {"backward": ("#1f5fbf", "2"), "update": ("#2e7d32", "2")}


def _add_op(dot: Any, node: Node, prefix: str) -> None:
    kind = node.op.kind
    color, width = _PHASE_BORDER.get(node.meta.get("phase", "forward"), ("#000000", "1"))
    style = "rounded,filled"
    label = _node_label(node)
    if node.meta.get("recomputed"):
        color, style = "#cc0000", "rounded,filled,dashed"
        label = label[:-1] + '<BR/><FONT POINT-SIZE="9" COLOR="#cc0000">recomputed</FONT>>'
    dot.node(_id(prefix, node.name), label, shape="box", style=style, fillcolor=_COLORS.get(kind, "#ffffff"),
             color=color, penwidth=width)


def _layout(v: Value) -> str | None:
    """A value's layout where the layout pass chose one (``NCHW16c`` for blocked values, ``NCHW`` after a
    reorder back), else None."""
    p = v.producer
    if p is None or "layout" not in p.meta:
        return None
    return "NCHW" if p.op.name == "from_blocked" else f"NCHW{v.shape[-1]}c"


def _edge_label(v: Value) -> str:
    layout = _layout(v)
    return f"{_shape(v.shape)}\n{fmt_bytes(v.nbytes)}" + (f"\n{layout}" if layout else "")


def _digraph(name: str):
    import graphviz

    return graphviz.Digraph(name=name, graph_attr={"rankdir": "TB", "fontname": "Helvetica"},
                            node_attr={"fontname": "Helvetica", "fontsize": "10"},
                            edge_attr={"fontname": "Helvetica", "fontsize": "8"})


def _limit_layout(dot: Any) -> None:
    """dot's crossing minimization and x-positioning grow fast with long edges (DenseNet's concats read every
    earlier layer): on big graphs cap their iterations and draw straight edges (seconds instead of minutes)."""
    if sum(" -> " in line for line in dot.body) > _BIG:
        dot.graph_attr.update(mclimit="0.2", nslimit="2", nslimit1="2", splines="line")


def to_dot(graph: Graph, title: str | None = None, depth: int | None = None):
    """The graph as a ``graphviz.Digraph`` (not rendered); ``depth`` collapses it to module calls at that depth."""
    dot = _digraph("convgraph")
    if title:
        dot.attr(label=title, labelloc="t")
    _add_graph(dot, graph, depth=depth)
    _limit_layout(dot)
    return dot


def _write(dot: Any, path: str | Path, format: str | None) -> Path:
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "svg").lower()
    if fmt not in FORMATS:
        raise ValueError(f"render: format must be one of {FORMATS} (got {fmt!r})")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        path.write_text(dot.source)
    else:
        path.write_bytes(dot.pipe(format=fmt))
    return path


def render(graph: Graph, path: str | Path, format: str | None = None, title: str | None = None,
           depth: int | None = None) -> Path:
    """Draw ``graph`` to ``path`` as ``format`` ("svg" | "png" | "dot" | "pdf"; default: from the suffix, else
    svg). ``depth=k`` draws one box per module call at module depth k (a readable view of big models; the op-level
    view of DenseNet-121 takes dot tens of seconds). Returns the path written."""
    return _write(to_dot(graph, title, depth), path, format)


def render_before_after(before: Graph, after: Graph, path: str | Path, format: str | None = None,
                        labels: tuple[str, str] = ("before", "after"), depth: int | None = None) -> Path:
    """Two graphs side by side in one diagram, each in its own cluster (e.g. before and after a pass)."""
    dot = _digraph("before_after")
    for label, g, prefix in ((labels[0], before, "b_"), (labels[1], after, "a_")):
        stats = f"{len(g.nodes)} nodes · MACs {fmt_count(sum(n.cost().macs for n in g.nodes))}"
        with dot.subgraph(name=f"cluster_{prefix}view") as sub:
            sub.attr(label=f"{label} ({stats})", style="dashed", fontsize="14")
            _add_graph(sub, g, prefix, depth)
    _limit_layout(dot)
    return _write(dot, path, format)


# --- memory plans -----------------------------------------------------------------------------------------------
def _plan_boxes(plan: MemoryPlan) -> list[tuple[str, int, int, int, int]]:
    """(name of its first value, first step, last step, offset, size) per buffer of a memory plan."""
    return [(b.values[0].name, b.start, b.end, b.offset, b.size) for b in plan.buffers]


def render_memory_plan(plan: MemoryPlan, path: str | Path, title: str | None = None,
                       label_min_fraction: float = 0.02) -> Path:
    """Arena offset (y, MiB) against schedule step (x): one box per buffer over its live range [first, last].
    Buffers taller than ``label_min_fraction`` of the arena are labelled with their name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    boxes = _plan_boxes(plan)
    arena = max((off + size for _, _, _, off, size in boxes), default=0)
    arena = max(arena, plan.arena_bytes)
    lower = plan.lower_bound_bytes
    steps = max((end for _, _, end, _, _ in boxes), default=0) + 1
    fig, ax = plt.subplots(figsize=(12, 6))
    cmap = plt.get_cmap("tab20")
    mib = 2**20
    for i, (name, start, end, off, size) in enumerate(boxes):
        ax.add_patch(Rectangle((start, off / mib), end - start + 1, size / mib, facecolor=cmap(i % 20),
                               edgecolor="black", linewidth=0.3, alpha=0.85))
        if arena and size / arena >= label_min_fraction:
            ax.text(start + (end - start + 1) / 2, (off + size / 2) / mib, name, ha="center", va="center", fontsize=6)
    ax.set_xlim(0, max(steps, 1))
    ax.set_ylim(0, max(arena / mib, 1e-6))
    ax.set_xlabel("schedule step (node index)")
    ax.set_ylabel("arena offset (MiB, 2^20 bytes)")
    if lower:
        ax.axhline(lower / mib, color="red", linestyle="--", linewidth=0.8, label=f"lower bound {fmt_bytes(lower)}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or f"memory plan: {len(boxes)} buffers in a {fmt_bytes(arena)} arena")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=path.suffix.lstrip(".") or "svg", bbox_inches="tight")
    plt.close(fig)
    return path
