"""``convgraph predict MODEL --checkpoint CK --image FILE --topk 3``: the top-k classes with probabilities.

A file that cannot be read is reported on stderr and skipped; the exit code is then 1 (2 when none could be read).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import engine
import engine.functional as F
from engine.data import load_image

from ..datasets import make_transforms
from ..training import load_trained, model_device
from .common import add_backend_arg, positive_int, use_backend_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="classify image files with a trained checkpoint", description=__doc__)
    p.add_argument("model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--image", required=True, nargs="+", help="image file(s); resized to the model's input size")
    p.add_argument("--topk", type=positive_int, default=3)
    p.add_argument("--invert", action="store_true",
                   help="invert intensities (photos of dark objects on white, vs. Fashion-MNIST's black background)")
    add_backend_arg(p)
    p.set_defaults(func=run)


def predict(model, info, images: np.ndarray, topk: int = 3) -> list[list[tuple[str, float]]]:
    """uint8 (N, C, H, W) images -> for each, the top-k (class name, probability) pairs."""
    _, eval_tf = make_transforms(info)
    with engine.no_grad():
        x = engine.Tensor(eval_tf(images)).to(model_device(model))
        probs = F.softmax(model(x), -1).numpy()
    order = np.argsort(-probs, axis=1, kind="stable")[:, :topk]
    return [[(info.classes[k], float(p[k])) for k in row] for p, row in zip(probs, order)]


def run(args: argparse.Namespace) -> int:
    use_backend_arg(args)
    model, info = load_trained(args.checkpoint, args.model)
    files, imgs = [], []
    for f in args.image:  # one unreadable file is reported and skipped; the others are classified
        try:
            imgs.append(load_image(f, info.size, info.channels))
            files.append(f)
        except (OSError, ValueError) as e:
            print(f"convgraph predict: {' '.join(str(e).split())}; skipped", file=sys.stderr)
    if not imgs:
        return 2
    batch = np.stack(imgs)
    if args.invert:
        batch = 255 - batch
    for f, top in zip(files, predict(model, info, batch, min(args.topk, info.num_classes))):
        print(f"{f}:")
        for rank, (cls, p) in enumerate(top, 1):
            print(f"  {rank}. {cls:<14} {100 * p:6.2f}%")
    return 0 if len(files) == len(args.image) else 1
