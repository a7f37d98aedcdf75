"""The class-index loss coefficients (engine/ops/loss.py: class_coef): the host kernel defined with the primitive."""

from engine.ops.loss import class_coef_kernel

from .table import backend

backend.register("class_coef")(class_coef_kernel)
