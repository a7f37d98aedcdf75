"""Memory planning: valid layouts, the acceptance numbers on ResNet-50 / GoogLeNet / DenseNet-121 (abstract, batch
1, 224x224), in-place reuse, the peak-lowering schedule, and the arena executor really running in one arena."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import graph
import zoo.models as zm
from engine import Spec
from graph.memory import greedy_schedule, plan_memory

from .graph_models import Branchy, TinyResNet, inputs, randomize_bn


def _check_layout(plan, g):
    for b in plan.buffers:
        assert b.offset % plan.alignment == 0 and b.offset + b.size <= plan.arena_bytes
        assert all(v.nbytes <= b.size for v in b.values)
    bs = sorted(plan.buffers, key=lambda b: b.offset)
    for i, a in enumerate(bs):
        for b in bs[i + 1:]:
            if b.offset >= a.offset + a.size:
                break
            assert not (a.start <= b.end and b.start <= a.end), f"buffers overlap in time and space: {a} {b}"
    assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes
    outs = {id(v) for v in g.outputs}
    assert all(id(v) not in outs for v in plan.offsets)


def _zoo_plan(name):
    m = zm.get(name)
    m.eval()
    cm = graph.compile(m, Spec((1, 3, 224, 224), "float32"))
    _check_layout(cm.plan, cm.graph)
    return cm


def test_resnet50_plan_meets_acceptance():
    cm = _zoo_plan("resnet50")
    m = cm.report["memory"]
    print("resnet50", m)
    assert m["arena_bytes"] <= 1.1 * m["lower_bound_bytes"]
    assert m["arena_bytes"] <= 0.3 * m["naive_bytes"]


@pytest.mark.parametrize("name", ["googlenet", "densenet121"])
def test_branchy_zoo_plans(name):
    cm = _zoo_plan(name)
    m = cm.report["memory"]
    print(name, m)
    assert m["arena_bytes"] <= 1.1 * m["lower_bound_bytes"] and m["arena_bytes"] < 0.3 * m["naive_bytes"]


def test_schedule_heuristic_lowers_peak_on_branches():
    m = Branchy()
    m.eval()
    g = graph.trace(m, Spec((1, 4, 16, 16), "float32"), abstract=True)
    plain = plan_memory(g, reorder=False)
    planned = plan_memory(g, reorder=True)
    assert planned.reordered and planned.lower_bound_bytes < 0.6 * plain.lower_bound_bytes
    assert planned.arena_bytes < plain.arena_bytes
    order = greedy_schedule(g)
    assert sorted(map(id, order)) == sorted(map(id, g.nodes))
    # the reordered graph computes the same thing
    x = inputs((1, 4, 16, 16)).data
    ref = graph.run_graph(g, x)[0]
    g.nodes = planned.schedule
    np.testing.assert_allclose(graph.ArenaExecutor(g.verify(), planned).run(x)[0], ref, rtol=1e-6)


def test_inplace_reuse_for_dying_elementwise_inputs():
    def fn(x):
        y = engine.functional.exp(x)  # dies at the relu below: relu writes over it
        z = engine.functional.relu(y)
        return engine.functional.sum(z * 2.0, (1,), keepdims=False)

    g = graph.trace(fn, inputs((4, 8)))
    plan = plan_memory(g)
    assert [n.op.name for n in plan.inplace] == ["relu", "mul"]
    assert len(plan.buffers) == 1
    _check_layout(plan, g)


class _SpyBackend(engine.Backend):
    """Numpy kernels, recording every `out` buffer handed to a kernel."""

    def __init__(self):
        super().__init__("spy", fallback="numpy")
        self.outs: list[tuple[str, np.ndarray]] = []

    def kernel(self, name):
        k = engine.get_backend("numpy").kernel(name)

        def spy(*args, out, **attrs):
            for o in out if isinstance(out, tuple) else (out,):
                self.outs.append((name, o))
            return k(*args, out=out, **attrs)

        return spy


def test_arena_executor_allocates_no_other_intermediate():
    m = randomize_bn(TinyResNet())
    m.eval()
    x = inputs((2, 3, 16, 16))
    spy = _SpyBackend()
    cm = graph.compile(m, x, backend=spy)
    spy.outs.clear()
    got = cm(x)
    arena = cm.compiled.executor.arena
    # every buffer a kernel writes (fused kernels compose several) is a view into the one arena, except the
    # graph output: the executor's own array for it (a small output, copied into the fresh array returned to the
    # caller), which no call returns
    owned = list(cm.compiled.executor._owned.values())
    assert spy.outs and owned
    for name, o in spy.outs:
        assert np.shares_memory(o, arena) or any(np.shares_memory(o, a) for a in owned), \
            f"{name} wrote outside the arena"
    assert not any(np.shares_memory(got.data, a) for a in [arena, *owned])
    views = cm.compiled.executor.views
    assert len(views) == sum(len(b.values) for b in cm.plan.buffers)
    with engine.no_grad():
        ref = m(x)
    np.testing.assert_allclose(got.data, ref.data, rtol=1e-4, atol=1e-5)
    # a second call reuses the same arena
    cm(x)
    assert cm.compiled.executor.arena is arena
