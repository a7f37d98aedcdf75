"""The numba backward kernels as calls specialized once to fixed arrays (engine.backend.specialize, what an arena
executor runs): conv2d_input_grad / conv2d_weight_grad with the algorithm chosen once per binding (gemm-tables,
Winograd, the 1x1 GEMM) and max_pool2d_relu_grad, each run twice on new contents of the same arrays against the
numpy reference; a strided gy is not specialized (its contiguous copy would go stale) and still computes right."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine.backend import specialize
from tests.helpers import run_kernel

numba_be = pytest.importorskip("backends.numba").backend
from backends.numba.conv import drivers  # noqa: E402

LAYERS = [  # (x shape, w shape, padding): gemm-tables 5x5, Winograd 3x3, 1x1 GEMM
    ((2, 3, 9, 9), (4, 3, 5, 5), ((1, 1), (1, 1))),
    ((2, 16, 8, 8), (16, 16, 3, 3), ((1, 1), (1, 1))),
    ((2, 8, 6, 6), (4, 8, 1, 1), ((0, 0), (0, 0))),
]


def _conv_attrs(padding):
    return dict(stride=(1, 1), padding=padding, dilation=(1, 1), groups=1)


@pytest.mark.parametrize("xs, ws, padding", LAYERS)
@pytest.mark.parametrize("role", ["input_grad", "weight_grad"])
def test_specialized_conv_gradients_read_current_contents(role, xs, ws, padding):
    rng = np.random.default_rng(0)
    attrs = _conv_attrs(padding)
    (y,) = run_kernel("numpy", "conv2d", [np.zeros(xs, np.float32), np.zeros(ws, np.float32)], **attrs)
    x, w, gy = (rng.standard_normal(s).astype(np.float32) for s in (xs, ws, y.shape))
    if role == "input_grad":
        name, ins, out, attrs = "conv2d_input_grad", [gy, w], np.empty(xs, np.float32), dict(attrs, input_shape=xs)
    else:
        name, ins, out, attrs = "conv2d_weight_grad", [x, gy], np.empty(ws, np.float32), dict(attrs, weight_shape=ws)
    call = specialize(numba_be.kernel(name), ins, out, attrs)
    assert call.func in (drivers.run_input_grad, drivers.run_weight_grad)  # the algorithm bound once
    assert call.args[0] in ("gemm-tables", "winograd-f2", "winograd-f4", "gemm_1x1-nchw")
    for step in range(2):
        (want,) = run_kernel("numpy", name, [a.astype(np.float64) for a in ins], **attrs)
        call()
        np.testing.assert_allclose(out, want, rtol=2e-4, atol=2e-4 * np.abs(want).max(), err_msg=f"call {step}")
        for a in ins:
            a[...] = rng.standard_normal(a.shape).astype(np.float32)


def test_a_strided_gy_is_not_specialized_and_still_right():
    rng = np.random.default_rng(1)
    xs, ws, padding = LAYERS[0]
    attrs = dict(_conv_attrs(padding), input_shape=xs)
    big = rng.standard_normal((2, 8, 7, 7)).astype(np.float32)
    gy, w = big[:, ::2], rng.standard_normal(ws).astype(np.float32)  # (2, 4, 7, 7), not contiguous
    kernel = numba_be.kernel("conv2d_input_grad")
    assert kernel.specialize(gy, w, out=np.empty(xs, np.float32), **attrs) is None
    out = np.empty(xs, np.float32)
    call = specialize(kernel, [gy, w], out, attrs)
    big[...] = rng.standard_normal(big.shape).astype(np.float32)  # new contents seen through the view
    (want,) = run_kernel("numpy", "conv2d_input_grad", [gy.astype(np.float64), w.astype(np.float64)], **attrs)
    call()
    np.testing.assert_allclose(out, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_specialized_pool_relu_grad_reads_current_contents():
    rng = np.random.default_rng(2)
    pool = dict(kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False)
    y = np.maximum(rng.standard_normal((2, 3, 8, 8)), 0).astype(np.float32)
    gy = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    out = (np.empty(y.shape, np.float32), np.empty(3, np.float32))
    call = specialize(numba_be.kernel("max_pool2d_relu_grad"), [gy, y], out, dict(pool, bias_grad=True))
    prim = engine.get_primitive("max_pool2d_relu_grad")
    ref = engine.get_backend("numpy")
    for step in range(2):
        want = ref.run(prim, [gy, y], dict(pool, bias_grad=True), kernel=prim.decomposed_kernel(ref.kernel))
        call()
        np.testing.assert_array_equal(out[0], want[0], err_msg=f"call {step}")
        np.testing.assert_allclose(out[1], want[1], rtol=1e-5, atol=1e-6)
        gy[...] = rng.standard_normal(gy.shape).astype(np.float32)
        y[...] = np.maximum(rng.standard_normal(y.shape), 0).astype(np.float32)
