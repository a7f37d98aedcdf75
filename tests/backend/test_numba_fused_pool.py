"""conv2d_relu_pool and max_pool2d_tap_relu_grad (engine/ops/fused_pool.py) on numba: the forward against the
unfused numba kernels it replaces (fused_conv2d with ReLU, then max_pool2d: bit for bit, on the gemm-planes path
that computes the pool from the conv rows in cache, and on the general path of other convs and float64) and the
winning taps against a numpy argmax; the backward against max_pool2d_relu_grad (bit for bit) and central finite
differences in float64; the pass (graph/passes/fuse_conv_pool.py) fires on numba only, and a training step with it
equals one without it."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import graph
from backends.numba.conv.geometry import conv_attrs
from backends.numba.conv.select import heuristic
from engine import Tensor
from engine.ops.fused_pool import NO_GRAD
from tests.helpers import run_kernel
from tests.null.test_fuse_backward import UNFUSED, Net, X, Y, _train

POOL = dict(kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False)


def _conv(stride=1, pad=0):
    return dict(stride=(stride, stride), padding=((pad, pad), (pad, pad)), dilation=(1, 1), groups=1)


# (x shape, w shape, conv attrs, dtype, the algorithm the heuristic must pick: the path under test)
CASES = [
    ((3, 1, 14, 14), (6, 1, 5, 5), _conv(), np.float32, "gemm-planes"),  # LeNet's conv1, small: planes path
    ((2, 2, 13, 11), (4, 2, 3, 3), _conv(pad=1), np.float32, "gemm-planes"),  # padding, odd output: last row dropped
    ((2, 8, 10, 10), (40, 8, 3, 3), _conv(), np.float32, None),  # 40 outputs: not planes, the general path
    ((2, 3, 9, 9), (4, 3, 3, 3), _conv(stride=2, pad=1), np.float32, None),  # stride 2: the general path
    ((3, 1, 14, 14), (6, 1, 5, 5), _conv(), np.float64, None),  # float64: the general path
]


def _inputs(xs, ws, dtype, rng):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    return x, w, b


def _taps_reference(y):
    """Each 2x2 window's first maximum (row-major) of y, or NO_GRAD where it is <= 0."""
    n, c, h, w = y.shape
    win = y[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(n, c, h // 2, w // 2, 4)
    return np.where(win.max(axis=-1) <= 0, NO_GRAD, win.argmax(axis=-1)).astype(np.int8)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("xs, ws, conv, dtype, algo", CASES)
def test_forward_equals_conv_relu_then_pool(xs, ws, conv, dtype, algo, bias, rng):
    x, w, b = _inputs(xs, ws, dtype, rng)
    if algo is not None:
        assert heuristic("forward", xs, ws, conv_attrs(**conv), dtype) == algo
    ins = [x, w, b] if bias else [x, w]
    (y,) = run_kernel("numba", "fused_conv2d", ins, has_bias=bias, has_residual=False, activation="relu", **conv)
    (p_ref,) = run_kernel("numba", "max_pool2d", [y], **POOL)
    p, tap = run_kernel("numba", "conv2d_relu_pool", ins, has_bias=bias, **conv)
    np.testing.assert_array_equal(p, p_ref)
    np.testing.assert_array_equal(tap, _taps_reference(y))
    assert (tap == NO_GRAD).any() and (tap != NO_GRAD).any()
    # and against the float64 numpy reference of the whole forward
    (y64,) = run_kernel("numpy", "conv2d", [a.astype(np.float64) for a in ins], **conv)
    (p64,) = run_kernel("numpy", "max_pool2d", [np.maximum(y64, 0)], **POOL)
    np.testing.assert_allclose(p, p64, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 9, 7), (4, 8, 96, 96)])  # serial, odd sizes, parallel
def test_backward_equals_max_pool2d_relu_grad(shape, dtype, rng):
    y = np.maximum(np.round(rng.standard_normal(shape) * 2) / 2, 0).astype(dtype)  # ReLU outputs with ties
    y.reshape(-1)[rng.choice(y.size, 3, replace=False)] = np.nan
    tap = _taps_reference(np.nan_to_num(y, nan=np.inf))  # a NaN wins its window (the first NaN)
    (p,) = run_kernel("numpy", "max_pool2d", [y], **POOL)
    gp = rng.standard_normal(p.shape).astype(dtype)
    gy_ref, gb_ref = run_kernel("numba", "max_pool2d_relu_grad", [gp, y], bias_grad=True, **POOL)
    gy, gb = run_kernel("numba", "max_pool2d_tap_relu_grad", [gp, tap], y_shape=shape, bias_grad=True)
    np.testing.assert_array_equal(gy, gy_ref)
    np.testing.assert_array_equal(gb, gb_ref)
    (only,) = run_kernel("numba", "max_pool2d_tap_relu_grad", [gp, tap], y_shape=shape, bias_grad=False)
    np.testing.assert_array_equal(only, gy_ref)


def test_backward_matches_finite_differences(rng):
    """d/dy and d/db of sum(r * maxpool(relu(y + b))) through the taps the forward kept, float64 central
    differences (inputs apart from ties and from 0, where the function is smooth)."""
    xs, ws, conv = (2, 1, 9, 9), (3, 1, 3, 3), _conv()
    x, w, b = _inputs(xs, ws, np.float64, rng)

    def loss(bias):
        p, _ = run_kernel("numba", "conv2d_relu_pool", [x, w, bias], has_bias=True, **conv)
        return float((p * r).sum())

    p, tap = run_kernel("numba", "conv2d_relu_pool", [x, w, b], has_bias=True, **conv)
    r = rng.standard_normal(p.shape)
    y_shape = (2, 3, 7, 7)
    gy, gb = run_kernel("numba", "max_pool2d_tap_relu_grad", [r, tap], y_shape=y_shape, bias_grad=True)
    eps = 1e-6
    fd = [(loss(b + eps * e) - loss(b - eps * e)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(gb, fd, rtol=1e-6, atol=1e-8)
    # d/dy: the pool of relu(y) on the numpy reference, perturbing y where gy says a window's winner is
    (y,) = run_kernel("numpy", "conv2d", [x, w, b], **conv)
    for idx in list(zip(*np.nonzero(gy)))[:5] + [tuple(rng.integers(0, s) for s in y_shape) for _ in range(5)]:
        e = np.zeros(y_shape)
        e[idx] = eps
        lo, hi = (float((run_kernel("numpy", "max_pool2d", [np.maximum(v, 0)], **POOL)[0] * r).sum())
                  for v in (y - e, y + e))
        np.testing.assert_allclose(gy[idx], (hi - lo) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_pass_fuses_on_numba_only_and_the_step_equals_the_unfused_one():
    step, m, losses = _train(None, "numba", np.float32)
    fused = step.graph.find("conv2d_relu_pool")
    assert len(fused) == 2 and len(step.graph.find("max_pool2d_tap_relu_grad")) == 2
    assert not step.graph.find("max_pool2d") and not step.graph.find("max_pool2d_relu_grad")
    numpy_step, _, _ = _train(None, "numpy", np.float64, steps=1)
    assert not numpy_step.graph.find("conv2d_relu_pool")  # no kernel: the numpy reference keeps the unfused nodes
    _, m_plain, l_plain = _train(UNFUSED + ["fuse_pool_relu_grad"], "numba", np.float32)
    np.testing.assert_allclose(losses, l_plain, rtol=1e-6)
    for (k, a), b in zip(m.state_dict().items(), m_plain.state_dict().values()):
        np.testing.assert_allclose(np.asarray(a.data), np.asarray(b.data), rtol=1e-5, atol=1e-7, err_msg=k)


def test_compile_train_mode_runs_the_fused_forward_and_backward():
    def grads(passes):
        engine.manual_seed(0)
        m = Net()
        m.train()
        x = Tensor(X.astype(np.float32))
        cm = graph.compile(m, x, backend="numba", passes=passes)
        F.cross_entropy(cm(x), Tensor(Y)).backward()
        return cm, {k: np.asarray(p.grad.data) for k, p in m.named_parameters()}

    cm, fused = grads(None)
    assert [r["changed"] for r in cm.report["passes"] if r["pass"] == "fuse_conv_relu_pool"] == [True]
    _, plain = grads(UNFUSED + ["fuse_pool_relu_grad"])
    for k in plain:
        np.testing.assert_allclose(fused[k], plain[k], rtol=1e-5, atol=1e-7, err_msg=k)
