"""Eager Tensors: arrays of a backend (numpy arrays on the host, device arrays on a GPU) that run primitives
through the backend of their device and record a tape."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from .backend import backend_for_device, device_of, to_host
from .primitive import Spec
from .tensor_methods import TensorMethods


class Node:
    """One recorded primitive call on the tape: what ran, on what, with which attributes.

    Outputs are held weakly (a Tensor already holds its Node; a strong back-reference would make every
    activation a reference cycle only the cyclic GC frees) plus their arrays strongly, which is what the
    vjp rules of e.g. ``exp`` and ``softmax`` need.
    """

    __slots__ = ("prim", "inputs", "attrs", "_out_refs", "_out_data", "out_specs", "module", "versions", "released",
                 "__weakref__")

    def __init__(self, prim, inputs: tuple[Tensor, ...], attrs: dict[str, Any], outputs: tuple[Tensor, ...]):
        self.prim = prim
        self.inputs = inputs
        self.attrs = attrs
        self._out_refs = tuple(weakref.ref(o) for o in outputs)
        self._out_data = tuple(o._data for o in outputs)
        self.out_specs = tuple(o.spec for o in outputs)
        self.module = None  # the layer whose forward made this node (set only while profiling)
        self.versions = tuple(t._version for t in inputs)  # an in-place write since then makes backward refuse
        self.released = False  # set by a backward() without retain_graph: a second one through here is an error

    def outputs(self) -> tuple[Tensor, ...]:
        outs = []
        for ref, data in zip(self._out_refs, self._out_data):
            t = ref()
            outs.append(t if t is not None else Tensor(data))
        return tuple(outs)


_DEFAULT_DTYPE = np.dtype(np.float32)
# writes to any tensor's data (each bumps that tensor's version too): a compiled module that saw this count when it
# last checked its folded weights' versions need not check them again (writes()).
_WRITES = [0]


def writes() -> int:
    """How many writes the engine has recorded to any tensor's data (``Tensor.version`` bumps) in this process."""
    return _WRITES[0]


# fn(what, tensor), told when Python reads a tensor's value; engine.autograd.observe_reads registers them.
read_observers: list[Any] = []


def _notify_read(what: str, t: Tensor) -> None:
    for fn in tuple(read_observers):
        fn(what, t)


class Tensor(TensorMethods):
    """An n-d array with reverse-mode autodiff. float32 by default; float64 for gradient checks.

    Operators and ops as methods (``x.relu()``, ``a @ b``, ``loss.backward()``) come from
    :class:`engine.tensor_methods.TensorMethods`; this class holds the data and the autograd record.

    ``_data`` is ``None`` for abstract tensors (shape-only tracing, see :func:`engine.autograd.abstract`).
    """

    __slots__ = ("_data", "_spec", "requires_grad", "grad", "_node", "_index", "name", "_version", "__weakref__")
    __array_priority__ = 1000  # make `ndarray + Tensor` defer to Tensor.__radd__

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False, name: str | None = None):
        if isinstance(data, Tensor):
            data = data._data
        if not isinstance(data, np.ndarray) and device_of(data) not in (None, "cpu"):
            self._init_device(data, dtype, requires_grad, name)  # a device backend's array: kept where it is
            return
        arr = np.asarray(data)
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        elif arr.dtype.kind == "f" and arr.dtype != np.float64 and arr.dtype != np.float32:
            arr = arr.astype(_DEFAULT_DTYPE)
        elif arr.dtype == np.float64 and not isinstance(data, np.ndarray):
            arr = arr.astype(_DEFAULT_DTYPE)  # Python floats/lists become float32, like torch.tensor
        elif arr.dtype.kind in "iu" and requires_grad:
            arr = arr.astype(_DEFAULT_DTYPE)
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(f"Tensor: only floating-point tensors can require grad (got dtype {arr.dtype})")
        self._data = arr
        self._spec = Spec(arr.shape, arr.dtype)
        self.requires_grad = requires_grad
        self.grad: Tensor | None = None
        self._node: Node | None = None
        self._index = 0
        self.name = name
        self._version = 0

    def _init_device(self, data: Any, dtype: Any, requires_grad: bool, name: str | None) -> None:
        if dtype is not None and np.dtype(dtype) != data.dtype:
            raise TypeError(f"Tensor: cannot convert a {device_of(data)} array of dtype {data.dtype} to "
                            f"{np.dtype(dtype)} while wrapping it; wrap it first, then call .to(dtype)")
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"Tensor: only floating-point tensors can require grad (got dtype {data.dtype})")
        self._data = data
        self._spec = Spec(data.shape, data.dtype)
        self.requires_grad = requires_grad
        self.grad = None
        self._node = None
        self._index = 0
        self.name = name
        self._version = 0

    @classmethod
    def _make(cls, data: np.ndarray | None, spec: Spec) -> Tensor:
        t = cls.__new__(cls)
        t._data = data
        t._spec = spec
        t.requires_grad = False
        t.grad = None
        t._node = None
        t._index = 0
        t.name = None
        t._version = 0
        return t

    # --- array-like properties -------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            raise RuntimeError(f"abstract tensor {self._spec} has no data (it was produced while tracing shapes)")
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        value = self._placed(value.data if isinstance(value, Tensor) else value)
        if value.shape != self._spec.shape or value.dtype != self._spec.dtype:
            raise ValueError(f"Tensor.data: new value {value.dtype}{list(value.shape)} must match {self._spec}")
        self._data = value
        self._version += 1
        _WRITES[0] += 1

    @property
    def version(self) -> int:
        """Bumped by every write this engine makes to the tensor's data (``.data =``, optimizer steps, state
        updates, ``load_state_dict``); compiled modules compare it to notice changed weights."""
        return self._version

    def bump_version(self) -> None:
        """Record an in-place write to ``.data[...]`` made outside the engine's own writers."""
        self._version += 1
        _WRITES[0] += 1

    @property
    def spec(self) -> Spec:
        return self._spec

    @property
    def shape(self) -> tuple[int, ...]:
        return self._spec.shape

    @property
    def dtype(self) -> np.dtype:
        return self._spec.dtype

    @property
    def ndim(self) -> int:
        return len(self._spec.shape)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    # --- device ----------------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        """Where the data lives: "cpu", or the device of the backend whose array it is ("cuda")."""
        if self._data is None or isinstance(self._data, np.ndarray):
            return "cpu"
        return device_of(self._data) or "cpu"

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    def _placed(self, value: Any) -> Any:
        """``value`` as an array on this tensor's device (host arrays are uploaded to a device tensor's)."""
        dev = self.device
        if dev == "cpu":
            return to_host(value) if not isinstance(value, np.ndarray) else value
        if isinstance(value, np.ndarray) or device_of(value) is None:
            return backend_for_device(dev).from_host(np.asarray(value))
        if device_of(value) != dev:
            raise RuntimeError(f"Tensor.data: cannot put a {device_of(value)} array into a tensor on {dev}")
        return value

    def new_tensor(self, data: Any, dtype: Any = None) -> Tensor:
        """torch.Tensor.new_tensor: a constant Tensor of ``data`` on this tensor's device, in this tensor's dtype
        unless ``dtype`` is given (how ops place the scalars and tables they make next to their inputs)."""
        arr = np.asarray(data, dtype=self.dtype if dtype is None else dtype)
        dev = self.device
        return Tensor(arr if dev == "cpu" else backend_for_device(dev).from_host(arr))

    def host(self) -> np.ndarray:
        """The data as a numpy array: the array itself on the host, a copy of a device tensor's data."""
        data = self.data
        return data if isinstance(data, np.ndarray) else to_host(data)

    def numpy(self) -> np.ndarray:
        """The data as a numpy array (for a device tensor a host copy: writing it does not change the tensor)."""
        return self.host()

    def cpu(self) -> Tensor:
        """This tensor on the host (itself when it already is; a device tensor's copy is a new leaf)."""
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def item(self) -> float:
        _notify_read("item()", self)
        return self.host().item()

    def tolist(self) -> Any:
        return self.host().tolist()

    def detach(self) -> Tensor:
        return Tensor._make(self._data, self._spec)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and self.dtype.kind != "f":
            raise TypeError(f"Tensor: only floating-point tensors can require grad (got dtype {self.dtype})")
        self.requires_grad = flag
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self.host(), precision=4, threshold=20) if self._data is not None else "<abstract>"
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self._node is not None:
            extra = f", grad_fn={self._node.prim.name}"
        dev = self.device if self._data is not None else "cpu"
        if dev != "cpu":
            extra = f", device='{dev}'" + extra
        return f"tensor({body}, dtype={self.dtype.name}{extra})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._data is not None and not isinstance(self._data, np.ndarray):
            raise TypeError(f"can't convert a tensor on device '{self.device}' to a numpy array implicitly; "
                            f"use .numpy() or .cpu() to copy it to host memory first")
        return self.data if dtype is None else self.data.astype(dtype)

    def __bool__(self) -> bool:
        _notify_read("bool()", self)
        return bool(self.host())

    def __float__(self) -> float:
        _notify_read("float()", self)
        return float(self.host())

    def __int__(self) -> int:
        _notify_read("int()", self)
        return int(self.host())

    def __index__(self) -> int:
        _notify_read("__index__", self)
        if self.dtype.kind not in "iub" or self._spec.size != 1:
            raise TypeError(f"only integer tensors of a single element can be converted to an index "
                            f"(got {self.dtype.name}{list(self.shape)})")
        return int(self.host())

    def __hash__(self) -> int:
        return id(self)

