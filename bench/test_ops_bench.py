"""Op-level pytest-benchmark suite: the ResNet-18 3x3 conv layers at batch 8, the 1x1 56x56 64->256 conv and
LeNet's conv1 at batch 64, forward and forward+backward, on the numpy reference, numba and PyTorch (when
installed). Workload definitions and runners live in zoo/bench/workloads.py (shared with zoo/bench/report.py)."""

from __future__ import annotations

import pytest

from zoo.bench.workloads import CONV_WORKLOADS, MODES, engine_runner, torch_runner

IMPLS = ["numpy", "numba", "torch"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wl", CONV_WORKLOADS, ids=[w.name.replace(" ", "_") for w in CONV_WORKLOADS])
@pytest.mark.parametrize("impl", IMPLS)
def test_conv(warm_benchmark, impl, wl, mode):
    if impl == "torch":
        pytest.importorskip("torch")
        fn = torch_runner(wl, mode)
    else:
        fn = engine_runner(impl, wl, mode)
    warm_benchmark(fn)


def test_sgemm(warm_benchmark):
    """The roofline the conv numbers are compared against (numpy BLAS, 2048^3 float32)."""
    from zoo.bench.workloads import sgemm_runner

    fn, _ = sgemm_runner()
    warm_benchmark(fn)
