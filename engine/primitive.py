"""The primitive table: every op is defined exactly once, as data.

A :class:`Primitive` carries three rules that every consumer of the system agrees on:

- ``shape_rule(*in_specs, **attrs) -> Spec | tuple[Spec, ...]`` validates inputs and gives output specs.
  Errors raised here name the op, the violated constraint and the actual values, so eager mode, tracing and
  every backend report the same message.
- ``vjp_rule(g, out, *inputs, **attrs) -> tuple[Tensor | None, ...]`` gives one cotangent per input, written
  with primitives (never raw numpy) so it runs eagerly and under tracing. For multi-output primitives ``g``
  and ``out`` are tuples (a ``None`` in ``g`` means that output got no gradient).
- ``cost_rule(in_specs, out_specs, **attrs) -> Cost``: MACs, FLOPs and bytes moved.
- ``decompose_rule(kernel, *input_arrays, out, **attrs)`` (optional, fused primitives): the primitive written as
  calls of other primitives' kernels, ``kernel(prim_name)``, into ``out``. A backend without a kernel of its own
  for the primitive runs :meth:`Primitive.decomposed_kernel` built from its other kernels.

Backends register kernels ``kernel(*input_arrays, out, **attrs)`` against primitives by name and define
nothing else about them (see :mod:`engine.backend`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


class ShapeError(ValueError):
    """An op was given inputs or attributes that violate its shape rule."""


@dataclass(frozen=True)
class Spec:
    """An abstract value: the shape and dtype of a tensor, without data."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"{self.dtype.name}{list(self.shape)}"


@dataclass(frozen=True)
class Cost:
    """Work done by one primitive call. ``flops`` counts multiplies and adds separately (= 2 x MACs for
    conv/matmul); ``macs`` is 0 for ops that are not multiply-accumulate shaped."""

    macs: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.flops + other.flops,
                    self.bytes_read + other.bytes_read, self.bytes_written + other.bytes_written)


# Op kinds, used by default cost rules and by graph passes (fusion legality, in-place reuse).
ELEMENTWISE = "elementwise"  # output element i depends only on input element i (after broadcasting)
REDUCE = "reduce"
SHAPE = "shape"  # moves data, computes nothing
CONV = "conv"
POOL = "pool"
NORM = "norm"
MATMUL = "matmul"
FUSED = "fused"
OTHER = "other"


def _default_cost(prim: Primitive, in_specs: tuple[Spec, ...], out_specs: tuple[Spec, ...], **attrs: Any) -> Cost:
    read = sum(s.nbytes for s in in_specs)
    written = sum(s.nbytes for s in out_specs)
    if prim.kind == SHAPE:
        return Cost(0, 0, read, written)
    work = max(sum(s.size for s in out_specs), sum(s.size for s in in_specs) if prim.kind == REDUCE else 0)
    return Cost(0, work * prim.flops_per_element, read, written)


class Primitive:
    """One op of the closed vocabulary. Create with :func:`primitive`; attach rules with the ``def_*``
    decorators right next to each other in the op family's module."""

    def __init__(self, name: str, kind: str, multiple_results: bool = False, flops_per_element: int = 1):
        self.name = name
        self.kind = kind
        self.multiple_results = multiple_results
        self.flops_per_element = flops_per_element
        self.shape_rule: Callable[..., Any] | None = None
        self.vjp_rule: Callable[..., tuple] | None = None
        self.cost_rule: Callable[..., Cost] | None = None
        self.decompose_rule: Callable[..., None] | None = None

    def __repr__(self) -> str:
        return f"Primitive({self.name})"

    # --- registration decorators -------------------------------------------------------------------
    def def_shape(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.shape_rule = fn
        return fn

    def def_vjp(self, fn: Callable[..., tuple]) -> Callable[..., tuple]:
        self.vjp_rule = fn
        return fn

    def def_cost(self, fn: Callable[..., Cost]) -> Callable[..., Cost]:
        self.cost_rule = fn
        return fn

    def def_decompose(self, fn: Callable[..., None]) -> Callable[..., None]:
        self.decompose_rule = fn
        return fn

    # --- interpretation ----------------------------------------------------------------------------
    def abstract_eval(self, *in_specs: Spec, **attrs: Any) -> tuple[Spec, ...]:
        """Output specs as a tuple (also for single-result primitives)."""
        if self.shape_rule is None:
            raise NotImplementedError(f"primitive '{self.name}' has no shape rule")
        out = self.shape_rule(*in_specs, **attrs)
        return tuple(out) if self.multiple_results else (out,)

    def decomposed_kernel(self, kernel: Callable[[str], Callable[..., None]]) -> Callable[..., None]:
        """A kernel for this primitive made of the kernels ``kernel(prim_name)`` of the primitives it decomposes
        into (a backend's lookup, so the parts run on that backend)."""
        rule = self.decompose_rule
        if rule is None:
            raise NotImplementedError(f"primitive '{self.name}' has no decomposition rule")

        def decomposed(*ins: Any, out: Any, **attrs: Any) -> None:
            rule(kernel, *ins, out=out, **attrs)

        decomposed.__name__ = decomposed.__qualname__ = f"{self.name}_decomposed"  # what compile reports show
        return decomposed

    def cost(self, in_specs: tuple[Spec, ...], out_specs: tuple[Spec, ...], **attrs: Any) -> Cost:
        if self.cost_rule is not None:
            return self.cost_rule(in_specs, out_specs, **attrs)
        return _default_cost(self, in_specs, out_specs, **attrs)


PRIMITIVES: dict[str, Primitive] = {}


def primitive(name: str, kind: str, multiple_results: bool = False, flops_per_element: int = 1) -> Primitive:
    """Create and register a primitive. Each name is defined once."""
    if name in PRIMITIVES:
        raise ValueError(f"primitive '{name}' is already defined")
    p = Primitive(name, kind, multiple_results, flops_per_element)
    PRIMITIVES[name] = p
    return p


def get_primitive(name: str) -> Primitive:
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise KeyError(f"unknown primitive '{name}'; known: {sorted(PRIMITIVES)}") from None


def fail(op: str, constraint: str, **values: Any) -> None:
    """Raise a ShapeError naming the op, the constraint and the values: ``conv2d: <constraint> (got C=3, ...)``."""
    got = ", ".join(f"{k}={v}" for k, v in values.items())
    raise ShapeError(f"{op}: {constraint}" + (f" (got {got})" if got else ""))


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        fail(op, "operand shapes must be broadcast-compatible", shapes=" vs ".join(str(list(s)) for s in shapes))
        raise  # unreachable; keeps type checkers happy


def same_float_dtype(op: str, *specs: Spec) -> np.dtype:
    dtypes = {s.dtype for s in specs}
    if len(dtypes) != 1:
        fail(op, "all operands must have the same dtype; convert with .astype()",
             dtypes=" vs ".join(s.dtype.name for s in specs))
    return specs[0].dtype


def normalize_axes(op: str, axes: tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            fail(op, f"axis must be in [{-ndim}, {ndim})", axis=a, ndim=ndim)
        out.append(a % ndim)
    if len(set(out)) != len(out):
        fail(op, "axes must be distinct", axes=axes)
    return tuple(sorted(out))
