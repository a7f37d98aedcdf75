"""numba kernels of the blocked training convolutions (engine/ops/blocked_train.py): forward, input gradient and
weight gradient with activations in NCHW16c and the weight a runtime input (it changes every step).

Each picks the algorithm the NCHW kernel would (:func:`.select.choose`, same role, shapes and policy). Where that
is the blocked Winograd kernel (``nchwc-winograd-f2`` / ``-f4``: ResNet's float32 3x3 stride-1 layers), the
forward and input gradient run it on the blocked values as they are, U made per call from the weight
(:func:`.nchwc.packed_u`, flipped for the input gradient): the two reorders :func:`.nchwc.conv3x3` pays around
every call are gone, which is the point of keeping training activations blocked. Any other algorithm runs the
NCHW driver between reorders in scratch memory. Pad lanes of every blocked output are zero: U's pad columns and
the bias are zero, and the reorder writes zeros there.
"""

from __future__ import annotations

import numpy as np

from engine.ops.blocked import blocks
from engine.primitive import Spec

from ..gemm import VL
from ..table import backend
from .drivers import run_forward, run_input_grad, run_weight_grad
from .epilogue import Epilogue
from .geometry import conv_attrs
from .nchwc import ALGORITHMS as NCHWC
from .nchwc import packed_u
from .nchwc_wgrad import weight_grad3x3
from .select import choose
from .workspace import scratch


def _reorders():
    from ..blocked.reorder import from_blocked, to_blocked  # imported late: the blocked package builds on conv

    return from_blocked, to_blocked


def _nchw(xb: np.ndarray, channels: int, role: str) -> np.ndarray:
    """Blocked ``xb`` as NCHW in scratch memory (``role`` names the buffer)."""
    n, _, h, w, _ = xb.shape
    x = scratch(role, (n, channels, h, w), xb.dtype)
    _reorders()[0](xb, x, channels)
    return x


def _algorithm(role: str, x_shape: tuple, w_shape: tuple, attrs: dict, dtype, run) -> str:
    return choose(role, x_shape, w_shape, attrs, dtype, run).algorithm


def _winograd(xb: np.ndarray, w: np.ndarray, outb: np.ndarray, c: int, pads: tuple[int, int], m: int,
              flip: bool, b: np.ndarray | None = None) -> None:
    """outb = the 3x3 stride-1 conv of blocked xb (``c`` real channels) with w (turned and transposed for
    ``flip``) [+ bias b], by the blocked F(m x m) kernel with U made now; ``pads`` (top, left)."""
    from ..blocked.conv import NV, SERIAL_MACS
    from ..blocked.winograd import winograd_step

    n, _, oh, ow, _ = outb.shape
    o = w.shape[1] if flip else w.shape[0]
    u = packed_u(w, m, flip, scratch("btrain_u", ((m + 2) ** 2, blocks(o, NV * VL), c, NV * VL), np.float32))
    bias = scratch("btrain_bias", (u.shape[1] * u.shape[3],), np.float32)
    bias[:] = 0.0  # zero on pad lanes too: they stay zero
    if b is not None:
        bias[:o] = b
    serial = n * oh * ow * o * c * 9 < SERIAL_MACS
    winograd_step(np.ascontiguousarray(xb), u, c, bias, outb, outb, False, pads[0], pads[1], -np.inf, np.inf,
                  serial)()


def _float32_blocks(*arrays: np.ndarray) -> bool:
    return all(a.dtype == np.float32 for a in arrays) and arrays[0].shape[-1] == VL


def _blocked_ok(algo: str, *arrays: np.ndarray) -> bool:
    return algo in NCHWC and _float32_blocks(*arrays)


@backend.register("blocked_conv2d_train")
def blocked_conv2d_train(xb: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray, stride, padding, dilation,
                         groups: int) -> None:
    attrs = conv_attrs(stride, padding, dilation, groups)
    c = w.shape[1] * groups
    x_shape = (xb.shape[0], c, xb.shape[2], xb.shape[3])
    o = w.shape[0]

    def run(algo: str, dst: np.ndarray) -> None:
        if _blocked_ok(algo, xb, w, dst):
            (pt, _), (pl, _) = attrs["padding"]
            _winograd(xb, w, dst, c, (pt, pl), NCHWC[algo], False, b[0] if b else None)
            return
        n, _, oh, ow, _ = dst.shape
        y = scratch("btrain_y", (n, o, oh, ow), dst.dtype)
        run_forward(algo, _nchw(xb, c, "btrain_x"), w, y, Epilogue(dst.dtype, bias=b[0] if b else None), attrs)
        _reorders()[1](y, dst, dst.shape[4])

    run(_algorithm("forward", x_shape, w.shape, attrs, out.dtype, lambda a: run(a, np.empty_like(out))), out)


@backend.register("blocked_conv2d_input_grad")
def blocked_conv2d_input_grad(gyb: np.ndarray, w: np.ndarray, out: np.ndarray, input_shape, stride, padding,
                              dilation, groups: int) -> None:
    attrs = conv_attrs(stride, padding, dilation, groups)
    o = w.shape[0]
    x_shape = tuple(input_shape)

    def run(algo: str, dst: np.ndarray) -> None:
        if _blocked_ok(algo, gyb, w, dst):  # gx = gy convolved with the turned, transposed w, padded 2 - p
            (pt, _), (pl, _) = attrs["padding"]
            _winograd(gyb, w, dst, o, (2 - pt, 2 - pl), NCHWC[algo], True)
            return
        gx = scratch("btrain_gx", x_shape, dst.dtype)
        run_input_grad(algo, _nchw(gyb, o, "btrain_gy"), w, gx, attrs)
        _reorders()[1](gx, dst, dst.shape[4])

    run(_algorithm("input_grad", x_shape, w.shape, attrs, out.dtype, lambda a: run(a, np.empty_like(out))), out)


@backend.register("blocked_conv2d_weight_grad")
def blocked_conv2d_weight_grad(xb: np.ndarray, gyb: np.ndarray, out: np.ndarray, weight_shape, stride, padding,
                               dilation, groups: int) -> None:
    attrs = conv_attrs(stride, padding, dilation, groups)
    o, cg = weight_shape[:2]
    c = cg * groups
    x_shape = (xb.shape[0], c, xb.shape[2], xb.shape[3])

    def run(algo: str, dst: np.ndarray) -> None:
        # any Winograd pick (the NCHW one or its blocked twin, both F(m x m) by their last digit) reads the
        # blocked values as they are
        if algo.startswith(("winograd", "nchwc-winograd")) and _float32_blocks(xb, gyb, dst):
            weight_grad3x3(np.ascontiguousarray(xb), np.ascontiguousarray(gyb), dst, attrs["padding"],
                           int(algo[-1]))
            return
        run_weight_grad(algo, _nchw(xb, c, "btrain_x"), _nchw(gyb, o, "btrain_gy"), dst, attrs)

    run(_algorithm("weight_grad", x_shape, tuple(weight_shape), attrs, out.dtype,
                   lambda a: run(a, np.empty_like(out))), out)


# --- compile-report notes: the NCHW kernel's choice, and whether it runs on the blocked values as they are -------
def _where(note: str, blocked_kernel: bool) -> str:
    return note + ("; on the blocked values" if blocked_kernel else "; NCHW between reorders")


def _forward_note(specs, **attrs) -> str:
    from .notes import forward_note

    x, w = specs[:2]
    note = forward_note((x.shape[0], w.shape[1] * attrs["groups"], x.shape[2], x.shape[3]), w.shape, attrs, x.dtype)
    return _where(note, x.dtype == np.float32 and any(a in note for a in NCHWC))


def _input_grad_note(specs, **attrs) -> str:
    from .notes import _input_grad_note as nchw_note

    gy, w = specs
    note = nchw_note((Spec((gy.shape[0], w.shape[0], gy.shape[2], gy.shape[3]), gy.dtype), w), **attrs)
    return _where(note, gy.dtype == np.float32 and any(a in note for a in NCHWC))


def _weight_grad_note(specs, **attrs) -> str:
    from .notes import _weight_grad_note as nchw_note

    x, gy = specs
    o, cg = attrs["weight_shape"][:2]
    un = [Spec((s.shape[0], ch, s.shape[2], s.shape[3]), s.dtype) for s, ch in ((x, cg * attrs["groups"]), (gy, o))]
    return _where(nchw_note(un, **attrs), False)


blocked_conv2d_train.algorithm = _forward_note
blocked_conv2d_input_grad.algorithm = _input_grad_note
blocked_conv2d_weight_grad.algorithm = _weight_grad_note
