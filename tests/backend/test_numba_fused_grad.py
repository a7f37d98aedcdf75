"""The fused backward primitive ``max_pool2d_relu_grad`` (engine/ops/fused_grad.py) against the unfused numpy
reference kernels it replaces (max_pool2d_grad, relu_grad, sum over (N, H, W)): the numba fast path (2x2/2, serial
and parallel), its fallback to the decomposition (other pools, odd sizes), the numpy decomposition, float32 and
float64, ties, windows whose maximum is 0 or negative, and NaN. Also ``log_softmax_nll`` (one-hot and weighted /
smoothed coefficients, an ignored row, an out-of-range target's error) and ``matmul_tn`` at odd sizes."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from tests.helpers import run_kernel
from tests.null.test_fuse_backward import check_steps_equal_unfused


def _pool(k, s, p):
    return dict(kernel=(k, k), stride=(s, s), padding=(p, p), dilation=(1, 1), ceil_mode=False)


def _inputs(shape, pool, dtype, rng, nan=False):
    # ReLU outputs (many exact zeros, so whole windows tie at 0) plus some negatives (the mask must read y, not
    # assume a ReLU), rounded so that windows tie often
    y = np.round(rng.standard_normal(shape) * 2) / 2
    y = np.where(rng.random(shape) < 0.5, np.maximum(y, 0), y).astype(dtype)
    if nan:
        y.reshape(-1)[rng.choice(y.size, 5, replace=False)] = np.nan
    (pooled,) = run_kernel("numpy", "max_pool2d", [y], **pool)
    gy = rng.standard_normal(pooled.shape).astype(dtype)
    return gy, y


def _reference(gy, y, pool):
    (g,) = run_kernel("numpy", "max_pool2d_grad", [gy, y], **pool)
    (gx,) = run_kernel("numpy", "relu_grad", [g, y])
    (gb,) = run_kernel("numpy", "sum", [gx], axes=(0, 2, 3), keepdims=False)
    return gx, gb


def _fused(backend, gy, y, **attrs):
    """The fused kernel on numba; on numpy (no kernel of its own) its decomposition, as executors run it."""
    if backend == "numba":
        return run_kernel("numba", "max_pool2d_relu_grad", [gy, y], **attrs)
    be, prim = engine.get_backend("numpy"), engine.get_primitive("max_pool2d_relu_grad")
    return be.run(prim, [gy, y], attrs, kernel=prim.decomposed_kernel(be.kernel))


CASES = [
    ((2, 3, 8, 8), _pool(2, 2, 0)),  # fast path, serial twin
    ((2, 3, 9, 7), _pool(2, 2, 0)),  # odd sizes: the last row / column gets no gradient
    ((4, 8, 96, 96), _pool(2, 2, 0)),  # fast path, parallel (above the serial threshold)
    ((2, 3, 9, 9), _pool(3, 2, 1)),  # overlapping windows: the decomposition on numba kernels
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, pool", CASES)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_max_pool2d_relu_grad_equals_the_unfused_kernels(backend, shape, pool, dtype):
    rng = np.random.default_rng(0)
    gy, y = _inputs(shape, pool, dtype, rng, nan=shape[0] == 2)
    ref_gx, ref_gb = _reference(gy, y, pool)
    gx, gb = _fused(backend, gy, y, bias_grad=True, **pool)
    # one select per element where windows do not overlap: exact (overlapping windows add in the numba pool
    # gradient's own order)
    check_gx = np.testing.assert_array_equal if pool["kernel"] == pool["stride"] else \
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    check_gx(gx, ref_gx)
    assert gb.dtype == ref_gb.dtype
    np.testing.assert_allclose(gb, ref_gb, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    (only_gx,) = _fused(backend, gy, y, bias_grad=False, **pool)
    check_gx(only_gx, ref_gx)


def test_compile_step_with_the_fused_backward_equals_the_unfused_pipeline_on_numba():
    check_steps_equal_unfused("numba", np.float32, 1e-5)


def _ce_attrs(c, dtype, weight=(), label_smoothing=0.0):
    return dict(classes=c, weight=weight, ignore_index=-100, label_smoothing=label_smoothing,
                dtype=np.dtype(dtype).name, op="cross_entropy")


def _log_softmax_nll(backend, x, t, g, **attrs):
    if backend == "numba":
        return run_kernel("numba", "log_softmax_nll", [x, t, g], **attrs)
    be, prim = engine.get_backend("numpy"), engine.get_primitive("log_softmax_nll")
    return be.run(prim, [x, t, g], attrs, kernel=prim.decomposed_kernel(be.kernel))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_log_softmax_nll_equals_the_unfused_kernels(backend, dtype, weighted):
    # odd sizes, large logits (the max shift matters), an ignored target; weighted: a class weight and label
    # smoothing (coef not one-hot: numba runs the decomposition)
    rng = np.random.default_rng(1)
    n, c = 7, 13
    x = (rng.standard_normal((n, c)) * 30).astype(dtype)
    t = rng.integers(0, c, n)
    t[3] = -100
    attrs = _ce_attrs(c, dtype, tuple(rng.random(c) + 0.5), 0.1) if weighted else _ce_attrs(c, dtype)
    g = np.asarray(0.7, dtype)
    coef, denom = run_kernel("numpy", "class_coef", [t], **attrs)
    (logp,) = run_kernel("numpy", "log_softmax", [x], axis=1)
    ref_loss = -np.sum(np.sum(logp * coef, axis=1)) / denom
    m = -(g / denom) * coef
    ref_gx = m - np.exp(logp) * np.sum(m, axis=1, keepdims=True)
    loss, gx = _log_softmax_nll(backend, x, t, g, **attrs)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    assert loss.dtype == gx.dtype == dtype and loss.shape == () and gx.shape == (n, c)
    np.testing.assert_allclose(loss, ref_loss, rtol=tol)
    np.testing.assert_allclose(gx, ref_gx, rtol=tol, atol=tol * np.abs(ref_gx).max())
    assert np.all(gx[3] == 0)  # the ignored row


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_log_softmax_nll_names_an_out_of_range_target(backend):
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(IndexError, match=r"cross_entropy: target class 4 is out of range for 4 classes"):
        _log_softmax_nll(backend, x, np.array([0, 4, 1]), np.asarray(1.0, np.float32), **_ce_attrs(4, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_matmul_tn_equals_transpose_then_matmul(backend, dtype):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((37, 13)).astype(dtype), rng.standard_normal((37, 21)).astype(dtype)
    (ref,) = run_kernel("numpy", "matmul", [np.ascontiguousarray(a.T), b])
    if backend == "numba":
        (got,) = run_kernel("numba", "matmul_tn", [a, b])
    else:
        be, prim = engine.get_backend("numpy"), engine.get_primitive("matmul_tn")
        (got,) = be.run(prim, [a, b], {}, kernel=prim.decomposed_kernel(be.kernel))
    assert got.shape == (13, 21) and got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5)
