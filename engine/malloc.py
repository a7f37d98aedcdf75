"""Keep freed array memory in the process for reuse (glibc only; opt out with ``CONVGRAPH_TUNE_MALLOC=0``).

Eager mode allocates every activation, gradient and workspace afresh each step. glibc serves blocks above
``M_MMAP_THRESHOLD`` (128 KiB at start) with their own ``mmap`` and gives them back with ``munmap`` on free, so
each step pays the system calls plus a page fault per 4 KiB page on first touch, and trims the heap top
(``M_TRIM_THRESHOLD``) the same way. Raising both keeps the pages mapped and recycles them between steps, the way
PyTorch's CPU caching allocator does. Blocks above 32 MiB (glibc's cap on the threshold) still use mmap.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum (HEAP_MAX / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30

_done: list[bool] = []


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds once; True when applied."""
    if _done:
        return _done[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("CONVGRAPH_TUNE_MALLOC", "1") != "0":
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
            ok = False
    _done.append(ok)
    return ok
