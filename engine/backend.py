"""Kernel tables. A backend is a name plus a table primitive-name -> kernel; it defines nothing else about ops.

Kernels have the signature ``kernel(*input_arrays, out, **attrs)`` and write into ``out`` (an array, or a
tuple of arrays for multi-result primitives), so CPU and GPU kernels look alike and an executor can hand
them buffers from a planned arena.

The engine never imports ``backends`` statically (dependencies run zoo -> graph -> backends -> engine);
backends are discovered by name with :func:`importlib.import_module` the first time they are asked for.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from .primitive import Spec

Kernel = Callable[..., None]


class Step(NamedTuple):
    """One kernel call an executor will make: what :meth:`Backend.prepare` sees of a graph node. ``inputs`` holds
    the constant's array where the input is a graph constant, else its Spec (the data arrives at run time)."""

    name: str
    kernel: Kernel
    inputs: list
    outputs: list
    attrs: dict


class ExecutorContext:
    """A backend's state for one graph executor: the derived forms of the graph's constants (transformed, packed
    or uploaded once) and the kernels' workspaces, so that they live and die with the compiled module instead of in
    process-wide caches. :meth:`Backend.prepare` makes one when the executor is built; the executor enters it
    around every run, and kernels find it with :func:`current_context` (None in eager mode, where a kernel computes
    what it needs per call). This base class keeps nothing."""

    def __init__(self, constants: Sequence[Any] = (), *, autotune: bool = False):
        self.constants = list(constants)  # held so that their ids and contents stay valid for this context's life
        self.autotune = autotune
        self._tokens: list[contextvars.Token] = []

    def reserve(self, steps: Sequence[Step]) -> None:
        """Size the workspaces for ``steps`` up front (the base backend has none)."""

    @property
    def workspace_bytes(self) -> int:
        return 0

    def __enter__(self) -> ExecutorContext:
        self._tokens.append(_CURRENT.set(self))
        return self

    def __exit__(self, *exc: Any) -> None:
        _CURRENT.reset(self._tokens.pop())


_CURRENT: contextvars.ContextVar[ExecutorContext | None] = contextvars.ContextVar("executor_context", default=None)


def current_context() -> ExecutorContext | None:
    """The executor context being run (see :class:`ExecutorContext`), or None in eager mode."""
    return _CURRENT.get()


_deterministic = [False]


def use_deterministic_algorithms(mode: bool) -> None:
    """Make every backend choose its algorithms without measuring them (as ``torch.use_deterministic_algorithms``
    names it): where a backend could time candidates (numba's ``CONVGRAPH_CONV_ALGO=measure``,
    ``compile(autotune=True)``) it uses its documented heuristic instead, so results never depend on machine load.
    An algorithm forced by name still runs."""
    _deterministic[0] = bool(mode)


def are_deterministic_algorithms_enabled() -> bool:
    return _deterministic[0]


class Backend:
    """A kernel table plus the memory its kernels work on. ``fallback`` names a backend whose kernels serve the
    primitives this one lacks; ``context_type`` is the :class:`ExecutorContext` its executors keep; ``jit``: its
    kernels compile on first use (compile() then runs a new graph once, so its report's time includes the kernel
    compilation).

    Memory: every array a kernel of this backend reads or writes comes from :meth:`empty`, :meth:`from_host` or a
    :meth:`view` of an :meth:`arena`; :meth:`to_host` brings one back as a numpy array. The host backends (numpy,
    numba) keep plain numpy arrays, so these are allocations and identities; a device backend (cuda) overrides
    them. ``device`` names where the arrays live ("cpu", "cuda"); ``alignment`` is the byte alignment of arena
    offsets its kernels want."""

    device: str = "cpu"
    alignment: int = 64

    def __init__(self, name: str, fallback: str | None = None,
                 context_type: type[ExecutorContext] = ExecutorContext, jit: bool = False):
        self.name = name
        self.fallback = fallback
        self.context_type = context_type
        self.jit = jit
        self.kernels: dict[str, Kernel] = {}

    def register(self, *prim_names: str) -> Callable[[Kernel], Kernel]:
        """Decorator: ``@backend.register("conv2d")`` registers a kernel for one or more primitives."""

        def deco(fn: Kernel) -> Kernel:
            for n in prim_names:
                self.kernels[n] = fn
            return fn

        return deco

    def kernel(self, prim_name: str) -> Kernel:
        k = self.kernels.get(prim_name)
        if k is not None:
            return k
        if self.fallback is not None:
            return get_backend(self.fallback).kernel(prim_name)
        raise NotImplementedError(f"backend '{self.name}' has no kernel for primitive '{prim_name}'")

    def prepare(self, constants: Sequence[Any], steps: Sequence[Step] = (), *, autotune: bool = False
                ) -> ExecutorContext:
        """The state of a graph executor, made once when it is built: ``constants`` are the graph's constant
        arrays (unchanged while the executor lives), ``steps`` the kernel calls it will make (workspaces are sized
        for them here), ``autotune``: the backend may time candidate algorithms per shape."""
        ctx = self.context_type(constants, autotune=autotune)
        ctx.reserve(steps)
        return ctx

    def has_kernel(self, prim_name: str) -> bool:
        return prim_name in self.kernels

    # -- memory (host implementations; a device backend overrides all of them) --

    def empty(self, shape: Sequence[int], dtype: Any) -> Any:
        """An uninitialised array of this backend's device."""
        return np.empty(tuple(shape), dtype)

    def from_host(self, array: np.ndarray) -> Any:
        """``array`` on this backend's device (the host backends return it unchanged)."""
        return np.asarray(array)

    def to_host(self, array: Any) -> np.ndarray:
        """A numpy array with the contents of ``array`` (the host backends return it unchanged)."""
        return np.asarray(array)

    def is_native(self, array: Any) -> bool:
        """Whether ``array`` lives where this backend's kernels can read it."""
        return isinstance(array, np.ndarray)

    def arena(self, nbytes: int) -> Any:
        """One byte buffer of at least ``nbytes``, whose start is aligned to :attr:`alignment`."""
        raw = np.empty(max(int(nbytes), 1) + self.alignment, np.uint8)
        start = -raw.ctypes.data % self.alignment
        return raw[start:start + max(int(nbytes), 1)]

    def view(self, arena: Any, offset: int, shape: Sequence[int], dtype: Any) -> Any:
        """The array of ``shape`` and ``dtype`` that starts ``offset`` bytes into ``arena``."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return arena[offset:offset + n].view(dtype).reshape(tuple(shape))

    def copy_(self, dst: Any, src: Any) -> None:
        """Write the contents of ``src`` (an array of this backend) into ``dst`` (one of the same shape)."""
        np.copyto(dst, src)

    def synchronize(self) -> None:
        """Wait for every kernel launched so far (host kernels finish before they return)."""

    # -- running a primitive: the one path from a shape rule to a kernel call --

    def run(self, prim: Any, arrays: Sequence[Any], attrs: dict[str, Any], *, out_specs: Sequence[Spec] | None = None,
            kernel: Kernel | None = None, launch: Callable[..., None] | None = None) -> tuple:
        """Run primitive ``prim`` on this backend's ``arrays`` with ``attrs``: allocate its outputs (from
        ``out_specs``, else its shape rule) with :meth:`empty` and call ``kernel`` (default: this backend's kernel
        for ``prim``), through ``launch(kernel, *arrays, out=..., **attrs)`` when given (the profiler's hook; its
        first parameter must be positional-only, as attrs may be named ``kernel``).
        Returns the outputs as a tuple, also for single-result primitives."""
        if out_specs is None:
            out_specs = prim.abstract_eval(*(Spec(a.shape, a.dtype) for a in arrays), **attrs)
        empty = self.empty
        outs = tuple([empty(s.shape, s.dtype) for s in out_specs])
        if kernel is None:
            kernel = self.kernel(prim.name)
        out = outs if prim.multiple_results else outs[0]
        if launch is None:
            kernel(*arrays, out=out, **attrs)
        else:
            launch(kernel, *arrays, out=out, **attrs)
        return outs

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, {len(self.kernels)} kernels)"


def specialize(kernel: Kernel, inputs: Sequence[Any], out: Any, attrs: dict[str, Any]) -> Callable[[], None]:
    """``kernel(*inputs, out=out, **attrs)`` as a zero-argument call, for an executor that calls it again and again
    on these same arrays (an arena's views). A kernel may offer ``kernel.specialize(*inputs, out=..., **attrs)``,
    which does once the work that depends only on the arrays' shapes, strides, dtypes and identity (never their
    contents, which change between calls): operand views, algorithm choice, argument tuples for its compiled
    loops. It returns the call, or None where it has nothing to save; then the call is a plain partial."""
    special = getattr(kernel, "specialize", None)
    if special is not None:
        call = special(*inputs, out=out, **attrs)
        if call is not None:
            return call
    return functools.partial(kernel, *inputs, out=out, **attrs)


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    _BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str | Backend) -> Backend:
    if isinstance(name, Backend):
        return name
    if name not in _BACKENDS:
        try:
            module = importlib.import_module(f"backends.{name}")
        except ImportError as e:
            raise ValueError(f"unknown or unavailable backend {name!r}: {e}") from e
        if name not in _BACKENDS:
            # a backend package that imports but cannot run here says why in UNAVAILABLE
            why = getattr(module, "UNAVAILABLE", f"module backends.{name} did not register a backend named {name!r}")
            raise ValueError(f"unavailable backend {name!r}: {why}")
    return _BACKENDS[name]


_DEVICE_NAMES = ("cpu", "cuda", "mps", "meta")  # what PyTorch code passes to .to(); mps and meta are refused


def is_device_name(v: Any) -> bool:
    """Whether ``v`` names a device ("cpu", "cuda:0", a registered backend's device) rather than a dtype."""
    return isinstance(v, str) and (v.split(":")[0] in _DEVICE_NAMES or any(b.device == v for b in _BACKENDS.values()))


def device_of(array: Any) -> str | None:
    """The device an array lives on: "cpu" for numpy arrays, else the ``device`` of a registered backend that
    holds it natively; None for anything that is not an array of some backend."""
    if isinstance(array, np.ndarray):
        return "cpu"
    for b in _BACKENDS.values():
        if b.device != "cpu" and b.is_native(array):
            return b.device
    return None


def backend_for_device(device: str) -> Backend:
    """The backend eager ops run on for arrays of ``device``: the active backend if it is that device's, else
    the registered backend named like the device ("cuda"), else the first registered backend of that device."""
    device = device.split(":")[0]
    active = active_backend()
    if active.device == device:
        return active
    if device == "cpu":
        return get_backend(_default_backend_name())
    if device in _BACKENDS and _BACKENDS[device].device == device:
        return _BACKENDS[device]
    for b in _BACKENDS.values():
        if b.device == device:
            return b
    try:
        b = get_backend(device)  # imports backends.<device> (cuda) on first use
    except ValueError as e:
        raise ValueError(f"device {device!r} is not available: {e}") from None
    if b.device != device:
        raise ValueError(f"unknown device {device!r} (backend {b.name!r} keeps its arrays on {b.device!r})")
    return b


def dispatch(op: str, arrays: Sequence[Any]) -> tuple[Backend, Sequence[Any]]:
    """The backend an eager op runs on, and its input arrays as that backend's kernels read them: the active
    backend when it holds them all, else the backend of the device they are on. A 0-d host array (a Python
    scalar lifted to a tensor) goes to that device with them, as PyTorch lets CPU scalars mix with CUDA tensors;
    any other mix of devices is an error naming them."""
    active = _active if _active is not None else active_backend()
    if active.device == "cpu":  # the common case, without a method call per input (subclasses take the long way)
        for a in arrays:
            if a.__class__ is not np.ndarray:
                break
        else:
            return active, arrays
    elif all(active.is_native(a) for a in arrays):
        return active, arrays
    devices = [device_of(a) for a in arrays]
    placed = {d for d, a in zip(devices, arrays) if not (d == "cpu" and a.ndim == 0)}
    if len(placed) > 1:
        raise RuntimeError(f"{op}: expected all tensors on one device, got {' and '.join(sorted(placed))} "
                           f"(move them with .to(device) first)")
    be = backend_for_device(placed.pop() if placed else "cpu")
    return be, tuple(a if d != "cpu" or be.device == "cpu" else be.from_host(a) for d, a in zip(devices, arrays))


def copy_into(dst: Any, src: Any) -> None:
    """Write array ``src`` into array ``dst`` in place (same shape, same device; a host ``src`` goes to a device
    ``dst`` through its backend)."""
    if isinstance(dst, np.ndarray):
        np.copyto(dst, to_host(src))
        return
    be = backend_for_device(device_of(dst) or "cpu")
    be.copy_(dst, src if be.is_native(src) else be.from_host(np.asarray(src)))


def to_host(array: Any) -> np.ndarray:
    """A numpy array with the contents of ``array``, wherever it lives (numpy arrays are returned as they are)."""
    if isinstance(array, np.ndarray):
        return array
    dev = device_of(array)
    if dev is None:
        return np.asarray(array)
    return backend_for_device(dev).to_host(array)


def available_backends() -> list[str]:
    """Backends that import on this machine (cuda only where a GPU or the simulator is present)."""
    out = []
    for name in ("numpy", "numba", "cuda"):
        try:
            get_backend(name)
            out.append(name)
        except ValueError:
            pass
    return out


def _default_backend_name() -> str:
    env = os.environ.get("CONVGRAPH_BACKEND")
    if env:
        return env
    try:
        get_backend("numba")
        return "numba"
    except ValueError:
        return "numpy"


_active: Backend | None = None


def active_backend() -> Backend:
    global _active
    if _active is None:
        _active = get_backend(_default_backend_name())
    return _active


def set_backend(name: str | Backend) -> Backend:
    """Select the backend eager ops run on (``"numpy"`` reference, ``"numba"``, ``"cuda"``)."""
    global _active
    _active = get_backend(name)
    return _active


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """``with use_backend("numpy"): ...`` runs eager ops on that backend, then restores the previous one."""
    global _active
    prev = active_backend()
    _active = get_backend(name)
    try:
        yield _active
    finally:
        _active = prev
