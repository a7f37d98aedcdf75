"""numpy reference kernels for the fused inference primitives: their decomposition (engine/ops/fused.py) run with
the numpy kernels of the unfused primitives, in place on ``out``."""

from engine.ops.fused import fused_conv2d_p, fused_linear_p

from .table import backend

for _p in (fused_conv2d_p, fused_linear_p):
    backend.register(_p.name)(_p.decomposed_kernel(backend.kernel))
