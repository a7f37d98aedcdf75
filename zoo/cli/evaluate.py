"""``convgraph eval MODEL --checkpoint CK``: test-set loss, accuracy and confusion matrix of a trained model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import engine
from engine.data import DataLoader

from ..datasets import DATASET_NAMES, load_split, load_test, make_transforms
from ..training import evaluate, load_trained, plot_confusion
from .common import add_backend_arg, positive_int, use_backend_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a trained checkpoint on a test set", description=__doc__)
    p.add_argument("model", help="zoo model name the checkpoint was trained as")
    p.add_argument("--checkpoint", required=True, help="checkpoint.npz / best.npz written by convgraph train")
    p.add_argument("--dataset", default=None, choices=DATASET_NAMES, help="default: the checkpoint's dataset")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=positive_int, default=500)
    add_backend_arg(p)
    p.add_argument("--out", default=None, help="also write confusion.png and eval.json here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    use_backend_arg(args)
    model, info = load_trained(args.checkpoint, args.model)
    name = args.dataset or info.name
    if name == info.name:
        x, y = load_test(info, args.data_dir)
    else:
        x, y, _ = load_split(name, False, args.data_dir)
    _, eval_tf = make_transforms(info)
    res = evaluate(model, DataLoader(engine.data.TensorDataset(x, y), args.batch_size, transform=eval_tf),
                   info.num_classes)
    print(f"{args.model} on {name} test set: accuracy {100 * res['acc']:.2f}% ({res['n']} images), "
          f"loss {res['loss']:.4f}")
    per_class = res["confusion"].diagonal() / res["confusion"].sum(1).clip(min=1)
    for cls, acc in zip(info.classes, per_class):
        print(f"  {cls:>14}: {100 * acc:6.2f}%")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion(res["confusion"], info.classes, out / "confusion.png",
                       f"{args.model} on {name}: test accuracy {100 * res['acc']:.2f}%")
        (out / "eval.json").write_text(json.dumps({"acc": res["acc"], "loss": res["loss"], "n": res["n"],
                                                   "confusion": res["confusion"].tolist()}, indent=2))
    return 0
