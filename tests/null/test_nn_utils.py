"""nn.utils.clip_grad_norm_ / clip_grad_value_ against torch.nn.utils (return value, norm types, in place)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import Tensor, nn

try:
    import torch
except ImportError:  # only the PyTorch comparisons skip
    torch = None


def _params(rng, scale=1.0):
    shapes = [(3, 4), (4,), (2, 2, 3)]
    ours = [Tensor(np.zeros(s, np.float32), requires_grad=True) for s in shapes]
    for p in ours:
        p.grad = Tensor((rng.standard_normal(p.shape) * scale).astype(np.float32))
    return ours


def _torch_params(ours):
    ts = [torch.zeros(p.shape, requires_grad=True) for p in ours]
    for t, p in zip(ts, ours):
        t.grad = torch.tensor(p.grad.numpy().copy())
    return ts


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm(norm_type, max_norm, rng):
    ours = _params(rng)
    grads = [p.grad.numpy().copy() for p in ours]
    nt = float(norm_type)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    flat = np.concatenate([g.reshape(-1) for g in grads]).astype(np.float64)
    expected = np.abs(flat).max() if nt == math.inf else np.sum(np.abs(flat) ** nt) ** (1 / nt)
    assert isinstance(total, Tensor) and total.shape == () and total.dtype == np.float32
    np.testing.assert_allclose(total.item(), expected, rtol=1e-6)
    coef = min(max_norm / (expected + 1e-6), 1.0)
    for p, g in zip(ours, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-6)
    if torch is not None:
        theirs = _torch_params(_params(np.random.default_rng(1234)))
        t_total = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
        np.testing.assert_allclose(total.item(), t_total.item(), rtol=1e-6)
        for p, t in zip(ours, theirs):
            np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_clip_grad_norm_skips_params_without_grad_and_accepts_one_tensor(rng):
    ours = _params(rng)
    ours[1].grad = None
    nn.utils.clip_grad_norm_(ours, 0.1)
    assert ours[1].grad is None
    p = Tensor(np.zeros(3, np.float32), requires_grad=True)
    p.grad = Tensor(np.array([3.0, 4.0, 0.0], np.float32))
    assert nn.utils.clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8, 0.0], rtol=1e-5)
    assert nn.utils.clip_grad_norm_([], 1.0).item() == 0.0


def test_clip_grad_norm_nonfinite(rng):
    ours = _params(rng)
    ours[0].grad.data[0, 0] = np.inf
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm of order 2.0 .* is non-finite"):
        nn.utils.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    assert math.isinf(nn.utils.clip_grad_norm_(ours, 1.0).item())  # no error: torch scales by 0 (inf -> nan)


def test_clip_grad_value(rng):
    ours = _params(rng, scale=2.0)
    grads = [p.grad.numpy().copy() for p in ours]
    assert nn.utils.clip_grad_value_(ours, 0.7) is None
    for p, g in zip(ours, grads):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g, -0.7, 0.7))
    if torch is not None:
        theirs = _torch_params(_params(np.random.default_rng(1234), scale=2.0))
        torch.nn.utils.clip_grad_value_(theirs, 0.7)
        for p, t in zip(ours, theirs):
            np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())
