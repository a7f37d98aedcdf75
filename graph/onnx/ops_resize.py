"""Import converter for Resize / Upsample: every mode (nearest with its four rounding rules, linear, cubic with
``cubic_coeff_a`` / ``exclude_outside`` / ``antialias``), every coordinate_transformation_mode (half_pixel,
half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric, tf_crop_and_resize with its roi and
``extrapolation_value``), scales or sizes, ``axes`` and ``keep_aspect_ratio_policy``.

Resize is separable and linear in its input: along each resized axis the output is ``M @ x`` for an (out, in)
matrix that depends only on the sizes and the attributes. That matrix is what the ONNX reference evaluator
(``onnx.reference``, which defines the op) returns for a one-axis Resize of the identity matrix, so the importer never
re-derives ONNX's coordinate rules; the engine then applies it as a gather (nearest: one source index per output
position, a broadcast for integer upsampling, a strided slice for integer downsampling) or as a matmul with a constant
(linear, cubic). tf_crop_and_resize's positions outside the input get ``extrapolation_value`` (a constant added
where the matrix row is zero). A matmul reads every input value, so a NaN or inf anywhere in the interpolated axis
spreads to every output of it (onnxruntime only reads the taps).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import engine.functional as F
from engine.tensor import Tensor

from .node import OnnxNode, converter
from .ops_tensor import take

_REF_OPSET = 19  # the newest Resize (half_pixel_symmetric, antialias, axes, keep_aspect_ratio_policy)
_ATTRS = ("mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside", "antialias")


@functools.lru_cache(maxsize=256)
def axis_matrix(n_in: int, n_out: int, request: tuple, roi: tuple[float, float] | None,
                attrs: tuple[tuple[str, object], ...]) -> tuple[np.ndarray, np.ndarray]:
    """The (n_out, n_in) float64 matrix of a one-axis Resize and the mask of output positions that take
    ``extrapolation_value`` (tf_crop_and_resize outside the roi). ``request`` says how the node sized the axis:
    ``("scale", s)`` (ONNX's scales input), ``("size",)`` (sizes), or ``("aspect", policy, size, n_w, size_w)``
    (sizes with keep_aspect_ratio_policy, whose common scale comes from the winning axis w: the identity then
    gets a third axis of w's size, and the reference's rows, constant along it, are read at its first output)."""
    inputs = ["X", "roi" if roi is not None else "", "scales" if request[0] == "scale" else ""]
    inits = [helper.make_tensor("roi", TensorProto.FLOAT, [4], [roi[0], 0.0, roi[1], 1.0])] if roi else []
    x = np.eye(n_in)
    extra = {}
    if request[0] == "scale":
        inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [2], [request[1], 1.0]))
    elif request[0] == "size":
        inputs.append("sizes")
        inits.append(helper.make_tensor("sizes", TensorProto.INT64, [2], [n_out, n_in]))
    else:
        _, policy, size, n_w, size_w = request
        inputs.append("sizes")
        inits.append(helper.make_tensor("sizes", TensorProto.INT64, [2], [size, size_w]))
        x = np.broadcast_to(np.eye(n_in)[:, :, None], (n_in, n_in, n_w))
        extra = dict(axes=[1, 2], keep_aspect_ratio_policy=policy)
    node = helper.make_node("Resize", inputs, ["Y"], extrapolation_value=float("nan"), **dict(attrs), **extra)
    g = helper.make_graph([node], "axis", [helper.make_tensor_value_info("X", TensorProto.DOUBLE, list(x.shape))],
                          [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", _REF_OPSET)])
    m = np.asarray(ReferenceEvaluator(model).run(None, {"X": np.ascontiguousarray(x)})[0], np.float64)
    if m.ndim == 3:  # (basis j, output o, w's first output): M[o, j]
        m = m[:, :, 0].T
    if m.shape != (n_out, n_in):
        raise ValueError(f"the reference gives {m.shape[0]} outputs, the node's size rule {n_out}")
    outside = np.isnan(m).any(axis=1)
    m[outside] = 0.0
    return m, outside


def _gather(x: Tensor, axis: int, idx: np.ndarray) -> Tensor:
    """``x`` at positions ``idx`` along ``axis``: a broadcast for integer upsampling, a strided slice for integer
    downsampling, else one slice per run of consecutive positions."""
    n_in, n_out = x.shape[axis], len(idx)
    r = n_out // n_in if n_in else 0
    if r >= 1 and n_out == r * n_in and np.array_equal(idx, np.arange(n_out) // r):
        shape = x.shape[:axis + 1] + (1,) + x.shape[axis + 1:]
        wide = F.broadcast_to(F.reshape(x, shape), x.shape[:axis + 1] + (r,) + x.shape[axis + 1:])
        return F.reshape(wide, x.shape[:axis] + (n_out,) + x.shape[axis + 1:])
    k = int(idx[1] - idx[0]) if n_out > 1 else 1
    if k >= 1 and np.array_equal(idx, idx[0] + np.arange(n_out) * k):
        return F.slice(x, axis, int(idx[0]), int(idx[0]) + (n_out - 1) * k + 1, k)
    return take(x, axis, [int(i) for i in idx])


def _apply(x: Tensor, axis: int, m: np.ndarray) -> Tensor:
    """``m`` (out, in) applied along ``axis``."""
    onehot = (m == 1.0).sum(axis=1) == 1
    if onehot.all() and ((m == 0.0) | (m == 1.0)).all():  # nearest: a gather, exact for any value
        return _gather(x, axis, m.argmax(axis=1))
    mt = Tensor(np.ascontiguousarray(m.T, dtype=x.dtype))
    last = x.ndim - 1
    if axis == last:
        return F.matmul(x, mt)
    perm = tuple(a for a in range(x.ndim) if a != axis) + (axis,)
    y = F.matmul(F.permute(x, perm), mt)
    return F.permute(y, tuple(int(i) for i in np.argsort(perm)))


def _plan(n: OnnxNode, x: Tensor) -> tuple[list[tuple[int, int, float | None]], dict, list | None]:
    """Per resized axis (axis, output size, coordinate scale or None, request for :func:`axis_matrix`), the
    reference attributes and the roi (tf_crop_and_resize), from the node's opset-specific inputs and attributes."""
    r = x.ndim
    roi = None
    if n.op == "Upsample" or n.opset < 11:
        scales = n.attr("scales") if n.op == "Upsample" and n.opset < 9 else n.static(1, "scales")
        scales = [float(s) for s in np.asarray(scales).reshape(-1)]
        if n.attr("mode", "nearest") == "nearest" and min(scales) < 1:
            raise n.unsupported(f"nearest downsampling before opset 11 (scales {scales}; the opset does not define "
                                f"its rounding)")
        attrs = {"mode": n.attr("mode", "nearest"), "coordinate_transformation_mode": "asymmetric",
                 "nearest_mode": "floor"}
        sizes = None
        axes = list(range(r))
    else:
        attrs = {k: n.attrs[k] for k in _ATTRS if k in n.attrs}
        axes = [n.axis(a, r) for a in n.ints("axes", list(range(r)))]
        scales = n.static(2, "scales")
        sizes = n.static(3, "sizes")
        scales = None if scales is None or np.size(scales) == 0 else [float(s) for s in np.reshape(scales, -1)]
        sizes = None if sizes is None or np.size(sizes) == 0 else [int(s) for s in np.reshape(sizes, -1)]
        if (scales is None) == (sizes is None):
            raise n.fail("exactly one of scales and sizes must be given")
        if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
            roi = [float(v) for v in np.reshape(n.static(1, "roi"), -1)]
            if len(roi) != 2 * len(axes):
                raise n.fail(f"roi must hold 2 values per resized axis (got {roi} for axes {axes})")
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        raise n.fail(f"{'scales' if scales is not None else 'sizes'} must give one value per resized axis "
                     f"(got {given} for rank {r}, axes {axes})")
    plan = []
    policy = n.attr("keep_aspect_ratio_policy", "stretch")
    if sizes is not None and policy != "stretch":
        ratios = [s / x.shape[a] for s, a in zip(sizes, axes)]
        common = min(ratios) if policy == "not_larger" else max(ratios)
        w = ratios.index(common)  # the axis whose ratio is the common scale
        for a, size in zip(axes, sizes):  # one scale for every axis, sizes rounded half up (the spec's formula)
            plan.append((a, int(common * x.shape[a] + 0.5), common,
                         ("aspect", policy, size, x.shape[axes[w]], sizes[w])))
    elif sizes is not None:
        plan = [(a, s, None, ("size",)) for a, s in zip(axes, sizes)]
    else:
        plan = [(a, math.floor(x.shape[a] * s), s, ("scale", s)) for a, s in zip(axes, scales)]
    return plan, attrs, roi


@converter("Resize", "Upsample", static=(1, 2, 3))
def resize(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    if x.dtype.kind != "f":
        raise n.unsupported(f"{x.dtype.name} input (float only)")
    plan, attrs, roi = _plan(n, x)
    extrapolation = float(n.attr("extrapolation_value", 0.0))
    key = tuple(sorted(attrs.items()))
    naxes = len(plan)
    for i, (axis, out, scale, request) in enumerate(plan):
        n_in = x.shape[axis]
        box = None if roi is None else (roi[i], roi[naxes + i])
        if out == n_in and scale in (None, 1.0) and box in (None, (0.0, 1.0)):
            continue  # the identity along this axis (the reference skips it too)
        if out < 1 or n_in < 1:
            raise n.fail(f"axis {axis}: output size {out} from input size {n_in} (both must be >= 1)")
        try:
            m, outside = axis_matrix(n_in, out, request, box, key)
        except Exception as e:  # the reference rejects the attribute combination: say which and why
            raise n.unsupported(f"attributes {dict(key)} ({type(e).__name__}: {e})") from e
        x = _apply(x, axis, m)
        if outside.any() and extrapolation != 0.0:
            shape = (1,) * axis + (out,) + (1,) * (x.ndim - axis - 1)
            x = x + Tensor((outside * extrapolation).astype(x.dtype).reshape(shape))
    return x
