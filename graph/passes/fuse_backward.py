"""Backward fusion on joint graphs: max-pool gradient x ReLU mask (x the conv's bias-gradient sum) -> one node."""

from __future__ import annotations

from engine.ops.fused_grad import BIAS_AXES, POOL_ATTRS, max_pool2d_relu_grad_p

from ..ir import Graph, Node, Value
from .fuse_epilogue import _sole_user
from .registry import PassResult, graph_pass


def _bias_sum(graph: Graph, gx: Value) -> Node | None:
    """A user of ``gx`` that is its per-channel sum over (N, H, W), the bias gradient of the conv before it."""
    for user in gx.users:
        if (user.op.name == "sum" and user.inputs == [gx] and gx.ndim == 4
                and tuple(user.attrs.get("axes", ())) == BIAS_AXES and not user.attrs.get("keepdims")):
            return user
    return None


def _fuse_pool_relu_grad(graph: Graph) -> PassResult:
    """Rewrite ``gx = relu_grad(max_pool2d_grad(gy, y), y)`` (both reading the same ``y``, the ReLU output that was
    pooled) and, when one of gx's users is ``sum(gx, axes=(0, 2, 3))``, that sum too, into one
    ``max_pool2d_relu_grad`` node with outputs (gx[, gb]).

    Legal when the pool gradient has no other reader and is not a graph output (checked); gx keeps its other
    readers (the conv's weight and input gradients). The fused node goes where the pool gradient was: its inputs
    are defined there, and every reader of gx or of the sum comes later. Runs on joint graphs only (the fused
    primitive has no vjp rule).
    """
    changed = False
    for pool in [n for n in graph.nodes if n.op.name == "max_pool2d_grad"]:
        gy, y = pool.inputs
        relu = _sole_user(graph, pool.outputs[0])
        if relu is None or relu.op.name != "relu_grad" or relu.inputs[0] is not pool.outputs[0] \
                or relu.inputs[1] is not y:
            continue
        gx = relu.outputs[0]
        bias = _bias_sum(graph, gx)
        attrs = {k: pool.attrs[k] for k in POOL_ATTRS}
        attrs["bias_grad"] = bias is not None
        chain = [pool, relu] + ([bias] if bias is not None else [])
        meta = dict(relu.meta, fused=[n.op.name for n in chain], fused_nodes=[n.name for n in chain])
        fused = graph.create_node(max_pool2d_relu_grad_p, [gy, y], attrs, name=f"fused_{pool.name}", meta=meta,
                                  before=pool)
        graph.replace_all_uses(gx, fused.outputs[0])
        if bias is not None:
            graph.replace_all_uses(bias.outputs[0], fused.outputs[1])
        graph.erase_nodes(set(chain))
        changed = True
    return PassResult(graph, changed)


fuse_pool_relu_grad = graph_pass("fuse_pool_relu_grad", modes=("joint",),
                                 why="only a joint graph holds the backward nodes it fuses")(_fuse_pool_relu_grad)
