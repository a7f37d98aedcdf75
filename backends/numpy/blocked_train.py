"""numpy reference kernels of the blocked training primitives (engine/ops/blocked_train.py): their decompositions
(unblock, the NCHW reference kernel, block again)."""

from engine.ops.blocked_train import BLOCKED_TRAIN

from .table import backend

for _p in BLOCKED_TRAIN:
    backend.register(_p.name)(_p.decomposed_kernel(backend.kernel))
