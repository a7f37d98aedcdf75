"""The layers added for PyTorch ports on every backend: the numba gelu / gelu_grad / row_norm / row_norm_grad
kernels vs the numpy reference, and a model using every new layer (eager forward + backward, and compiled) vs
the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import graph
from engine import Tensor, nn
from tests.backend.test_numba_parity import compare, run_kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 33), (20000,)])
def test_gelu_kernels(rng, dtype, shape):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    # float32 erf is a rational approximation (4.2e-7 relative); 1 + erf cancels for x < -4 as in torch's float32
    # gelu, so the absolute error there is ~1e-6 (torch: gelu(-5) = -1.19e-6, exact -1.43e-6)
    tol = dict(rtol=1e-6, atol=2e-6 if dtype == np.float32 else 1e-12)
    compare("gelu", [x], **tol)
    compare("gelu_grad", [g, x], **tol)
    compare("gelu", [x.reshape(-1)[::2]], **tol)


def test_gelu_float32_erf_accuracy():
    from math import erf, sqrt

    from backends.numba.gelu import erf32

    xs = np.linspace(-6, 6, 20001).astype(np.float32)
    exact = np.array([erf(float(v)) for v in xs])
    approx = np.array([erf32.py_func(v) for v in xs[::50]], np.float64)
    assert np.max(np.abs(approx - exact[::50]) / np.maximum(np.abs(exact[::50]), 1e-30)) < 5e-7
    got = run_kernel("numba", "gelu", [xs])[0].astype(np.float64)
    ref = xs.astype(np.float64) * 0.5 * (1 + np.array([erf(float(v) / sqrt(2)) for v in xs]))
    assert np.max(np.abs(got - ref)) < 2e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_norm_kernels(rng, dtype):
    x = (rng.standard_normal((7, 45)) * 3 + 1).astype(dtype)
    g = rng.standard_normal((7, 45)).astype(dtype)
    compare("row_norm", [x], rtol=1e-5, atol=1e-6, eps=1e-5)
    compare("row_norm", [x[:, ::2]], rtol=1e-5, atol=1e-6, eps=1e-3)
    mean, var = x.mean(1), x.var(1)
    compare("row_norm_grad", [g, x, mean, var], rtol=1e-5, atol=1e-6, eps=1e-5)


def _model() -> nn.Module:
    engine.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), nn.GroupNorm(2, 8), nn.GELU(),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"), nn.InstanceNorm2d(8, affine=True), nn.Mish(),
        nn.ConvTranspose2d(8, 4, 2, stride=2), nn.Hardswish(), nn.Upsample(size=(7, 9), mode="bilinear"),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="replicate"), nn.LayerNorm((4, 7, 9)),
        nn.GELU("tanh"), nn.Upsample(scale_factor=2), nn.Flatten(), nn.Linear(4 * 14 * 18, 3))


def _run(backend: str, x: np.ndarray) -> list[np.ndarray]:
    m = _model()
    with engine.use_backend(backend):
        xt = Tensor(x, requires_grad=True)
        loss = nn.BCEWithLogitsLoss()(m(xt), Tensor(np.full((2, 3), 0.3, np.float32)))
        loss.backward()
    return [loss.numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in m.parameters()]


def test_model_with_every_new_layer_matches_numpy(backend, rng):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    ref, got = _run("numpy", x), _run(backend.name, x)
    for i, (r, g) in enumerate(zip(ref, got)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5, err_msg=f"output/gradient {i}")
    m = _model().eval()
    eager = m(Tensor(x)).numpy()
    compiled = graph.compile(m, Tensor(x), backend=backend.name)(Tensor(x)).numpy()
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-5)
