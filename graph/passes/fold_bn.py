"""conv/linear + BatchNorm folding for inference."""

from __future__ import annotations

import numpy as np

from ..executor import eval_op
from ..ir import Graph, Node, Value
from .registry import PassResult, graph_pass

_BASES = ("conv2d", "linear")


def _frozen(v: Value) -> bool:
    return v.is_frozen and v.data is not None


def _probe(x: Value, node: Node) -> tuple[np.ndarray, dict]:
    """A small random input for the folded subgraph and the attrs to run it with. The fold is per output channel,
    so one receptive field (one output pixel: no padding, unit stride) exercises every weight."""
    shape = list(x.shape)
    shape[0] = 1
    attrs = dict(node.attrs)
    if node.op.name == "conv2d":
        kh, kw = node.inputs[1].shape[2:]
        dh, dw = node.attrs["dilation"]
        shape[2:] = [(kh - 1) * dh + 1, (kw - 1) * dw + 1]
        attrs.update(stride=(1, 1), padding=((0, 0), (0, 0)))
    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32).astype(x.dtype, copy=False), attrs


def _fold_error(base: Node, bn: Node, new: Node) -> tuple[float, str]:
    """Max abs difference between BN(base(x)) and the folded node, on the example input of the subgraph when the
    trace kept one (``trace(keep_examples=True)``), else on a probe input."""
    example = base.inputs[0].meta.get("example")
    xp, attrs = (example, dict(base.attrs)) if example is not None else _probe(base.inputs[0], base)
    y = eval_op(bn.op, eval_op(base.op, xp, *(v.data for v in base.inputs[1:]), **attrs),
                *(v.data for v in bn.inputs[1:]), **bn.attrs)
    folded = eval_op(new.op, xp, *(v.data for v in new.inputs[1:]), **attrs)
    return float(np.max(np.abs(y.astype(np.float64) - folded))), "example" if example is not None else "probe"


@graph_pass("fold_bn", modes=("inference",),
            why="BatchNorm normalizes with batch statistics in training, which no weight folds")
def fold_bn(graph: Graph) -> PassResult:
    """Fold ``batch_norm_infer`` into the conv2d/linear that feeds it:
    ``W' = W * g / sqrt(var + eps)`` (per output channel), ``b' = (b - mean) * g / sqrt(var + eps) + beta``.

    Handles convs without bias (b = 0), BN without affine (its weight/bias are consts of ones/zeros), grouped and
    depthwise convs (output channel = ``w.shape[0]`` in every case) and BN after a linear layer on (N, F) inputs.
    Skips (leaves unchanged): a conv/linear whose output has other users, a BN whose output is a graph output,
    non-frozen weights or statistics. Each folded node records ``meta["fold_error"]``: the max abs difference
    between conv+BN and the folded conv on the subgraph's example input when the trace kept examples, else on a
    random probe input (one receptive field: one output pixel); also collected in ``graph.meta["fold_errors"]``
    (keyed by module path; ``meta["fold_error_input"]`` says which input was used).

    Needs frozen params (``model.eval()`` before tracing); training graphs are refused (see the registration).
    """
    if graph.find("batch_norm_train"):
        raise ValueError("fold_bn: the graph has batch_norm_train nodes (BatchNorm with batch statistics, which "
                         "cannot be folded into conv weights); call model.eval() before trace/compile, or leave "
                         "fold_bn out of the passes")
    changed = False
    for bn in graph.find("batch_norm_infer"):
        x, gamma, beta, mean, var = bn.inputs
        base = x.producer
        if base is None or base.op.name not in _BASES or graph.is_output(bn.out) or graph.is_output(x):
            continue
        if list(x.users) != [bn] or not all(_frozen(v) for v in (gamma, beta, mean, var, *base.inputs[1:])):
            continue
        if base.op.name == "linear" and len(x.shape) != 2:
            continue  # BN's channel axis is 1: only (N, F) linear outputs normalize per output feature
        # per-channel factors in float64; the weight is scaled in its own dtype (one rounding per element)
        w = base.inputs[1].data
        b = base.inputs[2].data.astype(np.float64) if len(base.inputs) == 3 else np.zeros(w.shape[0])
        scale = gamma.data.astype(np.float64) / np.sqrt(var.data.astype(np.float64) + bn.attrs["eps"])
        w_new = w * scale.astype(w.dtype).reshape((-1,) + (1,) * (w.ndim - 1))
        b_new = ((b - mean.data) * scale + beta.data).astype(x.dtype)
        # read-only: the folded constants belong to the graph alone, and a backend may cache what it derives from
        # immutable weights (numba's Winograd keeps the transformed kernel)
        w_new.setflags(write=False)
        b_new.setflags(write=False)
        wname = base.inputs[1].name
        wv = graph.add_const(f"{wname}.bn_folded", w_new)
        bv = graph.add_const(f"{wname.rsplit('.', 1)[0]}.bias.bn_folded" if "." in wname else f"{wname}.bias",
                             b_new)
        meta = dict(base.meta, fused=base.meta.get("fused", [base.op.name]) + ["batch_norm_infer"],
                    folded_bn=bn.name, bn_module=bn.meta.get("module"))
        new = graph.create_node(base.op, [base.inputs[0], wv, bv], base.attrs, name=base.name, meta=meta,
                                before=bn)
        err, on = _fold_error(base, bn, new)
        new.meta["fold_error"] = err
        new.meta["fold_error_input"] = on
        graph.replace_all_uses(bn.out, new.out)
        graph.erase_nodes({bn, base})
        graph.rename(new, base.name)
        graph.meta.setdefault("fold_errors", {})[base.meta.get("module") or new.name] = err
        changed = True
    if changed:
        graph.remove_unused_inputs()
    return PassResult(graph, changed)
