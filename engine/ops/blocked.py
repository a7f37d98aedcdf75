"""Channel-blocked (NCHWc) inference primitives, created by the layout pass (graph/passes/layout.py), never by user
code.

A blocked value of an NCHW tensor (N, C, H, W) is the 5-D array (N, ceil(C / c), H, W, c): channel ``k`` lives in
block ``k // c``, lane ``k % c``. Channel counts that are not multiples of ``c`` get pad lanes; the pad lanes hold
finite values (zeros where a blocked value is made, ``act(0)`` after a convolution's epilogue) and every op that
mixes channels ignores them (a blocked convolution's weights are zero there, ``from_blocked`` drops them), so
they never reach a result. Elementwise primitives run on blocked values unchanged (their shape rules broadcast a
(N, Cb, 1, 1, c) operand as they would (N, C, 1, 1)); the primitives here are the ones whose meaning depends on
the channel axis:

- ``to_blocked(x; block)``: (N, C, H, W) -> (N, Cb, H, W, block), pad lanes zero;
- ``from_blocked(x; channels)``: back to (N, channels, H, W);
- ``blocked_conv2d(x, w, [b], [residual]; <fused_conv2d's attrs>)`` = ``fused_conv2d`` with x, residual and the
  output blocked; ``w`` / ``b`` stay in their usual (O, C/groups, kh, kw) / (O,) forms (a backend derives its own
  packed form of a constant weight once); groups is 1 or depthwise (groups = C = O); ``activation`` may also be
  ``"clamp"`` (``act_attrs`` its min / max: ReLU6 as an epilogue); with ``block`` > 0 (groups 1) ``x`` is an NCHW
  value instead and the output is blocked by ``block``: a first convolution reads the network's few-channel
  image directly, with no reorder before it and no 3-of-16-lane padding;
- ``blocked_scale_shift(x, scale, shift; activation, act_attrs)`` = ``act(x * scale + shift)`` with per-channel
  (1, Cb, 1, 1, c) scale and shift: an inference BatchNorm that no conv absorbs (DenseNet's BN after a concat) with
  the ReLU / clamp that follows it, one pass instead of three;
- ``blocked_pool(x; op, op_attrs, channels)``: a per-channel window op (``max_pool2d``, ``avg_pool2d``,
  ``adaptive_avg_pool2d``, ``adaptive_max_pool2d``; ``op_attrs`` its attrs as sorted (name, value) pairs) on a
  blocked value.

Each has a shape rule, a cost rule and a decomposition into existing primitives (unblock, run the NCHW primitive,
block again), so a backend without blocked kernels (the numpy reference, cuda) still runs a blocked graph. None has
a vjp: the layout pass runs on inference graphs only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..primitive import FUSED, POOL, PRIMITIVES, SHAPE, Cost, Spec, fail, primitive
from .fused import split_inputs

__all__: list[str] = []

to_blocked_p = primitive("to_blocked", SHAPE)
from_blocked_p = primitive("from_blocked", SHAPE)
blocked_conv2d_p = primitive("blocked_conv2d", FUSED)
blocked_pool_p = primitive("blocked_pool", POOL)
blocked_scale_shift_p = primitive("blocked_scale_shift", FUSED)

POOL_OPS = ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d")


def blocks(channels: int, block: int) -> int:
    return -(-channels // block)


def block_spec(s: Spec, block: int) -> Spec:
    """The blocked spec of an NCHW spec."""
    n, c, h, w = s.shape
    return Spec((n, blocks(c, block), h, w, block), s.dtype)


def unblock_spec(s: Spec, channels: int) -> Spec:
    """The NCHW spec of a blocked spec holding ``channels`` channels."""
    n, _, h, w, _ = s.shape
    return Spec((n, channels, h, w), s.dtype)


def _check_blocked(op: str, x: Spec, channels: int | None = None) -> None:
    if x.ndim != 5:
        fail(op, "input must be a blocked (N, C/c, H, W, c) array", shape=list(x.shape))
    if channels is not None and not (x.shape[1] - 1) * x.shape[4] < channels <= x.shape[1] * x.shape[4]:
        fail(op, "channels must fit the blocks without a whole block of padding", channels=channels,
             blocks=x.shape[1], block=x.shape[4])


@to_blocked_p.def_shape
def _to_blocked_shape(x: Spec, block: int) -> Spec:
    if x.ndim != 4 or not isinstance(block, int) or block < 1:
        fail("to_blocked", "input must be NCHW (4-D) and block an int >= 1", shape=list(x.shape), block=block)
    return block_spec(x, block)


@from_blocked_p.def_shape
def _from_blocked_shape(x: Spec, channels: int) -> Spec:
    _check_blocked("from_blocked", x, channels)
    return unblock_spec(x, channels)


def _out_channels(w: Spec) -> int:
    return w.shape[0]


@blocked_conv2d_p.def_shape
def _blocked_conv2d_shape(*ins: Spec, stride, padding, dilation, groups: int, has_bias: bool, has_residual: bool,
                          activation: str, act_attrs: tuple = (), block: int = 0) -> Spec:
    x, w, b, r = split_inputs(ins, has_bias, has_residual)
    xc = w.shape[1] * groups
    if block:
        if x.ndim != 4 or groups != 1 or x.shape[1] != xc:
            fail("blocked_conv2d", "with block > 0 the input must be NCHW with the weight's in channels and groups 1",
                 shape=list(x.shape), in_channels=xc, groups=groups, block=block)
        x = block_spec(x, block)
    _check_blocked("blocked_conv2d", x)
    block = x.shape[4]
    _check_blocked("blocked_conv2d", x, xc)
    if groups != 1 and not groups == xc == w.shape[0]:
        fail("blocked_conv2d", "groups must be 1 or depthwise (groups = in channels = out channels)", groups=groups,
             in_channels=xc, out_channels=w.shape[0])
    y = PRIMITIVES["fused_conv2d"].shape_rule(
        *([unblock_spec(x, xc), w] + ([b] if b is not None else [])), stride=stride, padding=padding,
        dilation=dilation, groups=groups, has_bias=has_bias, has_residual=False,
        activation="none" if activation == "clamp" else activation, act_attrs=act_attrs)
    out = block_spec(y, block)
    if r is not None and r != out:
        fail("blocked_conv2d", "residual must have the blocked output's shape and dtype", residual=r, output=out)
    return out


@blocked_conv2d_p.def_cost
def _blocked_conv2d_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], **attrs: Any) -> Cost:
    x, w, b, r = split_inputs(ins, attrs["has_bias"], attrs["has_residual"])
    y = unblock_spec(outs[0], w.shape[0])
    xs = x if x.ndim == 4 else unblock_spec(x, w.shape[1] * attrs["groups"])
    rs = (y,) if r is not None else ()
    return PRIMITIVES["fused_conv2d"].cost((xs, w) + ((b,) if b is not None else ()) + rs, (y,), **attrs)


def _op_attrs(op: str, op_attrs: tuple) -> dict[str, Any]:
    if op not in POOL_OPS:
        fail("blocked_pool", f"op must be one of {POOL_OPS}", op=op)
    return dict(op_attrs)


@blocked_pool_p.def_shape
def _blocked_pool_shape(x: Spec, op: str, op_attrs: tuple, channels: int) -> Spec:
    _check_blocked("blocked_pool", x, channels)
    y = PRIMITIVES[op].shape_rule(unblock_spec(x, channels), **_op_attrs(op, op_attrs))
    return block_spec(y, x.shape[4])


@blocked_pool_p.def_cost
def _blocked_pool_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], op: str, op_attrs: tuple,
                       channels: int) -> Cost:
    return PRIMITIVES[op].cost((unblock_spec(ins[0], channels),), (unblock_spec(outs[0], channels),),
                               **_op_attrs(op, op_attrs))


@blocked_scale_shift_p.def_shape
def _blocked_scale_shift_shape(x: Spec, scale: Spec, shift: Spec, activation: str, act_attrs: tuple = ()) -> Spec:
    _check_blocked("blocked_scale_shift", x)
    want = (1, x.shape[1], 1, 1, x.shape[4])
    if scale.shape != want or shift.shape != want or not scale.dtype == shift.dtype == x.dtype:
        fail("blocked_scale_shift", f"scale and shift must be {want} of the input's dtype", scale=scale, shift=shift,
             input=x)
    if activation != "none" and activation not in PRIMITIVES:
        fail("blocked_scale_shift", "activation must be 'none' or a unary elementwise primitive", activation=activation)
    return x


@blocked_scale_shift_p.def_cost
def _blocked_scale_shift_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], activation: str,
                              act_attrs: tuple = ()) -> Cost:
    act = PRIMITIVES[activation].flops_per_element if activation != "none" else 0
    return Cost(0, outs[0].size * (2 + act), sum(s.nbytes for s in ins), outs[0].nbytes)


# --- decompositions: unblock, run the NCHW primitive, block again ----------------------------------------------
def _apply(lookup: Any, name: str, /, *ins: Any, out: Any = None, **attrs: Any) -> Any:
    if out is None:
        prim = PRIMITIVES[name]
        specs = prim.abstract_eval(*(Spec(a.shape, a.dtype) for a in ins), **attrs)
        # ``lookup`` is a backend's bound ``kernel``: temporaries come from that backend, so a device backend
        # running the decomposition keeps them on its device
        owner = getattr(lookup, "__self__", None)
        outs = tuple(owner.empty(s.shape, s.dtype) if owner is not None else np.empty(s.shape, s.dtype)
                     for s in specs)
        out = outs if prim.multiple_results else outs[0]
    try:
        k = lookup(name)
    except NotImplementedError:  # a fused primitive the backend runs by its own decomposition
        k = PRIMITIVES[name].decomposed_kernel(lookup)
    k(*ins, out=out, **attrs)
    return out


@to_blocked_p.def_decompose
def _to_blocked_decompose(kernel: Any, x: np.ndarray, *, out: np.ndarray, block: int) -> None:
    n, c, h, w = x.shape
    cb = blocks(c, block)
    xp = _apply(kernel, "pad", x, pads=((0, 0), (0, cb * block - c), (0, 0), (0, 0)), value=0.0)
    x5 = _apply(kernel, "reshape", xp, shape=(n, cb, block, h, w))
    _apply(kernel, "transpose", x5, out=out, perm=(0, 1, 3, 4, 2))


@from_blocked_p.def_decompose
def _from_blocked_decompose(kernel: Any, x: np.ndarray, *, out: np.ndarray, channels: int) -> None:
    n, cb, h, w, block = x.shape
    t = _apply(kernel, "transpose", x, perm=(0, 1, 4, 2, 3))
    full = _apply(kernel, "reshape", t, shape=(n, cb * block, h, w))
    _apply(kernel, "slice", full, out=out, starts=(0, 0, 0, 0), stops=(n, channels, h, w), steps=(1, 1, 1, 1))


@blocked_conv2d_p.def_decompose
def _blocked_conv2d_decompose(kernel: Any, *ins: np.ndarray, out: np.ndarray, has_bias: bool, has_residual: bool,
                              groups: int, activation: str, act_attrs: tuple = (), block: int = 0,
                              **attrs: Any) -> None:
    x, w, b, r = split_inputs(ins, has_bias, has_residual)
    block = block or x.shape[4]
    xu = x if x.ndim == 4 else _apply(kernel, "from_blocked", x, channels=w.shape[1] * groups)
    args = [xu, w] + ([b] if b is not None else [])
    if r is not None:
        args.append(_apply(kernel, "from_blocked", r, channels=w.shape[0]))
    clamp = activation == "clamp"
    y = _apply(kernel, "fused_conv2d", *args, has_bias=has_bias, has_residual=has_residual, groups=groups,
               activation="none" if clamp else activation, act_attrs=() if clamp else act_attrs, **attrs)
    if clamp:
        _apply(kernel, "clamp", y, out=y, **dict(act_attrs))
    _apply(kernel, "to_blocked", y, out=out, block=block)


@blocked_pool_p.def_decompose
def _blocked_pool_decompose(kernel: Any, x: np.ndarray, *, out: np.ndarray, op: str, op_attrs: tuple,
                            channels: int) -> None:
    xu = _apply(kernel, "from_blocked", x, channels=channels)
    y = _apply(kernel, op, xu, **dict(op_attrs))
    _apply(kernel, "to_blocked", y, out=out, block=x.shape[4])


@blocked_scale_shift_p.def_decompose
def _blocked_scale_shift_decompose(kernel: Any, x: np.ndarray, scale: np.ndarray, shift: np.ndarray, *,
                                   out: np.ndarray, activation: str, act_attrs: tuple = ()) -> None:
    _apply(kernel, "mul", x, scale, out=out)
    _apply(kernel, "add", out, shift, out=out)
    if activation != "none":
        _apply(kernel, activation, out, out=out, **dict(act_attrs))
