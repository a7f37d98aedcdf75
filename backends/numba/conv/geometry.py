"""Conv geometry shared by the selection and every algorithm: output size, attribute normal form, the argument
tuples the kernels take, and the range of output positions whose input position is inside the plane."""

from __future__ import annotations

from typing import Any

from numba import njit


def shape_of(s: Any) -> tuple[int, ...]:
    """The shape of an array, a Spec or a shape tuple."""
    return tuple(getattr(s, "shape", s))


def out_hw(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any]) -> tuple[int, int]:
    (_, _, h, w), (_, _, kh, kw) = x_shape, w_shape
    (sh, sw), ((pt, pb), (pl, pr)), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1


def conv_attrs(stride, padding, dilation, groups) -> dict[str, Any]:
    """The attributes in one normal form (tuples), as the selection keys them."""
    return {"stride": tuple(stride), "padding": tuple(tuple(p) for p in padding), "dilation": tuple(dilation),
            "groups": groups}


def geom(stride, padding, dilation) -> tuple[int, ...]:
    """(sh, sw, pt, pl, dh, dw): the geometry arguments of the im2col and direct kernels."""
    (sh, sw), ((pt, _), (pl, _)), (dh, dw) = stride, padding, dilation
    return sh, sw, pt, pl, dh, dw


def table_geom(stride, dilation) -> tuple[int, int, int, int]:
    """(sh, sw, dh, dw): the geometry argument of the gemm-tables drivers."""
    return stride[0], stride[1], dilation[0], dilation[1]


def is_pointwise(kernel, stride, out_hw: tuple[int, int], in_hw: tuple[int, int]) -> bool:
    """A 1x1 kernel at stride 1 without padding: its im2col matrix is x re-laid out channels-first."""
    return tuple(kernel[-2:]) == (1, 1) and tuple(stride) == (1, 1) and tuple(out_hw) == tuple(in_hw)


@njit(cache=True)
def valid_range(off, s, size, n_out):
    """Output positions o in [lo, hi) whose input position o*s + off lies inside [0, size)."""
    lo = max(0, (-off + s - 1) // s)
    hi = min(n_out, (size - 1 - off) // s + 1)
    return lo, max(lo, hi)
