"""Edge cases of the vectorized numba pooling kernels vs the numpy reference: NaN / -inf / tied windows, padding,
dilation, ceil mode, strides 1-3 (stride phases), the 2x2/2 fast path and its fallbacks, float64, odd sizes,
non-contiguous inputs, and more planes than prange chunks."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from tests.backend.test_numba_parity import compare, run_kernel


def _max_attrs(k, s, p, d=1, ceil=False):
    two = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return dict(kernel=two(k), stride=two(s), padding=two(p), dilation=two(d), ceil_mode=ceil)


def _check_max(x, rng, **attrs):
    (y,) = run_kernel("numpy", "max_pool2d", [x], **attrs)
    compare("max_pool2d", [x], **attrs)
    gy = rng.standard_normal(y.shape).astype(x.dtype)
    compare("max_pool2d_grad", [gy, x], **attrs)


MAX_CASES = [
    _max_attrs(2, 2, 0),  # 2x2/2 fast path
    _max_attrs(2, 2, 0, ceil=True),  # fast path unless a size is odd (partial last window)
    _max_attrs(2, 2, 1, ceil=True),
    _max_attrs(2, 1, 0),
    _max_attrs(3, 2, 1),  # ResNet stem
    _max_attrs(3, 2, 1, ceil=True),
    _max_attrs(3, 1, 1),
    _max_attrs(3, 3, 1),  # stride 3: generic stride-phase split
    _max_attrs(2, 3, 0, ceil=True),  # stride > kernel: skipped columns
    _max_attrs(3, 2, 1, d=2),
    _max_attrs(3, 2, 1, d=2, ceil=True),
    _max_attrs((3, 2), (2, 1), (1, 1), d=(1, 2)),
    _max_attrs((1, 3), (1, 2), (0, 1)),
    _max_attrs((2, 4), (3, 1), (1, 2), ceil=True),
]
SHAPES = [(2, 3, 7, 7), (1, 2, 8, 9), (1, 1, 5, 12), (2, 2, 10, 6)]


def _valid(x, attrs) -> bool:
    try:
        run_kernel("numpy", "max_pool2d", [x], **attrs)
    except engine.ShapeError:
        return False
    return True


@pytest.mark.parametrize("attrs", MAX_CASES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_max_pool_ties(rng, attrs, shape):
    x = np.round(rng.standard_normal(shape)).astype(np.float32)  # many ties: the first tap must win
    if _valid(x, attrs):
        _check_max(x, rng, **attrs)


@pytest.mark.parametrize("attrs", MAX_CASES, ids=str)
def test_max_pool_constant_input(rng, attrs):
    x = np.full((2, 2, 9, 8), -2.0, np.float32)  # every window one big tie
    if _valid(x, attrs):
        _check_max(x, rng, **attrs)


@pytest.mark.parametrize("attrs", MAX_CASES, ids=str)
def test_max_pool_nan(rng, attrs):
    x = np.round(rng.standard_normal((2, 3, 9, 10)) * 2).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, x.size // 6, replace=False)] = np.nan  # windows with 0, 1 or several NaNs
    x[1, 2] = np.nan  # all-NaN plane: the first NaN of each window takes the gradient
    if _valid(x, attrs):
        _check_max(x, rng, **attrs)


@pytest.mark.parametrize("attrs", MAX_CASES, ids=str)
def test_max_pool_minus_inf(rng, attrs):
    """Windows that are all -inf: the reference's first tap wins even when it is padding (gradient dropped)."""
    x = np.round(rng.standard_normal((2, 2, 9, 8))).astype(np.float32)
    x[0] = -np.inf
    x[1, :, ::3] = -np.inf
    x[1, 1, :, 1::2] = -np.inf
    if _valid(x, attrs):
        _check_max(x, rng, **attrs)


@pytest.mark.parametrize("attrs", [_max_attrs(2, 1, 1, d=4), _max_attrs((2, 3), 1, (1, 1), d=(4, 2))], ids=str)
def test_max_pool_windows_of_only_padding(rng, attrs):
    """Dilation can put every tap of a window in the padding: -inf out, no gradient from it."""
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    (y,) = run_kernel("numpy", "max_pool2d", [x], **attrs)
    assert np.isneginf(y).any()
    _check_max(x, rng, **attrs)


@pytest.mark.parametrize("attrs", [MAX_CASES[0], MAX_CASES[4], MAX_CASES[7], MAX_CASES[11]], ids=str)
def test_max_pool_float64_and_many_planes(rng, attrs):
    x = np.round(rng.standard_normal((5, 7, 11, 9)) * 3)  # 35 planes: uneven prange chunks
    _check_max(x, rng, **attrs)
    _check_max(x.astype(np.float32), rng, **attrs)


@pytest.mark.parametrize("attrs", [MAX_CASES[0], MAX_CASES[4]], ids=str)
def test_max_pool_non_contiguous(rng, attrs):
    base = np.round(rng.standard_normal((3, 10, 12, 4))).astype(np.float32)
    x = base.transpose(0, 3, 2, 1)[:, 1:, :, ::-1]  # (3, 3, 12, 10), no unit stride anywhere
    assert not x.flags.c_contiguous
    (y,) = run_kernel("numpy", "max_pool2d", [x], **attrs)
    gy = rng.standard_normal(y.shape + (2,)).astype(np.float32)[..., 0]  # strided gy too
    compare("max_pool2d", [x], **attrs)
    compare("max_pool2d_grad", [gy, x], **attrs)


def test_max_pool_2x2_odd_sizes_zero_the_uncovered_border(rng):
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    attrs = _max_attrs(2, 2, 0)
    (gx,) = run_kernel("numba", "max_pool2d_grad", [np.ones((2, 3, 3, 4), np.float32), x], **attrs)
    assert (gx[:, :, 6] == 0).all() and (gx[:, :, :, 8] == 0).all()
    assert (gx[:, :, :6, :8].reshape(2, 3, 3, 2, 4, 2).sum(axis=(3, 5)) == 1).all()
    _check_max(x, rng, **attrs)


def test_max_pool_eager_backward_matches_numpy(rng):
    """Eager forward + backward through the engine on a non-contiguous input, both backends."""
    import engine.functional as F

    a = np.round(rng.standard_normal((2, 12, 13, 3))).astype(np.float32)

    def run():
        x = engine.Tensor(a, requires_grad=True)
        h = x.permute(0, 3, 1, 2) if hasattr(x, "permute") else F.permute(x, (0, 3, 1, 2))
        y1 = F.max_pool2d(h, 3, 2, 1)
        y2 = F.max_pool2d(h, 2)
        y3 = F.avg_pool2d(h, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        loss = (y1 * y1).sum() + (y2 * 3).sum() + (y3 * y3).sum()
        loss.backward()
        return loss.item(), x.grad.numpy()

    with engine.use_backend("numba"):
        got = run()
    with engine.use_backend("numpy"):
        ref = run()
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


AVG_CASES = [
    dict(kernel=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False),
    dict(kernel=(3, 3), stride=(1, 1), padding=(1, 1), ceil_mode=False),
    dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel=(3, 3), stride=(3, 3), padding=(1, 1), ceil_mode=True),  # stride 3: generic split/merge
    dict(kernel=(2, 2), stride=(3, 3), padding=(1, 0), ceil_mode=True),  # stride > kernel
    dict(kernel=(3, 2), stride=(1, 2), padding=(1, 0), ceil_mode=True),
    dict(kernel=(1, 4), stride=(2, 3), padding=(0, 2), ceil_mode=True),
]


@pytest.mark.parametrize("pc", AVG_CASES, ids=str)
@pytest.mark.parametrize("count_include_pad,divisor", [(True, 0), (False, 0), (False, 5)])
@pytest.mark.parametrize("shape,dtype", [((2, 3, 7, 8), np.float32), ((5, 7, 9, 11), np.float64),
                                         ((1, 1, 4, 13), np.float32)], ids=str)
def test_avg_pool(rng, pc, count_include_pad, divisor, shape, dtype):
    attrs = dict(pc, count_include_pad=count_include_pad, divisor=divisor)
    x = rng.standard_normal(shape).astype(dtype)
    try:
        (y,) = run_kernel("numpy", "avg_pool2d", [x], **attrs)
    except engine.ShapeError:
        return
    compare("avg_pool2d", [x], **attrs)
    gy = rng.standard_normal(y.shape).astype(dtype)
    compare("avg_pool2d_grad", [gy], input_shape=x.shape, **attrs)
    compare("avg_pool2d", [x.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)], **attrs)  # F-ordered planes


def test_avg_pool_nan_and_inf_stay_in_their_windows(rng):
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    x[0, 0, 0, 0], x[0, 1, 5, 6] = np.nan, np.inf
    attrs = dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=False, count_include_pad=True, divisor=0)
    compare("avg_pool2d", [x], **attrs)
    gy = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    gy[0, 1, 2, 1] = np.nan
    compare("avg_pool2d_grad", [gy], input_shape=x.shape, **attrs)
