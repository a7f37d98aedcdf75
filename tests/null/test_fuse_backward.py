"""The backward fusion passes (graph/passes/fuse_backward.py: fuse_pool_relu_grad, fuse_cross_entropy,
fold_transpose_matmul) on compile_step's joint graph. fuse_pool_relu_grad:
the pattern is gone and the fused node is there (with the bias gradient only where the conv has a bias), pools
after a ReLU-less path are left alone; cross-entropy's loss and gradient become one node (not nll_loss of a
log_softmax); the linear weight gradient reads g^T in place; and training steps with all three equal the unfused
pipeline's bit for bit on the numpy reference (numba: tests/backend/test_numba_fused_grad.py)."""

from __future__ import annotations

import numpy as np

import engine
import engine.functional as F
import engine.nn as nn
import engine.optim as optim
import graph
from engine import Tensor

UNFUSED = ["remove_identities", "dce", "cse", "fuse_epilogue_joint", "dce"]


class Net(nn.Module):
    def __init__(self, relu_before_pool: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3)  # bias: its gradient is fused too
        self.conv2 = nn.Conv2d(4, 6, 3, bias=False)
        self.fc = nn.Linear(6 * 2 * 2, 3)
        self.relu_before_pool = relu_before_pool

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = self.conv2(x)
        x = F.max_pool2d(F.relu(x), 2) if self.relu_before_pool else F.relu(F.max_pool2d(x, 2))
        return self.fc(F.flatten(x, 1))


X = np.random.default_rng(0).standard_normal((3, 2, 14, 14))
Y = np.array([0, 2, 1])


def _train(passes, backend: str, dtype, relu_before_pool: bool = True, steps: int = 3):
    engine.manual_seed(0)
    m = Net(relu_before_pool)
    m = m.double() if dtype == np.float64 else m
    m.train()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x, y = Tensor(X.astype(dtype)), Tensor(Y)
    step = graph.compile_step(m, F.cross_entropy, opt, x, y, backend=backend, passes=passes)
    losses = [step(x, y).item() for _ in range(steps)]
    return step, m, losses


def test_pool_relu_grad_fuses_with_the_bias_gradient_where_there_is_one():
    step, _, _ = _train(None, "numpy", np.float64, steps=1)
    ops = step.graph.op_counts()
    fused = step.graph.find("max_pool2d_relu_grad")
    assert len(fused) == 2 and "max_pool2d_grad" not in ops
    assert sorted(n.attrs["bias_grad"] for n in fused) == [False, True]  # conv2 has no bias
    # the only relu_grad left is none (fc has no ReLU); the conv1 bias-gradient sum went into the fused node
    assert "relu_grad" not in ops and not any(n.attrs.get("axes") == (0, 2, 3) for n in step.graph.find("sum"))
    assert all(n.meta["phase"] == "backward" for n in fused)


def test_pool_before_relu_is_not_fused():
    step, _, _ = _train(None, "numpy", np.float64, relu_before_pool=False, steps=1)
    assert len(step.graph.find("max_pool2d_relu_grad")) == 1  # conv1's only
    assert len(step.graph.find("max_pool2d_grad")) == 1 and len(step.graph.find("relu_grad")) == 1


def check_steps_equal_unfused(backend: str, dtype, rtol: float) -> None:
    _, m_fused, l_fused = _train(None, backend, dtype)
    _, m_plain, l_plain = _train(UNFUSED, backend, dtype)
    np.testing.assert_allclose(l_fused, l_plain, rtol=rtol, atol=0)
    for (k, a), b in zip(m_fused.state_dict().items(), m_plain.state_dict().values()):
        np.testing.assert_allclose(np.asarray(a.data), np.asarray(b.data), rtol=rtol, atol=rtol * 1e-2, err_msg=k)


def test_fused_backward_steps_equal_the_unfused_pipeline_bit_for_bit_on_numpy():
    check_steps_equal_unfused("numpy", np.float64, 0.0)


def test_cross_entropy_forward_and_backward_fuse_into_one_node():
    step, _, _ = _train(None, "numpy", np.float64, steps=1)
    (fused,) = step.graph.find("log_softmax_nll")
    ops = step.graph.op_counts()
    assert "log_softmax" not in ops and "exp" not in ops and "broadcast_to" not in ops
    assert step.graph.is_output(fused.outputs[0])  # the loss step() returns


def test_nll_loss_of_a_log_softmax_is_not_fused():
    # the pattern asks for class_coef made by cross_entropy: nll_loss(log_softmax(...)) keeps its nodes
    engine.manual_seed(0)
    m = Net().double()
    m.train()
    opt = optim.SGD(m.parameters(), lr=0.1)
    x, y = Tensor(X), Tensor(Y)
    step = graph.compile_step(m, lambda out, t: F.nll_loss(F.log_softmax(out, 1), t), opt, x, y, backend="numpy")
    assert not step.graph.find("log_softmax_nll") and step.graph.find("log_softmax")


def test_the_linear_weight_gradient_reads_the_transposed_gradient_in_place():
    step, _, _ = _train(None, "numpy", np.float64, steps=1)
    (tn,) = step.graph.find("matmul_tn")  # fc's g^T @ x
    assert "transpose" not in step.graph.op_counts()
    assert tn.outputs[0].shape == (3, 24)
