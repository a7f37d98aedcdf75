"""engine.data.readers on small files the tests write: IDX (gz and raw), CIFAR-10 binary, image folders,
and the clear errors corrupt or truncated files give."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from engine.data import DataFormatError, load_image, read_cifar10, read_cifar10_batch, read_idx, read_image_folder


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    header = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dt).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_labels_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    for name, arr in (("img", images), ("lbl", labels)):
        data = idx_bytes(arr)
        (tmp_path / name).write_bytes(gzip.compress(data) if gz else data)
    np.testing.assert_array_equal(read_idx(tmp_path / "img"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "lbl"), labels)


@pytest.mark.parametrize("code,dtype", [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32),
                                        (0x0E, np.float64)])
def test_idx_other_dtypes_are_big_endian_decoded(tmp_path, code, dtype):
    arr = (np.arange(12).reshape(3, 4) - 5).astype(dtype)
    (tmp_path / "a.idx").write_bytes(idx_bytes(arr, code))
    out = read_idx(tmp_path / "a.idx")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_idx_truncated_reports_expected_and_actual_bytes(tmp_path):
    data = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    (tmp_path / "t").write_bytes(data[:-100])
    expected = 16 + 10 * 28 * 28
    with pytest.raises(DataFormatError, match=f"expected {expected} bytes, got {expected - 100}"):
        read_idx(tmp_path / "t")


def test_idx_trailing_garbage_is_an_error(tmp_path):
    (tmp_path / "t").write_bytes(idx_bytes(np.zeros(4, np.uint8)) + b"xx")
    with pytest.raises(DataFormatError, match="expected 12 bytes, got 14"):
        read_idx(tmp_path / "t")


def test_idx_bad_magic_number(tmp_path):
    (tmp_path / "m").write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataFormatError, match="bad IDX magic number 0x12340801"):
        read_idx(tmp_path / "m")
    (tmp_path / "t").write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataFormatError, match="unknown type byte 0x07"):
        read_idx(tmp_path / "t")


def test_idx_truncated_header_and_gzip(tmp_path):
    (tmp_path / "h").write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DataFormatError, match="needs 16 bytes, got 6"):
        read_idx(tmp_path / "h")
    gz = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    (tmp_path / "g.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataFormatError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "g.gz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_idx(tmp_path / "missing")


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    return b"".join(bytes([lbl]) + img.tobytes() for img, lbl in zip(images, labels))


def test_cifar10_batch_and_distribution(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1, 7])
    x, y = read_cifar10_batch(_write(tmp_path / "b.bin", cifar_bytes(images, labels)))
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    for i in range(1, 6):
        _write(root / f"data_batch_{i}.bin", cifar_bytes(images[:i], labels[:i]))
    _write(root / "test_batch.bin", cifar_bytes(images[:2], labels[:2]))
    x, y = read_cifar10(tmp_path, train=True)
    assert x.shape == (15, 3, 32, 32) and y.shape == (15,)
    assert read_cifar10(tmp_path, train=False)[0].shape == (2, 3, 32, 32)


def test_cifar10_truncated_and_bad_label(tmp_path):
    data = cifar_bytes(np.zeros((2, 3, 32, 32), np.uint8), np.array([1, 2]))
    with pytest.raises(DataFormatError, match="expected 6146 bytes \\(2 records\\), got 6000"):
        read_cifar10_batch(_write(tmp_path / "t.bin", data[:6000]))
    bad = bytearray(data)
    bad[3073] = 12
    with pytest.raises(DataFormatError, match="record 1 has label 12, expected 0..9"):
        read_cifar10_batch(_write(tmp_path / "l.bin", bytes(bad)))
    with pytest.raises(FileNotFoundError, match="data_batch_1.bin"):
        read_cifar10(tmp_path / "nothing", train=True)


def test_image_folder_classes_labels_and_resize(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n in (("cat", 2), ("dog", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    x, y, classes = read_image_folder(tmp_path, channels=3)
    assert classes == ["cat", "dog"] and x.shape == (5, 3, 10, 12) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(x[0].transpose(1, 2, 0), np.asarray(Image.open(tmp_path / "cat" / "0.png")))
    x, _, _ = read_image_folder(tmp_path, size=(8, 8), channels=1)
    assert x.shape == (5, 1, 8, 8)


def test_image_folder_errors(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a" / "0.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "a" / "1.png")
    with pytest.raises(DataFormatError, match="1.png: image is 5x5 but earlier ones are 4x4"):
        read_image_folder(tmp_path, channels=1)
    (tmp_path / "a" / "2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataFormatError, match="2.png: cannot read image"):
        load_image(tmp_path / "a" / "2.png")
    with pytest.raises(DataFormatError, match="one subdirectory per class"):
        read_image_folder(tmp_path / "a")


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
