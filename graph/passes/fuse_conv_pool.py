"""Forward + backward fusion of convolution -> ReLU -> 2x2 max pooling on joint graphs (LeNet's blocks): the
convolution's output is kept by nobody once the pool has its winners."""

from __future__ import annotations

from engine.backend import get_backend
from engine.ops.fused_pool import conv2d_relu_pool_p, max_pool2d_tap_relu_grad_p

from ..ir import Graph, Node
from .registry import PassResult, graph_pass

_POOL_2X2 = {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0), "dilation": (1, 1), "ceil_mode": False}
_KERNELS = (conv2d_relu_pool_p.name, max_pool2d_tap_relu_grad_p.name)


def _is_2x2(node: Node) -> bool:
    return all((tuple(node.attrs[k]) if isinstance(node.attrs.get(k), list | tuple) else node.attrs.get(k)) == v
               for k, v in _POOL_2X2.items())


def backend_has_kernels(graph: Graph) -> bool:
    """Whether the backend the graph was traced for (``graph.meta["backend"]``, a registered name) runs both fused
    primitives (they have no decomposition: no primitive computes a window's argmax)."""
    name = graph.meta.get("backend")
    try:
        backend = get_backend(name) if name is not None else None
    except ValueError:  # a backend object that is not registered by name: no fusion
        return False
    if backend is None:
        return False
    return all(backend.has_kernel(k) for k in _KERNELS)


def _fuse_conv_relu_pool(graph: Graph) -> PassResult:
    """Rewrite ``p = max_pool2d(y)`` with ``y = fused_conv2d(x, w[, b]; activation="relu")`` and its backward
    ``max_pool2d_relu_grad(gp, y)`` (what ``fuse_pool_relu_grad`` leaves) into ``p, tap = conv2d_relu_pool(x,
    w[, b])`` and ``max_pool2d_tap_relu_grad(gp, tap)``: y is then neither stored for the backward nor read
    by the pool from memory.

    Legal when y has exactly those two readers and is not a graph output, the pool is 2x2 / stride 2 without
    padding, dilation or ceil mode, and the conv has no residual; only for backends with kernels for both fused
    primitives (``graph.meta["backend"]``, set by compile_step and compile() before their passes). The forward
    node goes where the conv was, the backward node where the pool gradient was."""
    if not backend_has_kernels(graph):
        return PassResult(graph, False)
    changed = False
    for conv in [n for n in graph.nodes if n.op.name == "fused_conv2d"]:
        a = conv.attrs
        if a.get("activation") != "relu" or a.get("has_residual") or a.get("act_attrs"):
            continue
        y = conv.outputs[0]
        users = list(y.users)
        if graph.is_output(y) or len(users) != 2 or y.shape[2] < 2 or y.shape[3] < 2:
            continue
        pool = next((u for u in users if u.op.name == "max_pool2d"), None)
        grad = next((u for u in users if u.op.name == "max_pool2d_relu_grad"), None)
        if pool is None or grad is None or not (_is_2x2(pool) and _is_2x2(grad)) or grad.inputs[1] is not y \
                or grad.inputs[0] is y or pool.inputs[0] is not y:
            continue
        attrs = {k: a[k] for k in ("stride", "padding", "dilation", "groups", "has_bias")}
        chain = [conv, pool]
        fwd = graph.create_node(conv2d_relu_pool_p, list(conv.inputs), attrs, name=f"{conv.name}_pool",
                                meta=dict(conv.meta, fused=["fused_conv2d", "max_pool2d"],
                                          fused_nodes=[n.name for n in chain]), before=conv)
        graph.replace_all_uses(pool.outputs[0], fwd.outputs[0])
        bias_grad = bool(grad.attrs.get("bias_grad"))
        bwd = graph.create_node(max_pool2d_tap_relu_grad_p, [grad.inputs[0], fwd.outputs[1]],
                                {"y_shape": tuple(y.shape), "bias_grad": bias_grad}, name=f"{grad.name}_taps",
                                meta=dict(grad.meta), before=grad)
        for old, new in zip(grad.outputs, bwd.outputs):
            graph.replace_all_uses(old, new)
        graph.erase_nodes({conv, pool, grad})
        changed = True
    return PassResult(graph, changed)


fuse_conv_relu_pool = graph_pass("fuse_conv_relu_pool", after=("fuse_epilogue_joint", "fuse_pool_relu_grad"),
                                 modes=("joint",),
                                 why="only a joint graph holds the pool's backward")(_fuse_conv_relu_pool)
