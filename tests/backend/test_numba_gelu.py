"""numba gelu / gelu_grad kernels vs the numpy reference (float32 and float64, odd sizes, strided input)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.backend.test_numba_parity import compare

pytest.importorskip("backends.numba")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 33), (20000,)])
def test_gelu_kernels(rng, dtype, shape):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    compare("gelu", [x], rtol=1e-6, atol=1e-7)
    compare("gelu_grad", [g, x], rtol=1e-6, atol=1e-7)
    compare("gelu", [x.reshape(-1)[::2]], rtol=1e-6, atol=1e-7)
