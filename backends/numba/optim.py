"""The optimizer update on numba: the optimizer's numpy array update (memory-bound vector arithmetic, one pass
per state array), shared with eager ``optimizer.step()`` so both round identically."""

from engine.optim.update import update_kernel

from .table import backend

backend.register("optimizer_update")(update_kernel)
