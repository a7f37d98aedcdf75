"""Graph IR and tracer: structure, printing, verify() fix-it messages, networkx view, copies, abstract tracing."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import engine
import engine.functional as F
import graph
from engine import Spec, nn
from graph import Graph, GraphError

from .graph_models import TinyResNet, inputs


def _small_graph() -> Graph:
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    m.eval()
    return graph.trace(m, inputs((1, 3, 6, 6)))


def test_trace_records_params_buffers_and_modules():
    g = _small_graph().verify()
    assert [n.op.name for n in g.nodes] == ["conv2d", "batch_norm_infer", "relu"]
    kinds = {v.name: v.kind for v in g.inputs}
    assert kinds["0.weight"] == "param" and kinds["1.running_var"] == "buffer" and kinds["x"] in ("input",)
    assert g.user_inputs[0].shape == (1, 3, 6, 6)
    assert [n.meta["module"] for n in g.nodes] == ["0", "1", "2"]
    w = next(v for v in g.inputs if v.name == "0.weight")
    assert w.data.shape == (4, 3, 3, 3)
    assert g.nodes[0].out.users and list(g.nodes[1].out.users) == [g.nodes[2]]
    assert g.meta["training"] is False


def test_str_is_readable_text_ir():
    s = str(_small_graph())
    assert s.startswith("graph(%x: float32[1, 3, 6, 6])")
    assert "= conv2d(%x, %0.weight, %0.bias; stride=(1, 1)" in s
    assert "# module=1" in s and "return %relu" in s


def test_nested_module_paths_and_consts():
    m = TinyResNet()
    m.eval()
    g = graph.trace(m, inputs((1, 3, 8, 8)))
    mods = {n.meta.get("module") for n in g.nodes}
    assert {"layer1.conv1", "layer2.downsample.0", "fc"} <= mods
    # `out + identity` happens in layer1's own forward
    assert any(n.op.name == "add" and n.meta["module"] == "layer1" for n in g.nodes)


def test_python_control_flow_unrolls_and_consts_are_captured():
    def fn(x):
        for i in range(3):
            x = x * 2.0 if i % 2 == 0 else F.relu(x)
        return x

    g = graph.trace(fn, inputs((2, 3)))
    assert [n.op.name for n in g.nodes] == ["mul", "relu", "mul"]
    consts = g.consts
    assert consts and all(c.data is not None and c.data.shape == () for c in consts)
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    np.testing.assert_allclose(graph.run_graph(g, x)[0], fn(engine.Tensor(x)).data)


def test_abstract_trace_runs_no_kernels():
    m = TinyResNet()
    m.eval()

    class Boom(engine.Backend):
        def kernel(self, name):
            raise AssertionError(f"kernel {name} ran during an abstract trace")

    with engine.use_backend(Boom("boom")):
        g = graph.trace(m, Spec((2, 3, 16, 16), "float32"), abstract=True)
    assert g.outputs[0].shape == (2, 5)
    g.verify()


def test_multiple_outputs_and_tuple_structure():
    g = graph.trace(lambda a, b: (a + b, a * b), inputs((2,)), inputs((2,), 1))
    assert len(g.outputs) == 2 and g.meta["output_structure"] == "tuple"
    assert [v.name for v in g.user_inputs] == ["a", "b"]


def test_verify_reports_use_before_def_with_fix():
    g = _small_graph()
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]
    with pytest.raises(GraphError, match="before it is defined; move the node after the producer"):
        g.verify()


def test_verify_reports_stale_shapes_and_users():
    g = _small_graph()
    g.nodes[0].attrs["stride"] = (2, 2)
    with pytest.raises(GraphError, match="shape rule gives"):
        g.verify()
    g = _small_graph()
    g.nodes[2].inputs[0] = g.nodes[0].out  # bypassing Graph.set_input leaves `users` stale
    with pytest.raises(GraphError, match="users of .* are out of date"):
        g.verify()


def test_verify_reports_undefined_output_and_erase_guard():
    g = _small_graph()
    with pytest.raises(GraphError, match="still used"):
        g.erase_node(g.nodes[0])
    g.outputs = [g.nodes[1].out]
    g.erase_nodes({g.nodes[2]})
    g.verify()
    g.erase_nodes({g.nodes[1]})
    with pytest.raises(GraphError, match="graph output 0 .* is not defined"):
        g.verify()


def test_networkx_view_and_copy():
    m = TinyResNet()
    m.eval()
    g = graph.trace(m, inputs((1, 3, 8, 8)))
    d = g.to_networkx()
    assert nx.is_directed_acyclic_graph(d) and d.number_of_nodes() == len(g.nodes)
    assert list(nx.topological_sort(d))  # a valid schedule exists
    add = next(n for n in g.nodes if n.op.name == "add")
    assert nx.has_path(d, g.nodes[0], add)
    edge = next(iter(d.in_edges(add, data=True)))
    assert edge[2]["bytes"] == edge[2]["values"][0].nbytes
    c = g.copy().verify()
    assert str(c) == str(g)
    c.nodes.pop()  # the copy is independent
    assert len(g.nodes) == len(c.nodes) + 1
    assert len(g.to_networkx(include_inputs=True)) == len(g.nodes) + len(g.inputs)


def test_create_node_and_replace_all_uses():
    g = _small_graph()
    relu = g.nodes[2]
    sig = g.create_node("sigmoid", [relu.inputs[0]], before=relu)
    g.replace_all_uses(relu.out, sig.out)
    g.erase_node(relu)
    g.verify()
    assert g.outputs[0] is sig.out and [n.op.name for n in g.nodes][-1] == "sigmoid"


def test_stats_use_cost_rules():
    g = _small_graph()
    s = g.stats()
    assert s["macs"] == 1 * 4 * 6 * 6 * 3 * 3 * 3 and s["flops"] >= 2 * s["macs"] and s["kernels"] == 3
