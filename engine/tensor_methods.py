"""Tensor's operators and methods, each a thin call of its one definition in engine.functional (or autograd).

``Tensor`` (engine/tensor.py) inherits :class:`TensorMethods`; add a new Tensor method here, next to its family,
as a ``def`` that calls the functional op. The op modules construct Tensors, so this module cannot import them
before ``Tensor`` exists: ``_F()`` imports engine.functional when a method first runs. It is the only deferred
import of an engine module (tests/null/test_import_graph.py checks that).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .tensor import Tensor

Dim = int | tuple[int, ...] | None


_functional: ModuleType | None = None


def _F() -> ModuleType:  # noqa: N802 - reads like the usual ``F`` alias
    global _functional
    if _functional is None:
        from . import functional

        _functional = functional
    return _functional


class TensorMethods:
    """The PyTorch-style method vocabulary of :class:`engine.Tensor`."""

    __slots__ = ()

    # --- size and autograd ---------------------------------------------------------------------------------
    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        """torch.Tensor.size: the shape, or the length of axis ``dim``. (The element count is :meth:`numel`.)"""
        shape = self.shape
        if dim is None:
            return shape
        if not -len(shape) <= dim < max(len(shape), 1):
            raise IndexError(f"size: dim {dim} is out of range for a tensor of {len(shape)} dims")
        return shape[dim] if shape else 1

    def numel(self) -> int:
        return self.spec.size

    def dim(self) -> int:
        return len(self.shape)

    def backward(self, grad: Tensor | np.ndarray | None = None, retain_graph: bool | None = None) -> None:
        """Accumulate gradients into the leaves; the graph is released unless ``retain_graph=True``."""
        from .autograd import backward

        backward(self, grad, retain_graph=bool(retain_graph))

    # --- arithmetic operators (the reflected forms swap the operands) ----------------------------------
    def __add__(self, other: Any) -> Tensor:
        return _F().add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return _F().add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return _F().sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return _F().sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return _F().mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return _F().mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return _F().div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return _F().div(other, self)

    def __pow__(self, other: Any) -> Tensor:
        return _F().pow(self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return _F().pow(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return _F().matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return _F().matmul(other, self)

    def __neg__(self) -> Tensor:
        return _F().neg(self)

    def __abs__(self) -> Tensor:
        return _F().abs(self)

    # --- comparisons: element-wise, bool tensors (hashing stays by identity: Tensor.__hash__) -------------------
    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _F().equal(self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _F().not_equal(self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _F().greater(self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _F().greater_equal(self, other)

    def __lt__(self, other: Any) -> Tensor:
        return _F().less(self, other)

    def __le__(self, other: Any) -> Tensor:
        return _F().less_equal(self, other)

    def eq(self, other: Any) -> Tensor:
        return _F().equal(self, other)

    def ne(self, other: Any) -> Tensor:
        return _F().not_equal(self, other)

    def gt(self, other: Any) -> Tensor:
        return _F().greater(self, other)

    def ge(self, other: Any) -> Tensor:
        return _F().greater_equal(self, other)

    def lt(self, other: Any) -> Tensor:
        return _F().less(self, other)

    def le(self, other: Any) -> Tensor:
        return _F().less_equal(self, other)

    # --- indexing ----------------------------------------------------------------------------------------------
    def __getitem__(self, index: Any) -> Tensor:
        return _F().getitem(self, index)

    def __setitem__(self, index: Any, value: Any) -> None:
        _F().setitem(self, index, value)

    # --- in place (engine/ops/inplace.py: leaves that require grad refuse; plain tensors are written in place) ----
    def __iadd__(self, other: Any) -> Tensor:
        return _F().inplace_operator(self, "+=", _F().add, other)

    def __isub__(self, other: Any) -> Tensor:
        return _F().inplace_operator(self, "-=", _F().sub, other)

    def __imul__(self, other: Any) -> Tensor:
        return _F().inplace_operator(self, "*=", _F().mul, other)

    def __itruediv__(self, other: Any) -> Tensor:
        return _F().inplace_operator(self, "/=", _F().div, other)

    def add_(self, other: Any, alpha: float = 1) -> Tensor:
        return _F().inplace(self, "add_", _F().add, other if alpha == 1 else other * alpha)

    def sub_(self, other: Any, alpha: float = 1) -> Tensor:
        return _F().inplace(self, "sub_", _F().sub, other if alpha == 1 else other * alpha)

    def mul_(self, other: Any) -> Tensor:
        return _F().inplace(self, "mul_", _F().mul, other)

    def div_(self, other: Any) -> Tensor:
        return _F().inplace(self, "div_", _F().div, other)

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 - the PyTorch names
        return _F().inplace(self, "clamp_", _F().clamp, min, max)

    def fill_(self, value: Any) -> Tensor:
        return _F().inplace(self, "fill_", _F().full_like, value)

    def zero_(self) -> Tensor:
        return _F().inplace(self, "zero_", _F().full_like, 0)

    def copy_(self, src: Any) -> Tensor:
        return _F().inplace(self, "copy_", _F().copy_to, src)

    # --- elementwise math --------------------------------------------------------------------------------
    def exp(self) -> Tensor:
        return _F().exp(self)

    def log(self) -> Tensor:
        return _F().log(self)

    def sqrt(self) -> Tensor:
        return _F().sqrt(self)

    def abs(self) -> Tensor:
        return _F().abs(self)

    def pow(self, exponent: Any) -> Tensor:
        return _F().pow(self, exponent)

    def maximum(self, other: Any) -> Tensor:
        return _F().maximum(self, other)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 - the PyTorch names
        return _F().clamp(self, min, max)

    def matmul(self, other: Any) -> Tensor:
        return _F().matmul(self, other)

    # --- activations ---------------------------------------------------------------------------------------
    def relu(self) -> Tensor:
        return _F().relu(self)

    def sigmoid(self) -> Tensor:
        return _F().sigmoid(self)

    def tanh(self) -> Tensor:
        return _F().tanh(self)

    def silu(self) -> Tensor:
        return _F().silu(self)

    def softmax(self, dim: int = -1) -> Tensor:
        return _F().softmax(self, dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        return _F().log_softmax(self, dim)

    # --- reductions (``keepdim`` as in PyTorch; numpy's ``keepdims`` is accepted too) ---------------------------
    def sum(self, dim: Dim = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
        return _F().sum(self, dim, keepdim, keepdims=keepdims)

    def mean(self, dim: Dim = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
        return _F().mean(self, dim, keepdim, keepdims=keepdims)

    def var(self, dim: Dim = None, keepdim: bool = False, unbiased: bool = True, *,
            keepdims: bool | None = None) -> Tensor:
        return _F().var(self, dim, keepdim, unbiased, keepdims=keepdims)

    def max(self, dim: int | None = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Any:
        """The largest value, or ``(values, indices)`` along ``dim`` (as torch.max)."""
        return _F().max(self, dim, keepdim, keepdims=keepdims)

    def min(self, dim: int | None = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Any:
        """The smallest value, or ``(values, indices)`` along ``dim`` (as torch.min)."""
        return _F().min(self, dim, keepdim, keepdims=keepdims)

    def amax(self, dim: Dim = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
        return _F().amax(self, dim, keepdim, keepdims=keepdims)

    def amin(self, dim: Dim = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
        return _F().amin(self, dim, keepdim, keepdims=keepdims)

    def argmax(self, dim: int | None = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
        return _F().argmax(self, dim, keepdim, keepdims=keepdims)

    def argmin(self, dim: int | None = None, keepdim: bool = False, *, keepdims: bool | None = None) -> Tensor:
        return _F().argmin(self, dim, keepdim, keepdims=keepdims)

    # --- shape -----------------------------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        return _F().reshape(self, *shape)

    def view(self, *shape: Any) -> Tensor:
        return _F().reshape(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return _F().flatten(self, start_dim, end_dim)

    def permute(self, *perm: Any) -> Tensor:
        return _F().permute(self, *perm)

    def transpose(self, dim0: int = 0, dim1: int = 1) -> Tensor:
        return _F().transpose(self, dim0, dim1)

    @property
    def T(self) -> Tensor:  # noqa: N802 - the PyTorch name
        return _F().permute(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> Tensor:  # noqa: N802 - the PyTorch name
        """The last two axes swapped (a batch of matrices transposed)."""
        if self.ndim < 2:
            raise RuntimeError(f"mT: tensor must have at least 2 dims (got {self.ndim})")
        return _F().transpose(self, -2, -1)

    def t(self) -> Tensor:
        """torch.Tensor.t: a 2-D tensor transposed; 0-D and 1-D tensors as they are."""
        if self.ndim > 2:
            raise RuntimeError(f"t: expects a tensor with <= 2 dims, but it has {self.ndim}; use transpose() or mT")
        return self if self.ndim < 2 else _F().transpose(self, 0, 1)

    def flip(self, dims: Any) -> Tensor:
        return _F().flip(self, dims)

    def squeeze(self, dim: int) -> Tensor:
        return _F().squeeze(self, dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return _F().unsqueeze(self, dim)

    def broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
        return _F().broadcast_to(self, shape)

    def expand(self, shape: tuple[int, ...]) -> Tensor:
        return _F().broadcast_to(self, shape)

    # --- dtype and device ---------------------------------------------------------------------------------------
    def astype(self, dtype: Any) -> Tensor:
        return _F().astype(self, dtype)

    def float(self) -> Tensor:
        return _F().astype(self, "float32")

    def double(self) -> Tensor:
        return _F().astype(self, "float64")

    def long(self) -> Tensor:
        return _F().astype(self, "int64")

    def int(self) -> Tensor:
        return _F().astype(self, "int32")

    def bool(self) -> Tensor:
        return _F().astype(self, "bool")

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """torch.Tensor.to: ``to(dtype)``, ``to(other_tensor)`` (its dtype and device), ``to("cuda")``,
        ``to("cpu", dtype)``, ``to(device=...)``."""
        return _F().to(self, *args, **kwargs)

    def type(self, dtype: Any = None) -> Any:
        """With no argument the type name (``"engine.FloatTensor"``, as torch's); else :meth:`to` that dtype."""
        return _F().type_name(self) if dtype is None else _F().to(self, dtype)

    def clone(self) -> Tensor:
        """A copy with its own data; gradients flow back to this tensor, as torch.clone."""
        return _F().clone(self)
