"""``call_graph``: one primitive that runs a whole compiled function (graph.training's GraphFunction), so eager
autograd can record it as one node and its vjp can run another compiled function (the backward graph).

The function is the ``fn`` attribute and brings its own rules: ``fn.in_specs`` / ``fn.out_specs`` (shapes),
``fn.vjp(gs, outs, inputs)`` (gradients, None when it has no backward), ``fn.cost()`` and ``fn.run(arrays, out)``,
which the host kernel calls; the engine knows nothing else about graphs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..primitive import OTHER, Cost, Spec, fail, primitive
from ..tensor import Tensor

call_graph_p = primitive("call_graph", OTHER, multiple_results=True)


@call_graph_p.def_shape
def _call_graph_shape(*specs: Spec, fn: Any) -> tuple[Spec, ...]:
    if tuple(specs) != tuple(fn.in_specs):
        fail("call_graph", "inputs must match the compiled graph's inputs", got=list(specs), expected=list(fn.in_specs))
    return tuple(fn.out_specs)


@call_graph_p.def_vjp
def _call_graph_vjp(gs: tuple, outs: tuple, *inputs: Tensor, fn: Any) -> tuple:
    if fn.vjp is None:
        raise RuntimeError("call_graph: this compiled graph has no backward graph (compiled in eval mode)")
    return fn.vjp(gs, outs, inputs)


@call_graph_p.def_cost
def _call_graph_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], fn: Any) -> Cost:
    return fn.cost()


def call_graph_kernel(*arrays: np.ndarray, out: tuple[np.ndarray, ...], fn: Any) -> None:
    """The host kernel (every backend whose arrays are numpy arrays registers it): the function runs itself."""
    fn.run(arrays, out)


__all__ = ["call_graph_p", "call_graph_kernel"]
