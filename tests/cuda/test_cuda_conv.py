"""cuda conv2d kernels (implicit GEMM and direct) against the numpy reference, in numba's simulator, with tiny tiles
so odd sizes straddle tile edges; plus the algorithm choice (heuristic, forced, measured, deterministic)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

if not cuda.is_available():
    pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1 set before numba is imported", allow_module_level=True)

import engine  # noqa: E402
from backends.cuda.conv import drivers, select  # noqa: E402
from backends.cuda.epilogue import Epilogue  # noqa: E402
from backends.cuda.tiling import Tile  # noqa: E402
from backends.numpy.table import backend as ref  # noqa: E402
from engine.primitive import Spec  # noqa: E402
from tests.cuda.small_tiles import use_small_tiles  # noqa: E402


@pytest.fixture
def small(monkeypatch):
    use_small_tiles(monkeypatch)


# (x shape, w shape, stride, padding, dilation, groups)
CASES = {
    "3x3 pad1": ((2, 3, 5, 6), (4, 3, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    "stride2 asym pad": ((1, 3, 7, 5), (5, 3, 3, 2), (2, 2), ((1, 0), (0, 1)), (1, 1), 1),
    "dilation": ((1, 2, 7, 7), (3, 2, 3, 3), (1, 2), ((2, 2), (1, 1)), (2, 1), 1),
    "1x1 stride2": ((1, 5, 5, 5), (3, 5, 1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
    "groups": ((1, 4, 5, 5), (6, 2, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 2),
    "depthwise x2": ((2, 3, 6, 5), (6, 1, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 3),
}


def _data(case: str, dtype=np.float32):
    xs, ws, stride, padding, dilation, groups = CASES[case]
    rng = np.random.default_rng(len(case))
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    y = np.empty((xs[0], ws[0], *drivers.out_hw(xs, ws, attrs)), dtype)
    ref.kernel("conv2d")(x, w, out=y, **attrs)
    gy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, y, gy, attrs


def _algorithms(case: str, role: str, dtype=np.float32) -> list[str]:
    xs, ws, stride, padding, dilation, groups = CASES[case]
    hw = drivers.out_hw(xs, ws, {"stride": stride, "padding": padding, "dilation": dilation})
    return select.candidates(role, xs, ws, hw, groups, dtype)


def _close(got: np.ndarray, want: np.ndarray, dtype=np.float32) -> None:
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("case", list(CASES))
def test_every_algorithm_matches_reference(small, case: str) -> None:
    """Forward, input gradient and weight gradient with every candidate kernel of the layer."""
    x, w, y, gy, attrs = _data(case)
    gx = np.empty_like(x)
    ref.kernel("conv2d_input_grad")(gy, w, out=gx, input_shape=x.shape, **attrs)
    gw = np.empty_like(w)
    ref.kernel("conv2d_weight_grad")(x, gy, out=gw, weight_shape=w.shape, **attrs)
    dx, dw, dgy = cuda.to_device(x), cuda.to_device(w), cuda.to_device(gy)
    for algo in _algorithms(case, "forward"):
        out = cuda.device_array(y.shape, y.dtype)
        drivers.run_forward(algo, dx, dw, out, Epilogue.of(y.dtype), attrs)
        _close(out.copy_to_host(), y)
    for algo in _algorithms(case, "input_grad"):
        out = cuda.device_array(x.shape, x.dtype)
        drivers.run_input_grad(algo, dgy, dw, out, attrs)
        _close(out.copy_to_host(), gx)
    for algo in _algorithms(case, "weight_grad"):
        out = cuda.device_array(w.shape, w.dtype)
        drivers.run_weight_grad(algo, dx, dgy, out, attrs)
        _close(out.copy_to_host(), gw)


def test_weight_grad_split_k_sums_in_order(small, monkeypatch) -> None:
    """Split-K partial sums plus the fixed-order sum kernel give the reference gradient, and the same bits twice."""
    x, w, _, gy, attrs = _data("stride2 asym pad")
    want = np.empty_like(w)
    ref.kernel("conv2d_weight_grad")(x, gy, out=want, weight_shape=w.shape, **attrs)
    monkeypatch.setattr(drivers, "weight_grad_splits", lambda *a: 3)
    runs = []
    for _ in range(2):
        out = cuda.device_array(w.shape, w.dtype)
        drivers.run_weight_grad("igemm-64x64", cuda.to_device(x), cuda.to_device(gy), out, attrs)
        runs.append(out.copy_to_host())
    _close(runs[0], want)
    np.testing.assert_array_equal(runs[0], runs[1])


ACTIVATIONS = [("relu", ()), ("leaky_relu", (("negative_slope", 0.2),)), ("elu", (("alpha", 0.7),)),
               ("sigmoid", ()), ("tanh", ()), ("silu", ()), ("none", ())]


@pytest.mark.parametrize("case", ["3x3 pad1", "depthwise x2"])
def test_fused_conv_epilogue(small, case: str) -> None:
    """bias + residual + every activation, applied by the forward kernels on store (igemm and direct)."""
    x, w, y, _, attrs = _data(case)
    rng = np.random.default_rng(1)
    b, r = rng.standard_normal(w.shape[0]).astype(np.float32), rng.standard_normal(y.shape).astype(np.float32)
    dev = [cuda.to_device(a) for a in (x, w, b, r)]
    for activation, act_attrs in ACTIVATIONS:
        fused = {"has_bias": True, "has_residual": activation != "none", "activation": activation,
                 "act_attrs": act_attrs}
        ins = (x, w, b, r) if fused["has_residual"] else (x, w, b)
        want = np.empty_like(y)
        ref.kernel("fused_conv2d")(*ins, out=want, **attrs, **fused)
        out = cuda.device_array(y.shape, y.dtype)
        drivers.fused_conv2d(*dev[:len(ins)], out=out, **attrs, **fused)
        _close(out.copy_to_host(), want)


def test_float64(small) -> None:
    x, w, y, gy, attrs = _data("stride2 asym pad", np.float64)
    gx, gw = np.empty_like(x), np.empty_like(w)
    ref.kernel("conv2d_input_grad")(gy, w, out=gx, input_shape=x.shape, **attrs)
    ref.kernel("conv2d_weight_grad")(x, gy, out=gw, weight_shape=w.shape, **attrs)
    dx, dw, dgy = cuda.to_device(x), cuda.to_device(w), cuda.to_device(gy)
    out = cuda.device_array(y.shape, y.dtype)
    drivers.conv2d(dx, dw, out=out, **attrs)
    _close(out.copy_to_host(), y, np.float64)
    out = cuda.device_array(x.shape, x.dtype)
    drivers.conv2d_input_grad(dgy, dw, out=out, input_shape=x.shape, **attrs)
    _close(out.copy_to_host(), gx, np.float64)
    out = cuda.device_array(w.shape, w.dtype)
    drivers.conv2d_weight_grad(dx, dgy, out=out, weight_shape=w.shape, **attrs)
    _close(out.copy_to_host(), gw, np.float64)


# --- algorithm choice (production tiles: pure shape arithmetic, nothing launches) ---------------------------------
def test_heuristic_choices() -> None:
    big = ((32, 512, 28, 28), (512, 512, 3, 3), (28, 28), 1)  # 4 x 196 blocks of 128
    assert select.candidates("forward", *big, np.float32)[0] == "igemm-128x128"
    half = ((32, 64, 56, 56), (64, 64, 3, 3), (56, 56), 1)  # 64 output channels fill half a 128 tile
    assert select.candidates("forward", *half, np.float32)[0] == "igemm-64x64"
    small = ((1, 64, 8, 8), (64, 64, 3, 3), (8, 8), 1)  # 1 x 1 blocks of 128: the 64 tile gives 4x more blocks
    assert select.candidates("forward", *small, np.float32)[0] == "igemm-64x64"
    assert select.candidates("forward", *big, np.float64) == ["igemm-64x64"]
    assert select.candidates("forward", (8, 32, 28, 28), (32, 1, 3, 3), (28, 28), 32, np.float32)[0] == "direct"
    assert select.candidates("forward", (8, 64, 28, 28), (64, 32, 3, 3), (28, 28), 2, np.float32)[0] != "direct"
    assert select.weight_grad_splits(Tile(64, 64, 8, 4, 4), 64, 576, 32 * 56 * 56, 1) > 1
    assert select.weight_grad_splits(Tile(64, 64, 8, 4, 4), 64, 576, 64, 1) == 1


def test_policy_forced_measured_and_deterministic(small, monkeypatch) -> None:
    x, w, _, _, attrs = _data("groups")
    dx, dw = cuda.to_device(x), cuda.to_device(w)
    select.clear_cache()
    monkeypatch.setattr(select, "_policy", [None])
    monkeypatch.setenv("CONVGRAPH_CONV_ALGO", "heuristic")
    assert drivers.forward_choice(dx, dw, attrs).how == "heuristic"
    select.set_conv_policy("direct")
    assert drivers.forward_choice(dx, dw, attrs).describe() == "direct (forced)"
    monkeypatch.setattr(select, "_policy", [None])
    monkeypatch.setenv("CONVGRAPH_CONV_ALGO", "winograd-f4")  # another backend's name: the heuristic here
    assert drivers.forward_choice(dx, dw, attrs).how == "heuristic"
    select.set_conv_policy("measure")
    engine.use_deterministic_algorithms(True)
    try:
        assert drivers.forward_choice(dx, dw, attrs).how == "heuristic"
    finally:
        engine.use_deterministic_algorithms(False)
    choice = drivers.forward_choice(dx, dw, attrs)
    assert choice.how == "measured" and set(choice.times_ms) == set(_algorithms("groups", "forward"))
    assert choice.algorithm == min(choice.times_ms, key=choice.times_ms.get)
    assert drivers.forward_choice(dx, dw, attrs) is choice  # cached per shape
    with pytest.raises(ValueError, match="unknown policy 'fastest'"):
        select.set_conv_policy("fastest")
    with pytest.raises(ValueError, match="'winograd-f4' is a numba algorithm, not one of backend 'cuda'"):
        select.set_conv_policy("winograd-f4")
    monkeypatch.setattr(select, "_policy", [None])
    monkeypatch.setenv("CONVGRAPH_CONV_ALGO", "winograd-f6")  # no backend's name: an error, not the heuristic
    with pytest.raises(ValueError, match=r"CONVGRAPH_CONV_ALGO: unknown policy 'winograd-f6' \(read by backend "
                                         r"'cuda'\).*cuda: igemm-128x128, igemm-64x64, direct"):
        drivers.forward_choice(dx, dw, attrs)
    select.clear_cache()


def test_compile_report_notes(small) -> None:
    specs = [Spec((1, 4, 5, 5), np.float32), Spec((6, 2, 3, 3), np.float32)]
    attrs = {"stride": (1, 1), "padding": ((1, 1), (1, 1)), "dilation": (1, 1), "groups": 2}
    assert drivers.conv2d.algorithm(specs, **attrs).endswith("(heuristic)")
    note = drivers.fused_conv2d.algorithm(specs, has_bias=True, has_residual=False, activation="relu", **attrs)
    assert note.endswith("+ epilogue(bias, relu)")
    wspecs = [specs[0], Spec((1, 6, 5, 5), np.float32)]
    assert "heuristic" in drivers.conv2d_weight_grad.algorithm(wspecs, weight_shape=(6, 2, 3, 3), **attrs)
