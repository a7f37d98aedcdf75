"""zoo.datasets: named datasets, splits and per-dataset transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.data import DataLoader
from zoo import datasets as D

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def write_folder(root: Path, per_class: dict[str, int], split: str, seed: int = 0, mode: str = "L") -> None:
    """root/split/<class>/*.png holding oriented bars (class k = D.BAR_ANGLES[k])."""
    from PIL import Image

    x, y = D.make_bars(8 * max(per_class.values()) + 40, seed=seed)
    for k, (cls, n) in enumerate(per_class.items()):
        d = root / split / cls
        d.mkdir(parents=True, exist_ok=True)
        imgs = x[y == k][:n, 0]
        assert len(imgs) == n
        for i, img in enumerate(imgs):
            Image.fromarray(img).convert(mode).save(d / f"{i}.png")


def test_bars_are_deterministic_and_cover_all_classes():
    x, y = D.make_bars(200, seed=3)
    x2, y2 = D.make_bars(200, seed=3)
    np.testing.assert_array_equal(x, x2)
    assert x.shape == (200, 1, 28, 28) and x.dtype == np.uint8
    assert set(y.tolist()) == {0, 1, 2, 3} and min(np.bincount(y)) > 30


def test_splits_are_disjoint_seeded_and_limited():
    s = D.get_splits("bars", seed=1)
    assert (len(s.train), len(s.val), len(s.test)) == (3600, 400, 1000)
    assert not set(s.train.indices) & set(s.val.indices)
    np.testing.assert_array_equal(D.get_splits("bars", seed=1).val.indices, s.val.indices)
    small = D.get_splits("bars", seed=1, limit_train=100)
    assert len(small.train) == 100 and len(small.val) == 25 and len(small.test) == 1000
    few = D.get_splits("bars", seed=1, limit_test=7)
    assert len(few.test) == 7 and len(few.train) == 3600
    np.testing.assert_array_equal(few.test[6][0], s.test[6][0])  # the first N test images
    assert s.info.num_classes == 4


def test_transforms_normalize_with_dataset_statistics():
    info = D.get_info("fashion-mnist")
    train_tf, eval_tf = D.make_transforms(info, augment=True)
    x = np.full((2, 1, 28, 28), 255, np.uint8)
    np.testing.assert_allclose(eval_tf(x), (1 - 0.2860) / 0.3530, rtol=1e-6)
    out = train_tf(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32


def test_folder_dataset_infers_classes_channels_and_statistics(tmp_path):
    write_folder(tmp_path, {"flat": 6, "diag": 5}, "train")
    write_folder(tmp_path, {"flat": 2, "diag": 2}, "test")
    s = D.get_splits("folder", str(tmp_path), val_size=2)
    assert s.info.classes == ["diag", "flat"] and s.info.channels == 1 and s.info.size == (28, 28)
    assert (len(s.train), len(s.val), len(s.test)) == (9, 2, 4)
    assert 0 < s.info.mean[0] < 0.5
    x, y = next(iter(DataLoader(s.test, batch_size=4, prefetch=0)))
    assert x.shape == (4, 1, 28, 28) and sorted(y.tolist()) == [0, 0, 1, 1]


def test_missing_data_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory for dataset 'mnist'.*--data-dir"):
        D.get_splits("mnist", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        D.get_splits("fashion-mnist", str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        D.get_info("imagenet")
    with pytest.raises(FileNotFoundError, match="train/<class>"):
        D.get_splits("folder", str(tmp_path))


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST not installed (dataset-fashion-mnist)")
def test_fashion_mnist_from_the_debian_package():
    x, y, info = D.load_split("fashion-mnist", False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    assert info.classes[9] == "Ankle boot"
    assert abs(x.mean() / 255 - info.mean[0]) < 0.01


def test_class_subset_is_relabelled_and_test_split_follows_it():
    s = D.get_splits("bars", classes=[2, 0])
    assert s.info.classes == ["bar 90 deg", "bar 0 deg"] and s.info.subset == [2, 0]
    x_all, y_all = D.make_bars(1000, seed=2)
    x, y = D.load_test(s.info)
    np.testing.assert_array_equal(x, x_all[(y_all == 2) | (y_all == 0)])
    np.testing.assert_array_equal(y, np.where(y_all[(y_all == 2) | (y_all == 0)] == 2, 0, 1))
    assert set(s.train.dataset.arrays[1].tolist()) == {0, 1}
    with pytest.raises(ValueError, match=r"need distinct indices in 0..3"):
        D.get_splits("bars", classes=[1, 7])
