"""The layers added for PyTorch ports on every backend: the numba gelu / gelu_grad / row_norm / row_norm_grad
kernels vs the numpy reference, and a model using every new layer (eager forward + backward, and compiled) vs
the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import graph
from engine import Tensor, nn
from tests.backend.test_numba_parity import compare


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 33), (20000,)])
def test_gelu_kernels(rng, dtype, shape):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    compare("gelu", [x], rtol=1e-6, atol=1e-7)
    compare("gelu_grad", [g, x], rtol=1e-6, atol=1e-7)
    compare("gelu", [x.reshape(-1)[::2]], rtol=1e-6, atol=1e-7)


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
