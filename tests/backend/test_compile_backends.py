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


def test_compile_report_time_includes_kernel_compilation_without_side_effects():
    """On numba, compile() and compile_step run a new graph once on zeros, so the report's compile_s includes the
    kernel JIT (kernels_s); that run writes nothing the caller owns and draws no random numbers."""
    import engine.functional as F
    import engine.optim as optim
    from tests.null.graph_models import TinyResNet, inputs

    engine.manual_seed(0)
    m = TinyResNet(dropout=0.5)
    m.train()
    before = {k: v.data.copy() for k, v in m.state_dict().items()}
    rng = engine.get_rng_state()
    x, y = inputs((2, 3, 8, 8)), engine.tensor(np.array([0, 1]))
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    step = graph.compile_step(m, F.cross_entropy, opt, x, y, backend="numba")
    cm = graph.compile(m, x, backend="numba")
    for r in (step.report, cm.report):
        assert r["kernels_s"] > 0 and r["compile_s"] >= r["kernels_s"]
    assert engine.get_rng_state() == rng
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.data, before[k], err_msg=k)
    assert graph.compile(m, x, backend="numpy").report["kernels_s"] == 0.0
