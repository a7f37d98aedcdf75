"""Concat in place (graph/concat_views.py + graph/memory.py): at batch 1 a concat's inputs are written into their
slices of its output and the concat runs no kernel; every case where that is not safe keeps the copy. Each plan is
checked byte by byte: two values live at the same step may share bytes only where both hold the same producer's
bytes (a concat view holds its inputs' bytes), or one is written in place over the other."""

from __future__ import annotations

import numpy as np
import pytest

import engine.functional as F
import engine.nn as nn
import graph
import zoo
from engine import Spec
from graph.memory import plan_memory
from tests.null.graph_models import randomize_bn
from tests.null.test_layout_pass import _assert_close, _eager, _model


def _segments(v, plan, elided):
    """v's bytes as (arena start, arena end, producer value): an elided concat's bytes are its inputs' bytes."""
    node = v.producer
    if node in elided:
        return [s for u in node.inputs for s in _segments(u, plan, elided)]
    at = plan.offsets[v]
    return [(at, at + v.nbytes, id(v))]


def check_views(plan) -> None:
    elided = set(plan.elided)
    step = {id(n): i for i, n in enumerate(plan.schedule)}
    last: dict[int, int] = {}
    for i, n in enumerate(plan.schedule):
        for u in n.inputs:
            last[id(u)] = i
    vals = [(v, step[id(v.producer)], last.get(id(v), step[id(v.producer)]), _segments(v, plan, elided))
            for v in plan.offsets]
    for v, _, _, segs in vals:  # a view's inputs tile it end to end, from its own offset
        assert segs[0][0] == plan.offsets[v] and segs[-1][1] == plan.offsets[v] + v.nbytes
        assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))
    for i, (u, us, ue, useg) in enumerate(vals):
        for v, vs, ve, vseg in vals[i + 1:]:
            if us > ve or vs > ue or any(plan.inplace.get(p.producer) is q for p, q in ((u, v), (v, u))):
                continue  # an in-place node writes over its input as it reads it for the last time
            for a0, a1, ap in useg:
                for b0, b1, bp in vseg:
                    if a0 < b1 and b0 < a1:
                        assert (a0, a1, ap) == (b0, b1, bp), f"%{u.name} and %{v.name} share bytes while both live"


def test_densenet_batch1_concats_are_views_of_one_buffer_per_block():
    m, x = _model("densenet121")
    x = x[:1]
    cm = graph.compile(m, x, backend="numpy", layout=16)
    concats = cm.graph.find("concat")
    assert len(concats) == 58 and set(cm.plan.elided) == set(concats)
    check_views(cm.plan)
    # one buffer per dense block holds every feature map of the block
    roots = [b for b in cm.plan.buffers if len(b.values) > 1 and b.values[0].producer.op.name == "concat"]
    assert len(roots) == 4 and cm.report["memory"]["concats_in_place"] == 58
    assert "58 concats in place" in str(cm.report)
    _assert_close(cm(x).data, _eager(m, x))
    plain = plan_memory(cm.graph, concat_in_place=False)
    assert cm.plan.lower_bound_bytes <= plain.lower_bound_bytes and not plain.elided


def test_nchw_googlenet_and_densenet_batch1():
    for name in ("googlenet", "densenet121"):
        m, x = _model(name)
        cm = graph.compile(m, x[:1], backend="numpy", layout="nchw")
        assert cm.plan.elided
        check_views(cm.plan)
        _assert_close(cm(x[:1]).data, _eager(m, x[:1]))


def test_batch2_keeps_the_copies():
    m, x = _model("densenet121")
    cm = graph.compile(m, x, backend="numpy", layout=16)
    assert not cm.plan.elided and cm.graph.find("concat")


class _Concats(nn.Module):
    """Concats the planner must copy: a graph input, the same value twice, a value whose position two concats
    disagree on (cat(a, b) and cat(b, a): the later one gets the views), offsets off the alignment (3 channels of
    5x5 floats); and one more that can be a view (cat(c, relu(c)))."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (nn.Conv2d(3, 16, 3, padding=1) for _ in range(3))
        self.odd = nn.Conv2d(3, 3, 1)
        self.mix = nn.Conv2d(32, 8, 1)
        self.mix2 = nn.Conv2d(32, 8, 1)
        self.mix3 = nn.Conv2d(19, 8, 1)
        self.mix4 = nn.Conv2d(6, 8, 1)

    def forward(self, x):
        a, b, c = self.a(x), self.b(x), self.c(x)
        y = self.mix(F.concat([a, b], 1)) + self.mix2(F.concat([b, a], 1)) + self.mix3(F.concat([x, a], 1))
        y = y + self.mix4(F.concat([self.odd(x), self.odd(x).relu()], 1)) + self.mix(F.concat([c, c.relu()], 1))
        return y + self.mix4(F.concat([x.relu(), x.relu()], 1))


def test_unsafe_concats_keep_their_copy():
    m = randomize_bn(_Concats())
    m.eval()
    x = np.random.default_rng(2).standard_normal((1, 3, 5, 5)).astype(np.float32)
    cm = graph.compile(m, x, backend="numpy", layout="nchw")
    g = cm.graph
    cats = g.find("concat")
    assert len(cats) == 6 and len(cm.plan.elided) == 2
    ab, ba, xa, odd, cc, rr = sorted(cats, key=g.nodes.index)
    assert set(cm.plan.elided) == {ba, cc}
    assert xa.inputs[0].kind == "input" and rr.inputs[0] is rr.inputs[1] and odd.inputs[0].nbytes == 300
    check_views(cm.plan)
    _assert_close(cm(x).data, _eager(m, x))


def test_abstract_densenet_plan_is_smaller_with_views():
    m = zoo.get("densenet121")
    m.eval()
    cm = graph.compile(m, Spec((1, 3, 224, 224), "float32"))
    plain = plan_memory(cm.graph, concat_in_place=False)
    assert cm.plan.arena_bytes < plain.arena_bytes and cm.plan.naive_bytes == plain.naive_bytes
    check_views(cm.plan)


@pytest.mark.parametrize("backend", ["numba"])
def test_numba_densenet_batch1_runs_no_concat(backend):
    import engine

    m, x = _model("densenet121")
    cm = graph.compile(m, x[:1], backend=backend)
    with engine.profile() as prof:
        got = cm(x[:1]).data
    assert not [k for k in prof.stats if k[3] == "concat"]
    _assert_close(got, _eager(m, x[:1]))
