"""Kernels of the channel-blocked primitives (engine/ops/blocked.py) on the numba backend: the reorders, the pools
and the blocked direct convolution (:mod:`.conv`). Importing the package registers them and tells the layout pass
the block this CPU wants (``backend.channel_block``: one vector register of float32, 16 with AVX-512)."""

from ..gemm import VL
from ..table import backend
from . import chain, conv, inverted, prologue, reorder  # noqa: F401 - each module registers its kernels

backend.channel_block = VL
backend.blocked_by_default = True
