"""Stride arithmetic shared by the backends that view N-d operands as fixed-rank arrays (numba, cuda)."""

from __future__ import annotations


def collapse(shape: tuple[int, ...], strides: list[tuple[int, ...]]) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 axes and merge neighbours that are contiguous in every operand (outer == inner * size)."""
    dims: list[int] = []
    strs: list[list[int]] = [[] for _ in strides]
    for ax, d in enumerate(shape):
        if d == 1:
            continue
        if dims and all(s[-1] == st[ax] * d for s, st in zip(strs, strides)):
            dims[-1] *= d
            for s, st in zip(strs, strides):
                s[-1] = st[ax]
        else:
            dims.append(d)
            for s, st in zip(strs, strides):
                s.append(st[ax])
    return dims, strs
