"""The training layout pass (graph/passes/train_layout.py) and the blocked training primitives
(engine/ops/blocked_train.py): a small residual net with 20 and 36 channels (pad lanes in every block) trained
through compile_step and compile() + the eager optimizer with the pass on equals eager training (numpy float64 to
1e-10; numba float32 on the blocked Winograd kernel vs numpy float64 to 1e-4), also under a memory budget; the
pass leaves blocked values between the convolutions (counted); the numba blocked batch-norm kernels vs the numpy
reference with pad lanes kept zero, and rematerialization's blocked y from kept statistics bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import engine.nn as nn
import engine.optim as optim
import graph
from engine import Tensor
from tests.helpers import run_kernel


class Net(nn.Module):
    def __init__(self, c: int = 20, wide: int = 36):
        super().__init__()
        self.conv0, self.bn0 = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv3, self.bn3 = nn.Conv2d(c, wide, 3, padding=1), nn.BatchNorm2d(wide)  # a bias (VGG-BN has them)
        self.fc = nn.Linear(wide, 3)

    def forward(self, x):
        h = F.relu(self.bn0(self.conv0(x)))
        r = F.relu(self.bn1(self.conv1(h)))
        h = F.relu(self.bn2(self.conv2(r)) + h)
        h = F.relu(self.bn3(self.conv3(h)))
        return self.fc(F.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def _data(dtype):
    rng = np.random.default_rng(0)
    return Tensor(rng.standard_normal((4, 3, 8, 8)).astype(dtype)), Tensor(np.array([0, 2, 1, 2]))


def _train(backend: str, dtype, mode: str, layout, steps: int = 3, budget=None):
    engine.manual_seed(0)
    m = Net().double() if dtype == np.float64 else Net()
    m.train()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, y = _data(dtype)
    compiled = None
    with engine.use_backend(backend):
        if mode == "step":
            compiled = graph.compile_step(m, F.cross_entropy, opt, x, y, backend=backend, layout=layout,
                                          memory_budget=budget)
            for _ in range(steps):
                compiled(x, y)
        else:
            fwd = m if mode == "eager" else graph.compile(m, x, backend=backend, layout=layout, memory_budget=budget)
            compiled = None if mode == "eager" else fwd
            for _ in range(steps):
                opt.zero_grad()
                F.cross_entropy(fwd(x), y).backward()
                opt.step()
    return m, compiled


def _assert_equal(a, b, **tol):
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_allclose(np.asarray(va.data, np.float64), np.asarray(vb.data, np.float64), err_msg=k,
                                   **tol)


def _ops(g) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in g.nodes:
        out[n.op.name] = out.get(n.op.name, 0) + 1
    return out


def test_the_pass_keeps_values_blocked_between_convolutions():
    _, step = _train("numpy", np.float64, "step", 16, steps=0)
    ops = _ops(step.graph)
    # conv1..3 in all three roles; conv0 reads the 3-channel image (NCHW, and its input has no gradient)
    assert ops["blocked_conv2d_train"] == 3 and ops["blocked_conv2d_input_grad"] == 3
    assert ops["blocked_conv2d_weight_grad"] == 3 and ops["conv2d"] == ops["conv2d_weight_grad"] == 1
    assert ops["blocked_batch_norm_train"] == ops["blocked_batch_norm_train_grad"] == 3
    assert "conv2d_input_grad" not in ops and ops["blocked_pool"] == 1
    # reorders only at the edges: conv0's ReLU into blocks, the pooled value out, its gradient in, conv0's
    # backward (its BN gradient reads the blocked gradient as NCHW) and conv3's bias gradient (a sum over N, H, W)
    reorders = step.report["layout"]["reorders"]
    assert ops["to_blocked"] + ops["from_blocked"] == len(reorders) == 5, reorders
    assert {n.meta["phase"] for n in step.graph.nodes if n.op.name.endswith("_blocked")} == {"forward", "backward"}
    assert "NCHW16c" in str(step.report)
    from graph.render import to_dot

    drawn = to_dot(step.graph, None, None).source  # the rendered graph shows layouts and the reorders
    assert drawn.count("reorder → NCHW16c") == ops["to_blocked"] and "layout NCHW16c" in drawn


def test_layout_auto_declines_and_nchw_leaves_the_graph_alone():
    _, step = _train("numpy", np.float64, "step", "nchw", steps=0)
    assert not any(n.op.name.startswith("blocked") for n in step.graph.nodes)
    _, step = _train("numpy", np.float64, "step", "auto", steps=0)  # the numpy backend asks for no block
    assert not any(n.op.name.startswith("blocked") for n in step.graph.nodes)


@pytest.mark.parametrize("mode", ["step", "compile"])
def test_blocked_training_equals_eager_numpy_float64(mode):
    ref, _ = _train("numpy", np.float64, "eager", None)
    got, compiled = _train("numpy", np.float64, mode, 16)
    g = compiled.graph if mode == "step" else compiled.compile_for(_data(np.float64)[0]).graph
    assert any(n.op.name == "blocked_batch_norm_train_grad" for n in g.nodes)
    _assert_equal(got, ref, rtol=1e-10, atol=1e-12)


def test_blocked_training_under_a_memory_budget_equals_no_budget():
    free, _ = _train("numpy", np.float64, "step", 16)
    tight, step = _train("numpy", np.float64, "step", 16, budget=0.6)
    assert step.report["remat"]["recomputed"] > 0
    assert any(n.op.name == "blocked_batch_norm_apply" for n in step.graph.nodes)  # y again from kept statistics
    _assert_equal(tight, free, rtol=0, atol=0)


@pytest.mark.parametrize("algo", ["nchwc-winograd-f2", "nchwc-winograd-f4"])
def test_blocked_training_on_numba_equals_the_numpy_reference(algo, monkeypatch):
    """compile_step and compile() with every 3x3 layer on the blocked Winograd kernel (no reorders around it),
    weights changing every step: the parameters and running statistics equal float64 numpy eager steps."""
    from backends.numba.conv import blocked_train, select

    calls = []
    real = blocked_train._winograd
    monkeypatch.setattr(blocked_train, "_winograd", lambda *a: calls.append(a[6]) or real(*a))
    monkeypatch.setattr(select, "_policy", [algo])
    ref, _ = _train("numpy", np.float64, "eager", None)
    for mode in ("step", "compile"):
        calls.clear()
        got, compiled = _train("numba", np.float32, mode, "blocked")
        assert False in calls and True in calls  # forward and input gradient ran on blocked values
        _assert_equal(got, ref, rtol=1e-4, atol=1e-5)
    notes = compiled.compile_for(_data(np.float32)[0]).report["algorithms"]
    assert sum(f"{algo} (forced); on the blocked values" in a for a in notes.values()) == 6, notes


def _blocked(x: np.ndarray, block: int = 16) -> np.ndarray:
    return run_kernel("numpy", "to_blocked", [x], block=block)[0]


def test_numba_blocked_batch_norm_kernels_vs_numpy():
    pytest.importorskip("backends.numba")
    rng = np.random.default_rng(3)
    c = 20
    x = (rng.standard_normal((3, c, 5, 6)) * 2 + 1).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    xb, gyb = _blocked(x), _blocked(gy)
    y, mean, var = run_kernel("numpy", "batch_norm_train", [x, w, b], eps=1e-5)
    yb, meanb, varb = run_kernel("numba", "blocked_batch_norm_train", [xb, w, b], eps=1e-5)
    np.testing.assert_allclose(meanb, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(varb, var, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(yb, _blocked(y), rtol=1e-5, atol=1e-5)
    assert not yb[:, 1, ..., c - 16:].any()  # pad lanes stay zero
    # rematerialization's y from the kept statistics: bit for bit (and its relu)
    again, = run_kernel("numba", "blocked_batch_norm_apply", [xb, w, b, meanb, varb], eps=1e-5, relu=False)
    np.testing.assert_array_equal(again, yb)
    again, = run_kernel("numba", "blocked_batch_norm_apply", [xb, w, b, meanb, varb], eps=1e-5, relu=True)
    np.testing.assert_array_equal(again, np.maximum(yb, 0))
    gx, gw, gb = run_kernel("numpy", "batch_norm_train_grad", [gy, x, w, mean, var], eps=1e-5)
    gxb, gwb, gbb = run_kernel("numba", "blocked_batch_norm_train_grad", [gyb, xb, w, mean, var], eps=1e-5)
    np.testing.assert_allclose(gwb, gw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gbb, gb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gxb, _blocked(gx), rtol=1e-4, atol=1e-4)
    assert not gxb[:, 1, ..., c - 16:].any()


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (ResNet-50's block): only the 3x3 layer could run blocked, between two reorders."""

    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.b, self.bn_b = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.c, self.bn_c = nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        h = F.relu(self.bn_a(self.a(x)))
        h = F.relu(self.bn_b(self.b(h)))
        h = F.relu(self.bn_c(self.c(h)))
        return self.fc(F.flatten(F.adaptive_avg_pool2d(h, 1), 1))


@pytest.mark.parametrize("model, kept", [(lambda: Net(32, 32), True), (Net, False), (Bottleneck, False)],
                         ids=["resnet-like", "pad-lanes", "bottleneck"])
def test_layout_auto_keeps_the_rewrite_only_where_it_saves_reorders(model, kept):
    """layout="auto" (what compile_step does on numba by default): a ResNet-like chain of 3x3 layers stays blocked;
    20 / 36 channels (60% / 12% pad lanes) and a 1x1 -> 3x3 -> 1x1 bottleneck stay NCHW, each saying why."""
    from graph.passes import train_layout

    m = model()
    m.train()
    x, y = _data(np.float32)
    step = graph.compile_step(m, F.cross_entropy, optim.SGD(m.parameters(), lr=0.1), x, y, backend="numpy",
                              passes=["dce"], layout=16)
    g = step.graph.copy()
    g.meta["channel_block_auto"] = True
    g, changed = train_layout(g)
    assert changed is kept and any(n.op.name.startswith("blocked") for n in g.nodes) is kept
    if not kept:
        assert ("pad lanes" if isinstance(m, Net) else "no reorder saved") in g.meta["layout"]["declined"]


@pytest.mark.parametrize("algo", ["nchwc-winograd-f2", "nchwc-winograd-f4", "gemm-tables"])
def test_numba_blocked_convolutions_vs_numpy_ignore_pad_lanes(algo, monkeypatch):
    """The three blocked conv kernels (Winograd on the blocked values, or an NCHW algorithm between reorders) equal
    the numpy reference; garbage in their inputs' pad lanes changes nothing and their outputs' pad lanes are 0."""
    pytest.importorskip("backends.numba")
    from backends.numba.conv import select

    monkeypatch.setattr(select, "_policy", [algo])
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 20, 7, 8)), rng.standard_normal((36, 20, 3, 3))
    gy, b = rng.standard_normal((2, 36, 7, 8)), rng.standard_normal(36)
    a = {"stride": (1, 1), "padding": ((1, 1), (1, 1)), "dilation": (1, 1), "groups": 1}
    f32 = [_blocked(x).astype(np.float32), w.astype(np.float32), _blocked(gy).astype(np.float32), b.astype(np.float32)]
    junk = [v.copy() for v in f32]
    junk[0][:, 1, ..., 4:] = 3.0
    junk[2][:, 2, ..., 4:] = -2.0
    ref = [_blocked(x), w, _blocked(gy), b]
    cases = [("blocked_conv2d_train", (0, 1, 3), {}, 36),
             ("blocked_conv2d_input_grad", (2, 1), {"input_shape": x.shape}, 20),
             ("blocked_conv2d_weight_grad", (0, 2), {"weight_shape": w.shape}, 0)]
    for prim, idx, extra, channels in cases:
        want, = run_kernel("numpy", prim, [ref[i] for i in idx], **a, **extra)
        got, = run_kernel("numba", prim, [f32[i] for i in idx], **a, **extra)
        again, = run_kernel("numba", prim, [junk[i] for i in idx], **a, **extra)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=prim)
        np.testing.assert_array_equal(again, got, err_msg=prim)
        if channels:
            assert not got[:, -1, ..., channels % 16:].any(), prim  # pad lanes


def _nchw(xb: np.ndarray, c: int) -> np.ndarray:
    n, cb, h, w, b = xb.shape
    return np.ascontiguousarray(xb.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w)[:, :c])


@pytest.mark.parametrize("algo", ["winograd-f2", "winograd-f4", "nchwc-winograd-f2", "nchwc-winograd-f4"])
def test_numba_blocked_weight_grad_reads_the_blocked_values(algo, monkeypatch):
    """A Winograd pick for the blocked weight gradient runs conv/nchwc_wgrad.py's kernel on the blocked x and gy as
    they are (no reorder back to NCHW), with the conv's padding; its result equals the numpy reference."""
    pytest.importorskip("backends.numba")
    from backends.numba.conv import blocked_train, select

    def no_reorder(*args):
        raise AssertionError("reordered to NCHW")

    monkeypatch.setattr(blocked_train, "_nchw", no_reorder)
    monkeypatch.setattr(select, "_policy", [algo])
    rng = np.random.default_rng(0)
    x, gy = rng.standard_normal((2, 20, 7, 8)), rng.standard_normal((2, 36, 6, 9))  # padding ((1, 0), (2, 1))
    a = {"stride": (1, 1), "padding": ((1, 0), (2, 1)), "dilation": (1, 1), "groups": 1, "weight_shape": (36, 20, 3, 3)}
    want, = run_kernel("numpy", "conv2d_weight_grad", [x, gy], **a)
    got, = run_kernel("numba", "blocked_conv2d_weight_grad", [_blocked(x).astype(np.float32),
                                                              _blocked(gy).astype(np.float32)], **a)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
