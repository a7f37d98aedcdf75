"""The tape and backward(): accumulation, deep chains, deterministic order, detach/no_grad, observers."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor
from engine.autograd import _toposort


def _x(values, grad=True):
    return Tensor(np.asarray(values, np.float64), requires_grad=grad)


def test_gradients_accumulate_across_two_backward_calls():
    x = _x([1.0, 2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])
    (x * 3.0).sum().backward()  # a second graph over the same leaf adds into .grad
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 7.0, 9.0])
    x.zero_grad()
    assert x.grad is None


def test_backward_twice_needs_retain_graph_and_then_accumulates():
    x = _x([1.0, -2.0])
    y = (x * x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * 3 * x.numpy() ** 2)
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*retain_graph=True"):
        y.backward()  # the second backward released it, as in PyTorch


def test_input_used_many_times_sums_its_gradients():
    x = _x([2.0])
    y = x * x + x * 3.0 - x / x  # d/dx = 2x + 3
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [7.0])


def test_chain_of_5000_ops_backward_is_iterative():
    x = _x([1.0, 2.0])
    y = x
    for i in range(5000):  # far past Python's recursion limit
        y = y * 1.0001 if i % 2 else y + 0.5
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 2500] * 2, rtol=1e-12)


def test_toposort_is_deterministic_and_valid():
    def build():
        x = _x([1.0, 2.0])
        w = _x([0.5, -1.0])
        a = F.exp(x)
        b = F.tanh(x * w)
        c = a + b  # diamond: x feeds both branches
        d = F.sum(c * a)
        return d

    orders = []
    for _ in range(3):
        d = build()
        nodes = _toposort(d)
        orders.append([n.prim.name for n in nodes])
        # reverse topological: every node comes before the nodes producing its inputs
        pos = {id(n): i for i, n in enumerate(nodes)}
        for n in nodes:
            for t in n.inputs:
                if t._node is not None:
                    assert pos[id(t._node)] > pos[id(n)]
        assert len(nodes) == len({id(n) for n in nodes})
    assert orders[0] == orders[1] == orders[2]
    assert orders[0] == ["sum", "mul", "add", "tanh", "mul", "exp"]


def test_repeated_backward_is_bitwise_reproducible(rng):
    xs = rng.standard_normal((4, 5)).astype(np.float32)

    def grads():
        x = Tensor(xs, requires_grad=True)
        h = F.relu(x) + F.sigmoid(x) * x
        loss = (F.softmax(h, 1) * h).sum() + F.amax(h, 0).sum()
        loss.backward()
        return x.grad.numpy()

    np.testing.assert_array_equal(grads(), grads())


def test_detach_stops_gradients():
    x = _x([1.0, 2.0])
    d = (x * 2.0).detach()
    assert not d.requires_grad and d.is_leaf
    (x * d).sum().backward()  # d is a constant here
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_no_grad_records_nothing_and_enable_grad_reenables():
    x = _x([1.0])
    with engine.no_grad():
        y = x * 2.0
        assert not engine.is_grad_enabled()
        with engine.enable_grad():
            z = x * 3.0
    assert engine.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad and not z.is_leaf


def test_integer_and_bool_outputs_do_not_require_grad():
    x = _x([1.0, -1.0])
    assert not (x > 0.0).requires_grad
    assert not F.argmax(x).requires_grad
    with pytest.raises(TypeError, match="only floating-point tensors can require grad"):
        Tensor(np.arange(3)).requires_grad_()


def test_constants_get_no_grad_and_leaf_backward():
    x = _x([1.0, 2.0])
    c = Tensor(np.array([3.0, 4.0]))
    (x * c).sum().backward()
    assert c.grad is None
    leaf = _x(5.0)
    leaf.backward()
    assert leaf.grad.item() == 1.0


def test_backward_with_explicit_grad_on_non_scalar():
    x = _x([1.0, 2.0, 3.0])
    y = x * x
    y.backward(np.array([1.0, 0.0, 2.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 0.0, 12.0])


def test_unused_outputs_of_a_multi_result_primitive_get_no_cotangent(rng):
    x = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    y, mean, var = engine.bind(engine.get_primitive("batch_norm_train"), x, Tensor(np.ones(3)), Tensor(np.zeros(3)),
                               eps=1e-5)
    assert mean.requires_grad and var.requires_grad
    y.sum().backward()  # y sums to sum(b) = 0 per channel, so dy/dx contracts to ~0
    np.testing.assert_allclose(x.grad.numpy(), 0.0, atol=1e-12)


def test_observer_sees_every_primitive_call():
    seen = []
    x = _x([1.0, 2.0])
    with engine.observe(lambda prim, ins, attrs, outs: seen.append(prim.name)):
        F.relu(x * 2.0).sum()
    assert seen == ["mul", "relu", "sum"]


def test_abstract_mode_runs_shape_rules_only():
    x = Tensor._make(None, engine.Spec((2, 3), np.float32))
    with engine.abstract():
        y = F.softmax(F.matmul(x, Tensor(np.ones((3, 4), np.float32))), 1)
    assert y.shape == (2, 4) and y._data is None
    with pytest.raises(RuntimeError, match="abstract tensor float32\\[2, 4\\] has no data"):
        y.numpy()


def test_grad_dtype_follows_the_tensor():
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    (x * 2.0).sum().backward()
    assert x.grad.dtype == np.float32 and not x.grad.requires_grad
