"""The device seam without a GPU: everything runs on "fakedev" (tests/null/fake_device.py), whose arrays refuse
numpy and whose kernels refuse host arrays, and must equal the numpy backend. A device array escaping to numpy, or
a host array reaching a device kernel, fails these tests loudly."""

from __future__ import annotations

import math

import numpy as np
import pytest

import engine
import graph
from engine import Tensor, nn, optim
from engine import functional as F
from tests.null.fake_device import DEVICE, FakeArray, fake_backend

RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 3, 8, 8)).astype(np.float32)
Y = np.array([1, 3, 0, 4])


@pytest.fixture(autouse=True)
def _numpy_reference():
    fake_backend()
    with engine.use_backend("numpy"):  # host tensors run the same numpy kernels fakedev wraps
        yield


def _model(dropout: bool = False) -> nn.Module:
    engine.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
    layers += [nn.Dropout(0.25)] if dropout else []
    return nn.Sequential(*layers, nn.Linear(4 * 4 * 4, 5))


def _on(dev: str, *arrays: np.ndarray) -> list[Tensor]:
    return [Tensor(a).to(dev) for a in arrays]


def _close(a: Tensor | np.ndarray, b: Tensor | np.ndarray, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    a = a.numpy() if isinstance(a, Tensor) else a
    b = b.numpy() if isinstance(b, Tensor) else b
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def _host_state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_tensor_device_basics():
    t = Tensor(X[0, 0]).to(DEVICE)
    assert t.device == DEVICE and isinstance(t.data, FakeArray)
    assert Tensor(X).device == "cpu" and t.cpu().device == "cpu" and t.to("cpu").device == "cpu"
    np.testing.assert_array_equal(t.numpy(), X[0, 0])  # a host copy
    assert t.sum().item() == pytest.approx(float(X[0, 0].sum()), rel=1e-5)
    assert "device='fakedev'" in repr(t) and f"{X[0, 0, 0, 0]:.4f}"[:5] in repr(t)
    with pytest.raises(TypeError, match="can't convert a tensor on device 'fakedev' to a numpy array"):
        np.asarray(t)
    with pytest.raises(RuntimeError, match="^mul: expected all tensors on one device, got cpu and fakedev"):
        t * Tensor(X[0, 0])
    assert (t * 2.0 + 1).device == DEVICE  # Python scalars go along with the device tensor, as in torch
    _close(t * 2.0 + 1, X[0, 0] * 2 + 1)
    u = t.clone()
    u.add_(1.0)  # in place on the device
    _close(u, X[0, 0] + 1)
    u[0, :2] = 5.0
    assert u.device == DEVICE and u.numpy()[0, :2].tolist() == [5.0, 5.0]
    m = t[t > 0]  # a boolean mask is read on the host, the gather runs on the device
    assert m.device == DEVICE
    _close(m, X[0, 0][X[0, 0] > 0])


def test_unavailable_cuda_is_one_line():
    if "cuda" in engine.available_backends():
        pytest.skip("a GPU or the simulator is present")
    with pytest.raises(ValueError, match="device 'cuda' is not available") as e:
        Tensor(X).to("cuda")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="not available"):
        _model().to("cuda")


def test_eager_autograd_matches_numpy():
    grads = {}
    for dev in ("cpu", DEVICE):
        m = _model().to(dev)
        x, y = _on(dev, X, Y)
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        assert loss.device == dev and all(p.grad.device == dev for p in m.parameters())
        grads[dev] = (loss.item(), [p.grad.numpy() for p in m.parameters()], _host_state(m))
    assert grads[DEVICE][0] == pytest.approx(grads["cpu"][0], rel=1e-6)
    for a, b in zip(grads["cpu"][1], grads[DEVICE][1]):
        _close(b, a)
    for k in grads["cpu"][2]:  # BatchNorm's running statistics, updated on the device
        _close(grads[DEVICE][2][k], grads["cpu"][2][k])


@pytest.mark.parametrize("make_opt", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                                      lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-3)], ids=["sgd", "adam"])
def test_training_steps_match_numpy(make_opt):
    result = {}
    for dev in ("cpu", DEVICE):
        m = _model(dropout=True).to(dev)
        opt = make_opt(m.parameters())
        sched = optim.lr_scheduler.StepLR(opt, 1, 0.5)
        x, y = _on(dev, X, Y)
        engine.manual_seed(1)
        for _ in range(3):
            opt.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            total = nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            opt.step()
            sched.step()
        assert all(p.device == dev for p in m.parameters())
        state = opt.state_dict()["state"]
        assert all(isinstance(v, (np.ndarray, int, float)) for s in state.values() for v in s.values())
        result[dev] = (float(total), _host_state(m), state)
    assert result[DEVICE][0] == pytest.approx(result["cpu"][0], rel=1e-5)
    for k, v in result["cpu"][1].items():
        _close(result[DEVICE][1][k], v, rtol=1e-4, atol=1e-6)
    for i, s in result["cpu"][2].items():
        for k, v in s.items():
            _close(np.asarray(result[DEVICE][2][i][k], np.float64), np.asarray(v, np.float64), rtol=1e-4, atol=1e-6)


def test_clip_and_norms_on_device():
    for norm_type in (2.0, 1.0, math.inf):
        totals = {}
        for dev in ("cpu", DEVICE):
            ps = [nn.Parameter(Tensor(a).to(dev)._data if dev != "cpu" else a.copy()) for a in (X[0], X[1, :2])]
            for p, a in zip(ps, (X[2], X[3, :2])):
                p.grad = Tensor(a).to(dev)
            totals[dev] = float(nn.utils.clip_grad_norm_(ps, 1.0, norm_type))
            nn.utils.clip_grad_value_(ps, 0.01)
            totals[dev, "g"] = [p.grad.numpy() for p in ps]
        assert totals[DEVICE] == pytest.approx(totals["cpu"], rel=1e-6)
        for a, b in zip(totals["cpu", "g"], totals[DEVICE, "g"]):
            _close(b, a)


def test_checkpoint_round_trip(tmp_path):
    m = _model().to(DEVICE)
    opt = optim.Adam(m.parameters(), lr=1e-2)
    x, y = _on(DEVICE, X, Y)
    F.cross_entropy(m(x), y).backward()
    opt.step()
    path = tmp_path / "ck.npz"
    engine.io.save_checkpoint(path, m, opt, epoch=1)
    fresh = nn.Sequential(*(type(layer)(*args) for layer, args in zip(
        m, [(3, 4, 3), (4,), (), (2,), (), (64, 5)])))
    fresh[0] = nn.Conv2d(3, 4, 3, padding=1)
    fresh.to(DEVICE)
    fopt = optim.Adam(fresh.parameters(), lr=1e-2)
    engine.io.load_checkpoint(path, fresh, fopt)
    assert all(t.device == DEVICE for t in fresh.state_dict().values())
    for k, v in _host_state(m).items():
        np.testing.assert_array_equal(fresh.state_dict()[k].numpy(), v)
    # the loaded optimizer resumes on the device exactly as the saved one continues
    for mm, oo in ((m, opt), (fresh, fopt)):
        oo.zero_grad()
        F.cross_entropy(mm(x), y).backward()
        oo.step()
    for k, v in _host_state(m).items():
        np.testing.assert_array_equal(fresh.state_dict()[k].numpy(), v)
    host = _model()
    engine.io.load_checkpoint(path, host)  # a device checkpoint loads into a host model too
    assert all(t.device == "cpu" for t in host.state_dict().values())


def test_compiled_inference_on_device():
    fb = fake_backend()
    m = _model().eval()
    ref = graph.compile(m, X, backend="numpy")(X).numpy()
    cm = graph.compile(m.to(DEVICE), X, backend=DEVICE, check=True)
    assert cm.report["check"]["max_abs_diff"] < 1e-5
    out = cm(X)  # host in, host out
    assert out.device == "cpu"
    _close(out, ref)
    fb.h2d = fb.d2h = 0
    cm(X)
    report = cm.report["transfer"]
    assert report == {"h2d_bytes": X.nbytes, "d2h_bytes": ref.nbytes}
    assert (fb.h2d, fb.d2h) == (X.nbytes, ref.nbytes)  # constants were uploaded once, by the first call
    assert cm.compiled.executor.transfer == report
    assert "host<->device per call" in str(cm.report)
    on_dev = cm(Tensor(X).to(DEVICE))  # device in, device out: nothing copied
    assert on_dev.device == DEVICE and cm.compiled.executor.transfer["h2d_bytes"] == 0
    assert isinstance(cm.compiled.executor.arena, FakeArray)
    assert graph.compile(_model().eval(), X, backend="numpy").report["transfer"] == {"h2d_bytes": 0, "d2h_bytes": 0}
    _close(graph.compile(m, X, backend=DEVICE, arena=False)(X), ref)  # the plain executor allocates on the device


def test_compiled_training_on_device():
    out = {}
    for dev, be in (("cpu", "numpy"), (DEVICE, DEVICE)):
        m = _model().to(dev)
        opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        step = graph.compile_step(m, F.cross_entropy, opt, X, Y, backend=be)
        losses = [step(X, Y).item() for _ in range(3)]
        assert all(p.device == dev for p in m.parameters())
        m2 = _model().to(dev).train()
        cm = graph.compile(m2, X, backend=be)
        x, y = _on(dev, X, Y)
        loss = F.cross_entropy(cm(x), y)
        loss.backward()
        out[dev] = (losses, _host_state(m), loss.item(), [p.grad.numpy() for p in m2.parameters()], _host_state(m2))
    np.testing.assert_allclose(out[DEVICE][0], out["cpu"][0], rtol=1e-5)
    for k, v in out["cpu"][1].items():
        _close(out[DEVICE][1][k], v, rtol=1e-4, atol=1e-6)
    assert out[DEVICE][2] == pytest.approx(out["cpu"][2], rel=1e-6)
    for a, b in zip(out["cpu"][3], out[DEVICE][3]):
        _close(b, a)
    for k, v in out["cpu"][4].items():
        _close(out[DEVICE][4][k], v)


def test_compiled_graph_refuses_host_parameters():
    m = _model()
    opt = optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="lives on cpu, the graph runs on backend 'fakedev'.*model.to"):
        graph.compile_step(m, F.cross_entropy, opt, X, Y, backend=DEVICE)(X, Y)


def test_profiler_sees_device_kernels():
    m = _model().to(DEVICE)
    opt = optim.SGD(m.parameters(), lr=0.1)
    x, y = _on(DEVICE, X, Y)
    with engine.profile(m) as prof:
        F.cross_entropy(m(x), y).backward()
        opt.step()
    ops = {r["op"] for r in prof.rows("op")}
    assert {"conv2d", "batch_norm_train", "SGD update"} <= ops, ops


def test_set_backend_runs_device_tensors_there():
    x = Tensor(X).to(DEVICE)
    with engine.use_backend(DEVICE):
        y = (x * 2).relu()
    assert y.device == DEVICE
    _close(y, np.maximum(X * 2, 0))


OPS_WITH_CONSTANTS = {  # ops that make host tables or defaults next to their input: they must follow its device
    "cross_entropy_weighted": lambda x: F.cross_entropy(x.flatten(1)[:, :5], Tensor(Y).to(x.device),
                                                        weight=Tensor(np.arange(1, 6, dtype=np.float32)).to(x.device)),
    "binary_cross_entropy": lambda x: F.binary_cross_entropy(x.sigmoid(), (x > 0).float()),
    "batch_norm_no_affine": lambda x: F.batch_norm(x, None, None, training=True),
    "group_norm_single": lambda x: F.group_norm(x[:, :, :1, :1], 3),
    "interpolate_bilinear": lambda x: F.interpolate(x, size=(5, 7), mode="bilinear"),
    "weighted_avg_pool2d": lambda x: F.weighted_avg_pool2d(x, 3, 1, 1, 1.0),
    "take_along_dim": lambda x: F.take_along_dim(x, Tensor(np.zeros((4, 3, 8, 1), np.int64)).to(x.device), 3),
    "l1_weighted": lambda x: F.l1_loss(x, x * 0.5, weight=np.full(X.shape, 2.0, np.float32)),
}


@pytest.mark.parametrize("name", list(OPS_WITH_CONSTANTS))
def test_ops_with_constants_follow_the_device(name):
    fn = OPS_WITH_CONSTANTS[name]
    ref = fn(Tensor(X, requires_grad=True))
    x = Tensor(X).to(DEVICE).requires_grad_()
    got = fn(x)
    assert got.device == DEVICE
    _close(got, ref, rtol=1e-5, atol=1e-6)
    got.sum().backward()
    assert x.grad.device == DEVICE


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 3), nn.Linear(6, 2)

    def forward(self, x):
        return self.a(x), self.b(x)


def test_compiled_backward_with_an_unused_output_on_device():
    grads = {}
    xa = RNG.standard_normal((4, 6)).astype(np.float32)
    for dev, be in (("cpu", "numpy"), (DEVICE, DEVICE)):
        engine.manual_seed(0)
        m = _TwoHeads().to(dev)
        a, _ = graph.compile(m, xa, backend=be)(Tensor(xa).to(dev))  # b gets no cotangent: zeros on the device
        (a * a).sum().backward()
        grads[dev] = [p.grad.numpy() if p.grad is not None else None for p in m.parameters()]
    for g_ref, g in zip(grads["cpu"], grads[DEVICE]):
        assert (g_ref is None) == (g is None)
        if g is not None:
            _close(g, g_ref)
    t = engine.tensor(Tensor(X).to(DEVICE))  # engine.tensor copies, on the tensor's device
    assert t.device == DEVICE


def test_creation_takes_a_device():
    engine.manual_seed(3)
    a = engine.randn(2, 3, device=DEVICE)
    engine.manual_seed(3)
    assert a.device == DEVICE and np.array_equal(a.numpy(), engine.randn(2, 3).numpy())
    assert engine.zeros(2, device=DEVICE).device == DEVICE and engine.full((2,), 1.5, device=DEVICE).device == DEVICE
    assert engine.ones(2, device="cpu").device == "cpu"
