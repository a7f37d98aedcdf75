"""The ONNX backend test cases shipped in the onnx wheel, run through tests/null/onnx_backend.py.

- Node cases: the wheel has no data/node directory; its node cases are generated in memory by the modules of
  ``onnx.backend.test.case.node`` (inputs and expected outputs from numpy / the ONNX reference). Only the modules
  that test an op the importer converts are imported (importing all takes ~15 s), and every generated case whose ops
  are all supported runs, unless EXCLUDE says why not.
- data/pytorch-converted and data/pytorch-operator: every case runs, or is excluded with its reason.
- data/light: the nine real-world CNNs (weights as ConstantOfShape, inputs from the runner's dummy data) import,
  compile and match their shipped expected outputs. data/real only holds URLs (no internet here); in this wheel they
  point at the same light models.
"""

from __future__ import annotations

import glob
import importlib
import os
import pkgutil
import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.backend.test.case import node as case_node
from onnx.backend.test.runner import Runner

import graph.onnx as gx
from graph.onnx import CONVERTERS, OnnxImportError

from .onnx_backend import ConvgraphBackend

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
FOLDED = {"Constant", "Shape", "Size", "ConstantOfShape"}

# regex on the case name -> why it does not run
EXCLUDE = {
    r"^test_(averagepool|convtranspose|lppool|maxpool)_3d":
        "3-D (volumetric) convolution/pooling: the engine's conv and pool primitives are 2-D",
    r"(FLOAT8|FLOAT4|E8M0|INT4|INT2|UINT4|UINT2|BFLOAT16|bfloat16)": "8/4/2-bit and bfloat16 types: no engine dtype",
    r"(float16|FLOAT16|fp16)": "float16: the engine computes in float32/float64",
    r"^test_(div_u?int|clip_default_int8_m(in|ax)$|maxpool_2d_uint8|reduce_min_bool)":
        "integer/bool operands to Div, Clip bounds, pooling and Neg-based reductions: the engine's div, clamp, pooling "
        "and neg are float-only (a clear error naming the node)",
    r"empty_set_bool": "reducing an empty axis of a bool tensor (a clear error)",
    r"^test_identity_(opt|sequence)": "optional and sequence types",
    r"^test_training_dropout(_default)?(_mask)?$":
        "training-mode Dropout with ratio > 0 is random: the mask cannot equal the reference's",
    # data/pytorch-converted and pytorch-operator
    r"^test_(AvgPool|MaxPool|Conv|BatchNorm)3d": "3-D convolution/pooling/BatchNorm3d inputs",
    r"^test_Embedding": "Gather with runtime indices (an embedding lookup)",
}


def _excluded(name: str) -> str | None:
    return next((why for pat, why in EXCLUDE.items() if re.search(pat, name)), None)


def _node_cases() -> list:
    """Import the case modules that mention a supported op; keep the cases whose ops are all supported."""
    ops = set(CONVERTERS) | FOLDED
    for m in pkgutil.iter_modules(case_node.__path__):
        if m.ispkg:
            continue
        with open(os.path.join(case_node.__path__[0], m.name + ".py")) as f:
            text = f.read()
        if any(f'"{op}"' in text for op in ops):
            importlib.import_module(f"{case_node.__name__}.{m.name}")
    seen, cases = set(), []
    for c in case_node._NodeTestCases:
        if c.name not in seen and all(n.op_type in ops for n in c.model.graph.node):
            seen.add(c.name)
            cases.append(c)
    return cases


NODE_CASES = _node_cases()


def _check(name: str, model: onnx.ModelProto, data_sets, rtol: float, atol: float, compiled: bool = False) -> None:
    why = _excluded(name)
    if why:
        pytest.skip(why)
    rep = ConvgraphBackend.prepare(model, compiled=compiled)
    for inputs, ref in data_sets:
        inputs = [numpy_helper.to_array(i) if isinstance(i, onnx.TensorProto) else i for i in inputs]
        ref = [numpy_helper.to_array(r) if isinstance(r, onnx.TensorProto) else r for r in ref]
        Runner.assert_similar_outputs(ref, list(rep.run(inputs)), rtol=rtol, atol=atol)


def test_node_cases_cover_the_cnn_ops():
    ops = {n.op_type for c in NODE_CASES for n in c.model.graph.node}
    assert {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "BatchNormalization", "Gemm", "MatMul", "Softmax",
            "Reshape", "Slice", "Pad", "Gather", "LRN", "Clip"} <= ops
    assert len(NODE_CASES) > 700


@pytest.mark.parametrize("case", NODE_CASES, ids=lambda c: c.name)
def test_node(case):
    _check(case.name, case.model, case.data_sets, case.rtol, case.atol)


def _data_dirs(kind: str) -> list[str]:
    return sorted(d for d in glob.glob(os.path.join(DATA, kind, "test_*")) if os.path.exists(f"{d}/model.onnx"))


def _load_data_sets(d: str) -> list:
    sets = []
    for ds in sorted(glob.glob(os.path.join(d, "test_data_set_*"))):
        read = [numpy_helper.to_array(onnx.load_tensor(f)) for f in sorted(glob.glob(f"{ds}/input_*.pb"))]
        ref = [numpy_helper.to_array(onnx.load_tensor(f)) for f in sorted(glob.glob(f"{ds}/output_*.pb"))]
        sets.append((read, ref))
    return sets


@pytest.mark.parametrize("case_dir", _data_dirs("pytorch-converted") + _data_dirs("pytorch-operator"),
                         ids=os.path.basename)
def test_pytorch_cases(case_dir):
    _check(os.path.basename(case_dir), onnx.load(f"{case_dir}/model.onnx"), _load_data_sets(case_dir), 1e-3, 1e-7)


LIGHT = sorted(glob.glob(os.path.join(DATA, "light", "light_*.onnx")))


@pytest.mark.parametrize("path", LIGHT, ids=lambda p: os.path.basename(p)[6:-5])
def test_light_model_compiles_and_matches_its_expected_output(path):
    model = onnx.load(path)
    inits = {t.name for t in model.graph.initializer}
    inputs = [Runner.generate_dummy_data(i, seed=0, name=path, random=False)
              for i in model.graph.input if i.name not in inits]
    assert gx.load(model).input_shapes[0] == (1, 3, 224, 224)  # the declared size a CLI defaults to
    expected = numpy_helper.to_array(onnx.load_tensor(path[:-5] + "_output_0.pb"))
    _check("light", model, [(inputs, [expected])], 1e-3, 1e-7, compiled=True)


def test_light_models_are_all_here():
    assert len(LIGHT) == 9


def test_unsupported_op_names_op_node_and_opset():
    from onnx import TensorProto, helper

    node = helper.make_node("Erf", ["x"], ["y"], name="my_erf")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match=r"Erf node 'my_erf' \(opset 17\).*not supported"):
        ConvgraphBackend.prepare(model)


def test_constant_subgraphs_of_unsupported_ops_fold():
    # Erf of a constant is computed at load by the ONNX reference evaluator: nothing reaches the engine
    from onnx import TensorProto, helper

    import graph.onnx as gx

    nodes = [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [2], [0.5, 1])),
             helper.make_node("Erf", ["c"], ["e"]), helper.make_node("Add", ["x", "e"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = gx.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    from math import erf

    y = m(np.zeros(2, np.float32)).numpy()
    np.testing.assert_allclose(y, [erf(0.5), erf(1.0)], rtol=1e-6)


@pytest.mark.parametrize("case", ["test_div_int8", "test_clip_default_int8_min", "test_maxpool_2d_uint8",
                                  "test_reduce_max_empty_set_bool"])
def test_integer_cases_outside_the_engine_are_clear_errors(case):
    # excluded above, but never a silently wrong model: each is an OnnxImportError naming the op, node and opset
    c = next(c for c in NODE_CASES if c.name == case)
    op = c.model.graph.node[0].op_type
    with pytest.raises(OnnxImportError, match=rf"^{op} node '.*' \(opset \d+\): .*(integer|floating point|bool)"):
        _check("run", c.model, c.data_sets, c.rtol, c.atol)
