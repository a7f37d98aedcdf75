"""``convgraph import MODEL.onnx --out FILE.npz``: import an ONNX model (graph.onnx.load), print what it holds,
and save its parameters and buffers as an engine.io checkpoint. Restore them with
``engine.io.load_checkpoint(FILE, model=graph.onnx.load(MODEL.onnx))``; the checkpoint's ``extra`` keeps the
source file, the ONNX name of every state-dict entry, the opset and the declared input shapes."""

from __future__ import annotations

import argparse
import os
from collections import Counter

from .common import check_output_file, is_onnx_path, load_onnx, read_onnx


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("import", help="import an .onnx model and save its parameters as a checkpoint",
                              description=__doc__)
    p.add_argument("model", help="path to an .onnx file")
    p.add_argument("--out", required=True, help="checkpoint file (.npz) in an existing folder")
    p.set_defaults(func=run)


def describe(path: str, proto, model) -> str:
    """One paragraph: graph, opset, op counts, inputs/outputs, parameter and buffer totals."""
    ops = Counter(n.op_type for n in proto.graph.node)
    op_text = ", ".join(f"{op} {k}" for op, k in ops.most_common())
    params = [p.data for p in model.parameters()]
    buffers = [b.data for b in model.buffers()]
    n_params = sum(int(a.size) for a in params)
    n_bytes = sum(int(a.nbytes) for a in params + buffers)
    shapes = ", ".join(f"{name} {'x'.join('?' if d is None else str(d) for d in s) if s else '(no shape)'}"
                       for name, s in zip(model.input_names, model.input_shapes))
    return (f"{os.path.basename(path)}: graph '{proto.graph.name}', opset {model.opset}, "
            f"{len(proto.graph.node)} nodes ({op_text}); input {shapes}; outputs {', '.join(model.output_names)}; "
            f"{n_params:,} parameters in {len(params)} tensors, {sum(int(a.size) for a in buffers):,} buffer "
            f"values in {len(buffers)} tensors ({n_bytes / 2**20:.2f} MiB)")


def run(args: argparse.Namespace) -> int:
    from engine import io

    if not is_onnx_path(args.model):
        raise ValueError(f"{args.model}: expected a path ending in .onnx")
    check_output_file(args.out)
    proto = read_onnx(args.model)
    model = load_onnx(args.model, proto)
    print(describe(args.model, proto, model))
    extra = {"source": os.path.abspath(args.model), "onnx_names": dict(model.onnx_names), "opset": model.opset,
             "input_names": list(model.input_names),
             "input_shapes": [None if s is None else [-1 if d is None else d for d in s] for s in model.input_shapes]}
    io.save_checkpoint(args.out, model=model, extra=extra)
    print(f"wrote {args.out} (engine.io.load_checkpoint(..., model=graph.onnx.load({args.model!r})) restores it)")
    return 0
