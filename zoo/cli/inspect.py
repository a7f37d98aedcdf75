"""``convgraph inspect MODEL --checkpoint CK``: look inside a trained CNN.

Writes into --out: ``filters.png`` (first-layer filters), ``feature_maps.png`` (the channels of --layer for one
image), ``saliency.png`` (|d class score / d pixel| for that image) and ``top_activations.png`` (the dataset images
that most activate channel --unit of --layer).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import engine
from engine import nn
from engine.data import load_image

from ..datasets import load_test, make_transforms
from ..training import load_trained
from .common import add_backend_arg, nonnegative_int, positive_int, use_backend_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect", help="filters, feature maps, saliency, top-activating images",
                              description=__doc__)
    p.add_argument("model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default="runs/inspect")
    p.add_argument("--layer", default=None, help="module name for feature maps / top activations "
                   "(default: the first Conv2d); e.g. conv2")
    p.add_argument("--unit", type=nonnegative_int, default=0,
                   help="channel of --layer whose top-activating images to find")
    p.add_argument("--image", default=None, help="image file for feature maps and saliency (default: a test image)")
    p.add_argument("--index", type=nonnegative_int, default=0, help="test-set image index when --image is not given")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--scan", type=positive_int, default=2000, help="test images scanned for top activations")
    p.add_argument("--count", type=positive_int, default=16, help="how many top-activating images to show")
    add_backend_arg(p)
    p.set_defaults(func=run)


def save_grid(images: np.ndarray, path: Path, title: str, titles: list[str] | None = None, ncols: int = 8,
              cmap: str = "gray") -> Path:
    """(N, H, W) or (N, 3, H, W) images, each min-max scaled, as a grid PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.7 * nrows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].astype(np.float64)
        img = (img - img.min()) / (np.ptp(img) or 1.0)
        ax.imshow(img.transpose(1, 2, 0) if img.ndim == 3 else img, cmap=None if img.ndim == 3 else cmap)
        if titles:
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def first_conv(model: nn.Module) -> tuple[str, nn.Module]:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name, m
    raise ValueError(f"{type(model).__name__} has no Conv2d layer")


def capture(model: nn.Module, layer: str, x: engine.Tensor) -> tuple[np.ndarray, engine.Tensor]:
    """(the output of module ``layer``, the model's logits) for input x, via a forward hook."""
    seen: list[np.ndarray] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, a, out: seen.append(out.numpy()))
    try:
        logits = model(x)
    finally:
        handle.remove()
    if not seen:
        raise ValueError(f"layer {layer!r} did not run in the forward pass")
    return seen[0], logits


def saliency(model: nn.Module, x: np.ndarray, target: int | None = None) -> tuple[np.ndarray, int]:
    """|d logit[target] / d x| maxed over channels for one normalized image (1, C, H, W); target = argmax."""
    xt = engine.Tensor(x, requires_grad=True)
    logits = model(xt)
    if target is None:
        target = int(logits.numpy()[0].argmax())
    logits[0, target].backward()
    return np.abs(xt.grad.numpy()[0]).max(0), target


def run(args: argparse.Namespace) -> int:
    use_backend_arg(args)
    model, info = load_trained(args.checkpoint, args.model)
    _, eval_tf = make_transforms(info)
    out = Path(args.out)
    conv_name, conv = first_conv(model)
    layer = args.layer or conv_name
    if layer not in dict(model.named_modules()):
        raise ValueError(f"--layer {layer!r}: {args.model} has no such module (e.g. {conv_name})")

    test_x = test_y = None
    if args.image:
        raw = load_image(args.image, info.size, info.channels)[None]
        label = Path(args.image).name
    else:
        test_x, test_y = load_test(info, args.data_dir)
        if args.index >= len(test_x):
            raise ValueError(f"--index {args.index} out of range: the test set has {len(test_x)} images")
        raw = test_x[args.index:args.index + 1]
        label = f"test #{args.index} ({info.classes[test_y[args.index]]})"
    x = eval_tf(raw)
    with engine.no_grad():
        fmap, logits = capture(model, layer, engine.Tensor(x))
    if fmap.ndim < 2 or not args.unit < fmap.shape[1]:  # checked before any file is written
        raise ValueError(f"--unit {args.unit} out of range: {layer} has {fmap.shape[1] if fmap.ndim > 1 else 0} "
                         "channels")
    out.mkdir(parents=True, exist_ok=True)
    w = conv.weight.numpy()
    filt = w[:, 0] if w.shape[1] != 3 else w
    print("wrote", save_grid(filt, out / "filters.png", f"{conv_name}: {w.shape[0]} filters {w.shape[2]}x{w.shape[3]}"))
    pred = int(logits.numpy()[0].argmax())
    print("wrote", save_grid(fmap[0], out / "feature_maps.png",
                             f"{layer} feature maps for {label}; predicted {info.classes[pred]}",
                             [f"ch {i}" for i in range(len(fmap[0]))], cmap="viridis"))

    sal, target = saliency(model, x)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(6, 3.2))
    a1.imshow(raw[0, 0] if info.channels == 1 else raw[0].transpose(1, 2, 0), cmap="gray")
    a1.set_title(label, fontsize=8)
    a2.imshow(sal, cmap="hot")
    a2.set_title(f"saliency for '{info.classes[target]}'", fontsize=8)
    for a in (a1, a2):
        a.axis("off")
    fig.tight_layout()
    fig.savefig(out / "saliency.png", dpi=100)
    plt.close(fig)
    print("wrote", out / "saliency.png")

    if test_x is None:
        test_x, test_y = load_test(info, args.data_dir)
    scan = test_x[:args.scan]
    scores = []
    with engine.no_grad():
        for i in range(0, len(scan), 250):
            act, _ = capture(model, layer, engine.Tensor(eval_tf(scan[i:i + 250])))
            a = act[:, args.unit]
            scores.append(a.reshape(len(a), -1).max(1))
    scores = np.concatenate(scores)
    top = np.argsort(-scores, kind="stable")[:args.count]
    imgs = scan[top][:, 0] if info.channels == 1 else scan[top]
    print("wrote", save_grid(imgs, out / "top_activations.png",
                             f"test images that most activate {layer} channel {args.unit} (max over positions)",
                             [f"{info.classes[test_y[i]]}\n{scores[i]:.2f}" for i in top]))
    return 0
