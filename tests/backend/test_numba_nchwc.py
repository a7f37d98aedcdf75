"""``nchwc-winograd-f2`` / ``-f4`` (backends/numba/conv/nchwc.py): NCHW 3x3 stride-1 convs run on the blocked
Winograd kernel between two reorders, forward (with every epilogue part) and input gradient, vs the numpy
reference (float64): odd channel counts that are not multiples of the 16-lane block, more than one 32-channel
weight panel, batch 1 and 3, paddings 0..2 (asymmetric too); the input gradient through the kernel table and as a
specialized call re-reading new weights; compile_step training steps with it forced vs float64 numpy steps; the
heuristic's pick on the deep float32 layers."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import engine.nn as nn
import engine.optim as optim
import graph
from backends.numba.conv import drivers, select
from backends.numba.conv.epilogue import Epilogue
from backends.numba.conv.nchwc import conv3x3, input_grad3x3
from backends.numba.elementwise import RELU
from engine import Tensor
from engine.backend import specialize
from tests.helpers import run_kernel

nb = pytest.importorskip("backends.numba").backend
ALGOS = {"nchwc-winograd-f2": 2, "nchwc-winograd-f4": 4}


def _attrs(padding=1):
    p = padding if isinstance(padding, tuple) else ((padding, padding), (padding, padding))
    return {"stride": (1, 1), "padding": p, "dilation": (1, 1), "groups": 1}


# (x shape, out channels, padding)
CASES = [
    ((1, 3, 7, 7), 5, 1),  # odd plane: partial tiles; 3 input lanes of 16
    ((3, 17, 8, 9), 33, 1),  # 17 = one block and a lane; 33 output channels: two weight panels
    ((1, 6, 8, 11), 3, 2),
    ((3, 5, 6, 5), 19, ((0, 2), (1, 0))),  # asymmetric padding
    ((1, 9, 3, 3), 11, 0),  # one output pixel
]
IDS = [f"{xs}-o{o}-p{p}" for xs, o, p in CASES]


def _tol(ref):
    return {"rtol": 1e-4, "atol": 1e-4 * max(1.0, float(np.abs(ref).max()))}


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("xs,o,pad", CASES, ids=IDS)
def test_forward_and_input_grad_vs_numpy(rng, xs, o, pad, algo):
    attrs = _attrs(pad)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((o, xs[1], 3, 3)).astype(np.float32)
    (ref,) = run_kernel("numpy", "conv2d", [x.astype(np.float64), w.astype(np.float64)], **attrs)
    out = np.full(ref.shape, 7, np.float32)  # junk: every output pixel must be written
    conv3x3(x, w, out, Epilogue(np.float32), attrs["padding"], ALGOS[algo])
    np.testing.assert_allclose(out, ref, **_tol(ref))

    gy = rng.standard_normal(ref.shape).astype(np.float32)
    (gref,) = run_kernel("numpy", "conv2d_input_grad", [gy.astype(np.float64), w.astype(np.float64)],
                         input_shape=xs, **attrs)
    gx = np.full(xs, 7, np.float32)
    input_grad3x3(gy, w, gx, attrs["padding"], ALGOS[algo])
    np.testing.assert_allclose(gx, gref, **_tol(gref))


def test_epilogue(rng):
    xs, o = (2, 5, 7, 9), 6
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((o, 5, 3, 3)).astype(np.float32)
    b, s = rng.standard_normal(o).astype(np.float32), (rng.random(o) + 0.5).astype(np.float32)
    (y,) = run_kernel("numpy", "conv2d", [x.astype(np.float64), w.astype(np.float64)], **_attrs(1))
    r = rng.standard_normal(y.shape).astype(np.float32)
    expect = np.maximum(y * s[:, None, None] + b[:, None, None] + r, 0)
    out = np.full(y.shape, 7, np.float32)
    conv3x3(x, w, out, Epilogue(np.float32, bias=b, scale=s, residual=r, act=RELU), _attrs(1)["padding"], 4)
    np.testing.assert_allclose(out, expect, **_tol(expect))
    out_t = np.full(y.shape[::-1], 7, np.float32).T  # a non-contiguous output view gets the epilogue too
    conv3x3(x, w, out_t, Epilogue(np.float32, bias=b, scale=s, residual=r, act=RELU), _attrs(1)["padding"], 2)
    np.testing.assert_allclose(out_t, expect, **_tol(expect))


@pytest.mark.parametrize("algo", list(ALGOS))
def test_kernels_through_the_table_and_specialized(rng, algo, monkeypatch):
    """Forced by the policy: conv2d and conv2d_input_grad through the numba kernel table (non-contiguous x and w
    too), and the input gradient specialized once to its arrays, re-reading new gy and w contents per call (an
    optimizer changes w between training steps)."""
    monkeypatch.setattr(select, "_policy", [algo])
    xs, ws, attrs = (3, 20, 6, 7), (18, 20, 3, 3), _attrs(1)
    x = rng.standard_normal((3, 40, 7, 6)).astype(np.float32).transpose(0, 1, 3, 2)[:, ::2]
    w = rng.standard_normal((20, 18, 3, 3)).astype(np.float32).transpose(1, 0, 2, 3)
    assert x.shape == xs and w.shape == ws and not (x.flags.c_contiguous or w.flags.c_contiguous)
    (ref,) = run_kernel("numpy", "conv2d", [x.astype(np.float64), w.astype(np.float64)], **attrs)
    (got,) = run_kernel("numba", "conv2d", [x, w], **attrs)
    np.testing.assert_allclose(got, ref, **_tol(ref))

    gy, w = rng.standard_normal(ref.shape).astype(np.float32), np.ascontiguousarray(w)
    out = np.empty(xs, np.float32)
    call = specialize(nb.kernel("conv2d_input_grad"), [gy, w], out, dict(attrs, input_shape=xs))
    assert call.args[0] == algo
    for step in range(2):
        (want,) = run_kernel("numpy", "conv2d_input_grad", [gy.astype(np.float64), w.astype(np.float64)],
                             input_shape=xs, **attrs)
        call()
        np.testing.assert_allclose(out, want, **_tol(want), err_msg=f"call {step}")
        gy[...] = rng.standard_normal(gy.shape)
        w[...] = rng.standard_normal(w.shape)


def test_heuristic_picks_the_blocked_kernel_on_deep_float32_layers():
    a = _attrs(1)
    assert select.heuristic("forward", (32, 64, 32, 32), (64, 64, 3, 3), a) == "nchwc-winograd-f4"
    assert select.heuristic("input_grad", (32, 256, 8, 8), (256, 256, 3, 3), a) == "nchwc-winograd-f4"
    assert select.heuristic("input_grad", (32, 512, 4, 4), (512, 512, 3, 3), a) == "nchwc-winograd-f2"  # 32 tiles
    assert select.heuristic("forward", (32, 64, 32, 32), (64, 64, 3, 3), a, np.float64) == "winograd-f4"
    assert select.heuristic("weight_grad", (32, 64, 32, 32), (64, 64, 3, 3), a) == "nchwc-winograd-f4"
    assert select.heuristic("weight_grad", (32, 64, 32, 32), (64, 64, 3, 3), a, np.float64) == "winograd-f4"
    assert "nchwc-winograd-f2" in select.candidates("forward", (2, 8, 9, 9), (6, 8, 3, 3), a)  # measurable


class Net(nn.Module):
    """Two 3x3 stride-1 convs with odd channel counts, then a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(5, 18, 3, padding=1)
        self.conv2 = nn.Conv2d(18, 7, 3, padding=1, bias=False)
        self.fc = nn.Linear(7 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(F.flatten(F.relu(self.conv2(F.relu(self.conv1(x)))), 1))


@pytest.mark.parametrize("algo", list(ALGOS))
def test_compile_step_on_the_blocked_kernel_equals_the_numpy_reference(algo, monkeypatch):
    """Three SGD-momentum steps of compile_step with the algorithm forced: the weights change between steps, so U
    must be made from the current weights on every call; parameters equal the float64 numpy steps."""
    calls = []
    monkeypatch.setattr(drivers, "nchwc_conv3x3", lambda *a, **k: calls.append(1) or conv3x3(*a, **k))
    monkeypatch.setattr(select, "_policy", [algo])
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 5, 6, 6)), np.array([0, 2, 1])
    models = {}
    for backend, dtype in (("numba", np.float32), ("numpy", np.float64)):
        engine.manual_seed(0)
        m = Net().double() if dtype == np.float64 else Net()
        m.train()
        opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        step = graph.compile_step(m, F.cross_entropy, opt, Tensor(x.astype(dtype)), Tensor(y), backend=backend)
        for _ in range(3):
            step(Tensor(x.astype(dtype)), Tensor(y))
        models[backend] = m
    assert calls  # the forced algorithm ran (the forward of both convs; conv2's input gradient through the same)
    for (k, a), b in zip(models["numba"].state_dict().items(), models["numpy"].state_dict().values()):
        np.testing.assert_allclose(np.asarray(a.data), np.asarray(b.data), rtol=1e-4, atol=1e-5, err_msg=k)

