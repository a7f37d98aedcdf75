"""``convgraph demo``: train LeNet-5 on Fashion-MNIST offline (a few minutes on 2 cores), print the test accuracy,
and write the model diagram, the loss/accuracy curves, the confusion matrix and a checkpoint into runs/demo.

Training steps run as one compiled graph each (``graph.compile_step``: forward, loss, backward and the Adam update)
on the active backend, numba when installed (``--backend numpy`` for the reference: no JIT); ``--eager`` runs them
op by op. Validation and test run through ``graph.compile()`` on the same backend. Running the demo again starts
over in the same folder; its best.npz is replaced only by a better model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import graphviz
import numpy as np

import engine
from graph import trace
from graph.render import render

from ..training import TrainConfig, build_model, train
from .common import add_backend_arg, positive_int

# Tuned for >= 89% test accuracy within the 5-minute budget on 2 cores (see README / metrics.json).
DEMO = dict(model="lenet5", dataset="fashion-mnist", epochs=4, batch_size=128, optimizer="adam", lr=1e-3,
            scheduler="cosine")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="train LeNet-5 on Fashion-MNIST and write plots + checkpoint",
                              description=__doc__)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--data-dir", default=None,
                   help="Fashion-MNIST IDX files (default: /usr/share/datasets/fashion-mnist)")
    p.add_argument("--epochs", type=positive_int, default=DEMO["epochs"])
    add_backend_arg(p)
    p.add_argument("--limit-train", type=positive_int, default=None, help="train on fewer images (a quick look)")
    p.add_argument("--eager", action="store_true", help="run the training steps op by op, not compiled")
    p.add_argument("--no-compile", action="store_true",
                   help="evaluate eagerly instead of through graph.compile()")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def write_diagram(model_name: str, out: Path) -> str:
    """The model's graph as an SVG via graph.trace + graph.render, or a note saying why not."""
    g = trace(build_model(model_name, 10, 1), engine.Tensor(np.zeros((1, 1, 28, 28), np.float32)))
    try:
        return f"model diagram: {render(g, out / 'model.svg')}"
    except graphviz.ExecutableNotFound as e:  # the system package graphviz (`dot`) is missing: the demo still trains
        return f"note: model diagram skipped ({e})"


def run(args: argparse.Namespace) -> int:
    backend = args.backend or engine.active_backend().name
    out = Path(args.out)
    steps = "eager" if args.eager else "compiled"
    print(f"convgraph demo: {DEMO['model']} on Fashion-MNIST, {args.epochs} epochs, {DEMO['optimizer']} "
          f"lr {DEMO['lr']} ({DEMO['scheduler']} decay per epoch), batch {DEMO['batch_size']}, {steps} steps, "
          f"backend {backend}")
    t0 = time.perf_counter()
    cfg = TrainConfig(**{**DEMO, "epochs": args.epochs}, data_dir=args.data_dir, backend=backend, out=str(out),
                      limit_train=args.limit_train, progress=not args.no_progress, compile=not args.no_compile,
                      eager=args.eager, force=True)
    metrics = train(cfg)
    print(write_diagram(DEMO["model"], out))
    wall = time.perf_counter() - t0
    acc = metrics["test"]["acc"]
    print(f"\nLeNet-5 Fashion-MNIST test accuracy: {100 * acc:.2f}% after {args.epochs} epochs in {wall:.0f}s")
    print(f"wrote {out}/checkpoint.npz, {out}/curves.png, {out}/confusion.png, {out}/metrics.json")
    return 0
