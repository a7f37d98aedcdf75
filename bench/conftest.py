"""Benchmark fixtures. Run the suites with the benchmark plugin enabled (pyproject disables it for tests):

    .venv/bin/python -m pytest bench --benchmark-enable --benchmark-columns=median,iqr,rounds

JIT compile is excluded: every benchmarked callable is called once (``warmup``) before timing starts.
"""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pytest_configure(config):
    config.addinivalue_line("markers", "torch: needs PyTorch installed (skipped otherwise)")


@pytest.fixture
def warm_benchmark(benchmark):
    """``warm_benchmark(fn)``: one untimed call (absorbs JIT compile and first-touch), then pytest-benchmark."""

    def run(fn):
        fn()
        return benchmark.pedantic(fn, rounds=5, iterations=1, warmup_rounds=1)

    return run
