"""GELU (exact primitive and tanh composite), Hardswish, Mish, SiLU, Softplus, LogSigmoid: PyTorch parity on
values that include the kinks (0, +-3) and large magnitudes, float64 finite-difference gradients (and the
vjp of the gelu_grad primitive), modules and errors."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor, nn
from tests.helpers import check_grads, compare_torch

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # only the PyTorch comparisons skip
    torch = TF = None

SPECIAL = np.array([0.0, 3.0, -3.0, 1e-3, -1e-3, 25.0, -25.0, 80.0, -80.0, 0.5, -1.7, 6.0])

CASES = [
    ("gelu", F.gelu, lambda x: TF.gelu(x)),
    ("gelu_tanh", lambda x: F.gelu(x, "tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    ("hardswish", F.hardswish, lambda x: TF.hardswish(x)),
    ("mish", F.mish, lambda x: TF.mish(x)),
    ("silu", F.silu, lambda x: TF.silu(x)),
    ("softplus", F.softplus, lambda x: TF.softplus(x)),
    ("softplus_beta", lambda x: F.softplus(x, 2.0, 5.0), lambda x: TF.softplus(x, 2.0, 5.0)),
    ("logsigmoid", F.logsigmoid, lambda x: TF.logsigmoid(x)),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_torch(case, rng):
    if torch is None:
        pytest.skip("torch is not installed")
    _, ours, theirs = case
    x = np.concatenate([SPECIAL, rng.standard_normal(20) * 3]).reshape(4, 8)
    compare_torch(ours, theirs, [x], fwd_tol=1e-6, grad_tol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_finite_differences(case, rng):
    x = rng.standard_normal((3, 5)) * 2.5
    x[np.abs(np.abs(x) - 3.0) < 1e-3] += 0.01  # finite differences need a step away from hardswish's kinks
    check_grads(case[1], [x])


def test_gelu_grad_primitive_vjp(rng):
    """Second order: gelu_grad's own vjp (linear in gy, phi(x) (2 - x^2) in x) against finite differences."""
    from engine.ops.smooth_activation import gelu_grad_p

    check_grads(lambda gy, x: engine.bind(gelu_grad_p, gy, x), [rng.standard_normal((3, 4)),
                                                                 rng.standard_normal((3, 4)) * 2])


def test_gelu_values():
    from math import erf, sqrt

    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    expected = [v * 0.5 * (1 + erf(v / sqrt(2))) for v in x]
    np.testing.assert_allclose(F.gelu(Tensor(x)).numpy(), expected, rtol=1e-15)
    assert F.gelu(Tensor(x.astype(np.float32))).dtype == np.float32


@pytest.mark.parametrize("module,functional", [
    (nn.GELU(), F.gelu), (nn.GELU("tanh"), lambda x: F.gelu(x, "tanh")), (nn.Hardswish(), F.hardswish),
    (nn.Mish(), F.mish), (nn.SiLU(), F.silu), (nn.Softplus(2.0, 4.0), lambda x: F.softplus(x, 2.0, 4.0)),
])
def test_modules(module, functional, rng):
    x = Tensor(rng.standard_normal((2, 3, 4)).astype(np.float32))
    np.testing.assert_array_equal(module(x).numpy(), functional(x).numpy())


def test_gelu_bad_approximate():
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh' \\(got 'erf'\\)"):
        F.gelu(Tensor(np.zeros(2, np.float32)), "erf")
    with pytest.raises(ValueError, match="GELU: approximate must be"):
        nn.GELU("fast")
    with pytest.raises(engine.ShapeError, match="gelu: input must be floating point"):
        F.gelu(Tensor(np.zeros(2, np.int64)))
