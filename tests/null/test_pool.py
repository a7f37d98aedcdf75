"""Pooling: max/avg/lp/adaptive/global/weighted/pyramid pools vs finite differences and PyTorch, errors, costs."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import ShapeError, Spec, Tensor
from engine.ops.pool import (
    adaptive_avg_pool2d_grad_p,
    adaptive_avg_pool2d_p,
    adaptive_max_pool2d_p,
    adaptive_windows,
    avg_pool2d_grad_p,
    avg_pool2d_p,
    gaussian_window,
    max_pool2d_grad_p,
    max_pool2d_p,
)
from tests.helpers import check_grads, compare_torch, import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip
TF = torch.nn.functional

# (shape, kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    ((1, 2, 6, 6), 2, None, 0, 1, False),
    ((2, 2, 7, 7), 3, 2, 1, 1, False),
    ((1, 2, 7, 8), 3, 2, 1, 1, True),
    ((1, 2, 8, 9), 3, 2, 1, 2, True),  # dilation + ceil
    ((1, 2, 5, 5), 2, 2, 1, 1, True),  # ceil: the 4th window would start in the right padding -> dropped
    ((1, 1, 7, 7), 2, 3, 0, 1, True),  # stride > kernel
    ((1, 1, 5, 6), (3, 2), (2, 1), (1, 1), (1, 2), False),  # per-axis everything
]
# (shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = [
    ((1, 2, 6, 6), 2, None, 0, False, True, None),
    ((2, 2, 7, 7), 3, 2, 1, False, True, None),
    ((1, 2, 7, 7), 3, 2, 1, False, False, None),
    ((1, 2, 7, 7), 3, 2, 1, True, True, None),  # ceil + count_include_pad: last window clipped at the padding
    ((1, 2, 8, 8), 3, 2, 1, True, False, None),
    ((1, 2, 5, 5), 2, 2, 1, True, True, None),
    ((1, 1, 6, 7), (3, 2), (2, 3), (1, 1), True, False, None),
    ((1, 2, 6, 6), 3, 2, 1, False, True, 5),  # divisor_override
    ((1, 1, 8, 8), (2, 4), (3, 1), (1, 2), True, True, None),
]


def _max(case):
    _, k, s, p, d, c = case
    return lambda x: F.max_pool2d(x, k, s, p, d, c), lambda x: TF.max_pool2d(x, k, s, p, d, c)


def _avg(case):
    _, k, s, p, c, cip, div = case
    return (lambda x: F.avg_pool2d(x, k, s, p, c, cip, div),
            lambda x: TF.avg_pool2d(x, k, s if s is not None else k, p, c, cip, div))


@pytest.mark.parametrize("case", MAX_CASES, ids=str)
def test_max_pool2d(case, rng):
    ours, theirs = _max(case)
    x = rng.standard_normal(case[0])
    check_grads(ours, [x])
    compare_torch(ours, theirs, [x])


@pytest.mark.parametrize("case", AVG_CASES, ids=str)
def test_avg_pool2d(case, rng):
    ours, theirs = _avg(case)
    x = rng.standard_normal(case[0])
    check_grads(ours, [x])
    compare_torch(ours, theirs, [x])


@pytest.mark.parametrize("case", [MAX_CASES[0], MAX_CASES[2], MAX_CASES[3], MAX_CASES[6]], ids=str)
def test_max_pool2d_ties_go_to_first_max(case):
    ours, theirs = _max(case)
    x = np.ones(case[0])  # every element ties; torch routes each window's gradient to its first element
    compare_torch(ours, theirs, [x], fwd_tol=0, grad_tol=1e-6)  # overlapping windows: float32 summation order
    x2 = np.round(np.random.default_rng(3).standard_normal(case[0]))  # many partial ties
    compare_torch(ours, theirs, [x2], fwd_tol=0, grad_tol=1e-6)


def test_max_pool2d_padding_never_wins():
    x = -np.ones((1, 1, 4, 4)) * 5  # all negative: zero padding would win, -inf padding does not
    y = F.max_pool2d(Tensor(x), 3, 2, 1)
    assert np.all(y.numpy() == -5)


@pytest.mark.parametrize("case", [
    ((1, 2, 9, 11), 3, 2, 1, 2, True), ((2, 1, 8, 8), 2, None, 0, 1, False), ((1, 1, 7, 7), 3, 1, 1, 1, False)])
def test_pool1d(case, rng):
    shape, k, s, p, d, c = case
    x = rng.standard_normal(shape[:2] + (shape[3],))
    ours, theirs = (lambda t: F.max_pool1d(t, k, s, p, d, c)), (lambda t: TF.max_pool1d(t, k, s, p, d, c))
    check_grads(ours, [x])
    compare_torch(ours, theirs, [x])
    ours = lambda t: F.avg_pool1d(t, k, s, p, c, count_include_pad=False)  # noqa: E731
    compare_torch(ours, lambda t: TF.avg_pool1d(t, k, s if s else k, p, c, count_include_pad=False), [x])
    check_grads(ours, [x])


# --- lp_pool ------------------------------------------------------------------------------------------------
# (norm_type, kernel, stride, ceil_mode)
LP_CASES = [(2, 2, None, False), (3, 3, 2, True), (1.5, (2, 3), (1, 2), False), (1, 3, 1, True),
            (float("inf"), 2, 2, False), (2, (3, 2), 2, True)]


@pytest.mark.parametrize("case", LP_CASES, ids=str)
def test_lp_pool2d(case, rng):
    p, k, s, c = case
    x = np.abs(rng.standard_normal((1, 2, 7, 8))) + 0.2  # positive: fractional powers and 1/p stay real
    ours = lambda t: F.lp_pool2d(t, p, k, s, c)  # noqa: E731
    check_grads(ours, [x])
    compare_torch(ours, lambda t: TF.lp_pool2d(t, p, k, s, c), [x])


def test_lp_pool2d_signed_input_even_power(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    compare_torch(lambda t: F.lp_pool2d(t, 2, 2), lambda t: TF.lp_pool2d(t, 2, 2), [x])


def test_lp_pool1d(rng):
    x = np.abs(rng.standard_normal((2, 3, 9))) + 0.2
    compare_torch(lambda t: F.lp_pool1d(t, 3, 3, 2, True), lambda t: TF.lp_pool1d(t, 3, 3, 2, True), [x])


# --- adaptive pools -----------------------------------------------------------------------------------------
# (H, W, output_size): divisible, non-divisible (overlapping windows), identity, upsampling, None
ADAPTIVE_CASES = [(6, 6, 3), (7, 9, (3, 4)), (5, 5, 2), (10, 7, (4, 5)), (5, 7, (5, 7)), (3, 4, (5, 6)),
                  (9, 9, 1), (7, 6, (None, 4))]


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
def test_adaptive_pools(case, kind, rng):
    h, w, o = case
    x = rng.standard_normal((2, 2, h, w))
    ours = F.adaptive_avg_pool2d if kind == "avg" else F.adaptive_max_pool2d
    theirs = TF.adaptive_avg_pool2d if kind == "avg" else TF.adaptive_max_pool2d
    check_grads(lambda t: ours(t, o), [x])
    compare_torch(lambda t: ours(t, o), lambda t: theirs(t, o), [x])


def test_adaptive_max_pool_ties_vs_torch():
    x = np.round(np.random.default_rng(5).standard_normal((2, 3, 7, 9)))
    compare_torch(lambda t: F.adaptive_max_pool2d(t, (3, 4)), lambda t: TF.adaptive_max_pool2d(t, (3, 4)), [x],
                  fwd_tol=0, grad_tol=1e-6)


@pytest.mark.parametrize("length, o", [(10, 4), (7, 3), (5, 5)])
def test_adaptive_pools_1d(length, o, rng):
    x = rng.standard_normal((2, 3, length))
    compare_torch(lambda t: F.adaptive_avg_pool1d(t, o), lambda t: TF.adaptive_avg_pool1d(t, o), [x])
    compare_torch(lambda t: F.adaptive_max_pool1d(t, o), lambda t: TF.adaptive_max_pool1d(t, o), [x])


def test_adaptive_windows_follow_pytorch():
    assert adaptive_windows(10, 4) == [(0, 3), (2, 5), (5, 8), (7, 10)]
    assert adaptive_windows(3, 5) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    assert adaptive_windows(6, 3) == [(0, 2), (2, 4), (4, 6)]


def test_global_avg_pool2d(rng):
    x = rng.standard_normal((2, 3, 5, 7))
    compare_torch(F.global_avg_pool2d, lambda t: TF.adaptive_avg_pool2d(t, 1), [x])
    check_grads(F.global_avg_pool2d, [x])


# --- spatial pyramid pooling ----------------------------------------------------------------------------------
def test_spatial_pyramid_pool_fixed_length(rng):
    for shape in [(2, 3, 13, 13), (2, 3, 20, 17), (2, 3, 3, 5)]:
        for mode in ("max", "avg"):
            y = F.spatial_pyramid_pool(Tensor(rng.standard_normal(shape)), (1, 2, 4), mode)
            assert y.shape == (2, 3 * (1 + 4 + 16))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spatial_pyramid_pool_values_and_grad(mode, rng):
    x = rng.standard_normal((2, 2, 7, 9))
    pool = TF.adaptive_max_pool2d if mode == "max" else TF.adaptive_avg_pool2d
    compare_torch(lambda t: F.spatial_pyramid_pool(t, (1, 2, 3), mode),
                  lambda t: torch.cat([pool(t, lv).flatten(1) for lv in (1, 2, 3)], 1), [x])
    check_grads(lambda t: F.spatial_pyramid_pool(t, (1, 2, 3), mode), [x])


# --- distance-weighted average pooling ------------------------------------------------------------------------
def test_gaussian_window():
    w = gaussian_window((5, 3), 1.0)
    assert w.shape == (5, 3) and np.isclose(w.sum(), 1.0)
    assert np.unravel_index(np.argmax(w), w.shape) == (2, 1)  # peak at the centre
    np.testing.assert_allclose(w, w[::-1, ::-1])  # symmetric
    assert w[0, 1] < w[1, 1] < w[2, 1] and w[2, 0] < w[2, 1]  # falls off with distance
    np.testing.assert_allclose(gaussian_window((2, 2), np.inf), np.full((2, 2), 0.25))


@pytest.mark.parametrize("k, s, p, sigma", [(3, 2, 1, 1.0), (3, 1, 0, 0.5), ((2, 3), None, 0, 2.0)])
def test_weighted_avg_pool2d(k, s, p, sigma, rng):
    x = rng.standard_normal((2, 3, 7, 8))
    kernel = (k, k) if isinstance(k, int) else k
    w = np.broadcast_to(gaussian_window(kernel, sigma), (3, 1) + kernel).astype(np.float32)
    compare_torch(lambda t: F.weighted_avg_pool2d(t, k, s, p, sigma),
                  lambda t: TF.conv2d(t, torch.tensor(w), None, s if s is not None else k, p, 1, 3), [x])
    check_grads(lambda t: F.weighted_avg_pool2d(t, k, s, p, sigma), [x])


def test_weighted_avg_pool2d_limits(rng):
    x = rng.standard_normal((1, 2, 6, 6))
    flat = F.weighted_avg_pool2d(Tensor(x), 3, 1, 1, sigma=np.inf).numpy()
    np.testing.assert_allclose(flat, F.avg_pool2d(Tensor(x), 3, 1, 1).numpy(), rtol=1e-12)
    const = F.weighted_avg_pool2d(Tensor(np.full((1, 1, 6, 6), 3.0)), 3, 2, 0, sigma=0.7).numpy()
    np.testing.assert_allclose(const, 3.0)  # weights sum to 1


# --- the gradient primitives: adjoint identities and the avg grads' own vjps --------------------------------------
def _observed_attrs(fn, x):
    seen = []
    with engine.observe(lambda prim, ins, attrs, outs: seen.append((attrs, outs[0].shape))):
        fn(Tensor(x))
    return seen[-1]


@pytest.mark.parametrize("case", AVG_CASES[:6], ids=str)
def test_avg_pool2d_grad_is_transpose_and_has_vjp(case, rng):
    x = rng.standard_normal(case[0])
    attrs, y_shape = _observed_attrs(_avg(case)[0], x)
    gy = rng.standard_normal(y_shape)
    y = engine.bind(avg_pool2d_p, Tensor(x), **attrs).numpy()
    gx = engine.bind(avg_pool2d_grad_p, Tensor(gy), input_shape=x.shape, **attrs).numpy()
    np.testing.assert_allclose(np.sum(y * gy), np.sum(x * gx), rtol=1e-10)
    check_grads(lambda g: engine.bind(avg_pool2d_grad_p, g, input_shape=x.shape, **attrs), [gy])


@pytest.mark.parametrize("case", ADAPTIVE_CASES[:4], ids=str)
def test_adaptive_avg_pool2d_grad_has_vjp(case, rng):
    h, w, o = case
    x = rng.standard_normal((1, 2, h, w))
    attrs, y_shape = _observed_attrs(lambda t: F.adaptive_avg_pool2d(t, o), x)
    gy = rng.standard_normal(y_shape)
    check_grads(lambda g: engine.bind(adaptive_avg_pool2d_grad_p, g, input_shape=x.shape, **attrs), [gy])


# --- shape-rule errors -------------------------------------------------------------------------------------
def _x(*shape, dtype=np.float32):
    return Tensor(np.zeros(shape, dtype))


@pytest.mark.parametrize("call, needles", [
    (lambda: F.max_pool2d(_x(1, 1, 8, 8), 3, 1, 2),
     ["max_pool2d", "padding must be at most half the kernel size", "padding=(2, 2)", "kernel=(3, 3)"]),
    (lambda: F.avg_pool2d(_x(1, 1, 8, 8), (2, 4), 1, (1, 3)),
     ["avg_pool2d", "at most half the kernel size", "padding=(1, 3)", "kernel=(2, 4)"]),
    (lambda: F.max_pool2d(_x(1, 1, 2, 2), 3),
     ["max_pool2d", "output size must be >= 1", "kernel is larger than the padded input", "input=[2, 2]",
      "output=[0, 0]"]),
    (lambda: F.max_pool2d(_x(1, 1, 3, 3), 2, dilation=3), ["max_pool2d", "dilated_kernel=(4, 4)", "input=[3, 3]"]),
    (lambda: F.max_pool2d(_x(1, 8, 8), 2), ["max_pool2d", "input must be 4-D", "input=[1, 8, 8]"]),
    (lambda: F.avg_pool2d(_x(8, 8), 2), ["avg_pool2d", "input must be 4-D", "input=[8, 8]"]),
    (lambda: F.max_pool1d(_x(1, 1, 8, 8), 2), ["max_pool1d", "input must be 3-D", "input=[1, 1, 8, 8]"]),
    (lambda: F.avg_pool1d(_x(1, 8), 2), ["avg_pool1d", "input must be 3-D", "input=[1, 8]"]),
    (lambda: F.max_pool2d(_x(1, 1, 8, 8), 2, stride=0), ["max_pool2d", "stride must be >= 1", "stride=(0, 0)"]),
    (lambda: F.max_pool2d(_x(1, 1, 8, 8), 0), ["max_pool2d", "kernel size must be >= 1", "kernel=(0, 0)"]),
    (lambda: F.max_pool2d(_x(1, 1, 8, 8, dtype=np.int64), 2), ["max_pool2d", "floating point", "dtype=int64"]),
    (lambda: F.avg_pool2d(_x(1, 1, 8, 8), 2, divisor_override=0),
     ["avg_pool2d", "divisor_override must be a positive int", "divisor_override=0"]),
    (lambda: F.adaptive_avg_pool2d(_x(1, 1, 8, 8), (0, 2)),
     ["adaptive_avg_pool2d", "output_size must be two ints >= 1", "output_size=(0, 2)"]),
    (lambda: F.adaptive_max_pool2d(_x(1, 8, 8), 2), ["adaptive_max_pool2d", "4-D", "input=[1, 8, 8]"]),
    (lambda: F.adaptive_avg_pool2d(_x(1, 1, 0, 8), 2), ["adaptive_avg_pool2d", "spatial sizes must be >= 1"]),
    (lambda: F.global_avg_pool2d(_x(1, 8, 8)), ["global_avg_pool2d", "4-D", "input=[1, 8, 8]"]),
    (lambda: F.weighted_avg_pool2d(_x(1, 1, 8, 8), 3, sigma=0.0), ["weighted_avg_pool2d", "sigma must be > 0"]),
    (lambda: F.spatial_pyramid_pool(_x(1, 1, 8, 8), ()), ["spatial_pyramid_pool", "at least one level"]),
])
def test_pool_shape_errors(call, needles):
    with pytest.raises(ShapeError) as e:
        call()
    for needle in needles:
        assert needle in str(e.value), f"{needle!r} not in {str(e.value)!r}"


def test_pool_grad_primitive_errors():
    x = Spec((1, 1, 6, 6), np.float32)
    attrs = dict(kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False)
    with pytest.raises(ShapeError, match=r"max_pool2d_grad: gy must have the forward pool's output shape "
                                         r"\(got gy=\[1, 1, 2, 2\], expected=\[1, 1, 3, 3\]\)"):
        max_pool2d_grad_p.abstract_eval(Spec((1, 1, 2, 2), np.float32), x, **attrs)


def test_pool_unsupported_arguments():
    with pytest.raises(NotImplementedError, match="max_pool2d: return_indices=True"):
        F.max_pool2d(_x(1, 1, 4, 4), 2, return_indices=True)
    with pytest.raises(ValueError, match="spatial_pyramid_pool: mode must be 'max' or 'avg'"):
        F.spatial_pyramid_pool(_x(1, 1, 4, 4), mode="median")
    with pytest.raises(ValueError, match="lp_pool2d: norm_type must be non-zero"):
        F.lp_pool2d(_x(1, 1, 4, 4), 0, 2)


def test_pool_strict():
    with pytest.raises(ShapeError, match=r"max_pool2d: strict=True .*cannot have W=5, P=0, F=2, S=2.*drops 1"):
        F.max_pool2d(_x(1, 1, 5, 5), 2, strict=True)
    with pytest.raises(ShapeError, match=r"avg_pool2d: strict=True .*along the width.*W=8, P=1, F=3, S=3"):
        F.avg_pool2d(_x(1, 1, 7, 8), 3, (2, 3), 1, strict=True)
    with pytest.raises(ShapeError, match=r"max_pool1d: strict=True .*W=10, P=0, F=3, S=2"):
        F.max_pool1d(_x(1, 1, 10), 2, dilation=2, strict=True)
    assert F.max_pool2d(_x(1, 1, 5, 5), 2, ceil_mode=True, strict=True).shape == (1, 1, 3, 3)  # ceil covers it
    assert F.max_pool2d(_x(1, 1, 6, 6), 2, strict=True).shape == (1, 1, 3, 3)


# --- cost rules ---------------------------------------------------------------------------------------------
def _cost(prim, in_specs, **attrs):
    return prim.cost(in_specs, prim.abstract_eval(*in_specs, **attrs), **attrs)


def test_pool_costs():
    x = Spec((1, 16, 32, 32), np.float32)
    mp = dict(kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False)
    c = _cost(max_pool2d_p, (x,), **mp)
    assert c.macs == 0 and c.flops == 16 * 16 * 16 * 3  # 3 comparisons per 2x2 window
    assert c.bytes_read == x.nbytes and c.bytes_written == x.nbytes // 4
    gy = Spec((1, 16, 16, 16), np.float32)
    assert _cost(max_pool2d_grad_p, (gy, x), **mp).flops == 16 * 16 * 16 * 4
    ap = dict(kernel=(3, 3), stride=(1, 1), padding=(1, 1), ceil_mode=False, count_include_pad=True, divisor=0)
    assert _cost(avg_pool2d_p, (x,), **ap).flops == 16 * 32 * 32 * 9
    assert _cost(avg_pool2d_grad_p, (x,), input_shape=x.shape, **ap).flops == 16 * 32 * 32 * 9
    gap = _cost(adaptive_avg_pool2d_p, (Spec((2, 8, 7, 7), np.float32),), output_size=(1, 1))
    assert gap.flops == 2 * 8 * 49
    overlap = _cost(adaptive_max_pool2d_p, (Spec((1, 1, 10, 10), np.float32),), output_size=(4, 4))
    assert overlap.flops == 12 * 12  # windows of 3 rows/cols each, overlapping: 4 * 3 per axis


def test_composites_bind_the_expected_primitives(rng):
    def prims(fn, x):
        seen = []
        with engine.observe(lambda prim, *a: seen.append(prim.name)):
            fn(Tensor(x))
        return [p for p in seen if p not in ("reshape",)]

    x4 = rng.standard_normal((1, 2, 6, 6))
    assert prims(lambda t: F.weighted_avg_pool2d(t, 3), x4) == ["conv2d"]  # a depthwise conv with a constant kernel
    assert prims(lambda t: F.max_pool1d(t, 2), x4[:, :, 0]) == ["max_pool2d"]
    assert prims(lambda t: F.spatial_pyramid_pool(t, (1, 2), "avg"), x4) == ["adaptive_avg_pool2d"] * 2 + ["concat"]
