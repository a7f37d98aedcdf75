"""Saving and loading state: state dicts and training checkpoints as ``.npz`` files.

A file holds every array as its own ``.npy`` member (``a0``, ``a1``, ...) and one ``__meta__`` member: a uint8
array of UTF-8 JSON that describes the nested structure (dicts, lists, tuples, numbers, strings, None) and points
at the arrays. Nothing is pickled: files are read with ``np.load(allow_pickle=False)``. A SHA-256 over the
metadata and every array (``__sha256__``) detects truncated, corrupted or edited files.

Writes are atomic: the file is written to a temporary file in the same directory, fsynced, and moved over the
target with ``os.replace``, so an interrupted save leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from typing import Any

import numpy as np

from .backend import device_of, to_host
from .random import get_rng_state, set_rng_state
from .tensor import Tensor

__all__ = ["save", "load", "save_checkpoint", "load_checkpoint", "CheckpointError"]

FORMAT = "convgraph.state"
VERSION = 1
_META, _DIGEST = "__meta__", "__sha256__"
# a one-key JSON object with one of these keys stands for a non-JSON value
_TAGS = ("__tensor__", "__ndarray__", "__scalar__", "__tuple__", "__items__")


class CheckpointError(ValueError):
    """A state file that cannot be used: truncated, corrupted, edited, or not written by engine.io."""


# --- encoding nested state as JSON + arrays -----------------------------------------------------------------------
class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def _array(self, a: np.ndarray, where: str) -> str:
        if a.dtype.hasobject:
            raise TypeError(f"engine.io.save: object arrays cannot be stored without pickle (at {where})")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = np.asarray(a, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
        return name

    def encode(self, v: Any, where: str) -> Any:
        if isinstance(v, Tensor):
            return {"__tensor__": self._array(v.host(), where)}  # a device tensor is written as its host copy
        if isinstance(v, np.ndarray):
            return {"__ndarray__": self._array(v, where)}
        if isinstance(v, np.generic):
            return {"__scalar__": self._array(np.asarray(v), where)}
        if device_of(v) not in (None, "cpu"):  # a device array (optimizer state on a GPU): its host copy
            return {"__ndarray__": self._array(to_host(v), where)}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, tuple):
            return {"__tuple__": [self.encode(e, f"{where}[{i}]") for i, e in enumerate(v)]}
        if isinstance(v, list):
            return [self.encode(e, f"{where}[{i}]") for i, e in enumerate(v)]
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in v):
                return {k: self.encode(e, f"{where}[{k!r}]") for k, e in v.items()}
            return {"__items__": [[self.encode(k, f"{where} key {k!r}"), self.encode(e, f"{where}[{k!r}]")]
                                  for k, e in v.items()]}
        raise TypeError(f"engine.io.save: cannot store a value of type {type(v).__name__} (at {where}); "
                        "use arrays, Tensors, numbers, strings, None, lists, tuples and dicts")


def _decode(v: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if isinstance(v, list):
        return [_decode(e, arrays, path) for e in v]
    if not isinstance(v, dict):
        return v
    if len(v) == 1 and next(iter(v)) in _TAGS:
        tag, arg = next(iter(v.items()))
        if tag == "__tuple__":
            return tuple(_decode(e, arrays, path) for e in arg)
        if tag == "__items__":
            return {_decode(k, arrays, path): _decode(e, arrays, path) for k, e in arg}
        if arg not in arrays:
            raise CheckpointError(f"{path}: the metadata refers to array '{arg}', which the file does not contain")
        a = arrays[arg]
        return Tensor(a) if tag == "__tensor__" else a if tag == "__ndarray__" else a[()]
    return {k: _decode(e, arrays, path) for k, e in v.items()}


def _digest(meta: np.ndarray, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(meta.tobytes())
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes(order="C"))
    return h.hexdigest()


# --- files ---------------------------------------------------------------------------------------------------
def _write_atomic(path: str, members: dict[str, np.ndarray]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # make the rename itself durable (best effort: not every platform can open a directory)
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` (a state dict or any nest of dicts/lists/tuples/arrays/Tensors/scalars) to ``path``."""
    path = os.fspath(path)
    enc = _Encoder()
    tree = enc.encode(obj, "<root>")
    meta_json = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree})
    meta = np.frombuffer(meta_json.encode("utf-8"), np.uint8)
    digest = np.frombuffer(_digest(meta, enc.arrays).encode("ascii"), np.uint8)
    _write_atomic(path, {_META: meta, _DIGEST: digest, **enc.arrays})


def _read_members(path: str) -> dict[str, np.ndarray]:
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a plain .npy array
            raise CheckpointError(f"{path}: not a state file written by engine.io (a single .npy array, not .npz)")
        with z:
            return {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: cannot read the file; it is truncated or corrupted "
                              f"({type(e).__name__}: {e})") from e


def load(path: str | os.PathLike) -> Any:
    """Read what :func:`save` wrote. Arrays come back as numpy arrays, Tensors as Tensors.

    Raises :class:`CheckpointError` naming the file and the problem when it is truncated, corrupted, edited
    or not an engine.io file.
    """
    path = os.fspath(path)
    members = _read_members(path)
    if _META not in members or _DIGEST not in members:
        missing = [m for m in (_META, _DIGEST) if m not in members]
        raise CheckpointError(f"{path}: not a state file written by engine.io (missing entries {missing}; "
                              f"found {sorted(members)[:8]})")
    meta, digest = members.pop(_META), members.pop(_DIGEST)
    if meta.dtype != np.uint8 or digest.dtype != np.uint8:
        raise CheckpointError(f"{path}: the metadata entries must be uint8 arrays (got {meta.dtype}, {digest.dtype})")
    if digest.tobytes().decode("ascii", "replace") != _digest(meta, members):
        raise CheckpointError(f"{path}: checksum mismatch; the file was modified or corrupted after it was written")
    try:
        info = json.loads(meta.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: the metadata is not valid JSON ({e})") from e
    if not isinstance(info, dict) or info.get("format") != FORMAT or "tree" not in info:
        raise CheckpointError(f"{path}: unknown metadata format (expected {FORMAT!r})")
    if info.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer format version {info['version']} (this reads "
                              f"<= {VERSION})")
    return _decode(info["tree"], members, path)


# --- training checkpoints ----------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model: Any = None, optimizer: Any = None, scheduler: Any = None,
                    epoch: int | None = None, extra: Any = None) -> None:
    """Save everything needed to resume training exactly: model, optimizer and scheduler state, the epoch,
    any ``extra`` (JSON-like values and arrays) and the engine's RNG state."""
    state: dict[str, Any] = {"kind": "checkpoint", "epoch": epoch, "extra": extra, "rng": get_rng_state()}
    if model is not None:
        state["model"] = model.state_dict()
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    save(state, path)


def load_checkpoint(path: str | os.PathLike, model: Any = None, optimizer: Any = None, scheduler: Any = None,
                    strict: bool = True, restore_rng: bool = True) -> dict[str, Any]:
    """Restore the given objects (and the RNG state) from a :func:`save_checkpoint` file; returns its contents
    (``epoch``, ``extra``, ...). All or nothing: if any part fails to load, the objects are left as they were."""
    path = os.fspath(path)
    state = load(path)
    if not isinstance(state, dict) or state.get("kind") != "checkpoint":
        raise CheckpointError(f"{path}: a state file, but not a checkpoint written by engine.io.save_checkpoint")
    for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None and name not in state:
            raise CheckpointError(f"{path}: the checkpoint has no {name} state")
    undo: list[tuple[Any, Any]] = []
    try:
        for name, obj in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
            if obj is None:
                continue
            before = obj.state_dict()
            if name == "model":
                before = {k: v.host().copy() for k, v in before.items()}
                obj.load_state_dict(state[name], strict=strict)
            else:
                obj.load_state_dict(state[name])
            undo.append((obj, before))
    except Exception:
        for obj, before in reversed(undo):
            obj.load_state_dict(before)
        raise
    if restore_rng:
        set_rng_state(state["rng"])
    return state
