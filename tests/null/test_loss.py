"""cross_entropy / nll_loss / mse_loss vs PyTorch (reductions, class weights, ignore_index, label smoothing)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor
from tests.helpers import check_grads, compare_torch, import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip
TF = torch.nn.functional

C = 4
# input shapes: unbatched (C,), (N, C), batch 1, and spatial (N, C, d1[, d2])
CE_SHAPES = [(C,), (3, C), (1, C), (2, C, 3), (2, C, 2, 2)]


def _targets(rng, shape, ignore_index=None):
    t = rng.integers(0, C, () if len(shape) == 1 else (shape[0],) + shape[2:])
    if ignore_index is not None and t.size > 1:
        t.flat[0] = ignore_index  # one ignored position (never all of them: that is 0/0 in torch too)
    return t


def _torch_weight(weight):
    return None if weight is None else torch.tensor(weight, dtype=torch.float32)


@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.25])
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_cross_entropy(shape, reduction, weighted, label_smoothing, ignore_index, rng):
    t = _targets(rng, shape, ignore_index)
    weight = rng.uniform(0.2, 2.0, C) if weighted else None
    tw = _torch_weight(weight)

    def ours(x):
        return F.cross_entropy(x, t, weight, reduction, label_smoothing, ignore_index)

    def theirs(x):
        return TF.cross_entropy(x, torch.tensor(t), tw, reduction=reduction, label_smoothing=label_smoothing,
                                ignore_index=ignore_index)

    x = rng.standard_normal(shape) * 2
    check_grads(ours, [x])
    compare_torch(ours, theirs, [x])


@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_nll_loss(shape, reduction, weighted, ignore_index, rng):
    t = _targets(rng, shape, ignore_index)
    weight = rng.uniform(0.2, 2.0, C) if weighted else None
    tw = _torch_weight(weight)
    class_axis = 0 if len(shape) == 1 else 1

    def ours(x):
        return F.nll_loss(F.log_softmax(x, class_axis), t, weight, reduction, ignore_index)

    def theirs(x):
        return TF.nll_loss(TF.log_softmax(x, class_axis), torch.tensor(t), tw, reduction=reduction,
                           ignore_index=ignore_index)

    x = rng.standard_normal(shape)
    check_grads(ours, [x])
    compare_torch(ours, theirs, [x])
    # raw (not normalized) inputs too: nll_loss is just a weighted pick
    compare_torch(lambda x: F.nll_loss(x, t, weight, reduction, ignore_index),
                  lambda x: TF.nll_loss(x, torch.tensor(t), tw, reduction=reduction, ignore_index=ignore_index), [x])


@pytest.mark.parametrize("shape", [(C,), (3, C), (2, C, 3)], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_probability_targets(shape, reduction, label_smoothing, weighted, rng):
    weight = rng.uniform(0.2, 2.0, C) if weighted else None
    tw = _torch_weight(weight)
    p = rng.dirichlet(np.ones(C), int(np.prod(shape)) // C).reshape((-1, C))
    p = np.moveaxis(p.reshape((shape[0],) + shape[2:] + (C,)), -1, 1) if len(shape) > 1 else p.reshape(C)

    def ours(x, p):
        return F.cross_entropy(x, p, weight, reduction, label_smoothing)

    def theirs(x, p):
        return TF.cross_entropy(x, p, tw, reduction=reduction, label_smoothing=label_smoothing)

    x = rng.standard_normal(shape)
    check_grads(ours, [x, p])  # soft targets are differentiable, as in torch
    compare_torch(ours, theirs, [x, p])


def test_cross_entropy_accepts_int_tensor_targets_and_large_logits(rng):
    x = np.array([[1000.0, 0.0, -1000.0, 5.0]], np.float32)
    t = np.array([1])
    ours = F.cross_entropy(Tensor(x), Tensor(t)).item()
    ref = TF.cross_entropy(torch.tensor(x), torch.tensor(t)).item()
    assert np.isfinite(ours) and abs(ours - ref) <= 1e-4 * abs(ref)


def test_cross_entropy_all_ignored_mean_is_nan_like_torch():
    x = Tensor(np.ones((2, C), np.float32), requires_grad=True)
    out = F.cross_entropy(x, np.array([-100, -100]))
    assert np.isnan(out.item())
    assert np.isnan(TF.cross_entropy(torch.ones(2, C), torch.tensor([-100, -100])).item())


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((1, 2, 3), (1, 2, 3)), ((5,), (5,)), ((2, 3), (3,)),
                                    ((), ())], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(shapes, reduction, rng):
    def ours(x, y):
        return F.mse_loss(x, y, reduction)

    def theirs(x, y):
        return TF.mse_loss(x, y, reduction=reduction)

    arrays = [rng.standard_normal(s) for s in shapes]
    check_grads(ours, arrays)
    if shapes[0] == shapes[1]:  # torch warns (but broadcasts) on mismatched shapes
        compare_torch(ours, theirs, arrays)


def test_mse_loss_numpy_target():
    x = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    out = F.mse_loss(x, np.array([0.0, 0.0]))
    assert out.dtype == np.float32 and out.item() == pytest.approx(2.5)
    out.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 2.0])


# --- errors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [F.cross_entropy, F.nll_loss], ids=["cross_entropy", "nll_loss"])
def test_class_loss_errors(fn):
    name = fn.__name__
    x = Tensor(np.zeros((3, C), np.float32))
    with pytest.raises(engine.ShapeError, match=rf"{name}: input batch size \(3\) must match target batch size \(4\)"):
        fn(x, np.zeros(4, np.int64))
    with pytest.raises(IndexError, match=rf"{name}: target class 7 is out of range for {C} classes"):
        fn(x, np.array([0, 7, 1]))
    with pytest.raises(IndexError, match=rf"{name}: target class -1 is out of range for {C} classes"):
        fn(x, np.array([0, -1, 1]))
    with pytest.raises(engine.ShapeError, match=rf"{name}: target must have one dim less than the input .* "
                                                r"\(got input=\[3, 4\], target=\[3, 1\]\)"):
        fn(x, np.zeros((3, 1), np.int64))
    with pytest.raises(engine.ShapeError, match=rf"{name}: target shape must equal the input shape without the class"):
        fn(Tensor(np.zeros((2, C, 3), np.float32)), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match=rf"{name}: reduction must be one of .* \(got 'avg'\)"):
        fn(x, np.zeros(3, np.int64), reduction="avg")
    with pytest.raises(engine.ShapeError, match=rf"{name}: weight must have shape \(C,\)"):
        fn(x, np.zeros(3, np.int64), weight=np.ones(3))
    with pytest.raises(engine.ShapeError, match=rf"{name}: input must have at least 1 dim"):
        fn(Tensor(np.zeros((), np.float32)), np.zeros((), np.int64))


def test_nll_loss_rejects_float_targets():
    with pytest.raises(TypeError, match="nll_loss: target must hold integer class indices"):
        F.nll_loss(Tensor(np.zeros((2, C), np.float32)), np.zeros(2))


def test_cross_entropy_soft_target_shape_and_label_smoothing_errors():
    x = Tensor(np.zeros((2, C), np.float32))
    with pytest.raises(engine.ShapeError, match="cross_entropy: probability targets must have the input's shape"):
        F.cross_entropy(x, np.zeros((2, C + 1), np.float32))
    with pytest.raises(ValueError, match=r"cross_entropy: label_smoothing must be in \[0, 1\]"):
        F.cross_entropy(x, np.zeros(2, np.int64), label_smoothing=1.5)


def test_mse_loss_errors():
    x = Tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="mse_loss: reduction must be one of"):
        F.mse_loss(x, x, reduction="max")
    with pytest.raises(engine.ShapeError, match=r"sub: operand shapes must be broadcast-compatible"):
        F.mse_loss(x, np.zeros((2, 4), np.float32))
