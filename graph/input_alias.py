"""A user's input array as seen by specialized calls: an alias of its memory that holds no reference to it.

The ArenaExecutor specializes a node's kernel to the arrays it reads (graph/executor.py), but it must not keep the
caller's input alive after a call. Instead a call specialized to a user input is specialized to an *alias*: a numpy
array over the same bytes (same address, shape, strides, dtype) that does not own or reference the caller's array.
It is used only during a run whose input has that same :func:`layout_key`: then the bytes at that address are the
current input's, laid out the same way, whichever array object the caller passed.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


def layout_key(a: Any) -> tuple | None:
    """(address, shape, strides, dtype) of a plain host array with no negative stride; None for anything else
    (device arrays, subclasses, reversed views: those always run the plain kernels)."""
    if type(a) is not np.ndarray or a.size == 0 or any(s < 0 for s in a.strides):
        return None
    return a.__array_interface__["data"][0], a.shape, a.strides, a.dtype


def alias(a: np.ndarray) -> np.ndarray:
    """A view of ``a``'s bytes that keeps no reference to ``a`` (valid while some array owns those bytes)."""
    extent = a.itemsize + sum((n - 1) * s for n, s in zip(a.shape, a.strides))
    buf = (ctypes.c_char * extent).from_address(a.__array_interface__["data"][0])
    return np.ndarray(a.shape, a.dtype, buffer=buf, strides=a.strides)
