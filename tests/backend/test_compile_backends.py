"""compile() on every available backend equals the eager numpy reference (rtol 1e-4), fused kernels included."""

from __future__ import annotations

import numpy as np

import engine
import graph
from tests.null.graph_models import BNVariants, TinyResNet, inputs, randomize_bn


def _ref(model, x):
    with engine.use_backend("numpy"), engine.no_grad():
        return model(x).data


def test_compiled_matches_numpy_eager(backend):
    for make, shape in ((TinyResNet, (2, 3, 16, 16)), (BNVariants, (2, 4, 8, 8))):
        m = randomize_bn(make())
        m.eval()
        x = inputs(shape)
        cm = graph.compile(m, x, backend=backend.name)
        ref = _ref(m, x)
        np.testing.assert_allclose(cm(x).data, ref, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
        assert cm.report["backend"] == backend.name


def test_plain_executor_matches_arena_executor(backend):
    m = randomize_bn(TinyResNet())
    m.eval()
    x = inputs((2, 3, 16, 16))
    a = graph.compile(m, x, backend=backend.name, arena=True)(x).data
    b = graph.compile(m, x, backend=backend.name, arena=False)(x).data
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
