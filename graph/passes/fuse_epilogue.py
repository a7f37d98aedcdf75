"""Epilogue fusion: conv2d/linear + bias + residual add + ReLU-family activation -> one fused primitive."""

from __future__ import annotations

from engine.ops.fused import ACTIVATIONS

from ..ir import Graph, Node, Value
from .registry import PassResult, graph_pass

_BASES = {"conv2d": "fused_conv2d", "linear": "fused_linear"}
_CONV_ATTRS = ("stride", "padding", "dilation", "groups")


def _sole_user(graph: Graph, v: Value) -> Node | None:
    """The only node reading ``v``, if ``v`` may be fused away (one user, not a graph output)."""
    if len(v.users) != 1 or graph.is_output(v):
        return None
    user = next(iter(v.users))
    return user if sum(x is v for x in user.inputs) == 1 else None


def _bias_const(node: Node, y: Value, base: Node) -> Value | None:
    """For ``y + c`` with a frozen per-output-channel ``c`` (shape (O,), (O,1,1) or (1,O,1,1)), return ``c``."""
    if node.op.name != "add" or base.op.name != "conv2d" or len(base.inputs) != 2:
        return None
    c = node.inputs[1] if node.inputs[0] is y else node.inputs[0]
    o = y.shape[1]
    if c.is_frozen and c.data is not None and c.shape in ((o, 1, 1), (1, o, 1, 1)) and c.dtype == y.dtype:
        return c
    return None


def _residual(graph: Graph, node: Node, y: Value, order: dict[Node, int]) -> Value | None:
    """For ``y + r`` with ``r`` of y's spec, return ``r``, unless ``r`` is itself a fusable conv/linear output
    scheduled later: that one takes the add, so the residual is the value computed earlier."""
    if node.op.name != "add" or node.inputs[0] is node.inputs[1]:
        return None
    r = node.inputs[1] if node.inputs[0] is y else node.inputs[0]
    if r.spec != y.spec or node.outputs[0].spec != y.spec:
        return None
    p = r.producer
    if p is not None and p.op.name in _BASES and _sole_user(graph, r) is node and order[p] > order[y.producer]:
        return None
    return r


def _fuse_epilogue(graph: Graph) -> PassResult:
    """Rewrite ``act(base(x, w[, b]) [+ c] [+ residual])`` into ``fused_conv2d`` / ``fused_linear`` where ``base`` is
    conv2d or linear, ``c`` a frozen per-channel bias (absorbed into the bias when the conv has none), ``residual``
    any value of the output's shape and ``act`` one of relu, leaky_relu, elu, sigmoid, tanh, silu.

    Legal only when no fused-away value is needed elsewhere: each intermediate of the chain must have exactly one
    user and must not be a graph output (checked per value). The fused node is placed where the last node of the
    chain was, so every input it reads is already defined. Chains with nothing to fuse are left alone.

    Registered to need fold_bn earlier in the pipeline (so BatchNorm has become the conv's bias and "(folded) BN"
    is part of the fused op), lower_1x1 (if used) earlier too, and an inference graph.
    """
    order = {n: i for i, n in enumerate(graph.nodes)}
    changed = False
    for base in list(graph.nodes):
        if base.op.name not in _BASES or base not in order:
            continue
        chain, y = [base], base.outputs[0]
        ins, names = list(base.inputs), [base.op.name]
        has_bias, residual, act, act_attrs = len(base.inputs) == 3, None, "none", ()
        user = _sole_user(graph, y)
        if user is not None and not has_bias and (c := _bias_const(user, y, base)) is not None:
            bias = graph.add_const(f"{c.name}.as_bias", c.data.reshape(-1))
            ins.append(bias)
            has_bias, chain, y, names = True, chain + [user], user.outputs[0], names + ["add(bias)"]
            user = _sole_user(graph, y)
        if user is not None and (r := _residual(graph, user, y, order)) is not None:
            residual, chain, y, names = r, chain + [user], user.outputs[0], names + ["add(residual)"]
            user = _sole_user(graph, y)
        if user is not None and user.op.name in ACTIVATIONS and len(user.inputs) == 1:
            act, act_attrs = user.op.name, tuple(sorted(user.attrs.items()))
            chain, y, names = chain + [user], user.outputs[0], names + [user.op.name]
        if len(chain) == 1:
            continue
        attrs = {k: base.attrs[k] for k in _CONV_ATTRS if k in base.attrs}
        attrs.update(has_bias=has_bias, has_residual=residual is not None, activation=act, act_attrs=act_attrs)
        # a conv that fold_bn produced already lists ["conv2d", "batch_norm_infer"]
        meta = dict(base.meta, fused=base.meta.get("fused", names[:1]) + names[1:],
                    fused_nodes=[n.name for n in chain])
        fused = graph.create_node(_BASES[base.op.name], ins + ([residual] if residual is not None else []), attrs,
                                  name=f"fused_{base.name}", meta=meta, before=chain[-1])
        order[fused] = order[chain[-1]]
        graph.replace_all_uses(y, fused.outputs[0])
        graph.erase_nodes(set(chain))
        graph.rename(fused, f"fused_{base.name}")
        for n in chain:
            order.pop(n, None)
        changed = True
    if changed:
        graph.remove_unused_inputs()
    return PassResult(graph, changed)


fuse_epilogue = graph_pass("fuse_epilogue", requires=("fold_bn",), after=("lower_1x1",), modes=("inference",),
                           why="the fused primitives have no vjp rule")(_fuse_epilogue)
# A joint forward+backward graph has its backward as explicit nodes (no vjp needed), and the single-user check
# above already refuses any chain whose intermediate the backward reads: fusion there is legal as it stands.
fuse_epilogue_joint = graph_pass("fuse_epilogue_joint", after=("lower_1x1",), modes=("joint",),
                                 why="outside a joint graph the fused primitives would need a vjp rule")(_fuse_epilogue)
