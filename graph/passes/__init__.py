"""Graph passes and the pipeline runner.

A pass is ``def name(graph) -> PassResult(graph, changed)``; its docstring states its preconditions. Passes
rewrite the graph in place (``graph.copy()`` first to keep the original) and return it. Pipelines are flat,
named lists of pass names; :func:`run_passes` runs one, verifying the graph after every pass and recording what
each pass changed (nodes before/after, kernels, FLOPs, bytes, time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..ir import Graph


class PassResult(NamedTuple):
    graph: Graph
    changed: bool


Pass = Callable[[Graph], PassResult]

from .constant_fold import constant_fold  # noqa: E402
from .cse import cse  # noqa: E402
from .dce import dce  # noqa: E402
from .fold_bn import fold_bn  # noqa: E402
from .fuse_epilogue import fuse_epilogue  # noqa: E402
from .lower_1x1 import lower_1x1  # noqa: E402
from .remove_dropout import remove_dropout  # noqa: E402

PASSES: dict[str, Pass] = {p.__name__: p for p in (dce, cse, constant_fold, remove_dropout, fold_bn, fuse_epilogue,
                                                    lower_1x1)}

PIPELINES: dict[str, list[str]] = {
    # eval-mode inference: clean up, fold BN into convs, then fuse conv/linear epilogues
    "inference": ["remove_dropout", "dce", "cse", "constant_fold", "fold_bn", "fuse_epilogue", "dce"],
    # as above, but 1x1 stride-1 convs become matmuls before fusion (they then stay unfused)
    "inference_lower_1x1": ["remove_dropout", "dce", "cse", "constant_fold", "fold_bn", "lower_1x1",
                            "fuse_epilogue", "dce"],
    # training-mode graphs: only rewrites that keep batch statistics and dropout
    "training": ["remove_dropout", "dce", "cse"],
    # joint forward+backward graphs (compile() in train mode, compile_step): the backward is explicit nodes, so
    # epilogue fusion is legal wherever the backward does not read the fused-away intermediate (it checks users)
    "training_joint": ["remove_dropout", "dce", "cse", "fuse_epilogue", "dce"],
    "none": [],
}


def resolve(passes: str | Sequence[str | Pass] | None, training: bool = False) -> list[Pass]:
    """A pipeline name, a list of pass names/functions, or None (the default pipeline for the mode)."""
    if passes is None:
        passes = "training" if training else "inference"
    if isinstance(passes, str):
        if passes not in PIPELINES:
            raise ValueError(f"unknown pipeline {passes!r}; known: {sorted(PIPELINES)} (or pass a list of passes "
                             f"from {sorted(PASSES)})")
        passes = PIPELINES[passes]
    out = []
    for p in passes:
        if isinstance(p, str):
            if p not in PASSES:
                raise ValueError(f"unknown pass {p!r}; known passes: {sorted(PASSES)}")
            p = PASSES[p]
        out.append(p)
    return out


def run_passes(graph: Graph, passes: str | Sequence[str | Pass] | None = None, *, verify: bool = True,
               instrument: Callable[[str, Graph], None] | None = None) -> tuple[Graph, list[dict[str, Any]]]:
    """Run a pipeline. Returns the graph and one report row per pass. ``instrument(pass_name, graph)`` is called
    after every pass (e.g. ``lambda n, g: print(n, g)`` to dump the IR)."""
    rows = []
    before = graph.stats()
    for p in resolve(passes, bool(graph.meta.get("training"))):
        t0 = time.perf_counter()
        graph, changed = p(graph)
        dt = time.perf_counter() - t0
        if verify:
            try:
                graph.verify()
            except Exception as e:
                raise type(e)(f"after pass {p.__name__}: {e}") from e
        after = graph.stats() if changed else before
        rows.append({"pass": p.__name__, "changed": bool(changed), "nodes_before": before["nodes"],
                     "nodes_after": after["nodes"], "kernels": after["kernels"], "flops_before": before["flops"],
                     "flops": after["flops"], "bytes": after["bytes"], "time_s": dt})
        before = after
        if instrument is not None:
            instrument(p.__name__, graph)
    return graph, rows


__all__ = ["PassResult", "PASSES", "PIPELINES", "run_passes", "resolve", *PASSES]
