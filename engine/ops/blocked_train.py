"""Channel-blocked (NCHWc) training primitives, created by the training layout pass (graph/passes/train_layout.py) on
joint forward + backward graphs, never by user code.

Values are blocked as in engine/ops/blocked.py: (N, ceil(C / c), H, W, c), pad lanes zero. Every primitive here
keeps that invariant on its blocked outputs (pad lanes written as zeros), so a blocked value can feed the next
convolution, batch norm or elementwise op (relu, relu_grad, add: unchanged primitives that map zero lanes to zero
lanes) without a reorder. Weights, weight gradients and per-channel statistics keep their usual layouts.

- ``blocked_conv2d_train(x, w, [b]; stride, padding, dilation, groups)`` = ``conv2d`` with x and y blocked and ``w``
  a runtime (changing) weight: a backend transforms it per call;
- ``blocked_conv2d_input_grad(gy, w; <conv2d_input_grad's attrs>)`` with gy and gx blocked;
- ``blocked_conv2d_weight_grad(x, gy; <conv2d_weight_grad's attrs>)`` with x and gy blocked, gw (O, C/g, kh, kw);
- ``blocked_batch_norm_train(x, w, b; eps) -> (y, mean, var)`` with x and y blocked: batch statistics over
  (N, H, W) of the real lanes only, ``mean`` / ``var`` (C,) as ``batch_norm_train`` gives them;
- ``blocked_batch_norm_train_grad(gy, x, w, mean, var; eps) -> (gx, gw, gb)`` with gy, x and gx blocked;
- ``blocked_batch_norm_apply(x, w, b, mean, var; eps, relu)``: ``batch_norm_apply`` on blocked x (made only by
  rematerialization: a blocked training batch norm's y again from its kept statistics, bit for bit).

Each has a shape rule, the cost rule of its NCHW primitive and a decomposition (unblock, the NCHW primitive,
block again), so the numpy reference runs a blocked training graph. None has a vjp: they appear only after
autodiff, in joint graphs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..primitive import CONV, NORM, PRIMITIVES, Cost, Spec, fail, primitive
from .blocked import _apply, _check_blocked, block_spec, unblock_spec

__all__: list[str] = []

blocked_conv2d_train_p = primitive("blocked_conv2d_train", CONV)
blocked_conv2d_input_grad_p = primitive("blocked_conv2d_input_grad", CONV)
blocked_conv2d_weight_grad_p = primitive("blocked_conv2d_weight_grad", CONV)
blocked_batch_norm_train_p = primitive("blocked_batch_norm_train", NORM, multiple_results=True)
blocked_batch_norm_train_grad_p = primitive("blocked_batch_norm_train_grad", NORM, multiple_results=True)
blocked_batch_norm_apply_p = primitive("blocked_batch_norm_apply", NORM)

# the NCHW primitive each one blocks (shape and cost rules, decomposition)
NCHW_OF = {"blocked_conv2d_train": "conv2d", "blocked_conv2d_input_grad": "conv2d_input_grad",
           "blocked_conv2d_weight_grad": "conv2d_weight_grad", "blocked_batch_norm_train": "batch_norm_train",
           "blocked_batch_norm_train_grad": "batch_norm_train_grad", "blocked_batch_norm_apply": "batch_norm_apply"}


def _unblocked(op: str, x: Spec, channels: int) -> Spec:
    _check_blocked(op, x, channels)
    return unblock_spec(x, channels)


# --- shape rules: unblock, the NCHW rule, block the 4-D results --------------------------------------------------
@blocked_conv2d_train_p.def_shape
def _conv_shape(x: Spec, w: Spec, *b: Spec, **attrs: Any) -> Spec:
    if w.ndim != 4:
        fail("blocked_conv2d_train", "weight must be 4-D (O, C/groups, kh, kw)", weight=list(w.shape))
    xu = _unblocked("blocked_conv2d_train", x, w.shape[1] * attrs["groups"])
    return block_spec(PRIMITIVES["conv2d"].shape_rule(xu, w, *b, **attrs), x.shape[4])


@blocked_conv2d_input_grad_p.def_shape
def _input_grad_shape(gy: Spec, w: Spec, *, input_shape: tuple[int, ...], **attrs: Any) -> Spec:
    if w.ndim != 4:
        fail("blocked_conv2d_input_grad", "weight must be 4-D (O, C/groups, kh, kw)", weight=list(w.shape))
    gyu = _unblocked("blocked_conv2d_input_grad", gy, w.shape[0])
    return block_spec(PRIMITIVES["conv2d_input_grad"].shape_rule(gyu, w, input_shape=input_shape, **attrs),
                      gy.shape[4])


@blocked_conv2d_weight_grad_p.def_shape
def _weight_grad_shape(x: Spec, gy: Spec, *, weight_shape: tuple[int, ...], **attrs: Any) -> Spec:
    if x.ndim != 5 or gy.ndim != 5 or x.shape[4] != gy.shape[4]:
        fail("blocked_conv2d_weight_grad", "x and gy must be blocked with the same block", x=list(x.shape),
             gy=list(gy.shape))
    xu = _unblocked("blocked_conv2d_weight_grad", x, weight_shape[1] * attrs["groups"])
    gyu = _unblocked("blocked_conv2d_weight_grad", gy, weight_shape[0])
    return PRIMITIVES["conv2d_weight_grad"].shape_rule(xu, gyu, weight_shape=weight_shape, **attrs)


@blocked_batch_norm_train_p.def_shape
def _bn_shape(x: Spec, w: Spec, b: Spec, *, eps: float) -> tuple[Spec, ...]:
    xu = _unblocked("blocked_batch_norm_train", x, w.shape[0])
    y, mean, var = PRIMITIVES["batch_norm_train"].shape_rule(xu, w, b, eps=eps)
    return x, mean, var


@blocked_batch_norm_train_grad_p.def_shape
def _bn_grad_shape(gy: Spec, x: Spec, w: Spec, mean: Spec, var: Spec, *, eps: float) -> tuple[Spec, ...]:
    if gy != x:
        fail("blocked_batch_norm_train_grad", "gy must have x's blocked shape and dtype", gy=gy, x=x)
    xu = _unblocked("blocked_batch_norm_train_grad", x, w.shape[0])
    _, gw, gb = PRIMITIVES["batch_norm_train_grad"].shape_rule(xu, xu, w, mean, var, eps=eps)
    return x, gw, gb


@blocked_batch_norm_apply_p.def_shape
def _bn_apply_shape(x: Spec, w: Spec, b: Spec, mean: Spec, var: Spec, *, eps: float, relu: bool) -> Spec:
    xu = _unblocked("blocked_batch_norm_apply", x, w.shape[0])
    PRIMITIVES["batch_norm_apply"].shape_rule(xu, w, b, mean, var, eps=eps, relu=relu)
    return x


# --- cost rules: the NCHW primitive's on the unblocked specs (pad lanes are not work the model asked for) -------
def _channels(name: str, ins: tuple[Spec, ...], outs: tuple[Spec, ...], attrs: dict[str, Any]) -> list[int]:
    """The channel count of each input, then of each output (0 where it is not blocked)."""
    if name == "blocked_conv2d_train":  # x, w, [b], y
        w = ins[1]
        return [w.shape[1] * attrs["groups"]] + [0] * (len(ins) - 1) + [w.shape[0]]
    if name == "blocked_conv2d_input_grad":
        w = ins[1]
        return [w.shape[0], 0, w.shape[1] * attrs["groups"]]
    if name == "blocked_conv2d_weight_grad":
        ws = attrs["weight_shape"]
        return [ws[1] * attrs["groups"], ws[0], 0]
    c = ins[2].shape[0]
    if name == "blocked_batch_norm_train":
        return [c, 0, 0, c, 0, 0]
    if name == "blocked_batch_norm_apply":
        return [c, 0, 0, 0, 0, c]
    return [c, c, 0, 0, 0, c, 0, 0]


def _make_cost(name: str):
    def cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], **attrs: Any) -> Cost:
        ch = _channels(name, ins, outs, attrs)
        un = [unblock_spec(s, c) if c else s for s, c in zip(ins + outs, ch)]
        return PRIMITIVES[NCHW_OF[name]].cost(tuple(un[:len(ins)]), tuple(un[len(ins):]), **attrs)

    return cost


BLOCKED_TRAIN = (blocked_conv2d_train_p, blocked_conv2d_input_grad_p, blocked_conv2d_weight_grad_p,
                 blocked_batch_norm_train_p, blocked_batch_norm_train_grad_p, blocked_batch_norm_apply_p)
for _p in BLOCKED_TRAIN:
    _p.def_cost(_make_cost(_p.name))


# --- decompositions -----------------------------------------------------------------------------------------------
def _from(kernel: Any, x: np.ndarray, channels: int) -> np.ndarray:
    return _apply(kernel, "from_blocked", x, channels=channels)


def _temp(kernel: Any, x: np.ndarray, channels: int) -> np.ndarray:
    """An NCHW scratch array for ``channels`` channels of blocked ``x``, from the backend ``kernel`` looks up in."""
    shape = unblock_spec(Spec(x.shape, x.dtype), channels).shape
    owner = getattr(kernel, "__self__", None)
    return owner.empty(shape, x.dtype) if owner is not None else np.empty(shape, x.dtype)


@blocked_conv2d_train_p.def_decompose
def _conv_decompose(kernel: Any, x: np.ndarray, w: np.ndarray, *b: np.ndarray, out: np.ndarray, **attrs: Any) -> None:
    y = _apply(kernel, "conv2d", _from(kernel, x, w.shape[1] * attrs["groups"]), w, *b, **attrs)
    _apply(kernel, "to_blocked", y, out=out, block=x.shape[4])


@blocked_conv2d_input_grad_p.def_decompose
def _input_grad_decompose(kernel: Any, gy: np.ndarray, w: np.ndarray, *, out: np.ndarray, **attrs: Any) -> None:
    gx = _apply(kernel, "conv2d_input_grad", _from(kernel, gy, w.shape[0]), w, **attrs)
    _apply(kernel, "to_blocked", gx, out=out, block=gy.shape[4])


@blocked_conv2d_weight_grad_p.def_decompose
def _weight_grad_decompose(kernel: Any, x: np.ndarray, gy: np.ndarray, *, out: np.ndarray, **attrs: Any) -> None:
    ws = attrs["weight_shape"]
    _apply(kernel, "conv2d_weight_grad", _from(kernel, x, ws[1] * attrs["groups"]), _from(kernel, gy, ws[0]),
           out=out, **attrs)


@blocked_batch_norm_train_p.def_decompose
def _bn_decompose(kernel: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray, *, out: tuple, eps: float) -> None:
    y = _temp(kernel, x, w.shape[0])
    _apply(kernel, "batch_norm_train", _from(kernel, x, w.shape[0]), w, b, out=(y, out[1], out[2]), eps=eps)
    _apply(kernel, "to_blocked", y, out=out[0], block=x.shape[4])


@blocked_batch_norm_train_grad_p.def_decompose
def _bn_grad_decompose(kernel: Any, gy: np.ndarray, x: np.ndarray, w: np.ndarray, mean: np.ndarray,
                       var: np.ndarray, *, out: tuple, eps: float) -> None:
    c = w.shape[0]
    gx = _temp(kernel, x, c)
    _apply(kernel, "batch_norm_train_grad", _from(kernel, gy, c), _from(kernel, x, c), w, mean, var,
           out=(gx, out[1], out[2]), eps=eps)
    _apply(kernel, "to_blocked", gx, out=out[0], block=x.shape[4])


@blocked_batch_norm_apply_p.def_decompose
def _bn_apply_decompose(kernel: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray, mean: np.ndarray, var: np.ndarray,
                        *, out: np.ndarray, eps: float, relu: bool) -> None:
    y = _apply(kernel, "batch_norm_apply", _from(kernel, x, w.shape[0]), w, b, mean, var, eps=eps, relu=relu)
    _apply(kernel, "to_blocked", y, out=out, block=x.shape[4])
