"""numba vs numpy reference for clamp and the single-pass activation gradients (relu_grad ... clamp_grad): dtypes,
ranks, sizes spanning several parallel chunks, special values, strided operands, an ``out`` aliasing an input (as
graph in-place plans hand it) and a strided ``out``; then the backward of each activation on each fast backend vs
numpy."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
from engine import Tensor
from tests.backend.test_numba_parity import compare, run_kernel

GRAD_PRIMS = {
    "relu_grad": {},
    "leaky_relu_grad": {"negative_slope": 0.1},
    "elu_grad": {"alpha": 0.7},
    "sigmoid_grad": {},
    "tanh_grad": {},
    "silu_grad": {},
    "clamp_grad": {"min": -0.5, "max": 1.0},
}
CLAMP_ATTRS = [{"min": -0.5, "max": 1.0}, {"min": None, "max": 0.3}, {"min": 0.2, "max": None},
               {"min": 1.0, "max": -1.0}]
SPECIAL = [-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0, np.nan, np.inf, -np.inf, -0.5, 1.0, 0.3, 0.2, 100.0, -100.0]
SHAPES = [(), (7,), (3, 5), (2, 3, 4, 5), (2, 1, 3, 2, 4, 3), (40000,)]  # 40000: three CHUNKs


def _inputs(rng, shape, dtype, special=False):
    g = rng.standard_normal(shape).astype(dtype)
    v = (rng.standard_normal(shape) * 2).astype(dtype)
    if special and v.size >= len(SPECIAL):
        v.reshape(-1)[: len(SPECIAL)] = SPECIAL
        g.reshape(-1)[:3] = [np.nan, np.inf, 0.0]
    return g, v


@pytest.mark.parametrize("name", sorted(GRAD_PRIMS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_kernels(rng, name, shape, dtype):
    g, v = _inputs(rng, shape, dtype, special=True)
    if name in ("sigmoid_grad", "tanh_grad"):
        v = np.tanh(v)  # a forward output
    with np.errstate(all="ignore"):
        compare(name, [g, v], **GRAD_PRIMS[name])


@pytest.mark.parametrize("attrs", CLAMP_ATTRS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clamp_kernels(rng, attrs, shape, dtype):
    g, x = _inputs(rng, shape, dtype, special=True)
    compare("clamp", [x], rtol=0, atol=0, **attrs)
    compare("clamp_grad", [g, x], rtol=0, atol=0, **attrs)


@pytest.mark.parametrize("name", sorted(GRAD_PRIMS))
def test_strided_operands(rng, name):
    g = rng.standard_normal((6, 8, 10)).astype(np.float32).transpose(2, 0, 1)[::2]
    v = rng.standard_normal((10, 6, 16)).astype(np.float32)[::2, :, ::2]
    compare(name, [g, v], **GRAD_PRIMS[name])
    compare("clamp", [v], min=-0.5, max=0.5)


@pytest.mark.parametrize("name", sorted(GRAD_PRIMS) + ["clamp"])
@pytest.mark.parametrize("which", ["aliased", "strided"])
def test_out_aliasing_an_input_or_strided(rng, name, which):
    """In-place (out is gy, or out is the saved value) as the graph memory planner may hand it; a strided out."""
    attrs = GRAD_PRIMS.get(name, {"min": -0.5, "max": 0.5})
    g, v = _inputs(rng, (3, 20000), np.float32)
    ins = [v] if name == "clamp" else [g, v]
    ref = run_kernel("numpy", name, ins, **attrs)[0]
    kernel = engine.get_backend("numba").kernel(name)
    if which == "aliased":
        for k in range(len(ins)):
            arrays = [a.copy() for a in ins]
            kernel(*arrays, out=arrays[k], **attrs)
            np.testing.assert_allclose(arrays[k], ref, rtol=1e-5, atol=1e-6)
    else:
        buf = np.full((3, 40000), 7, np.float32)
        kernel(*ins, out=buf[:, ::2], **attrs)
        np.testing.assert_allclose(buf[:, ::2], ref, rtol=1e-5, atol=1e-6)
        assert np.all(buf[:, 1::2] == 7)


ACTS = {
    "relu": F.relu, "leaky_relu": lambda x: F.leaky_relu(x, 0.1), "elu": lambda x: F.elu(x, 0.7),
    "sigmoid": F.sigmoid, "tanh": F.tanh, "silu": F.silu, "relu6": lambda x: F.clamp(x, 0.0, 6.0),
}


@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_backward_on_each_backend(fast_backend, rng, name):
    x = (rng.standard_normal((2, 3, 8, 8)) * 4).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for be in ("numpy", fast_backend.name):
        with engine.use_backend(be):
            t = Tensor(x, requires_grad=True)
            ACTS[name](t).backward(Tensor(g))
            results.append(t.grad.numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("into", ["gy", "y"])
def test_relu_grad_written_over_an_operand_equals_the_reference(into):
    """A planned executor may write relu_grad's output over a dying operand (in place); the numba kernel then runs
    its in-place form, which must give the out-of-place result (NaN and zero rules included)."""
    import engine

    rng = np.random.default_rng(0)
    gy = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    y = np.maximum(rng.standard_normal(gy.shape).astype(np.float32), 0)
    y[0, 0, 0, :2] = np.nan
    gy[0, 0, 1, :2] = np.nan
    want = np.empty_like(gy)
    engine.get_backend("numpy").kernel("relu_grad")(gy, y, out=want)
    a, b = gy.copy(), y.copy()
    engine.get_backend("numba").kernel("relu_grad")(a, b, out=a if into == "gy" else b)
    np.testing.assert_array_equal(a if into == "gy" else b, want)
