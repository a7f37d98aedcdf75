"""Dropout and identity removal: remove_identities for any graph, remove_dropout for inference graphs."""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from .registry import PassResult, graph_pass


def _identity_source(node: Node) -> Value | None:
    """The input ``node`` passes through unchanged, or None."""
    op, ins, out = node.op.name, node.inputs, node.outputs[0] if node.outputs else None
    if out is None or len(node.outputs) != 1:
        return None
    x = ins[0] if ins else None
    if x is None or x.spec != out.spec:
        if op in ("add", "mul") and len(ins) == 2:  # x + 0 / x * 1 with the const on either side
            for a, c in ((ins[0], ins[1]), (ins[1], ins[0])):
                if a.spec == out.spec and c.kind == "const" and c.data is not None \
                        and np.all(c.data == (0 if op == "add" else 1)):
                    return a
        return None
    if op in ("reshape", "broadcast_to", "astype", "transpose", "pad", "slice") and len(ins) == 1:
        if op == "transpose" and tuple(node.attrs["perm"]) != tuple(range(len(x.shape))):
            return None
        if op == "pad" and any(any(p) for p in node.attrs["pads"]):
            return None
        if op == "slice" and any(k != 1 for k in node.attrs["steps"]):
            return None
        return x
    if op == "concat" and len(ins) == 1:
        return x
    if op in ("add", "mul") and len(ins) == 2:
        c = ins[1]
        if c.kind == "const" and c.data is not None and np.all(c.data == (0 if op == "add" else 1)):
            return x
    return None


def _remove(graph: Graph, dropout: bool) -> PassResult:
    dead = set()
    for node in graph.nodes:
        src = node.inputs[0] if dropout and node.op.name == "dropout" else _identity_source(node)
        if src is None:
            continue
        graph.replace_all_uses(node.outputs[0], src)
        dead.add(node)
    # the masks of removed dropouts (and then their keys) are dead too
    dead |= {n for n in graph.nodes if n.op.name == "bernoulli_mask" and all(u in dead for u in n.outputs[0].users)
             and not graph.is_output(n.outputs[0])}
    if dead:
        graph.erase_nodes(dead)
        graph.remove_unused_inputs()
    return PassResult(graph, bool(dead))


@graph_pass("remove_identities")
def remove_identities(graph: Graph) -> PassResult:
    """Remove identities (reshape/transpose/broadcast/astype/pad/slice that keep the value, single-input concat,
    ``x + 0``, ``x * 1``), pointing their users at the unchanged input. A removed node whose output is a graph
    output is replaced in ``graph.outputs`` as well. Any graph: dropout nodes stay.
    """
    return _remove(graph, dropout=False)


@graph_pass("remove_dropout", modes=("inference",), why="dropout draws a mask in training")
def remove_dropout(graph: Graph) -> PassResult:
    """Remove ``dropout`` nodes (the identity in eval mode) and the identities :func:`remove_identities` removes."""
    return _remove(graph, dropout=True)
