"""Reductions (engine/ops/reduce.py) and data movement (engine/ops/shape.py): vjp vs finite differences,
forward + gradients vs PyTorch, and the errors their shape rules raise."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor
from engine.ops import reduce
from engine.ops import shape as shape_ops
from engine.primitive import Primitive
from tests.helpers import check_grads, compare_torch, import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip


# --- reductions ---------------------------------------------------------------------------------------------
REDUCE_CASES = [((2, 3, 4), None, False), ((2, 3, 4), 1, False), ((2, 3, 4), (0, 2), True), ((2, 3, 4), -1, True),
                ((1, 5), 0, False), ((1, 5), None, True), ((4,), 0, False), ((3, 1), 1, True)]


def _ours_theirs(name, dim, keep, nd):
    tdim = tuple(range(nd)) if dim is None else dim
    table = {
        "sum": (lambda x: F.sum(x, dim, keep), lambda x: torch.sum(x, tdim, keepdim=keep)),
        "mean": (lambda x: F.mean(x, dim, keep), lambda x: torch.mean(x, tdim, keepdim=keep)),
        "amax": (lambda x: F.amax(x, dim, keep), lambda x: torch.amax(x, tdim, keepdim=keep)),
        "amin": (lambda x: F.amin(x, dim, keep), lambda x: torch.amin(x, tdim, keepdim=keep)),
        # max/min along one dim: the values of the (values, indices) pair, the gradient on the selected element
        "max": (lambda x: F.max(x, dim, keep).values, lambda x: torch.max(x, tdim, keepdim=keep).values),
        "min": (lambda x: F.min(x, dim, keep).values, lambda x: torch.min(x, tdim, keepdim=keep).values),
        "var": (lambda x: F.var(x, dim, keep), lambda x: torch.var(x, tdim, keepdim=keep)),
        "var_biased": (lambda x: F.var(x, dim, keep, unbiased=False),
                       lambda x: torch.var(x, tdim, keepdim=keep, unbiased=False)),
    }
    return table[name]


def _distinct(rng, shape):
    # max/amax: distinct values so the argmax is stable under finite-difference steps
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) + rng.uniform(0, 0.5, shape)) / n


def _single_element(shape, dim):
    return all(shape[d] == 1 for d in (range(len(shape)) if dim is None else np.atleast_1d(dim)))


# variance over a single element is left out (torch's unbiased estimate is nan there)
@pytest.mark.parametrize("name,shape,dim,keep", [
    (name, *case) for name in ("sum", "mean", "max", "min", "amax", "amin", "var", "var_biased")
    for case in REDUCE_CASES
    if not (name.startswith("var") and _single_element(case[0], case[1]))
    and not (name in ("max", "min") and not isinstance(case[1], int))], ids=str)
def test_reduce_grad_and_torch(name, shape, dim, keep, rng):
    ours, theirs = _ours_theirs(name, dim, keep, len(shape))
    x = _distinct(rng, shape)
    check_grads(ours, [x])
    compare_torch(ours, theirs, [x])


def test_max_ties_share_the_gradient_like_torch_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    compare_torch(lambda t: F.amax(t, 1), lambda t: torch.amax(t, 1), [x])
    compare_torch(lambda t: F.amax(t), lambda t: torch.amax(t), [x])


@pytest.mark.parametrize("shape,dim,keep", [((2, 3, 4), 1, False), ((2, 3, 4), -1, True), ((5,), 0, False),
                                            ((2, 3), None, False)], ids=str)
def test_argmax_matches_torch(shape, dim, keep, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    out = F.argmax(Tensor(x, requires_grad=True), dim, keep)
    ref = torch.argmax(torch.tensor(x), dim, keepdim=keep) if dim is not None else torch.argmax(torch.tensor(x))
    assert out.dtype == np.int64 and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), ref.numpy())


def test_tensor_reduce_methods():
    x = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert x.sum().item() == 15.0
    np.testing.assert_allclose(x.mean(0).numpy(), [1.5, 2.5, 3.5])
    np.testing.assert_array_equal(x.argmax(1).numpy(), [2, 2])


def test_reduce_errors():
    x = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(engine.ShapeError, match=r"sum: axis must be in \[-2, 2\) \(got axis=2, ndim=2\)"):
        F.sum(x, 2)
    with pytest.raises(engine.ShapeError, match="sum: axes must be distinct"):
        F.sum(x, (0, -2))
    with pytest.raises(engine.ShapeError, match="max: cannot reduce over an empty axis"):
        F.amax(Tensor(np.ones((0, 3), np.float32)), 0)
    with pytest.raises(engine.ShapeError, match="mean: cannot average over an empty axis"):
        F.mean(Tensor(np.ones((0, 3), np.float32)), 0)
    with pytest.raises(engine.ShapeError, match="sum: axes must be normalized"):
        engine.bind(reduce.sum_p, x, axes=(1, 0), keepdims=False)


# --- shape ops ----------------------------------------------------------------------------------------------
def _cat3(dim):
    return (lambda a, b, c: F.concat([a, b, c], dim), lambda a, b, c: torch.cat([a, b, c], dim))


# name -> (engine fn, torch fn, input shapes)
SHAPE_CASES = {
    "reshape": (lambda x: F.reshape(x, (3, 4)), lambda x: x.reshape(3, 4), [(2, 6)]),
    "reshape_infer": (lambda x: x.reshape(-1, 2), lambda x: x.reshape(-1, 2), [(2, 3, 2)]),
    "view_scalar": (lambda x: x.view(()), lambda x: x.view(()), [(1, 1)]),
    "flatten": (lambda x: F.flatten(x, 1), lambda x: torch.flatten(x, 1), [(2, 3, 2, 2)]),
    "flatten_all": (lambda x: x.flatten(), lambda x: x.flatten(), [(1, 3, 2)]),
    "squeeze": (lambda x: F.squeeze(x, 1), lambda x: x.squeeze(1), [(2, 1, 3)]),
    "squeeze_noop": (lambda x: F.squeeze(x, 0), lambda x: x.squeeze(0), [(2, 3)]),
    "unsqueeze": (lambda x: F.unsqueeze(x, -1), lambda x: x.unsqueeze(-1), [(2, 3)]),
    "transpose": (lambda x: F.transpose(x, 0, 2), lambda x: x.transpose(0, 2), [(2, 3, 4)]),
    "permute": (lambda x: F.permute(x, (2, 0, 1)), lambda x: x.permute(2, 0, 1), [(2, 3, 4)]),
    "T": (lambda x: x.T, lambda x: x.permute(1, 0), [(1, 4)]),
    "broadcast_to": (lambda x: F.broadcast_to(x, (2, 3, 4)), lambda x: x.expand(2, 3, 4), [(3, 1)]),
    "expand_same": (lambda x: x.expand((2, 3)), lambda x: x.expand(2, 3), [(2, 3)]),
    "concat0": (*_cat3(0), [(1, 3), (2, 3), (1, 3)]),
    "concat1": (*_cat3(1), [(2, 1, 2), (2, 3, 2), (2, 2, 2)]),
    "concat_last": (*_cat3(-1), [(2, 1), (2, 2), (2, 1)]),
    "stack": (lambda a, b: F.stack([a, b], 1), lambda a, b: torch.stack([a, b], 1), [(2, 3), (2, 3)]),
    "pad_last": (lambda x: F.pad(x, (1, 2)), lambda x: torch.nn.functional.pad(x, (1, 2)), [(2, 3)]),
    "pad_2d": (lambda x: F.pad(x, (1, 0, 2, 1), value=0.5),
               lambda x: torch.nn.functional.pad(x, (1, 0, 2, 1), value=0.5), [(1, 2, 2, 3)]),
    "pad_zero": (lambda x: F.pad(x, (0, 0)), lambda x: torch.nn.functional.pad(x, (0, 0)), [(2, 3)]),
    "getitem_slices": (lambda x: x[1:, ::2], lambda x: x[1:, ::2], [(3, 5)]),
    "getitem_int": (lambda x: x[1], lambda x: x[1], [(3, 4)]),
    "getitem_negative": (lambda x: x[:, -1], lambda x: x[:, -1], [(3, 4)]),
    "getitem_ellipsis_none": (lambda x: x[..., None, 1:3], lambda x: x[..., None, 1:3], [(2, 3, 4)]),
    "getitem_step3": (lambda x: x[0:5:3, 1::2], lambda x: x[0:5:3, 1::2], [(5, 4)]),
    "getitem_empty": (lambda x: x[2:1], lambda x: x[2:1], [(3, 2)]),
    "slice": (lambda x: F.slice(x, 1, 1, 4, 2), lambda x: x[:, 1:4:2], [(2, 5)]),
}


@pytest.mark.parametrize("name", sorted(SHAPE_CASES))
def test_shape_op_grad_and_torch(name, rng):
    ours, theirs, shapes = SHAPE_CASES[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    check_grads(ours, arrays)
    compare_torch(ours, theirs, arrays)


@pytest.mark.parametrize("shape,starts,steps", [((2, 5), (0, 1), (1, 2)), ((3,), (2,), (1,)), ((1, 4), (0, 0), (1, 3))],
                         ids=str)
def test_unslice_primitive_grad(shape, starts, steps, rng):
    # unslice scatters g into zeros of `shape`; it is the transpose of slice
    g_shape = tuple(len(range(s, d, k)) for s, d, k in zip(starts, shape, steps))

    def fn(g):
        return engine.bind(shape_ops.unslice_p, g, shape=shape, starts=starts, steps=steps)

    check_grads(fn, [rng.standard_normal(g_shape)])
    g = rng.standard_normal(g_shape)
    out = fn(Tensor(g)).numpy()
    ref = np.zeros(shape)
    ref[tuple(slice(s, None, k) for s, k in zip(starts, steps))] = g
    np.testing.assert_allclose(out, ref)


def test_pad_rejects_unknown_modes():
    with pytest.raises(ValueError, match="pad: mode must be 'constant' or one of"):
        F.pad(Tensor(np.ones((2, 2), np.float32)), (1, 1), mode="mirror")


def test_shape_errors():
    x = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(engine.ShapeError, match=r"reshape: the new shape must have the same number of elements "
                                                r"\(got input=\[2, 3\], shape=\[4, 2\]\)"):
        F.reshape(x, (4, 2))
    with pytest.raises(engine.ShapeError, match="reshape: only one dimension can be -1"):
        F.reshape(x, (-1, -1))
    with pytest.raises(engine.ShapeError, match="reshape: cannot infer the -1 dimension"):
        F.reshape(x, (-1, 4))
    with pytest.raises(engine.ShapeError, match="transpose: perm must be a permutation"):
        engine.bind(shape_ops.transpose_p, x, perm=(0, 0))
    with pytest.raises(engine.ShapeError, match=r"broadcast_to: input shape must broadcast to the target shape "
                                                r"\(got input=\[2, 3\], shape=\[2, 4\]\)"):
        F.broadcast_to(x, (2, 4))
    with pytest.raises(engine.ShapeError, match=r"concat: all shapes must match except along axis 0"):
        F.concat([x, Tensor(np.ones((2, 4), np.float32))], 0)
    assert F.concat([x, Tensor(np.ones((2, 3), np.float64))], 0).dtype == np.float64  # promotes, as torch.cat
    with pytest.raises(engine.ShapeError, match="pad: pad must hold"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(engine.ShapeError, match="slice: bounds must satisfy"):
        engine.bind(shape_ops.slice_p, x, starts=(0, 0), stops=(3, 3), steps=(1, 1))
    with pytest.raises(engine.ShapeError, match="unslice: the slice must fit in the target shape"):
        engine.bind(shape_ops.unslice_p, x, shape=(2, 3), starts=(1, 0), steps=(1, 1))
    with pytest.raises(engine.ShapeError, match="flatten: start_dim must not come after end_dim"):
        F.flatten(x, 1, 0)


def test_getitem_errors():
    x = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(IndexError, match="getitem: index 3 is out of bounds for axis 1 with size 3"):
        x[:, 3]
    with pytest.raises(IndexError, match="getitem: too many indices"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="unsupported index"):
        x[1.5]
    with pytest.raises(IndexError, match="tensors used as indices must be integer or bool"):
        x[Tensor(np.zeros(2, np.float32))]


def test_every_reduce_and_shape_primitive_is_covered():
    prims = {v.name for m in (reduce, shape_ops) for v in vars(m).values() if isinstance(v, Primitive)}
    covered = {"sum", "max", "argmax", "reshape", "transpose", "broadcast_to", "concat", "pad", "slice", "unslice",
               "min", "argmin"}  # min/argmin: above and in test_tensor_api.py
    assert prims <= covered, f"untested primitives: {sorted(prims - covered)}"
