"""Single-node ONNX models against onnxruntime, for the edges the shipped backend cases do not reach: even LRN
sizes, asymmetric / large pool padding, ceil mode where the last window would start in the right padding,
count_include_pad, SAME padding, legacy Softmax coercion, negative-step Slice.

onnxruntime, not onnx.reference, is the oracle here: the reference evaluator (onnx 1.23) loops LRN over the batch
axis instead of the channels, pads SAME_LOWER pools on the wrong side and gives opset-11 Softmax opset-13 semantics
(all three checked against onnxruntime, which agrees with the importer)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import graph
import graph.onnx as gx


def _model(op: str, x_shape: tuple[int, ...], opset: int = 18, extra: dict | None = None, **attrs):
    """One node reading x (and constant inputs given in ``extra`` as name -> array, in order)."""
    extra = extra or {}
    inits = [helper.make_tensor(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape, v.reshape(-1).tolist())
             for k, v in extra.items()]
    node = helper.make_node(op, ["x", *extra], ["y"], **attrs)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _check(model, x: np.ndarray, compiled: bool = False, oracle: str = "onnxruntime", atol: float = 1e-6) -> None:
    if oracle == "onnxruntime":
        ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    else:
        ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    m = gx.load(model)
    got = np.asarray(graph.compile(m, x)(x)) if compiled else m(x).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=atol)


X = np.random.default_rng(0).standard_normal((2, 3, 9, 10)).astype(np.float32)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn_window_even_and_odd(size):
    # onnxruntime rejects even sizes; the reference's batch-for-channel loop is harmless when N == C
    x = np.random.default_rng(3).standard_normal((5, 5, 4, 3)).astype(np.float32)
    _check(_model("LRN", x.shape, size=size, alpha=0.3, beta=0.75, bias=2.0), x, oracle="reference")


POOLS = [
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),  # native path
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 2, 0]),  # asymmetric
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[2, 2, 2, 2]),  # pads larger than kernel // 2
    dict(kernel_shape=[3, 2], strides=[3, 3], pads=[0, 0, 2, 1], ceil_mode=1),  # ceil with asymmetric pads
    dict(kernel_shape=[2, 3], strides=[2, 1], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[4, 3], strides=[3, 2], auto_pad="SAME_LOWER"),
]


@pytest.mark.parametrize("attrs", POOLS)
@pytest.mark.parametrize("include", [0, 1])
def test_average_pool_padding_rules(attrs, include):
    _check(_model("AveragePool", X.shape, count_include_pad=include, **attrs), X)


@pytest.mark.parametrize("attrs", POOLS + [dict(kernel_shape=[3, 3], dilations=[2, 1], pads=[2, 1, 0, 1])])
def test_max_pool_padding_rules(attrs):
    _check(_model("MaxPool", X.shape, **attrs), X)


def test_ceil_mode_drops_a_window_starting_in_the_right_padding():
    # 5 + 1 + 1 - 2 = 5, ceil(5 / 2) + 1 = 4 windows, but the 4th would start at 6 >= 5 + 1: ONNX (and PyTorch) keep 3
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    m = _model("MaxPool", x.shape, kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    assert gx.load(m)(x).shape == (1, 1, 3, 3)
    _check(m, x)


def test_lp_pool_and_global_lp_pool():
    _check(_model("LpPool", X.shape, kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 0, 1], p=3), X)
    _check(_model("GlobalLpPool", X.shape, p=2), X)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad_and_groups(auto_pad):
    w = np.random.default_rng(1).standard_normal((6, 1, 3, 2)).astype(np.float32)
    _check(_model("Conv", X.shape, extra={"w": w}, auto_pad=auto_pad, strides=[2, 3], group=3), X, compiled=True)


def test_conv_transpose_asymmetric_pads_and_output_padding():
    w = np.random.default_rng(2).standard_normal((3, 2, 3, 3)).astype(np.float32)
    _check(_model("ConvTranspose", X.shape, extra={"w": w}, strides=[2, 3], pads=[1, 0, 0, 2],
                  output_padding=[1, 2]), X)


@pytest.mark.parametrize("axis", [1, 2, -1])
def test_softmax_coerces_to_2d_before_opset_13(axis):
    _check(_model("Softmax", X.shape, opset=11, axis=axis), X)
    _check(_model("LogSoftmax", X.shape, opset=18, axis=axis), X)


def test_slice_with_negative_steps():
    extra = {k: np.array(v, np.int64) for k, v in
             dict(starts=[-1, 8], ends=[-100, 1], axes=[1, 3], steps=[-1, -3]).items()}
    _check(_model("Slice", X.shape, extra=extra), X)


def test_gather_constant_indices_and_pad_negative():
    idx = np.array([[2, 0], [-1, 1]], np.int64)
    _check(_model("Gather", X.shape, extra={"i": idx}, axis=2), X)
    _check(_model("Pad", X.shape, extra={"p": np.array([0, 1, -2, 3, 0, 0, 1, -1], np.int64)}), X)


def test_nearest_upsampling_by_integer_factors():
    scales = np.array([1, 1, 2, 3], np.float32)
    _check(_model("Resize", X.shape, extra={"roi": np.zeros(0, np.float32), "scales": scales}, mode="nearest"), X)


RESIZES = [  # (attributes, scales or sizes): onnxruntime is an independent oracle for the reference's matrices
    (dict(mode="linear"), [1, 1, 1.7, 0.6]),
    (dict(mode="linear", coordinate_transformation_mode="align_corners"), [1, 1, 2, 1.5]),
    (dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel"), (2, 3, 1, 7)),
    (dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1), [1, 1, 1.5, 0.8]),
    (dict(mode="cubic", coordinate_transformation_mode="asymmetric"), (2, 3, 13, 4)),
    (dict(mode="nearest", nearest_mode="round_prefer_ceil", coordinate_transformation_mode="asymmetric"),
     [1, 1, 1.5, 0.6]),
    (dict(mode="nearest", nearest_mode="ceil", coordinate_transformation_mode="half_pixel"), (2, 3, 4, 23)),
    (dict(mode="linear", antialias=1), [1, 1, 0.5, 0.6]),
    (dict(mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_larger"), (5, 7)),  # 9x10 -> 5x6
    (dict(mode="nearest", axes=[3, 2], keep_aspect_ratio_policy="not_smaller"), (4, 7)),  # 9x10 -> 7x8
]


@pytest.mark.parametrize("attrs,target", RESIZES)
def test_resize_modes_match_onnxruntime(attrs, target):
    extra = {"roi": np.zeros(0, np.float32)}
    if isinstance(target, tuple):
        extra.update(scales=np.zeros(0, np.float32), sizes=np.array(target, np.int64))
    else:
        extra["scales"] = np.array(target, np.float32)
    # onnxruntime computes source coordinates in float32 (the reference in float64): ~2e-6 apart for 5/9
    _check(_model("Resize", X.shape, extra=extra, **attrs), X, compiled=True, atol=1e-5)


def test_tf_crop_and_resize_extrapolates_outside_the_roi():
    extra = {"roi": np.array([0, 0, -0.3, 0.2, 1, 1, 0.9, 1.4], np.float32), "scales": np.zeros(0, np.float32),
             "sizes": np.array([2, 3, 5, 6], np.int64)}
    _check(_model("Resize", X.shape, extra=extra, mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                  extrapolation_value=7.5), X)


@pytest.mark.parametrize("mode", ["edge", "reflect", "wrap"])
def test_pad_modes_with_negative_pads(mode):
    # a negative pad crops first, then the border mode pads from what is left (onnxruntime does the same)
    pads = np.array([0, 1, 2, -3, 0, 0, 3, 2], np.int64)
    _check(_model("Pad", X.shape, extra={"p": pads}, mode=mode), X, compiled=True)


def test_train_mode_batch_norm_updates_running_statistics_onnx_momentum():
    c = X.shape[1]
    extra = {"s": np.ones(c, np.float32), "b": np.zeros(c, np.float32), "m": np.zeros(c, np.float32),
             "v": np.ones(c, np.float32)}
    m = gx.load(_model("BatchNormalization", X.shape, extra=extra, momentum=0.75))
    assert sorted(n for n, _ in m.named_buffers()) == ["m", "v"] and sorted(n for n, _ in m.named_parameters()) == \
        ["b", "s"]
    m.train()
    m(X)
    np.testing.assert_allclose(m.m.numpy(), 0.25 * X.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)


def test_dotted_initializer_names_become_submodules():
    w = np.ones((4, 10), np.float32)
    model = _model("Gemm", (2, 10), extra={"head.fc.weight": w, "head.fc.bias": np.zeros(4, np.float32)}, transB=1)
    m = gx.load(model)
    assert list(m.state_dict()) == ["head.fc.weight", "head.fc.bias"]
    assert m.head.fc.weight.requires_grad


@pytest.mark.parametrize("attrs", [dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 2, 1], ceil_mode=1),
                                   dict(kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 1], storage_order=1)])
def test_max_pool_indices_output(attrs):
    x = np.round(X * 2) / 2  # ties, so "first maximum in window order" matters
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], **attrs)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("i", TensorProto.INT64, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    y, i = gx.load(model)(x)
    np.testing.assert_array_equal(y.numpy(), ref[0])
    np.testing.assert_array_equal(i.numpy(), ref[1])


@pytest.mark.parametrize("include", [0, 1])
def test_dilated_average_and_lp_pool(include):
    attrs = dict(kernel_shape=[3, 3], strides=[2, 1], dilations=[2, 3], pads=[1, 2, 0, 1], ceil_mode=1)
    _check(_model("AveragePool", X.shape, opset=19, count_include_pad=include, **attrs), X)
    _check(_model("LpPool", X.shape, opset=18, p=2, **attrs), X)
