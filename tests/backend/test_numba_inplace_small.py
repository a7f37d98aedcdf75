"""numba elementwise, clamp and relu_grad kernels in the forms an executor hands them: ``out`` the storage of an
operand (the memory plan's in-place writes), small arrays (the serial twins) and large ones (parallel), and as
calls specialized once to fixed arrays (engine.backend.specialize) that see the arrays' contents at call time."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from backends.numba._layout import SERIAL_BELOW
from engine.backend import specialize

numba_be = pytest.importorskip("backends.numba").backend
SIZES = [(3, 5), (2, 3, SERIAL_BELOW // 6 + 7)]  # below and above the serial threshold


def _ref(name, ins, **attrs):
    out = np.empty(np.broadcast_shapes(*(a.shape for a in ins)), ins[0].dtype)
    engine.get_backend("numpy").kernel(name)(*ins, out=out, **attrs)
    return out


@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum"])
@pytest.mark.parametrize("into", [0, 1])
def test_binary_written_over_an_operand(shape, name, into):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32) + 3
    ref = _ref(name, [a, b])
    ins = [a.copy(), b.copy()]
    numba_be.kernel(name)(*ins, out=ins[into])
    np.testing.assert_allclose(ins[into], ref, rtol=1e-6)
    # the other operand broadcast (a per-channel scale): written into the full-size one
    c = rng.standard_normal(shape[-1:]).astype(np.float32) + 3
    full = a.copy()
    ops = [full, c] if into == 0 else [c, full]
    numba_be.kernel(name)(*ops, out=full)
    np.testing.assert_allclose(full, _ref(name, [a, c] if into == 0 else [c, a]), rtol=1e-6)


@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("name", ["relu", "exp", "neg", "sigmoid"])
def test_unary_written_over_its_operand(shape, name):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ref = _ref(name, [x])
    y = x.copy()
    numba_be.kernel(name)(y, out=y)
    np.testing.assert_allclose(y, ref, rtol=1e-6)


@pytest.mark.parametrize("shape", SIZES, ids=str)
def test_clamp_written_over_its_operand(shape):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32) * 8
    y = x.copy()
    numba_be.kernel("clamp")(y, out=y, min=0.0, max=6.0)
    np.testing.assert_array_equal(y, np.clip(x, 0, 6))


@pytest.mark.parametrize("shape", SIZES, ids=str)
@pytest.mark.parametrize("case", ["add", "add-inplace", "relu", "clamp-inplace", "relu_grad", "relu_grad-into-gy",
                                  "mul-broadcast", "strided"])
def test_specialized_calls_equal_the_kernel_and_read_current_contents(shape, case):
    rng = np.random.default_rng(3)
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32)
    name, attrs = case.split("-")[0], {}
    ins, out = [a, b], np.empty(shape, np.float32)
    if name in ("relu", "clamp"):
        ins = [a]
    if name == "clamp":
        attrs = {"min": 0.0, "max": 0.5}
    if case.endswith("inplace") or case.endswith("gy"):
        out = a
    if case == "mul-broadcast":
        name, ins = "mul", [a, b[..., :1]]
    if case == "strided":
        name, ins = "add", [a[..., ::2], b[..., ::2]]
        out = np.empty(ins[0].shape, np.float32)
    call = specialize(numba_be.kernel(name), ins, out, attrs)
    for step in range(2):  # the second time on new contents of the same arrays
        want = _ref(name, [x.copy() for x in ins], **attrs)
        call()
        np.testing.assert_allclose(out, want, rtol=1e-6, err_msg=f"call {step}")
        for x in ins:
            x[...] = rng.standard_normal(x.shape).astype(np.float32)


@pytest.mark.parametrize("rows", [1, 3, 4, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_and_fused_linear_at_few_rows_equal_numpy(rows, dtype):
    """A linear layer at batch <= 4 runs as dot products over W's rows (no GEMM packing)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((rows, 1280)).astype(dtype)
    w = rng.standard_normal((100, 1280)).astype(dtype)
    b = rng.standard_normal(100).astype(dtype)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
    out = np.empty((rows, 100), dtype)
    numba_be.kernel("linear")(x, w, b, out=out)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3)
    numba_be.kernel("fused_linear")(x, w, b, out=out, has_bias=True, has_residual=False, activation="relu")
    np.testing.assert_allclose(out, np.maximum(ref, 0), rtol=1e-4, atol=1e-3)
