"""The PyTorch Tensor API a port needs (issue 13): comparisons, type promotion, max/min along a dim, keepdim,
retain_graph, in-place ops, indexing and setitem, size/dim/dtype methods, creation functions; each against
PyTorch where it defines the behaviour."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor, nn
from tests.helpers import check_grads, import_torch

torch = import_torch()  # without PyTorch only the comparisons with it skip

A = np.array([[1.0, np.nan, 3.0], [2.0, 2.0, -1.0]], np.float32)


def _same(ours: Tensor, theirs) -> None:
    """Same dtype (by name) and same values as a torch tensor."""
    assert ours.dtype.name == str(theirs.dtype).removeprefix("torch."), (ours.dtype, theirs.dtype)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


# --- comparisons -------------------------------------------------------------------------------------------
COMPARE = [lambda a, b: a == b, lambda a, b: a != b, lambda a, b: a > b, lambda a, b: a >= b,
           lambda a, b: a < b, lambda a, b: a <= b]


@pytest.mark.parametrize("op", COMPARE, ids=["eq", "ne", "gt", "ge", "lt", "le"])
@pytest.mark.parametrize("other", ["scalar", "int_scalar", "tensor", "array_row", "reflected"])
def test_comparisons_are_elementwise_bool_tensors_like_torch(op, other):
    b = {"scalar": 2.0, "int_scalar": 2, "tensor": Tensor(A[::-1].copy()), "array_row": np.array([2.0, 1.0, 3.0]),
         "reflected": 2.0}[other]
    tb = torch.tensor(b.numpy()) if isinstance(b, Tensor) else torch.tensor(b) if isinstance(b, np.ndarray) else b
    if other == "reflected":  # 2.0 < x: Python asks x.__gt__(2.0)
        ours, theirs = op(b, Tensor(A)), op(tb, torch.tensor(A))
    else:
        ours, theirs = op(Tensor(A), b), op(torch.tensor(A), tb)
    assert isinstance(ours, Tensor) and ours.dtype == np.bool_
    _same(ours, theirs)


def test_comparisons_of_integer_tensors_and_method_forms():
    y = Tensor(np.array([0, 2, 0]))
    pred = Tensor(np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]], np.float32))
    acc = (pred.argmax(1) == y).float().mean()
    assert acc.dtype == np.float32 and acc.item() == pytest.approx(2 / 3)
    x = Tensor(A)
    for name in ("eq", "ne", "gt", "ge", "lt", "le"):
        np.testing.assert_array_equal(getattr(x, name)(2.0).numpy(), getattr(torch.tensor(A), name)(2.0).numpy())


def test_tensors_stay_hashable_by_identity():
    a, b = Tensor(np.zeros(3)), Tensor(np.zeros(3))
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b" and len({a, b, a}) == 2
    assert hash(a) == id(a)


# --- type promotion ----------------------------------------------------------------------------------------------
PROMOTE = {
    "bool.sum": (lambda m: (m.tensor([1.0, 3.0, 4.0]) > 2).sum()),
    "int*0.5": (lambda m: m.tensor([1, 2]) * 0.5),
    "int+0.5": (lambda m: m.tensor([1, 2]) + 0.5),
    "0.5-int": (lambda m: 0.5 - m.tensor([1, 2])),
    "int/2": (lambda m: m.tensor([1, 2]) / 2),
    "int/int": (lambda m: m.tensor([1, 3]) / m.tensor([2, 2])),
    "uint8.sum": (lambda m: m.tensor(np.array([200, 100], np.uint8)).sum()),
    "uint8+1": (lambda m: m.tensor(np.array([200, 100], np.uint8)) + 1),
    "uint8+int8": (lambda m: m.tensor(np.array([200], np.uint8)) + m.tensor(np.array([-1], np.int8))),
    "int64+float32": (lambda m: m.tensor(np.array([1, 2])) + m.tensor(np.array([0.5, 0.25], np.float32))),
    "float32*float64": (lambda m: m.tensor(np.array([1.5], np.float32)) * m.tensor(np.array([2.0]))),
    "float32+0d_float64": (lambda m: m.tensor(np.array([1.5], np.float32)) + m.tensor(np.array(2.0))),
    "int+0d_float64": (lambda m: m.tensor(np.array([1, 2])) + m.tensor(np.array(0.5))),
    "bool*float": (lambda m: (m.tensor([1.0, 3.0]) > 2) * m.tensor([5.0, 6.0])),
    "int.max": (lambda m: m.tensor(np.array([[3, 1], [2, 7]])).amax(1)),
    "int_maximum_float": (lambda m: m.maximum(m.tensor(np.array([1, 4])), m.tensor(np.array([2.5, 0.5], np.float32)))),
}


def _engine_ns():
    class NS:
        tensor = staticmethod(lambda v: Tensor(v) if isinstance(v, np.ndarray) else engine.tensor(v))
        maximum = staticmethod(F.maximum)
    return NS


def _torch_ns():
    class NS:
        tensor = staticmethod(lambda v: torch.from_numpy(v) if isinstance(v, np.ndarray) else torch.tensor(v))
        maximum = staticmethod(torch.maximum)
    return NS


@pytest.mark.parametrize("case", PROMOTE, ids=list(PROMOTE))
def test_type_promotion_matches_torch(case):
    _same(PROMOTE[case](_engine_ns()), PROMOTE[case](_torch_ns()))


def test_integer_mean_promotes_to_float():
    # PyTorch refuses mean() of an integer tensor; the issue asks for the float mean: torch's of the float tensor
    x = np.array([[1, 2], [4, 4]])
    _same(Tensor(x).mean(), torch.from_numpy(x).float().mean())
    _same(Tensor(x).mean(0), torch.from_numpy(x).float().mean(0))
    assert Tensor(x).mean().item() == 2.75


def test_bool_sum_counts_and_gradients_flow_through_promotion():
    assert (Tensor(np.arange(5.0)) > 2).sum().item() == 2
    w = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    y = (w * Tensor(np.array([3.0, 4.0]))).sum()  # float32 * float64 -> float64
    assert y.dtype == np.float64
    y.backward()
    assert w.grad.dtype == np.float32
    np.testing.assert_array_equal(w.grad.numpy(), [3.0, 4.0])


# --- max / min along a dim ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dim,keep", [(0, False), (1, False), (-1, True)])
def test_max_min_along_dim_return_values_and_indices(name, dim, keep):
    x = np.array([[1.0, 5.0, 5.0], [7.0, 2.0, 7.0]], np.float32)  # ties: the gradient goes to the chosen one
    ours_x, their_x = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours, theirs = getattr(ours_x, name)(dim, keepdim=keep), getattr(their_x, name)(dim, keepdim=keep)
    values, indices = ours  # a named tuple, as torch.return_types
    assert ours.values is values and ours.indices is indices and ours[1] is indices
    _same(values.detach(), theirs.values.detach())
    _same(indices, theirs.indices)
    g = np.arange(1.0, 1.0 + values.numel(), dtype=np.float32).reshape(values.shape)
    (values * Tensor(g)).sum().backward()
    (theirs.values * torch.tensor(g)).sum().backward()
    np.testing.assert_array_equal(ours_x.grad.numpy(), their_x.grad.numpy())


def test_max_without_dim_is_a_scalar_and_min_max_grads_by_finite_differences(rng):
    x = Tensor(A)
    assert x.max().ndim == 0 and np.isnan(x.max().item()) and np.isnan(torch.tensor(A).max().item())
    assert Tensor(np.array([3.0, -2.0])).min().item() == -2.0
    d = rng.permutation(12).reshape(3, 4) + rng.uniform(0, 0.5, (3, 4))
    check_grads(lambda t: F.max(t, 1).values, [d])
    check_grads(lambda t: F.min(t, 0, keepdim=True).values, [d])
    check_grads(lambda t: F.amin(t, (0, 1)), [d])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_min_and_argmin_kernels_match_numpy(backend, rng):
    pytest.importorskip(backend)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    x[1, 2, 3] = np.nan
    with engine.use_backend(backend):
        np.testing.assert_array_equal(F.amin(Tensor(x), (0, 2)).numpy(), np.min(x, axis=(0, 2)))
        np.testing.assert_array_equal(F.argmin(Tensor(x), 1).numpy(), np.argmin(x, 1))
        np.testing.assert_array_equal(F.argmax(Tensor(x), 2).numpy(), np.argmax(x, 2))
        np.testing.assert_array_equal(F.amin(Tensor(np.array([[3, 1], [2, 9]])), 1).numpy(), [1, 2])
        ge = Tensor(x) >= Tensor(x[:, :1])
        np.testing.assert_array_equal(ge.numpy(), x >= x[:, :1])
        np.testing.assert_array_equal((Tensor(x) != 0.5).numpy(), x != 0.5)


# --- keepdim on every reduction ---------------------------------------------------------------------------------
REDUCTIONS = ["sum", "mean", "var", "amax", "amin", "argmax", "argmin", "max", "min"]


@pytest.mark.parametrize("name", REDUCTIONS)
def test_keepdim_on_every_reduction_matches_torch(name, rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    ours, theirs = getattr(Tensor(x), name)(1, keepdim=True), getattr(torch.tensor(x), name)(1, keepdim=True)
    if name in ("max", "min"):
        ours, theirs = ours.values, theirs.values
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    assert getattr(Tensor(x), name)(1, keepdims=True).shape[1] == 1 if name not in ("max", "min") else True


# --- backward twice ----------------------------------------------------------------------------------------------
def test_second_backward_without_retain_graph_is_an_error_as_in_torch():
    for make in (lambda: Tensor(np.array([1.0, 2.0]), requires_grad=True),
                 lambda: torch.tensor([1.0, 2.0], requires_grad=True)):
        x = make()
        y = (x * x).sum()
        y.backward(retain_graph=True)
        y.backward()
        assert x.grad.tolist() == [4.0, 8.0]
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            y.backward()


# --- in-place ops -----------------------------------------------------------------------------------------------
INPLACE = [("add_", (2.0,)), ("sub_", (2.0,)), ("mul_", (2.0,)), ("div_", (2.0,)), ("zero_", ()), ("fill_", (3.0,)),
           ("copy_", (np.array([7.0, 8.0], np.float32),)), ("clamp_", (0.5, 1.5))]


def _arg(a):
    return Tensor(a) if isinstance(a, np.ndarray) else a


def _targ(a):
    return torch.from_numpy(a) if isinstance(a, np.ndarray) else a


@pytest.mark.parametrize("name,args", INPLACE, ids=[n for n, _ in INPLACE])
def test_inplace_methods_write_the_tensor_like_torch(name, args):
    x, tx = Tensor(np.array([1.0, 2.0], np.float32)), torch.tensor([1.0, 2.0])
    alias, view = x, x.numpy()
    v0 = x.version
    assert getattr(x, name)(*map(_arg, args)) is x
    getattr(tx, name)(*map(_targ, args))
    _same(alias, tx)
    np.testing.assert_array_equal(view, tx.numpy())  # the array itself was written
    assert x.version > v0  # compiled modules notice the change


@pytest.mark.parametrize("name,args", INPLACE, ids=[n for n, _ in INPLACE])
def test_inplace_on_a_leaf_that_requires_grad_is_an_error(name, args):
    w, tw = Tensor(np.ones(2, np.float32), requires_grad=True), torch.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        getattr(tw, name)(*map(_targ, args))
    with pytest.raises(RuntimeError, match=f"{name}: a leaf tensor that requires grad"):
        getattr(w, name)(*map(_arg, args))
    with engine.no_grad():  # allowed under no_grad, as optimizers do
        getattr(w, name)(*map(_arg, args))


def test_augmented_assignment_is_in_place_for_plain_tensors():
    t = Tensor(np.array([1.0, 2.0], np.float32))
    u = t
    t += 1
    t *= Tensor(np.array([2.0, 3.0], np.float32))
    t -= 1
    t /= 2
    assert u is t
    np.testing.assert_array_equal(u.numpy(), [1.5, 4.0])
    i = Tensor(np.array([1, 2]))
    with pytest.raises(RuntimeError, match="can't be cast"):
        i += 0.5  # torch: result type Float can't be cast to Long
    w = Tensor(np.ones(2, np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"\+=: a leaf tensor that requires grad"):
        w += 1


def test_inplace_inside_the_graph_keeps_gradients_right(rng):
    x0 = rng.standard_normal(4).astype(np.float32)
    x, tx = Tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    outs = []
    for lib_x in (x, tx):
        h = lib_x * 2.0
        assert h.mul_(3.0).add_(lib_x) is h
        h += 1  # operator form: in place in torch, a new tensor here (same value, same gradient)
        (h * h).sum().backward()
        outs.append(h)
    np.testing.assert_allclose(outs[0].detach().numpy(), outs[1].detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5)
    # torch refuses this one (exp saved the output that mul_ overwrote); here exp's node keeps its own output
    x.grad = None
    h = x.exp()
    h.mul_(3.0)
    h.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.exp(x0), rtol=1e-6)


def test_backward_refuses_after_an_input_was_modified_in_place():
    x = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    h = x * 2.0
    y = (h * h).sum()  # mul saved h
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


# --- indexing ---------------------------------------------------------------------------------------------------
X = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7
INDEXES = {
    "int_list": lambda m: ([1, 0, 1],),
    "int_array_2d": lambda m: (slice(None), m(np.array([[0, 2], [1, 1]]))),
    "adjacent_arrays": lambda m: (slice(None), m(np.array([0, 2])), m(np.array([3, 1]))),
    "separated_arrays": lambda m: (m(np.array([1, 0])), slice(None), m(np.array([3, 1]))),
    "int_and_array": lambda m: (0, slice(None), m(np.array([3, 3]))),
    "bool_mask_full": lambda m: (m(X > 1.5),),
    "bool_mask_axis": lambda m: (slice(None), m(np.array([True, False, True]))),
    "negative_step": lambda m: (slice(None, None, -1), slice(None), slice(3, 0, -2)),  # torch: see _torch_index
    "none_and_ellipsis": lambda m: (None, Ellipsis, None, 1),
    "negative_int_array": lambda m: (m(np.array([-1, 0])),),
    "repeated_indices": lambda m: (m(np.array([1, 1, 0])), m(np.array([2, 2, 2]))),
}


def _torch_index(t, case):
    if case == "negative_step":  # torch has no negative steps: the same elements by flip and an index list
        return t.flip(0)[:, :, [3, 1]]
    return t[INDEXES[case](torch.from_numpy)]


@pytest.mark.parametrize("case", INDEXES, ids=list(INDEXES))
def test_indexing_forward_and_gradient_match_torch(case):
    ours_x, their_x = Tensor(X, requires_grad=True), torch.tensor(X, requires_grad=True)
    ours = ours_x[INDEXES[case](Tensor)]
    theirs = _torch_index(their_x, case)
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.detach().numpy(), theirs.detach().numpy())
    g = np.arange(ours.numel(), dtype=np.float64).reshape(ours.shape)
    (ours * Tensor(g)).sum().backward()
    (theirs * torch.from_numpy(g)).sum().backward()
    np.testing.assert_array_equal(ours_x.grad.numpy(), their_x.grad.numpy())
    if case != "int_and_array":  # numpy moves the axes of x[0, :, idx] to the front; torch (and we) do not
        np.testing.assert_array_equal(ours_x[INDEXES[case](np.asarray)].detach().numpy(), X[INDEXES[case](np.asarray)])


def test_indexing_gradients_by_finite_differences():
    check_grads(lambda t: t[:, [2, 0, 2]][::-1] * t[0, 0], [X[0]])
    check_grads(lambda t: t[t.detach() > 0.5] ** 2, [X[1]])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_index_kernels_on_every_backend(backend):
    pytest.importorskip(backend)
    with engine.use_backend(backend):
        x = Tensor(X, requires_grad=True)
        y = x[[1, 1], :, ::-1]
        y.sum().backward()
    np.testing.assert_array_equal(y.detach().numpy(), X[[1, 1], :, ::-1])
    np.testing.assert_array_equal(x.grad.numpy(), np.stack([np.zeros((3, 4)), np.full((3, 4), 2.0)]))


def test_setitem_writes_plain_tensors_and_refuses_grad_tensors():
    cases = [(1, 5.0), ((slice(None), 0), np.array([1.0, 2.0, 3.0, 4.0])), (X[:, :, 0] > 1.0, -1.0),
             (([0, 1], [2, 0]), 9.0), ((0, slice(None), [3, 1]), np.array([4.0, 5.0]))]
    for index, value in cases:
        ours, theirs = Tensor(X.copy()), torch.tensor(X)
        alias = ours
        ours[index] = Tensor(value) if isinstance(value, np.ndarray) else value
        theirs[index if not isinstance(index, np.ndarray) else torch.from_numpy(index)] = (
            torch.from_numpy(value) if isinstance(value, np.ndarray) else value)
        np.testing.assert_array_equal(alias.numpy(), theirs.numpy())
    w = Tensor(np.zeros(3, np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="setitem: cannot assign into a leaf tensor that requires grad"):
        w[0] = 1.0
    v0 = w.version
    with engine.no_grad():
        w[0] = 1.0
    assert w.numpy().tolist() == [1.0, 0.0, 0.0] and w.version == v0 + 1


def test_index_errors_name_the_problem():
    x = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(IndexError, match="tensors used as indices must be integer or bool"):
        x[Tensor(np.array([0.0]))]
    with pytest.raises(IndexError, match="index 5 is out of bounds"):
        x[[0, 5]]
    with pytest.raises(IndexError, match="too many indices"):
        x[[0], 0, 0]


# --- size, dim, views, dtype and device methods -----------------------------------------------------------------
def test_size_dim_numel_and_transposes_match_torch(rng):
    x0 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    x, tx = Tensor(x0), torch.tensor(x0)
    assert x.size() == tuple(tx.size()) and x.size(1) == tx.size(1) and x.size(-1) == tx.size(-1)
    assert x.dim() == tx.dim() and x.numel() == tx.numel() == 24
    with pytest.raises(IndexError, match="size: dim 3 is out of range"):
        x.size(3)
    _same(x.mT, tx.mT.contiguous())
    m0 = x0[0]
    _same(Tensor(m0).t(), torch.tensor(m0).t().contiguous())
    _same(Tensor(m0).T, torch.tensor(m0).T.contiguous())
    assert Tensor(x0[0, 0]).t().shape == (4,)
    with pytest.raises(RuntimeError, match="t: expects a tensor with <= 2 dims"):
        x.t()


def test_dtype_methods_to_type_cpu_and_clone():
    x0 = np.array([1.7, -2.2, 0.0], np.float32)
    x, tx = Tensor(x0), torch.tensor(x0)
    for name in ("long", "int", "float", "double", "bool"):
        _same(getattr(x, name)(), getattr(tx, name)())
    _same(x.to("float64"), tx.to(torch.float64))
    _same(x.to(Tensor(np.zeros(1, np.int64))), tx.to(torch.zeros(1, dtype=torch.int64)))
    assert x.to("cpu") is x and x.cpu() is x
    _same(x.to("cpu", "float64"), tx.to("cpu", torch.float64))
    assert x.type() == "engine.FloatTensor" and tx.type() == "torch.FloatTensor"
    assert x.long().type() == "engine.LongTensor" and x.type("float64").dtype == np.float64
    with pytest.raises(ValueError, match="device 'mps' is not supported"):
        x.to("mps")
    c = x.clone()
    c.add_(1.0)
    assert x.numpy().tolist() == x0.tolist()  # clone owns its data
    w = Tensor(x0, requires_grad=True)
    (w.clone() * 2.0).sum().backward()
    assert w.grad.numpy().tolist() == [2.0, 2.0, 2.0]


def test_creation_functions_at_the_package_top_match_torch():
    _same(engine.arange(5), torch.arange(5))
    _same(engine.arange(1, 2, 0.25), torch.arange(1, 2, 0.25))
    _same(engine.full((2, 2), 3), torch.full((2, 2), 3))
    _same(engine.full((2,), 1.5), torch.full((2,), 1.5))
    _same(engine.full((2,), True), torch.full((2,), True))
    t = Tensor(np.array([[1, 2]]))
    _same(engine.zeros_like(t), torch.zeros_like(torch.tensor([[1, 2]])))
    _same(engine.ones_like(t, dtype="float32"), torch.ones_like(torch.tensor([[1, 2]]), dtype=torch.float32))
    _same(engine.cat([t, t], 1), torch.cat([torch.tensor([[1, 2]])] * 2, 1))
    _same(engine.stack([t, t]), torch.stack([torch.tensor([[1, 2]])] * 2))
    engine.manual_seed(0)
    r = engine.rand(1000)
    assert r.dtype == np.float32 and r.shape == (1000,) and 0.0 <= r.numpy().min() and r.numpy().max() < 1.0
    assert abs(r.numpy().mean() - 0.5) < 0.05 and engine.randn(2, 3).shape == (2, 3)


def test_set_grad_enabled_and_inference_mode():
    w = Tensor(np.ones(2, np.float32), requires_grad=True)
    with engine.set_grad_enabled(False):
        assert not (w * 2.0).requires_grad
        with engine.set_grad_enabled(True):
            assert (w * 2.0).requires_grad
    assert engine.is_grad_enabled()
    engine.set_grad_enabled(False)  # a plain call switches the mode, as torch's does
    try:
        assert not engine.is_grad_enabled()
    finally:
        engine.set_grad_enabled(True)
    with engine.inference_mode():
        assert not (w * 2.0).requires_grad
    with engine.inference_mode(False):
        assert (w * 2.0).requires_grad


def test_model_takes_numpy_arrays_as_tensors():
    engine.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = model(x)
    assert isinstance(out, Tensor)
    np.testing.assert_array_equal(out.detach().numpy(), model(Tensor(x)).detach().numpy())


def test_new_ops_trace_and_compile_like_eager(rng):
    import graph

    class Net(nn.Module):
        def forward(self, x):
            values, indices = x.max(1)
            return x[:, ::-1] * 2.0, values, x[0, indices], x.min(1).values + (x >= 0.5).float().sum()

    model, x = Net(), Tensor(rng.standard_normal((3, 4)).astype(np.float32))
    cm = graph.compile(model, x, backend="numpy")
    assert {"index", "argmax", "argmin", "greater_equal"} <= {n.op.name for n in cm.graph.nodes}
    for got, want in zip(cm(x), model(x)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_engine_tensor_copies_and_tensor_shares_like_torch_tensor_and_from_numpy():
    a = np.zeros(2, np.float32)
    t, shared = engine.tensor(a), Tensor(a)
    t += 1
    assert a.tolist() == [0.0, 0.0]
    shared += 1
    assert a.tolist() == [1.0, 1.0]


def test_cat_promotes_mixed_dtypes_as_torch():
    a, b = np.array([1, 2], np.int64), np.array([0.5], np.float32)
    got = engine.cat([engine.tensor(a), engine.tensor(b)])
    want = torch.cat([torch.from_numpy(a), torch.from_numpy(b)])
    assert got.dtype.name == str(want.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    x = engine.tensor(np.array([1.0, 2.0]), requires_grad=True)  # gradients flow through the promotion
    engine.cat([x, engine.tensor(np.array([3], np.int64))]).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])
