"""numpy reference kernels of the blocked training primitives (engine/ops/blocked_train.py): their decompositions
(unblock, the NCHW reference kernel, block again)."""

from engine.ops.blocked_train import (
    blocked_batch_norm_train_grad_p,
    blocked_batch_norm_train_p,
    blocked_conv2d_input_grad_p,
    blocked_conv2d_train_p,
    blocked_conv2d_weight_grad_p,
)

from .table import backend

for _p in (blocked_conv2d_train_p, blocked_conv2d_input_grad_p, blocked_conv2d_weight_grad_p,
           blocked_batch_norm_train_p, blocked_batch_norm_train_grad_p):
    backend.register(_p.name)(_p.decomposed_kernel(backend.kernel))
