"""Elementwise primitives: vjp vs central differences (float64) and forward + gradients vs PyTorch (float32)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor
from engine.ops import elementwise
from engine.primitive import Primitive
from tests.helpers import check_grads, compare_torch, import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip


def _any(rng, shape):
    return rng.standard_normal(shape)


def _positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def _away_from_zero(rng, shape):
    # kinks (relu, abs, ...) sit at 0: keep finite differences off them
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


# name -> (engine fn, torch fn, input sampler)
UNARY = {
    "neg": (F.neg, torch.neg, _any),
    "exp": (F.exp, torch.exp, _any),
    "log": (F.log, torch.log, _positive),
    "sqrt": (F.sqrt, torch.sqrt, _positive),
    "abs": (F.abs, torch.abs, _away_from_zero),
    "relu": (F.relu, torch.relu, _away_from_zero),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: torch.nn.functional.leaky_relu(x, 0.2),
                   _away_from_zero),
    "elu": (lambda x: F.elu(x, 1.3), lambda x: torch.nn.functional.elu(x, 1.3), _away_from_zero),
    "sigmoid": (F.sigmoid, torch.sigmoid, _any),
    "tanh": (F.tanh, torch.tanh, _any),
    "silu": (F.silu, torch.nn.functional.silu, _any),
    # composites
    "square": (F.square, torch.square, _any),
    "clamp": (lambda x: F.clamp(x, -0.5, 0.7), lambda x: torch.clamp(x, -0.5, 0.7),
              lambda rng, s: rng.choice([-1.0, 0.0, 1.0], s) + rng.uniform(-0.1, 0.1, s)),
}
UNARY_SHAPES = [(), (1,), (5,), (2, 3), (1, 2, 3)]


@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_grad(name, shape, rng):
    ours, _, sample = UNARY[name]
    check_grads(ours, [sample(rng, shape)])


@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_vs_torch(name, shape, rng):
    ours, theirs, sample = UNARY[name]
    compare_torch(ours, theirs, [sample(rng, shape)])


def test_unary_rejects_integer_input():
    with pytest.raises(engine.ShapeError, match="exp: input must be floating point"):
        F.exp(Tensor(np.arange(3)))


def test_sigmoid_is_stable_for_large_inputs():
    x = Tensor(np.array([-1000.0, 0.0, 1000.0], np.float32))
    with np.errstate(over="raise", invalid="raise"):
        np.testing.assert_allclose(F.sigmoid(x).numpy(), [0.0, 0.5, 1.0])


# --- binary -------------------------------------------------------------------------------------------------
def _nonzero_b(rng, sa, sb):
    return rng.standard_normal(sa), _away_from_zero(rng, sb)


def _pos_a(rng, sa, sb):
    return _positive(rng, sa), rng.uniform(-2.0, 2.0, sb)


def _plain(rng, sa, sb):
    return rng.standard_normal(sa), rng.standard_normal(sb)


BINARY = {
    "add": (F.add, torch.add, _plain),
    "sub": (F.sub, torch.sub, _plain),
    "mul": (F.mul, torch.mul, _plain),
    "div": (F.div, torch.div, _nonzero_b),
    "pow": (F.pow, torch.pow, _pos_a),
    "maximum": (F.maximum, torch.maximum, _plain),
    "minimum": (F.minimum, torch.minimum, _plain),
}
BROADCAST = [((2, 3), (2, 3)), ((2, 3), (3,)), ((3,), (2, 3)), ((2, 1, 3), (4, 1)), ((1,), (2, 3)),
             ((), (2, 3)), ((2, 3), ()), ((1, 3), (1, 3)), ((1, 1), (1, 1))]


@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_grad(name, shapes, rng):
    ours, _, sample = BINARY[name]
    check_grads(ours, list(sample(rng, *shapes)))


@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_vs_torch(name, shapes, rng):
    ours, theirs, sample = BINARY[name]
    compare_torch(ours, theirs, list(sample(rng, *shapes)))


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_minmax_ties_split_the_gradient_like_torch(name):
    a = np.array([1.0, 2.0, 3.0, -1.0])
    b = np.array([1.0, 0.0, 3.0, 5.0])
    ours, theirs, _ = BINARY[name]
    compare_torch(ours, theirs, [a, b])


@pytest.mark.parametrize("case", ["x+2", "2-x", "2/x", "x**3", "2**x", "x*2", "-x", "x/2"])
def test_python_scalar_operands(case, rng):
    fns = {"x+2": lambda x: x + 2.0, "2-x": lambda x: 2.0 - x, "2/x": lambda x: 2.0 / x, "x**3": lambda x: x ** 3.0,
           "2**x": lambda x: 2.0 ** x, "x*2": lambda x: x * 2, "-x": lambda x: -x, "x/2": lambda x: x / 2}
    fn = fns[case]
    x = _away_from_zero(rng, (2, 3))
    check_grads(fn, [x])
    compare_torch(fn, fn, [x])


def test_scalar_operand_keeps_tensor_dtype():
    x = Tensor(np.ones(3, np.float32))
    assert (x * 2.5).dtype == np.float32
    assert (np.float64(2.0) + x).dtype == np.float32


def test_pow_gradient_wrt_exponent(rng):
    # d/db a**b = a**b log a; checked together with d/da
    check_grads(F.pow, [_positive(rng, (2, 3)), rng.standard_normal((3,))])


# --- comparisons, where, astype -----------------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 4))], ids=str)
@pytest.mark.parametrize("name,theirs", [("greater", torch.gt), ("equal", torch.eq)])
def test_comparisons_forward(name, theirs, shapes, rng):
    a = rng.integers(-2, 3, shapes[0]).astype(np.float32)
    b = rng.integers(-2, 3, shapes[1]).astype(np.float32)
    out = getattr(F, name)(Tensor(a, requires_grad=True), Tensor(b))
    assert out.dtype == np.bool_
    assert not out.requires_grad  # comparisons are not differentiable
    np.testing.assert_array_equal(out.numpy(), theirs(torch.tensor(a), torch.tensor(b)).numpy())


def test_comparison_operators():
    x = Tensor(np.array([1.0, 2.0, 3.0], np.float32))
    np.testing.assert_array_equal((x > 2.0).numpy(), [False, False, True])
    np.testing.assert_array_equal((x < 2.0).numpy(), [True, False, False])


@pytest.mark.parametrize("shapes", [((2, 3), (2, 3), (2, 3)), ((2, 3), (3,), (2, 1)), ((1, 3), (2, 1), ()),
                                    ((4,), (1,), (4,))], ids=str)
def test_where_grad_and_torch(shapes, rng):
    cond = rng.random(shapes[0]) > 0.5

    def ours(a, b):
        return F.where(Tensor(cond), a, b)

    def theirs(a, b):
        return torch.where(torch.tensor(cond), a, b)

    arrays = [rng.standard_normal(shapes[1]), rng.standard_normal(shapes[2])]
    check_grads(ours, arrays)
    compare_torch(ours, theirs, arrays)


def test_where_rejects_a_non_bool_condition():
    with pytest.raises(engine.ShapeError, match="where: condition must be a bool tensor"):
        engine.bind(elementwise.where_p, Tensor(np.ones(2, np.float32)), Tensor(np.ones(2, np.float32)),
                    Tensor(np.ones(2, np.float32)))


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)], ids=str)
def test_astype_grad(shape, rng):
    # float64 -> float32 -> float64: the cast's vjp casts the cotangent back; eps is large for float32 rounding
    check_grads(lambda x: F.astype(F.astype(x, np.float32), np.float64) * 3.0, [rng.standard_normal(shape)],
                eps=1e-3, atol=1e-4, rtol=1e-4)
    compare_torch(lambda x: F.astype(F.astype(x, np.float64) * 2.0, np.float32), lambda x: (x.double() * 2.0).float(),
                  [rng.standard_normal(shape)])


def test_astype_same_dtype_is_identity_and_int_cast_has_no_grad():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    assert F.astype(x, "float32") is x
    i = F.astype(x, "int64")
    assert i.dtype == np.int64 and not i.requires_grad
    f = F.astype(Tensor(np.arange(3)), "float32")
    np.testing.assert_array_equal(f.numpy(), [0.0, 1.0, 2.0])


def test_every_elementwise_primitive_is_covered():
    prims = {v.name for v in vars(elementwise).values() if isinstance(v, Primitive)}
    from tests.null.test_activation_grad import GRAD_PRIMS  # the activation gradients and clamp are tested there

    # the comparisons: tests/null/test_tensor_api.py
    covered = set(UNARY) | set(BINARY) | {"greater", "equal", "greater_equal", "not_equal", "where", "astype"} \
        | GRAD_PRIMS
    assert prims <= covered, f"untested elementwise primitives: {sorted(prims - covered)}"
