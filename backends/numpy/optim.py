"""The optimizer update primitive (engine/optim/update.py): the optimizer's own array update."""

from engine.optim.update import update_kernel

from .table import backend

backend.register("optimizer_update")(update_kernel)
