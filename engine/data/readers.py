"""File-format readers: IDX (MNIST / Fashion-MNIST), CIFAR-10 binary batches, image folders (Pillow).

Every reader validates what it reads and raises :class:`DataFormatError` naming the file, what was
expected and what was found ("expected 784 bytes, got 100"), so a truncated download is never silently
reshaped into garbage.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DataFormatError", "read_idx", "read_cifar10_batch", "read_cifar10", "read_image_folder", "load_image",
           "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte + a 32x32 RGB image stored channel-major


class DataFormatError(ValueError):
    """A data file is corrupt, truncated or not in the format its reader expects."""


def _read_bytes(path: str | os.PathLike) -> bytes:
    """Whole file contents, transparently gunzipped when the file starts with the gzip magic 1f 8b."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataFormatError(f"{path}: corrupt or truncated gzip stream ({e})") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gz or raw) into a native-endian array of the shape its header declares."""
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise DataFormatError(f"{path}: IDX header needs 4 bytes, got {len(buf)}")
    if buf[0] != 0 or buf[1] != 0:
        raise DataFormatError(f"{path}: bad IDX magic number 0x{buf[:4].hex()} (must start with 0x0000)")
    type_code, ndim = buf[2], buf[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{k:02X}" for k in _IDX_DTYPES)
        raise DataFormatError(f"{path}: bad IDX magic number 0x{buf[:4].hex()}: unknown type byte "
                              f"0x{type_code:02X} (expected one of {known})")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataFormatError(f"{path}: IDX header with {ndim} dimensions needs {header} bytes, got {len(buf)}")
    shape = tuple(int(d) for d in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        what = "truncated" if len(buf) < expected else "trailing data"
        raise DataFormatError(f"{path}: {what}: IDX header declares shape {shape} of {dtype.name}, "
                              f"expected {expected} bytes, got {len(buf)}")
    arr = np.frombuffer(buf, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch -> (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    buf = _read_bytes(path)
    if len(buf) == 0 or len(buf) % _CIFAR_RECORD:
        n = len(buf) // _CIFAR_RECORD + 1
        raise DataFormatError(f"{path}: CIFAR-10 batch must hold whole {_CIFAR_RECORD}-byte records: "
                              f"expected {n * _CIFAR_RECORD} bytes ({n} records), got {len(buf)}")
    rec = np.frombuffer(buf, np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataFormatError(f"{path}: record {bad} has label {labels[bad]}, expected 0..9")
    return rec[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def read_cifar10(root: str | os.PathLike, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 binary distribution (data_batch_1..5.bin / test_batch.bin) under root or
    root/cifar-10-batches-bin."""
    root = Path(root)
    if (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: CIFAR-10 binary files missing: {', '.join(missing)}")
    parts = [read_cifar10_batch(root / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _to_8bit(im: Any) -> Any:
    """16-bit and float grayscale images scaled to 8 bits (Pillow's convert("L") clips them at 255 instead):
    integer modes by their bit depth (65535 -> 255), float images from [0, 1]."""
    from PIL import Image

    if im.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return im
    a = np.asarray(im, dtype=np.float64)
    if im.mode == "F":
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
    else:  # "I" is how Pillow may open a 16-bit PNG too: wider than 8 bits means 16
        scale = 255.0 / 65535.0 if im.mode.startswith("I;16") or (a.size and a.max() > 255) else 1.0
    return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), "L")


def load_image(path: str | os.PathLike, size: tuple[int, int] | None = None, channels: int = 3) -> np.ndarray:
    """One image file -> uint8 (C, H, W), converted to 1 (L) or 3 (RGB) channels, resized to size=(H, W)."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"load_image: channels must be 1 or 3, got {channels}")
    try:
        with Image.open(path) as im:
            im = _to_8bit(im).convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataFormatError(f"{path}: cannot read image ({e})") from e
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy()


def read_image_folder(root: str | os.PathLike, size: tuple[int, int] | None = None, channels: int = 3,
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``root/<class>/<image>`` -> (images uint8 (N, C, H, W), labels int64, sorted class names).

    Classes are the sorted subdirectory names (as torchvision's ImageFolder). Without ``size`` every image
    must already have the size of the first one.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataFormatError(f"{root}: expected one subdirectory per class, found none")
    images, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(f for f in (root / cls).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        for f in files:
            img = load_image(f, size, channels)
            if images and img.shape != images[0].shape:
                raise DataFormatError(f"{f}: image is {img.shape[1]}x{img.shape[2]} but earlier ones are "
                                      f"{images[0].shape[1]}x{images[0].shape[2]}; pass size=(H, W) to resize")
            images.append(img)
            labels.append(label)
    if not images:
        raise DataFormatError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(classes)}")
    return np.stack(images), np.asarray(labels, np.int64), classes
