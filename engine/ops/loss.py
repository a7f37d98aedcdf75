"""Losses: cross_entropy, nll_loss, mse_loss -- composites of primitives with PyTorch's exact semantics.

Class-index losses turn the targets into a constant coefficient tensor ``coef`` shaped like the input
(class weight at the target class, zero for ignored positions, plus the label-smoothing spread), so the loss is
``-sum(log_probs * coef, class axis)`` followed by the reduction: one mul and one sum on the tape, with the
normalizer of a weighted mean (the summed target weights) folded in as a constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import bind
from ..primitive import OTHER, Spec, fail, primitive
from ..tensor import Tensor
from ._util import lift
from .activation import log_softmax
from .reduce import mean as _mean
from .reduce import sum as _sum
from .shape import reshape

__all__ = ["cross_entropy", "nll_loss", "mse_loss"]

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS} (got {reduction!r})")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    return _sum(loss) if reduction == "sum" else _mean(loss)


def _class_weights(op: str, weight: Any, c: int, like: Tensor) -> np.ndarray:
    if weight is None:
        return np.ones((c,), like.dtype)
    w = np.asarray(weight.data if isinstance(weight, Tensor) else weight, dtype=like.dtype)
    if w.shape != (c,):
        fail(op, "weight must have shape (C,) with C = number of classes", weight=list(w.shape), C=c)
    return w


def _check_class_target_shape(op: str, input: Tensor, t: Any) -> None:  # noqa: A002
    """Validate the shape of integer class targets against ``input`` (C,), (N, C) or (N, C, d1, ...)."""
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices (got dtype {t.dtype}); "
                        f"for class probabilities use cross_entropy with a float target shaped like the input")
    if input.ndim < 1:
        fail(op, "input must have at least 1 dim (C,), (N, C) or (N, C, d1, ...)", input=list(input.shape))
    expected = () if input.ndim == 1 else (input.shape[0],) + input.shape[2:]
    if len(t.shape) != len(expected):
        fail(op, "target must have one dim less than the input (no class axis)", input=list(input.shape),
             target=list(t.shape))
    if input.ndim >= 2 and t.shape[0] != input.shape[0]:
        fail(op, f"input batch size ({input.shape[0]}) must match target batch size ({t.shape[0]})",
             input=list(input.shape), target=list(t.shape))
    if tuple(t.shape) != expected:
        fail(op, "target shape must equal the input shape without the class axis", input=list(input.shape),
             target=list(t.shape), expected=list(expected))


# class_coef(target; classes, weight, ignore_index, label_smoothing, dtype, op) -> (coef, denom): the constant
# coefficients of a class-index loss as a primitive of the targets, so targets can be runtime inputs of a graph.
class_coef_p = primitive("class_coef", OTHER, multiple_results=True)


@class_coef_p.def_shape
def _class_coef_shape(t: Spec, classes: int, weight: tuple, ignore_index: int, label_smoothing: float, dtype: str,
                      op: str) -> tuple[Spec, Spec]:
    if t.dtype.kind not in "iu":
        fail(op, "target must hold integer class indices", dtype=t.dtype.name)
    shape = (t.shape[0], classes, *t.shape[1:]) if t.shape else (1, classes)
    return Spec(shape, dtype), Spec((), dtype)


def class_coefficients(t: np.ndarray, classes: int, weight: tuple, ignore_index: int, label_smoothing: float,
                       dtype: str, op: str) -> tuple[np.ndarray, np.ndarray]:
    """``coef`` (class weight at the target class, zero at ignored positions, plus the label-smoothing spread;
    layout (N, C, d1, ...)) and ``denom`` (the summed weights of the counted targets). Range errors name the op."""
    dt = np.dtype(dtype)
    t = t.reshape(1) if t.ndim == 0 else t
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= classes))
    if bad.any():
        v = int(t[bad].flat[0])
        raise IndexError(f"{op}: target class {v} is out of range for {classes} classes (valid: 0..{classes - 1}, "
                         f"or ignore_index={ignore_index})")
    w = np.asarray(weight, dt) if weight else np.ones((classes,), dt)
    safe_t = np.where(valid, t, 0)
    w_t = np.where(valid, w[safe_t], 0).astype(dt)  # weight of each position's target class
    coef = np.eye(classes, dtype=dt)[safe_t] * w_t[..., None] * dt.type(1.0 - label_smoothing)
    if label_smoothing > 0.0:
        coef += valid[..., None] * w * dt.type(label_smoothing / classes)
    return np.ascontiguousarray(np.moveaxis(coef, -1, 1)), np.asarray(np.sum(w_t, dtype=np.float64), dt)


def _nll_from_log_probs(op: str, logp: Tensor, target: Any, weight: Any, reduction: str, ignore_index: int,
                        label_smoothing: float = 0.0) -> Tensor:
    _check_reduction(op, reduction)
    t = target if isinstance(target, Tensor) else Tensor(np.asarray(target))
    _check_class_target_shape(op, logp, t)
    unbatched = logp.ndim == 1
    if unbatched:  # (C,) with a scalar target: treat as a batch of one
        logp = reshape(logp, (1, logp.shape[0]))
    c = logp.shape[1]
    w = tuple(float(v) for v in _class_weights(op, weight, c, logp)) if weight is not None else ()
    coef, denom = bind(class_coef_p, t, classes=c, weight=w, ignore_index=ignore_index,
                       label_smoothing=float(label_smoothing), dtype=logp.dtype.name, op=op)
    loss = -_sum(logp * coef, 1)
    if reduction == "none":
        return _squeeze_unbatched(loss, unbatched)
    total = _sum(loss)
    if reduction == "sum":
        return total
    return total / denom  # weighted mean: by the summed weights of the counted targets (0/0 -> nan, as PyTorch)


def _squeeze_unbatched(loss: Tensor, unbatched: bool) -> Tensor:
    return reshape(loss, ()) if unbatched else loss


def nll_loss(input: Tensor, target: Any, weight: Any = None, reduction: str = "mean",  # noqa: A002
             ignore_index: int = -100) -> Tensor:
    """torch.nn.functional.nll_loss: ``input`` holds log-probabilities (C,), (N, C) or (N, C, d1, ...) and
    ``target`` integer class indices (numpy array or int Tensor). A weighted mean divides by the summed
    weights of the non-ignored targets. ``weight`` is a constant (no gradient flows to it, as in PyTorch)."""
    return _nll_from_log_probs("nll_loss", input, target, weight, reduction, int(ignore_index))


def cross_entropy(input: Tensor, target: Any, weight: Any = None, reduction: str = "mean",  # noqa: A002
                  label_smoothing: float = 0.0, ignore_index: int = -100) -> Tensor:
    """torch.nn.functional.cross_entropy = nll_loss(log_softmax(input, class axis)), with label smoothing.

    ``target`` is integer class indices, or class probabilities (a float array/Tensor shaped like ``input``).
    With label smoothing ``eps`` the loss is ``(1 - eps) * nll + eps / C * sum_c(-w_c * log p_c)``, both parts
    normalized by the same summed target weights under ``reduction="mean"`` (PyTorch's rule).
    """
    op = "cross_entropy"
    _check_reduction(op, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1] (got {label_smoothing})")
    if input.ndim < 1:
        fail(op, "input must have at least 1 dim (C,), (N, C) or (N, C, d1, ...)", input=list(input.shape))
    logp = log_softmax(input, 0 if input.ndim == 1 else 1)
    if _is_float(target):
        return _soft_cross_entropy(op, logp, target, weight, reduction, float(label_smoothing))
    return _nll_from_log_probs(op, logp, target, weight, reduction, int(ignore_index), float(label_smoothing))


def _is_float(target: Any) -> bool:
    if isinstance(target, Tensor):
        return target.dtype.kind == "f"
    return np.asarray(target).dtype.kind == "f"


def _soft_cross_entropy(op: str, logp: Tensor, target: Any, weight: Any, reduction: str,
                        label_smoothing: float) -> Tensor:
    """Class-probability targets: ``-sum_c(w_c * p_c * log q_c)``; the mean is over positions (not weights)."""
    p = lift(target, logp)
    if p.shape != logp.shape:
        fail(op, "probability targets must have the input's shape", input=list(logp.shape), target=list(p.shape))
    class_axis = 0 if logp.ndim == 1 else 1
    c = logp.shape[class_axis]
    if label_smoothing > 0.0:
        p = p * (1.0 - label_smoothing) + label_smoothing / c
    prod = logp * p
    if weight is not None:
        w = _class_weights(op, weight, c, logp)
        prod = prod * Tensor(w.reshape((c,) + (1,) * (logp.ndim - 1 - class_axis)))
    loss = -_sum(prod, class_axis)
    return _reduce(loss, reduction)


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """torch.nn.functional.mse_loss: ``(input - target) ** 2`` reduced; shapes broadcast as in PyTorch."""
    _check_reduction("mse_loss", reduction)
    d = input - lift(target, input)
    return _reduce(d * d, reduction)
