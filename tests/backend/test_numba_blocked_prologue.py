"""``blocked_prologue_conv2d`` on numba (backends/numba/blocked/prologue.py) against its decomposition on the numpy
reference (the scale/shift pass, then the blocked convolution), at odd sizes, and compiled DenseNets against eager
numpy."""

from __future__ import annotations

import numpy as np
import pytest

import backends.numba  # noqa: F401 - registers the kernels
import graph
from backends.numba.blocked import prologue as bpro
from backends.numba.gemm import VL
from tests.backend.test_numba_blocked import NB, NP, _run
from tests.null.test_conv_prologue import tiny_densenet
from tests.null.test_layout_pass import _assert_close, _eager, _model

# (N, C, O, H, W, k, pad, prologue, prologue_attrs, residual, activation, pool)
CASES = [
    (1, 28, 50, 7, 9, 1, 0, "relu", (), False, "relu", 1),  # pad lanes in and out, a partial pixel tile
    (2, 600, 40, 5, 3, 1, 0, "none", (), True, "none", 1),  # several K blocks, residual, two images
    (1, 64, 48, 13, 11, 1, 0, "clamp", (("max", 0.5), ("min", -0.25)), False, "sigmoid", 1),  # act(0) != 0 in pad lanes
    (1, 32, 16, 6, 6, 3, 1, "relu", (), False, "relu", 1),  # 3x3 padded: the decomposition (pads after the prologue)
    (2, 40, 24, 9, 7, 1, 0, "relu", (), False, "none", 2),  # 2x2 average pool: odd sizes drop a row and a column
    (1, 1024, 48, 14, 14, 1, 0, "relu", (), False, "none", 2),  # DenseNet's last transition: two K blocks
]


@pytest.mark.parametrize("serial", [False, True], ids=["parallel", "serial"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:7])) + f"-{c[7]}-pool{c[11]}")
def test_prologue_conv_matches_its_decomposition(case, serial, rng, monkeypatch):
    n, c, o, h, w_, k, p, pro, pro_attrs, res, act, pool = case
    monkeypatch.setattr(bpro, "SERIAL_MACS", 1 << 62 if serial else 0)
    cb = -(-c // VL)
    x = rng.standard_normal((n, cb, h, w_, VL), dtype=np.float32)
    scale = np.zeros((1, cb, 1, 1, VL), np.float32)
    shift = np.zeros((1, cb, 1, 1, VL), np.float32)
    scale.reshape(-1)[:c] = rng.standard_normal(c) + 1
    shift.reshape(-1)[:c] = rng.standard_normal(c) * 0.5
    w = rng.standard_normal((o, c, k, k), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    attrs = dict(stride=(1, 1), padding=((p, p), (p, p)), dilation=(1, 1), groups=1, has_bias=True,
                 has_residual=res, activation=act, act_attrs=(), prologue=pro, prologue_attrs=pro_attrs, pool=pool)
    r = [rng.standard_normal((n, -(-o // VL), h, w_, VL), dtype=np.float32)] if res else []
    ref = _run(NP, "blocked_prologue_conv2d", x, scale, shift, w, b, *r, **attrs)
    got = _run(NB, "blocked_prologue_conv2d", x, scale, shift, w, b, *r, **attrs)
    keep, gotu = _run(NP, "from_blocked", ref, channels=o), _run(NP, "from_blocked", got, channels=o)
    np.testing.assert_allclose(gotu, keep, rtol=1e-4, atol=1e-4 * np.abs(keep).max())
    if pro != "none":  # the prologue's activation matters: without it the result differs
        plain = _run(NP, "blocked_prologue_conv2d", x, scale, shift, w, b, *r, **dict(attrs, prologue="none"))
        assert not np.allclose(_run(NP, "from_blocked", plain, channels=o), keep, rtol=1e-2)


@pytest.mark.parametrize("batch", [1, 2])
def test_compiled_densenets_with_prologues_equal_eager_numpy(batch):
    m, x = _model("densenet121")
    tiny = tiny_densenet()
    xt = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    for model, inp in ((m, x[:batch]), (tiny, xt)):
        cm = graph.compile(model, inp, backend="numba", layout="blocked")
        assert any("blocked-direct-prologue" in k for k in cm.report["kernels"].values())
        _assert_close(cm(inp).data, _eager(model, inp))
