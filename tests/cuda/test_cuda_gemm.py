"""cuda matmul / linear / fused_linear against the numpy reference, in numba's simulator with tiny tiles (sizes that
do not divide them, numpy batch broadcasting, float64)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

if not cuda.is_available():
    pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1 set before numba is imported", allow_module_level=True)

from backends.cuda import gemm  # noqa: E402
from backends.cuda.tiling import Tile  # noqa: E402
from backends.numpy.table import backend as ref  # noqa: E402
from tests.cuda.small_tiles import use_small_tiles  # noqa: E402


@pytest.fixture
def small(monkeypatch):
    use_small_tiles(monkeypatch)


def _close(got, want, tol=1e-5) -> None:
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("sa, sb", [((5, 7), (7, 9)), ((2, 1, 5, 3), (3, 3, 4)), ((3, 5, 6), (6, 2)),
                                    ((1, 2, 3, 1, 4, 9), (2, 1, 2, 9, 17)), ((17, 1), (1, 3))])
def test_matmul_broadcasting(small, sa, sb) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)
    want = np.empty(np.broadcast_shapes(sa[:-2], sb[:-2]) + (sa[-2], sb[-1]), np.float32)
    ref.kernel("matmul")(a, b, out=want)
    out = cuda.device_array(want.shape, np.float32)
    gemm.matmul(cuda.to_device(a), cuda.to_device(b), out=out)
    _close(out.copy_to_host(), want)


def test_matmul_float64(small) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 9, 11)), rng.standard_normal((11, 19))
    out = cuda.device_array((2, 9, 19), np.float64)
    gemm.matmul(cuda.to_device(a), cuda.to_device(b), out=out)
    _close(out.copy_to_host(), a @ b, 1e-12)


@pytest.mark.parametrize("xs", [(13,), (2, 3, 13)])
def test_linear(small, xs) -> None:
    rng = np.random.default_rng(2)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (xs, (10, 13), (10,)))
    for bias in ((), (b,)):
        want = np.empty(xs[:-1] + (10,), np.float32)
        ref.kernel("linear")(x, w, *bias, out=want)
        out = cuda.device_array(want.shape, np.float32)
        gemm.linear(cuda.to_device(x), cuda.to_device(w), *(cuda.to_device(a) for a in bias), out=out)
        _close(out.copy_to_host(), want)


@pytest.mark.parametrize("activation, act_attrs", [("relu", ()), ("leaky_relu", (("negative_slope", 0.1),)),
                                                   ("silu", ()), ("none", ())])
def test_fused_linear(small, activation, act_attrs) -> None:
    rng = np.random.default_rng(3)
    x, w, b, r = (rng.standard_normal(s).astype(np.float32) for s in ((3, 2, 7), (9, 7), (9,), (3, 2, 9)))
    attrs = {"has_bias": True, "has_residual": True, "activation": activation, "act_attrs": act_attrs}
    want = np.empty((3, 2, 9), np.float32)
    ref.kernel("fused_linear")(x, w, b, r, out=want, **attrs)
    out = cuda.device_array(want.shape, np.float32)
    gemm.fused_linear(*(cuda.to_device(a) for a in (x, w, b, r)), out=out, **attrs)
    _close(out.copy_to_host(), want)


def test_batch_geo_merges_axes_and_limits_them() -> None:
    # (2, 3) both broadcast alike -> one axis of 6; b broadcasts over a's leading axis
    assert gemm.batch_geo((2, 3), (1, 3), (2, 3)) == (1, 1, 2, 3) + (0, 0, 3, 1) + (0, 0, 0, 1)
    assert gemm.batch_geo((4, 5), (4, 5), (4, 5)) == (1, 1, 1, 20) + (0, 0, 0, 1) + (0, 0, 0, 1)
    with pytest.raises(NotImplementedError, match="matmul: batch shapes"):
        gemm.batch_geo((2, 1, 2, 1, 2), (1, 2, 1, 2, 1), (2, 2, 2, 2, 2))


def test_tile_rejects_shapes_its_threads_cannot_stage() -> None:
    with pytest.raises(ValueError, match="tm must divide bm"):
        Tile(8, 8, 4, 3, 2)
    with pytest.raises(ValueError, match="threads must divide bm\\*bk and bn\\*bk"):
        Tile(8, 8, 1, 1, 1)  # 64 threads, 8 elements per staged tile
