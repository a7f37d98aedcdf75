"""Named datasets for the CLI: where their files live, their classes and normalization, train/val/test splits.

Images are kept as uint8 (N, C, H, W) in memory and turned into normalized float32 batch by batch by the
DataLoader's transform (``ToFloat`` -> augmentations -> ``Normalize``), so CIFAR-10 costs 150 MiB, not 600.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data import TensorDataset, random_split, read_cifar10, read_idx, read_image_folder
from engine.data import transforms as T
from engine.data.dataset import Dataset, Subset

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BAR_ANGLES = (0, 45, 90, 135)


@dataclass
class DatasetInfo:
    """What a model and the transforms need to know about a dataset."""

    name: str
    channels: int
    size: tuple[int, int]
    classes: list[str]
    mean: list[float]
    std: list[float]
    default_dir: str | None = None
    augment: list = field(default_factory=list)  # transforms applied to [0, 1] float images before Normalize
    subset: list[int] | None = None  # the original class indices when training on some classes only
    data_dir: str | None = None  # where the files were read from

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return {"name": self.name, "channels": self.channels, "size": list(self.size), "classes": self.classes,
                "mean": self.mean, "std": self.std, "subset": self.subset, "data_dir": self.data_dir}


def _registry() -> dict[str, DatasetInfo]:
    return {
        "fashion-mnist": DatasetInfo("fashion-mnist", 1, (28, 28), FASHION_MNIST_CLASSES, [0.2860], [0.3530],
                                     "/usr/share/datasets/fashion-mnist",
                                     [T.RandomHorizontalFlip(), T.RandomAffine(degrees=8, translate=(0.08, 0.08),
                                                                               scale=(0.92, 1.08))]),
        "mnist": DatasetInfo("mnist", 1, (28, 28), [str(i) for i in range(10)], [0.1307], [0.3081],
                             "/usr/share/datasets/mnist",
                             [T.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))]),
        "cifar10": DatasetInfo("cifar10", 3, (32, 32), CIFAR10_CLASSES, [0.4914, 0.4822, 0.4465],
                               [0.2470, 0.2435, 0.2616], "/usr/share/datasets/cifar10",
                               [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]),
        "bars": DatasetInfo("bars", 1, (28, 28), [f"bar {a} deg" for a in BAR_ANGLES], [0.1], [0.25], None,
                            [T.RandomAffine(translate=(0.1, 0.1))]),
        "folder": DatasetInfo("folder", 3, (0, 0), [], [0.5], [0.25], None, [T.RandomHorizontalFlip()]),
    }


DATASET_NAMES = list(_registry())


def get_info(name: str) -> DatasetInfo:
    reg = _registry()
    if name not in reg:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(reg)}")
    return reg[name]


def _idx_file(root: Path, stem: str) -> Path:
    for cand in (root / f"{stem}.gz", root / stem, root / stem.replace("-idx", ".idx")):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{root}: no {stem}(.gz); point --data-dir at a directory holding the IDX files")


def _read_idx_split(root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if train else "t10k"
    x = read_idx(_idx_file(root, f"{prefix}-images-idx3-ubyte"))
    y = read_idx(_idx_file(root, f"{prefix}-labels-idx1-ubyte"))
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"{root}: {prefix} images {x.shape} and labels {y.shape} do not pair up")
    return x[:, None].astype(np.uint8), y.astype(np.int64)


@functools.lru_cache(maxsize=8)
def make_bars(n: int, seed: int = 0, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic oriented bars: class k is a bar at BAR_ANGLES[k] degrees, random length/offset and brightness,
    plus uniform noise.

    Cached (the arrays are returned read-only): tests and quick runs ask for the same split repeatedly.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(BAR_ANGLES), n)
    theta = np.deg2rad(np.asarray(BAR_ANGLES, np.float32)[labels])[:, None, None]
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) - np.float32(c)
    u = xs - rng.uniform(-4, 4, (n, 1, 1)).astype(np.float32)
    v = ys - rng.uniform(-4, 4, (n, 1, 1)).astype(np.float32)
    along = u * np.cos(theta) - v * np.sin(theta)  # y points down, so -v is "up"
    across = u * np.sin(theta) + v * np.cos(theta)
    half_len = rng.uniform(6, 11, (n, 1, 1)).astype(np.float32)
    img = ((np.abs(across) <= 1.0) & (np.abs(along) <= half_len)).astype(np.float32)
    img *= rng.uniform(0.6, 1.0, (n, 1, 1)).astype(np.float32)
    img += (rng.random(img.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(0.3)  # uniform noise
    x = (np.clip(img, 0, 1)[:, None] * 255).astype(np.uint8)
    y = labels.astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _folder_split(root: Path, train: bool, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    sub = root / ("train" if train else "test")
    if not sub.is_dir():
        raise FileNotFoundError(f"{root}: a folder dataset needs train/<class>/* and test/<class>/* subdirectories")
    x, y, classes = read_image_folder(sub, info.size if info.size[0] else None, info.channels)
    if info.classes and classes != info.classes:
        raise ValueError(f"{sub}: classes {classes} differ from the training classes {info.classes}")
    info.classes = classes
    info.size = (x.shape[2], x.shape[3])
    return x, y


def _folder_channels(root: Path) -> int:
    """1 when the first training image is grayscale, else 3."""
    from PIL import Image

    for f in sorted((root / "train").rglob("*")):
        if f.is_file():
            with Image.open(f) as im:
                return 1 if im.mode in ("1", "L", "I", "I;16", "F") else 3
    return 3


def load_split(name: str, train: bool, data_dir: str | os.PathLike | None = None,
               info: DatasetInfo | None = None) -> tuple[np.ndarray, np.ndarray, DatasetInfo]:
    """(images uint8 NCHW, labels int64, info) for the train or test split of a named dataset."""
    info = info or get_info(name)
    if name == "bars":
        x, y = make_bars(4000 if train else 1000, seed=1 if train else 2)
        return x, y, info
    # an info rebuilt from a checkpoint has no default_dir but remembers where its data was read from
    data_dir = data_dir or info.data_dir or info.default_dir or get_info(name).default_dir
    if not data_dir:
        raise ValueError(f"dataset {name!r} needs --data-dir")
    root = Path(data_dir)
    if not root.is_dir():
        hint = " (install the Debian package dataset-fashion-mnist)" if name == "fashion-mnist" else ""
        raise FileNotFoundError(f"{root}: no such directory for dataset {name!r}{hint}; use --data-dir")
    if name in ("fashion-mnist", "mnist"):
        x, y = _read_idx_split(root, train)
    elif name == "cifar10":
        x, y = read_cifar10(root, train)
    elif name == "folder":
        if info.channels == 3 and not info.classes:
            info.channels = _folder_channels(root)
        x, y = _folder_split(root, train, info)
    else:
        raise ValueError(f"unknown dataset {name!r}")
    info.data_dir = str(root.resolve())
    return x, y, info


def load_test(info: DatasetInfo, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The test split a model trained on ``info`` is evaluated on (its class subset, if any)."""
    x, y, _ = load_split(info.name, False, data_dir, info)
    return select_classes(x, y, info.subset) if info.subset else (x, y)


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    info: DatasetInfo


def select_classes(x: np.ndarray, y: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The samples of the given classes, relabelled 0..k-1 in the order given."""
    relabel = np.full(int(max(y.max(), max(classes))) + 1, -1, np.int64)
    relabel[np.asarray(classes)] = np.arange(len(classes))
    keep = relabel[y] >= 0
    return x[keep], relabel[y[keep]]


def get_splits(name: str, data_dir: str | None = None, val_size: int | None = None, seed: int = 0,
               limit_train: int | None = None, classes: list[int] | None = None,
               image_size: tuple[int, int] | None = None, limit_test: int | None = None) -> Splits:
    """Train/val/test datasets. val is carved from the training files by a seeded random split
    (default: 5000 images, at most a tenth); ``limit_train`` keeps the first N training samples (and at most a
    quarter as many validation samples); ``limit_test`` the first N test samples;
    ``classes`` keeps only those class indices (e.g. pretrain on 0-4, fine-tune on 5-9); ``image_size`` (H, W)
    resizes a folder dataset's images."""
    info = get_info(name)
    if image_size is not None:
        if name != "folder":
            raise ValueError(f"--image-size resizes folder datasets only; {name} images are "
                             f"{info.size[0]}x{info.size[1]}")
        info.size = tuple(image_size)
    x, y, info = load_split(name, True, data_dir, info)
    xt, yt, info = load_split(name, False, data_dir, info)
    if classes:
        bad = [c for c in classes if not 0 <= c < info.num_classes]
        if bad or len(set(classes)) != len(classes):
            raise ValueError(f"classes {classes}: need distinct indices in 0..{info.num_classes - 1}")
        (x, y), (xt, yt) = select_classes(x, y, classes), select_classes(xt, yt, classes)
        info.classes = [info.classes[c] for c in classes]
        info.subset = list(classes)
    if name == "folder":  # statistics of the folder's own training images
        xf = x.astype(np.float32) / 255
        info.mean = [float(m) for m in xf.mean(axis=(0, 2, 3))]
        info.std = [max(float(s), 1e-3) for s in xf.std(axis=(0, 2, 3))]
    full = TensorDataset(x, y)
    n_val = max(1, min(5000, len(full) // 10)) if val_size is None else int(val_size)
    if not 0 < n_val < len(full):
        raise ValueError(f"--val-size {n_val}: must be between 1 and {len(full) - 1} ({len(full)} training images)")
    train, val = random_split(full, [len(full) - n_val, n_val], seed=seed)
    if limit_train is not None and limit_train < len(train):
        train = Subset(full, train.indices[:limit_train])
        val = Subset(full, val.indices[:max(1, min(len(val.indices), limit_train // 4))])
    if limit_test is not None:
        xt, yt = xt[:limit_test], yt[:limit_test]
    return Splits(train, val, TensorDataset(xt, yt), info)


def make_transforms(info: DatasetInfo, augment: bool = False) -> tuple[T.Compose, T.Compose]:
    """(train transform, eval transform): uint8 -> [0, 1] float -> (augmentation) -> normalize."""
    norm = T.Normalize(info.mean, info.std)
    train = [T.ToFloat(), *(info.augment if augment else []), norm]
    return T.Compose(train), T.Compose([T.ToFloat(), norm])
