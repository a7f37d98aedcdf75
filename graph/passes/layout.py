"""The layout pass: run convolutions and the per-channel ops around them on channel-blocked (NCHWc) values.

A blocked value is (N, ceil(C / c), H, W, c) (engine/ops/blocked.py). The block ``c`` comes from
``graph.meta["channel_block"]`` (set by ``graph.compile`` from its ``layout`` option, ``CONVGRAPH_LAYOUT`` and the
backend's ``channel_block``); without it the pass changes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.ops.blocked import POOL_OPS, blocks

from ..ir import Graph, Node, Value
from .chains import mark_chains
from .registry import PassResult, graph_pass

# elementwise ops that run on blocked values unchanged: each maps finite pad lanes to finite pad lanes
_UNARY = ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "silu", "gelu", "clamp", "neg", "abs", "hardswish")
_BINARY = ("add", "sub", "mul")


def _activation(v: Value) -> bool:
    return v.producer is not None or v.kind == "input"


def _conv_ok(node: Node) -> bool:
    if node.op.name not in ("conv2d", "fused_conv2d") or node.inputs[0].ndim != 4:
        return False
    x, w = node.inputs[0], node.inputs[1]
    g = node.attrs["groups"]
    return _activation(x) and w.is_frozen and (g == 1 or g == x.shape[1] == w.shape[0])


def _per_channel_const(v: Value, c: int) -> bool:
    return v.is_frozen and v.data is not None and v.shape in ((c, 1, 1), (1, c, 1, 1))


def _binary_ok(node: Node) -> bool:
    y = node.outputs[0]
    if y.ndim != 4:
        return False
    c = y.shape[1]
    for v in node.inputs:
        if v.spec.size == 1 and not _activation(v):
            continue
        if _activation(v) and v.ndim == 4 and v.shape[1] == c:
            continue
        if not _per_channel_const(v, c):
            return False
    return True


def _kind(node: Node, block: int) -> str | None:
    """How ``node`` runs on blocked values ("conv", "pool", "bn", "unary", "binary", "concat"), or None: NCHW."""
    name = node.op.name
    if len(node.outputs) != 1 or not node.inputs or node.outputs[0].ndim != 4:
        return None
    if _conv_ok(node):
        return "conv"
    x = node.inputs[0]
    if name in POOL_OPS and x.ndim == 4:
        return "pool"
    if name == "batch_norm_infer" and x.ndim == 4 and all(v.is_frozen and v.data is not None
                                                          for v in node.inputs[1:]):
        return "bn"
    if name in _UNARY and len(node.inputs) == 1:
        return "unary"
    if name in _BINARY and _binary_ok(node):
        return "binary"
    if name == "concat" and node.attrs["axis"] == 1 and all(v.ndim == 4 for v in node.inputs) and \
            all(v.shape[1] % block == 0 for v in node.inputs[:-1]):
        return "concat"
    return None


# A dense conv reads an NCHW input of at most this many channels (an RGB image) as it is and writes blocked values
# (ONNX Runtime's NCHWc does the same for the first conv): a reorder would copy the image into 16-lane pixels of
# which 13 are padding, and the conv would stream those.
NCHW_IN_CHANNELS = 4


def _sole_clamp(g: Graph, y: Value) -> Node | None:
    """The clamp node that alone reads ``y`` (not a graph output), if any."""
    if len(y.users) != 1 or g.is_output(y):
        return None
    user = next(iter(y.users))
    return user if user.op.name == "clamp" and len(user.inputs) == 1 else None


def _blocked_const(data: np.ndarray, c: int, block: int) -> np.ndarray:
    """A per-channel constant of c channels as (1, Cb, 1, 1, block), pad lanes zero."""
    cb = blocks(c, block)
    flat = np.zeros(cb * block, data.dtype)
    flat[:c] = data.reshape(-1)
    out = flat.reshape(1, cb, 1, 1, block)
    out.setflags(write=False)
    return out


class _Rewriter:
    def __init__(self, graph: Graph, block: int):
        self.g, self.block = graph, block
        self.blocked: dict[int, Value] = {}  # id(NCHW value) -> its blocked twin
        self.channels: dict[int, int] = {}  # id(blocked value) -> channel count
        self.erased: set[Node] = set()  # nodes absorbed into an earlier blocked node

    def to_blocked(self, v: Value, before: Node) -> Value:
        got = self.blocked.get(id(v))
        if got is None:
            n = self.g.create_node("to_blocked", [v], {"block": self.block}, name=f"{v.name}.to_blocked",
                                   before=before, meta={"layout": "reorder"})
            got = n.outputs[0]
            self.blocked[id(v)] = got
            self.channels[id(got)] = v.shape[1]
        return got

    def nchw_in(self, v: Value, groups: int) -> bool:
        """Whether a dense conv reads ``v`` as NCHW: an NCHW value (no blocked twin) of at most
        ``NCHW_IN_CHANNELS`` channels, which blocking would mostly fill with pad lanes."""
        return groups == 1 and id(v) not in self.blocked and v.shape[1] <= NCHW_IN_CHANNELS

    def const(self, v: Value, c: int, data: np.ndarray | None = None) -> Value:
        return self.g.add_const(f"{v.name}.blocked", _blocked_const(v.data if data is None else data, c, self.block))

    def emit(self, node: Node, kind: str) -> Value:
        g, b = self.g, self.block
        y = node.outputs[0]
        c = y.shape[1]
        meta = dict(node.meta, layout=f"NCHW{b}c")
        ins = node.inputs
        if kind == "conv":
            attrs = dict(node.attrs)
            if node.op.name == "conv2d":
                attrs.update(has_bias=len(ins) == 3, has_residual=False, activation="none", act_attrs=())
            if self.nchw_in(ins[0], attrs["groups"]):  # the image into the first conv: no reorder, no pad lanes
                attrs["block"] = b
                new_ins = list(ins)
            else:
                new_ins = [self.to_blocked(ins[0], node)] + list(ins[1:])
            if attrs["has_residual"]:
                new_ins[-1] = self.to_blocked(new_ins[-1], node)
            clamp = _sole_clamp(g, y) if attrs["activation"] == "none" else None
            if clamp is not None:  # ReLU6 and other clamps: applied on the accumulators too
                attrs.update(activation="clamp", act_attrs=tuple(sorted(clamp.attrs.items())))
                meta["fused"] = list(meta.get("fused", [node.op.name])) + ["clamp"]
                g.replace_all_uses(clamp.outputs[0], y)
                g.erase_node(clamp)
                self.erased.add(clamp)
            out = g.create_node("blocked_conv2d", new_ins, attrs, name=node.name, meta=meta, before=node)
        elif kind == "pool":
            out = g.create_node("blocked_pool", [self.to_blocked(ins[0], node)],
                                {"op": node.op.name, "op_attrs": tuple(sorted(node.attrs.items())), "channels": c},
                                name=node.name, meta=meta, before=node)
        elif kind == "bn":
            x, w, bias, mean, var = ins
            scale = w.data.astype(np.float64) / np.sqrt(var.data.astype(np.float64) + node.attrs["eps"])
            shift = bias.data.astype(np.float64) - mean.data.astype(np.float64) * scale
            s = self.const(w, c, scale.astype(x.dtype))
            t = self.const(bias, c, shift.astype(x.dtype))
            act, act_attrs = "none", ()
            user = next(iter(y.users)) if len(y.users) == 1 and not g.is_output(y) else None
            if user is not None and user.op.name in ("relu", "clamp") and len(user.inputs) == 1:
                act, act_attrs = user.op.name, tuple(sorted(user.attrs.items()))
                meta["fused"] = ["batch_norm_infer", user.op.name]
                g.replace_all_uses(user.outputs[0], y)
                g.erase_node(user)
                self.erased.add(user)
            out = g.create_node("blocked_scale_shift", [self.to_blocked(x, node), s, t],
                                {"activation": act, "act_attrs": act_attrs}, name=node.name, meta=meta, before=node)
        elif kind in ("unary", "binary"):
            new_ins = []
            for v in ins:
                if v.ndim == 4 and _activation(v):
                    new_ins.append(self.to_blocked(v, node))
                elif v.spec.size != 1 and v.is_frozen:
                    new_ins.append(self.const(v, c))
                else:
                    new_ins.append(v)
            out = g.create_node(node.op, new_ins, node.attrs, name=node.name, meta=meta, before=node)
        else:  # concat along channels: every input but the last fills whole blocks
            out = g.create_node("concat", [self.to_blocked(v, node) for v in ins], {"axis": 1}, name=node.name,
                                meta=meta, before=node)
        v5 = out.outputs[0]
        self.channels[id(v5)] = c
        # NCHW users (and graph outputs) read the reorder back; blocked users find the twin in self.blocked
        back = g.create_node("from_blocked", [v5], {"channels": c}, name=f"{node.name}.from_blocked", before=node,
                             meta={"layout": "reorder"})
        g.replace_all_uses(y, back.outputs[0])
        self.blocked[id(back.outputs[0])] = v5
        g.erase_node(node)
        g.rename(out, node.name)
        return v5

    def finish(self) -> None:
        """Drop unread reorders back to NCHW and move the others to just before their first reader, so a
        blocked value's NCHW twin does not live longer than it must."""
        g = self.g
        for n in [n for n in g.nodes if n.op.name == "from_blocked"]:
            if not n.outputs[0].users and not g.is_output(n.outputs[0]):
                g.erase_node(n)
                continue
            if n.outputs[0].users:
                g.nodes.remove(n)
                g.nodes.insert(min(g.nodes.index(u) for u in n.outputs[0].users), n)


def _is_blocked_input(rw: _Rewriter, node: Node) -> bool:
    return any(id(v) in rw.blocked and v.producer is not None and v.producer.op.name == "from_blocked"
               for v in node.inputs)


# layout="auto" declines a graph whose blocked convolutions would do more than this much padded work (MAC-weighted
# ratio of padded to real output channels): LeNet-5's 20 and 50 channels in blocks of 16 would be 1.33x
AUTO_MAX_WASTE = 1.2


def padding_waste(graph: Graph, block: int) -> float | None:
    """MAC-weighted padded / real output channels over the float32 convolutions the pass would block (None: none)."""
    real = padded = 0
    for n in graph.nodes:
        if n.op.name in ("conv2d", "fused_conv2d") and _conv_ok(n) and n.outputs[0].dtype == np.float32:
            o = n.outputs[0].shape[1]
            macs = n.cost().macs
            real += macs
            padded += macs * blocks(o, block) * block / o
    return padded / real if real else None


@graph_pass("layout", after=("fuse_epilogue",), modes=("inference",),
            why="the blocked primitives have no vjp rule; training keeps NCHW")
def layout(graph: Graph) -> PassResult:
    """Give convolutions (``conv2d`` / ``fused_conv2d`` with groups 1 or depthwise, frozen weights) blocked inputs
    and outputs, and run every per-channel op whose input is already blocked (max/avg/adaptive pools, frozen
    ``batch_norm_infer`` as one blocked scale-and-shift pass with the ReLU / clamp that alone reads it,
    ReLU-family and other finite-preserving elementwise ops,
    add/sub/mul of blocked values and per-channel constants, concat along channels where every input but the
    last fills whole blocks) on blocked values too. Reorders (``to_blocked`` / ``from_blocked``) remain only where
    an NCHW value meets a blocked op (the graph inputs; a dense conv reads an image of at most ``NCHW_IN_CHANNELS``
    channels as it is, its ``block`` attribute set) and where a blocked value meets an op that needs NCHW
    (flatten, linear, reductions, graph outputs); each ``from_blocked`` sits just before its first reader.

    Needs ``graph.meta["channel_block"]`` (the block ``c``, e.g. 16 floats for AVX-512); without it the graph is
    left alone. With ``graph.meta["channel_block_auto"]`` (``layout="auto"``) it also leaves alone graphs without
    float32 convolutions and graphs whose pad lanes would add more than ``AUTO_MAX_WASTE - 1`` to the
    convolutions' multiply-adds (the report's ``layout.declined`` says so). Run after fuse_epilogue (the fused
    convolutions carry their epilogue into ``blocked_conv2d``).
    Records ``graph.meta["layout"]``: the block, the blocked node count and the reorders that remain.
    """
    block = graph.meta.get("channel_block")
    if not block:
        return PassResult(graph, False)
    rw = _Rewriter(graph, int(block))
    if graph.meta.get("channel_block_auto"):
        waste = padding_waste(graph, rw.block)
        if waste is None or waste > AUTO_MAX_WASTE:
            graph.meta["layout"] = {"block": rw.block, "blocked_nodes": 0, "reorders": [],
                                    "declined": "no float32 convolution" if waste is None else
                                    f"pad lanes would add {waste - 1:.0%} to the convolutions' work"}
            return PassResult(graph, False)
    for node in list(graph.nodes):
        kind = None if node in rw.erased else _kind(node, rw.block)
        if kind is None or (kind != "conv" and not _is_blocked_input(rw, node)):
            continue
        rw.emit(node, kind)
    if not rw.channels:
        return PassResult(graph, False)
    rw.finish()
    graph.remove_unused_inputs()
    mark_chains(graph)
    graph.meta["layout"] = {
        "block": rw.block,
        "blocked_nodes": sum(1 for n in graph.nodes if n.meta.get("layout", "").startswith("NCHW")),
        "reorders": [f"{n.name}: {n.op.name} {list(n.inputs[0].shape)} -> {list(n.outputs[0].shape)}"
                     for n in graph.nodes if n.op.name in ("to_blocked", "from_blocked")],
    }
    return PassResult(graph, True)


def layout_summary(graph: Graph) -> dict[str, Any]:
    return dict(graph.meta.get("layout", {}))


LAYOUTS = ("auto", "blocked", "nchw")


def layout_mode(layout: str | int | None = None) -> str | int:
    """``layout`` checked, or ``CONVGRAPH_LAYOUT`` (default ``auto``) when None: a mode of ``LAYOUTS`` or a block."""
    import os

    source = "compile(layout=...)"
    if layout is None:
        layout, source = os.environ.get("CONVGRAPH_LAYOUT", "auto"), "CONVGRAPH_LAYOUT"
    if isinstance(layout, (int, np.integer)) and not isinstance(layout, bool):
        if layout < 1:
            raise ValueError(f"{source}: a block must be an int >= 1 (got {layout})")
        return int(layout)
    mode = str(layout).strip().lower()
    if mode not in LAYOUTS:
        raise ValueError(f"{source}: layout must be one of {LAYOUTS} or a block size (got {layout!r})")
    return mode


def channel_block(backend: Any, layout: str | int | None = None) -> int | None:
    """The block the layout pass uses when compiling for ``backend`` (None: keep NCHW). ``layout``: ``"auto"``
    (the backend's ``channel_block`` where it sets ``blocked_by_default``), ``"blocked"`` (the backend's block,
    16 where it names none: the numpy reference runs blocked graphs by decomposition), ``"nchw"``, or an int block
    (tests). None reads ``CONVGRAPH_LAYOUT`` (default ``auto``)."""
    mode = layout_mode(layout)
    if isinstance(mode, int):
        return mode
    native = getattr(backend, "channel_block", None)
    if mode == "nchw":
        return None
    if mode == "blocked":
        return native or 16
    return native if getattr(backend, "blocked_by_default", False) else None
