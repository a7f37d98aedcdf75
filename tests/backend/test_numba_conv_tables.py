"""The offset-table implicit GEMM (backends.numba.conv.tables, algorithm ``gemm-tables``) against the numpy
reference, on shapes that reach every edge of its blocking: K beyond one KC block, output channels beyond one
panel and not a multiple of it, images whose pixel count is not a multiple of a panel (the input gradient's
copied last panel), row tiles and groups that cross images, several weight-gradient chunks."""

from __future__ import annotations

import numpy as np
import pytest

from backends.numba.conv import tables as conv_tables
from backends.numba.conv.drivers import conv2d_forward
from backends.numba.conv.epilogue import NO_ACT, Epilogue
from backends.numba.conv.workspace import Workspace
from backends.numba.elementwise import RELU
from tests.backend.test_numba_parity import run_kernel


def _attrs(stride=1, padding=0, dilation=1):
    p = padding if isinstance(padding, tuple) else ((padding, padding), (padding, padding))
    return {"stride": (stride, stride) if isinstance(stride, int) else stride, "padding": p,
            "dilation": (dilation, dilation) if isinstance(dilation, int) else dilation, "groups": 1}


# (x shape, w shape, attrs)
SHAPES = [
    ((3, 30, 9, 7), (40, 30, 3, 3), _attrs(1, 1)),  # 270 taps > KC, 40 channels = 2 panels, 63-pixel images
    ((2, 2, 6, 6), (300, 2, 3, 3), _attrs(1, 0)),  # 300 output channels: input-gradient K > KC, 10 panels
    ((4, 1, 40, 40), (3, 1, 3, 3), _attrs(1, 0)),  # 9 taps, 5776 pixels: several weight-gradient chunks
    ((5, 3, 12, 12), (8, 3, 5, 5), _attrs(1, 0)),  # LeNet-like
    ((2, 4, 11, 10), (6, 4, 3, 2), _attrs((2, 1), ((2, 0), (1, 3)), (1, 2))),  # strides, asymmetric pad, dilation
    ((2, 3, 17, 17), (5, 3, 7, 7), _attrs(2, 3)),  # stem-like
    ((3, 6, 7, 7), (10, 6, 1, 1), _attrs(2, 0)),  # strided 1x1 shortcut
    ((1, 2, 3, 3), (4, 2, 3, 3), _attrs(1, 1)),  # one image of 9 pixels: a single partial tile
]


def _geom(attrs):
    return (*attrs["stride"], *attrs["dilation"])


@pytest.mark.parametrize("xs,ws,attrs", SHAPES)
def test_forward_and_both_gradients_match_the_reference(rng, xs, ws, attrs):
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    (y,) = run_kernel("numpy", "conv2d", [x.astype(np.float64), w.astype(np.float64)], **attrs)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    (gx,) = run_kernel("numpy", "conv2d_input_grad", [gy.astype(np.float64), w.astype(np.float64)], input_shape=xs,
                       **attrs)
    (gw,) = run_kernel("numpy", "conv2d_weight_grad", [x.astype(np.float64), gy.astype(np.float64)],
                       weight_shape=ws, **attrs)
    scratch = Workspace()
    out = np.full(y.shape, np.nan, np.float32)
    conv_tables.forward(x, w, out, Epilogue(np.float32), _geom(attrs), attrs["padding"], scratch)
    got_gx = np.full(xs, np.nan, np.float32)
    conv_tables.input_grad(gy, w, got_gx, _geom(attrs), attrs["padding"], scratch)
    got_gw = np.full(ws, np.nan, np.float32)
    conv_tables.weight_grad(x, gy, got_gw, _geom(attrs), attrs["padding"], scratch)
    for got, ref in ((out, y), (got_gx, gx), (got_gw, gw)):
        np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-4 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("act", [NO_ACT, RELU])
def test_forward_epilogue_with_scale_bias_residual(rng, act):
    xs, ws, attrs = SHAPES[0]
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    scale = rng.random(ws[0]).astype(np.float32) + 0.5
    bias = rng.standard_normal(ws[0]).astype(np.float32)
    (y,) = run_kernel("numpy", "conv2d", [x, w], **attrs)
    res = rng.standard_normal(y.shape).astype(np.float32)
    expect = y * scale[:, None, None] + bias[:, None, None] + res
    if act == RELU:
        expect = np.maximum(expect, 0)
    out = np.empty_like(y)
    ep = Epilogue(np.float32, bias=bias, scale=scale, residual=res, act=act)
    conv2d_forward(x, w, out, ep, algorithm="gemm-tables", **attrs)
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4)


def test_tables_address_every_tap_of_every_pixel():
    """im2col[k, p] = xp[toff[k] + poff[p]]: the tables against an explicit im2col of a padded index image."""
    n, c, hp, wp, kh, kw, sh, sw, dh, dw = 2, 3, 9, 8, 3, 2, 2, 1, 1, 2
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    poff, toff = conv_tables.tables(n, c, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow)
    assert poff.size % conv_tables.MR == 0 and toff.size % conv_tables.MR == 0
    idx = np.arange(n * c * hp * wp).reshape(n, c, hp, wp)
    for ni in range(n):
        for y in range(oh):
            for z in range(ow):
                p = (ni * oh + y) * ow + z
                for ci in range(c):
                    for i in range(kh):
                        for j in range(kw):
                            k = (ci * kh + i) * kw + j
                            assert toff[k] + poff[p] == idx[ni, ci, y * sh + i * dh, z * sw + j * dw]


def test_other_dtypes_run_the_im2col_path(rng):
    xs, ws, attrs = SHAPES[3]
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    (y,) = run_kernel("numpy", "conv2d", [x, w], **attrs)
    out = np.empty_like(y)
    conv2d_forward(x, w, out, Epilogue(np.float64), algorithm="gemm-tables", **attrs)
    np.testing.assert_allclose(out, y, rtol=1e-10, atol=1e-10)
