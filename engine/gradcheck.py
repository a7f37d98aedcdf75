"""gradcheck: compare reverse-mode gradients with central finite differences (in float64)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    pass


def _scalar(out: Tensor | Sequence[Tensor], weights: list[np.ndarray]) -> float:
    outs = out if isinstance(out, (tuple, list)) else [out]
    return float(sum(np.sum(o.data.astype(np.float64) * w) for o, w in zip(outs, weights)))


def gradcheck(fn: Callable[..., Tensor | Sequence[Tensor]], inputs: Sequence[Tensor], eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0, raise_exception: bool = True) -> bool:
    """Check d/dx <w, fn(x)> for a random cotangent w against central differences, for every float64 input
    that requires grad. Returns True or raises :class:`GradcheckError` naming the input and the worst element."""
    rng = np.random.default_rng(seed)
    for i, t in enumerate(inputs):
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {t.dtype.name}; finite differences need float64 inputs")
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else [out]
    weights = [rng.standard_normal(o.shape) for o in outs]
    for t in inputs:
        t.grad = None
    total = None
    for o, w in zip(outs, weights):
        if o.requires_grad:
            term = (o * Tensor(w.astype(o.dtype))).sum()
            total = term if total is None else total + term
    if total is None:
        raise GradcheckError("gradcheck: no output depends on an input that requires grad")
    total.backward()
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        analytic = np.zeros(t.shape) if t.grad is None else t.grad.data.astype(np.float64)
        numeric = np.zeros(t.shape)
        data = t.data  # perturbed in place by index: reshape(-1) would copy a non-contiguous array
        with no_grad():
            for idx in np.ndindex(t.shape):
                orig = data[idx]
                data[idx] = orig + eps
                fp = _scalar(fn(*inputs), weights)
                data[idx] = orig - eps
                fm = _scalar(fn(*inputs), weights)
                data[idx] = orig
                numeric[idx] = (fp - fm) / (2 * eps)
        err = np.abs(analytic - numeric)
        bad = err > atol + rtol * np.abs(numeric)
        if bad.any():
            k = int(np.argmax(err))
            msg = (f"gradcheck: input {i} (shape {list(t.shape)}): {int(bad.sum())} of {t.numel()} elements differ; "
                   f"worst at flat index {k}: analytic {analytic.reshape(-1)[k]:.6g} vs numeric "
                   f"{numeric.reshape(-1)[k]:.6g}")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
