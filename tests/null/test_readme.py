"""The README's Python blocks run as written: each ```python block, in a fresh namespace, in an empty folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.M | re.S)


def test_readme_has_the_quick_start_and_own_model_blocks():
    assert len(BLOCKS) == 2
    quick_start, own_model = BLOCKS
    for needle in ("loss.backward()", "graph.compile(", "print(cm.report)", "cm.render(", "timeit",
                   "(out.argmax(1) == y).float().mean()"):
        assert needle in quick_start, needle
    assert "class SmallNet(nn.Module)" in own_model


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=["quick_start", "own_model"][:len(BLOCKS)])
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys):
    if "render(" in BLOCKS[index] and shutil.which("dot") is None:
        pytest.skip("the graphviz `dot` binary is not installed")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "pass" in out and "memory: naive" in out  # the compile report was printed
    if "argmax" in BLOCKS[index]:  # the accuracy is a number in [0, 1], not False (Tensor == compares elements)
        assert 0.0 <= float(re.search(r"accuracy (\S+)", out).group(1)) <= 1.0
    if "render(" in BLOCKS[index]:
        assert "<svg" in (tmp_path / "lenet5.svg").read_text()
        assert re.search(r"eager [\d.]+ ms, compiled [\d.]+ ms", out)
    else:  # the summary table was printed, and the report's claim holds: no BatchNorm is left
        assert "conv1 (Conv2d)" in out and "25,626" in out
        assert not list(namespace["cm"].graph.find("batch_norm_infer"))


def test_readme_links_stay_inside_the_repository():
    root = README.parent.resolve()
    targets = re.findall(r"\]\(([^)]+)\)", README.read_text())
    assert targets and all("://" not in t for t in targets), targets
    for t in targets:
        assert (root / t).resolve().is_relative_to(root), f"README links outside the repository: {t}"
