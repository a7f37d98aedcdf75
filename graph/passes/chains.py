"""Which blocked convolutions a backend may run as one call (graph/executor.py's ``specialize_chain``: the numba
backend's expand 1x1 -> depthwise -> project 1x1 block, blocked/inverted.py, and its depthwise -> 1x1 pair,
blocked/chain.py) and what that asks of the memory plan.

Such a call reads the first layer's input while it writes the later layers' outputs, row band after row band, so
that input must not share a buffer with them: :func:`mark_chains` sets ``node.meta["inputs_live_for"] = k`` on the
first layer, and graph/memory.py keeps its inputs live through the k nodes after it. Marking costs no more than
those inputs' bytes for k more steps of the plan; whether the backend runs the layers as one call is its own
choice when the executor offers them.
"""

from __future__ import annotations

from ..ir import Graph, Node

LIVE_FOR = "inputs_live_for"


def _conv(n: Node) -> bool:
    return n.op.name == "blocked_conv2d" and len(n.inputs) >= 2 and n.inputs[1].ndim == 4


def _pointwise(n: Node) -> bool:
    return _conv(n) and n.attrs["groups"] == 1 and tuple(n.inputs[1].shape[2:]) == (1, 1) and \
        tuple(n.attrs["stride"]) == (1, 1) and not any(p for side in n.attrs["padding"] for p in side)


def _reads(n: Node, m: Node) -> bool:
    """Whether ``m`` reads ``n``'s output as its first input and nothing else does."""
    v = n.outputs[0]
    return m.inputs[0] is v and len(v.users) == 1


def mark_chains(graph: Graph) -> int:
    """Mark every expand 1x1 -> depthwise -> 1x1 run of consecutive blocked convolutions, each reading the one
    before as its only reader (``inputs_live_for`` = 2 on the expand), and every depthwise -> 1x1 pair, the 1x1
    reading the depthwise output (``inputs_live_for`` = 1 on the depthwise: blocked/chain.py's pair, run where the
    three are not); returns how many runs of three."""
    nodes, count = graph.nodes, 0
    for i in range(len(nodes) - 1):
        d, p = nodes[i:i + 2]
        if _conv(d) and d.attrs["groups"] > 1 and _pointwise(p) and p.inputs[0] is d.outputs[0]:
            d.meta[LIVE_FOR] = 1
    for i in range(len(nodes) - 2):
        e, d, p = nodes[i:i + 3]
        if _pointwise(e) and not e.attrs["has_residual"] and _conv(d) and d.attrs["groups"] > 1 and \
                _pointwise(p) and _reads(e, d) and p.inputs[0] is d.outputs[0]:
            e.meta[LIVE_FOR] = 2
            count += 1
    return count
