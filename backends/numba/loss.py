"""class_coef on numba: the host kernel defined with the primitive (a gather over the targets, tiny next to the
loss's log-softmax)."""

from engine.ops.loss import class_coef_kernel

from .table import backend

backend.register("class_coef")(class_coef_kernel)
