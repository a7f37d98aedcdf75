"""``blocked_prologue_conv2d``: a blocked convolution that reads ``act(x * scale + shift)`` instead of ``x``.

Created by the ``conv_prologue`` pass (graph/passes/conv_prologue.py), never by user code: an inference BatchNorm
that no convolution absorbs (DenseNet's BN + ReLU after each concat, a ``blocked_scale_shift`` node) becomes the
prologue of the 1x1 convolution that alone reads it, so the normalized copy of the concat is never written.

- ``blocked_prologue_conv2d(x, scale, shift, w, [b], [residual]; prologue, prologue_attrs, <blocked_conv2d's
  attrs>)`` = ``blocked_conv2d(blocked_scale_shift(x, scale, shift; prologue, prologue_attrs), w, [b],
  [residual])``, with ``scale`` / ``shift`` per-channel (1, Cb, 1, 1, c) and ``prologue`` ``"none"``, ``"relu"`` or
  ``"clamp"``. The transform applies to the input's real values only: a padded convolution pads the transformed
  input with zeros.

Shape rule, cost rule and decomposition (the scale/shift pass into a temporary, then the blocked convolution) come
from the two primitives it fuses; no vjp (inference graphs only).
"""

from __future__ import annotations

from typing import Any

from ..primitive import FUSED, PRIMITIVES, Cost, Spec, fail, primitive
from .blocked import _apply

__all__: list[str] = []

blocked_prologue_conv2d_p = primitive("blocked_prologue_conv2d", FUSED)

PROLOGUES = ("none", "relu", "clamp")


def split_prologue(ins: tuple) -> tuple[Any, Any, tuple]:
    """(scale, shift, the blocked convolution's inputs) from the inputs of a ``blocked_prologue_conv2d`` node."""
    if len(ins) < 4:
        raise TypeError(f"blocked_prologue_conv2d: expected x, scale, shift, w, ... (got {len(ins)} inputs)")
    return ins[1], ins[2], (ins[0],) + tuple(ins[3:])


def _check_prologue(prologue: str) -> None:
    if prologue not in PROLOGUES:
        fail("blocked_prologue_conv2d", f"prologue must be one of {PROLOGUES}", prologue=prologue)


@blocked_prologue_conv2d_p.def_shape
def _shape(*ins: Spec, prologue: str, prologue_attrs: tuple = (), **attrs: Any) -> Spec:
    _check_prologue(prologue)
    scale, shift, conv_ins = split_prologue(ins)
    PRIMITIVES["blocked_scale_shift"].shape_rule(ins[0], scale, shift, activation=prologue, act_attrs=prologue_attrs)
    return PRIMITIVES["blocked_conv2d"].shape_rule(*conv_ins, **attrs)


@blocked_prologue_conv2d_p.def_cost
def _cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], prologue: str, prologue_attrs: tuple = (),
          **attrs: Any) -> Cost:
    scale, shift, conv_ins = split_prologue(ins)
    conv = PRIMITIVES["blocked_conv2d"].cost(conv_ins, outs, **attrs)
    act = PRIMITIVES[prologue].flops_per_element if prologue != "none" else 0
    # the transformed input lives only in cache: the prologue adds its flops and the scale/shift reads
    return Cost(conv.macs, conv.flops + ins[0].size * (2 + act), conv.bytes_read + scale.nbytes + shift.nbytes,
                conv.bytes_written)


@blocked_prologue_conv2d_p.def_decompose
def _decompose(kernel: Any, *ins: Any, out: Any, prologue: str, prologue_attrs: tuple = (), **attrs: Any) -> None:
    scale, shift, conv_ins = split_prologue(ins)
    xt = _apply(kernel, "blocked_scale_shift", conv_ins[0], scale, shift, activation=prologue,
                act_attrs=prologue_attrs)
    _apply(kernel, "blocked_conv2d", xt, *conv_ins[1:], out=out, **attrs)
