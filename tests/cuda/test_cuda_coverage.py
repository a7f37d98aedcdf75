"""Every primitive the numpy reference defines has a cuda kernel of its own (or, for a fused primitive, a
decomposition the graph executor runs with cuda kernels): none missing, none borrowed from a host backend, and a
missing one fails by name."""

from __future__ import annotations

import pytest

import engine


def _reference_primitives() -> list[str]:
    ref = engine.get_backend("numpy")
    return sorted(n for n in engine.PRIMITIVES if ref.has_kernel(n))


@pytest.mark.parametrize("name", _reference_primitives())
def test_every_reference_primitive_has_a_cuda_kernel(name):
    be = engine.get_backend("cuda")
    assert be.fallback is None, "the cuda backend must not fall back to a host backend"
    prim = engine.get_primitive(name)
    if not be.has_kernel(name):
        assert prim.decompose_rule is not None, f"cuda backend has no kernel for primitive '{name}'"
        return
    module = be.kernel(name).__module__
    assert not module.startswith(("backends.numpy", "backends.numba")), f"{name}: host kernel from {module}"


def test_host_kernels_are_only_the_documented_ones():
    """The kernels defined outside backends.cuda are the ones that are host code by design: call_graph runs a
    compiled function's own executor (which launches cuda kernels)."""
    be = engine.get_backend("cuda")
    outside = sorted(n for n, k in be.kernels.items() if not k.__module__.startswith("backends.cuda"))
    assert outside == ["call_graph"]


def test_missing_kernel_fails_by_name():
    with pytest.raises(NotImplementedError, match="cuda.*no_such_prim"):
        engine.get_backend("cuda").kernel("no_such_prim")
