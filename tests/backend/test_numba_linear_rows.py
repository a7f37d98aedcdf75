"""linear with a few rows (a classifier at batch 1) on the numba backend: dot products over W's rows with the bias
added on the way, serial below SERIAL_DOT_MACS and parallel above, against numpy; with and without a bias, float32
and float64, and the GEMM path past FEW_ROWS rows."""

from __future__ import annotations

import numpy as np
import pytest

from backends.numba import linalg
from engine.backend import get_backend

NB = get_backend("numba")


@pytest.mark.parametrize("rows", [1, 3, 9])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_few_rows(rows, parallel, dtype, rng, monkeypatch):
    monkeypatch.setattr(linalg, "SERIAL_DOT_MACS", 0 if parallel else 1 << 62)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((rows, 130), (37, 130), (37,)))
    for bias in ([b], []):
        out = np.full((rows, 37), np.nan, dtype)
        NB.kernel("linear")(x, w, *bias, out=out)
        ref = x.astype(np.float64) @ w.T.astype(np.float64) + (b if bias else 0)
        np.testing.assert_allclose(out, ref, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-4)


@pytest.mark.parametrize("rows,outs", [(9, 70), (70, 9)])
@pytest.mark.parametrize("activation", ["none", "relu"])
def test_linear_weights_first(rows, outs, activation, rng):
    """More outputs than rows: out.T = W @ x.T with the bias and activation inside the GEMM, then one transposing
    copy; fewer: x @ W.T. linear and fused_linear (with and without a residual) against float64 numpy."""
    assert linalg.weights_first(np.zeros((rows, 50), np.float32), np.zeros((outs, 50), np.float32),
                                np.zeros((rows, outs), np.float32)) == (outs > rows)
    x, w, b, r = (rng.standard_normal(s).astype(np.float32) for s in ((rows, 300), (outs, 300), (outs,), (rows, outs)))
    lin = x.astype(np.float64) @ w.T.astype(np.float64) + b
    act = (lambda v: np.maximum(v, 0)) if activation == "relu" else (lambda v: v)
    for has_res in (False, True):
        out = np.full((rows, outs), np.nan, np.float32)
        NB.kernel("fused_linear")(x, w, b, *([r] if has_res else []), out=out, has_bias=True, has_residual=has_res,
                                  activation=activation)
        np.testing.assert_allclose(out, act(lin + (r if has_res else 0)), rtol=1e-4, atol=1e-4)
    out = np.full((rows, outs), np.nan, np.float32)
    NB.kernel("linear")(x, w, b, out=out)
    np.testing.assert_allclose(out, lin, rtol=1e-4, atol=1e-4)


def test_linear_few_outputs(rng, monkeypatch):
    """Many rows and at most FEW_OUTPUTS outputs: dot products over W's rows (a GEMM tile would be mostly padding);
    past SERIAL_DOT_MACS the GEMM again."""
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((64, 130), (10, 130), (10,)))
    calls = []
    monkeypatch.setattr(linalg, "_rows_dot_serial", lambda *a: (calls.append(1), linalg.rows_dot(*a)))
    for macs, dots in ((1 << 22, 1), (1, 0)):
        monkeypatch.setattr(linalg, "SERIAL_DOT_MACS", macs)
        calls.clear()
        out = np.full((64, 10), np.nan, np.float32)
        NB.kernel("linear")(x, w, b, out=out)
        np.testing.assert_allclose(out, x.astype(np.float64) @ w.T.astype(np.float64) + b, rtol=1e-4, atol=1e-4)
        assert len(calls) == dots


@pytest.mark.parametrize("rows", [1, 9])
def test_linear_specialized_call(rows, rng):
    """A compiled graph's call of linear (engine.backend.specialize): the dot products' compiled loop bound to the
    arrays for a few rows, the plain kernel past FEW_ROWS; both equal the plain call's result."""
    from engine.backend import specialize

    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((rows, 130), (37, 130), (37,)))
    for bias in ([b], []):
        plain, special = np.full((rows, 37), np.nan, np.float32), np.full((rows, 37), np.nan, np.float32)
        NB.kernel("linear")(x, w, *bias, out=plain)
        call = specialize(NB.kernel("linear"), [x, w, *bias], special, {})
        x[...] *= 1.5  # contents change between calls; the call reads them at call time
        call()
        np.testing.assert_allclose(special, 1.5 * plain - (0.5 * b if bias else 0), rtol=1e-4, atol=1e-4)
