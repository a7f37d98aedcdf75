"""Shared fixtures: the `backend` fixture parametrizes a test over every backend that imports here.

Reference tests (tests/null) run on the numpy backend; tests/backend compare each backend with it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("CONVGRAPH_BACKEND", "numpy")
# `make test` runs two xdist workers, each with numba's two OpenMP threads, on two cores: oversubscribed, a worker
# that spins after a parallel region takes the core another process needs (the engine's spin suits a spare core)
os.environ.setdefault("GOMP_SPINCOUNT", "0")

import engine  # noqa: E402

try:  # torch is only an oracle; one thread keeps its many tiny calls fast on a 2-core machine
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass


def _backends() -> list[str]:
    # numba is a dependency: if its backend fails to import, the tests that use it fail (never silently drop it)
    names = ["numpy", "numba"]
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.environ.get("CONVGRAPH_TEST_CUDA") == "1":
        names.append("cuda")  # asked for: a cuda backend that does not import fails its tests
    return names


BACKENDS = _backends()

# tests/cuda runs in a process of its own (numba's simulator must be switched on before numba is first imported;
# `make test` starts it): a plain `pytest tests` leaves it out
collect_ignore = [] if "cuda" in BACKENDS else ["cuda"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test body with eager ops on each available backend."""
    with engine.use_backend(request.param) as b:
        yield b


@pytest.fixture(params=BACKENDS[1:])
def fast_backend(request):
    """Like `backend`, but only the backends that are compared with the numpy reference (numpy against itself
    would pass whatever the kernels do)."""
    with engine.use_backend(request.param) as b:
        yield b


@pytest.fixture(autouse=True)
def _numpy_default_and_seed():
    engine.manual_seed(0)
    with engine.use_backend("numpy"):
        yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
