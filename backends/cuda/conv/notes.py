"""What the compile report shows per cuda conv node: the kernel each role runs and how it was chosen (graph.compile
reads a kernel's ``algorithm`` attribute, a callable of the node's input specs and attrs). Under the "measure"
policy a layer not measured yet is measured here, on random device data of the node's shapes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from numba import cuda

from .drivers import (
    conv2d,
    conv2d_input_grad,
    conv2d_weight_grad,
    conv_attrs,
    forward_choice,
    fused_conv2d,
    input_grad_choice,
    out_hw,
    weight_grad_choice,
    weight_grad_split,
)
from .select import conv_policy


def _device(spec: Any) -> Any:
    """Random device data of a spec's shape and dtype when measuring, else only its shape and dtype (the heuristic
    reads nothing else)."""
    dtype = np.dtype(getattr(spec, "dtype", np.float32))
    if conv_policy() != "measure":
        return SimpleNamespace(shape=tuple(spec.shape), dtype=dtype)
    return cuda.to_device(np.random.default_rng(0).standard_normal(tuple(spec.shape)).astype(dtype))


def _forward_note(specs, stride, padding, dilation, groups, **_: Any) -> str:
    attrs = conv_attrs(stride, padding, dilation, groups)
    return forward_choice(_device(specs[0]), _device(specs[1]), attrs).describe()


def _fused_note(specs, activation: str = "none", has_bias: bool = False, has_residual: bool = False,
                **attrs: Any) -> str:
    parts = ["bias"] * has_bias + ["residual"] * has_residual + [activation] * (activation != "none")
    return _forward_note(specs, **attrs) + f" + epilogue({', '.join(parts) or 'none'})"


def _input_grad_note(specs, input_shape, stride, padding, dilation, groups) -> str:
    attrs = conv_attrs(stride, padding, dilation, groups)
    return input_grad_choice(_device(specs[0]), _device(specs[1]), tuple(input_shape), attrs).describe()


def _weight_grad_note(specs, weight_shape, stride, padding, dilation, groups) -> str:
    attrs = conv_attrs(stride, padding, dilation, groups)
    choice = weight_grad_choice(_device(specs[0]), _device(specs[1]), tuple(weight_shape), attrs)
    x_shape = tuple(specs[0].shape)
    split = weight_grad_split(choice.algorithm, x_shape, tuple(weight_shape),
                              out_hw(x_shape, weight_shape, attrs), groups, specs[0].dtype)
    return choice.describe() + (f", K split {split} ways" if split > 1 else "")


conv2d.algorithm = _forward_note
fused_conv2d.algorithm = _fused_note
conv2d_input_grad.algorithm = _input_grad_note
conv2d_weight_grad.algorithm = _weight_grad_note
