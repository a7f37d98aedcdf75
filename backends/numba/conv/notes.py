"""What the compile report shows per conv node: the algorithm each kernel runs and how it was chosen
(graph.compile reads a kernel's ``algorithm`` attribute, a callable of the node's input specs and attrs)."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.primitive import Spec

from .drivers import conv2d, conv2d_input_grad, conv2d_weight_grad, run_forward, run_input_grad, run_weight_grad
from .epilogue import Epilogue
from .geometry import conv_attrs, out_hw, shape_of
from .select import cached, choose


def _note(role: str, specs, x_shape, w_shape, attrs: dict[str, Any], run_role) -> str:
    """The selected algorithm and how it was chosen. Under the "measure" policy a key that is not measured yet
    (a compiled module measures while its executor is prepared) is measured now, on random data of the node's
    shapes, so the report shows the winner and every candidate's time."""
    attrs = conv_attrs(attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"])
    dtype = np.dtype(getattr(specs[0], "dtype", np.float32))
    hit = cached(role, x_shape, w_shape, attrs, dtype)
    if hit is None:
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal(shape_of(s)).astype(dtype) for s in specs[:2]]
        hit = choose(role, x_shape, w_shape, attrs, dtype, lambda a: run_role(a, *arrays, attrs))
    return hit.describe()


def forward_note(x_shape, w_shape, attrs, dtype=np.float32) -> str:
    def run(a, x, w, at):
        n, o = x.shape[0], w.shape[0]
        run_forward(a, x, w, np.empty((n, o, *out_hw(x.shape, w.shape, at)), x.dtype), Epilogue(x.dtype), at)

    return _note("forward", [Spec(x_shape, dtype), Spec(w_shape, dtype)], x_shape, w_shape, attrs, run)


def _input_grad_note(specs, input_shape, **attrs) -> str:
    return _note("input_grad", specs, tuple(input_shape), shape_of(specs[1]), attrs,
                 lambda a, gy, w, at: run_input_grad(a, gy, w, np.empty(tuple(input_shape), gy.dtype), at))


def _weight_grad_note(specs, weight_shape, **attrs) -> str:
    return _note("weight_grad", specs, shape_of(specs[0]), tuple(weight_shape), attrs,
                 lambda a, x, gy, at: run_weight_grad(a, x, gy, np.empty(tuple(weight_shape), x.dtype), at))


conv2d.algorithm = lambda specs, **attrs: forward_note(shape_of(specs[0]), shape_of(specs[1]), attrs,
                                                       getattr(specs[0], "dtype", np.float32))
conv2d_input_grad.algorithm = _input_grad_note
conv2d_weight_grad.algorithm = _weight_grad_note
