"""The training layout pass: keep a joint (forward + backward) graph's activations and their gradients channel-blocked
(NCHWc, engine/ops/blocked.py) between convolutions, so the reorders the blocked Winograd kernel pays around every
NCHW convolution call (backends/numba/conv/nchwc.py) disappear.

Blocked: 3x3 stride-1 convolutions (forward, input gradient, and the weight gradient where both of its inputs are
already blocked) as the primitives of engine/ops/blocked_train.py, with the weight a runtime input; training batch
norms and their gradients whose input is blocked; relu / relu_grad / add (and the other zero-preserving elementwise
ops the inference pass runs blocked) whose operands all have the output's shape and one is blocked; global average
pooling whose input is blocked. Everything else (the stem convolution reading the image, strided and 1x1
convolutions, pooling gradients, the classifier) reads NCHW through a ``from_blocked`` placed before its first
reader, and a blocked reader of an NCHW value gets a ``to_blocked``. Weights, weight gradients, batch-norm
statistics and optimizer state keep their layouts. New reorder nodes take the phase of their first reader.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.ops.blocked import blocks
from engine.ops.blocked_train import NCHW_OF

from ..ir import Graph, Node, Value
from .layout import _BINARY, _UNARY, AUTO_MAX_WASTE, NCHW_IN_CHANNELS, _Rewriter, channel_block, layout_mode
from .registry import PassResult, graph_pass

_BLOCKED = {nchw: blocked for blocked, nchw in NCHW_OF.items()}  # the blocked primitive of each NCHW one
_CONVS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")
_NORMS = ("batch_norm_train", "batch_norm_train_grad")
_ELEMENTWISE = frozenset(_UNARY + _BINARY + ("relu_grad",))


def _winograd_3x3(node: Node) -> bool:
    """A groups-1, 3x3, stride-1, undilated conv role (the blocked Winograd kernel's layers)."""
    a = node.attrs
    kh, kw = node.attrs["weight_shape"][2:] if "weight_shape" in a else node.inputs[1].shape[2:]
    return (kh, kw) == (3, 3) and tuple(a["stride"]) == (1, 1) and tuple(a["dilation"]) == (1, 1) \
        and a["groups"] == 1


def _conv_channels(node: Node) -> int:
    """In channels of the conv behind ``node`` (any of its three roles)."""
    if node.op.name == "conv2d_weight_grad":
        return node.attrs["weight_shape"][1]
    return node.inputs[1].shape[1]


class _TrainRewriter(_Rewriter):
    def has_twin(self, v: Value) -> bool:
        return id(v) in self.blocked

    def kind(self, node: Node) -> str | None:
        """How ``node`` runs blocked ("conv", "norm", "elementwise", "pool"), or None: it stays NCHW."""
        name, ins = node.op.name, node.inputs
        if not ins or ins[0].ndim != 4:
            return None
        if name in _CONVS and _winograd_3x3(node) and _conv_channels(node) > NCHW_IN_CHANNELS:
            if name == "conv2d_weight_grad" and not (self.has_twin(ins[0]) and self.has_twin(ins[1])):
                return None  # two reorders here would cost what a blocked weight gradient saves
            return "conv"
        if name in _NORMS and self.has_twin(ins[1 if name == "batch_norm_train_grad" else 0]):
            return "norm"
        y = node.outputs[0]
        if name in _ELEMENTWISE and len(node.outputs) == 1 and y.ndim == 4 \
                and all(v.shape == y.shape for v in ins) and any(self.has_twin(v) for v in ins):
            return "elementwise"
        if name == "adaptive_avg_pool2d" and tuple(node.attrs["output_size"]) == (1, 1) and self.has_twin(ins[0]):
            return "pool"
        return None

    def emit_train(self, node: Node, kind: str) -> None:
        g, b = self.g, self.block
        meta = dict(node.meta, layout=f"NCHW{b}c")
        ins, attrs = list(node.inputs), dict(node.attrs)
        if kind == "conv":
            blocked_ins = (0, 1) if node.op.name == "conv2d_weight_grad" else (0,)
            op = _BLOCKED[node.op.name]
        elif kind == "norm":
            blocked_ins = (0, 1) if node.op.name == "batch_norm_train_grad" else (0,)
            op = _BLOCKED[node.op.name]
        elif kind == "elementwise":
            blocked_ins, op = tuple(range(len(ins))), node.op
        else:
            blocked_ins, op = (0,), "blocked_pool"
            attrs = {"op": node.op.name, "op_attrs": tuple(sorted(node.attrs.items())), "channels": ins[0].shape[1]}
        new_ins = [self.to_blocked(v, node) if i in blocked_ins else v for i, v in enumerate(ins)]
        out = g.create_node(op, new_ins, attrs, name=node.name, meta=meta, before=node)
        for y, yn in zip(node.outputs, out.outputs):
            if yn.ndim != 5:  # statistics, weight gradients: their usual layout
                g.replace_all_uses(y, yn)
                continue
            back = g.create_node("from_blocked", [yn], {"channels": y.shape[1]}, name=f"{y.name}.from_blocked",
                                 before=node, meta={"layout": "reorder"})
            g.replace_all_uses(y, back.outputs[0])
            self.blocked[id(back.outputs[0])] = yn
            self.channels[id(yn)] = y.shape[1]
        g.erase_node(node)
        g.rename(out, node.name)

    def set_phases(self) -> None:
        """A reorder runs in the phase of its first reader (so a forward value a backward node reads through a
        reorder stays saved for the backward, and split_joint puts each reorder on the side that reads it)."""
        pos = {id(n): i for i, n in enumerate(self.g.nodes)}
        for n in self.g.nodes:
            if n.meta.get("layout") == "reorder" and "phase" not in n.meta:
                users = [u for o in n.outputs for u in o.users]
                first = min(users, key=lambda u: pos[id(u)]) if users else None
                n.meta["phase"] = first.meta.get("phase", "forward") if first is not None else "forward"


def set_channel_block(graph: Graph, backend: Any, layout: str | int | None) -> None:
    """Ask the pass for blocked values: ``graph.meta["channel_block"]`` from ``layout`` and the backend
    (:func:`.layout.channel_block`; ``"auto"`` also lets the pass decline where pad lanes would cost)."""
    block = channel_block(backend, layout)
    if block:
        graph.meta["channel_block"] = block
        graph.meta["channel_block_auto"] = layout_mode(layout) == "auto"


# layout="auto" keeps the rewrite only where its reorders move at most this share of the bytes the blocked
# convolution calls read and write (the NCHW step reorders all of them: an input and an output per call). Measured
# on the zoo's training graphs: ResNet-18 (CIFAR and 224²) 0.34; ResNet-50, DenseNet-121, GoogLeNet 1.00 (their
# 3x3 layers sit between 1x1 layers, which stay NCHW), VGG-11-BN 0.93 (max pools between its blocks)
AUTO_MAX_REORDER_SHARE = 0.5


def reorder_share(graph: Graph) -> float:
    """Bytes the graph's reorders move, over the bytes the blocked convolutions' forward and input-gradient nodes
    read and write as activations: what a reorder on either side of each call would move (the NCHW step's blocked
    Winograd calls reorder their input and output, backends/numba/conv/nchwc.py)."""
    moved = sum(n.outputs[0].nbytes for n in graph.nodes if n.op.name in ("to_blocked", "from_blocked"))
    calls = sum(n.inputs[0].nbytes + n.outputs[0].nbytes for n in graph.nodes
                if n.op.name in ("blocked_conv2d_train", "blocked_conv2d_input_grad"))
    return moved / calls if calls else float("inf")


def training_padding_waste(graph: Graph, block: int) -> float | None:
    """MAC-weighted padded / real output channels over the float32 forward convolutions the pass would block
    (None: none)."""
    real = padded = 0
    for n in graph.nodes:
        if n.op.name == "conv2d" and _winograd_3x3(n) and n.inputs[0].dtype == np.float32 \
                and _conv_channels(n) > NCHW_IN_CHANNELS:
            o = n.outputs[0].shape[1]
            macs = n.cost().macs
            real += macs
            padded += macs * blocks(o, block) * block / o
    return padded / real if real else None


@graph_pass("train_layout", after=("fuse_epilogue_joint", "fuse_pool_relu_grad", "fuse_conv_relu_pool",
                                   "fuse_cross_entropy"), modes=("joint",),
            why="it rewrites backward nodes, which only a joint graph holds")
def train_layout(graph: Graph) -> PassResult:
    """Run a joint graph's 3x3 stride-1 convolutions (forward, input and weight gradients), the training batch
    norms, their gradients, and the relu / relu_grad / add / global pooling between them on blocked values (see the
    module docstring); reorders remain at the edges and around ops without a blocked form.

    Needs ``graph.meta["channel_block"]`` (set by ``compile_step`` / ``compile`` in train mode from their
    ``layout`` option); without it the graph is left alone. With ``graph.meta["channel_block_auto"]``
    (``layout="auto"``) it declines graphs without float32 3x3 stride-1 convolutions (the blocked Winograd
    kernel's), graphs whose pad lanes would add more than ``AUTO_MAX_WASTE - 1`` to their multiply-adds and rewrites
    whose reorders would move more than ``AUTO_MAX_REORDER_SHARE`` of the blocked convolutions' activation bytes
    (``report["layout"]["declined"]`` says why). Run after the
    joint fusion passes (they match NCHW patterns). Records ``graph.meta["layout"]`` as the inference pass does:
    the block, the blocked node count and the reorders that remain.
    """
    block = graph.meta.get("channel_block")
    if not block:
        return PassResult(graph, False)
    auto = bool(graph.meta.get("channel_block_auto"))
    if auto:
        waste = training_padding_waste(graph, int(block))
        if waste is None or waste > AUTO_MAX_WASTE:
            return _declined(graph, int(block), "no float32 3x3 stride-1 convolution" if waste is None else
                             f"pad lanes would add {waste - 1:.0%} to the convolutions' work")
    original = graph
    if auto:  # rewritten on a copy: kept only where it removes reorders
        graph = graph.copy()
    rw = _TrainRewriter(graph, int(block))
    for node in list(graph.nodes):
        kind = rw.kind(node)
        if kind is not None:
            rw.emit_train(node, kind)
    if not rw.channels:
        return PassResult(original, False)
    rw.finish()
    rw.set_phases()
    share = reorder_share(graph)
    if auto and share > AUTO_MAX_REORDER_SHARE:
        return _declined(original, rw.block, f"its reorders would move {share:.0%} of what the blocked "
                                             "convolutions read and write (no reorder saved)")
    graph.meta["layout"] = {
        "block": rw.block,
        "blocked_nodes": sum(1 for n in graph.nodes if n.meta.get("layout", "").startswith("NCHW")),
        "reorders": [f"{n.name}: {n.op.name} {list(n.inputs[0].shape)} -> {list(n.outputs[0].shape)}"
                     for n in graph.nodes if n.op.name in ("to_blocked", "from_blocked")],
        "reorder_share": round(share, 3),
    }
    return PassResult(graph, True)


def _declined(graph: Graph, block: int, why: str) -> PassResult:
    graph.meta["layout"] = {"block": block, "blocked_nodes": 0, "reorders": [], "declined": why}
    return PassResult(graph, False)
