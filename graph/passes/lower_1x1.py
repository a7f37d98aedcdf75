"""Lower 1x1 stride-1 convolutions to a plain matmul."""

from __future__ import annotations

from ..ir import Graph, Node
from .registry import PassResult, graph_pass


def _is_pointwise(node: Node) -> bool:
    if node.op.name != "conv2d":
        return False
    w = node.inputs[1]
    a = node.attrs
    return (w.shape[2:] == (1, 1) and tuple(a["stride"]) == (1, 1) and tuple(a["dilation"]) == (1, 1)
            and a["groups"] == 1 and all(p == 0 for pair in a["padding"] for p in pair)
            and w.is_frozen and w.data is not None and (len(node.inputs) == 2 or node.inputs[2].data is not None))


@graph_pass("lower_1x1", modes=("inference",), why="the reshaped weights become constants")
def lower_1x1(graph: Graph) -> PassResult:
    """Rewrite ``conv2d(x, w[, b])`` with a 1x1 kernel, stride 1, no padding/dilation, groups 1 as
    ``reshape(matmul(W, reshape(x, (N, C, H*W))) [+ b[:, None]], (N, O, H, W))`` with ``W = w.reshape(O, C)``:
    in NCHW a pointwise conv *is* a (batched) matrix product, with no im2col copy.

    Lowers only frozen weights (the reshaped weight/bias become consts) and only plain ``conv2d`` nodes, so it
    runs before fuse_epilogue (fuse_epilogue's registration says so).
    """
    changed = False
    for node in [n for n in graph.nodes if _is_pointwise(n)]:
        x, w = node.inputs[0], node.inputs[1]
        n, c, h, wd = x.shape
        o = w.shape[0]
        meta = dict(node.meta, lowered_from="conv2d 1x1")
        wm = graph.add_const(f"{w.name}.as_matrix", w.data.reshape(o, c))
        x3 = graph.create_node("reshape", [x], {"shape": (n, c, h * wd)}, meta=meta, before=node)
        y = graph.create_node("matmul", [wm, x3.out], meta=meta, before=node)
        if len(node.inputs) == 3:
            bv = graph.add_const(f"{node.inputs[2].name}.as_column", node.inputs[2].data.reshape(o, 1))
            y = graph.create_node("add", [y.out, bv], meta=meta, before=node)
        out = graph.create_node("reshape", [y.out], {"shape": (n, o, h, wd)}, meta=meta, before=node)
        graph.replace_all_uses(node.outputs[0], out.out)
        graph.erase_node(node)
        changed = True
    if changed:
        graph.remove_unused_inputs()
    return PassResult(graph, changed)
