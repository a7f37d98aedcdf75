"""Single-pass activation gradient primitives (relu_grad ... clamp_grad, engine/ops/elementwise.py) and the clamp
primitive: each activation's backward is one kernel, semantics match PyTorch's ``*_backward`` ops (NaN, signed
zero, infinities, ties at clamp bounds), their own vjp rules (double backward) vs finite differences, errors, cost.
"""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Spec, Tensor
from engine.ops import elementwise as E
from tests.helpers import check_grads, compare_torch, import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip
A = torch.ops.aten


def _away_from_zero(rng, shape):
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# grad primitive -> (attrs, its saved input (y or x) made from x)
GRAD_CASES = {
    "relu_grad": ({}, lambda x: x),  # any y: the rule reads only its sign (y = relu(x) is covered below)
    "leaky_relu_grad": ({"negative_slope": 0.1}, lambda x: x),
    "elu_grad": ({"alpha": 0.7}, lambda x: x),
    "sigmoid_grad": ({}, _sig),
    "tanh_grad": ({}, np.tanh),
    "silu_grad": ({}, lambda x: x),
    "clamp_grad": ({"min": -0.5, "max": 1.0}, lambda x: x),
}
GRAD_PRIMS = set(GRAD_CASES) | {"clamp"}

# activation (engine, torch) -> the one primitive its backward binds
ACTIVATIONS = {
    "relu": (F.relu, torch.relu, "relu_grad"),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda x: torch.nn.functional.leaky_relu(x, 0.1), "leaky_relu_grad"),
    "elu": (lambda x: F.elu(x, 0.7), lambda x: torch.nn.functional.elu(x, 0.7), "elu_grad"),
    "sigmoid": (F.sigmoid, torch.sigmoid, "sigmoid_grad"),
    "tanh": (F.tanh, torch.tanh, "tanh_grad"),
    "silu": (F.silu, torch.nn.functional.silu, "silu_grad"),
    "clamp": (lambda x: F.clamp(x, 0.0, 6.0), lambda x: torch.clamp(x, 0.0, 6.0), "clamp_grad"),
    "clamp_min": (lambda x: F.clamp(x, min=0.5), lambda x: torch.clamp(x, min=0.5), "clamp_grad"),
    "clamp_max": (lambda x: F.clamp(x, max=-0.5), lambda x: torch.clamp(x, max=-0.5), "clamp_grad"),
}

SPECIAL = np.array([-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0, np.nan, np.inf, -np.inf, 6.0, 7.0, -1.0, 0.5, -0.5,
                    100.0, -100.0], np.float32)


def _bind(name, gy, v, **attrs):
    return engine.bind(engine.get_primitive(name), gy, v, **attrs)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_backward_is_one_kernel(name, rng):
    ours, _, grad_prim = ACTIVATIONS[name]
    x = Tensor(rng.standard_normal((2, 3, 4)).astype(np.float32), requires_grad=True)
    y = ours(x)
    seen = []
    with engine.observe(lambda prim, *a: seen.append(prim.name)):
        y.backward(Tensor(np.ones(y.shape, np.float32)))
    assert seen == [grad_prim]


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_special_values_match_torch_autograd(name, rng):
    """NaN / +-0 / +-inf / bound ties, and NaN cotangents: forward and gradient as torch (elementwise, NaN == NaN)."""
    ours, theirs, _ = ACTIVATIONS[name]
    x = np.concatenate([SPECIAL, rng.standard_normal(64).astype(np.float32) * 4])
    g = np.concatenate([np.arange(1, len(SPECIAL) + 1, dtype=np.float32), rng.standard_normal(64).astype(np.float32)])
    g[[1, 9, 10, 11]] = np.nan  # a NaN cotangent where the gradient is masked off and where it passes
    xe = Tensor(x, requires_grad=True)
    with np.errstate(all="ignore"):
        ye = ours(xe)
        ye.backward(Tensor(g))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(g))
    exact = name.startswith(("relu", "leaky", "clamp"))  # selects and one multiply: bit for bit
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(ye.numpy(), yt.detach().numpy(), **tol)
    if name in ("sigmoid", "tanh"):
        # 1 - y*y cancels near |y| = 1: compare where the forward values agree bit for bit
        same = ye.numpy() == yt.detach().numpy()
        np.testing.assert_allclose(xe.grad.numpy()[same], xt.grad.numpy()[same], rtol=1e-5, atol=1e-6)
        assert np.array_equal(np.isnan(xe.grad.numpy()), np.isnan(xt.grad.numpy()))
    else:
        ref = xt.grad.numpy()
        if name == "elu":  # torch is inconsistent for NaN x (see test_grad_primitive_vs_aten_backward)
            ref = np.where(np.isnan(x), g, ref)
        np.testing.assert_allclose(xe.grad.numpy(), ref, **tol)


# the primitive alone vs torch's aten backward op, same saved value, float32
def _aten(name, g, v, attrs):
    tg, tv = torch.tensor(g), torch.tensor(v)
    if name == "relu_grad":
        return A.threshold_backward(tg, tv, 0)
    if name == "leaky_relu_grad":
        return A.leaky_relu_backward(tg, tv, attrs["negative_slope"], False)
    if name == "elu_grad":
        return A.elu_backward(tg, attrs["alpha"], 1, 1, False, tv)
    if name == "sigmoid_grad":
        return A.sigmoid_backward(tg, tv)
    if name == "tanh_grad":
        return A.tanh_backward(tg, tv)
    if name == "silu_grad":
        return A.silu_backward(tg, tv)
    tv.requires_grad_()
    torch.clamp(tv, attrs["min"], attrs["max"]).backward(tg)
    return tv.grad


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_grad_primitive_vs_aten_backward(name, rng):
    attrs, saved = GRAD_CASES[name]
    x = np.concatenate([SPECIAL, rng.standard_normal(3000).astype(np.float32) * 3])
    g = rng.standard_normal(x.shape).astype(np.float32)
    g[:4] = [np.nan, np.inf, -np.inf, 0.0]
    with np.errstate(all="ignore"):
        v = saved(x).astype(np.float32)
        ours = _bind(name, Tensor(g), Tensor(v), **attrs).numpy()
    ref = _aten(name, g, v, attrs).numpy()
    if name == "elu_grad":
        # aten's vectorized elu_backward sends NaN x down the x <= 0 branch, its scalar loop (and F.elu's backward on
        # small tensors) passes gy; we follow the scalar definition `x <= 0 ? gy*alpha*exp(x) : gy`
        ref = np.where(np.isnan(v), g, ref)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6 * np.nanmax(np.abs(g[np.isfinite(g)])))


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4)], ids=str)
def test_grad_primitive_vjp(name, shape, rng):
    """Double backward: the grad primitives' own vjp rules vs central differences, w.r.t. gy and the saved value."""
    attrs, saved = GRAD_CASES[name]
    x = _away_from_zero(rng, shape)
    if name == "clamp_grad":  # keep off the bounds too
        x = np.where(np.abs(x - 1.0) < 0.1, 1.3, np.where(np.abs(x + 0.5) < 0.1, -0.7, x))
    v = saved(x)
    check_grads(lambda gy, v_: _bind(name, gy, v_, **attrs), [rng.standard_normal(shape), v])


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "silu", "elu"])
def test_second_derivative_through_the_activation(name, rng):
    """d/dx of (the vjp of the activation): the grad primitive's d/dv composes with the activation's own vjp."""
    ours = {"sigmoid": F.sigmoid, "tanh": F.tanh, "silu": F.silu, "elu": lambda x: F.elu(x, 0.7)}[name]
    p = engine.get_primitive(name)
    attrs = {"alpha": 0.7} if name == "elu" else {}

    def first_derivative(x, gy):  # the vjp rule, run with grad enabled so it is itself differentiable
        y = ours(x)
        return p.vjp_rule(gy, y, x, **attrs)[0]

    check_grads(first_derivative, [_away_from_zero(rng, (3, 4)), rng.standard_normal((3, 4))])


def test_relu_vjp_saves_the_output_not_the_input(rng):
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = F.relu(x)
    seen = []
    with engine.observe(lambda prim, ins, attrs, outs: seen.append(ins)):
        y.backward(Tensor(np.ones((3, 4))))
    assert len(seen) == 1 and seen[0][1] is y
    np.testing.assert_array_equal(x.grad.numpy(), (x.numpy() > 0).astype(np.float64))


@pytest.mark.parametrize("shape", [(), (1,), (5,), (2, 3), (1, 2, 3)], ids=str)
@pytest.mark.parametrize("bounds", [(-0.5, 0.7), (None, 0.3), (-0.2, None), (0.5, -0.5)], ids=str)
def test_clamp_primitive_grad_and_torch(shape, bounds, rng):
    lo, hi = bounds
    x = rng.choice([-1.0, 0.0, 1.0], shape) + rng.uniform(-0.1, 0.1, shape)
    check_grads(lambda t: F.clamp(t, lo, hi), [x])
    compare_torch(lambda t: F.clamp(t, lo, hi), lambda t: torch.clamp(t, lo, hi), [x])


def test_clamp_bounds_are_inclusive_like_torch():
    """torch.clamp passes the gradient at x == min and x == max (relu6 / hardtanh would not)."""
    x = np.array([-1.0, 0.0, 3.0, 6.0, 7.0], np.float32)
    compare_torch(lambda t: F.clamp(t, 0.0, 6.0), lambda t: torch.clamp(t, 0.0, 6.0), [x], fwd_tol=0, grad_tol=0)
    xe = Tensor(x, requires_grad=True)
    F.clamp(xe, 0.0, 6.0).sum().backward()
    np.testing.assert_array_equal(xe.grad.numpy(), [0, 1, 1, 1, 0])


def test_clamp_forms():
    x = Tensor(np.array([-2.0, 0.5, 3.0], np.float32), requires_grad=True)
    assert F.clamp(x) is x
    assert x.clamp(0.0, 1.0)._node.prim.name == "clamp"
    assert F.clamp(x, np.float32(0.0), 1)._node.prim.name == "clamp"
    lo = Tensor(np.array([0.0, 1.0, 0.0], np.float32))
    y = F.clamp(x, lo, 2.0)  # tensor bounds: maximum / minimum
    np.testing.assert_array_equal(y.numpy(), [0.0, 1.0, 2.0])
    assert y._node.prim.name == "minimum"


def test_errors():
    f32, f64 = np.ones((2, 3), np.float32), np.ones((2, 3))
    with pytest.raises(engine.ShapeError, match=r"relu_grad: gy must have the shape of y \(got gy=\[3\], y=\[2, 3\]\)"):
        _bind("relu_grad", Tensor(np.ones(3, np.float32)), Tensor(f32))
    with pytest.raises(engine.ShapeError, match="silu_grad: all operands must have the same dtype"):
        _bind("silu_grad", Tensor(f64), Tensor(f32))
    with pytest.raises(engine.ShapeError, match="leaky_relu_grad: x must be floating point"):
        _bind("leaky_relu_grad", Tensor(f32), Tensor(np.ones((2, 3), np.int64)), negative_slope=0.1)
    with pytest.raises(engine.ShapeError, match="clamp: at least one of min and max must not be None"):
        engine.bind(E.clamp_p, Tensor(f32), min=None, max=None)
    with pytest.raises(engine.ShapeError, match="clamp: input must be floating point"):
        F.clamp(Tensor(np.arange(3)), 0.0, 1.0)


def test_cost_is_one_pass():
    s = Spec((32, 64, 32, 32), np.float32)
    for name in GRAD_CASES:
        p = engine.get_primitive(name)
        c = p.cost((s, s), p.abstract_eval(s, s, **GRAD_CASES[name][0]), **GRAD_CASES[name][0])
        assert (c.macs, c.bytes_read, c.bytes_written) == (0, 2 * s.nbytes, s.nbytes)
        assert c.flops == s.size * p.flops_per_element > 0
