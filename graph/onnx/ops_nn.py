"""Import converters for the network ops: Conv/ConvTranspose, pooling, normalization, Gemm/MatMul, activations,
Softmax/LogSoftmax and Dropout. Each maps one ONNX node onto engine functional ops with ONNX's exact semantics;
where the engine's primitive follows a PyTorch rule ONNX does not (asymmetric or large pool padding), the node is
composed from explicit padding plus an unpadded primitive instead."""

from __future__ import annotations

import math

import numpy as np

import engine.functional as F
from engine.autograd import bind
from engine.ops.norm import batch_norm_train_p
from engine.ops.sample_norm import row_norm_p
from engine.tensor import Tensor

from .node import OnnxNode, converter


# --- shared geometry --------------------------------------------------------------------------------------------
def _nd(n: OnnxNode, x: Tensor) -> int:
    nd = x.ndim - 2
    if nd not in (1, 2):
        raise n.unsupported(f"{nd}-D spatial input (shape {list(x.shape)}; only 1-D and 2-D)")
    return nd


def _pads(n: OnnxNode, sizes: tuple[int, ...], kernel: list[int], strides: list[int],
          dilations: list[int]) -> list[tuple[int, int]]:
    """Per-axis (before, after) padding from ``pads`` or ``auto_pad``."""
    nd = len(sizes)
    auto = n.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        p = n.ints("pads", [0] * 2 * nd)
        if len(p) != 2 * nd or min(p) < 0:
            raise n.fail(f"pads must hold {2 * nd} non-negative values (got {p})")
        return [(p[i], p[i + nd]) for i in range(nd)]
    if auto == "VALID":
        return [(0, 0)] * nd
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise n.fail(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID (got {auto!r})")
    out = []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        small = total // 2
        out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
    return out


def _to2d(x: Tensor, nd: int) -> Tensor:
    return F.reshape(x, x.shape[:2] + (1,) + x.shape[2:]) if nd == 1 else x


def _from2d(y: Tensor, nd: int) -> Tensor:
    return F.reshape(y, y.shape[:2] + y.shape[3:]) if nd == 1 else y


def _two(vals: list, nd: int, fill) -> tuple:
    return tuple(vals) if nd == 2 else (fill,) + tuple(vals)


def _pad_hw(x: Tensor, pads: list[tuple[int, int]], value: float) -> Tensor:
    """Pad the last two axes by (before, after) pairs."""
    (t, b), (left, r) = pads
    return F.pad(x, (left, r, t, b), value=value)


# --- convolution ------------------------------------------------------------------------------------------------
@converter("Conv")
def conv(n: OnnxNode) -> Tensor:
    x, w, b = n.tensor(0), n.tensor(1), n.opt_tensor(2)
    nd = _nd(n, x)
    k = list(w.shape[2:])
    strides, dil = n.ints("strides", [1] * nd), n.ints("dilations", [1] * nd)
    pads = _pads(n, x.shape[2:], k, strides, dil)
    if nd == 1:
        w = F.reshape(w, w.shape[:2] + (1,) + w.shape[2:])
    y = F.conv2d(_to2d(x, nd), w, b, _two(strides, nd, 1), _two(pads, nd, (0, 0)), _two(dil, nd, 1),
                 int(n.attr("group", 1)))
    return _from2d(y, nd)


@converter("ConvTranspose")
def conv_transpose(n: OnnxNode) -> Tensor:
    """The full transposed convolution (no padding), then ONNX's crop [pad_begin, full + output_padding - pad_end)
    (zeros where output_padding reaches past the full output), then the bias."""
    x, w, b = n.tensor(0), n.tensor(1), n.opt_tensor(2)
    nd = _nd(n, x)
    k = list(w.shape[2:])
    s, d = n.ints("strides", [1] * nd), n.ints("dilations", [1] * nd)
    out_pad = n.ints("output_padding", [0] * nd)
    full = [(i - 1) * st + (kk - 1) * dd + 1 for i, st, kk, dd in zip(x.shape[2:], s, k, d)]
    auto = n.attr("auto_pad", "NOTSET") or "NOTSET"
    out_shape = n.ints("output_shape")
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = out_shape[-nd:] if out_shape is not None else [i * st for i, st in zip(x.shape[2:], s)]
        totals = [f + op - t for f, op, t in zip(full, out_pad, target)]
        pads = [(t // 2, t - t // 2) if auto == "SAME_UPPER" else (t - t // 2, t // 2) for t in totals]
    elif auto == "VALID":
        pads = [(0, 0)] * nd
    else:
        pads = _pads(n, x.shape[2:], k, s, d)
    if min(pb for pb, _ in pads) < 0:  # a negative end pad (output_shape past the full output) adds zeros
        raise n.unsupported(f"negative begin padding {pads}")
    y = F.conv_transpose2d(_to2d(x, nd), w if nd == 2 else F.reshape(w, w.shape[:2] + (1,) + w.shape[2:]), None,
                           _two(s, nd, 1), 0, 0, int(n.attr("group", 1)), _two(d, nd, 1))
    size = [f + op - pb - pe for f, op, (pb, pe) in zip(full, out_pad, pads)]
    grow = [max(0, pb + sz - f) for f, (pb, _), sz in zip(full, pads, size)]
    y = _pad_hw(y, _two([(0, g) for g in grow], nd, (0, 0)), 0.0)
    index = (slice(None), slice(None)) + ((slice(None),) if nd == 1 else ()) + tuple(
        slice(pb, pb + sz) for (pb, _), sz in zip(pads, size))
    y = _from2d(F.getitem(y, index), nd)
    return y if b is None else y + F.reshape(b, (1, -1) + (1,) * nd)


# --- pooling ----------------------------------------------------------------------------------------------------
def _pool_out(size: int, k: int, s: int, d: int, pb: int, pe: int, ceil_mode: bool) -> int:
    span = size + pb + pe - ((k - 1) * d + 1)
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= size + pb else out  # the last window starts inside input or left padding


def _window_counts(out: int, k: int, s: int, d: int, lo: int, hi: int) -> np.ndarray:
    """Per output position: how many of its taps fall in [lo, hi) of the padded axis."""
    pos = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d
    return ((pos >= lo) & (pos < hi)).sum(axis=1)


class _Pool:
    """One pooling node's geometry in 2-D form (1-D pools get a unit height axis)."""

    def __init__(self, n: OnnxNode, x: Tensor):
        self.nd = nd = _nd(n, x)
        k = n.ints("kernel_shape")
        if k is None or len(k) != nd:
            raise n.fail(f"kernel_shape must give {nd} sizes (got {k})")
        s, d = n.ints("strides", [1] * nd), n.ints("dilations", [1] * nd)
        pads = _pads(n, x.shape[2:], k, s, d)
        self.ceil = bool(n.attr("ceil_mode", 0))
        self.x = _to2d(x, nd)
        self.k, self.s, self.d = _two(k, nd, 1), _two(s, nd, 1), _two(d, nd, 1)
        self.pads = list(_two(pads, nd, (0, 0)))
        self.sizes = self.x.shape[2:]
        self.out = tuple(_pool_out(*a, self.ceil) for a in zip(self.sizes, self.k, self.s, self.d,
                                                                (p[0] for p in self.pads), (p[1] for p in self.pads)))
        if min(self.out) < 1:
            raise n.fail(f"output size {list(self.out)} < 1 for input {list(x.shape)}")

    def native(self) -> bool:
        """Symmetric padding of at most half the kernel: the engine's pool attrs (PyTorch's rule) say the same."""
        return all(pb == pe <= k // 2 for (pb, pe), k in zip(self.pads, self.k))

    def padded(self, value: float) -> Tensor:
        """The input padded so that an unpadded floor-mode pool covers exactly every ONNX window."""
        extra = [max(0, (o - 1) * s + (k - 1) * d + 1 - (size + pb + pe))
                 for o, s, k, d, size, (pb, pe) in zip(self.out, self.s, self.k, self.d, self.sizes, self.pads)]
        return _pad_hw(self.x, [(pb, pe + e) for (pb, pe), e in zip(self.pads, extra)], value)

    def crop(self, y: Tensor) -> Tensor:
        if y.shape[2:] != self.out:
            y = F.getitem(y, (slice(None), slice(None), slice(0, self.out[0]), slice(0, self.out[1])))
        return _from2d(y, self.nd)

    def tap(self, x_padded: Tensor, i: int, j: int) -> Tensor:
        """Window element (i, j) of every output window: a strided slice of the padded input."""
        (oh, ow), (sh, sw), (dh, dw) = self.out, self.s, self.d
        return F.getitem(x_padded, (slice(None), slice(None), slice(i * dh, i * dh + (oh - 1) * sh + 1, sh),
                                    slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)))

    def sum_pool(self, x_padded: Tensor) -> Tensor:
        if max(self.d) == 1:
            return self.crop(F.avg_pool2d(x_padded, self.k, self.s, 0)) * float(math.prod(self.k))
        taps = [self.tap(x_padded, i, j) for i in range(self.k[0]) for j in range(self.k[1])]  # dilated: no primitive
        total = taps[0]
        for t in taps[1:]:
            total = total + t
        return _from2d(total, self.nd)

    def counts(self, include_pad: bool) -> np.ndarray:
        """(oh, ow): how many taps of each window lie in the input (or the input plus its padding)."""
        per_axis = []
        for o, k, s, d, size, (pb, pe) in zip(self.out, self.k, self.s, self.d, self.sizes, self.pads):
            lo, hi = (0, size + pb + pe) if include_pad else (pb, pb + size)
            per_axis.append(_window_counts(o, k, s, d, lo, hi))
        return per_axis[0][:, None] * per_axis[1][None, :]


def _argmax_indices(p: _Pool, y: Tensor, column_major: bool) -> Tensor:
    """MaxPool's Indices output: the flat NCHW index (or N, C, W, H with storage_order=1) of the first maximum in
    row-major window order. The taps are visited last to first, each overwriting where it equals the maximum."""
    xp, (n, c), (h, w) = p.padded(-np.inf), p.x.shape[:2], p.sizes
    (oh, ow), (sh, sw), (dh, dw) = p.out, p.s, p.d
    base = (np.arange(n)[:, None] * c + np.arange(c)[None, :])[:, :, None, None] * (h * w)
    rows, cols = np.arange(oh)[:, None] * sh - p.pads[0][0], np.arange(ow)[None, :] * sw - p.pads[1][0]
    y2 = _to2d(y, p.nd)
    idx = Tensor(np.zeros(y2.shape, np.int64))
    for i in reversed(range(p.k[0])):
        for j in reversed(range(p.k[1])):
            tap = p.tap(xp, i, j)
            r, q = rows + i * dh, cols + j * dw
            flat = base + (q * h + r if column_major else r * w + q)
            idx = F.where(F.equal(tap, y2), Tensor(np.broadcast_to(flat, y2.shape).astype(np.int64)), idx)
    return _from2d(idx, p.nd)


@converter("MaxPool")
def max_pool(n: OnnxNode) -> Tensor | tuple[Tensor, Tensor]:
    order = n.attr("storage_order", 0)
    if order not in (0, 1):
        raise n.fail("storage_order must be 0 or 1")
    p = _Pool(n, n.tensor(0))
    if p.native():
        y = _from2d(F.max_pool2d(p.x, p.k, p.s, tuple(pb for pb, _ in p.pads), p.d, p.ceil), p.nd)
    else:
        y = p.crop(F.max_pool2d(p.padded(-np.inf), p.k, p.s, 0, p.d))
    return (y, _argmax_indices(p, y, bool(order))) if n.n_outputs > 1 else y


@converter("AveragePool")
def average_pool(n: OnnxNode) -> Tensor:
    p = _Pool(n, n.tensor(0))
    include = bool(n.attr("count_include_pad", 0))
    if p.native() and max(p.d) == 1:
        return _from2d(F.avg_pool2d(p.x, p.k, p.s, tuple(pb for pb, _ in p.pads), p.ceil, include), p.nd)
    scale = 1.0 / p.counts(include).astype(p.x.dtype)
    scale = scale.reshape((1, 1) + (scale.shape[1:] if p.nd == 1 else scale.shape))
    return p.sum_pool(p.padded(0.0)) * Tensor(scale)


@converter("LpPool")
def lp_pool(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    p = _Pool(n, x)
    power = float(n.attr("p", 2))
    return F.pow(p.sum_pool(F.pow(F.abs(p.padded(0.0)), power)), 1.0 / power)


@converter("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def global_pool(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    axes = tuple(range(2, x.ndim))
    if n.op == "GlobalAveragePool":
        return F.mean(x, axes, keepdims=True)
    if n.op == "GlobalMaxPool":
        return F.amax(x, axes, keepdims=True)
    power = float(n.attr("p", 2))
    return F.pow(F.sum(F.pow(F.abs(x), power), axes, keepdims=True), 1.0 / power)


# --- normalization ----------------------------------------------------------------------------------------------
def _per_channel(t: Tensor, ndim: int) -> Tensor:
    return F.reshape(t, (1, -1) + (1,) * (ndim - 2))


@converter("BatchNormalization")
def batch_norm(n: OnnxNode) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    x = n.tensor(0)
    scale, bias, mean, var = (n.tensor(i, like=x) for i in range(1, 5))
    eps, momentum = float(n.attr("epsilon", 1e-5)), float(n.attr("momentum", 0.9))
    if n.attr("spatial", 1) != 1:
        raise n.unsupported("spatial=0 (per-activation statistics)")
    if n.attr("training_mode", 0):  # ONNX training mode: batch statistics, running stats as outputs
        y, bm, bv = bind(batch_norm_train_p, x, scale, bias, eps=eps)
        return y, mean * momentum + bm * (1.0 - momentum), var * momentum + bv * (1.0 - momentum)
    if n.n_outputs > 1:
        raise n.unsupported("the statistics outputs of an opset < 14 training BatchNormalization")
    return F.batch_norm(x, mean, var, scale, bias, training=n.training, momentum=1.0 - momentum, eps=eps)


@converter("InstanceNormalization")
def instance_norm(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    scale, bias = n.tensor(1, like=x), n.tensor(2, like=x)
    axes = tuple(range(2, x.ndim))
    d = x - F.mean(x, axes, keepdims=True)
    var = F.mean(d * d, axes, keepdims=True)
    y = d / F.sqrt(var + float(n.attr("epsilon", 1e-5)))
    return y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)


def _rows_normalized(x: Tensor, rows: int, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``x`` normalized per row of its (rows, M) view by the engine's ``row_norm`` primitive (the one layer_norm
    and group_norm use); returns y shaped like x and the row means and biased variances. One-value rows
    normalize to 0, as ONNX's formula gives."""
    m = x.numel() // rows if rows else 0
    if m < 2:
        return x * 0.0, F.reshape(x, (rows,)), Tensor(np.zeros((rows,), x.dtype))
    y, mean, var = bind(row_norm_p, F.reshape(x, (rows, m)), eps=eps)
    return F.reshape(y, x.shape), mean, var


@converter("LayerNormalization")
def layer_norm(n: OnnxNode) -> Tensor | tuple[Tensor, ...]:
    """Normalize over the axes from ``axis`` on; the optional Mean and InvStdDev outputs keep those axes as 1."""
    x = n.tensor(0)
    scale, bias = n.tensor(1, like=x), (n.tensor(2, like=x) if n.has(2) else None)
    axis = n.axis(int(n.attr("axis", -1)), x.ndim)
    eps = float(n.attr("epsilon", 1e-5))
    y, mean, var = _rows_normalized(x, math.prod(x.shape[:axis]), eps)
    y = y * scale if bias is None else y * scale + bias
    if n.n_outputs == 1:
        return y
    stat = x.shape[:axis] + (1,) * (x.ndim - axis)
    return y, F.reshape(mean, stat), F.reshape(1.0 / F.sqrt(var + eps), stat)


@converter("GroupNormalization")
def group_norm(n: OnnxNode) -> Tensor:
    """Opset 21: per-channel scale and bias; opset 18: one per group (each repeated over its channels)."""
    x = n.tensor(0)
    scale, bias = n.tensor(1, like=x), n.tensor(2, like=x)
    groups, c = int(n.attr("num_groups")), x.shape[1]
    if groups < 1 or c % groups:
        raise n.fail(f"num_groups must divide the {c} channels (got num_groups={groups})")
    y, _, _ = _rows_normalized(x, x.shape[0] * groups, float(n.attr("epsilon", 1e-5)))
    want = c if n.opset >= 21 else groups
    if scale.shape != (want,) or bias.shape != (want,):
        raise n.fail(f"scale and bias must have shape [{want}] (got {list(scale.shape)} and {list(bias.shape)})")
    if n.opset < 21:
        scale, bias = (F.reshape(F.broadcast_to(F.reshape(t, (groups, 1)), (groups, c // groups)), (c,))
                       for t in (scale, bias))
    return y * _per_channel(scale, x.ndim) + _per_channel(bias, x.ndim)


@converter("LRN")
def lrn(n: OnnxNode) -> Tensor:
    """ONNX's channel window is [c - floor((size-1)/2), c + ceil((size-1)/2)] (PyTorch's differs for even sizes)."""
    x = n.tensor(0)
    size = int(n.attr("size"))
    alpha, beta, bias = float(n.attr("alpha", 1e-4)), float(n.attr("beta", 0.75)), float(n.attr("bias", 1.0))
    before = (size - 1) // 2
    c = x.shape[1]
    padded = F.pad(x * x, (0, 0) * (x.ndim - 2) + (before, size - 1 - before))
    window = F.slice(padded, 1, 0, c)
    for i in range(1, size):
        window = window + F.slice(padded, 1, i, i + c)
    return x / F.pow(window * (alpha / size) + bias, beta)


# --- matrix products --------------------------------------------------------------------------------------------
@converter("Gemm")
def gemm(n: OnnxNode) -> Tensor:
    a, b = n.tensor(0), n.tensor(1)
    c = n.tensor(2, like=a) if n.has(2) else None
    ta, tb = int(n.attr("transA", 0)), int(n.attr("transB", 0))
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    if not ta and tb and alpha == 1.0 and (c is None or (beta == 1.0 and c.shape == (b.shape[0],))):
        return F.linear(a, b, c)  # the Linear layer pattern: fold_bn and fuse_epilogue know it
    y = F.matmul(F.transpose(a, 0, 1) if ta else a, F.transpose(b, 0, 1) if tb else b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None and beta != 0.0:
        y = y + (c * beta if beta != 1.0 else c)
    return y


@converter("MatMul")
def matmul(n: OnnxNode) -> Tensor:
    a = n.tensor(0)
    b = n.tensor(1, like=a)
    va, vb = a.ndim == 1, b.ndim == 1
    y = F.matmul(F.unsqueeze(a, 0) if va else a, F.unsqueeze(b, 1) if vb else b)
    if va and vb:
        return F.reshape(y, y.shape[:-2])
    if vb:
        return F.reshape(y, y.shape[:-1])
    return F.reshape(y, y.shape[:-2] + y.shape[-1:]) if va else y


# --- activations ------------------------------------------------------------------------------------------------
def _hard_sigmoid(x: Tensor, alpha: float, beta: float) -> Tensor:
    return F.clamp(x * alpha + beta, 0.0, 1.0)


def _softplus(x: Tensor) -> Tensor:
    return F.relu(x) + F.log(F.exp(-F.abs(x)) + 1.0)  # log(1 + e^x) without overflow


@converter("Gelu")
def gelu(n: OnnxNode) -> Tensor:
    approximate = n.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise n.fail(f"approximate must be 'none' or 'tanh' (got {approximate!r})")
    return F.gelu(n.tensor(0), approximate)


@converter("Relu", "Sigmoid", "Tanh", "Softplus", "Softsign", "HardSwish", "Mish")
def activation(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    if n.op == "Relu":
        return F.relu(x)
    if n.op == "Sigmoid":
        return F.sigmoid(x)
    if n.op == "Tanh":
        return F.tanh(x)
    if n.op == "Softplus":
        return _softplus(x)
    if n.op == "Softsign":
        return x / (F.abs(x) + 1.0)
    if n.op == "Mish":
        return x * F.tanh(_softplus(x))
    return x * _hard_sigmoid(x, 1.0 / 6.0, 0.5)  # HardSwish


@converter("LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "ThresholdedRelu")
def parametric_activation(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    if n.op == "LeakyRelu":
        return F.leaky_relu(x, float(n.attr("alpha", 0.01)))
    if n.op == "Elu":
        return F.elu(x, float(n.attr("alpha", 1.0)))
    if n.op == "Selu":
        alpha = float(n.attr("alpha", 1.67326319217681884765625))
        gamma = float(n.attr("gamma", 1.05070102214813232421875))
        return F.elu(x, alpha) * gamma
    if n.op == "Celu":
        alpha = float(n.attr("alpha", 1.0))
        return F.elu(x * (1.0 / alpha), 1.0) * alpha
    if n.op == "HardSigmoid":
        return _hard_sigmoid(x, float(n.attr("alpha", 0.2)), float(n.attr("beta", 0.5)))
    return F.where(F.greater(x, float(n.attr("alpha", 1.0))), x, 0.0)  # ThresholdedRelu


@converter("PRelu")
def prelu(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    slope = n.tensor(1, like=x)
    if n.opset < 7 and slope.ndim == 1 and slope.shape[0] > 1:  # opset 6: one slope per channel (axis 1)
        slope = F.reshape(slope, (1, -1) + (1,) * (x.ndim - 2))
    return F.where(F.greater(x, 0.0), x, x * slope)


@converter("Clip", static=(1, 2))
def clip(n: OnnxNode) -> Tensor:
    x = n.tensor(0)
    if n.opset < 11:
        lo, hi = n.attr("min"), n.attr("max")
    else:
        lo, hi = (n.static(i, name) for i, name in ((1, "min"), (2, "max")))
    lo = None if lo is None or np.isneginf(lo) else float(np.asarray(lo).reshape(()))
    hi = None if hi is None or np.isposinf(hi) else float(np.asarray(hi).reshape(()))
    return F.clamp(x, lo, hi)


@converter("Softmax", "LogSoftmax")
def softmax(n: OnnxNode) -> Tensor:
    """Opset >= 13: along ``axis`` (default -1). Before: the input is coerced to 2-D at ``axis`` (default 1) and
    normalized over the whole second dimension."""
    x = n.tensor(0)
    fn = F.softmax if n.op == "Softmax" else F.log_softmax
    if n.opset >= 13:
        return fn(x, n.axis(int(n.attr("axis", -1)), x.ndim))
    axis = n.axis(int(n.attr("axis", 1)), max(x.ndim, 1)) if x.ndim else 0
    flat = F.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))
    return F.reshape(fn(flat, 1), x.shape)


@converter("Dropout", static=(1, 2))
def dropout(n: OnnxNode) -> Tensor | tuple:
    x = n.tensor(0)
    if n.opset >= 12:
        ratio = n.static(1, "ratio", 0.5)
        training = bool(n.static(2, "training_mode", False))
    else:
        ratio, training = n.attr("ratio", 0.5), False
    ratio = float(np.asarray(ratio).reshape(()))
    if (training or n.training) and ratio > 0.0:
        if n.n_outputs > 1:
            raise n.unsupported("the mask output in training mode")
        return F.dropout(x, ratio, training=True)
    return x, np.ones(x.shape, dtype=bool)
