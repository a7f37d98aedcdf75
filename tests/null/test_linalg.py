"""matmul and linear (engine/ops/linalg.py): gradients, PyTorch parity, shape errors and cost rules."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor
from engine.ops import linalg
from engine.primitive import Primitive
from tests.helpers import check_grads, compare_torch, import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip

MATMUL_SHAPES = [((3, 4), (4, 2)), ((1, 4), (4, 1)), ((2, 3, 4), (4, 2)), ((3, 4), (2, 4, 5)),
                 ((2, 1, 3, 4), (3, 4, 2)), ((1, 2, 3), (1, 3, 2))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_grad_and_torch(shapes, rng):
    arrays = [rng.standard_normal(s) for s in shapes]
    check_grads(F.matmul, arrays)
    compare_torch(F.matmul, torch.matmul, arrays)
    compare_torch(lambda a, b: a @ b, lambda a, b: a @ b, arrays)


LINEAR_SHAPES = [((4,), 3, True), ((2, 4), 3, True), ((2, 4), 3, False), ((1, 4), 1, True), ((2, 3, 4), 5, True),
                 ((2, 1, 2, 4), 2, False)]


@pytest.mark.parametrize("x_shape,out_f,bias", LINEAR_SHAPES, ids=str)
def test_linear_grad_and_torch(x_shape, out_f, bias, rng):
    arrays = [rng.standard_normal(x_shape), rng.standard_normal((out_f, x_shape[-1]))]
    if bias:
        arrays.append(rng.standard_normal(out_f))
    check_grads(F.linear, arrays)
    compare_torch(F.linear, torch.nn.functional.linear, arrays)


def test_matmul_errors():
    a = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(engine.ShapeError,
                       match=r"matmul: inner dimensions must agree .* \(got a=\[2, 3\], b=\[2, 3\]\)"):
        F.matmul(a, a)
    with pytest.raises(engine.ShapeError, match="matmul: both operands need at least 2 dims"):
        F.matmul(a, Tensor(np.ones(3, np.float32)))
    with pytest.raises(engine.ShapeError, match="matmul: operand shapes must be broadcast-compatible"):
        F.matmul(Tensor(np.ones((2, 2, 3), np.float32)), Tensor(np.ones((3, 3, 1), np.float32)))
    with pytest.raises(engine.ShapeError, match="matmul: all operands must have the same dtype"):
        F.matmul(a, Tensor(np.ones((3, 2), np.float64)))


def test_linear_errors():
    x = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(engine.ShapeError,
                       match=r"linear: input's last dim must equal in_features \(got input=\[2, 3\], in_features=4\)"):
        F.linear(x, Tensor(np.ones((5, 4), np.float32)))
    with pytest.raises(engine.ShapeError, match="linear: weight must be 2-D"):
        F.linear(x, Tensor(np.ones(3, np.float32)))
    with pytest.raises(engine.ShapeError, match=r"linear: bias must have shape \(out_features,\)"):
        F.linear(x, Tensor(np.ones((5, 3), np.float32)), Tensor(np.ones(4, np.float32)))


def test_matmul_and_linear_costs():
    s = engine.Spec
    c = linalg.matmul_p.cost((s((2, 3, 4), np.float32), s((4, 5), np.float32)), (s((2, 3, 5), np.float32),))
    assert c.macs == 2 * 3 * 5 * 4 and c.flops == 2 * c.macs
    c = linalg.linear_p.cost((s((8, 16), np.float32), s((4, 16), np.float32), s((4,), np.float32)),
                             (s((8, 4), np.float32),))
    assert c.macs == 8 * 4 * 16 and c.flops == 2 * c.macs + 8 * 4


def test_every_linalg_primitive_is_covered():
    prims = {v.name for v in vars(linalg).values() if isinstance(v, Primitive)}
    assert prims <= {"matmul", "linear"}
