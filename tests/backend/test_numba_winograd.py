"""Winograd F(2x2, 3x3) / F(4x4, 3x3) conv (backends/numba/conv/winograd/) vs the numpy reference conv2d,
conv2d_input_grad and conv2d_weight_grad: paddings 0..2 (also asymmetric), odd/even/tiny planes, odd channel
counts, both dtypes, every epilogue part, non-contiguous inputs, batch chunking of the weight gradient."""

from __future__ import annotations

import numpy as np
import pytest

from backends.numba.conv.epilogue import Epilogue
from backends.numba.conv.winograd import (
    u_panels,
    winograd_applicable,
    winograd_forward,
    winograd_input_grad,
    winograd_weight_grad,
    winograd_weights,
)
from backends.numba.elementwise import LEAKY_RELU, RELU
from tests.backend.test_numba_parity import run_kernel


def _attrs(padding=1):
    p = padding if isinstance(padding, tuple) else ((padding, padding), (padding, padding))
    return {"stride": (1, 1), "padding": p, "dilation": (1, 1), "groups": 1}


# (x shape, out channels, padding)
CASES = [
    ((1, 3, 7, 7), 5, 1),  # ResNet's 7x7: odd, partial tiles
    ((3, 4, 8, 8), 6, 1),
    ((2, 5, 13, 9), 7, 0),
    ((1, 6, 8, 11), 3, 2),
    ((3, 3, 1, 1), 4, 1),  # a single output pixel from a padded 1x1 input
    ((2, 7, 5, 6), 2, ((0, 2), (1, 0))),  # asymmetric padding
    ((1, 9, 3, 3), 11, 0),  # one output pixel, no padding
    ((2, 17, 16, 15), 19, 1),
]
IDS = [f"{xs}-o{o}-p{p}" for xs, o, p in CASES]


@pytest.fixture(params=["planes", "rows"])
def layout(request, monkeypatch):
    """Force the forward's layout: plane-wise (junk tiles) or channels-last rows (small planes)."""
    from backends.numba.conv.winograd import driver as conv_winograd

    monkeypatch.setattr(conv_winograd, "FORWARD_LAYOUT", request.param)
    return request.param


def _tol(dtype, ref):
    scale = max(1.0, float(np.abs(ref).max()))
    return {"rtol": 1e-4, "atol": 1e-4 * scale} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10 * scale}


def _ref_conv(x, w, attrs):
    return run_kernel("numpy", "conv2d", [x, w], **attrs)[0]


@pytest.mark.parametrize("m", [2, 4, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,o,pad", CASES, ids=IDS)
def test_forward_and_input_grad(rng, xs, o, pad, dtype, m, layout):
    attrs = _attrs(pad)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((o, xs[1], 3, 3)).astype(dtype)
    ref = _ref_conv(x, w, attrs)
    out = np.full(ref.shape, 7, dtype)  # junk: every output pixel must be written
    winograd_forward(x, w, out, Epilogue(dtype), attrs["padding"], m=m)
    np.testing.assert_allclose(out, ref, **_tol(dtype, ref))

    gy = rng.standard_normal(ref.shape).astype(dtype)
    (gref,) = run_kernel("numpy", "conv2d_input_grad", [gy, w], input_shape=xs, **attrs)
    gx = np.full(xs, 7, dtype)
    winograd_input_grad(gy, w, gx, attrs["padding"], m=m)
    np.testing.assert_allclose(gx, gref, **_tol(dtype, gref))


@pytest.mark.parametrize("act,alpha", [(-1, 0.0), (RELU, 0.0), (LEAKY_RELU, 0.1)], ids=["none", "relu", "leaky"])
@pytest.mark.parametrize("bias,scale,residual", [(True, False, False), (False, True, False), (False, False, True),
                                                 (True, True, True), (False, False, False)])
@pytest.mark.parametrize("m", [2, 4])
def test_epilogue(rng, bias, scale, residual, act, alpha, m, layout):
    xs, o, pad = (2, 5, 7, 9), 6, 1
    attrs = _attrs(pad)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((o, xs[1], 3, 3)).astype(np.float32)
    y = _ref_conv(x, w, attrs).astype(np.float64)
    b = rng.standard_normal(o).astype(np.float32) if bias else None
    s = (rng.random(o) + 0.5).astype(np.float32) if scale else None
    r = rng.standard_normal(y.shape).astype(np.float32) if residual else None
    expect = y * (s[:, None, None] if scale else 1) + (b[:, None, None] if bias else 0) + (r if residual else 0)
    if act == RELU:
        expect = np.maximum(expect, 0)
    elif act == LEAKY_RELU:
        expect = np.where(expect > 0, expect, alpha * expect)
    out = np.full(y.shape, 7, np.float32)
    winograd_forward(x, w, out, Epilogue(np.float32, bias=b, scale=s, residual=r, act=act, alpha=alpha), 1, m=m)
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())


def test_non_contiguous_inputs(rng, layout):
    attrs = _attrs(1)
    base = rng.standard_normal((2, 9, 6, 10))
    x = base.transpose(0, 1, 3, 2)[:, ::2]  # (2, 5, 10, 6), strided
    w = rng.standard_normal((5, 4, 3, 3)).transpose(1, 0, 3, 2)  # (4, 5, 3, 3), not C-contiguous
    res = rng.standard_normal((2, 4, 6, 10)).transpose(0, 1, 3, 2)  # (2, 4, 10, 6), strided residual
    assert not (x.flags.c_contiguous or w.flags.c_contiguous or res.flags.c_contiguous)
    ref = _ref_conv(np.ascontiguousarray(x), np.ascontiguousarray(w), attrs)
    for m in (2, 4):
        out = np.empty(ref.shape)
        winograd_forward(x, w, out, Epilogue(np.float64, residual=res), attrs["padding"], m=m)
        np.testing.assert_allclose(out, ref + res, rtol=1e-10, atol=1e-10)
        out_t = np.empty(ref.shape[::-1]).T  # a non-contiguous output view
        winograd_forward(x, w, out_t, Epilogue(np.float64), attrs["padding"], m=m)
        np.testing.assert_allclose(out_t, ref, rtol=1e-10, atol=1e-10)
        gy = rng.standard_normal(ref.shape[::-1]).T
        (gref,) = run_kernel("numpy", "conv2d_input_grad", [np.ascontiguousarray(gy), np.ascontiguousarray(w)],
                             input_shape=x.shape, **attrs)
        gx = np.empty(x.shape)
        winograd_input_grad(gy, w, gx, attrs["padding"], m=m)
        np.testing.assert_allclose(gx, gref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("m", [2, 4])
def test_precomputed_weights(rng, m, layout):
    attrs = _attrs(1)
    x, w = rng.standard_normal((2, 6, 9, 9)), rng.standard_normal((4, 6, 3, 3))
    ref = _ref_conv(x, w, attrs)
    out = np.empty(ref.shape)
    winograd_forward(x, None, out, Epilogue(np.float64), 1, u=winograd_weights(w, m), m=m)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)
    gy = rng.standard_normal(ref.shape)
    (gref,) = run_kernel("numpy", "conv2d_input_grad", [gy, w], input_shape=x.shape, **attrs)
    gx = np.empty(x.shape)
    winograd_forward(gy, None, gx, Epilogue(np.float64), 1, u=winograd_weights(w, m, flip=True), m=m)
    np.testing.assert_allclose(gx, gref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("o", [5, 40])  # a partial panel (zero padding columns); more than one panel
def test_precomputed_weights_in_panels(rng, m, o):
    """float32 channels-last forward and input gradient with U^T already in the GEMM's column panels."""
    attrs = _attrs(1)
    x, w = rng.standard_normal((3, 6, 6, 5)).astype(np.float32), rng.standard_normal((o, 6, 3, 3)).astype(np.float32)
    ref = _ref_conv(x, w, attrs)
    nr = u_panels(ref.shape, m, np.float32)
    assert nr > 0
    u = winograd_weights(w, m, nr=nr)
    assert u.shape[1:] == (-(-o // nr), 6, nr)
    out = np.full(ref.shape, 7, np.float32)
    winograd_forward(x, None, out, Epilogue(np.float32), 1, u=u, m=m)
    np.testing.assert_allclose(out, ref, **_tol(np.float32, ref))
    gy = rng.standard_normal(ref.shape).astype(np.float32)
    (gref,) = run_kernel("numpy", "conv2d_input_grad", [gy, w], input_shape=x.shape, **attrs)
    gx = np.full(x.shape, 7, np.float32)
    nr = u_panels(gx.shape, m, np.float32)
    winograd_forward(gy, None, gx, Epilogue(np.float32), 1, u=winograd_weights(w, m, flip=True, nr=nr), m=m)
    np.testing.assert_allclose(gx, gref, **_tol(np.float32, gref))


def test_no_panels_for_wide_planes_or_float64():
    assert u_panels((2, 8, 32, 32), 4, np.float32) == 0  # plane-wise layout: U is the GEMM's A
    assert u_panels((2, 8, 4, 4), 2, np.float64) == 0  # numpy's BLAS takes the plain U


@pytest.mark.parametrize("split", [True, False])
def test_split_and_batched_gemms_agree(rng, monkeypatch, split, layout):
    from backends.numba.conv.winograd import driver as conv_winograd

    monkeypatch.setattr(conv_winograd, "SPLIT_GEMMS", split)
    attrs = _attrs(1)
    x, w = rng.standard_normal((3, 7, 10, 10)), rng.standard_normal((5, 7, 3, 3))
    ref = _ref_conv(x, w, attrs)
    for m in (2, 4):
        out = np.empty(ref.shape)
        winograd_forward(x, w, out, Epilogue(np.float64), 1, m=m)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


# small planes through the channels-last forward: (x shape, out channels, padding)
ROWS_CASES = [
    ((2, 3, 1, 1), 4, 1),
    ((3, 5, 3, 3), 4, 0),
    ((2, 4, 3, 3), 6, 1),
    ((2, 6, 5, 5), 3, 2),
    ((1, 5, 7, 7), 7, 1),
    ((2, 3, 7, 7), 5, ((2, 0), (1, 2))),
    ((3, 8, 8, 8), 5, 1),
    ((2, 7, 8, 8), 9, ((0, 1), (2, 0))),
    ((4, 9, 4, 4), 8, 1),
    ((2, 3, 4, 4), 2, 2),
    ((2, 5, 5, 7), 4, ((1, 0), (0, 1))),
]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,o,pad", ROWS_CASES, ids=[f"{xs}-o{o}-p{p}" for xs, o, p in ROWS_CASES])
def test_rows_layout(rng, monkeypatch, xs, o, pad, dtype, m):
    from backends.numba.conv.winograd import driver as conv_winograd

    monkeypatch.setattr(conv_winograd, "FORWARD_LAYOUT", "rows")
    attrs = _attrs(pad)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((o, xs[1], 3, 3)).astype(dtype)
    ref = _ref_conv(x, w, attrs)
    out = np.full(ref.shape, 7, dtype)
    winograd_forward(x, w, out, Epilogue(dtype), attrs["padding"], m=m)
    np.testing.assert_allclose(out, ref, **_tol(dtype, ref))
    r = rng.standard_normal(ref.shape).astype(dtype)  # with a residual and a ReLU
    out = np.full(ref.shape, 7, dtype)
    winograd_forward(x, w, out, Epilogue(dtype, residual=r, act=RELU), attrs["padding"], m=m)
    np.testing.assert_allclose(out, np.maximum(ref + r, 0), **_tol(dtype, ref + r))

    gy = rng.standard_normal(ref.shape).astype(dtype)
    (gref,) = run_kernel("numpy", "conv2d_input_grad", [gy, w], input_shape=xs, **attrs)
    gx = np.full(xs, 7, dtype)
    winograd_input_grad(gy, w, gx, attrs["padding"], m=m)
    np.testing.assert_allclose(gx, gref, **_tol(dtype, gref))


def test_rows_chunks(rng, monkeypatch):
    # a tiny chunk budget: one image per chunk through the channels-last forward
    from backends.numba.conv.winograd import driver as conv_winograd

    monkeypatch.setattr(conv_winograd, "FORWARD_LAYOUT", "rows")
    monkeypatch.setattr(conv_winograd, "CHUNK_BYTES", 1)
    attrs = _attrs(1)
    x, w = rng.standard_normal((5, 3, 6, 7)), rng.standard_normal((4, 3, 3, 3))
    ref = _ref_conv(x, w, attrs)
    for m in (2, 4):
        out = np.full(ref.shape, 7.0)
        winograd_forward(x, w, out, Epilogue(np.float64), 1, m=m)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def test_layout_threshold(rng, monkeypatch):
    # the automatic choice: channels-last rows up to ROWS_MAX_OW wide, plane-wise beyond; both correct
    from backends.numba.conv.winograd import driver as conv_winograd

    seen = []
    real = conv_winograd._forward_rows
    monkeypatch.setattr(conv_winograd, "_forward_rows", lambda *a: (seen.append(1), real(*a)))
    for width, rows in ((conv_winograd.ROWS_MAX_OW, True), (conv_winograd.ROWS_MAX_OW + 1, False)):
        seen.clear()
        x, w = rng.standard_normal((1, 2, 3, width)), rng.standard_normal((3, 2, 3, 3))
        ref = _ref_conv(x, w, _attrs(1))
        out = np.empty(ref.shape)
        winograd_forward(x, w, out, Epilogue(np.float64), 1, m=2)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())
        assert bool(seen) is rows


def test_resnet_like_float32_accuracy(rng):
    # ReLU activations, He-initialised weights: float32 error vs a float64 conv stays near im2col's for F(2x2)
    attrs = _attrs(1)
    x = np.maximum(rng.standard_normal((2, 64, 14, 14)), 0)
    w = rng.standard_normal((64, 64, 3, 3)) * np.sqrt(2 / (9 * 64))
    ref = _ref_conv(x, w, attrs)
    for m, bound in ((2, 5e-6), (4, 1e-4)):
        out = np.empty(ref.shape, np.float32)
        winograd_forward(x.astype(np.float32), w.astype(np.float32), out, Epilogue(np.float32), 1, m=m)
        assert np.abs(out - ref).max() / np.abs(ref).max() < bound


def test_empty_inputs(rng):
    w = rng.standard_normal((3, 0, 3, 3))
    b = rng.standard_normal(3)
    out = np.full((2, 3, 4, 4), 7.0)
    winograd_forward(np.zeros((2, 0, 4, 4)), w, out, Epilogue(np.float64, bias=b), 1)
    np.testing.assert_array_equal(out, np.broadcast_to(b[:, None, None], out.shape))
    winograd_forward(np.zeros((0, 2, 4, 4)), np.zeros((3, 2, 3, 3)), np.empty((0, 3, 4, 4)), Epilogue(np.float64), 1)
    gx = np.full((2, 4, 5, 5), 7.0)
    winograd_input_grad(np.zeros((2, 0, 5, 5)), np.zeros((0, 4, 3, 3)), gx, 1)
    assert not gx.any()


@pytest.mark.parametrize("ws,attrs,ok", [
    ((4, 3, 3, 3), _attrs(1), True),
    ((4, 3, 3, 3), _attrs(((0, 2), (2, 1))), True),
    ((4, 3, 3, 3), _attrs(3), False),
    ((4, 3, 5, 5), _attrs(1), False),
    ((4, 3, 3, 3), dict(_attrs(1), stride=(2, 2)), False),
    ((4, 3, 3, 3), dict(_attrs(1), dilation=(2, 2)), False),
    ((4, 1, 3, 3), dict(_attrs(1), groups=3), False),
])
def test_applicable(ws, attrs, ok):
    assert winograd_applicable((2, 3, 8, 8), ws, attrs) is ok


# --- weight gradient ---------------------------------------------------------------------------------------
WG_CASES = CASES + [
    ((1, 3, 32, 32), 5, 1),  # ResNet-CIFAR's first stage plane
    ((3, 5, 13, 9), 3, 1),
    ((1, 2, 7, 7), 3, 2),
    ((2, 3, 6, 5), 4, ((2, 0), (0, 2))),
]
WG_IDS = [f"{xs}-o{o}-p{p}" for xs, o, p in WG_CASES]


def _ref_weight_grad(x, gy, w_shape, attrs):
    return run_kernel("numpy", "conv2d_weight_grad", [x, gy], weight_shape=w_shape, **attrs)[0]


@pytest.mark.parametrize("m", [2, 4, None])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,o,pad", WG_CASES, ids=WG_IDS)
def test_weight_grad(rng, xs, o, pad, dtype, m):
    attrs = _attrs(pad)
    x = rng.standard_normal(xs).astype(dtype)
    w_shape = (o, xs[1], 3, 3)
    gy = rng.standard_normal(_ref_conv(x, np.zeros(w_shape, dtype), attrs).shape).astype(dtype)
    ref = _ref_weight_grad(x, gy, w_shape, attrs)
    gw = np.full(w_shape, 7, dtype)  # junk: every tap must be written
    winograd_weight_grad(x, gy, gw, attrs["padding"], m=m)
    assert gw.dtype == dtype
    np.testing.assert_allclose(gw, ref, **_tol(dtype, ref))


@pytest.mark.parametrize("m", [2, 4])
def test_weight_grad_chunks(rng, monkeypatch, m):
    # a tiny chunk budget: several batch chunks (the last one shorter), each adding its partial dU
    from backends.numba.conv.winograd import driver as conv_winograd

    monkeypatch.setattr(conv_winograd, "WGRAD_CHUNK_BYTES", 1)
    attrs = _attrs(1)
    x, w_shape = rng.standard_normal((5, 3, 9, 10)), (4, 3, 3, 3)
    gy = rng.standard_normal((5, 4, 9, 10))
    ref = _ref_weight_grad(x, gy, w_shape, attrs)
    for budget in (1, 60_000):  # one image per chunk; two images per chunk (chunks 2, 2, 1)
        monkeypatch.setattr(conv_winograd, "WGRAD_CHUNK_BYTES", budget)
        gw = np.empty(w_shape)
        winograd_weight_grad(x, gy, gw, 1, m=m)
        np.testing.assert_allclose(gw, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize("split", [True, False])
def test_weight_grad_split_gemms(rng, monkeypatch, split):
    from backends.numba.conv.winograd import driver as conv_winograd

    monkeypatch.setattr(conv_winograd, "SPLIT_GEMMS", split)
    attrs = _attrs(1)
    x, gy = rng.standard_normal((3, 7, 10, 10)), rng.standard_normal((3, 5, 10, 10))
    ref = _ref_weight_grad(x, gy, (5, 7, 3, 3), attrs)
    for m in (2, 4):
        gw = np.empty((5, 7, 3, 3))
        winograd_weight_grad(x, gy, gw, 1, m=m)
        np.testing.assert_allclose(gw, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def test_weight_grad_non_contiguous(rng):
    attrs = _attrs(((1, 0), (2, 1)))
    x = rng.standard_normal((2, 9, 6, 10)).transpose(0, 1, 3, 2)[:, ::2]  # (2, 5, 10, 6), strided
    gy = rng.standard_normal((2, 4, 7, 9)).transpose(0, 1, 3, 2)  # (2, 4, 9, 7)
    assert not (x.flags.c_contiguous or gy.flags.c_contiguous)
    ref = _ref_weight_grad(np.ascontiguousarray(x), np.ascontiguousarray(gy), (4, 5, 3, 3), attrs)
    for m in (2, 4):
        gw = np.empty((3, 3, 5, 4)).T  # a non-contiguous (4, 5, 3, 3) output view
        winograd_weight_grad(x, gy, gw, attrs["padding"], m=m)
        np.testing.assert_allclose(gw, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


def test_weight_grad_resnet_like_float32_accuracy(rng):
    # ReLU activations, small gradients: float32 error vs a float64 weight gradient (relative to max |gw|)
    attrs = _attrs(1)
    x = np.maximum(rng.standard_normal((4, 64, 14, 14)), 0)
    gy = rng.standard_normal((4, 64, 14, 14)) * 1e-2
    ref = _ref_weight_grad(x, gy, (64, 64, 3, 3), attrs)
    for m, bound in ((2, 5e-6), (4, 1e-4)):
        gw = np.empty(ref.shape, np.float32)
        winograd_weight_grad(x.astype(np.float32), gy.astype(np.float32), gw, 1, m=m)
        assert np.abs(gw - ref).max() / np.abs(ref).max() < bound


def test_weight_grad_empty(rng):
    gw = np.full((3, 2, 3, 3), 7.0)
    winograd_weight_grad(np.zeros((0, 2, 5, 5)), np.zeros((0, 3, 5, 5)), gw, 1)
    assert not gw.any()
    winograd_weight_grad(np.zeros((2, 0, 5, 5)), np.zeros((2, 3, 5, 5)), np.empty((3, 0, 3, 3)), 1)
    winograd_weight_grad(np.zeros((2, 2, 5, 5)), np.zeros((2, 0, 5, 5)), np.empty((0, 2, 3, 3)), 1)
