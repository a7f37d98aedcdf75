"""Constant folding: evaluate subgraphs that depend only on frozen values at compile time."""

from __future__ import annotations

from ..executor import evaluate_nodes
from ..ir import Graph
from .registry import PassResult, graph_pass

# Folding must not blow up the weights: a node whose output is bigger than its inputs together (a broadcast of a
# bias to the activation shape, say) is folded only when the result stays below this size.
_MAX_GROWTH_BYTES = 1 << 16


def _foldable_kinds(graph: Graph) -> tuple[str, ...]:
    return ("param", "buffer", "const") if graph.meta.get("frozen", not graph.meta.get("training")) else ("const",)


@graph_pass("constant_fold")
def constant_fold(graph: Graph) -> PassResult:
    """Replace every node whose inputs are all frozen by a ``const`` input holding its value (computed with the
    numpy reference kernels), so the work is done once at compile time instead of on every call.

    Preconditions: parameters and buffers are frozen, i.e. ``graph.meta["frozen"]`` is true (the default for
    graphs traced in eval mode); otherwise only ``const`` inputs count as constant. Frozen inputs must hold
    data (they do, also in abstract traces, unless the model created a tensor from an abstract one).
    """
    kinds = _foldable_kinds(graph)
    known = {id(v) for v in graph.inputs if v.kind in kinds and v.data is not None}
    env = {id(v): v.data for v in graph.inputs if id(v) in known}
    folded = []
    for node in graph.nodes:
        if not node.inputs or not all(id(v) in known for v in node.inputs):
            continue
        grow = sum(o.nbytes for o in node.outputs) - sum(v.nbytes for v in node.inputs)
        if grow > 0 and sum(o.nbytes for o in node.outputs) > _MAX_GROWTH_BYTES:
            continue
        evaluate_nodes([node], env)
        folded.append(node)
        known.update(id(o) for o in node.outputs)
    if not folded:
        return PassResult(graph, False)
    dead = set()
    for node in folded:
        for o in node.outputs:
            if o.users or graph.is_output(o):
                c = graph.add_const(f"{o.name}.folded", env[id(o)])
                c.meta["folded_from"] = node.op.name
                graph.replace_all_uses(o, c)
        dead.add(node)
    graph.erase_nodes(dead)
    graph.remove_unused_inputs()
    return PassResult(graph, True)
