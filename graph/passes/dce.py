"""Dead-code elimination."""

from __future__ import annotations

from ..ir import Graph
from .registry import PassResult, graph_pass


@graph_pass("dce")
def dce(graph: Graph) -> PassResult:
    """Remove every node none of whose outputs reaches a graph output, then unused params/buffers/consts.

    Preconditions: none. All primitives are pure (kernels write only ``out``), so any unused node can go.
    Runtime inputs (``kind="input"``) are kept even when unused: they are the call signature.
    """
    needed = {id(v) for v in graph.outputs}
    dead = set()
    for node in reversed(graph.nodes):
        if any(id(o) in needed for o in node.outputs):
            needed.update(id(v) for v in node.inputs)
        else:
            dead.add(node)
    if dead:
        graph.erase_nodes(dead)
    unused = graph.remove_unused_inputs()
    return PassResult(graph, bool(dead) or unused)
