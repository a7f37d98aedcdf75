"""Graph passes and the pipeline runner.

A pass is ``def name(graph) -> PassResult(graph, changed)`` registered with ``@graph_pass(name, requires=...,
modes=...)`` (graph/passes/registry.py), which declares the passes it needs before it and the graph modes it
accepts; pipelines are checked against both. Passes rewrite the graph in place (``graph.copy()`` first to keep
the original) and return it. Pipelines are flat, named lists of pass names; :func:`run_passes` runs one,
verifying the graph after every pass and recording what each pass changed (nodes before/after, kernels, FLOPs,
bytes, time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..ir import Graph

# importing a pass module registers its passes
from .constant_fold import constant_fold
from .conv_prologue import conv_prologue
from .cse import cse
from .dce import dce
from .fold_bn import fold_bn
from .fuse_backward import fold_transpose_matmul, fuse_cross_entropy, fuse_pool_relu_grad
from .fuse_conv_pool import fuse_conv_relu_pool
from .fuse_epilogue import fuse_epilogue, fuse_epilogue_joint
from .layout import channel_block, layout, layout_mode
from .lower_1x1 import lower_1x1
from .registry import PASSES, GraphPass, Pass, PassResult, check_pipeline, graph_pass, pass_name
from .remove_dropout import remove_dropout, remove_identities
from .train_layout import set_channel_block, train_layout


def pipeline(*names: str) -> list[str]:
    """A named pipeline, checked when it is defined (each pass's required passes run before it)."""
    check_pipeline(resolve(list(names)))
    return list(names)


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
    check_pipeline(out)
    return out


PIPELINES: dict[str, list[str]] = {
    # eval-mode inference: clean up, fold BN into convs, then fuse conv/linear epilogues
    "inference": pipeline("remove_dropout", "dce", "cse", "constant_fold", "fold_bn", "fuse_epilogue", "layout",
                          "conv_prologue", "dce"),
    # as above, but 1x1 stride-1 convs become matmuls before fusion (they then stay unfused)
    "inference_lower_1x1": pipeline("remove_dropout", "dce", "cse", "constant_fold", "fold_bn", "lower_1x1",
                                    "fuse_epilogue", "layout", "conv_prologue", "dce"),
    # training-mode graphs: only rewrites that keep batch statistics and dropout
    "training": pipeline("remove_identities", "dce", "cse"),
    # joint forward+backward graphs (compile() in train mode, compile_step): the backward is explicit nodes, so
    # epilogue fusion is legal wherever the backward does not read the fused-away intermediate; in the backward,
    # max-pool gradient x ReLU mask x bias-gradient sum become one pass, and so do cross-entropy's loss and gradient;
    # a linear layer's weight gradient reads the transposed output gradient in place; conv -> ReLU -> 2x2 max
    # pool keeps only the pool's winners for the backward (on backends with kernels for it); with a channel block
    # (compile_step / compile's layout option) activations and their gradients stay blocked between convolutions
    "training_joint": pipeline("remove_identities", "dce", "cse", "fuse_epilogue_joint", "fuse_pool_relu_grad",
                               "fuse_conv_relu_pool", "fuse_cross_entropy", "fold_transpose_matmul", "train_layout",
                               "dce"),
    "none": [],
}


def run_passes(graph: Graph, passes: str | Sequence[str | Pass] | None = None, *, verify: bool = True,
               instrument: Callable[[str, Graph], None] | None = None) -> tuple[Graph, list[dict[str, Any]]]:
    """Run a pipeline. Returns the graph and one report row per pass. ``instrument(pass_name, graph)`` is called
    after every pass (e.g. ``lambda n, g: print(n, g)`` to dump the IR)."""
    rows = []
    before = graph.stats()
    pipe = resolve(passes, bool(graph.meta.get("training")))
    check_pipeline(pipe, graph)  # every pass accepts the graph's mode, before any of them runs
    for p in pipe:
        name = pass_name(p)
        t0 = time.perf_counter()
        graph, changed = p(graph)
        dt = time.perf_counter() - t0
        if verify:
            try:
                graph.verify()
            except Exception as e:
                e.add_note(f"after pass {name}")
                raise
        after = graph.stats() if changed else before
        rows.append({"pass": name, "changed": bool(changed), "nodes_before": before["nodes"],
                     "nodes_after": after["nodes"], "kernels": after["kernels"], "flops_before": before["flops"],
                     "flops": after["flops"], "bytes": after["bytes"], "time_s": dt})
        before = after
        if instrument is not None:
            instrument(name, graph)
    return graph, rows


__all__ = ["PassResult", "PASSES", "PIPELINES", "GraphPass", "graph_pass", "check_pipeline", "pipeline", "run_passes",
           "resolve", "constant_fold", "cse", "dce", "fold_bn", "fuse_epilogue", "lower_1x1", "remove_dropout",
           "remove_identities", "fuse_epilogue_joint", "fuse_pool_relu_grad", "fuse_cross_entropy",
           "fold_transpose_matmul", "fuse_conv_relu_pool", "layout",
           "conv_prologue", "channel_block", "layout_mode", "train_layout", "set_channel_block"]
