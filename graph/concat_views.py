"""Concat in place: which values the memory planner stores inside a concat's output instead of in their own buffer.

A concat along ``axis`` of arrays whose leading dimensions (before ``axis``) are all 1 (batch 1 on NCHW or on
blocked NCHWc values) lays its inputs' bytes end to end. Where that holds, each input's producer can write
straight into its slice of the output (an arena view at the slice's byte offset) and the concat itself has
nothing left to do. DenseNet is the case that pays: every dense layer reads the concat of all earlier feature maps
of its block, so each layer's concat is a prefix of the block's last one and all of them are views of one buffer.

The placement is all or nothing per concat, and a concat keeps its copy (with a buffer of its own) when any input
is not a planned intermediate (a graph input, constant or output), appears twice, already lives at another place
(a value read by two concats that disagree on its position), or would start at a byte offset that is not a
multiple of the plan's alignment. A concat whose inputs are all placed already, end to end in one buffer (a later
concat's prefix or middle), becomes a view of that buffer too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ir import Node, Value


@dataclass
class ConcatViews:
    """``place``: id(value) -> (root, byte offset): the value is stored in the buffer of ``root`` (a concat output
    with a buffer of its own) at that offset. ``elided``: the concat nodes whose output already holds their
    result (their kernel need not run)."""

    place: dict[int, tuple[Value, int]] = field(default_factory=dict)
    elided: list[Node] = field(default_factory=list)

    @property
    def roots(self) -> set[int]:
        return {id(r) for r, _ in self.place.values()}


def _end_to_end(node: Node) -> bool:
    """The concat's inputs lie end to end in its output: nothing but size-1 dimensions before the axis."""
    axis = node.attrs["axis"] % node.outputs[0].ndim
    return int(np.prod(node.outputs[0].shape[:axis], dtype=np.int64)) == 1


def _offsets(node: Node) -> list[int]:
    out, at = [], 0
    for v in node.inputs:
        out.append(at)
        at += v.nbytes
    return out


def concat_views(schedule: list[Node], inter: set[int], alignment: int) -> ConcatViews:
    """Place the inputs of every concat of ``schedule`` that can run in place (module docstring); ``inter``: ids of
    the planned intermediates. Concats are visited last first, so a concat's output is placed (as an input of a
    later concat) before its own inputs are."""
    views = ConcatViews()
    place = views.place
    for node in reversed(schedule):
        if node.op.name != "concat" or len(node.outputs) != 1:
            continue
        c = node.outputs[0]
        if id(c) not in inter or not _end_to_end(node):
            continue
        offs = _offsets(node)
        first = place.get(id(node.inputs[0]))
        if id(c) not in place and first is not None and all(
                place.get(id(v)) == (first[0], first[1] + o) for v, o in zip(node.inputs, offs)):
            place[id(c)] = first  # a view of a later concat's slice, its inputs already there
            views.elided.append(node)
            continue
        root, base = place.get(id(c), (c, 0))
        want = [(v, base + o) for v, o in zip(node.inputs, offs)]
        ok = len({id(v) for v in node.inputs}) == len(node.inputs) and all(
            id(v) in inter and v.producer is not None and v.dtype == c.dtype and b % alignment == 0
            and place.get(id(v), (root, b)) == (root, b) for v, b in want)
        if ok:
            for v, b in want:
                place[id(v)] = (root, b)
            views.elided.append(node)
    return views
