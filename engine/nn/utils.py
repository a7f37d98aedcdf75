"""torch.nn.utils: gradient clipping over the ``.grad`` of parameters (no autograd: it edits gradients)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]


def _with_grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def _norm(a: np.ndarray, norm_type: float) -> float:
    a = np.abs(a.astype(np.float64, copy=False)).reshape(-1)
    if a.size == 0:
        return 0.0
    if norm_type == math.inf:
        return float(a.max())
    if norm_type == -math.inf:
        return float(a.min())
    if norm_type == 0:
        return float(np.count_nonzero(a))
    return float(np.sum(a ** norm_type) ** (1.0 / norm_type))


def _tensor_norm(t: Tensor, norm_type: float) -> float:
    """:func:`_norm` of a tensor's data; on a device through primitives there, with one scalar read back."""
    if isinstance(t.data, np.ndarray):
        return _norm(t.data, norm_type)
    if t.numel() == 0:
        return 0.0
    with no_grad():
        a = t.detach().astype(np.float64).abs()
        if norm_type == math.inf:
            return a.amax().item()
        if norm_type == -math.inf:
            return a.amin().item()
        if norm_type == 0:
            return (a != 0).astype(np.float64).sum().item()
        return float((a ** norm_type).sum().item() ** (1.0 / norm_type))


def _scaled(g: Tensor, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to the gradient's data: numpy on the host, primitives on a device (same dtype)."""
    if isinstance(g.data, np.ndarray):
        return fn(g.data).astype(g.dtype, copy=False)
    with no_grad():
        return fn(g.detach())._data


def get_total_norm(tensors: Tensor | Iterable[Tensor], norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> Tensor:
    """The ``norm_type`` norm of the norms of ``tensors`` (= the norm of all their elements together)."""
    ts = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    norm_type = float(norm_type)
    if not ts:
        return Tensor(np.array(0.0, np.float32))
    dtype = np.result_type(*(t.dtype for t in ts))
    total = _norm(np.array([_tensor_norm(t, norm_type) for t in ts]), norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is non-finite "
                           f"({total}), so it cannot clip them; set error_if_nonfinite=False to skip this check")
    return Tensor(np.array(total, dtype))


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """torch.nn.utils.clip_grad_norm_: scale every gradient by ``min(1, max_norm / (total_norm + 1e-6))`` in
    place and return the total norm before clipping (a scalar Tensor). Parameters without ``.grad`` are skipped;
    ``norm_type`` may be ``inf``. ``foreach`` is accepted for compatibility."""
    params = _with_grads(parameters)
    if not params:
        return Tensor(np.array(0.0, np.float32))
    total = get_total_norm([p.grad for p in params], norm_type, error_if_nonfinite)
    coef = min(float(max_norm) / (float(total) + 1e-6), 1.0)  # torch clamps the coefficient to 1
    for p in params:
        scale = p.grad.dtype.type(coef)
        with np.errstate(invalid="ignore"):  # an infinite norm scales by 0: inf * 0 = nan, as in torch
            p.grad.data = _scaled(p.grad, lambda g, s=scale: g * s)
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None) -> None:
    """torch.nn.utils.clip_grad_value_: clamp every gradient to ``[-clip_value, clip_value]`` in place."""
    c = float(clip_value)
    for p in _with_grads(parameters):
        p.grad.data = _scaled(p.grad, lambda g: g.clip(-c, c) if isinstance(g, np.ndarray) else g.clamp(-c, c))
