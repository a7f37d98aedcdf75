"""1×1 bottleneck analysis (the "naive Inception" comparison of Szegedy et al. 2014, section 4).

For every conv2d node of a traced graph: its params, MACs and output bytes. For every 1×1 "reduce" conv
(C_out < C_in) whose output feeds a k×k conv (k > 1), possibly through pointwise ops (bias, BN, ReLU): the channel
reduction ratio, and the branch's params/MACs with the reduce (1×1 + k×k on C_red channels) versus without it
(the naive module: the same k×k conv applied straight to the C_in-channel input). For k×k convs with a large input
and no reduce in front: the saving a 1×1 reduce to C_in/4 would bring, suggested when it cuts MACs by more than
half.

The hypothetical convs are evaluated by the conv2d primitive's own shape and cost rules on made-up specs, so this
file contains no conv arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.primitive import CONV, ELEMENTWISE, NORM, Primitive, Spec

from .ir import Graph, Node
from .summary import fmt_bytes, fmt_count, trace_shapes

__all__ = ["ConvInfo", "ReducePair", "ReduceSuggestion", "BottleneckReport", "analyze_bottlenecks", "bottleneck"]

# Ops that may sit between a reduce conv and the conv it feeds without changing the channel count.
_PASS_THROUGH_KINDS = (ELEMENTWISE, NORM)


@dataclass
class ConvInfo:
    name: str
    module: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    groups: int
    c_in: int
    c_out: int
    output_shape: tuple[int, ...]
    params: int
    macs: int
    output_bytes: int


@dataclass
class ReducePair:
    """A 1×1 reduce conv feeding a k×k conv, and what the reduce saves against the naive branch."""

    reduce: str
    conv: str
    kernel: tuple[int, int]
    c_in: int
    c_reduced: int
    c_out: int
    reduction_ratio: float  # c_in / c_reduced
    params_with: int  # reduce + k×k on c_reduced channels
    macs_with: int
    params_without: int  # k×k straight on c_in channels
    macs_without: int
    mac_saving: float = field(init=False)  # fraction of the naive branch's MACs the reduce removes
    param_saving: float = field(init=False)

    def __post_init__(self) -> None:
        self.mac_saving = 1 - self.macs_with / self.macs_without if self.macs_without else 0.0
        self.param_saving = 1 - self.params_with / self.params_without if self.params_without else 0.0


@dataclass
class ReduceSuggestion:
    """A k×k conv with a wide input and no reduce, where a 1×1 reduce to C_in/4 would cut its MACs by > half."""

    conv: str
    kernel: tuple[int, int]
    c_in: int
    c_reduced: int
    c_out: int
    macs: int
    macs_with_reduce: int
    params: int
    params_with_reduce: int
    mac_saving: float = field(init=False)

    def __post_init__(self) -> None:
        self.mac_saving = 1 - self.macs_with_reduce / self.macs if self.macs else 0.0


@dataclass
class BottleneckReport:
    convs: list[ConvInfo]
    reductions: list[ReducePair]
    suggestions: list[ReduceSuggestion]

    def to_dict(self) -> dict[str, Any]:
        return {"convs": [asdict(c) for c in self.convs], "reductions": [asdict(r) for r in self.reductions],
                "suggestions": [asdict(s) for s in self.suggestions],
                "units": {"macs": "multiply-accumulates (FLOPs = 2 x MACs)", "output_bytes": "bytes"}}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def tables(self) -> list:
        from rich.table import Table

        convs = Table(title="Convolutions (MACs = multiply-accumulates; FLOPs = 2 × MACs)")
        for col in ("conv", "kernel", "C_in→C_out", "groups", "output", "params", "MACs", "output bytes"):
            convs.add_column(col, justify="left" if col in ("conv", "output") else "right")
        for c in self.convs:
            convs.add_row(c.name, f"{c.kernel[0]}×{c.kernel[1]}/{c.stride[0]}", f"{c.c_in}→{c.c_out}", str(c.groups),
                          str(list(c.output_shape)), f"{c.params:,}", fmt_count(c.macs), fmt_bytes(c.output_bytes))
        red = Table(title="1×1 reduce → k×k branches vs the naive branch (k×k on the full input)")
        for col in ("reduce", "conv", "C_in→C_red", "ratio", "params with/without", "MACs with/without",
                    "MAC saving", "param saving"):
            red.add_column(col, justify="left" if col in ("reduce", "conv") else "right")
        for r in self.reductions:
            red.add_row(r.reduce, f"{r.conv} ({r.kernel[0]}×{r.kernel[1]})", f"{r.c_in}→{r.c_reduced}",
                        f"{r.reduction_ratio:.2f}×", f"{fmt_count(r.params_with)} / {fmt_count(r.params_without)}",
                        f"{fmt_count(r.macs_with)} / {fmt_count(r.macs_without)}", f"{r.mac_saving:.1%}",
                        f"{r.param_saving:.1%}")
        sug = Table(title="Suggestions: a 1×1 reduce to C_in/4 would cut these convs' MACs by more than half")
        for col in ("conv", "kernel", "C_in→C_red→C_out", "MACs now", "MACs with reduce", "saving"):
            sug.add_column(col, justify="left" if col == "conv" else "right")
        for s in self.suggestions:
            sug.add_row(s.conv, f"{s.kernel[0]}×{s.kernel[1]}", f"{s.c_in}→{s.c_reduced}→{s.c_out}",
                        fmt_count(s.macs), fmt_count(s.macs_with_reduce), f"{s.mac_saving:.1%}")
        return [convs, red, sug]

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=160, force_terminal=False, color_system=None)
        with console.capture() as cap:
            for t in self.tables():
                console.print(t)
        return cap.get()


# --- helpers ----------------------------------------------------------------------------------------------------
def _is_conv(node: Node) -> bool:
    return node.op.kind == CONV and node.op.name == "conv2d"


def _conv_params(ins: tuple[Spec, ...]) -> int:
    return sum(s.size for s in ins[1:])  # weight (+ bias)


def _conv_info(node: Node) -> ConvInfo:
    ins, outs = node.specs()
    x, w = ins[0], ins[1]
    return ConvInfo(name=node.module or node.name, module=node.module, kernel=tuple(w.shape[2:4]),
                    stride=tuple(node.attrs["stride"]), groups=int(node.attrs["groups"]), c_in=x.shape[1],
                    c_out=w.shape[0], output_shape=outs[0].shape, params=_conv_params(ins),
                    macs=node.cost().macs, output_bytes=outs[0].nbytes)


def _conv_cost(prim: Primitive, x: Spec, c_out: int, kernel: tuple[int, int], bias: bool,
               **attrs: Any) -> tuple[int, int]:
    """(params, MACs) of a hypothetical conv on input ``x``, from the primitive's shape and cost rules."""
    groups = attrs.get("groups", 1)
    w = Spec((c_out, x.shape[1] // groups) + tuple(kernel), x.dtype)
    ins = (x, w) + ((Spec((c_out,), x.dtype),) if bias else ())
    outs = prim.abstract_eval(*ins, **attrs)
    return _conv_params(ins), prim.cost(ins, outs, **attrs).macs


def _fed_convs(node: Node) -> list[Node]:
    """k×k convs fed by ``node``'s output through channel-preserving pointwise ops (BN, bias add, ReLU)."""
    found = []
    frontier = [node.outputs[0]]
    seen: set[int] = set()
    while frontier:
        v = frontier.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        for u in v.users:
            if _is_conv(u):
                if u.inputs[0] is v:
                    found.append(u)
            elif u.op.kind in _PASS_THROUGH_KINDS and u.outputs[0].shape == v.shape:
                frontier.extend(u.outputs[:1])
    return found


def _producer_is_reduce(node: Node) -> bool:
    """Is the input of this conv a 1×1 reduce's output (through pointwise ops)?"""
    v = node.inputs[0]
    while True:
        p = v.producer
        if p is None:
            return False
        if _is_conv(p):
            x, w = p.inputs[0], p.inputs[1]
            return tuple(w.shape[2:4]) == (1, 1) and w.shape[0] < x.shape[1]
        if p.op.kind not in _PASS_THROUGH_KINDS or not p.inputs:
            return False
        v = p.inputs[0]


# --- the analysis -----------------------------------------------------------------------------------------------
def analyze_bottlenecks(graph: Graph, min_channels: int = 128, suggest_ratio: int = 4,
                        min_saving: float = 0.5) -> BottleneckReport:
    """Bottleneck rows for a traced graph. ``min_channels`` is what counts as a "large C_in" for suggestions."""
    convs, pairs, suggestions = [], [], []
    for node in graph.nodes:
        if not _is_conv(node):
            continue
        info = _conv_info(node)
        convs.append(info)
        prim = node.op
        ins, _ = node.specs()
        if info.kernel == (1, 1) and info.groups == 1 and info.c_out < info.c_in:
            for kxk in _fed_convs(node):
                k_ins, _ = kxk.specs()
                k_attrs = kxk.attrs
                if tuple(k_ins[1].shape[2:4]) == (1, 1) or k_attrs["groups"] != 1:
                    continue
                k_info = _conv_info(kxk)
                naive = _conv_cost(prim, ins[0], k_info.c_out, k_info.kernel, len(k_ins) == 3, **k_attrs)
                pairs.append(ReducePair(
                    reduce=info.name, conv=k_info.name, kernel=k_info.kernel, c_in=info.c_in,
                    c_reduced=info.c_out, c_out=k_info.c_out, reduction_ratio=info.c_in / info.c_out,
                    params_with=info.params + k_info.params, macs_with=info.macs + k_info.macs,
                    params_without=naive[0], macs_without=naive[1]))
        elif (info.kernel != (1, 1) and info.groups == 1 and info.c_in >= min_channels
              and not _producer_is_reduce(node)):
            c_red = max(info.c_in // suggest_ratio, 1)
            attrs = node.attrs
            bias = len(ins) == 3
            r_params, r_macs = _conv_cost(prim, ins[0], c_red, (1, 1), bias, stride=(1, 1),
                                          padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)
            reduced_x = Spec(ins[0].shape[:1] + (c_red,) + ins[0].shape[2:], ins[0].dtype)
            k_params, k_macs = _conv_cost(prim, reduced_x, info.c_out, info.kernel, bias, **attrs)
            s = ReduceSuggestion(conv=info.name, kernel=info.kernel, c_in=info.c_in, c_reduced=c_red,
                                 c_out=info.c_out, macs=info.macs, macs_with_reduce=r_macs + k_macs,
                                 params=info.params, params_with_reduce=r_params + k_params)
            if s.mac_saving > min_saving:
                suggestions.append(s)
    return BottleneckReport(convs, pairs, suggestions)


def bottleneck(model: Any, input_shape: tuple[int, ...], **kwargs: Any) -> BottleneckReport:
    """Trace ``model`` on shapes only and run :func:`analyze_bottlenecks` on the graph."""
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    return analyze_bottlenecks(trace_shapes(model, shape), **kwargs)
