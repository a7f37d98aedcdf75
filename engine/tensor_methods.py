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

    # --- autograd ------------------------------------------------------------------------------------
    def backward(self, grad: Tensor | np.ndarray | None = None, retain_graph: bool = True) -> None:
        from .autograd import backward

        backward(self, grad)

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

    def __gt__(self, other: Any) -> Tensor:
        return _F().greater(self, other)

    def __lt__(self, other: Any) -> Tensor:
        return _F().greater(other, self)

    def __getitem__(self, index: Any) -> Tensor:
        return _F().getitem(self, index)

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

    # --- reductions ----------------------------------------------------------------------------------------
    def sum(self, dim: Dim = None, keepdims: bool = False) -> Tensor:
        return _F().sum(self, dim, keepdims)

    def mean(self, dim: Dim = None, keepdims: bool = False) -> Tensor:
        return _F().mean(self, dim, keepdims)

    def var(self, dim: Dim = None, keepdims: bool = False, unbiased: bool = True) -> Tensor:
        return _F().var(self, dim, keepdims, unbiased)

    def max(self, dim: Dim = None, keepdims: bool = False) -> Tensor:
        return _F().max(self, dim, keepdims)

    def amax(self, dim: Dim = None, keepdims: bool = False) -> Tensor:
        return _F().amax(self, dim, keepdims)

    def argmax(self, dim: int | None = None, keepdims: bool = False) -> Tensor:
        return _F().argmax(self, dim, keepdims)

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

    def squeeze(self, dim: int) -> Tensor:
        return _F().squeeze(self, dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return _F().unsqueeze(self, dim)

    def broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
        return _F().broadcast_to(self, shape)

    def expand(self, shape: tuple[int, ...]) -> Tensor:
        return _F().broadcast_to(self, shape)

    # --- dtype -----------------------------------------------------------------------------------------------
    def astype(self, dtype: Any) -> Tensor:
        return _F().astype(self, dtype)

    def float(self) -> Tensor:
        return _F().astype(self, "float32")

    def double(self) -> Tensor:
        return _F().astype(self, "float64")
