"""The numba SIMD GEMM (backends/numba/gemm.py) against float64 numpy products: both register tiles, edge tiles,
K blocks, operands read in place / packed / transposed / in image layouts, batches, accumulation and the fused
epilogue."""

from __future__ import annotations

import numpy as np
import pytest

from backends.numba import gemm as G
from backends.numba.conv.epilogue import HAS_BIAS, HAS_RES, HAS_SCALE, NO_ACT, Epilogue
from backends.numba.elementwise import LEAKY_RELU, RELU, TANH
from tests.backend.test_numba_parity import run_kernel


def _close(got, ref, k):
    # float32 products with K terms: relative to the size of the terms
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.sqrt(k)) * (np.abs(ref).max() + 1))


@pytest.fixture(params=[0, 1], ids=["tile0", "tile1"])
def tile(request, monkeypatch):
    """Run with register tile 0 or 1 whatever the shape would pick."""
    monkeypatch.setattr(G, "tile_kernel", lambda m, n: request.param)
    return request.param


SHAPES = [(1, 1, 1), (5, 3, 7), (12, 17, 32), (8, 48, 48), (37, 300, 53), (64, 513, 100), (100, 64, 1000)]


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_matches_numpy(rng, tile, m, k, n):
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    out = np.full((m, n), np.nan, np.float32)
    G.matmul(a, b, out)
    _close(out, a.astype(np.float64) @ b, k)
    G.matmul(a, b, out, accumulate=True)  # out += a @ b
    _close(out, 2 * (a.astype(np.float64) @ b), k)


@pytest.mark.parametrize("m,k,n", [(13, 70, 45), (64, 260, 96)])
def test_strided_and_transposed_operands(rng, tile, m, k, n):
    """A transposed (contiguous along i), B with a non-unit column stride (packed), C a strided view."""
    at = rng.standard_normal((k, m)).astype(np.float32)
    b_wide = rng.standard_normal((k, 2 * n)).astype(np.float32)
    big = np.zeros((m + 3, n + 5), np.float32)
    out = big[2:2 + m, 1:1 + n]
    G.matmul(at.T, b_wide[:, ::2], out)
    _close(out, at.T.astype(np.float64) @ b_wide[:, ::2], k)
    assert not big[:2].any() and not big[:, 0].any() and not big[2 + m:].any()  # nothing written outside


@pytest.mark.parametrize("kern", [0, 1])
def test_b_in_tile_panels_read_in_place(rng, kern):
    """B[k, j] = b4[g, j // nr, k, j % nr] with nr the tile's width (a pre-packed weight): read in place, the
    last panel partly past n."""
    nr = G.tile_nr(kern)
    m, k, n = 30, 70, 2 * nr + 5
    b = rng.standard_normal((2, k, n)).astype(np.float32)
    panels = np.zeros((2, 3, k, nr), np.float32)
    for p in range(3):
        cols = b[:, :, p * nr:(p + 1) * nr]
        panels[:, p, :, :cols.shape[2]] = cols
    panels[:, 2, :, 5:] = np.nan  # columns past n: read, never written out
    a = rng.standard_normal((2, m, k)).astype(np.float32)
    out = np.empty((2, m, n), np.float32)
    G.batched_gemm(a[:, None], k, panels, nr, out[:, None], n, m, n, k, kern=kern)
    _close(out, np.matmul(a.astype(np.float64), b), k)


def test_batched_with_shared_operand(rng, tile):
    u = rng.standard_normal((1, 40, 24)).astype(np.float32)  # shared by every batch entry
    v = rng.standard_normal((9, 24, 70)).astype(np.float32)
    out = np.empty((9, 40, 70), np.float32)
    G.matmul(u, v, out)
    _close(out, np.matmul(u.astype(np.float64), v), 24)


def test_image_layouts(rng, tile):
    """A[i, k] = a3[k // pa, i, k % pa], B[k, j] = b3[j // pb, k, j % pb], C[i, j] = c3[j // pc, i, j % pc]:
    the NCHW activations read as (C, N*P) matrices, with P not a multiple of the tile width."""
    n_img, o, c, p = 3, 10, 7, 29
    a3 = rng.standard_normal((n_img, o, p)).astype(np.float32)  # gy (N, O, P) as A (O, N*P)
    b3 = rng.standard_normal((n_img, c, p)).astype(np.float32)  # x (N, C, P) as B (C, N*P)
    a_mat = a3.transpose(1, 0, 2).reshape(o, n_img * p)
    b_mat = b3.transpose(1, 0, 2).reshape(c, n_img * p)
    c3 = np.empty((n_img, c, p), np.float32)  # the input-gradient form: W^T (C, O) @ gy (O, N*P), into NCHW
    wt = rng.standard_normal((c, o)).astype(np.float32)
    G.gemm(wt[None], o, a3, p, c3, p, c, n_img * p, o)
    _close(c3.transpose(1, 0, 2).reshape(c, -1), wt.astype(np.float64) @ a_mat, o)
    gw = np.empty((o, c), np.float32)  # A in image layout: gy (O, N*P) @ x^T
    G.gemm(a3, p, np.ascontiguousarray(b_mat.T)[None], c, gw[None], c, o, c, n_img * p)
    _close(gw, a_mat.astype(np.float64) @ b_mat.T, n_img * p)


@pytest.mark.parametrize("act,ref_act", [(NO_ACT, lambda y: y), (RELU, lambda y: np.maximum(y, 0)),
                                          (TANH, np.tanh), (LEAKY_RELU, lambda y: np.where(y > 0, y, 0.1 * y))])
def test_epilogue(rng, tile, act, ref_act):
    """act(C * scale[i] + bias[i] + res) on the last K block, with K spanning several blocks."""
    m, k, n_img, p = 20, 2 * G.KC + 3, 2, 41
    a = rng.standard_normal((m, k)).astype(np.float32)
    b3 = rng.standard_normal((n_img, k, p)).astype(np.float32)
    scale, bias = rng.random(m).astype(np.float32) + 0.5, rng.standard_normal(m).astype(np.float32)
    res = rng.standard_normal((n_img, m, p)).astype(np.float32)
    ep = Epilogue(np.float32, bias=bias, scale=scale, residual=res, act=act, alpha=0.1)
    assert ep.flags == HAS_BIAS | HAS_SCALE | HAS_RES
    out = np.empty((n_img, m, p), np.float32)
    G.gemm(a[None], k, b3, p, out, p, m, n_img * p, k, ep=ep)
    y = np.einsum("ik,nkp->nip", a.astype(np.float64), b3) * scale[:, None] + bias[:, None] + res
    _close(out, ref_act(y), k)


def test_empty_and_k0(rng):
    out = np.full((3, 4), 7, np.float32)
    G.matmul(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32), out)
    assert not out.any()
    G.matmul(np.zeros((0, 5), np.float32), np.zeros((5, 4), np.float32), np.zeros((0, 4), np.float32))


def test_tile_choice_minimises_padding():
    mr0, nr0, mr1, nr1 = G.MR0, G.NR0, G.MR1, G.NR1
    for m, n in [(64, 2304), (64, 64), (50, 4096), (256, 128)]:
        pick = G.tile_kernel(m, n)
        areas = [-(-m // mr0) * mr0 * -(-n // nr0) * nr0, -(-m // mr1) * mr1 * -(-n // nr1) * nr1]
        assert areas[pick] == min(areas)


@pytest.mark.parametrize("algo", ["im2col", "gemm_1x1"])
def test_conv_weight_grad_of_wide_layer_through_gemm(rng, algo):
    """Weight gradients with >= 256 output channels run gy (NCHW) @ cols^T on this GEMM (conv.py)."""
    from tests.backend.test_numba_conv import compare, conv_policy

    k = 3 if algo == "im2col" else 1
    xs, ws = (2, 5, 9, 8), (256, 5, k, k)
    attrs = {"stride": (2, 2), "padding": ((k // 2, k // 2),) * 2, "dilation": (1, 1), "groups": 1}
    x = rng.standard_normal(xs).astype(np.float32)
    (y,) = run_kernel("numpy", "conv2d", [x, rng.standard_normal(ws).astype(np.float32)], **attrs)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    with conv_policy(algo):
        compare("conv2d_weight_grad", [x, gy], weight_shape=ws, rtol=1e-4, atol=1e-4, **attrs)
