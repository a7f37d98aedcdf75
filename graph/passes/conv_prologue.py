"""The conv_prologue pass: a blocked scale-and-shift (+ ReLU / clamp) read only by 1x1 convolutions becomes their
prologue (``blocked_prologue_conv2d``, engine/ops/blocked_prologue.py), so its output is never written."""

from __future__ import annotations

from engine.ops.blocked_prologue import POOL2_ATTRS, PROLOGUES, blocked_prologue_conv2d_p

from ..ir import Graph, Node, Value
from .registry import PassResult, graph_pass


def _pointwise_reader(node: Node, y: Value) -> bool:
    """``node`` is a 1x1, stride-1, unpadded, dense blocked convolution that reads ``y`` as its input only: the
    convolution reads its input in place, so the numba kernel transforms a tile of it in cache on the way."""
    if node.op.name != "blocked_conv2d" or node.inputs[0] is not y or any(v is y for v in node.inputs[1:]):
        return False
    a = node.attrs
    return node.inputs[1].shape[2:] == (1, 1) and a["groups"] == 1 and tuple(a["stride"]) == (1, 1) and \
        all(p == 0 for pair in a["padding"] for p in pair)


@graph_pass("conv_prologue", requires=("layout",), modes=("inference",),
            why="the blocked primitives have no vjp rule; training keeps NCHW")
def conv_prologue(graph: Graph) -> PassResult:
    """Fold each ``blocked_scale_shift`` (activation none, ReLU or clamp) whose every reader is a 1x1 stride-1
    unpadded dense ``blocked_conv2d`` (DenseNet: the BN + ReLU after each concat, read by the dense layer's or the
    transition's 1x1 convolution) into those readers as ``blocked_prologue_conv2d``, and drop it. A scale/shift
    that is a graph output or has any other reader stays as it is.

    A fused convolution without activation or residual whose output only a 2x2 stride-2 ``avg_pool2d`` reads
    (DenseNet's transitions) takes the pool too (``pool=2``): the 1x1 convolution then runs on the averaged
    prologue output, a quarter of the pixels.

    Preconditions: the layout pass ran (it makes the blocked scale/shift nodes). The fused node keeps the
    convolution's name and meta, its ``meta["fused"]`` listing the prologue's ops first.
    """
    changed = False
    for node in list(graph.nodes):
        if node.op.name != "blocked_scale_shift" or node.attrs["activation"] not in PROLOGUES:
            continue
        y = node.outputs[0]
        readers = list(y.users)
        if not readers or graph.is_output(y) or not all(_pointwise_reader(u, y) for u in readers):
            continue
        x, scale, shift = node.inputs
        head = list(node.meta.get("fused", ["batch_norm_infer"]))
        for conv in readers:
            meta = dict(conv.meta, fused=head + list(conv.meta.get("fused", ["conv2d"])), prologue=node.name)
            attrs = dict(conv.attrs, prologue=node.attrs["activation"], prologue_attrs=node.attrs["act_attrs"])
            fused = graph.create_node(blocked_prologue_conv2d_p, [x, scale, shift, *conv.inputs[1:]], attrs,
                                      name=conv.name, meta=meta, before=conv)
            graph.replace_all_uses(conv.outputs[0], fused.outputs[0])
            graph.erase_node(conv)
            graph.rename(fused, conv.name)
        graph.erase_node(node)
        changed = True
    for node in list(graph.nodes):
        pool = _sole_avg_pool2(graph, node)
        if pool is not None:
            meta = dict(node.meta, fused=list(node.meta["fused"]) + ["avg_pool2d"])
            fused = graph.create_node(blocked_prologue_conv2d_p, node.inputs, dict(node.attrs, pool=2),
                                      name=node.name, meta=meta, before=pool)
            graph.replace_all_uses(pool.outputs[0], fused.outputs[0])
            graph.erase_node(pool)
            graph.erase_node(node)
            graph.rename(fused, node.name)
            changed = True
    return PassResult(graph, changed)


def _sole_avg_pool2(graph: Graph, node: Node) -> Node | None:
    """The 2x2 stride-2 unpadded average pool that alone reads the output of ``node``, a prologue convolution
    without activation or residual (so pooling its input instead is the same linear map), if any."""
    y = node.outputs[0]
    if node.op is not blocked_prologue_conv2d_p or node.attrs.get("pool", 1) != 1 or len(y.users) != 1 or \
            graph.is_output(y) or node.attrs["activation"] != "none" or node.attrs["has_residual"]:
        return None
    user = next(iter(y.users))
    ok = user.op.name == "blocked_pool" and user.attrs["op"] == "avg_pool2d" and \
        tuple(sorted(user.attrs["op_attrs"])) == POOL2_ATTRS
    return user if ok else None
