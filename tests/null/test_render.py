"""graph.render draws real files through graphviz + the system dot binary; the SVGs parse and carry the labels."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

import graph
from graph.memory import plan_memory
from graph.passes import run_passes
from graph.render import render, render_before_after, render_memory_plan
from graph.summary import trace_shapes
from zoo import models

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="the graphviz `dot` binary is not installed")
SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(path) -> str:
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg"
    return "\n".join(t.text or "" for t in root.iter(SVG + "text"))


def svg_cluster_titles(path) -> list[str]:
    root = ET.parse(path).getroot()
    return [g.find(SVG + "title").text for g in root.iter(SVG + "g") if g.get("class") == "cluster"]


@pytest.fixture(scope="module")
def convnet():
    traced = trace_shapes(models.get("convnetjs_cifar10"), (1, 3, 32, 32))
    return traced, run_passes(traced.copy(), "inference")[0]


def test_op_nodes_and_edge_labels(convnet, tmp_path):
    traced, _ = convnet
    out = graph.render(traced, tmp_path / "convnet.svg")  # graph.render is the function, even after the import
    text = svg_texts(out)
    for needle in ("conv2d", "conv1", "1×16×32×32", "params 1.22K", "MACs 1.23M", "max_pool2d", "linear", "fc",
                   "1×10", "64.00 KiB"):  # 1×16×32×32 float32 = 64 KiB on the conv1 -> relu edge
        assert needle in text, needle


def test_formats(convnet, tmp_path):
    traced, _ = convnet
    dot = render(traced, tmp_path / "g.dot")
    assert dot.read_text().startswith("digraph")
    png = render(traced, tmp_path / "g.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="format must be one of"):
        render(traced, tmp_path / "g.bmp")


def test_fused_groups_are_clusters(convnet, tmp_path):
    _, optimized = convnet
    fused = [n for n in optimized.nodes if n.meta.get("fused")]
    assert fused, "the inference pipeline should fuse conv + bias + relu"
    out = render(optimized, tmp_path / "fused.svg")
    titles = svg_cluster_titles(out)
    assert len(titles) == len(fused) and all(t.startswith("cluster_fused_") for t in titles)
    assert "fused: conv2d + " in svg_texts(out)


def test_before_after(convnet, tmp_path):
    traced, optimized = convnet
    out = render_before_after(traced, optimized, tmp_path / "ba.svg")
    text = svg_texts(out)
    assert f"before ({len(traced.nodes)} nodes" in text and f"after ({len(optimized.nodes)} nodes" in text
    assert {"cluster_b_view", "cluster_a_view"} <= set(svg_cluster_titles(out))


def test_memory_plan_picture(convnet, tmp_path):
    _, optimized = convnet
    plan = plan_memory(optimized)
    out = render_memory_plan(plan, tmp_path / "mem.svg")
    text = svg_texts(out) if out.stat().st_size < 5_000_000 else ""
    ET.parse(out)  # parses
    assert out.stat().st_size > 1000
    assert "arena offset" in text or "arena" in out.read_text()
    png = render_memory_plan(plan, tmp_path / "mem.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name,labels", [
    ("resnet50", ["layer1.0.conv1", "layer4.2.conv3", "fc", "1×2048×2×2"]),
    ("googlenet", ["inception3a.branch2.1.conv", "inception5b.branch4.1.conv", "concat"]),
])
def test_zoo_models_op_level(name, labels, tmp_path):
    g = trace_shapes(models.get(name), (1, 3, 64, 64))
    text = svg_texts(render(g, tmp_path / f"{name}.svg"))
    for needle in labels:
        assert needle in text, needle


def test_densenet121_module_view(tmp_path):
    """DenseNet-121's op-level graph has ~430 nodes and O(n²) concat edges, which takes dot tens of seconds; the
    module view at depth 3 (one box per dense layer) is the readable picture."""
    g = trace_shapes(models.get("densenet121"), (1, 3, 64, 64))
    text = svg_texts(render(g, tmp_path / "densenet121.svg", depth=3))
    for needle in ("features.denseblock1.denselayer1", "features.denseblock4.denselayer16", "features.transition3",
                   "classifier (Linear)"):
        assert needle in text, needle


def test_cli_render(tmp_path, capsys):
    from zoo.cli import main

    out = tmp_path / "cli.svg"
    assert main(["render", "convnetjs_cifar10", "--out", str(out), "--passes", "inference"]) == 0
    assert "fused" in svg_texts(out)
    assert main(["render", "convnetjs_cifar10", "--out", str(tmp_path / "ba.svg"), "--before-after"]) == 0
    assert main(["render", "convnetjs_cifar10", "--out", str(tmp_path / "m.png"), "--memory"]) == 0
    assert (tmp_path / "m.png").stat().st_size > 1000
