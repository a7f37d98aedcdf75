"""Convolution: the conv2d primitive, its two gradient primitives, and the conv1d / conv_transpose composites.

Primitives (attrs as in docs/engine.md; every attr is canonical, the functional wrappers normalize arguments):

- ``conv2d(x (N,C,H,W), w (O,C/g,kh,kw)[, b (O,)])``: ``stride=(sh,sw)``, ``padding=((pt,pb),(pl,pr))``,
  ``dilation=(dh,dw)``, ``groups=g``; output ``(N, O, Ho, Wo)`` with PyTorch's floor convention
  ``Ho = (H + pt + pb - dh*(kh-1) - 1) // sh + 1``.
- ``conv2d_input_grad(gy, w)``: ``input_shape=(N,C,H,W)`` plus the conv attrs; the gradient w.r.t. ``x`` (a
  transposed convolution). Rows/columns the stride never reaches get zero gradient.
- ``conv2d_weight_grad(x, gy)``: ``weight_shape=(O,C/g,kh,kw)`` plus the conv attrs; the gradient w.r.t. ``w``.

``conv_transpose2d`` (and ``conv_transpose1d``) are composites: a transposed convolution *is*
``conv2d_input_grad`` with the input in the role of ``gy``.

conv2d is bilinear in (x, w), so the three primitives are each other's transposes and all three have vjp rules
written with the other two (double backward works).

Output-size helpers shared with pooling and the graph summary: :func:`conv_output_size` and
:func:`dropped_pixels` (how many rows/columns at the far edge of the padded input no window reaches, i.e. the
remainder of ``(W - F + 2P) / S``).
"""

from __future__ import annotations

from typing import Any

from ..autograd import bind
from ..primitive import CONV, Cost, Spec, fail, primitive, same_float_dtype
from ..tensor import Tensor
from ._util import as_tuple
from .reduce import sum as _sum
from .shape import reshape

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "conv_output_size", "dropped_pixels"]

Pads = tuple[tuple[int, int], tuple[int, int]]


# --- output-size arithmetic (shared with pool.py and graph analyses) -----------------------------------------
def _pair_pad(padding: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(padding, (tuple, list)):
        return int(padding[0]), int(padding[1])
    return int(padding), int(padding)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int | tuple[int, int] = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Output length of a sliding window along one axis (PyTorch/ONNX convention).

    ``padding`` is an int (both sides) or ``(before, after)``. Floor mode: ``(W + P_total - F) // S + 1`` with the
    dilated kernel extent ``F = dilation * (kernel - 1) + 1``. ``ceil_mode`` rounds up instead, but the last
    window must start inside the input or the left padding (PyTorch's pooling rule). The result may be <= 0 for
    impossible configurations; shape rules report those.
    """
    before, after = _pair_pad(padding)
    extent = dilation * (kernel - 1) + 1
    span = size + before + after - extent
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + before:
            out -= 1
        return out
    return span // stride + 1


def dropped_pixels(size: int, kernel: int, stride: int = 1, padding: int | tuple[int, int] = 0,
                   dilation: int = 1) -> int:
    """Rows (or columns) at the bottom/right edge of the padded input that no window reaches: the remainder
    of ``(W - F + 2P) / S`` (``F`` = dilated kernel extent). 0 means the windows tile the padded input exactly;
    a graph summary reports a positive value as "drops N input rows/columns" (the last ``padding`` of them are
    padding, not data)."""
    before, after = _pair_pad(padding)
    span = size + before + after - (dilation * (kernel - 1) + 1)
    return span % stride if span >= 0 else 0


def check_strict(op: str, size: int, kernel: int, stride: int, padding: tuple[int, int], dilation: int,
                 axis: str) -> None:
    """strict=True: reject a layer whose stride leaves input rows/columns unused (non-integer (W - F + 2P)/S)."""
    n = dropped_pixels(size, kernel, stride, padding, dilation)
    if n:
        before, after = padding
        p = before if before == after else f"{before}+{after}"
        f = dilation * (kernel - 1) + 1
        unit = "rows" if axis == "height" else "columns"
        fail(op, f"strict=True requires (W - F + 2P)/S to be an integer along the {axis}, so it cannot have "
                 f"W={size}, P={p}, F={f}, S={stride}: (W - F + 2P)/S = {size + before + after - f}/{stride} "
                 f"drops {n} input {unit}")


def _check_window_attrs(op: str, stride: tuple[int, ...], dilation: tuple[int, ...], pads: tuple) -> None:
    if any(s < 1 for s in stride):
        fail(op, "stride must be >= 1", stride=stride)
    if any(d < 1 for d in dilation):
        fail(op, "dilation must be >= 1", dilation=dilation)
    if any(p < 0 for pair in pads for p in pair):
        fail(op, "padding must be non-negative", padding=pads)


def _conv_out_hw(op: str, x_shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
                 padding: Pads, dilation: tuple[int, int]) -> tuple[int, int]:
    _check_window_attrs(op, stride, dilation, padding)
    out = []
    for axis, size, k, s, p, d in zip(("height", "width"), x_shape[2:], kernel, stride, padding, dilation):
        extent = d * (k - 1) + 1
        if extent > size + p[0] + p[1]:
            fail(op, f"kernel {axis} (dilated) must not exceed the padded input {axis}", kernel=k, dilation=d,
                 dilated_kernel=extent, input=size, padding=p, padded_input=size + p[0] + p[1])
        out.append(conv_output_size(size, k, s, p, d))
    return out[0], out[1]


# --- primitives ----------------------------------------------------------------------------------------------
conv2d_p = primitive("conv2d", CONV)
conv2d_input_grad_p = primitive("conv2d_input_grad", CONV)
conv2d_weight_grad_p = primitive("conv2d_weight_grad", CONV)


def _check_channels(op: str, x: tuple[int, ...], w: tuple[int, ...], groups: int) -> None:
    """groups and channel constraints (x and w are shapes of any rank >= 2)."""
    if groups < 1:
        fail(op, "groups must be >= 1", groups=groups)
    if x[1] % groups:
        fail(op, "groups must divide the input channels", C_in=x[1], groups=groups)
    if w[0] % groups:
        fail(op, "groups must divide the output channels (weight.shape[0])", C_out=w[0], groups=groups)
    if w[1] * groups != x[1]:
        fail(op, f"input has {x[1]} channels, weight expects {w[1] * groups} "
                 "(input channels must equal weight.shape[1] * groups)",
             input=list(x), weight=list(w), groups=groups)
    if min(w) < 1 or min(x[1:]) < 1:
        fail(op, "channels and kernel/spatial sizes must be >= 1", input=list(x), weight=list(w))


def _check_conv(op: str, x: tuple[int, ...], w: tuple[int, ...], groups: int) -> None:
    """Rank, groups and channel constraints shared by the three primitives (x and w are shapes)."""
    if len(x) != 4:
        fail(op, "input must be 4-D (N, C, H, W); use conv1d for 3-D (N, C, L) input", input=list(x))
    if len(w) != 4:
        fail(op, "weight must be 4-D (O, C/groups, kh, kw)", weight=list(w))
    _check_channels(op, x, w, groups)


@conv2d_p.def_shape
def _conv2d_shape(x: Spec, w: Spec, b: Spec | None = None, *, stride: tuple[int, int], padding: Pads,
                  dilation: tuple[int, int], groups: int) -> Spec:
    dtype = same_float_dtype("conv2d", x, w, *([b] if b is not None else []))
    if dtype.kind != "f":
        fail("conv2d", "input must be floating point", dtype=dtype.name)
    _check_conv("conv2d", x.shape, w.shape, groups)
    if b is not None and b.shape != (w.shape[0],):
        fail("conv2d", "bias must have shape (O,) where O = weight.shape[0]", bias=list(b.shape), O=w.shape[0])
    ho, wo = _conv_out_hw("conv2d", x.shape, w.shape[2:], stride, padding, dilation)
    return Spec((x.shape[0], w.shape[0], ho, wo), dtype)


@conv2d_input_grad_p.def_shape
def _conv2d_input_grad_shape(gy: Spec, w: Spec, *, input_shape: tuple[int, ...], stride: tuple[int, int],
                             padding: Pads, dilation: tuple[int, int], groups: int) -> Spec:
    dtype = same_float_dtype("conv2d_input_grad", gy, w)
    _check_conv("conv2d_input_grad", tuple(input_shape), w.shape, groups)
    hw = _conv_out_hw("conv2d_input_grad", tuple(input_shape), w.shape[2:], stride, padding, dilation)
    expected = (input_shape[0], w.shape[0]) + hw
    if gy.shape != expected:
        fail("conv2d_input_grad", "gy must have the conv2d output shape for input_shape",
             gy=list(gy.shape), expected=list(expected), input_shape=list(input_shape))
    return Spec(tuple(input_shape), dtype)


@conv2d_weight_grad_p.def_shape
def _conv2d_weight_grad_shape(x: Spec, gy: Spec, *, weight_shape: tuple[int, ...], stride: tuple[int, int],
                              padding: Pads, dilation: tuple[int, int], groups: int) -> Spec:
    dtype = same_float_dtype("conv2d_weight_grad", x, gy)
    _check_conv("conv2d_weight_grad", x.shape, tuple(weight_shape), groups)
    hw = _conv_out_hw("conv2d_weight_grad", x.shape, tuple(weight_shape[2:]), stride, padding, dilation)
    expected = (x.shape[0], weight_shape[0]) + hw
    if gy.shape != expected:
        fail("conv2d_weight_grad", "gy must have the conv2d output shape for x and weight_shape",
             gy=list(gy.shape), expected=list(expected), weight_shape=list(weight_shape))
    return Spec(tuple(weight_shape), dtype)


def _conv_macs(out_nohw: tuple[int, ...], w_shape: tuple[int, ...]) -> int:
    """N * O * Ho * Wo * (C/g) * kh * kw: one multiply-accumulate per weight tap per output element."""
    n, o, ho, wo = out_nohw
    return n * o * ho * wo * w_shape[1] * w_shape[2] * w_shape[3]


@conv2d_p.def_cost
def _conv2d_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], **attrs: Any) -> Cost:
    """MACs = N*O*Ho*Wo*(C/g)*kh*kw; FLOPs = 2 * MACs, plus one add per output element when there is a bias."""
    macs = _conv_macs(outs[0].shape, ins[1].shape)
    bias_adds = outs[0].size if len(ins) == 3 else 0
    return Cost(macs, 2 * macs + bias_adds, sum(s.nbytes for s in ins), outs[0].nbytes)


@conv2d_input_grad_p.def_cost
def _conv2d_input_grad_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], **attrs: Any) -> Cost:
    """Same MACs as the forward conv (every weight tap of every output element scatters once); FLOPs = 2 * MACs."""
    macs = _conv_macs(ins[0].shape, ins[1].shape)
    return Cost(macs, 2 * macs, sum(s.nbytes for s in ins), outs[0].nbytes)


@conv2d_weight_grad_p.def_cost
def _conv2d_weight_grad_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], **attrs: Any) -> Cost:
    """Same MACs as the forward conv (each weight tap sums over every output element); FLOPs = 2 * MACs."""
    macs = _conv_macs(ins[1].shape, outs[0].shape)
    return Cost(macs, 2 * macs, sum(s.nbytes for s in ins), outs[0].nbytes)


@conv2d_p.def_vjp
def _conv2d_vjp(g: Tensor, y: Tensor, x: Tensor, w: Tensor, b: Tensor | None = None, **attrs: Any) -> tuple:
    # weight gradient first: a backend may still hold the forward's im2col matrix of x for it (numba does)
    gw = bind(conv2d_weight_grad_p, x, g, weight_shape=w.shape, **attrs) if w.requires_grad else None
    gx = bind(conv2d_input_grad_p, g, w, input_shape=x.shape, **attrs) if x.requires_grad else None
    if b is None:
        return gx, gw
    return gx, gw, (_sum(g, (0, 2, 3)) if b.requires_grad else None)


@conv2d_input_grad_p.def_vjp
def _conv2d_input_grad_vjp(g: Tensor, gx: Tensor, gy: Tensor, w: Tensor, *, input_shape: tuple[int, ...],
                           **attrs: Any) -> tuple:
    # <G, input_grad(gy, w)> = <conv2d(G, w), gy>
    d_gy = bind(conv2d_p, g, w, **attrs) if gy.requires_grad else None
    d_w = bind(conv2d_weight_grad_p, g, gy, weight_shape=w.shape, **attrs) if w.requires_grad else None
    return d_gy, d_w


@conv2d_weight_grad_p.def_vjp
def _conv2d_weight_grad_vjp(g: Tensor, gw: Tensor, x: Tensor, gy: Tensor, *, weight_shape: tuple[int, ...],
                            **attrs: Any) -> tuple:
    # <G, weight_grad(x, gy)> = <conv2d(x, G), gy>
    d_x = bind(conv2d_input_grad_p, gy, g, input_shape=x.shape, **attrs) if x.requires_grad else None
    d_gy = bind(conv2d_p, x, g, **attrs) if gy.requires_grad else None
    return d_x, d_gy


# --- functional API ------------------------------------------------------------------------------------------
def _canonical_padding(op: str, padding: Any, kernel: tuple[int, ...], stride: tuple[int, ...],
                       dilation: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """int | per-axis ints | per-axis (before, after) | "valid" | "same" -> per-axis (before, after)."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise ValueError(f"{op}: invalid padding string {padding!r}, should be 'same' or 'valid'")
        if any(s != 1 for s in stride):
            fail(op, "padding='same' is not supported for strided convolutions (PyTorch rule)", stride=stride)
        # PyTorch: total = d * (k - 1); the odd extra pixel goes after (bottom/right)
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if isinstance(padding, (int,)) or not isinstance(padding, (tuple, list)):
        return ((int(padding), int(padding)),) * n
    if len(padding) != n:
        raise ValueError(f"{op}: padding must be an int, a {n}-tuple, {n} (before, after) pairs, 'same' or "
                         f"'valid' (got {padding!r})")
    return tuple(_pair_pad(p) for p in padding)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int, int] = 1,
           padding: int | str | tuple = 0, dilation: int | tuple[int, int] = 1, groups: int = 1,
           strict: bool = False) -> Tensor:
    """2-D cross-correlation over NCHW input (torch.nn.functional.conv2d).

    ``padding``: an int, ``(ph, pw)``, ``((pt, pb), (pl, pr))``, ``"valid"`` or ``"same"`` (stride 1 only; an odd
    total padding puts the extra pixel at the bottom/right like PyTorch). ``strict=True`` raises when the stride
    leaves input rows/columns unused (``(W - F + 2P)/S`` not an integer) instead of silently dropping them.
    """
    stride = as_tuple(stride, 2, "stride", "conv2d")
    dilation = as_tuple(dilation, 2, "dilation", "conv2d")
    if weight.ndim != 4:
        fail("conv2d", "weight must be 4-D (O, C/groups, kh, kw)", weight=list(weight.shape))
    pads = _canonical_padding("conv2d", padding, weight.shape[2:], stride, dilation)
    attrs = dict(stride=stride, padding=pads, dilation=dilation, groups=int(groups))
    if strict and input.ndim == 4:
        for i, axis in enumerate(("height", "width")):
            check_strict("conv2d", input.shape[2 + i], weight.shape[2 + i], stride[i], pads[i], dilation[i], axis)
    ins = (input, weight) if bias is None else (input, weight, bias)
    return bind(conv2d_p, *ins, **attrs)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int] = 1,
           padding: int | str | tuple = 0, dilation: int | tuple[int] = 1, groups: int = 1,
           strict: bool = False) -> Tensor:
    """1-D cross-correlation over (N, C, L) input (torch.nn.functional.conv1d): a conv2d with H = 1."""
    if input.ndim != 3:
        fail("conv1d", "input must be 3-D (N, C, L)", input=list(input.shape))
    if weight.ndim != 3:
        fail("conv1d", "weight must be 3-D (O, C/groups, k)", weight=list(weight.shape))
    (s,) = as_tuple(stride, 1, "stride", "conv1d")
    (d,) = as_tuple(dilation, 1, "dilation", "conv1d")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        padding = (tuple(padding),)  # (left, right) for the single axis
    _check_channels("conv1d", input.shape, weight.shape, int(groups))
    (p,) = _canonical_padding("conv1d", padding, weight.shape[2:], (s,), (d,))
    if strict:
        check_strict("conv1d", input.shape[2], weight.shape[2], s, p, d, "width")
    n, c, length = input.shape
    y = conv2d(reshape(input, (n, c, 1, length)), reshape(weight, weight.shape[:2] + (1, weight.shape[2])), bias,
               stride=(1, s), padding=((0, 0), p), dilation=(1, d), groups=groups)
    return reshape(y, (n, y.shape[1], y.shape[3]))


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int, int] = 1,
                     padding: int | tuple[int, int] = 0, output_padding: int | tuple[int, int] = 0, groups: int = 1,
                     dilation: int | tuple[int, int] = 1) -> Tensor:
    """torch.nn.functional.conv_transpose2d: ``weight`` is (C_in, C_out/groups, kh, kw); the output size is
    ``(H - 1)*s - 2p + d*(k - 1) + output_padding + 1``. It is the gradient of a conv2d w.r.t. its input, so it
    binds ``conv2d_input_grad``; ``output_padding`` must be smaller than the stride."""
    op = "conv_transpose2d"
    if input.ndim != 4:
        fail(op, "input must be 4-D (N, C, H, W)", input=list(input.shape))
    if weight.ndim != 4:
        fail(op, "weight must be 4-D (C_in, C_out/groups, kh, kw)", weight=list(weight.shape))
    stride, pad = as_tuple(stride, 2, "stride", op), as_tuple(padding, 2, "padding", op)
    out_pad, dilation = as_tuple(output_padding, 2, "output_padding", op), as_tuple(dilation, 2, "dilation", op)
    _check_window_attrs(op, stride, dilation, tuple((p, p) for p in pad) + (out_pad,))
    if any(o >= s for o, s in zip(out_pad, stride)):
        fail(op, "output_padding must be smaller than the stride", output_padding=out_pad, stride=stride)
    if input.shape[1] != weight.shape[0]:
        fail(op, f"input has {input.shape[1]} channels, weight expects {weight.shape[0]} (weight.shape[0])",
             input=list(input.shape), weight=list(weight.shape))
    hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + o + 1
               for size, s, p, d, k, o in zip(input.shape[2:], stride, pad, dilation, weight.shape[2:], out_pad))
    if min(hw) < 1:
        fail(op, "output size must be >= 1", input=list(input.shape), output=list(hw), padding=pad)
    out_shape = (input.shape[0], weight.shape[1] * int(groups)) + hw
    y = bind(conv2d_input_grad_p, input, weight, input_shape=out_shape, stride=stride,
             padding=tuple((p, p) for p in pad), dilation=dilation, groups=int(groups))
    return y if bias is None else y + reshape(bias, (1, -1, 1, 1))


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int] = 1,
                     padding: int | tuple[int] = 0, output_padding: int | tuple[int] = 0, groups: int = 1,
                     dilation: int | tuple[int] = 1) -> Tensor:
    """torch.nn.functional.conv_transpose1d: a conv_transpose2d with H = 1."""
    if input.ndim != 3:
        fail("conv_transpose1d", "input must be 3-D (N, C, L)", input=list(input.shape))
    if weight.ndim != 3:
        fail("conv_transpose1d", "weight must be 3-D (C_in, C_out/groups, k)", weight=list(weight.shape))
    one = {name: as_tuple(v, 1, name, "conv_transpose1d")[0]
           for name, v in (("stride", stride), ("padding", padding), ("output_padding", output_padding),
                           ("dilation", dilation))}
    n, c, length = input.shape
    y = conv_transpose2d(reshape(input, (n, c, 1, length)), reshape(weight, weight.shape[:2] + (1, weight.shape[2])),
                         bias, (1, one["stride"]), (0, one["padding"]), (0, one["output_padding"]), groups,
                         (1, one["dilation"]))
    return reshape(y, (n, y.shape[1], y.shape[3]))
