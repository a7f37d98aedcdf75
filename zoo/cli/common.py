"""What the commands share: ``--backend`` and ``--device``; checked numeric option types; for the graph commands
(compile, summary, bottleneck, render) the model argument, ``--input-shape`` and pass-list parsing; and the
one-line error for bad input."""

from __future__ import annotations

import argparse
import math
from typing import Any

import engine
from graph.passes import PIPELINES

from .. import models


def add_backend_arg(p: argparse.ArgumentParser, role: str = "eager backend") -> None:
    # "%(default).0s" prints nothing, and stops ArgumentDefaultsHelpFormatter from appending "(default: None)"
    p.add_argument("--backend", default=None,
                   help=f"{role}: numpy (the reference), numba or cuda (default%(default).0s: $CONVGRAPH_BACKEND, "
                        "else numba when installed)")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, choices=("cpu", "cuda"),
                   help="where tensors live: cpu, or cuda (the cuda backend: a CUDA GPU, or numba's simulator with "
                        "NUMBA_ENABLE_CUDASIM=1); --device cuda is --backend cuda")


def backend_from_args(args: argparse.Namespace) -> str | None:
    """``--backend`` and ``--device`` as one backend name (None: the active backend), checked to run here: an
    unavailable backend (cuda without a GPU or the simulator) is a one-line ValueError."""
    backend, device = args.backend, getattr(args, "device", None)
    if device is not None:
        if backend is not None and engine.get_backend(backend).device != device:
            raise ValueError(f"--device {device} and --backend {backend} disagree: backend {backend!r} keeps its "
                             f"tensors on {engine.get_backend(backend).device!r}")
        if backend is None and device != "cpu":
            backend = device
    if backend is not None:
        engine.get_backend(backend)
    return backend


def use_backend_arg(args: argparse.Namespace) -> None:
    """Make ``--backend`` (or ``--device``) the active backend for eager ops; without it the active backend stays."""
    backend = backend_from_args(args)
    if backend is not None:
        engine.set_backend(backend)


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,224,224', '3x224x224' or '1 3 224 224' -> a shape; a 3-D shape gets batch 1 in front."""
    parts = [p for p in text.replace("x", ",").replace("×", ",").replace(" ", ",").split(",") if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"input shape must be integers like 3,224,224 (got {text!r})") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"input shape must be positive integers (got {text!r})")
    return (1,) + shape if len(shape) == 3 else shape


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="zoo model name (see `convgraph models`) or a path to an .onnx file")
    p.add_argument("--input-shape", type=parse_shape, default=None,
                   help="input shape, e.g. 3,224,224 or 1x3x224x224 (default: the model's usual input; for an "
                        ".onnx file its declared input shape, batch 1 where symbolic)")


def is_onnx_path(name: str) -> bool:
    return name.lower().endswith(".onnx")


def read_onnx(path: str) -> Any:
    """The ModelProto of an .onnx file; a missing ``onnx`` extra or a file that is not ONNX is a one-line error."""
    try:
        import onnx
    except ImportError:
        raise ValueError(f"{path}: reading .onnx files needs the 'onnx' package: pip install 'convgraph[onnx]'") \
            from None
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(path)
    except DecodeError as e:
        raise ValueError(f"{path}: not an ONNX model ({e})") from None


def load_onnx(path: str, proto: Any = None) -> Any:
    """``graph.onnx.load`` of ``path`` (or of its already read ``proto``) for the graph commands, which feed a
    single image batch: a model whose runtime input count is not one is a one-line error."""
    from graph import onnx as gx

    model = gx.load(proto if proto is not None else read_onnx(path))
    if len(model.input_names) != 1:
        raise ValueError(f"{path}: the model has {len(model.input_names)} runtime inputs {model.input_names}; "
                         "the graph commands take models with exactly one")
    return model


def onnx_input_shape(model: Any, path: str) -> tuple[int, ...]:
    """The declared input shape of an imported model, batch 1 where the batch dim is symbolic; any other symbolic
    dim needs ``--input-shape``."""
    declared = model.input_shapes[0]
    name = model.input_names[0]
    if declared is None:
        raise ValueError(f"{path}: input '{name}' declares no shape; give --input-shape")
    dims = [1 if i == 0 and d is None else d for i, d in enumerate(declared)]
    if None in dims:
        shown = "x".join("?" if d is None else str(d) for d in declared)
        raise ValueError(f"{path}: input '{name}' has symbolic dims ({shown}) beyond the batch; give --input-shape")
    return tuple(dims)


def model_and_shape(args: argparse.Namespace) -> tuple[Any, tuple[int, ...]]:
    """The model in eval mode (a zoo model by name, or an .onnx file imported with graph.onnx.load) and the
    user's input shape, else the one the model was designed for (batch 1)."""
    if is_onnx_path(args.model):
        model = load_onnx(args.model)
        return model, args.input_shape or onnx_input_shape(model, args.model)
    model = models.get(args.model)
    model.eval()
    return model, args.input_shape or (1,) + tuple(models.input_size(args.model))


def pipeline_or_passes(passes: list[str] | None) -> str | list[str] | None:
    """``--passes inference`` names a pipeline; ``--passes cse dce`` lists passes."""
    if passes is not None and len(passes) == 1 and passes[0] in PIPELINES:
        return passes[0]
    return passes


def _number(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") \
            from None


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    n = _number(int, text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {n})")
    return n


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    n = _number(int, text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {n})")
    return n


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (NaN and inf are refused)."""
    x = _number(float, text)
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (got {text})")
    return x


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    x = _number(float, text)
    if not (math.isfinite(x) and x >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (got {text})")
    return x


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    x = _number(float, text)
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (got {text})")
    return x


def check_output_file(path: str, option: str = "--out") -> None:
    """An output file goes into an existing folder: a typo must not create folders (at the filesystem root)."""
    import os

    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{option} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{option} {path}: folder {parent} is not writable")
