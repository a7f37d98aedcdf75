"""The cuda test process: kernels of the cuda backend on numba's simulator (``NUMBA_ENABLE_CUDASIM=1``, set
before numba is imported, as `make test` does) or on a real GPU (``CONVGRAPH_TEST_CUDA=1``). Every kernel
comparison of tests.helpers.compare() in this directory runs the cuda kernel against the numpy reference."""

from __future__ import annotations

import pytest
from numba import config, cuda

import tests.helpers as helpers

if not cuda.is_available():
    raise pytest.UsageError("tests/cuda needs a CUDA GPU or numba's simulator: run it in its own process with "
                            "NUMBA_ENABLE_CUDASIM=1 set before numba is imported (`make test` does)")
if config.ENABLE_CUDASIM:
    from tests.cuda.simulator import install

    install()


def pytest_configure(config: pytest.Config) -> None:
    # simulated kernels compute with numpy scalars, which warn where a GPU silently gives inf/NaN (x / 0, inf - inf)
    config.addinivalue_line("filterwarnings", r"ignore::RuntimeWarning:backends\.cuda")


@pytest.fixture(autouse=True)
def _parity_on_cuda(monkeypatch):
    monkeypatch.setattr(helpers, "PARITY_BACKEND", "cuda")
