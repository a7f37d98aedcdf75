"""A fake device backend for tests: "fakedev" runs the numpy reference kernels on arrays that are not numpy
arrays, so every place that lets a device array escape to numpy, or hands a host array to a device kernel, fails
loudly without a GPU.

``FakeArray`` wraps a numpy array; converting it to numpy (``np.asarray``, arithmetic, ``__array__``) raises. The
backend's kernels assert they got FakeArrays, unwrap them and call the numpy backend's kernel; its memory
functions are the only way data crosses between host and "device", and they count the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.backend import Backend, get_backend, register_backend

DEVICE = "fakedev"


class DeviceEscape(AssertionError):
    """A device array reached numpy, or a host array reached a device kernel."""


class FakeArray:
    """A "device" array: shape and dtype like an ndarray, but no numpy conversion."""

    __slots__ = ("a",)

    def __init__(self, a: np.ndarray):
        assert isinstance(a, np.ndarray), type(a)
        self.a = a

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    ndim = property(lambda self: self.a.ndim)
    size = property(lambda self: self.a.size)
    nbytes = property(lambda self: self.a.nbytes)

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise DeviceEscape(f"a {DEVICE} array {self.dtype}{list(self.shape)} was converted to numpy")

    def __repr__(self) -> str:
        return f"FakeArray({self.dtype}{list(self.shape)})"


def _unwrap(x: Any, what: str, name: str) -> np.ndarray:
    if not isinstance(x, FakeArray):
        raise DeviceEscape(f"{DEVICE} kernel '{name}' got a host {what} ({type(x).__name__})")
    return x.a


class FakeDeviceBackend(Backend):
    """Kernels: the numpy backend's, on unwrapped FakeArrays; ``call_graph`` gets the FakeArrays themselves (the
    compiled function's executor runs on this backend). Counts the bytes copied each way."""

    device = DEVICE
    alignment = 256

    def __init__(self) -> None:
        super().__init__(DEVICE)
        self.h2d = self.d2h = 0
        self._wrapped: dict[str, Any] = {}

    # -- kernels --
    def has_kernel(self, prim_name: str) -> bool:
        return get_backend("numpy").has_kernel(prim_name)

    def kernel(self, prim_name: str) -> Any:
        k = self._wrapped.get(prim_name)
        if k is None:
            k = self._wrapped[prim_name] = self._wrap(prim_name, get_backend("numpy").kernel(prim_name))
        return k

    @staticmethod
    def _wrap(name: str, host_kernel: Any) -> Any:
        def kernel(*ins: Any, out: Any, **attrs: Any) -> None:
            outs = out if isinstance(out, tuple) else (out,)
            if name == "call_graph":  # the graph's own executor runs on this backend
                for a in (*ins, *outs):
                    _unwrap(a, "array", name)
                host_kernel(*ins, out=out, **attrs)
                return
            args = [_unwrap(a, "input", name) for a in ins]
            hosts = tuple(_unwrap(o, "output", name) for o in outs)
            host_kernel(*args, out=hosts if isinstance(out, tuple) else hosts[0], **attrs)

        kernel.__name__ = kernel.__qualname__ = f"fakedev_{name}"
        return kernel

    # -- memory --
    def empty(self, shape: Sequence[int], dtype: Any) -> FakeArray:
        return FakeArray(np.empty(tuple(shape), dtype))

    def from_host(self, array: Any) -> FakeArray:
        if isinstance(array, FakeArray):
            return array
        if not isinstance(array, np.ndarray):
            raise DeviceEscape(f"from_host got a {type(array).__name__}, not a numpy array")
        self.h2d += array.nbytes
        return FakeArray(np.array(array, order="C"))

    def to_host(self, array: Any) -> np.ndarray:
        a = _unwrap(array, "array", "to_host")
        self.d2h += a.nbytes
        return a.copy()

    def is_native(self, array: Any) -> bool:
        return isinstance(array, FakeArray)

    def arena(self, nbytes: int) -> FakeArray:
        return FakeArray(np.empty(max(int(nbytes), 1), np.uint8))

    def view(self, arena: Any, offset: int, shape: Sequence[int], dtype: Any) -> FakeArray:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return FakeArray(_unwrap(arena, "arena", "view")[offset:offset + n].view(dtype).reshape(tuple(shape)))

    def copy_(self, dst: Any, src: Any) -> None:
        np.copyto(_unwrap(dst, "array", "copy_"), _unwrap(src, "array", "copy_"))


def fake_backend() -> FakeDeviceBackend:
    """The registered "fakedev" backend (registered on first use)."""
    try:
        b = get_backend(DEVICE)
    except ValueError:
        b = register_backend(FakeDeviceBackend())
    assert isinstance(b, FakeDeviceBackend)
    return b
