"""numba kernels vs the numpy reference, kernel by kernel: elementwise, reductions, data movement, linalg,
softmax. :func:`tests.helpers.compare` runs one primitive's numpy and numba kernels on the same inputs and attrs
(outputs allocated from the primitive's shape rule) and checks every output. The other test_numba_* files use it
too, and tests/cuda runs these cases again on the cuda backend (compare() checks ``helpers.PARITY_BACKEND``).
"""

from __future__ import annotations

import numpy as np
import pytest

import engine
from tests.helpers import compare, run_kernel

__all__ = ["compare", "run_kernel"]  # the other test_numba_* files import them from here


def _rand(rng, shape, dtype=np.float32, positive=False):
    a = rng.standard_normal(shape).astype(dtype)
    return np.abs(a) + 0.1 if positive else a


def test_every_reference_primitive_has_a_numba_kernel():
    ref = engine.get_backend("numpy")
    numba_be = engine.get_backend("numba")
    assert numba_be.fallback is None
    missing = sorted(n for n in engine.PRIMITIVES if ref.has_kernel(n) and not numba_be.has_kernel(n))
    assert not missing, f"numba backend lacks kernels for {missing}"
    for name, k in numba_be.kernels.items():  # no reference kernel is reused as a fallback
        assert not k.__module__.startswith("backends.numpy"), name


def test_missing_kernel_fails_by_name():
    with pytest.raises(NotImplementedError, match="numba.*no_such_prim"):
        engine.get_backend("numba").kernel("no_such_prim")


UNARY = ["neg", "exp", "log", "sqrt", "abs", "relu", "tanh", "sigmoid", "silu"]
SHAPES = [(7,), (3, 5), (2, 3, 4, 5), (2, 1, 3, 2, 4, 3), (40000,)]


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary(rng, name, shape, dtype):
    compare(name, [_rand(rng, shape, dtype, positive=name in ("log", "sqrt"))])


def test_unary_strided_input(rng):
    x = _rand(rng, (6, 8, 10)).transpose(2, 0, 1)[::2]
    compare("exp", [x])
    compare("relu", [x])


@pytest.mark.parametrize("name,attrs", [("leaky_relu", {"negative_slope": 0.1}), ("elu", {"alpha": 0.7})])
def test_unary_with_attrs(rng, name, attrs):
    compare(name, [_rand(rng, (4, 33))], **attrs)


BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "greater", "equal"]
BROADCASTS = [((3, 4), (3, 4)), ((2, 3, 4, 5), (1, 3, 1, 1)), ((4, 1), (1, 5)), ((), (3, 2)), ((2, 3, 4), (4,)),
              ((2, 3, 2, 3, 2, 3), (3, 1, 3, 1, 3))]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("sa,sb", BROADCASTS)
def test_binary_broadcasting(rng, name, sa, sb):
    a, b = _rand(rng, sa, positive=name == "pow"), _rand(rng, sb)
    if name == "equal" and sa == sb:
        b = np.where(rng.random(sa) > 0.5, a, b).astype(a.dtype)
    compare(name, [a, b])


def test_binary_float64_and_special_values():
    a = np.array([1.0, -1.0, 0.0, np.nan, np.inf, 2.0])
    b = np.array([0.0, 0.0, 0.0, 1.0, 1.0, np.nan])
    for name in ("div", "maximum", "minimum", "add", "greater", "equal", "greater_equal", "not_equal"):
        compare(name, [a, b])


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), (2, 1, 3, 2, 4, 3)])
def test_where_astype_dropout(rng, shape):
    c = rng.random(shape) > 0.5
    a, b = _rand(rng, shape), _rand(rng, shape[-1:])
    compare("where", [c, a, b])
    compare("astype", [a], dtype="float64")
    compare("astype", [c], dtype="float32")
    compare("astype", [a], dtype="bool")
    mask = (rng.random(shape) > 0.3).astype(np.float32)
    compare("dropout", [a, mask], p=0.3)


@pytest.mark.parametrize("shape,axes", [((3, 4), (1,)), ((3, 4), (0,)), ((3, 4), (0, 1)), ((2, 8, 5, 5), (0, 2, 3)),
                                        ((4, 5, 6), (0, 2)), ((4, 5, 6), (1,)), ((2, 3, 4, 5), (1, 3)),
                                        ((100, 40), (0,)), ((3, 50000), (1,)), ((64, 20), (1,))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(rng, shape, axes, keepdims):
    x = _rand(rng, shape)
    compare("sum", [x], rtol=1e-5, atol=1e-4, axes=axes, keepdims=keepdims)
    compare("max", [x], axes=axes, keepdims=keepdims)
    compare("min", [x], axes=axes, keepdims=keepdims)


def test_integer_reductions():
    x = np.array([[200, 100, 7], [1, 2, 3]], np.int64)
    for name in ("sum", "max", "min"):
        compare(name, [x], axes=(1,), keepdims=False)


@pytest.mark.parametrize("shape,axis", [((7,), 0), ((3, 5), 1), ((3, 5), 0), ((2, 3, 4), 1)])
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax(rng, shape, axis, name):
    x = _rand(rng, shape)
    compare(name, [x], axis=axis, keepdims=False)
    compare(name, [np.round(x)], axis=axis, keepdims=True)  # ties: the first index wins


def test_max_and_argmax_with_nan():
    x = np.array([[1.0, np.nan, 3.0], [2.0, 5.0, np.nan]], np.float32)
    for name in ("max", "min"):
        compare(name, [x], axes=(1,), keepdims=False)
    for name in ("argmax", "argmin"):
        compare(name, [x], axis=1, keepdims=False)


def test_index_and_index_add(rng):
    x = _rand(rng, (3, 4, 5))
    rows, cols = np.array([2, 0, 2]), np.array([[1], [3]])
    items = (("slice", None, None, -1), ("array", 0), ("array", 1))
    compare("index", [x, rows, cols], items=items)
    g = _rand(rng, (3, 2, 3))
    compare("index_add", [g, rows, cols], shape=x.shape, items=items)  # repeated rows accumulate


def test_shape_ops(rng):
    x = _rand(rng, (2, 3, 4, 5))
    compare("reshape", [x], shape=(6, 20))
    compare("reshape", [x.transpose(3, 1, 0, 2)], shape=(5, 24))
    compare("transpose", [x], perm=(0, 2, 3, 1))
    compare("transpose", [_rand(rng, (2, 3, 2, 3, 2, 3))], perm=(5, 3, 1, 4, 2, 0))
    compare("broadcast_to", [_rand(rng, (3, 1, 5))], shape=(2, 3, 4, 5))
    compare("concat", [x, _rand(rng, (2, 1, 4, 5)), x], axis=1)
    compare("pad", [x], pads=((0, 0), (1, 0), (2, 1), (0, 3)), value=-1.5)
    compare("slice", [x], starts=(0, 1, 0, 1), stops=(2, 3, 4, 5), steps=(1, 1, 2, 3))
    compare("unslice", [_rand(rng, (2, 2, 2, 2))], shape=(2, 3, 4, 5), starts=(0, 1, 0, 1), steps=(1, 1, 2, 3))


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((37, 300), (300, 53)), ((2, 3, 4), (4, 6)),
                                   ((2, 1, 3, 4), (5, 4, 2))])
def test_matmul(rng, sa, sb):
    compare("matmul", [_rand(rng, sa), _rand(rng, sb)], rtol=1e-4, atol=1e-5)


def test_linear(rng):
    x, w, b = _rand(rng, (2, 3, 6)), _rand(rng, (4, 6)), _rand(rng, (4,))
    compare("linear", [x, w], rtol=1e-4, atol=1e-5)
    compare("linear", [x, w, b], rtol=1e-4, atol=1e-5)
    compare("linear", [x[0, 0], w, b], rtol=1e-4, atol=1e-5)
    compare("linear", [x[0], w, b], rtol=1e-4, atol=1e-5)  # 2-D: the numba GEMM (W^T packed from W's rows)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,axis", [((4, 10), 1), ((4, 10), 0), ((2, 3, 4, 5), 1), ((3, 1000), 1)])
def test_softmax(rng, name, shape, axis):
    compare(name, [_rand(rng, shape) * 5], rtol=1e-5, atol=1e-6, axis=axis)


def test_kernels_match_their_own_python_body(rng):
    """numba's doc-test pattern: the compiled kernel equals its interpreted ``.py_func`` (prange -> range)."""
    from backends.numba import elementwise, reduce
    from backends.numba.conv.im2col import im2col

    a, b = _rand(rng, (1, 2, 3, 40)), _rand(rng, (1, 2, 3, 40))
    o1, o2 = np.empty_like(a), np.empty_like(a)
    elementwise.binary4(elementwise.MUL, a, b, o1)
    elementwise.binary4.py_func(elementwise.MUL, a, b, o2)
    np.testing.assert_array_equal(o1, o2)
    x3 = _rand(rng, (3, 5, 7))
    r1, r2 = np.empty(5, np.float32), np.empty(5, np.float32)
    reduce.reduce_abc(reduce.MAX, x3, r1)
    reduce.reduce_abc.py_func(reduce.MAX, x3, r2)
    np.testing.assert_array_equal(r1, r2)
    x = _rand(rng, (2, 3, 6, 5))
    c1, c2 = np.empty((3 * 9, 2 * 4 * 3), np.float32), np.empty((3 * 9, 2 * 4 * 3), np.float32)
    im2col(x, c1, 3, 3, 2, 2, 1, 1, 1, 1, 4, 3)
    im2col.py_func(x, c2, 3, 3, 2, 2, 1, 1, 1, 1, 4, 3)
    np.testing.assert_array_equal(c1, c2)


def test_eager_autograd_on_numba_matches_numpy(fast_backend, rng):
    """The same small network forward and backward under the `fast_backend` fixture, against numpy."""
    import engine.functional as F

    xa, wa = _rand(rng, (4, 6)), _rand(rng, (3, 6))
    x, w = engine.Tensor(xa, requires_grad=True), engine.Tensor(wa, requires_grad=True)
    loss = F.log_softmax(F.tanh(F.linear(x, w)), 1).sum()
    loss.backward()
    with engine.use_backend("numpy"):
        x2, w2 = engine.Tensor(xa, requires_grad=True), engine.Tensor(wa, requires_grad=True)
        loss2 = F.log_softmax(F.tanh(F.linear(x2, w2)), 1).sum()
        loss2.backward()
    np.testing.assert_allclose(loss.item(), loss2.item(), rtol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w.grad.numpy(), w2.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_sum_fast_path_matches_reference(rng, dtype):
    """sum over (N, H, W) with >= 16 channels takes sum_rows_b (vectorized, reassociated float64 sums)."""
    x = rng.standard_normal((3, 20, 5, 7)).astype(dtype)
    compare("sum", [x], rtol=1e-5, atol=1e-5, axes=(0, 2, 3), keepdims=False)
    x[1, 3, 2, 2], x[0, 5, 0, 0], x[2, 7, 1, 1], x[0, 7, 4, 6] = np.nan, np.inf, np.inf, -np.inf
    compare("sum", [x], rtol=1e-5, atol=1e-5, axes=(0, 2, 3), keepdims=True)
