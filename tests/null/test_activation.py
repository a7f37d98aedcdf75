"""softmax / log_softmax / dropout (engine/ops/activation.py): gradients, PyTorch parity, dropout semantics."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor
from engine.ops import activation
from engine.primitive import Primitive
from tests.helpers import check_grads, compare_torch, import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip

SOFTMAX_CASES = [((5,), 0), ((2, 5), -1), ((2, 5), 0), ((1, 4), 1), ((2, 3, 4), 1), ((2, 3, 1), -1), ((1, 1), 1)]


@pytest.mark.parametrize("shape,dim", SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_grad(name, shape, dim, rng):
    fn = getattr(F, name)
    check_grads(lambda x: fn(x, dim), [rng.standard_normal(shape)])


@pytest.mark.parametrize("shape,dim", SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_vs_torch(name, shape, dim, rng):
    ours, theirs = getattr(F, name), getattr(torch.nn.functional, name)
    compare_torch(lambda x: ours(x, dim), lambda x: theirs(x, dim), [rng.standard_normal(shape) * 3])


def test_softmax_is_stable_for_large_logits():
    x = Tensor(np.array([[1000.0, 0.0, -1000.0]], np.float32))
    np.testing.assert_allclose(F.softmax(x, 1).numpy(), [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(F.log_softmax(x, 1).numpy(), [[0.0, -1000.0, -2000.0]])


def test_softmax_methods():
    x = Tensor(np.array([[1.0, 2.0]], np.float32))
    np.testing.assert_allclose(x.softmax().numpy(), F.softmax(x, -1).numpy())
    np.testing.assert_allclose(x.log_softmax(0).numpy(), F.log_softmax(x, 0).numpy())


def test_softmax_axis_error():
    with pytest.raises(engine.ShapeError, match=r"softmax: axis must be in \[0, 2\)"):
        engine.bind(activation.softmax_p, Tensor(np.ones((2, 3), np.float32)), axis=2)


# --- dropout ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4,), (2, 3), (1, 2, 3)], ids=str)
def test_dropout_primitive_grad(shape, rng):
    mask = (rng.random(shape) > 0.3).astype(np.float64)

    def fn(x):  # the mask is an input, so the primitive is deterministic given it
        return engine.bind(activation.dropout_p, x, Tensor(mask), p=0.3)

    check_grads(fn, [rng.standard_normal(shape)])
    m32 = torch.tensor(mask.astype(np.float32))
    compare_torch(lambda x: engine.bind(activation.dropout_p, x, Tensor(mask.astype(np.float32)), p=0.3),
                  lambda x: x * m32 / 0.7, [rng.standard_normal(shape)])


def test_dropout_train_scales_kept_units_and_zeroes_the_rest():
    x = Tensor(np.ones((200, 500), np.float32), requires_grad=True)
    y = F.dropout(x, p=0.3, training=True)
    vals = np.unique(y.numpy())
    np.testing.assert_allclose(vals, [0.0, 1.0 / 0.7], rtol=1e-6)
    keep = np.mean(y.numpy() != 0)
    assert abs(keep - 0.7) < 0.01  # 100k draws
    assert abs(y.numpy().mean() - 1.0) < 0.02  # expectation preserved
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.numpy())  # d/dx = mask / (1 - p)


def test_dropout_eval_is_identity():
    x = Tensor(np.arange(6, dtype=np.float32), requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, training=True) is x


def test_dropout_p_one_gives_zeros():
    x = Tensor(np.ones(5, np.float32), requires_grad=True)
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.numpy(), 0.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0.0)


def test_dropout_is_reproducible_with_manual_seed():
    x = Tensor(np.ones(50, np.float32))
    engine.manual_seed(7)
    a = F.dropout(x, 0.5).numpy()
    engine.manual_seed(7)
    b = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="dropout: p must be in"):
        F.dropout(Tensor(np.ones(3, np.float32)), p)


def test_dropout_mask_shape_error():
    with pytest.raises(engine.ShapeError, match="dropout: mask must have the input's shape"):
        engine.bind(activation.dropout_p, Tensor(np.ones(3, np.float32)), Tensor(np.ones(2, np.float32)), p=0.5)


def test_every_activation_primitive_is_covered():
    prims = {v.name for v in vars(activation).values() if isinstance(v, Primitive)}
    assert prims <= {"softmax", "log_softmax", "dropout"}
