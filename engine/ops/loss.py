"""Losses: cross_entropy, nll_loss, mse_loss, binary_cross_entropy(_with_logits), l1_loss, smooth_l1_loss,
huber_loss, kl_div -- composites of primitives with PyTorch's exact semantics.

Class-index losses turn the targets into a constant coefficient tensor ``coef`` shaped like the input
(class weight at the target class, zero for ignored positions, plus the label-smoothing spread), so the loss is
``-sum(log_probs * coef, class axis)`` followed by the reduction: one mul and one sum on the tape, with the
normalizer of a weighted mean (the summed target weights) folded in as a constant.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..autograd import bind
from ..primitive import OTHER, Spec, fail, primitive
from ..tensor import Tensor
from ._util import lift
from .activation import log_softmax
from .elementwise import abs as _abs
from .elementwise import clamp, exp, greater, log, where
from .reduce import mean as _mean
from .reduce import sum as _sum
from .shape import reshape
from .smooth_activation import logsigmoid

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div"]

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
    w = np.asarray(weight.host() if isinstance(weight, Tensor) else weight, dtype=like.dtype)  # becomes an attr
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


def check_class_targets(t: np.ndarray, classes: int, ignore_index: int, op: str) -> np.ndarray:
    """Where the targets count (not ``ignore_index``); an IndexError naming the op for a class out of range."""
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= classes))
    if bad.any():
        v = int(t[bad].flat[0])
        raise IndexError(f"{op}: target class {v} is out of range for {classes} classes (valid: 0..{classes - 1}, "
                         f"or ignore_index={ignore_index})")
    return valid


def class_coefficients(t: np.ndarray, classes: int, weight: tuple, ignore_index: int, label_smoothing: float,
                       dtype: str, op: str) -> tuple[np.ndarray, np.ndarray]:
    """``coef`` (class weight at the target class, zero at ignored positions, plus the label-smoothing spread;
    layout (N, C, d1, ...)) and ``denom`` (the summed weights of the counted targets). Range errors name the op."""
    dt = np.dtype(dtype)
    t = t.reshape(1) if t.ndim == 0 else t
    valid = check_class_targets(t, classes, ignore_index, op)
    w = np.asarray(weight, dt) if weight else np.ones((classes,), dt)
    safe_t = np.where(valid, t, 0)
    w_t = np.where(valid, w[safe_t], 0).astype(dt)  # weight of each position's target class
    coef = np.eye(classes, dtype=dt)[safe_t] * w_t[..., None] * dt.type(1.0 - label_smoothing)
    if label_smoothing > 0.0:
        coef += valid[..., None] * w * dt.type(label_smoothing / classes)
    return np.ascontiguousarray(np.moveaxis(coef, -1, 1)), np.asarray(np.sum(w_t, dtype=np.float64), dt)


def class_coef_kernel(t: np.ndarray, out: tuple[np.ndarray, np.ndarray], **attrs: Any) -> None:
    """The kernel of class_coef for any backend whose arrays are host numpy arrays (a gather over the targets)."""
    coef, denom = class_coefficients(t, **attrs)
    out[0][...] = coef
    out[1][...] = denom


def _nll_from_log_probs(op: str, logp: Tensor, target: Any, weight: Any, reduction: str, ignore_index: int,
                        label_smoothing: float = 0.0) -> Tensor:
    _check_reduction(op, reduction)
    t = target if isinstance(target, Tensor) else logp.new_tensor(target, np.asarray(target).dtype)
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


# --- elementwise losses (input and target of one shape) --------------------------------------------------
def _same_shape_target(op: str, input: Tensor, target: Any) -> Tensor:  # noqa: A002
    """PyTorch requires the target's size to equal the input's for these losses (no silent broadcasting)."""
    t = lift(target, input)
    if t.shape != input.shape:
        fail(op, "target must have the input's shape", input=list(input.shape), target=list(t.shape))
    return t


def _weighted(op: str, loss: Tensor, weight: Any, same_shape: bool = False) -> Tensor:
    """Multiply by a rescaling ``weight`` (a constant, as in PyTorch) that broadcasts to the loss's shape, or
    (``same_shape``: l1 and huber, PyTorch's rule) has exactly its shape."""
    if weight is None:
        return loss
    w = lift(weight, loss)
    if same_shape and w.shape != loss.shape:
        fail(op, "weight must have the input's shape", input=list(loss.shape), weight=list(w.shape))
    try:
        np.broadcast_shapes(w.shape, loss.shape)
    except ValueError:
        fail(op, "weight must broadcast to the input's shape", input=list(loss.shape), weight=list(w.shape))
    return loss * w


def l1_loss(input: Tensor, target: Any, reduction: str = "mean", weight: Any = None) -> Tensor:  # noqa: A002
    """torch.nn.functional.l1_loss: ``w |input - target|`` reduced (gradient sign(0) = 0 at ties, as torch).
    With a ``weight``, ``"mean"`` divides by the summed weights (PyTorch's rule for l1, unlike huber)."""
    _check_reduction("l1_loss", reduction)
    loss = _weighted("l1_loss", _abs(input - _same_shape_target("l1_loss", input, target)), weight, same_shape=True)
    if weight is not None and reduction == "mean":
        return _sum(loss) * (1.0 / float(np.sum(lift(weight, input).host(), dtype=np.float64)))
    return _reduce(loss, reduction)


def _huber(op: str, input: Tensor, target: Any, reduction: str, delta: float, scale: float) -> Tensor:
    """``0.5 d^2 / delta`` if ``|d| < delta`` else ``|d| - 0.5 delta``, times ``scale`` (smooth_l1: 1 with
    delta = beta; huber: delta). ``delta = 0`` is the L1 loss (smooth_l1 with beta=0)."""
    _check_reduction(op, reduction)
    d = input - _same_shape_target(op, input, target)
    a = _abs(d)
    if delta == 0.0:
        return _reduce(a * scale if scale != 1.0 else a, reduction)
    quadratic = d * d * (0.5 * scale / delta)
    linear = (a - 0.5 * delta) * scale if scale != 1.0 else a - 0.5 * delta
    return _reduce(where(greater(delta, a), quadratic, linear), reduction)


def smooth_l1_loss(input: Tensor, target: Any, reduction: str = "mean", beta: float = 1.0) -> Tensor:  # noqa: A002
    """torch.nn.functional.smooth_l1_loss: ``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``."""
    if not beta >= 0.0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative (got {beta})")
    return _huber("smooth_l1_loss", input, target, reduction, float(beta), 1.0)


def huber_loss(input: Tensor, target: Any, reduction: str = "mean", delta: float = 1.0,  # noqa: A002
               weight: Any = None) -> Tensor:
    """torch.nn.functional.huber_loss: ``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``
    (= delta * smooth_l1 with beta = delta)."""
    if not delta > 0.0:
        raise ValueError(f"huber_loss: delta must be positive (got {delta})")
    if weight is None:
        return _huber("huber_loss", input, target, reduction, float(delta), float(delta))
    _check_reduction("huber_loss", reduction)
    loss = _huber("huber_loss", input, target, "none", float(delta), float(delta))
    loss = _weighted("huber_loss", loss, weight, same_shape=True)
    return _reduce(loss, reduction)


def binary_cross_entropy(input: Tensor, target: Any, weight: Any = None,  # noqa: A002
                         reduction: str = "mean") -> Tensor:
    """torch.nn.functional.binary_cross_entropy: ``-w (t log x + (1 - t) log(1 - x))`` with each log clamped
    to >= -100 as PyTorch does (so ``x`` = 0 or 1 gives a finite loss). ``input`` must hold probabilities."""
    op = "binary_cross_entropy"
    _check_reduction(op, reduction)
    t = _same_shape_target(op, input, target)
    x = None if input._data is None else input.host()  # a host-side check of the values
    if x is not None and x.size and not ((x >= 0) & (x <= 1)).all():
        raise ValueError(f"{op}: all elements of input must be between 0 and 1 (got min {x.min():.4g}, "
                         f"max {x.max():.4g}); for logits use binary_cross_entropy_with_logits")
    with np.errstate(divide="ignore"):  # log(0) = -inf, then clamped to -100
        log_x = clamp(log(input), -100.0)
        log_1mx = clamp(log(1.0 - input), -100.0)
    loss = -(t * log_x + (1.0 - t) * log_1mx)
    return _reduce(_weighted(op, loss, weight), reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Any, weight: Any = None,  # noqa: A002
                                     reduction: str = "mean", pos_weight: Any = None) -> Tensor:
    """torch.nn.functional.binary_cross_entropy_with_logits: ``-w (p t log s(x) + (1 - t) log(1 - s(x)))``
    with ``s`` the sigmoid and ``p`` = ``pos_weight`` (broadcast along the last, class, axis), written as
    ``(1 - t) x - (1 + (p - 1) t) logsigmoid(x)`` so large logits neither overflow nor lose the loss."""
    op = "binary_cross_entropy_with_logits"
    _check_reduction(op, reduction)
    t = _same_shape_target(op, input, target)
    ls = logsigmoid(input)
    if pos_weight is None:
        loss = (1.0 - t) * input - ls
    else:
        pw = lift(pos_weight, input)
        try:
            np.broadcast_shapes(pw.shape, input.shape)
        except ValueError:
            fail(op, "pos_weight must broadcast to the input's shape (one weight per class, last axis)",
                 input=list(input.shape), pos_weight=list(pw.shape))
        loss = (1.0 - t) * input - (t * (pw - 1.0) + 1.0) * ls
    return _reduce(_weighted(op, loss, weight), reduction)


def kl_div(input: Tensor, target: Any, reduction: str = "mean", log_target: bool = False) -> Tensor:  # noqa: A002
    """torch.nn.functional.kl_div: ``input`` holds log-probabilities; pointwise ``t (log t - input)`` (0 where
    ``t`` = 0), or ``exp(t) (t - input)`` with ``log_target``. ``reduction="batchmean"`` divides the sum by
    the batch size ``input.shape[0]`` (the true KL divergence); ``"mean"`` averages over every element, as
    PyTorch does. Target and input broadcast as in PyTorch."""
    op = "kl_div"
    if reduction not in _REDUCTIONS + ("batchmean",):
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS + ('batchmean',)} (got {reduction!r})")
    t = lift(target, input)
    if log_target:
        loss = exp(t) * (t - input)
    else:
        positive = greater(t, 0.0)
        xlogy = where(positive, t * log(where(positive, t, 1.0)), 0.0)  # t log t with 0 log 0 = 0
        loss = xlogy - t * input
    if reduction == "mean":
        warnings.warn("kl_div: reduction 'mean' divides the total loss by both the batch size and the support size; "
                      "'batchmean' divides only by the batch size, which is the KL divergence (as PyTorch warns)",
                      UserWarning, stacklevel=2)
    if reduction == "batchmean":
        total = _sum(loss)
        return total * (1.0 / input.shape[0]) if input.ndim else total
    return _reduce(loss, reduction)
