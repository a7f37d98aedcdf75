"""Test helpers: finite-difference checks and PyTorch comparisons, one line per case in the tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import engine
from engine import Tensor


class _TorchMissing:
    """Stands for the `torch` module when PyTorch is not installed. Module-level tables may name torch functions
    (`torch.relu`, `torch.nn.functional`): each attribute is another stand-in. Calling one, listing its names or
    subclassing it skips the test that does it, so only the PyTorch comparisons skip; finite-difference and
    numpy-reference tests in the same file still run."""

    def __init__(self, path: str = "torch") -> None:
        self._path = path

    def __getattr__(self, name: str) -> _TorchMissing:
        if name.startswith("__"):  # keep copy/pickle/inspect protocols from seeing a stand-in
            raise AttributeError(name)
        return _TorchMissing(f"{self._path}.{name}")

    def _skip(self) -> None:
        pytest.skip(f"PyTorch is not installed ({self._path} is only an oracle)")

    def __call__(self, *args: object, **kwargs: object) -> None:
        self._skip()

    def __dir__(self) -> list[str]:  # `dir(torch.nn)` lists torch's names
        self._skip()
        return []

    def __mro_entries__(self, bases: tuple) -> tuple:  # `class Net(torch.nn.Module)` inside a test
        self._skip()
        return ()

    def __repr__(self) -> str:
        return f"<{self._path}: PyTorch is not installed>"


def import_torch() -> Any:
    """The `torch` module for a test file: the real one when installed, else a stand-in whose use skips only the
    test that uses it (never the whole file)."""
    try:
        import torch
    except ImportError:
        return _TorchMissing()
    return torch


def t64(a: np.ndarray, grad: bool = True) -> Tensor:
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def check_grads(fn: Callable[..., Tensor], arrays: Sequence[np.ndarray], grad_mask: Sequence[bool] | None = None,
                atol: float = 1e-6, rtol: float = 1e-5, eps: float = 1e-6) -> None:
    """Central finite differences in float64 vs the vjp rules (engine.gradcheck)."""
    mask = grad_mask or [True] * len(arrays)
    ins = [t64(a, g) for a, g in zip(arrays, mask)]
    engine.gradcheck(fn, ins, eps=eps, atol=atol, rtol=rtol)


def max_rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.max(np.abs(b)) if b.size else 0.0, 1e-6)
    return float(np.max(np.abs(a - b)) / scale) if a.size else 0.0


def compare_torch(ours: Callable[..., Tensor], theirs: Callable, arrays: Sequence[np.ndarray],
                  grad_mask: Sequence[bool] | None = None, fwd_tol: float = 1e-4, grad_tol: float = 1e-3,
                  seed: int = 0) -> None:
    """Forward and gradients of `ours` (engine) vs `theirs` (torch) in float32, as max relative error
    (max |a-b| / max |b|). Gradients use the same random cotangent on both sides."""
    torch = pytest.importorskip("torch")
    mask = grad_mask or [True] * len(arrays)
    arrays = [np.asarray(a) for a in arrays]
    e_in = [Tensor(a.astype(np.float32) if a.dtype.kind == "f" else a, requires_grad=g and a.dtype.kind == "f")
            for a, g in zip(arrays, mask)]
    t_in = [torch.tensor(a.astype(np.float32) if a.dtype.kind == "f" else a, requires_grad=g and a.dtype.kind == "f")
            for a, g in zip(arrays, mask)]
    out = ours(*e_in)
    ref = theirs(*t_in)
    outs = out if isinstance(out, (tuple, list)) else [out]
    refs = ref if isinstance(ref, (tuple, list)) else [ref]
    assert len(outs) == len(refs)
    rng = np.random.default_rng(seed)
    loss_e, loss_t = None, None
    for o, r in zip(outs, refs):
        r_np = r.detach().numpy()
        assert o.shape == tuple(r_np.shape), f"shape mismatch: convgraph={o.shape} | torch={tuple(r_np.shape)}"
        err = max_rel_err(o.numpy(), r_np)
        assert err <= fwd_tol, f"forward max relative error {err:.3g} > {fwd_tol}"
        if o.requires_grad and r.requires_grad:
            w = rng.standard_normal(o.shape).astype(np.float32)
            le = (o * Tensor(w)).sum()
            lt = (r * torch.tensor(w)).sum()
            loss_e = le if loss_e is None else loss_e + le
            loss_t = lt if loss_t is None else loss_t + lt
    if loss_e is None:
        return
    loss_e.backward()
    loss_t.backward()
    for i, (e, t) in enumerate(zip(e_in, t_in)):
        if not e.requires_grad:
            continue
        tg = np.zeros(e.shape, np.float32) if t.grad is None else t.grad.numpy()
        eg = np.zeros(e.shape, np.float32) if e.grad is None else e.grad.numpy()
        err = max_rel_err(eg, tg)
        assert err <= grad_tol, f"gradient of input {i}: max relative error {err:.3g} > {grad_tol}"


# --- kernel parity: one primitive's kernel on a backend vs the numpy reference --------------------------------
PARITY_BACKEND = "numba"  # the backend compare() checks; tests/cuda/conftest.py points it at "cuda"


def run_kernel(backend: str, prim: str, arrays: Sequence[np.ndarray], **attrs: Any) -> tuple[np.ndarray, ...]:
    """Run ``prim`` on ``backend`` through :meth:`engine.Backend.run` (outputs allocated from the primitive's shape
    rule), with ``arrays`` copied to its device and the outputs filled with junk before the kernel runs (a kernel
    must overwrite all of out); return the outputs on the host."""
    be = engine.get_backend(backend)

    def junk_first(kernel, /, *ins, out, **kw):
        for o in out if isinstance(out, tuple) else (out,):
            be.copy_(o, be.from_host(np.full(o.shape, 7, o.dtype)))
        kernel(*ins, out=out, **kw)

    outs = be.run(engine.get_primitive(prim), [be.from_host(np.asarray(a)) for a in arrays], attrs,
                  launch=junk_first)
    return tuple(be.to_host(o) for o in outs)


def compare(prim: str, arrays: Sequence[np.ndarray], rtol: float = 1e-5, atol: float = 1e-6,
            backend: str | None = None, **attrs: Any) -> None:
    """``prim``'s kernel on ``backend`` (default :data:`PARITY_BACKEND`) against the numpy reference on the same
    inputs and attrs: every output's dtype, shape and values."""
    name = backend or PARITY_BACKEND
    ref = run_kernel("numpy", prim, arrays, **attrs)
    got = run_kernel(name, prim, arrays, **attrs)
    for i, (r, g) in enumerate(zip(ref, got)):
        assert g.shape == r.shape and g.dtype == r.dtype, \
            f"{prim} on {name} output {i}: {g.dtype}{g.shape} vs {r.dtype}{r.shape}"
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, err_msg=f"{prim} on {name} output {i} attrs={attrs}")
