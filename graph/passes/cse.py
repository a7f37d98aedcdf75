"""Common-subexpression elimination."""

from __future__ import annotations

from typing import Any

from ..ir import Graph, Value
from .registry import PassResult, graph_pass

_MAX_CONST_BYTES = 1 << 16  # consts up to 64 KiB are compared by content (lifted scalars, masks, small tables)


def _key(attrs: dict[str, Any]) -> str:
    return repr(sorted(attrs.items()))


@graph_pass("cse")
def cse(graph: Graph) -> PassResult:
    """Merge duplicate consts (same dtype, shape and bytes) and duplicate nodes (same primitive, same input
    Values, same attrs); later duplicates are replaced by the first occurrence.

    Preconditions: none. Primitives are pure and deterministic; randomness (dropout masks) enters as distinct
    const inputs, so two dropouts never merge.
    """
    changed = False
    seen_consts: dict[tuple, Value] = {}
    for v in list(graph.inputs):
        if v.kind != "const" or v.data is None or v.nbytes > _MAX_CONST_BYTES:
            continue
        k = (v.dtype.str, v.shape, v.data.tobytes())
        first = seen_consts.setdefault(k, v)
        if first is not v and not graph.is_output(v):
            graph.replace_all_uses(v, first)
            graph.remove_input(v)
            changed = True
    seen: dict[tuple, Any] = {}
    dup = set()
    for node in graph.nodes:
        k = (node.op.name, tuple(id(v) for v in node.inputs), _key(node.attrs))
        first = seen.setdefault(k, node)
        if first is node:
            continue
        for old, new in zip(node.outputs, first.outputs):
            graph.replace_all_uses(old, new)
        dup.add(node)
    if dup:
        graph.erase_nodes(dup)
    return PassResult(graph, changed or bool(dup))
