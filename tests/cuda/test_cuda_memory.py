"""CudaBackend's memory functions round-trip on numba's simulator (or a GPU): the device seam's contract that
executors, Tensors and optimizers rely on. Runs in the cuda test process (NUMBA_ENABLE_CUDASIM=1 set before numba
is imported)."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine import Tensor
from engine.backend import backend_for_device, copy_into, device_of, to_host

cuda_backend = pytest.importorskip("backends.cuda").backend
if "cuda" not in engine.available_backends():
    pytest.skip("needs a GPU or NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)


def test_round_trips_keep_shape_dtype_and_values():
    b = engine.get_backend("cuda")
    assert b is cuda_backend and b.device == "cuda" and b.alignment == 256
    for a in (np.arange(12, dtype=np.float32).reshape(3, 4), np.asarray(2.5), np.arange(5, dtype=np.int64)):
        d = b.from_host(a)
        assert b.is_native(d) and not b.is_native(a) and device_of(d) == "cuda"
        back = b.to_host(d)
        assert isinstance(back, np.ndarray) and back.shape == a.shape and back.dtype == a.dtype
        np.testing.assert_array_equal(back, a)
        assert b.from_host(d) is d  # already on the device
    e = b.empty((2, 3), np.float64)
    assert b.is_native(e) and e.shape == (2, 3) and e.dtype == np.float64


def test_arena_views_do_not_overlap_and_copy_writes_in_place():
    b = engine.get_backend("cuda")
    arena = b.arena(2 * 256)
    x = b.view(arena, 0, (4, 8), np.float32)  # 128 bytes
    y = b.view(arena, 256, (3,), np.int64)
    b.copy_(x, b.from_host(np.ones((4, 8), np.float32)))
    b.copy_(y, np.array([7, 8, 9]))  # a host source is copied in
    np.testing.assert_array_equal(b.to_host(x), np.ones((4, 8), np.float32))
    np.testing.assert_array_equal(b.to_host(y), [7, 8, 9])
    copy_into(x, np.full((4, 8), 3.0, np.float32))
    assert b.to_host(x)[0, 0] == 3.0 and to_host(y).tolist() == [7, 8, 9]
    b.synchronize()


def test_tensors_move_to_cuda_and_back():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = Tensor(a).to("cuda")
    assert t.device == "cuda" and t.is_cuda and backend_for_device("cuda") is cuda_backend
    np.testing.assert_array_equal(t.numpy(), a)
    assert t.cpu().device == "cpu" and "device='cuda'" in repr(t)
    with pytest.raises(TypeError, match="device 'cuda'"):
        np.asarray(t)
