"""compile() runs on the active backend unless told otherwise, and a kernel's exception reaches the caller as
itself (same type and arguments) with the failing node added as a note."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import engine.functional as F
import graph
from engine import nn
from engine.backend import Backend


class _KernelError(Exception):
    """An exception whose constructor takes two arguments: ``type(e)(message)`` cannot rebuild it."""

    def __init__(self, code: int, detail: str):
        super().__init__(code, detail)


class _ReluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return F.relu(self.fc(x))


def _failing_backend() -> Backend:
    be = Backend("failing-relu", fallback="numpy")

    @be.register("relu")
    def relu(x, out):
        raise _KernelError(7, "no relu today")

    return be


def test_compile_defaults_to_the_active_backend():
    model, x = _ReluNet().eval(), np.ones((2, 4), np.float32)
    assert graph.compile(model, x).backend.name == "numpy"  # tests run with numpy active
    be = _failing_backend()
    with engine.use_backend(be):
        cm = graph.compile(model, x)
    assert cm.backend is be
    assert graph.compile(model, x, backend="numpy").backend.name == "numpy"


def test_kernel_errors_keep_their_type_and_name_the_node():
    model, x = _ReluNet().eval(), np.ones((2, 4), np.float32)
    cm = graph.compile(model, x, backend=_failing_backend())
    with pytest.raises(_KernelError) as info:
        cm(x)
    assert info.value.args == (7, "no relu today")
    assert any(n.startswith("while running node") and "relu" in n for n in info.value.__notes__)
