"""``blocked_prologue_conv2d``: a blocked convolution that reads ``act(x * scale + shift)`` instead of ``x``.

Created by the ``conv_prologue`` pass (graph/passes/conv_prologue.py), never by user code: an inference BatchNorm
that no convolution absorbs (DenseNet's BN + ReLU after each concat, a ``blocked_scale_shift`` node) becomes the
prologue of the 1x1 convolution that alone reads it, so the normalized copy of the concat is never written.

- ``blocked_prologue_conv2d(x, scale, shift, w, [b], [residual]; prologue, prologue_attrs, <blocked_conv2d's
  attrs>)`` = ``blocked_conv2d(blocked_scale_shift(x, scale, shift; prologue, prologue_attrs), w, [b],
  [residual])``, with ``scale`` / ``shift`` per-channel (1, Cb, 1, 1, c) and ``prologue`` ``"none"``, ``"relu"`` or
  ``"clamp"``. The transform applies to the input's real values only: a padded convolution pads the transformed
  input with zeros. ``pool`` 2 (a 1x1 stride-1 unpadded convolution without activation or residual): the result
  is then averaged over 2x2 windows (stride 2, floor), the ``avg_pool2d`` that follows DenseNet's transition
  convolutions; computed as the convolution of the averaged prologue output, which is the same linear map on a
  quarter of the pixels.

Shape rule, cost rule and decomposition (the scale/shift pass into a temporary, for pool=2 the blocked average
pool, then the blocked convolution) come from the primitives it fuses; no vjp (inference graphs only).
"""

from __future__ import annotations

from typing import Any

from ..primitive import FUSED, PRIMITIVES, Cost, Spec, fail, primitive
from .blocked import _apply

__all__: list[str] = []

blocked_prologue_conv2d_p = primitive("blocked_prologue_conv2d", FUSED)

PROLOGUES = ("none", "relu", "clamp")
# the avg_pool2d attrs a pool=2 node stands for (kernel 2, stride 2, no padding, floor)
POOL2_ATTRS = (("ceil_mode", False), ("count_include_pad", True), ("divisor", 0), ("kernel", (2, 2)),
               ("padding", (0, 0)), ("stride", (2, 2)))


def split_prologue(ins: tuple) -> tuple[Any, Any, tuple]:
    """(scale, shift, the blocked convolution's inputs) from the inputs of a ``blocked_prologue_conv2d`` node."""
    if len(ins) < 4:
        raise TypeError(f"blocked_prologue_conv2d: expected x, scale, shift, w, ... (got {len(ins)} inputs)")
    return ins[1], ins[2], (ins[0],) + tuple(ins[3:])


def _check_prologue(prologue: str, pool: int, attrs: dict[str, Any]) -> None:
    if prologue not in PROLOGUES:
        fail("blocked_prologue_conv2d", f"prologue must be one of {PROLOGUES}", prologue=prologue)
    if pool not in (1, 2):
        fail("blocked_prologue_conv2d", "pool must be 1 or 2", pool=pool)
    if pool == 2 and (attrs["has_residual"] or attrs["activation"] != "none" or tuple(attrs["stride"]) != (1, 1)
                      or any(p for pair in attrs["padding"] for p in pair)):
        fail("blocked_prologue_conv2d", "pool=2 needs a stride-1 unpadded convolution without activation or "
             "residual", stride=attrs["stride"], padding=attrs["padding"], activation=attrs["activation"],
             has_residual=attrs["has_residual"])


def _conv_input(x: Spec, w: Spec, pool: int) -> Spec:
    """What the convolution reads: the prologue's output, 2x2-averaged for pool=2 (1x1 kernels only)."""
    if pool == 1:
        return x
    if w.shape[2:] != (1, 1):
        fail("blocked_prologue_conv2d", "pool=2 needs a 1x1 kernel", kernel=list(w.shape[2:]))
    n, cb, h, wd, c = x.shape
    return Spec((n, cb, h // 2, wd // 2, c), x.dtype)


@blocked_prologue_conv2d_p.def_shape
def _shape(*ins: Spec, prologue: str, prologue_attrs: tuple = (), pool: int = 1, **attrs: Any) -> Spec:
    _check_prologue(prologue, pool, attrs)
    scale, shift, conv_ins = split_prologue(ins)
    PRIMITIVES["blocked_scale_shift"].shape_rule(ins[0], scale, shift, activation=prologue, act_attrs=prologue_attrs)
    return PRIMITIVES["blocked_conv2d"].shape_rule(_conv_input(ins[0], ins[3], pool), *conv_ins[1:], **attrs)


@blocked_prologue_conv2d_p.def_cost
def _cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], prologue: str, prologue_attrs: tuple = (), pool: int = 1,
          **attrs: Any) -> Cost:
    scale, shift, conv_ins = split_prologue(ins)
    xc = _conv_input(ins[0], ins[3], pool)
    conv = PRIMITIVES["blocked_conv2d"].cost((xc,) + conv_ins[1:], outs, **attrs)
    act = PRIMITIVES[prologue].flops_per_element if prologue != "none" else 0
    # the transformed (and averaged) input lives only in cache: the prologue adds its flops and the scale/shift reads
    flops = ins[0].size * (2 + act) + (xc.size * 4 if pool == 2 else 0)
    return Cost(conv.macs, conv.flops + flops, conv.bytes_read - xc.nbytes + ins[0].nbytes + scale.nbytes
                + shift.nbytes, conv.bytes_written)


@blocked_prologue_conv2d_p.def_decompose
def _decompose(kernel: Any, *ins: Any, out: Any, prologue: str, prologue_attrs: tuple = (), pool: int = 1,
               **attrs: Any) -> None:
    scale, shift, conv_ins = split_prologue(ins)
    xt = _apply(kernel, "blocked_scale_shift", conv_ins[0], scale, shift, activation=prologue,
                act_attrs=prologue_attrs)
    if pool == 2:
        xt = _apply(kernel, "blocked_pool", xt, op="avg_pool2d", op_attrs=POOL2_ATTRS,
                    channels=conv_ins[1].shape[1])
    _apply(kernel, "blocked_conv2d", xt, *conv_ins[1:], out=out, **attrs)
