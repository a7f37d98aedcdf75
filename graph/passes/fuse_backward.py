"""Backward fusion on joint graphs: max-pool gradient x ReLU mask (x the conv's bias-gradient sum) -> one node;
mean cross-entropy forward + backward -> one node; a matmul of a transposed matrix -> one node reading it in place."""

from __future__ import annotations

from engine.ops.fused_grad import BIAS_AXES, POOL_ATTRS, log_softmax_nll_p, matmul_tn_p, max_pool2d_relu_grad_p

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


def _only(graph: Graph, v: Value, op: str, **attrs: object) -> Node | None:
    """The sole user of ``v`` if it is ``op`` with these attrs (tuples compared as tuples)."""
    user = _sole_user(graph, v)
    if user is None or user.op.name != op:
        return None
    return user if all(_attr(user, k) == a for k, a in attrs.items()) else None


def _attr(node: Node, key: str) -> object:
    a = node.attrs.get(key)
    return tuple(a) if isinstance(a, list) else a


def _negated_scalar(v: Value) -> Value | None:
    """The 0-d value ``s`` when ``v`` is ``-s`` reshaped / broadcast (one neg among reshape and broadcast_to)."""
    negs = 0
    while v.ndim and v.producer is not None and v.producer.op.name in ("reshape", "broadcast_to", "neg"):
        negs += v.producer.op.name == "neg"
        v = v.producer.inputs[0]
    if v.ndim == 0 and v.producer is not None and v.producer.op.name == "neg":
        negs, v = negs + 1, v.producer.inputs[0]
    return v if v.ndim == 0 and negs == 1 else None


def _cross_entropy_chain(graph: Graph, ls: Node) -> tuple[list[Node], list[Value], Value, Value, Node] | None:
    """The nodes of mean cross-entropy's forward and backward around ``log_softmax`` node ``ls``, the fused
    node's inputs (logits, targets, the loss's gradient), the loss and logits-gradient values they define and the
    class_coef node; None where the graph differs."""
    logp = ls.outputs[0]
    if ls.inputs[0].ndim != 2 or ls.attrs.get("axis") not in (1, -1) or graph.is_output(logp):
        return None
    users = list(logp.users)
    mul = next((u for u in users if u.op.name == "mul" and u.inputs[0] is logp), None)
    exp = next((u for u in users if u.op.name == "exp"), None)
    if mul is None or exp is None or len(users) != 2:
        return None
    coef = mul.inputs[1]
    cc = coef.producer
    if cc is None or cc.op.name != "class_coef" or coef.index != 0 or cc.attrs.get("op") != "cross_entropy":
        return None
    s1 = _only(graph, mul.outputs[0], "sum", axes=(1,), keepdims=False)
    neg = s1 and _only(graph, s1.outputs[0], "neg")
    s0 = neg and _only(graph, neg.outputs[0], "sum", axes=(0,), keepdims=False)
    div = s0 and _only(graph, s0.outputs[0], "div")
    q = _only(graph, exp.outputs[0], "mul")
    sub = q and _only(graph, q.outputs[0], "sub")
    if not (div and sub) or div.inputs != [s0.outputs[0], cc.outputs[1]] or q.inputs[0] is not exp.outputs[0]:
        return None
    m, r = sub.inputs[0], q.inputs[1]
    if sub.inputs[1] is not q.outputs[0] or r.producer is None or r.producer.op.name != "sum" \
            or r.producer.inputs != [m] or _attr(r.producer, "axes") != (1,) or not r.producer.attrs.get("keepdims") \
            or m.producer is None or m.producer.op.name != "mul" or m.producer.inputs[1] is not coef:
        return None
    scale = _negated_scalar(m.producer.inputs[0])  # g / denom: the loss's gradient over the mean's divisor
    if scale is None or scale.producer is None or scale.producer.op.name != "div" \
            or scale.producer.inputs[1] is not cc.outputs[1] or scale.producer.inputs[0].ndim:
        return None
    return [ls, mul, s1, neg, s0, div, exp, q, sub], [ls.inputs[0], cc.inputs[0], scale.producer.inputs[0]], \
        div.outputs[0], sub.outputs[0], cc


def _fuse_cross_entropy(graph: Graph) -> PassResult:
    """Rewrite mean cross-entropy over 2-D logits ``x`` and targets ``t``, forward
    (``-sum(log_softmax(x) * coef) / denom`` with ``coef, denom = class_coef(t)``) and backward
    (``m - exp(log_softmax(x)) * sum(m, 1)``, ``m = -(g / denom) * coef``) into one ``log_softmax_nll(x, t, g)``
    node with outputs (loss, gx), where the log-probabilities and every intermediate have no other reader.

    The fused node goes where the gradient was, when every input is defined by then and nothing reads the loss
    earlier; class_coef and what computed ``m`` are left to DCE (they may have other readers). Joint graphs only.
    """
    changed = False
    for ls in [n for n in graph.nodes if n.op.name == "log_softmax"]:
        found = _cross_entropy_chain(graph, ls)
        if found is None:
            continue
        chain, ins, loss, gx, cc = found
        pos = {n: i for i, n in enumerate(graph.nodes)}
        at = gx.producer  # the loss's seed (``scale``) is made after the loss: the fused node goes at gx
        if any(v.producer is not None and pos[v.producer] >= pos[at] for v in ins) \
                or any(pos[u] < pos[at] for u in loss.users):
            continue
        meta = dict(ls.meta, fused=[n.op.name for n in chain], fused_nodes=[n.name for n in chain])
        fused = graph.create_node(log_softmax_nll_p, ins, dict(cc.attrs), name=f"fused_{ls.name}", meta=meta, before=at)
        graph.replace_all_uses(loss, fused.outputs[0])
        graph.replace_all_uses(gx, fused.outputs[1])
        graph.erase_nodes(set(chain))
        changed = True
    return PassResult(graph, changed)


fuse_cross_entropy = graph_pass("fuse_cross_entropy", modes=("joint",),
                                why="only a joint graph holds the loss and its gradient")(_fuse_cross_entropy)


def _fold_transpose_matmul(graph: Graph) -> PassResult:
    """Rewrite ``matmul(transpose(a, perm=(1, 0)), b)`` into ``matmul_tn(a, b)``: the kernel reads ``a`` through a
    transposed view instead of a transposed copy (a linear layer's weight gradient ``g^T @ x``). The transpose is
    left to DCE (it may have other readers). Joint graphs only (their backward makes these transposes)."""
    changed = False
    for mm in [n for n in graph.nodes if n.op.name == "matmul"]:
        t = mm.inputs[0].producer
        if t is None or t.op.name != "transpose" or _attr(t, "perm") != (1, 0) or mm.inputs[1].ndim != 2:
            continue
        fused = graph.create_node(matmul_tn_p, [t.inputs[0], mm.inputs[1]], {}, name=f"fused_{mm.name}",
                                  meta=dict(mm.meta, fused=["transpose", "matmul"], fused_nodes=[t.name, mm.name]),
                                  before=mm)
        graph.replace_all_uses(mm.outputs[0], fused.outputs[0])
        graph.erase_nodes({mm})
        changed = True
    return PassResult(graph, changed)


fold_transpose_matmul = graph_pass("fold_transpose_matmul", modes=("joint",),
                                   why="only a joint graph holds the backward's transposed matmuls")(
    _fold_transpose_matmul)
