"""numpy reference kernels for the fused inference primitives: the unfused kernels composed, in place on ``out``.

:func:`composed_kernel` builds the same composition from any backend's kernel lookup, so a backend without a
fused kernel of its own still runs fused graphs with its own conv/linear/elementwise kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .table import backend

_CONV_ATTRS = ("stride", "padding", "dilation", "groups")


def composed_kernel(name: str, lookup: Callable[[str], Callable[..., None]]) -> Callable[..., None]:
    """``act(base(x, w, b) + residual)`` written into ``out`` with kernels from ``lookup(prim_name)``."""
    base = {"fused_conv2d": "conv2d", "fused_linear": "linear"}[name]

    def kernel(*ins: np.ndarray, out: np.ndarray, has_bias: bool, has_residual: bool, activation: str,
               act_attrs: tuple = (), **attrs: Any) -> None:
        n_core = 2 + int(has_bias)
        lookup(base)(*ins[:n_core], out=out, **{k: attrs[k] for k in _CONV_ATTRS if k in attrs})
        if has_residual:
            lookup("add")(out, ins[n_core], out=out)
        if activation != "none":
            lookup(activation)(out, out=out, **dict(act_attrs))

    kernel.__name__ = name
    return kernel


for _name in ("fused_conv2d", "fused_linear"):
    backend.register(_name)(composed_kernel(_name, backend.kernel))
