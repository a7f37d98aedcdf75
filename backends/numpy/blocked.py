"""numpy reference kernels for the channel-blocked primitives (engine/ops/blocked.py): the reorders written out,
the convolution and the pools as their decomposition (unblock, the NCHW reference kernel, block again)."""

import numpy as np

from engine.ops.blocked import blocked_conv2d_p, blocked_pool_p, blocked_scale_shift_p
from engine.ops.blocked_prologue import blocked_prologue_conv2d_p

from .table import backend


@backend.register("to_blocked")
def to_blocked(x: np.ndarray, out: np.ndarray, block: int) -> None:
    n, c, h, w = x.shape
    out[..., :] = 0  # pad lanes are zero
    for k in range(c):  # channel k -> block k // block, lane k % block
        out[:, k // block, :, :, k % block] = x[:, k]


@backend.register("from_blocked")
def from_blocked(x: np.ndarray, out: np.ndarray, channels: int) -> None:
    block = x.shape[4]
    for k in range(channels):
        out[:, k] = x[:, k // block, :, :, k % block]


for _p in (blocked_conv2d_p, blocked_pool_p, blocked_scale_shift_p, blocked_prologue_conv2d_p):
    backend.register(_p.name)(_p.decomposed_kernel(backend.kernel))
