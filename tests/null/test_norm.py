"""batch_norm (train / infer primitives, running statistics) and local_response_norm vs PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor
from engine.ops import norm
from engine.primitive import Primitive, Spec
from tests.helpers import check_grads, compare_torch, import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip
TF = torch.nn.functional

BN_SHAPES = [(4, 3), (2, 3, 5), (2, 3, 2, 3), (1, 3, 2, 2), (1, 3, 4)]  # batch 1 is fine with spatial extent


def _bn_train(x, w, b):
    return F.batch_norm(x, None, None, w, b, training=True, eps=1e-3)


def _bn_infer(x, w, b, rm, rv):
    return F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-3)


def _bn_arrays(rng, shape, stats=False):
    c = shape[1]
    arrays = [rng.standard_normal(shape) * 2 + 0.5, rng.standard_normal(c), rng.standard_normal(c)]
    if stats:
        arrays += [rng.standard_normal(c), rng.uniform(0.5, 2.0, c)]
    return arrays


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_train_grad(shape, rng):
    check_grads(_bn_train, _bn_arrays(rng, shape))


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_train_vs_torch(shape, rng):
    compare_torch(_bn_train, lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True, eps=1e-3),
                  _bn_arrays(rng, shape))


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_train_all_outputs_grad(shape, rng):
    # cotangents on the batch mean and biased variance outputs too (the composite part of the vjp)
    def fn(x, w, b):
        return engine.bind(norm.batch_norm_train_p, x, w, b, eps=1e-3)

    check_grads(fn, _bn_arrays(rng, shape))

    def mean_var_only(x, w, b):
        return engine.bind(norm.batch_norm_train_p, x, w, b, eps=1e-3)[1:]

    check_grads(mean_var_only, _bn_arrays(rng, shape))


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_infer_grad(shape, rng):
    # running statistics get gradients too when they require them (the vjp covers every input)
    check_grads(_bn_infer, _bn_arrays(rng, shape, stats=True))


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_infer_vs_torch(shape, rng):
    compare_torch(_bn_infer, lambda x, w, b, rm, rv: TF.batch_norm(x, rm, rv, w, b, training=False, eps=1e-3),
                  _bn_arrays(rng, shape, stats=True), grad_mask=[True, True, True, False, False])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_without_affine(training, rng):
    x = rng.standard_normal((3, 2, 2))
    rm, rv = np.zeros(2), np.ones(2) * 1.5

    def ours(x):
        return F.batch_norm(x, Tensor(rm.astype(x.dtype)), Tensor(rv.astype(x.dtype)), training=training)

    def theirs(x):
        return TF.batch_norm(x, torch.tensor(rm, dtype=x.dtype), torch.tensor(rv, dtype=x.dtype), training=training)

    check_grads(ours, [x])
    compare_torch(ours, theirs, [x])


def test_batch_norm_train_grad_primitive_matches_torch_autograd(rng):
    x = rng.standard_normal((3, 4, 2, 2)).astype(np.float32)
    w, gy = rng.standard_normal(4).astype(np.float32), rng.standard_normal(x.shape).astype(np.float32)
    _, mean, var = engine.bind(norm.batch_norm_train_p, Tensor(x), Tensor(w), Tensor(np.zeros(4, np.float32)), eps=1e-5)
    gx, gw, gb = engine.bind(norm.batch_norm_train_grad_p, Tensor(gy), Tensor(x), Tensor(w), mean, var, eps=1e-5)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, np.zeros(4, np.float32)))
    TF.batch_norm(xt, None, None, wt, bt, training=True).backward(torch.tensor(gy))
    for ours, ref in ((gx, xt.grad), (gw, wt.grad), (gb, bt.grad)):
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 2, 2)], ids=str)
@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_running_stats_match_torch_over_five_steps(shape, momentum, rng):
    c = shape[1]
    rm, rv = Tensor(np.zeros(c, np.float32)), Tensor(np.ones(c, np.float32))
    trm, trv = torch.zeros(c), torch.ones(c)
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    for _ in range(5):
        x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
        y = F.batch_norm(Tensor(x), rm, rv, Tensor(w), Tensor(b), training=True, momentum=momentum)
        ref = TF.batch_norm(torch.tensor(x), trm, trv, torch.tensor(w), torch.tensor(b), training=True,
                            momentum=momentum)
        np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-5, atol=1e-6)  # unbiased variance
    assert rm.dtype == np.float32 and rv.dtype == np.float32
    # eval mode then uses them
    x = rng.standard_normal(shape).astype(np.float32)
    y = F.batch_norm(Tensor(x), rm, rv, Tensor(w), Tensor(b))
    ref = TF.batch_norm(torch.tensor(x), trm, trv, torch.tensor(w), torch.tensor(b))
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)


def test_running_stats_are_not_touched_in_eval_and_need_no_grad(rng):
    rm, rv = Tensor(np.zeros(2, np.float32)), Tensor(np.ones(2, np.float32))
    x = Tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True)
    F.batch_norm(x, rm, rv).sum().backward()
    np.testing.assert_array_equal(rm.numpy(), 0.0)
    np.testing.assert_array_equal(rv.numpy(), 1.0)
    assert rm.grad is None and x.grad is not None


def test_running_stats_update_under_training_with_numpy_buffers(rng):
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    x = rng.standard_normal((5, 2)).astype(np.float32)
    F.batch_norm(Tensor(x), rm, rv, training=True)
    np.testing.assert_allclose(rm, 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)], ids=str)
def test_batch_norm_training_needs_more_than_one_value_per_channel(shape):
    x = Tensor(np.ones(shape, np.float32))
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel when training, got input size"):
        F.batch_norm(x, None, None, training=True)
    F.batch_norm(x, Tensor(np.zeros(3, np.float32)), Tensor(np.ones(3, np.float32)))  # eval is fine


def test_batch_norm_errors():
    x = Tensor(np.ones((2, 3, 2), np.float32))
    with pytest.raises(engine.ShapeError,
                       match=r"batch_norm_train: weight must have shape \(C,\) .* \(got weight=\[4\], C=3\)"):
        F.batch_norm(x, None, None, Tensor(np.ones(4, np.float32)), training=True)
    with pytest.raises(engine.ShapeError, match=r"batch_norm_infer: running_var must have shape \(C,\)"):
        F.batch_norm(x, Tensor(np.zeros(3, np.float32)), Tensor(np.ones(2, np.float32)))
    with pytest.raises(engine.ShapeError, match="batch_norm_infer: all operands must have the same dtype"):
        F.batch_norm(x, Tensor(np.zeros(3)), Tensor(np.ones(3)))
    with pytest.raises(engine.ShapeError, match=r"batch_norm: input must have at least 2 dims"):
        F.batch_norm(Tensor(np.ones(3, np.float32)), None, None, training=True)
    with pytest.raises(engine.ShapeError, match=r"batch_norm: running_var must have shape .* \(got running_var=\[2\],"):
        F.batch_norm(x, None, Tensor(np.ones(2, np.float32)), training=True)
    with pytest.raises(ValueError, match="momentum=None"):
        F.batch_norm(x, None, None, training=True, momentum=None)
    with pytest.raises(ValueError, match="running_mean and running_var must be given when training=False"):
        F.batch_norm(x, None, None)
    with pytest.raises(engine.ShapeError, match="batch_norm_train_grad: gy must have the input's shape"):
        s = Tensor(np.ones(3, np.float32))
        engine.bind(norm.batch_norm_train_grad_p, Tensor(np.ones((2, 3), np.float32)), x, s, s, s, eps=1e-5)


def test_batch_norm_abstract_evaluation_leaves_running_stats_alone():
    rm, rv = Tensor(np.zeros(3, np.float32)), Tensor(np.ones(3, np.float32))
    with engine.abstract():
        x = Tensor._make(None, Spec((2, 3, 4, 4), np.float32))
        y = F.batch_norm(x, rm, rv, training=True)
        z = F.batch_norm(y, rm, rv, training=False)
    assert z.shape == (2, 3, 4, 4) and z._data is None
    np.testing.assert_array_equal(rm.numpy(), 0.0)


def test_norm_costs():
    x, c = Spec((2, 3, 4, 4), np.float32), Spec((3,), np.float32)
    outs = norm.batch_norm_train_p.abstract_eval(x, c, c, eps=1e-5)
    assert [o.shape for o in outs] == [(2, 3, 4, 4), (3,), (3,)]
    cost = norm.batch_norm_train_p.cost((x, c, c), outs, eps=1e-5)
    assert cost.macs == 0 and cost.flops > 0 and cost.bytes_read == x.nbytes + 2 * c.nbytes
    assert norm.batch_norm_infer_p.cost((x, c, c, c, c), (x,), eps=1e-5).flops == 2 * x.size
    grad_cost = norm.batch_norm_train_grad_p.cost((x, x, c, c, c), (x, c, c), eps=1e-5)
    assert grad_cost.bytes_written == x.nbytes + 2 * c.nbytes


# --- local_response_norm ------------------------------------------------------------------------------------
LRN_CASES = [((2, 5, 3), 1), ((2, 5, 3), 2), ((1, 5, 2, 2), 3), ((2, 4, 2, 3), 4), ((1, 6, 2, 2), 5),
             ((2, 3, 2, 1, 2), 3), ((1, 2, 3), 7)]


@pytest.mark.parametrize("shape,size", LRN_CASES, ids=str)
def test_local_response_norm_grad(shape, size, rng):
    check_grads(lambda x: F.local_response_norm(x, size, alpha=0.3, beta=0.75, k=1.5), [rng.standard_normal(shape)])


@pytest.mark.parametrize("shape,size", LRN_CASES, ids=str)
@pytest.mark.parametrize("alpha,beta,k", [(1e-4, 0.75, 1.0), (0.5, 0.6, 2.0)])
def test_local_response_norm_vs_torch(shape, size, alpha, beta, k, rng):
    compare_torch(lambda x: F.local_response_norm(x, size, alpha, beta, k),
                  lambda x: TF.local_response_norm(x, size, alpha, beta, k), [rng.standard_normal(shape) * 2])


def test_local_response_norm_errors():
    with pytest.raises(engine.ShapeError, match=r"local_response_norm: input must have at least 3 dims"):
        F.local_response_norm(Tensor(np.ones((2, 3), np.float32)), 2)
    with pytest.raises(engine.ShapeError, match="local_response_norm: size must be at least 1"):
        F.local_response_norm(Tensor(np.ones((2, 3, 2), np.float32)), 0)


def test_every_norm_primitive_is_covered():
    prims = {v.name for v in vars(norm).values() if isinstance(v, Primitive)}
    assert prims <= {"batch_norm_train", "batch_norm_train_grad", "batch_norm_infer", "batch_norm_apply"}


@pytest.mark.parametrize("kernel", ["numpy", "numba", "decomposed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_apply_is_the_training_y_bit_for_bit(kernel, dtype):
    """batch_norm_apply(x, w, b, mean, var) recomputes batch_norm_train's y from its stored statistics (and the
    relu kernel's output after it) exactly, on each backend and through the decomposition a backend without the
    kernel runs (the training kernel again, writing the statistics over themselves)."""
    table = engine.get_backend("numba" if kernel == "numba" else "numpy")
    apply = norm.batch_norm_apply_p.decomposed_kernel(table.kernel) if kernel == "decomposed" \
        else table.kernel("batch_norm_apply")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 5, 3, 6)) * 3 + 1).astype(dtype)
    w, b = rng.standard_normal(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    y, mean, var = np.empty_like(x), np.empty(5, dtype), np.empty(5, dtype)
    table.kernel("batch_norm_train")(x, w, b, out=(y, mean, var), eps=1e-5)
    stats = mean.copy(), var.copy()
    relu_y = np.empty_like(y)
    table.kernel("relu")(y, out=relu_y)
    for relu, want in ((False, y), (True, relu_y)):
        got = np.full_like(x, np.nan)
        apply(x, w, b, mean, var, out=got, eps=1e-5, relu=relu)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(mean, stats[0])
        np.testing.assert_array_equal(var, stats[1])
