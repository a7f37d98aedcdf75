"""engine.profile: kernel time attributed to phase, layer and op, in eager mode and for compiled graphs."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import graph
from engine import nn
from engine.profiler import OUTSIDE


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).reshape(x.shape[0], -1))


def _data():
    rng = np.random.default_rng(0)
    return engine.tensor(rng.standard_normal((2, 2, 4, 4), dtype=np.float32)), engine.tensor(np.array([1, 3]))


def test_eager_training_step_is_attributed_to_phase_layer_and_op():
    engine.manual_seed(0)
    m, (x, y) = Net(), _data()
    opt = engine.optim.SGD(m.parameters(), lr=0.1)
    with engine.profile(m) as prof:
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
    keys = {(p, layer, t, op) for (p, layer, t, op) in prof.stats}
    assert ("forward", "conv", "Conv2d", "conv2d") in keys
    assert ("backward", "conv", "Conv2d", "conv2d_weight_grad") in keys  # vjp kernels go to the layer
    assert ("backward", "conv", "Conv2d", "conv2d_input_grad") not in keys  # x needs no grad
    assert ("forward", "fc", "Linear", "linear") in keys
    assert ("optimizer", "", "", "SGD update") in keys
    assert sum(n for n, _ in prof.stats.values()) >= 8
    assert 0 < prof.kernel_s <= prof.wall_s
    rows = prof.rows("op")
    assert rows == sorted(rows, key=lambda r: -r["ms"])
    outside = [r for r in rows if r["op"] == OUTSIDE]
    assert len(outside) == 1 and outside[0]["ms"] == pytest.approx((prof.wall_s - prof.kernel_s) * 1e3)
    assert sum(r["pct"] for r in rows) == pytest.approx(100.0)


def test_profile_does_not_change_results_and_records_nothing_outside_the_block():
    engine.manual_seed(0)
    m, (x, _) = Net(), _data()
    ref = m(x).numpy()
    with engine.profile(m) as prof:
        got = m(x).numpy()
    n_calls = sum(n for n, _ in prof.stats.values())
    m(x)  # after the block: not recorded
    assert sum(n for n, _ in prof.stats.values()) == n_calls
    np.testing.assert_array_equal(got, ref)


def test_backward_phase_is_restored_after_an_error():
    x = engine.tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="grad shape"):
        y.backward(np.ones(2, np.float32))
    with engine.profile() as prof:
        (x * 3).sum()
    assert {p for (p, *_rest) in prof.stats} == {"forward"}


def test_compiled_graph_nodes_are_recorded_per_module():
    engine.manual_seed(0)
    m, (x, _) = Net(), _data()
    m.eval()
    cm = graph.compile(m, x, backend="numpy")
    with engine.profile(m) as prof:
        out = cm(x)
    np.testing.assert_allclose(np.asarray(out.numpy() if hasattr(out, "numpy") else out), m(x).numpy(),
                               rtol=1e-5, atol=1e-6)
    phases = {p for (p, *_rest) in prof.stats}
    layers = {layer for (_p, layer, _t, _op) in prof.stats}
    assert phases == {"graph"}
    assert {"conv", "fc"} <= layers


def _kernel_nodes(compiled) -> int:
    """Nodes that call a kernel: all but the reshapes the memory plan makes free aliases."""
    plan = compiled.plan
    return sum(1 for n in compiled.graph.nodes if not (n in plan.inplace and n.op.name == "reshape"))


def test_compiled_runs_report_the_executor_time_outside_kernels_per_node():
    engine.manual_seed(0)
    m, (x, _) = Net(), _data()
    m.eval()
    cm = graph.compile(m, x, backend="numpy")
    cm(x)  # outside any profile: recorded nowhere
    with engine.profile(m) as prof:
        for _ in range(3):
            cm(x)
    g = prof.graph_overhead()
    nodes = _kernel_nodes(cm.compiled)
    assert g["runs"] == 3 and g["nodes"] == 3 * nodes
    # the kernel calls of the runs are exactly the graph-phase rows, each node once per run
    graph_stats = [(n, s) for (p, *_rest), (n, s) in prof.stats.items() if p == "graph"]
    assert sum(n for n, _ in graph_stats) == g["nodes"]
    assert g["kernel_ms"] == pytest.approx(sum(s for _, s in graph_stats) * 1e3)
    assert 0 < g["kernel_ms"] < g["wall_ms"] <= prof.wall_s * 1e3
    assert g["outside_ms"] == pytest.approx(g["wall_ms"] - g["kernel_ms"])
    assert g["outside_us_per_node"] == pytest.approx(g["outside_ms"] * 1e3 / g["nodes"])


def test_compiled_training_step_runs_are_reported_and_eager_blocks_have_none():
    engine.manual_seed(0)
    m, (x, y) = Net(), _data()
    opt = engine.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    step = graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numpy")
    with engine.profile(m) as prof:
        step(x, y)
        step(x, y)
    g = prof.graph_overhead()
    assert g["runs"] == 2 and g["nodes"] == 2 * _kernel_nodes(step)
    assert {p for (p, *_rest) in prof.stats} == {"graph"}
    with engine.profile(m) as eager:
        F.cross_entropy(m(x), y).backward()
    assert eager.graph_overhead()["runs"] == 0 and eager.graph_overhead()["nodes"] == 0
